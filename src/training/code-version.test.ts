import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { codeVersion, gitCommit, readCodeVersion } from './code-version.ts';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);

describe('code version', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'cairn-codever-'));
    await writeFile(join(root, 'package.json'), JSON.stringify({ name: 'x', version: '1.2.3' }));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('reads a branch ref, then packed-refs, then a detached HEAD; null without .git', async () => {
    expect(await readCodeVersion(root)).toEqual({ version: '1.2.3', commit: null });
    await mkdir(join(root, '.git', 'refs', 'heads'), { recursive: true });
    await writeFile(join(root, '.git', 'HEAD'), 'ref: refs/heads/main\n');
    expect(await gitCommit(root)).toBeNull();
    await writeFile(join(root, '.git', 'packed-refs'), `# pack-refs with: peeled\n${B} refs/heads/main\n`);
    expect(await gitCommit(root)).toBe(B);
    await writeFile(join(root, '.git', 'refs', 'heads', 'main'), `${A}\n`);
    expect(await gitCommit(root)).toBe(A);
    await writeFile(join(root, '.git', 'HEAD'), `${B}\n`);
    expect(await gitCommit(root)).toBe(B);
  });

  it('follows a worktree .git file; CAIRN_COMMIT wins over .git', async () => {
    const real = join(root, 'elsewhere');
    await mkdir(join(real, 'refs', 'heads'), { recursive: true });
    await writeFile(join(real, 'HEAD'), 'ref: refs/heads/dev\n');
    await writeFile(join(real, 'refs', 'heads', 'dev'), A);
    await writeFile(join(root, '.git'), 'gitdir: elsewhere\n');
    expect(await readCodeVersion(root)).toEqual({ version: '1.2.3', commit: A });
    expect(await readCodeVersion(root, { CAIRN_COMMIT: 'v1-build-7' })).toEqual({
      version: '1.2.3',
      commit: 'v1-build-7',
    });
  });

  it("finds this package's version", async () => {
    expect((await codeVersion()).version).toMatch(/^\d+\.\d+\.\d+/);
  });
});
