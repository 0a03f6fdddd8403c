/**
 * The memory the WebAssembly kernels work in: one WebAssembly.Memory, laid out by a bump allocator
 * as typed-array views that the rest of the code (and worker threads, when the memory is shared)
 * uses like any other array, and whose byte offsets are the kernels' pointers.
 */
import { WA, type WasmMemory } from './load.ts';

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
    if (WA === undefined) throw new Error('this runtime has no WebAssembly');
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

/** What every wasm task carries: the arena's memory, to instantiate the kernels against. */
export interface WasmMemoryRef {
  memory: WasmMemory;
  arenaId: number;
  shared: boolean;
}

/** The part of an arena a task needs to reach its memory. */
export function wasmRef(arena: WasmArena): WasmMemoryRef {
  return { memory: arena.memory, arenaId: arena.id, shared: arena.shared };
}
