/**
 * Entry of the event-index merge thread (event-index-merge.ts): its own connection to the service's
 * database file, doing the merge's requests one at a time and replying with their outcome.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { configureConnection, configureForLookups } from './db.ts';
import { inThread, type MergeRequest, type MergeThreadData } from './event-index-merge.ts';
import type { ThreadReply } from './thread.ts';

const { path, busyTimeoutMs, settings } = (workerData as { cairnEventIndexMerge: MergeThreadData })
  .cairnEventIndexMerge;
const db = new Database(path);
// Its write steps need not wait for the disk (event-index-merge.ts, `LocalMerge.write`).
configureConnection(db, { synchronous: 'NORMAL', busyTimeoutMs });
configureForLookups(db);
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
