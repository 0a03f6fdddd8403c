/**
 * A bounded pool of worker threads for training. Tasks are named entries of the table in
 * worker.ts and take structured-cloneable arguments; big arrays are passed as views of
 * SharedArrayBuffers so workers read the data and update factors in place without copies.
 *
 * With `threads === 1` nothing is spawned: tasks run in this thread, one after another, in
 * submission order, which makes tests deterministic and avoids worker start-up cost.
 * An AbortSignal cancels the pool: queued tasks are rejected and running workers terminated.
 */
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker, type TransferListItem } from 'node:worker_threads';
import { runTask, type ResultMessage, type TaskMessage } from './worker.ts';

export interface WorkerPoolOptions {
  /** Worker threads; 1 runs in-thread, 0 or less means one per available core. */
  threads: number;
  signal?: AbortSignal;
}

interface Pending {
  id: number;
  task: string;
  args: unknown;
  transfer: TransferListItem[] | undefined;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

interface Slot {
  worker: Worker;
  current: Pending | null;
}

/** Resolves the thread count: `threads <= 0` means one per core. */
export function resolveThreads(threads: number): number {
  if (!Number.isFinite(threads) || threads <= 0) return Math.max(1, availableParallelism());
  return Math.max(1, Math.floor(threads));
}

/** The error a cancelled operation rejects with: the signal's reason, or an AbortError. */
export function abortReason(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  if (reason instanceof Error) return reason;
  return new DOMException(typeof reason === 'string' ? reason : 'the operation was aborted', 'AbortError');
}

/** file:// URL of tsx's ESM register API (its CommonJS build cannot register from an eval'd worker). */
function tsxApiUrl(here: string): string {
  const meta = import.meta as { resolve?: (specifier: string) => string };
  try {
    const url = typeof meta.resolve === 'function' ? meta.resolve('tsx/esm/api') : '';
    if (url.startsWith('file:') && url.endsWith('.mjs')) return url;
  } catch {
    // Not available under every test runner; fall back to require resolution below.
  }
  // require() resolves the package's "require" condition (index.cjs); its ESM twin sits beside it.
  const cjs = createRequire(here).resolve('tsx/esm/api');
  return pathToFileURL(cjs.replace(/\.cjs$/, '.mjs')).href;
}

/**
 * Source of an eval'd worker bootstrap that loads the module at `moduleUrl`: directly when it is
 * compiled JavaScript, through tsx when running from TypeScript sources (`new Worker(file.ts)` fails
 * with ERR_UNKNOWN_FILE_EXTENSION). Used with `new Worker(code, { eval: true })`.
 */
export function workerBootstrap(moduleUrl: string): string {
  if (!moduleUrl.endsWith('.ts')) return `import(${JSON.stringify(moduleUrl)});`;
  const tsxApi = tsxApiUrl(import.meta.url);
  return `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(moduleUrl)}); })`;
}

/** Source of the eval'd bootstrap that loads worker.ts (or worker.js when compiled). */
function bootstrapCode(): string {
  const here = import.meta.url;
  return workerBootstrap(new URL(here.endsWith('.ts') ? './worker.ts' : './worker.js', here).href);
}

export class WorkerPool {
  readonly threads: number;
  private readonly signal: AbortSignal | undefined;
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private closed = false;
  private failure: Error | null = null;
  private inThreadBusy = false;
  private readonly onAbort = (): void => {
    this.fail(abortReason(this.signal));
  };

  constructor(opts: WorkerPoolOptions) {
    this.threads = resolveThreads(opts.threads);
    this.signal = opts.signal;
    if (this.signal?.aborted) this.failure = abortReason(this.signal);
    else this.signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /** True when tasks run in the calling thread (threads === 1). */
  get inThread(): boolean {
    return this.threads === 1;
  }

  /**
   * Whether arrays handed to tasks must live on SharedArrayBuffers to be seen (and written) by the
   * task. In-thread pools pass arguments by reference, so ordinary arrays are fine there.
   */
  get needsShared(): boolean {
    return !this.inThread;
  }

  /** Runs one task; resolves with its result. */
  run<R>(task: string, args: unknown, transfer?: TransferListItem[]): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      if (this.failure !== null) {
        reject(this.failure);
        return;
      }
      if (this.closed) {
        reject(new Error('worker pool is closed'));
        return;
      }
      this.queue.push({
        id: this.nextId++,
        task,
        args,
        transfer,
        resolve: resolve as (v: unknown) => void,
        reject,
      });
      this.pump();
    });
  }

  /** Runs one task per argument object (in parallel across workers); results in input order. */
  map<R>(task: string, argsList: readonly unknown[]): Promise<R[]> {
    return Promise.all(argsList.map((a) => this.run<R>(task, a)));
  }

  /** Terminates the workers. Queued tasks are rejected; safe to call more than once. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    const err = new Error('worker pool is closed');
    for (const p of this.queue.splice(0)) p.reject(err);
    const slots = this.slots.splice(0);
    for (const s of slots) {
      if (s.current) s.current.reject(err);
      s.current = null;
    }
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  /** Rejects everything with `err` and tears the workers down (used on abort). */
  private fail(err: Error): void {
    if (this.failure !== null) return;
    this.failure = err;
    for (const p of this.queue.splice(0)) p.reject(err);
    for (const s of this.slots.splice(0)) {
      if (s.current) s.current.reject(err);
      s.current = null;
      void s.worker.terminate();
    }
  }

  private pump(): void {
    if (this.inThread) {
      this.pumpInThread();
      return;
    }
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => s.current === null);
      if (slot === undefined) {
        if (this.slots.length >= this.threads) return;
        slot = this.spawn();
      }
      const p = this.queue.shift()!;
      slot.current = p;
      // Busy workers keep the process alive; idle ones must not (see spawn).
      slot.worker.ref();
      const msg: TaskMessage = { id: p.id, task: p.task, args: p.args };
      slot.worker.postMessage(msg, p.transfer);
    }
  }

  /**
   * In-thread mode: one task at a time, each in its own macrotask so an abort signalled between
   * tasks (or a timer) gets a chance to run.
   */
  private pumpInThread(): void {
    if (this.inThreadBusy) return;
    this.inThreadBusy = true;
    setImmediate(() => {
      this.inThreadBusy = false;
      const p = this.queue.shift();
      if (p === undefined) return;
      try {
        p.resolve(runTask(p.task, p.args));
      } catch (e) {
        p.reject(e);
      }
      if (this.queue.length > 0) this.pumpInThread();
    });
  }

  private spawn(): Slot {
    const worker = new Worker(bootstrapCode(), { eval: true, workerData: { cairnPoolWorker: true } });
    const slot: Slot = { worker, current: null };
    worker.unref();
    worker.on('message', (msg: ResultMessage) => {
      const p = slot.current;
      slot.current = null;
      worker.unref();
      if (p !== null && p.id === msg.id) {
        if (msg.ok) p.resolve(msg.result);
        else {
          const e = new Error(msg.error.message);
          e.name = msg.error.name;
          if (msg.error.stack !== undefined) e.stack = msg.error.stack;
          p.reject(e);
        }
      }
      this.pump();
    });
    const onDeath = (err: unknown): void => {
      const i = this.slots.indexOf(slot);
      if (i < 0) return; // already removed by close/fail
      this.slots.splice(i, 1);
      const p = slot.current;
      slot.current = null;
      if (p) p.reject(err);
      // A crashed worker is replaced on demand by the next pump.
      if (!this.closed && this.failure === null) this.pump();
    };
    worker.on('error', (err) => onDeath(err));
    worker.on('exit', (code) => onDeath(new Error(`pool worker exited with code ${code}`)));
    this.slots.push(slot);
    return slot;
  }
}

/** A Float32Array on shared memory when `shared`, else an ordinary one. */
export function allocFloat32(n: number, shared: boolean): Float32Array {
  return shared ? new Float32Array(new SharedArrayBuffer(n * 4)) : new Float32Array(n);
}

export function allocFloat64(n: number, shared: boolean): Float64Array {
  return shared ? new Float64Array(new SharedArrayBuffer(n * 8)) : new Float64Array(n);
}

export function allocInt32(n: number, shared: boolean): Int32Array {
  return shared ? new Int32Array(new SharedArrayBuffer(n * 4)) : new Int32Array(n);
}

/**
 * Splits rows [0, rows) into at most `parts` contiguous ranges of roughly equal cost, where a row
 * costs `base + (indptr[r+1] − indptr[r])` (fixed per-row work plus per-entry work).
 * Returns the boundaries: range t is [bounds[t], bounds[t+1]).
 */
export function partitionRows(indptr: Int32Array, rows: number, parts: number, base: number): number[] {
  const total = indptr[rows] - indptr[0] + base * rows;
  const bounds = [0];
  if (rows === 0) return [0, 0];
  const n = Math.max(1, Math.min(parts, rows));
  let r = 0;
  for (let t = 1; t < n; t++) {
    const target = (total * t) / n;
    while (r < rows && indptr[r] - indptr[0] + base * r < target) r++;
    if (r > bounds[bounds.length - 1]) bounds.push(r);
  }
  if (bounds[bounds.length - 1] !== rows) bounds.push(rows);
  return bounds;
}
