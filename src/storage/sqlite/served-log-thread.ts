/**
 * The served-answer log's writer thread for a file database. Served records arrive a few hundred per
 * flush from the serving hot path; on the service's own connection each commit ran on the event loop
 * (better-sqlite3 is synchronous) and, with a WAL sync or checkpoint in it, held every request in flight
 * 20–60 ms — the tail latency of recommendations (`npm run bench:load`). Here they are committed on a
 * worker thread's own connection to the same file (served-log-thread.worker.ts); the event loop only
 * posts the batch. The thread starts with the first batch and keeps the process alive only while a
 * batch is in flight. Writes from the two connections serialize on SQLite's write lock (busy timeout).
 */
import { Worker } from 'node:worker_threads';
import { workerBootstrap } from '../../algorithms/parallel.ts';
import type { ServedRecord } from '../../domain/types.ts';
import { CairnError } from '../../errors/errors.ts';

/** A message from the thread: the outcome of batch `id`. */
export type ServedLogReply =
  { id: number; ok: true } | { id: number; ok: false; message: string; code?: string };

/** A message to the thread: a batch to insert, or the order to close its connection and exit. */
export type ServedLogRequest = { id: number; records: ServedRecord[] } | { close: true };

export interface ServedLogThreadOptions {
  path: string;
  busyTimeoutMs: number;
}

function entryUrl(): string {
  const here = import.meta.url;
  return new URL(
    here.endsWith('.ts') ? './served-log-thread.worker.ts' : './served-log-thread.worker.js',
    here,
  ).href;
}

export class ServedLogThread {
  private worker: Worker | null = null;
  private exited: Promise<void> | null = null;
  private readonly pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private closed = false;

  constructor(private readonly options: ServedLogThreadOptions) {}

  /** Inserts the records on the thread; resolves once they are committed. */
  write(records: ServedRecord[]): Promise<void> {
    if (this.closed) return Promise.reject(new CairnError('CAIRN_UNAVAILABLE', 'the served log is closed'));
    const worker = this.start();
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) worker.ref();
      worker.postMessage({ id, records } satisfies ServedLogRequest);
    });
  }

  /** Waits for the batches in flight, then closes the thread's connection and ends it. */
  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    if (!worker) return;
    await Promise.allSettled(
      [...this.pending.values()].map(
        (p) =>
          new Promise<void>((r) => {
            const { resolve, reject } = p;
            p.resolve = () => (resolve(), r());
            p.reject = (e) => (reject(e), r());
          }),
      ),
    );
    worker.postMessage({ close: true } satisfies ServedLogRequest);
    await this.exited;
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(workerBootstrap(entryUrl()), {
      eval: true,
      workerData: { cairnServedLog: this.options },
    });
    worker.unref();
    worker.on('message', (reply: ServedLogReply) => this.settle(reply));
    const gone = (err: Error) => {
      if (this.worker === worker) this.worker = null;
      const pending = [...this.pending.values()];
      this.pending.clear();
      for (const p of pending) p.reject(err);
    };
    worker.on('error', (err) =>
      gone(
        new CairnError('CAIRN_UNAVAILABLE', `served-log thread failed: ${err.message}`, undefined, {
          cause: err,
        }),
      ),
    );
    this.exited = new Promise((resolve) =>
      worker.once('exit', () => {
        gone(new CairnError('CAIRN_UNAVAILABLE', 'the served-log thread exited'));
        resolve();
      }),
    );
    this.worker = worker;
    return worker;
  }

  private settle(reply: ServedLogReply): void {
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    if (this.pending.size === 0) this.worker?.unref();
    if (reply.ok) p.resolve();
    else
      p.reject(
        reply.code?.startsWith('SQLITE_BUSY')
          ? new CairnError('CAIRN_UNAVAILABLE', 'database is locked by another writer')
          : new Error(reply.message),
      );
  }
}
