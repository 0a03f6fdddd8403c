/**
 * Entry of the served-log writer thread (served-log-thread.ts): its own connection to the service's
 * database file, inserting each batch it is sent in one transaction and replying with the outcome.
 * Served records are best-effort (the writer drops them when the store fails), so their commits do not
 * wait for the disk (`synchronous = NORMAL` in WAL mode: durable against a crash of the process; the
 * next event append's synced commit syncs them too).
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { configureConnection } from './db.ts';
import { servedInserter } from './experiments.ts';
import type { ServedLogRequest, ServedLogThreadOptions } from './served-log-thread.ts';
import type { ThreadReply } from './thread.ts';

const { path, busyTimeoutMs } = (workerData as { cairnServedLog: ServedLogThreadOptions }).cairnServedLog;
const db = new Database(path);
configureConnection(db, { synchronous: 'NORMAL', busyTimeoutMs });
const insert = servedInserter(db);

parentPort!.on('message', (message: ServedLogRequest) => {
  if ('close' in message) {
    db.close();
    parentPort!.close();
    return;
  }
  let reply: ThreadReply;
  try {
    insert(message.records);
    reply = { id: message.id, ok: true };
  } catch (e) {
    const err = e as { message?: string; code?: unknown };
    reply = {
      id: message.id,
      ok: false,
      message: String(err.message ?? e),
      ...(typeof err.code === 'string' ? { code: err.code } : {}),
    };
  }
  parentPort!.postMessage(reply);
});
