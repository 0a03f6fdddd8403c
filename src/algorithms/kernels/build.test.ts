import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { assembleAll, kernelSource, PLAIN_MEMORY, SHARED_MEMORY } from './build.ts';
import { KERNEL_NAMES, kernelFile, WA } from './load.ts';

describe('committed WebAssembly kernels', () => {
  it('are byte for byte what their .wat sources assemble to', async () => {
    const built = await assembleAll();
    expect(built.map((b) => b.file).sort()).toEqual(
      KERNEL_NAMES.flatMap((n) => [kernelFile(n, false), kernelFile(n, true)]).sort(),
    );
    for (const { file, bytes } of built) {
      const committed = new Uint8Array(readFileSync(new URL(`./${file}`, import.meta.url)));
      // A mismatch means a .wat changed without `npm run build:kernels` (or the reverse).
      expect({ file, same: Buffer.from(committed).equals(Buffer.from(bytes)) }).toEqual({ file, same: true });
    }
  });

  it('assemble deterministically', async () => {
    const [a, b] = await Promise.all([assembleAll(), assembleAll()]);
    expect(a.map((x) => Buffer.from(x.bytes).toString('base64'))).toEqual(
      b.map((x) => Buffer.from(x.bytes).toString('base64')),
    );
  });

  it('differ between the plain and shared variants only in the memory import', () => {
    for (const name of KERNEL_NAMES) {
      const plain = kernelSource(name, false);
      const shared = kernelSource(name, true);
      expect(plain).toContain(PLAIN_MEMORY);
      expect(shared).not.toContain(PLAIN_MEMORY);
      expect(shared.replace(SHARED_MEMORY, PLAIN_MEMORY)).toBe(plain);
    }
  });

  it('are valid modules for this runtime, the shared variant refusing a plain memory', () => {
    const memory = new WA!.Memory({ initial: 1 });
    for (const name of KERNEL_NAMES) {
      const plain = new WA!.Module(readFileSync(new URL(`./${kernelFile(name, false)}`, import.meta.url)));
      const shared = new WA!.Module(readFileSync(new URL(`./${kernelFile(name, true)}`, import.meta.url)));
      const imports = { env: { memory, exp: Math.exp } };
      expect(Object.keys(new WA!.Instance(plain, imports).exports).length).toBeGreaterThan(0);
      expect(() => new WA!.Instance(shared, imports)).toThrow();
    }
  });
});
