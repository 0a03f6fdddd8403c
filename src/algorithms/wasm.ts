/**
 * WebAssembly SIMD kernels for the hot loops of training: implicit ALS's per-row conjugate-gradient
 * update, the Gramian YᵀY, and BPR's SGD epoch. Their sources are WebAssembly text in kernels/
 * (als.wat, gramian.wat, bpr.wat), assembled by `npm run build:kernels` into the committed .wasm
 * binaries beside them (kernels/build.test.ts requires the binaries to be exactly what the sources
 * assemble to); this module loads them and binds typed arrays to their pointer arguments. Every
 * kernel is checked against its JavaScript reference in kernels.ts (`alsCgRows`, `gramian`,
 * `bprEpoch`) in tests. Vectors compute in float32 lanes (f32x4), as implicit does; the Gramian
 * accumulates in float64 lanes. The JavaScript kernels, in doubles, stay the reference and the
 * fallback (`kernel: 'js'`).
 *
 * Data the kernels touch must live in one WebAssembly.Memory: `WasmArena` (kernels/arena.ts) lays
 * the interaction matrices, factors, Gramians and per-task scratch out in it, as typed-array views
 * that the rest of the code (and worker threads, when the memory is shared) uses like any other
 * array.
 */

import { WasmArena, WASM_ARENA_MAX_BYTES, wasmRef, type WasmMemoryRef } from './kernels/arena.ts';
import { instantiateKernel, kernelsValidate, type KernelName, type WasmMemory } from './kernels/load.ts';
import { BPR_BLOCK, drawSortedBlock, rowOfEntry } from './kernels.ts';
import { Rng } from './random.ts';

export { WasmArena, WASM_ARENA_MAX_BYTES, wasmRef, type WasmMemory, type WasmMemoryRef };

/** The exports of kernels/als.wat. */
interface AlsKernel {
  alsCg: (
    start: number,
    end: number,
    indptr: number,
    indices: number,
    data: number,
    X: number,
    Y: number,
    G: number,
    S: number,
    k: number,
    alpha: number,
    cgSteps: number,
    R: number,
  ) => void;
}
/** The exports of kernels/gramian.wat. */
interface GramianKernel {
  gram: (Y: number, k: number, start: number, end: number, out: number, tmp: number) => void;
}
/** The exports of kernels/bpr.wat. */
interface BprKernel {
  bpr: (
    indptr: number,
    indices: number,
    qbuf: number,
    X: number,
    Y: number,
    bias: number,
    k: number,
    nItems: number,
    lr: number,
    reg: number,
    samples: number,
    state: number,
    negatives: number,
  ) => number;
}

/** Arguments of one ALS CG task on the wasm path: arrays are views into `memory`. */
export interface WasmAlsArgs extends WasmMemoryRef {
  indptr: Int32Array;
  indices: Int32Array;
  data: Float32Array;
  X: Float32Array;
  Y: Float32Array;
  /** YᵀY as float32 (k×k). */
  gram: Float32Array;
  /** λ_u of every row (indexed by row), added to the Gramian's diagonal. */
  rowReg: Float32Array;
  /** 4k floats private to this task. */
  scratch: Float32Array;
  k: number;
  alpha: number;
  cgSteps: number;
  start: number;
  end: number;
}

interface Kernels {
  als: AlsKernel;
  gramian: GramianKernel;
  bpr: BprKernel;
}

// One set of instances per thread for the current arena (a new fit brings a new arena); each
// kernel is instantiated when first used, so a BPR fit never instantiates the ALS module.
let instancesArena = 0;
let instances: Partial<Kernels> = {};

function kernel<N extends KernelName>(ref: WasmMemoryRef, name: N, k: number): Kernels[N] {
  checkFactors(k);
  if (instancesArena !== ref.arenaId) {
    instances = {};
    instancesArena = ref.arenaId;
  }
  const cached = instances[name];
  if (cached !== undefined) return cached;
  const inst = instantiateKernel(name, ref.memory, ref.shared) as unknown as Kernels[N];
  instances[name] = inst;
  return inst;
}

let simdSupport: boolean | undefined;
/** True when this runtime runs WebAssembly SIMD (and shared memories, for the pool). */
export function wasmSimdSupported(): boolean {
  if (simdSupport === undefined) {
    try {
      simdSupport = kernelsValidate();
    } catch (err) {
      // A missing binary is a packaging error, not a runtime without SIMD: say so.
      if ((err as Error).message.includes('is missing')) throw err;
      simdSupport = false;
    }
  }
  return simdSupport;
}

/** Largest factor count the wasm path takes; the JavaScript kernels run above it. */
export const WASM_MAX_FACTORS = 1024;

function checkFactors(k: number): void {
  if (k % 4 !== 0 || k < 4 || k > WASM_MAX_FACTORS) {
    throw new RangeError(`wasm kernels need factors divisible by 4, at most ${WASM_MAX_FACTORS}`);
  }
}

/** Runs implicit's CG update for rows [start, end) with the SIMD kernel. */
export function alsCgRowsWasm(a: WasmAlsArgs): void {
  if (a.scratch.length < 4 * a.k) throw new RangeError('wasm ALS kernel scratch too small');
  kernel(a, 'als', a.k).alsCg(
    a.start,
    a.end,
    a.indptr.byteOffset,
    a.indices.byteOffset,
    a.data.byteOffset,
    a.X.byteOffset,
    a.Y.byteOffset,
    a.gram.byteOffset,
    a.scratch.byteOffset,
    a.k,
    a.alpha,
    a.cgSteps,
    a.rowReg.byteOffset,
  );
}

export interface WasmGramArgs extends WasmMemoryRef {
  Y: Float32Array;
  k: number;
  rowStart: number;
  rowEnd: number;
  /** Zeroed k×k float64 block; receives the full symmetric partial Gramian. */
  out: Float64Array;
  /** 4k doubles private to this task. */
  tmp: Float64Array;
}

/** Partial Gramian of rows [rowStart, rowEnd) into `out` (same contract as kernels.ts `gramian`). */
export function gramianWasm(a: WasmGramArgs): void {
  kernel(a, 'gramian', a.k).gram(
    a.Y.byteOffset,
    a.k,
    a.rowStart,
    a.rowEnd,
    a.out.byteOffset,
    a.tmp.byteOffset,
  );
  const { out, k } = a;
  for (let r = 0; r < k; r++) for (let c = r + 1; c < k; c++) out[c * k + r] = out[r * k + c];
}

export interface WasmBprArgs extends WasmMemoryRef {
  indptr: Int32Array;
  indices: Int32Array;
  X: Float32Array;
  Y: Float32Array;
  bias: Float32Array;
  k: number;
  nItems: number;
  learningRate: number;
  regularization: number;
  samples: number;
  seed: number;
  /** Negative candidates per sample (kernels.ts `BprEpochArgs.negatives`); 1 when absent. */
  negatives?: number;
  /** Positives per sorted block; BPR_BLOCK unless a test wants small blocks. */
  blockSize?: number;
  /** Arena scratch private to this task: min(BPR_BLOCK, samples) int32 for the sorted positives. */
  qbuf: Int32Array;
  /** Six int32 in the arena, private to this task (generator state, counters). */
  state: Int32Array;
}

/**
 * The SIMD twin of kernels.ts `bprEpoch`: the same blocks of sorted positives and the same negatives
 * for the same seed, with float32 arithmetic. Positives are drawn and sorted here, in JavaScript.
 */
export function bprEpochWasm(a: WasmBprArgs): { correct: number; skipped: number } {
  checkFactors(a.k);
  const total = a.indices.length;
  if (total === 0 || a.nItems < 2) return { correct: 0, skipped: a.samples };
  const rows = a.indptr.length - 1;
  const rng = new Rng(a.seed);
  const B = Math.max(1, Math.min(a.blockSize ?? BPR_BLOCK, a.samples));
  if (a.qbuf.length < B) throw new RangeError('bpr: qbuf is smaller than one block');
  const kernels = kernel(a, 'bpr', a.k);
  let correct = 0;
  let skipped = 0;
  for (let done = 0; done < a.samples; done += B) {
    const nb = Math.min(B, a.samples - done);
    drawSortedBlock(rng, total, a.qbuf, nb);
    const st = rng.state();
    for (let q = 0; q < 4; q++) a.state[q] = st[q];
    a.state[4] = 0;
    a.state[5] = rowOfEntry(a.indptr, rows, a.qbuf[0]);
    correct += kernels.bpr(
      a.indptr.byteOffset,
      a.indices.byteOffset,
      a.qbuf.byteOffset,
      a.X.byteOffset,
      a.Y.byteOffset,
      a.bias.byteOffset,
      a.k,
      a.nItems,
      a.learningRate,
      a.regularization,
      nb,
      a.state.byteOffset,
      a.negatives ?? 1,
    );
    skipped += a.state[4];
    rng.setState(a.state[0], a.state[1], a.state[2], a.state[3]);
  }
  return { correct, skipped };
}
