/**
 * Loads the committed kernel binaries (`NAME.wasm`, `NAME.shared.wasm`, assembled from `NAME.wat`
 * beside them by build.ts) and instantiates them against an arena's memory. The binaries are read
 * relative to this module, so the same code works from the sources (tsx, vitest) and from the
 * compiled build (`npm run build` copies them next to load.js).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// The project compiles without the DOM lib, which is where TypeScript declares WebAssembly; these
// are the few members used here.
/** A WebAssembly.Memory, as much of it as the kernels' callers use. */
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}
/** A compiled WebAssembly.Module. */
export interface WasmModule {
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
/** The runtime's WebAssembly namespace (undefined where the runtime has none). */
export const WA = (globalThis as unknown as { WebAssembly: WasmApi | undefined }).WebAssembly;

/** The kernels (ALS CG rows, Gramian, BPR epoch): one source and two binaries each. */
export const KERNEL_NAMES = ['als', 'gramian', 'bpr'] as const;
export type KernelName = (typeof KERNEL_NAMES)[number];

/** The binary of a kernel for a plain or a shared memory. */
export function kernelFile(name: KernelName, shared: boolean): string {
  return `${name}${shared ? '.shared' : ''}.wasm`;
}

/** The committed bytes of one kernel binary. */
export function kernelBytes(name: KernelName, shared: boolean): Uint8Array {
  const url = new URL(`./${kernelFile(name, shared)}`, import.meta.url);
  try {
    return readFileSync(url);
  } catch (err) {
    throw new Error(
      `WebAssembly kernel ${fileURLToPath(url)} is missing (sources: \`npm run build:kernels\`; ` +
        `compiled build: \`npm run build\` copies it): ${(err as Error).message}`,
    );
  }
}

/** Compiled modules, once per thread for each kernel and memory kind. */
const modules = new Map<string, WasmModule>();

/** The compiled module of one kernel binary. */
export function kernelModule(name: KernelName, shared: boolean): WasmModule {
  const key = kernelFile(name, shared);
  let m = modules.get(key);
  if (m === undefined) {
    if (WA === undefined) throw new Error('this runtime has no WebAssembly');
    m = new WA.Module(kernelBytes(name, shared));
    modules.set(key, m);
  }
  return m;
}

/**
 * Instantiates one kernel against `memory` (which must be shared exactly when `shared` is). The
 * imports every kernel may use: `env.memory` and `env.exp` (Math.exp, for BPR's logistic).
 */
export function instantiateKernel(
  name: KernelName,
  memory: WasmMemory,
  shared: boolean,
): Record<string, unknown> {
  if (WA === undefined) throw new Error('this runtime has no WebAssembly');
  return new WA.Instance(kernelModule(name, shared), { env: { memory, exp: Math.exp } }).exports;
}

/** Whether this runtime accepts every kernel binary (SIMD, and shared memories for the pool). */
export function kernelsValidate(): boolean {
  if (WA === undefined) return false;
  return KERNEL_NAMES.every(
    (name) => WA.validate(kernelBytes(name, false)) && WA.validate(kernelBytes(name, true)),
  );
}
