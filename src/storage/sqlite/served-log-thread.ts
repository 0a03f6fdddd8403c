/**
 * The served-answer log's writer thread for a file database. Served records arrive a few hundred per
 * flush from the serving hot path; on the service's own connection each commit ran on the event loop
 * (better-sqlite3 is synchronous) and, with a WAL sync or checkpoint in it, held every request in flight
 * 20–60 ms — the tail latency of recommendations (`npm run bench:load`). Here they are committed on a
 * worker thread's own connection to the same file (served-log-thread.worker.ts); the event loop only
 * posts the batch. The thread starts with the first batch and keeps the process alive only while a
 * batch is in flight. Writes from the two connections serialize on SQLite's write lock (busy timeout).
 */
import type { ServedRecord } from '../../domain/types.ts';
import { CairnError } from '../../errors/errors.ts';
import type { ThreadConnection } from './db.ts';
import { entryBeside, SqliteThread } from './thread.ts';

/** A message to the thread: a batch to insert, or the order to close its connection and exit. */
export type ServedLogRequest = { id: number; records: ServedRecord[] } | { close: true };

export type ServedLogThreadOptions = ThreadConnection;

export class ServedLogThread {
  private readonly thread: SqliteThread;
  private closed = false;

  constructor(options: ServedLogThreadOptions) {
    this.thread = new SqliteThread(
      entryBeside(import.meta.url, 'served-log-thread.worker'),
      { cairnServedLog: options },
      {
        failed: (reply) =>
          reply.code?.startsWith('SQLITE_BUSY')
            ? new CairnError('CAIRN_UNAVAILABLE', 'database is locked by another writer')
            : new Error(reply.message),
        lost: (why, cause) =>
          new CairnError('CAIRN_UNAVAILABLE', `the served-log thread ${why}`, undefined, { cause }),
      },
    );
  }

  /** Inserts the records on the thread; resolves once they are committed. */
  async write(records: ServedRecord[]): Promise<void> {
    if (this.closed) throw new CairnError('CAIRN_UNAVAILABLE', 'the served log is closed');
    await this.thread.ask({ records });
  }

  /** Waits for the batches in flight, then closes the thread's connection and ends it. */
  async close(): Promise<void> {
    this.closed = true;
    if (!this.thread.running) return;
    await this.thread.idle();
    await this.thread.end({ close: true } satisfies ServedLogRequest);
  }
}
