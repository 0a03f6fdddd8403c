/**
 * A worker thread of this folder with its own connection to the database file (the served-log writer,
 * the event lookups' merge): requests posted with an id, one reply each. The thread starts with the
 * first request and keeps the process alive only while a request is in flight; when it fails or exits,
 * the requests in flight fail.
 */
import { Worker } from 'node:worker_threads';
import { workerBootstrap } from '../../algorithms/parallel.ts';

/** A thread's reply to request `id`. */
export type ThreadReply =
  { id: number; ok: true; value?: unknown } | { id: number; ok: false; message: string; code?: string };

/** Turns a failed reply into an error, or says why the thread went (`failed` null: it exited). */
export interface ThreadErrors {
  failed(reply: { message: string; code?: string }): Error;
  lost(why: string, cause?: Error): Error;
}

/** The URL of the worker entry `name` beside the module `here` (.ts under the loader, .js once built). */
export function entryBeside(here: string, name: string): string {
  return new URL(here.endsWith('.ts') ? `./${name}.ts` : `./${name}.js`, here).href;
}

export class SqliteThread {
  private worker: Worker | null = null;
  private exited: Promise<void> = Promise.resolve();
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private nextId = 1;

  constructor(
    private readonly entry: string,
    private readonly workerData: Record<string, unknown>,
    private readonly errors: ThreadErrors,
  ) {}

  /** Whether the thread runs. */
  get running(): boolean {
    return this.worker !== null;
  }

  /** Posts `request` with a new id; resolves with the reply's value. */
  ask(request: object): Promise<unknown> {
    const worker = this.start();
    const id = this.nextId++;
    const reply = new Promise<unknown>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) worker.ref();
      worker.postMessage({ id, ...request });
    });
    this.inFlight.add(reply);
    const done = () => this.inFlight.delete(reply);
    reply.then(done, done);
    return reply;
  }

  /** Waits until no request is in flight (whatever their outcome). */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /** Posts a last message (one the thread ends on) and waits for the thread to exit. */
  async end(message: object): Promise<void> {
    this.worker?.postMessage(message);
    await this.exited;
  }

  /** Waits for the thread to exit. */
  gone(): Promise<void> {
    return this.exited;
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(workerBootstrap(this.entry), { eval: true, workerData: this.workerData });
    worker.unref();
    worker.on('message', (reply: ThreadReply) => {
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) worker.unref();
      if (reply.ok) p.resolve(reply.value);
      else p.reject(this.errors.failed(reply));
    });
    const fail = (err: Error) => {
      if (this.worker === worker) this.worker = null;
      const pending = [...this.pending.values()];
      this.pending.clear();
      for (const p of pending) p.reject(err);
    };
    worker.on('error', (err) => fail(this.errors.lost(`failed: ${err.message}`, err)));
    this.exited = new Promise((resolve) =>
      worker.once('exit', () => {
        fail(this.errors.lost('exited'));
        resolve();
      }),
    );
    this.worker = worker;
    return worker;
  }
}
