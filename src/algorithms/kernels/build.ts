/**
 * Assembles the WebAssembly text sources in this folder (`*.wat`) into the committed `.wasm`
 * binaries the run time loads (load.ts). `npm run build:kernels` writes them; build.test.ts
 * assembles them again in memory and requires the same bytes, so the binaries can only be what
 * the reviewed sources say.
 *
 * Each source yields two binaries: `NAME.wasm` imports a plain memory, `NAME.shared.wasm` the
 * same memory declared shared (a WasmArena backed by a SharedArrayBuffer, which worker threads use):
 * WebAssembly checks an imported memory's sharedness against the declaration, so one binary
 * cannot serve both. The shared variant differs only in that one import line.
 *
 * The assembler is wabt's JavaScript build, pinned to an exact version in package.json: the bytes
 * depend on the assembler, so a new version is a deliberate change that rebuilds the binaries.
 * This module is for development only (`wabt` is a devDependency); nothing imports it at run time.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import wabtInit from 'wabt';
import { KERNEL_NAMES, kernelFile, type KernelName } from './load.ts';

/** The import line every source declares its memory with (the plain variant). */
export const PLAIN_MEMORY = '(import "env" "memory" (memory 1))';
/** The same import in the shared variant: a shared memory must declare a maximum (4 GiB). */
export const SHARED_MEMORY = '(import "env" "memory" (memory 1 65536 shared))';

/** Post-MVP features the kernels use: SIMD, and shared memories (the threads proposal). */
const FEATURES = { simd: true, threads: true } as const;

type Wabt = Awaited<ReturnType<typeof wabtInit>>;
let wabt: Promise<Wabt> | undefined;

/** The WebAssembly text source of one kernel, with the memory import of the requested variant. */
export function kernelSource(name: KernelName, shared: boolean): string {
  const text = readFileSync(new URL(`./${name}.wat`, import.meta.url), 'utf8');
  const at = text.indexOf(PLAIN_MEMORY);
  if (at < 0 || text.indexOf(PLAIN_MEMORY, at + 1) >= 0) {
    throw new Error(`${name}.wat must declare its memory exactly once as ${PLAIN_MEMORY}`);
  }
  return shared ? text.replace(PLAIN_MEMORY, SHARED_MEMORY) : text;
}

/**
 * Assembles one kernel in memory: validated, with the name section (function and local names from
 * the source, so stack traces and profiles show `$alsCg`, not `wasm-function[5]`).
 */
export async function assembleKernel(name: KernelName, shared: boolean): Promise<Uint8Array> {
  wabt ??= wabtInit();
  const w = await wabt;
  const module = w.parseWat(`${name}.wat`, kernelSource(name, shared), FEATURES);
  try {
    module.resolveNames();
    // index.js takes the features to validate against (shared memories are invalid without
    // `threads`); index.d.ts leaves the argument out.
    (module.validate.bind(module) as (features: typeof FEATURES) => void)(FEATURES);
    return module.toBinary({ log: false, canonicalize_lebs: true, write_debug_names: true }).buffer.slice();
  } finally {
    module.destroy();
  }
}

/** Every binary this folder commits, with the bytes its source assembles to now. */
export async function assembleAll(): Promise<{ file: string; bytes: Uint8Array }[]> {
  const out: { file: string; bytes: Uint8Array }[] = [];
  for (const name of KERNEL_NAMES) {
    for (const shared of [false, true]) {
      out.push({ file: kernelFile(name, shared), bytes: await assembleKernel(name, shared) });
    }
  }
  return out;
}

async function main(): Promise<void> {
  for (const { file, bytes } of await assembleAll()) {
    writeFileSync(new URL(`./${file}`, import.meta.url), bytes);
    console.log(`${fileURLToPath(new URL(`./${file}`, import.meta.url))}: ${bytes.length} bytes`);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main();
}
