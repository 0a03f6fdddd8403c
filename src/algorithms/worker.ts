/**
 * Worker-thread entry point and the task table of the training pool.
 *
 * Tasks are plain synchronous functions dispatched by name, so the same code runs in a worker or
 * in-thread (when the pool has one thread). Arguments travel by structured clone: typed arrays on
 * SharedArrayBuffers arrive as views of the same memory, which is how workers update factors in
 * place. WebAssembly tasks (wasm.ts) also receive the arena's shared WebAssembly.Memory and
 * instantiate their module once per thread and arena. To add a task: import its kernel and add an
 * entry to TASKS (keep kernels free of imports of parallel.ts, or the import graph becomes circular).
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import {
  alsLossRows,
  alsSolveRows,
  bprEpoch,
  gramian,
  type AlsRowsArgs,
  type BprEpochArgs,
  type BprEpochResult,
} from './kernels.ts';
import {
  alsCgRowsWasm,
  bprEpochWasm,
  gramianWasm,
  type WasmAlsArgs,
  type WasmBprArgs,
  type WasmGramArgs,
} from './wasm.ts';
import { sparseEaseColumns, type SparseColumns, type SparseColumnsArgs } from './ease-sparse.ts';
import { itemNeighbourRows, type NeighbourRows, type NeighbourRowsArgs } from './similarity.ts';
import { sweepScaleRows, sweepUpdateRows, type SweepRowsArgs } from './spd-inverse.ts';

/**
 * A task: takes structured-cloneable arguments, returns a structured-cloneable result.
 * The parameter is typed `never` so that functions with any argument type fit the table.
 */
export type TaskFn = (args: never) => unknown;

export interface GramianArgs {
  Y: Float32Array;
  k: number;
  rowStart: number;
  rowEnd: number;
  /** Zeroed k×k block the partial Gramian is written into (shared memory when in a worker). */
  out: Float64Array;
  outOff: number;
}

export interface AlsLossArgs {
  indptr: Int32Array;
  indices: Int32Array;
  data: Float32Array;
  X: Float32Array;
  Y: Float32Array;
  gram: Float64Array;
  k: number;
  alpha: number;
  start: number;
  end: number;
}

function spin(args: { ms: number }): number {
  // Busy work for pool tests (cancellation of a running task); bounded so it can never hang.
  const until = Date.now() + Math.min(Math.max(0, args.ms), 60_000);
  let n = 0;
  while (Date.now() < until) n++;
  return n;
}

/** The dispatch table. Other algorithms may add their entries here. */
export const TASKS: Record<string, TaskFn> = {
  'pool.echo': (args: unknown): unknown => args,
  'pool.spin': spin,
  'pool.fail': (args: { message: string }): never => {
    throw new Error(args.message);
  },
  'ease.sparseColumns': (a: SparseColumnsArgs): SparseColumns => sparseEaseColumns(a),
  'kernels.gramian': (a: GramianArgs): null => {
    gramian(a.Y, a.k, a.rowStart, a.rowEnd, a.out, a.outOff);
    return null;
  },
  'als.solveRows': (a: AlsRowsArgs): null => {
    alsSolveRows(a);
    return null;
  },
  'als.cgRowsWasm': (a: WasmAlsArgs): null => {
    alsCgRowsWasm(a);
    return null;
  },
  'kernels.gramianWasm': (a: WasmGramArgs): null => {
    gramianWasm(a);
    return null;
  },
  'bpr.epochWasm': (a: WasmBprArgs): BprEpochResult => bprEpochWasm(a),
  'als.lossRows': (a: AlsLossArgs): number =>
    alsLossRows(a.indptr, a.indices, a.data, a.X, a.Y, a.gram, a.k, a.alpha, a.start, a.end),
  'bpr.epoch': (a: BprEpochArgs): BprEpochResult => bprEpoch(a),
  'itemknn.neighbourRows': (a: NeighbourRowsArgs): NeighbourRows => itemNeighbourRows(a),
  'ease.sweepScale': (a: SweepRowsArgs): null => {
    sweepScaleRows(a.U, a.W, a.D, a.k1 - a.k0, a.k0, a.k1, a.r0, a.r1);
    return null;
  },
  'ease.sweepUpdate': (a: SweepRowsArgs): null => {
    sweepUpdateRows(a.A, a.n, a.U, a.W, a.k0, a.k1, a.r0, a.r1);
    return null;
  },
};

/** Runs a task by name (in whichever thread calls it). */
export function runTask(name: string, args: unknown): unknown {
  const fn = TASKS[name];
  if (fn === undefined) throw new Error(`unknown pool task "${name}"`);
  return (fn as (a: unknown) => unknown)(args);
}

export interface TaskMessage {
  id: number;
  task: string;
  args: unknown;
}

export type ResultMessage =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: { name: string; message: string; stack?: string } };

// Only act as a pool worker when started by WorkerPool (the marker keeps test runners that use
// worker threads from wiring this up when they merely import the module).
if (
  !isMainThread &&
  parentPort !== null &&
  (workerData as { cairnPoolWorker?: boolean } | null)?.cairnPoolWorker === true
) {
  const port = parentPort;
  port.on('message', (msg: TaskMessage) => {
    let reply: ResultMessage;
    try {
      reply = { id: msg.id, ok: true, result: runTask(msg.task, msg.args) };
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      reply = { id: msg.id, ok: false, error: { name: err.name, message: err.message, stack: err.stack } };
    }
    port.postMessage(reply);
  });
}
