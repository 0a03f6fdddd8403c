/**
 * Entry of the event-index merge thread (event-index-merge.ts): its own connection to the service's
 * database file, doing the merge's requests one at a time and replying with their outcome.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { inThread, type MergeRequest, type MergeThreadData } from './event-index-merge.ts';
import type { ThreadReply } from './thread.ts';

const { path, busyTimeoutMs, settings } = (workerData as { cairnEventIndexMerge: MergeThreadData })
  .cairnEventIndexMerge;
const db = new Database(path);
db.pragma('journal_mode = WAL');
db.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
// As on the service's connection: freed pages are zeroed (erasure), the lookups' pages cached and mapped,
// the staged keys in memory, checkpoints every ~40 MiB of WAL.
db.pragma('secure_delete = ON');
db.pragma('cache_size = -262144');
db.pragma('mmap_size = 2147483648');
db.pragma('temp_store = MEMORY');
db.pragma('wal_autocheckpoint = 10000');
let closed = false;
const merge = inThread(db, settings, () => closed);

async function handle(request: MergeRequest): Promise<ThreadReply> {
  try {
    if (request.op === 'close') {
      closed = true;
      await merge.end();
      db.close();
      return { id: request.id, ok: true, value: null };
    }
    return { id: request.id, ok: true, value: (await merge[request.op]()) ?? null };
  } catch (e) {
    return { id: request.id, ok: false, message: String((e as Error).message ?? e) };
  }
}

parentPort!.on('message', (request: MergeRequest) => {
  void handle(request).then((reply) => {
    parentPort!.postMessage(reply);
    if (request.op === 'close') parentPort!.close();
  });
});
