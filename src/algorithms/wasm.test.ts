import { describe, expect, it } from 'vitest';
import { alsCgRows, bprEpoch, gramian } from './kernels.ts';
import { Rng } from './random.ts';
import { csrFromCoo, type Csr } from './sparse.ts';
import { alsCgRowsWasm, bprEpochWasm, gramianWasm, WasmArena, wasmRef, wasmSimdSupported } from './wasm.ts';

function randomCsr(rng: Rng, rows: number, cols: number, perRow: number): Csr {
  const r: number[] = [];
  const c: number[] = [];
  const v: number[] = [];
  for (let u = 0; u < rows; u++) {
    // Uneven row lengths, including empty rows.
    const n = u % 7 === 0 ? 0 : 1 + rng.int(2 * perRow);
    for (let j = 0; j < n; j++) {
      r.push(u);
      c.push(rng.int(cols));
      v.push(rng.float() < 0.1 ? -1 : 0.5 + rng.float() * 3);
    }
  }
  return csrFromCoo(rows, cols, r, c, v);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

function maxAbs(a: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]));
  return d;
}

describe('wasm SIMD kernels', () => {
  it('are supported by this runtime', () => {
    expect(wasmSimdSupported()).toBe(true);
  });

  it('arena allocations are 16-byte aligned views of one memory', () => {
    const arena = new WasmArena(1000, true);
    expect(arena.memory.buffer).toBeInstanceOf(SharedArrayBuffer);
    const a = arena.float32(3);
    const b = arena.int32(5);
    const c = arena.float64(2);
    for (const v of [a, b, c]) {
      expect(v.buffer).toBe(arena.memory.buffer);
      expect(v.byteOffset % 16).toBe(0);
    }
    expect(b.byteOffset).toBeGreaterThanOrEqual(a.byteOffset + 12);
    expect(() => arena.float32(1e6)).toThrow(RangeError);
  });

  it('ALS CG rows (per-row λ) match the double-precision JavaScript reference', () => {
    const rng = new Rng(1);
    for (const k of [4, 16, 32, 36, 64]) {
      const users = 60;
      const items = 40;
      const m = randomCsr(rng, users, items, 8);
      const z = m.indptr[users];
      const arena = new WasmArena(
        4 * (z * 2 + 2 * users + 1 + (users + items) * k + k * k + 4 * k) + 4096,
        false,
      );
      const indptr = arena.int32(users + 1);
      indptr.set(m.indptr);
      const indices = arena.int32(z);
      indices.set(m.indices);
      const data = arena.float32(z);
      data.set(m.data);
      const X = arena.float32(users * k);
      const Y = arena.float32(items * k);
      for (let q = 0; q < X.length; q++) X[q] = rng.float() * 0.1;
      for (let q = 0; q < Y.length; q++) Y[q] = rng.float() * 0.5 - 0.2;
      const gram = new Float64Array(k * k);
      gramian(Y, k, 0, items, gram);
      const gram32 = arena.float32(k * k);
      gram32.set(gram);
      // Frequency-scaled λ differs per row.
      const rowReg = arena.float32(users);
      for (let u = 0; u < users; u++) rowReg[u] = 0.05 + rng.float() * 2;
      const ref = new Float32Array(X);
      alsCgRows({
        indptr: m.indptr,
        indices: m.indices,
        data: m.data,
        X: ref,
        Y,
        gram,
        rowReg,
        k,
        alpha: 2,
        cgSteps: 3,
        solver: 'cg',
        start: 0,
        end: users,
      });
      alsCgRowsWasm({
        ...wasmRef(arena),
        indptr,
        indices,
        data,
        X,
        Y,
        gram: gram32,
        rowReg,
        scratch: arena.float32(4 * k),
        k,
        alpha: 2,
        cgSteps: 3,
        start: 0,
        end: users,
      });
      expect(maxAbsDiff(X, ref)).toBeLessThan(1e-4 * Math.max(1, maxAbs(ref)));
      // Rows changed (the check above is not vacuous).
      expect(maxAbsDiff(ref, new Float32Array(ref.length).fill(0))).toBeGreaterThan(0.01);
    }
  });

  it('Gramian blocks match the JavaScript kernel, including leftover rows', () => {
    const rng = new Rng(2);
    for (const [rows, k] of [
      [1, 4],
      [7, 8],
      [103, 64],
    ]) {
      const arena = new WasmArena(rows * k * 4 + 16 * k * k + 64 * k + 4096, false);
      const Y = arena.float32(rows * k);
      for (let q = 0; q < Y.length; q++) Y[q] = rng.float() - 0.5;
      const out = arena.float64(k * k);
      const tmp = arena.float64(4 * k);
      const from = rows > 5 ? 2 : 0;
      gramianWasm({ ...wasmRef(arena), Y, k, rowStart: from, rowEnd: rows, out, tmp });
      const ref = new Float64Array(k * k);
      gramian(Y, k, from, rows, ref);
      expect(maxAbsDiff(out, ref)).toBeLessThan(1e-9 * Math.max(1, maxAbs(ref)));
    }
  });

  it.each([1, 4])(
    'a BPR epoch (%i negative candidates) draws the same samples as the JavaScript kernel',
    (negatives) => {
      const rng = new Rng(3);
      const k = 16;
      const users = 200;
      const items = 50;
      const m = randomCsr(rng, users, items, 10);
      // One user with every item exercises the skip path.
      const full = csrFromCoo(
        users + 1,
        items,
        [
          ...Array.from({ length: m.indptr[users] }, (_, q) => userOfEntry(m, q)),
          ...Array.from({ length: items }, () => users),
        ],
        [...m.indices, ...Array.from({ length: items }, (_, i) => i)],
        null,
      );
      const z = full.indptr[users + 1];
      const arena = new WasmArena(
        4 * (3 * z + users + 2 + (users + 1 + items) * k + items + 8) + 8192,
        false,
      );
      const indptr = arena.int32(users + 2);
      indptr.set(full.indptr);
      const indices = arena.int32(z);
      indices.set(full.indices);
      const qbuf = arena.int32(z);
      const X = arena.float32((users + 1) * k);
      const Y = arena.float32(items * k);
      const bias = arena.float32(items);
      for (let q = 0; q < X.length; q++) X[q] = (rng.float() - 0.5) / k;
      for (let q = 0; q < Y.length; q++) Y[q] = (rng.float() - 0.5) / k;
      const Xr = new Float32Array(X);
      const Yr = new Float32Array(Y);
      const br = new Float32Array(bias);
      const state = arena.int32(6);
      for (let epoch = 0; epoch < 3; epoch++) {
        const common = {
          indptr,
          indices,
          k,
          nItems: items,
          learningRate: 0.05,
          regularization: 0.01,
          // Several sorted blocks per epoch, the last one short.
          samples: z + 123,
          blockSize: Math.ceil(z / 3),
          seed: 10 + epoch,
          negatives,
        };
        const ref = bprEpoch({ ...common, X: Xr, Y: Yr, bias: br });
        const got = bprEpochWasm({ ...common, ...wasmRef(arena), X, Y, bias, state, qbuf });
        expect(got.skipped).toBe(ref.skipped);
        expect(ref.skipped).toBeGreaterThan(0);
        expect(Math.abs(got.correct - ref.correct)).toBeLessThanOrEqual(2);
      }
      expect(maxAbsDiff(X, Xr)).toBeLessThan(1e-5);
      expect(maxAbsDiff(Y, Yr)).toBeLessThan(1e-5);
      expect(maxAbsDiff(bias, br)).toBeLessThan(1e-5);
      expect(maxAbs(bias)).toBeGreaterThan(0.01);
    },
  );
});

function userOfEntry(m: Csr, q: number): number {
  let u = 0;
  while (m.indptr[u + 1] <= q) u++;
  return u;
}
