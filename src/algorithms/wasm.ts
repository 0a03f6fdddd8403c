/**
 * WebAssembly SIMD kernels for the hot loops of training: implicit ALS's per-row conjugate-gradient
 * update, the Gramian YᵀY, and BPR's SGD epoch. The module is assembled at run time by the small
 * encoder below (no toolchain, no binary blob to trust), specialised for the factor count k so every
 * vector loop is unrolled, validated by WebAssembly itself, and checked against the JavaScript
 * references in kernels.ts (`alsCgRows`, `gramian`, `bprEpoch`) in tests. Vectors compute in float32
 * lanes (f32x4), as implicit does; the Gramian accumulates in float64 lanes. The JavaScript kernels,
 * in doubles, stay the reference and the fallback (`kernel: 'js'`).
 *
 * Data the kernels touch must live in one WebAssembly.Memory: `WasmArena` lays the interaction
 * matrices, factors, Gramians and per-task scratch out in it, as typed-array views that the rest of
 * the code (and worker threads, when the memory is shared) uses like any other array.
 */

import { BPR_BLOCK, drawSortedBlock, rowOfEntry } from './kernels.ts';
import { Rng } from './random.ts';

// The project compiles without the DOM lib, which is where TypeScript declares WebAssembly; these
// are the few members used here.
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}
interface WasmModule {
  readonly __wasmModule?: never;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (
    module: WasmModule,
    imports: Record<string, Record<string, unknown>>,
  ) => { exports: Record<string, unknown> };
  Memory: new (desc: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
  validate(bytes: Uint8Array): boolean;
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

// ---------------------------------------------------------------------------------------------
// A minimal assembler for the subset of WebAssembly the kernel needs.
// ---------------------------------------------------------------------------------------------

const I32 = 0x7f;
const F32 = 0x7d;
const I64 = 0x7e;
const F64 = 0x7c;
const V128 = 0x7b;
type ValType = typeof I32 | typeof I64 | typeof F32 | typeof F64 | typeof V128;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function str(s: string): number[] {
  return [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

interface Label {
  depth: number;
}

/** Emits one function body; structured control flow is tracked so branches name their target. */
class FnBuilder {
  readonly bytes: number[] = [];
  private readonly localTypes: ValType[] = [];
  private depth = 0;

  constructor(readonly params: ValType[]) {}

  local(t: ValType): number {
    this.localTypes.push(t);
    return this.params.length + this.localTypes.length - 1;
  }

  op(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }
  get(l: number): this {
    return this.op(0x20, ...uleb(l));
  }
  set(l: number): this {
    return this.op(0x21, ...uleb(l));
  }
  i32(n: number): this {
    return this.op(0x41, ...sleb(n | 0));
  }
  f32(x: number): this {
    const b = new Uint8Array(new Float32Array([x]).buffer);
    return this.op(0x43, ...b);
  }
  f64(x: number): this {
    const b = new Uint8Array(new Float64Array([x]).buffer);
    return this.op(0x44, ...b);
  }
  simd(code: number, ...imm: number[]): this {
    return this.op(0xfd, ...uleb(code), ...imm);
  }

  /** `block … end`; `body` receives the label a `br` uses to leave the block. */
  block(body: (exit: Label) => void): this {
    this.op(0x02, 0x40);
    const label = { depth: ++this.depth };
    body(label);
    this.depth--;
    return this.op(0x0b);
  }
  /** `loop … end`; branching to the label jumps back to the top. */
  loop(body: (top: Label) => void): this {
    this.op(0x03, 0x40);
    const label = { depth: ++this.depth };
    body(label);
    this.depth--;
    return this.op(0x0b);
  }
  /** `if … else … end` on the i32 condition on the stack. */
  ifElse(then: () => void, otherwise?: () => void): this {
    this.op(0x04, 0x40);
    this.depth++;
    then();
    if (otherwise) {
      this.op(0x05);
      otherwise();
    }
    this.depth--;
    return this.op(0x0b);
  }
  br(l: Label): this {
    return this.op(0x0c, ...uleb(this.depth - l.depth));
  }
  brIf(l: Label): this {
    return this.op(0x0d, ...uleb(this.depth - l.depth));
  }

  /** for (i = from; i < to; i += step) body — `from`/`to` emit i32 values; `to` is re-evaluated. */
  forRange(i: number, from: () => void, to: () => void, step: number, body: () => void): this {
    from();
    this.set(i);
    return this.block((exit) => {
      this.loop((top) => {
        this.get(i);
        to();
        this.op(0x4e); // i32.ge_s
        this.brIf(exit);
        body();
        this.get(i).i32(step).op(0x6a).set(i); // i += step
        this.br(top);
      });
    });
  }

  encode(): number[] {
    const decls: number[] = [...uleb(this.localTypes.length)];
    for (const t of this.localTypes) decls.push(1, t);
    const body = [...decls, ...this.bytes, 0x0b];
    return [...uleb(body.length), ...body];
  }
}

// Opcodes used below.
const OP = {
  i32Load: [0x28, 2, 0],
  f32Load: [0x2a, 2, 0],
  f32Store: [0x38, 2, 0],
  i32Add: 0x6a,
  i32Sub: 0x6b,
  i32Mul: 0x6c,
  i32Shl: 0x74,
  i32Eqz: 0x45,
  f32Gt: 0x5e,
  f32Abs: 0x8b,
  f32Add: 0x92,
  f32Sub: 0x93,
  f32Mul: 0x94,
  f64Lt: 0x63,
  f64Gt: 0x64,
  f64Div: 0xa3,
  f32Demote: 0xb6,
  f64Promote: 0xbb,
  select: 0x1b,
} as const;
const SIMD = {
  load: 0x00,
  store: 0x0b,
  f32x4Splat: 0x13,
  f32x4Extract: 0x1f,
  f32x4Neg: 0xe1,
  f32x4Add: 0xe4,
  f32x4Sub: 0xe5,
  f32x4Mul: 0xe6,
  load64Zero: 0x5d,
  f64x2PromoteLow: 0x5f,
  f64x2Splat: 0x14,
  f64x2Add: 0xf0,
  f64x2Mul: 0xf2,
} as const;

/** Emitters for fully unrolled loops over a k-float vector (k fixed when the module is built). */
class VecOps {
  private readonly nv: number;
  private readonly acc: number[];
  private readonly tmp: number;

  constructor(
    private readonly fn: FnBuilder,
    readonly k: number,
  ) {
    this.nv = k / 4;
    this.acc = [fn.local(V128), fn.local(V128), fn.local(V128), fn.local(V128)];
    this.tmp = fn.local(V128);
  }

  /** v128.load of vector j (bytes 16j..16j+15) at the address `ptr` pushes. */
  load(ptr: () => void, j: number): void {
    ptr();
    this.fn.simd(SIMD.load, 4, ...uleb(16 * j));
  }

  /** Pushes Σ a[f]·b[f] as f32, with four independent accumulators to hide add latency. */
  dot(a: () => void, b: () => void): void {
    const fn = this.fn;
    const nAcc = Math.min(4, this.nv);
    for (let j = 0; j < this.nv; j++) {
      const acc = this.acc[j % 4];
      if (j >= nAcc) fn.get(acc);
      this.load(a, j);
      this.load(b, j);
      fn.simd(SIMD.f32x4Mul);
      if (j >= nAcc) fn.simd(SIMD.f32x4Add);
      fn.set(acc);
    }
    fn.get(this.acc[0]);
    for (let r = 1; r < nAcc; r++) fn.get(this.acc[r]).simd(SIMD.f32x4Add);
    this.hsum();
  }

  /** Replaces the v128 on the stack by the f32 sum of its lanes. */
  hsum(): void {
    const fn = this.fn;
    fn.set(this.tmp);
    fn.get(this.tmp).simd(SIMD.f32x4Extract, 0).get(this.tmp).simd(SIMD.f32x4Extract, 1).op(OP.f32Add);
    fn.get(this.tmp).simd(SIMD.f32x4Extract, 2).get(this.tmp).simd(SIMD.f32x4Extract, 3).op(OP.f32Add);
    fn.op(OP.f32Add);
  }

  /** dst[f] = combine(j) for every vector j; `value` pushes the new v128 of vector j. */
  each(dst: () => void, value: (j: number) => void): void {
    for (let j = 0; j < this.nv; j++) {
      dst();
      value(j);
      this.fn.simd(SIMD.store, 4, ...uleb(16 * j));
    }
  }

  /** dst += (or −=) s·src, with s splatted in the v128 local `sv`. */
  axpy(dst: () => void, sv: number, src: () => void, subtract = false): void {
    this.each(dst, (j) => {
      this.load(dst, j);
      this.fn.get(sv);
      this.load(src, j);
      this.fn.simd(SIMD.f32x4Mul).simd(subtract ? SIMD.f32x4Sub : SIMD.f32x4Add);
    });
  }

  copy(dst: () => void, src: () => void): void {
    this.each(dst, (j) => this.load(src, j));
  }
}

/**
 * alsCg(start, end, indptr, indices, data, X, Y, G, S, k, alpha, cgSteps, R): implicit's CG update
 * of rows [start, end). Pointers are byte offsets into the imported memory; G is YᵀY (k×k f32), R
 * the rows' λ_u (f32 each, added to G's diagonal for row u), S is 4k floats of scratch (x, r, p,
 * Ap) private to the caller. The module is built for one k (a
 * multiple of 4), so every vector loop is unrolled with constant offsets; the `k` argument is only
 * checked by the caller.
 */
function buildAlsCg(k: number): FnBuilder {
  const P = {
    start: 0,
    end: 1,
    indptr: 2,
    indices: 3,
    data: 4,
    X: 5,
    Y: 6,
    G: 7,
    S: 8,
    k: 9,
    alpha: 10,
    steps: 11,
    R: 12,
  };
  const fn = new FnBuilder([I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, F32, I32, I32]);
  const kb = 4 * k;
  const u = fn.local(I32);
  const q = fn.local(I32);
  const qe = fn.local(I32);
  const a = fn.local(I32);
  const g = fn.local(I32);
  const xo = fn.local(I32);
  const yo = fn.local(I32);
  const xs = fn.local(I32);
  const rs = fn.local(I32);
  const ps = fn.local(I32);
  const aps = fn.local(I32);
  const step = fn.local(I32);
  const w = fn.local(F32);
  const c1 = fn.local(F32);
  const t = fn.local(F32);
  const sv = fn.local(V128);
  const lv = fn.local(V128);
  const rsold = fn.local(F64);
  const rsnew = fn.local(F64);
  const pap = fn.local(F64);
  const rowAcc = [fn.local(V128), fn.local(V128), fn.local(V128), fn.local(V128)];
  const vj = fn.local(V128);
  const V = new VecOps(fn, k);
  const at = (l: number) => (): void => void fn.get(l);

  /** out[a] = ± G[a,:] · vec, four rows at a time so each load of vec serves four rows. */
  const symv = (vec: number, out: number, negate: boolean): void => {
    const rows = 4; // k is a multiple of 4
    fn.get(P.G).set(g);
    fn.forRange(
      a,
      () => fn.i32(0),
      () => fn.i32(k),
      rows,
      () => {
        for (let j = 0; j < k / 4; j++) {
          V.load(at(vec), j);
          fn.set(vj);
          for (let r = 0; r < rows; r++) {
            if (j > 0) fn.get(rowAcc[r]);
            fn.get(g).simd(SIMD.load, 4, ...uleb(r * kb + 16 * j));
            fn.get(vj).simd(SIMD.f32x4Mul);
            if (j > 0) fn.simd(SIMD.f32x4Add);
            fn.set(rowAcc[r]);
          }
        }
        for (let r = 0; r < rows; r++) {
          fn.get(out).get(a).i32(2).op(OP.i32Shl).op(OP.i32Add);
          fn.get(rowAcc[r]);
          V.hsum();
          if (negate) fn.op(0x8c); // f32.neg
          fn.op(0x38, 2, ...uleb(4 * r)); // f32.store offset 4r
        }
        fn.get(g)
          .i32(rows * kb)
          .op(OP.i32Add)
          .set(g);
      },
    );
  };

  /** Loads w = data[q], c1 = alpha·|w|, yo = Y + indices[q]·k·4. */
  const loadEntry = (): void => {
    fn.get(P.data)
      .get(q)
      .i32(2)
      .op(OP.i32Shl)
      .op(OP.i32Add)
      .op(...OP.f32Load)
      .set(w);
    fn.get(P.alpha).get(w).op(OP.f32Abs).op(OP.f32Mul).set(c1);
    fn.get(P.Y)
      .get(P.indices)
      .get(q)
      .i32(2)
      .op(OP.i32Shl)
      .op(OP.i32Add)
      .op(...OP.i32Load);
    fn.i32(kb).op(OP.i32Mul).op(OP.i32Add).set(yo);
  };

  const rowEntries = (body: () => void): void => {
    fn.forRange(
      q,
      () =>
        fn
          .get(P.indptr)
          .get(u)
          .i32(2)
          .op(OP.i32Shl)
          .op(OP.i32Add)
          .op(...OP.i32Load),
      () => fn.get(qe),
      1,
      body,
    );
  };

  fn.get(P.S).set(xs);
  fn.get(xs).i32(kb).op(OP.i32Add).set(rs);
  fn.get(rs).i32(kb).op(OP.i32Add).set(ps);
  fn.get(ps).i32(kb).op(OP.i32Add).set(aps);

  fn.forRange(
    u,
    () => fn.get(P.start),
    () => fn.get(P.end),
    1,
    () => {
      fn.get(P.X).get(u).i32(kb).op(OP.i32Mul).op(OP.i32Add).set(xo);
      fn.get(P.indptr).get(u).i32(2).op(OP.i32Shl).op(OP.i32Add).op(0x28, 2, 4).set(qe); // indptr[u+1]
      V.copy(at(xs), at(xo));
      // lv = splat(R[u]), the row's λ
      fn.get(P.R)
        .get(u)
        .i32(2)
        .op(OP.i32Shl)
        .op(OP.i32Add)
        .op(...OP.f32Load);
      fn.simd(SIMD.f32x4Splat).set(lv);
      // r = b − A x: start from −(G + λ_u I) x, then add each entry's term.
      symv(xs, rs, true);
      V.axpy(at(rs), lv, at(xs), true);
      rowEntries(() => {
        loadEntry();
        // t = (w > 0 ? 1 + c1 : 0) − c1 · (y · x)
        fn.f32(1).get(c1).op(OP.f32Add).f32(0).get(w).f32(0).op(OP.f32Gt).op(OP.select);
        fn.get(c1);
        V.dot(at(yo), at(xs));
        fn.op(OP.f32Mul).op(OP.f32Sub).set(t);
        fn.get(t).simd(SIMD.f32x4Splat).set(sv);
        V.axpy(at(rs), sv, at(yo));
      });
      V.copy(at(ps), at(rs));
      V.dot(at(rs), at(rs));
      fn.op(OP.f64Promote).set(rsold);
      fn.block((rowDone) => {
        fn.get(rsold).f64(1e-20).op(OP.f64Lt).brIf(rowDone);
        fn.block((cgDone) => {
          fn.forRange(
            step,
            () => fn.i32(0),
            () => fn.get(P.steps),
            1,
            () => {
              symv(ps, aps, false);
              V.axpy(at(aps), lv, at(ps));
              rowEntries(() => {
                loadEntry();
                fn.get(c1);
                V.dot(at(yo), at(ps));
                fn.op(OP.f32Mul).simd(SIMD.f32x4Splat).set(sv);
                V.axpy(at(aps), sv, at(yo));
              });
              V.dot(at(ps), at(aps));
              fn.op(OP.f64Promote).set(pap);
              fn.get(pap).f64(0).op(OP.f64Gt).op(OP.i32Eqz).brIf(cgDone);
              // α = rsold / pAp; x += αp; r −= αAp
              fn.get(rsold).get(pap).op(OP.f64Div).op(OP.f32Demote).simd(SIMD.f32x4Splat).set(sv);
              V.axpy(at(xs), sv, at(ps));
              V.axpy(at(rs), sv, at(aps), true);
              V.dot(at(rs), at(rs));
              fn.op(OP.f64Promote).set(rsnew);
              fn.get(rsnew).f64(1e-20).op(OP.f64Lt).brIf(cgDone);
              // p = r + (rsnew / rsold) p
              fn.get(rsnew).get(rsold).op(OP.f64Div).op(OP.f32Demote).simd(SIMD.f32x4Splat).set(sv);
              V.each(at(ps), (j) => {
                V.load(at(rs), j);
                fn.get(sv);
                V.load(at(ps), j);
                fn.simd(SIMD.f32x4Mul).simd(SIMD.f32x4Add);
              });
              fn.get(rsnew).set(rsold);
            },
          );
        });
        V.copy(at(xo), at(xs));
      });
    },
  );
  return fn;
}

/**
 * gram(Y, k, start, end, out, tmp): accumulates YᵀY of rows [start, end) into the upper triangle
 * (from the even column at or left of the diagonal) of the k×k float64 matrix at `out`. Rows are
 * widened to float64 in `tmp` (4k doubles) and folded four at a time, as the JS kernel does.
 */
function buildGram(): FnBuilder {
  const P = { Y: 0, k: 1, start: 2, end: 3, out: 4, tmp: 5 };
  const fn = new FnBuilder([I32, I32, I32, I32, I32, I32]);
  const r = fn.local(I32);
  const j = fn.local(I32);
  const f = fn.local(I32);
  const a = fn.local(I32);
  const b = fn.local(I32);
  const o = fn.local(I32);
  const y = [fn.local(V128), fn.local(V128), fn.local(V128), fn.local(V128)];

  /** Folds `rows` rows starting at r into out. */
  const foldRows = (rows: number): void => {
    // tmp[j*k + f] = (f64) Y[(r+j)*k + f]
    fn.forRange(
      j,
      () => fn.i32(0),
      () => fn.i32(rows),
      1,
      () => {
        fn.forRange(
          f,
          () => fn.i32(0),
          () => fn.get(P.k),
          2,
          () => {
            fn.get(P.tmp)
              .get(j)
              .get(P.k)
              .op(OP.i32Mul)
              .get(f)
              .op(OP.i32Add)
              .i32(3)
              .op(OP.i32Shl)
              .op(OP.i32Add);
            fn.get(P.Y)
              .get(r)
              .get(j)
              .op(OP.i32Add)
              .get(P.k)
              .op(OP.i32Mul)
              .get(f)
              .op(OP.i32Add)
              .i32(2)
              .op(OP.i32Shl)
              .op(OP.i32Add);
            fn.simd(SIMD.load64Zero, 3, 0).simd(SIMD.f64x2PromoteLow);
            fn.simd(SIMD.store, 4, 0);
          },
        );
      },
    );
    fn.forRange(
      a,
      () => fn.i32(0),
      () => fn.get(P.k),
      1,
      () => {
        for (let t = 0; t < rows; t++) {
          fn.get(P.tmp).i32(t).get(P.k).op(OP.i32Mul).get(a).op(OP.i32Add).i32(3).op(OP.i32Shl).op(OP.i32Add);
          fn.op(0x2b, 3, 0).simd(SIMD.f64x2Splat).set(y[t]); // f64.load, splat
        }
        fn.forRange(
          b,
          () => fn.get(a).i32(-2).op(0x71), // a & ~1
          () => fn.get(P.k),
          2,
          () => {
            fn.get(P.out)
              .get(a)
              .get(P.k)
              .op(OP.i32Mul)
              .get(b)
              .op(OP.i32Add)
              .i32(3)
              .op(OP.i32Shl)
              .op(OP.i32Add)
              .set(o);
            fn.get(o);
            fn.get(o).simd(SIMD.load, 4, 0);
            for (let t = 0; t < rows; t++) {
              fn.get(y[t]);
              fn.get(P.tmp)
                .i32(t)
                .get(P.k)
                .op(OP.i32Mul)
                .get(b)
                .op(OP.i32Add)
                .i32(3)
                .op(OP.i32Shl)
                .op(OP.i32Add);
              fn.simd(SIMD.load, 4, 0).simd(SIMD.f64x2Mul).simd(SIMD.f64x2Add);
            }
            fn.simd(SIMD.store, 4, 0);
          },
        );
      },
    );
  };

  fn.get(P.start).set(r);
  fn.block((exit) => {
    fn.loop((top) => {
      fn.get(r).i32(4).op(OP.i32Add).get(P.end).op(0x4a).brIf(exit); // r + 4 > end
      foldRows(4);
      fn.get(r).i32(4).op(OP.i32Add).set(r);
      fn.br(top);
    });
  });
  fn.block((exit) => {
    fn.loop((top) => {
      fn.get(r).get(P.end).op(0x4e).brIf(exit); // r >= end
      foldRows(1);
      fn.get(r).i32(1).op(OP.i32Add).set(r);
      fn.br(top);
    });
  });
  return fn;
}

/**
 * bpr(indptr, indices, qbuf, X, Y, bias, k, nItems, lr, reg, count, state, negatives) → correct:
 * one sorted block of kernels.ts `bprEpoch` (with `negatives` candidates per sample, the
 * highest-scoring kept). `qbuf` holds `count` ascending stored-entry indices (the
 * positives); negatives come from the xoshiro128** stream in `state` with the same Lemire reduction
 * as `Rng.int`, so the kernel visits the same (u, i, j) triples as the JavaScript one. `state` points
 * to six i32: the 4 generator words (updated), the skipped-sample count (written) and the row of
 * `qbuf[0]` (read). Function 0 of the module is the imported Math.exp.
 */
function buildBpr(k: number): FnBuilder {
  const P = {
    indptr: 0,
    indices: 1,
    qbuf: 2,
    X: 3,
    Y: 4,
    bias: 5,
    k: 6,
    nItems: 7,
    lr: 8,
    reg: 9,
    samples: 10,
    state: 11,
    negatives: 12,
  };
  const fn = new FnBuilder([I32, I32, I32, I32, I32, I32, I32, I32, F32, F32, I32, I32, I32]);
  const [s0, s1, s2, s3] = [fn.local(I32), fn.local(I32), fn.local(I32), fn.local(I32)];
  const tmp = fn.local(I32);
  const n = fn.local(I32);
  const draw = fn.local(I32);
  const bound = fn.local(I32);
  const thresh = fn.local(I32);
  const m = fn.local(I64);
  const threshItems = fn.local(I32);
  const u = fn.local(I32);
  const i = fn.local(I32);
  const jj = fn.local(I32);
  const rs = fn.local(I32);
  const re = fn.local(I32);
  const tries = fn.local(I32);
  const lo = fn.local(I32);
  const hi = fn.local(I32);
  const mid = fn.local(I32);
  const found = fn.local(I32);
  const kb = fn.local(I32);
  const uo = fn.local(I32);
  const io = fn.local(I32);
  const jo = fn.local(I32);
  const correct = fn.local(I32);
  const skipped = fn.local(I32);
  const xuij = fn.local(F32);
  const z = fn.local(F32);
  const accs = [fn.local(V128), fn.local(V128), fn.local(V128), fn.local(V128)];
  const V = new VecOps(fn, k);
  const wu = fn.local(V128);
  const hiV = fn.local(V128);
  const hjV = fn.local(V128);
  const zv = fn.local(V128);
  const lrv = fn.local(V128);
  const regv = fn.local(V128);
  const bi = fn.local(F32);
  const bj = fn.local(F32);
  const cand = fn.local(I32);
  const cidx = fn.local(I32);
  const co = fn.local(I32);
  const best = fn.local(F32);
  const sc = fn.local(F32);

  const i32At = (base: number, idx: number, offset = 0): void =>
    void fn.get(base).get(idx).i32(2).op(OP.i32Shl).op(OP.i32Add).op(0x28, 2, offset);

  /** draw = next(): xoshiro128**. */
  const next = (): void => {
    fn.get(s1).i32(5).op(OP.i32Mul).i32(7).op(0x77).i32(9).op(OP.i32Mul).set(draw);
    fn.get(s1).i32(9).op(OP.i32Shl).set(tmp);
    fn.get(s2).get(s0).op(0x73).set(s2);
    fn.get(s3).get(s1).op(0x73).set(s3);
    fn.get(s1).get(s2).op(0x73).set(s1);
    fn.get(s0).get(s3).op(0x73).set(s0);
    fn.get(s2).get(tmp).op(0x73).set(s2);
    fn.get(s3).i32(11).op(0x77).set(s3);
  };
  /** Leaves int(bound) in `draw` (Lemire: accept when the low word ≥ 2^32 mod bound). */
  const intBelow = (boundLocal: number, threshLocal: number): void => {
    fn.get(boundLocal).set(bound);
    fn.get(threshLocal).set(thresh);
    fn.block((done) => {
      fn.loop((again) => {
        next();
        fn.get(draw).op(0xad).get(bound).op(0xad).op(0x7e).set(m); // m = u64(draw) * u64(bound)
        fn.get(m).op(0xa7).get(thresh).op(0x49).brIf(again); // low <u thresh → redraw
        fn.get(m).op(0x42, 32).op(0x88).op(0xa7).set(draw); // high word
        fn.br(done);
      });
    });
  };

  /** found = sortedContains(indices, rs, re, v): binary search of the user's sorted row. */
  const contains = (v: number): void => {
    fn.i32(0).set(found);
    fn.get(rs).set(lo);
    fn.get(re).i32(1).op(OP.i32Sub).set(hi);
    fn.block((searched) => {
      fn.loop((step) => {
        fn.get(lo).get(hi).op(0x4a).brIf(searched); // lo > hi
        fn.get(lo).get(hi).op(OP.i32Add).i32(1).op(0x76).set(mid);
        i32At(P.indices, mid);
        fn.set(tmp);
        fn.get(tmp).get(v).op(0x48); // m < v
        fn.ifElse(
          () => fn.get(mid).i32(1).op(OP.i32Add).set(lo),
          () => {
            fn.get(tmp).get(v).op(0x4a); // m > v
            fn.ifElse(
              () => fn.get(mid).i32(1).op(OP.i32Sub).set(hi),
              () => {
                fn.i32(1).set(found);
                fn.br(searched);
              },
            );
          },
        );
        fn.br(step);
      });
    });
  };
  /** Pushes bias[item] + x_u · y_item (uo must be set). */
  const score = (item: number): void => {
    fn.get(P.Y).get(item).get(kb).op(OP.i32Mul).op(OP.i32Add).set(co);
    V.dot(
      () => fn.get(uo),
      () => fn.get(co),
    );
    fn.get(P.bias)
      .get(item)
      .i32(2)
      .op(OP.i32Shl)
      .op(OP.i32Add)
      .op(...OP.f32Load);
    fn.op(OP.f32Add);
  };

  fn.get(P.k).i32(2).op(OP.i32Shl).set(kb);
  fn.get(P.state).op(0x28, 2, 0).set(s0);
  fn.get(P.state).op(0x28, 2, 4).set(s1);
  fn.get(P.state).op(0x28, 2, 8).set(s2);
  fn.get(P.state).op(0x28, 2, 12).set(s3);
  fn.get(P.lr).simd(SIMD.f32x4Splat).set(lrv);
  fn.get(P.reg).simd(SIMD.f32x4Splat).set(regv);
  // The row of the block's first entry comes in state[5]; rows only advance as entries ascend.
  fn.get(P.state).op(0x28, 2, 20).set(u);
  fn.i32(0).get(P.nItems).op(OP.i32Sub).get(P.nItems).op(0x70).set(threshItems); // (2^32 − n) mod n

  fn.forRange(
    n,
    () => fn.i32(0),
    () => fn.get(P.samples),
    1,
    () => {
      fn.block((nextSample) => {
        i32At(P.qbuf, n);
        fn.set(draw);
        // while (indptr[u + 1] <= q) u++
        fn.block((found) => {
          fn.loop((again) => {
            i32At(P.indptr, u, 4);
            fn.get(draw).op(0x4a).brIf(found); // indptr[u+1] > q
            fn.get(u).i32(1).op(OP.i32Add).set(u);
            fn.br(again);
          });
        });
        i32At(P.indices, draw);
        fn.set(i);
        i32At(P.indptr, u);
        fn.set(rs);
        i32At(P.indptr, u, 4);
        fn.set(re);
        fn.get(re).get(rs).op(OP.i32Sub).get(P.nItems).op(0x4e); // re − rs ≥ nItems
        fn.ifElse(() => {
          fn.get(skipped).i32(1).op(OP.i32Add).set(skipped);
          fn.br(nextSample);
        });
        intBelow(P.nItems, threshItems);
        fn.get(draw).set(jj);
        fn.i32(1).set(tries);
        fn.block((sampled) => {
          fn.loop((retry) => {
            contains(jj);
            fn.get(found).op(OP.i32Eqz).brIf(sampled);
            fn.get(tries).i32(1).op(OP.i32Add).set(tries);
            fn.get(tries).i32(64).op(0x4a); // tries > 64
            fn.ifElse(() => {
              fn.get(skipped).i32(1).op(OP.i32Add).set(skipped);
              fn.br(nextSample);
            });
            intBelow(P.nItems, threshItems);
            fn.get(draw).set(jj);
            fn.br(retry);
          });
        });
        fn.get(P.X).get(u).get(kb).op(OP.i32Mul).op(OP.i32Add).set(uo);
        // Dynamic negative sampling: keep the hardest of `negatives` uniform non-positives.
        fn.get(P.negatives).i32(1).op(0x4a); // negatives > 1
        fn.ifElse(() => {
          score(jj);
          fn.set(best);
          fn.forRange(
            cidx,
            () => fn.i32(1),
            () => fn.get(P.negatives),
            1,
            () => {
              intBelow(P.nItems, threshItems);
              fn.get(draw).set(cand);
              contains(cand);
              fn.get(found).op(OP.i32Eqz);
              fn.ifElse(() => {
                score(cand);
                fn.set(sc);
                fn.get(sc).get(best).op(OP.f32Gt);
                fn.ifElse(() => {
                  fn.get(sc).set(best);
                  fn.get(cand).set(jj);
                });
              });
            },
          );
        });
        fn.get(P.Y).get(i).get(kb).op(OP.i32Mul).op(OP.i32Add).set(io);
        fn.get(P.Y).get(jj).get(kb).op(OP.i32Mul).op(OP.i32Add).set(jo);
        fn.get(P.bias)
          .get(i)
          .i32(2)
          .op(OP.i32Shl)
          .op(OP.i32Add)
          .op(...OP.f32Load)
          .set(bi);
        fn.get(P.bias)
          .get(jj)
          .i32(2)
          .op(OP.i32Shl)
          .op(OP.i32Add)
          .op(...OP.f32Load)
          .set(bj);
        // x_uij = b_i − b_j + x_u · (y_i − y_j)
        fn.get(bi).get(bj).op(OP.f32Sub);
        for (let j = 0; j < k / 4; j++) {
          const a = accs[j % 4];
          if (j >= 4) fn.get(a);
          V.load(() => fn.get(uo), j);
          V.load(() => fn.get(io), j);
          V.load(() => fn.get(jo), j);
          fn.simd(SIMD.f32x4Sub).simd(SIMD.f32x4Mul);
          if (j >= 4) fn.simd(SIMD.f32x4Add);
          fn.set(a);
        }
        fn.get(accs[0]);
        for (let r = 1; r < Math.min(4, k / 4); r++) fn.get(accs[r]).simd(SIMD.f32x4Add);
        V.hsum();
        fn.op(OP.f32Add).set(xuij);
        fn.get(xuij).f32(0).op(OP.f32Gt);
        fn.ifElse(() => fn.get(correct).i32(1).op(OP.i32Add).set(correct));
        // z = 1 / (1 + exp(x_uij))
        fn.f32(1)
          .f32(1)
          .get(xuij)
          .op(OP.f64Promote)
          .op(0x10, 0)
          .op(OP.f32Demote)
          .op(OP.f32Add)
          .op(0x95)
          .set(z);
        // b_i += lr (z − reg b_i); b_j += lr (−z − reg b_j)
        fn.get(P.bias).get(i).i32(2).op(OP.i32Shl).op(OP.i32Add);
        fn.get(bi)
          .get(P.lr)
          .get(z)
          .get(P.reg)
          .get(bi)
          .op(OP.f32Mul)
          .op(OP.f32Sub)
          .op(OP.f32Mul)
          .op(OP.f32Add);
        fn.op(...OP.f32Store);
        fn.get(P.bias).get(jj).i32(2).op(OP.i32Shl).op(OP.i32Add);
        fn.get(bj)
          .get(P.lr)
          .f32(0)
          .get(z)
          .op(OP.f32Sub)
          .get(P.reg)
          .get(bj)
          .op(OP.f32Mul)
          .op(OP.f32Sub)
          .op(OP.f32Mul)
          .op(OP.f32Add);
        fn.op(...OP.f32Store);
        fn.get(z).simd(SIMD.f32x4Splat).set(zv);
        for (let j = 0; j < k / 4; j++) {
          const off = uleb(16 * j);
          fn.get(uo)
            .simd(SIMD.load, 4, ...off)
            .set(wu);
          fn.get(io)
            .simd(SIMD.load, 4, ...off)
            .set(hiV);
          fn.get(jo)
            .simd(SIMD.load, 4, ...off)
            .set(hjV);
          // x_u = w + lr (z (h_i − h_j) − reg w)
          fn.get(uo);
          fn.get(wu).get(lrv).get(zv).get(hiV).get(hjV).simd(SIMD.f32x4Sub).simd(SIMD.f32x4Mul);
          fn.get(regv)
            .get(wu)
            .simd(SIMD.f32x4Mul)
            .simd(SIMD.f32x4Sub)
            .simd(SIMD.f32x4Mul)
            .simd(SIMD.f32x4Add);
          fn.simd(SIMD.store, 4, ...off);
          // y_i = h_i + lr (z w − reg h_i)
          fn.get(io);
          fn.get(hiV).get(lrv).get(zv).get(wu).simd(SIMD.f32x4Mul);
          fn.get(regv)
            .get(hiV)
            .simd(SIMD.f32x4Mul)
            .simd(SIMD.f32x4Sub)
            .simd(SIMD.f32x4Mul)
            .simd(SIMD.f32x4Add);
          fn.simd(SIMD.store, 4, ...off);
          // y_j = h_j + lr (−z w − reg h_j) = h_j − lr (z w + reg h_j)
          fn.get(jo);
          fn.get(hjV).get(lrv).get(zv).get(wu).simd(SIMD.f32x4Mul);
          fn.get(regv)
            .get(hjV)
            .simd(SIMD.f32x4Mul)
            .simd(SIMD.f32x4Add)
            .simd(SIMD.f32x4Mul)
            .simd(SIMD.f32x4Sub);
          fn.simd(SIMD.store, 4, ...off);
        }
      });
    },
  );
  fn.get(P.state).get(s0).op(0x36, 2, 0);
  fn.get(P.state).get(s1).op(0x36, 2, 4);
  fn.get(P.state).get(s2).op(0x36, 2, 8);
  fn.get(P.state).get(s3).op(0x36, 2, 12);
  fn.get(P.state).get(skipped).op(0x36, 2, 16);
  fn.get(correct);
  return fn;
}

/**
 * Assembles the module: imports `env.exp` (function 0) and `env.memory` (shared or not); exports
 * `alsCg` (1), `gram` (2) and `bpr` (3).
 */
function buildModule(shared: boolean, k: number): Uint8Array {
  const fns: { name: string; fn: FnBuilder; results: ValType[] }[] = [
    { name: 'alsCg', fn: buildAlsCg(k), results: [] },
    { name: 'gram', fn: buildGram(), results: [] },
    { name: 'bpr', fn: buildBpr(k), results: [I32] },
  ];
  const funcType = (params: ValType[], results: ValType[]): number[] => [
    0x60,
    ...uleb(params.length),
    ...params,
    ...uleb(results.length),
    ...results,
  ];
  const types = [funcType([F64], [F64]), ...fns.map((x) => funcType(x.fn.params, x.results))];
  // Memory limits: 0x03 = shared with a maximum; 0x00 = minimum only. The actual size comes from
  // the imported memory.
  const limits = shared ? [0x03, ...uleb(1), ...uleb(65536)] : [0x00, ...uleb(1)];
  const imports = [
    ...uleb(2),
    ...str('env'),
    ...str('exp'),
    0x00,
    0,
    ...str('env'),
    ...str('memory'),
    0x02,
    ...limits,
  ];
  const exports: number[] = [...uleb(fns.length)];
  fns.forEach((x, q) => exports.push(...str(x.name), 0x00, ...uleb(q + 1)));
  const code: number[] = [...uleb(fns.length)];
  for (const x of fns) code.push(...x.fn.encode());
  const bytes = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, [...uleb(types.length), ...types.flat()]),
    ...section(2, imports),
    ...section(3, [...uleb(fns.length), ...fns.map((_, q) => q + 1)]),
    ...section(7, exports),
    ...section(10, code),
  ];
  return new Uint8Array(bytes);
}

interface Kernels {
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
  gram: (Y: number, k: number, start: number, end: number, out: number, tmp: number) => void;
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

/** Compiled modules by memory kind and factor count (each module is specialised for one k). */
const modules = new Map<string, WasmModule>();
function getModule(shared: boolean, k: number): WasmModule {
  const key = `${shared}:${k}`;
  const cached = modules.get(key);
  if (cached !== undefined) return cached;
  const m = new WA.Module(buildModule(shared, k));
  modules.set(key, m);
  return m;
}

let simdSupport: boolean | undefined;
/** True when this runtime runs WebAssembly SIMD (and shared memories, for the pool). */
export function wasmSimdSupported(): boolean {
  if (simdSupport === undefined) {
    try {
      simdSupport =
        typeof WA === 'object' && WA.validate(buildModule(false, 8)) && WA.validate(buildModule(true, 8));
    } catch {
      simdSupport = false;
    }
  }
  return simdSupport;
}

// ---------------------------------------------------------------------------------------------
// Memory arena.
// ---------------------------------------------------------------------------------------------

const PAGE = 65536;
/** Largest arena: 4 GiB minus a page (wasm32's address space). */
export const WASM_ARENA_MAX_BYTES = 65535 * PAGE;
let nextArenaId = 1;

/**
 * A bump allocator over one WebAssembly.Memory sized up front (it never grows, so views stay
 * valid). Shared arenas are backed by a SharedArrayBuffer and can be handed to worker threads.
 */
export class WasmArena {
  readonly memory: WasmMemory;
  readonly shared: boolean;
  /** Distinguishes arenas so threads can cache one instance per arena. */
  readonly id: number;
  private offset = 64; // keep address 0 unused

  constructor(bytes: number, shared: boolean) {
    const pages = Math.ceil((bytes + 64) / PAGE);
    if (pages * PAGE > WASM_ARENA_MAX_BYTES)
      throw new RangeError(`wasm arena of ${bytes} bytes exceeds 4 GiB`);
    this.memory = shared
      ? new WA.Memory({ initial: pages, maximum: pages, shared: true })
      : new WA.Memory({ initial: pages });
    this.shared = shared;
    this.id = nextArenaId++;
  }

  /** Bytes an allocation of `n` elements of `bytesPerElement` takes, with 16-byte alignment. */
  static size(n: number, bytesPerElement: number): number {
    return Math.ceil((n * bytesPerElement) / 16) * 16;
  }

  private take(bytes: number): number {
    const at = this.offset;
    const size = Math.ceil(bytes / 16) * 16;
    if (at + size > this.memory.buffer.byteLength) throw new RangeError('wasm arena exhausted');
    this.offset = at + size;
    return at;
  }

  float32(n: number): Float32Array {
    return new Float32Array(this.memory.buffer, this.take(n * 4), n);
  }
  int32(n: number): Int32Array {
    return new Int32Array(this.memory.buffer, this.take(n * 4), n);
  }
  float64(n: number): Float64Array {
    return new Float64Array(this.memory.buffer, this.take(n * 8), n);
  }
}

/** The part of an arena a task needs to reach its memory. */
export function wasmRef(arena: WasmArena): WasmMemoryRef {
  return { memory: arena.memory, arenaId: arena.id, shared: arena.shared };
}

/** What every wasm task carries: the arena's memory, to instantiate the kernels against. */
export interface WasmMemoryRef {
  memory: WasmMemory;
  arenaId: number;
  shared: boolean;
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

// One instance per thread for the current arena and k (a new fit brings a new arena).
let instanceKey = '';
let instance: Kernels | null = null;

function kernelsFor(ref: WasmMemoryRef, k: number): Kernels {
  checkFactors(k);
  const key = `${ref.arenaId}:${k}`;
  if (instance === null || instanceKey !== key) {
    const inst = new WA.Instance(getModule(ref.shared, k), { env: { memory: ref.memory, exp: Math.exp } });
    instance = inst.exports as unknown as Kernels;
    instanceKey = key;
  }
  return instance;
}

/** Largest factor count the (fully unrolled) kernels are built for. */
export const WASM_MAX_FACTORS = 1024;

function checkFactors(k: number): void {
  if (k % 4 !== 0 || k < 4 || k > WASM_MAX_FACTORS) {
    throw new RangeError(`wasm kernels need factors divisible by 4, at most ${WASM_MAX_FACTORS}`);
  }
}

/** Runs implicit's CG update for rows [start, end) with the SIMD kernel. */
export function alsCgRowsWasm(a: WasmAlsArgs): void {
  if (a.scratch.length < 4 * a.k) throw new RangeError('wasm ALS kernel scratch too small');
  kernelsFor(a, a.k).alsCg(
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
  kernelsFor(a, a.k).gram(a.Y.byteOffset, a.k, a.rowStart, a.rowEnd, a.out.byteOffset, a.tmp.byteOffset);
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
  const kernels = kernelsFor(a, a.k);
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
