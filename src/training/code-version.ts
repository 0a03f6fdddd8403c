/**
 * The code version recorded in each model's lineage: the package version, and the commit from
 * `CAIRN_COMMIT` (set by builds and images) or else read from the checkout's `.git` files directly —
 * no `git` process is spawned, and a missing or unreadable `.git` simply gives `commit: null`.
 */
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface CodeVersion {
  version: string;
  commit: string | null;
}

const SHA = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

let cached: Promise<CodeVersion> | null = null;

/** The running code's version (computed once per process; `CAIRN_COMMIT` is read on first call). */
export function codeVersion(env: NodeJS.ProcessEnv = process.env): Promise<CodeVersion> {
  cached ??= readCodeVersion(packageRoot(), env);
  return cached;
}

/** The directory holding Cairn's package.json, found upwards from this file (src/… or dist/src/…). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let up = 0; up < 5; up++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

export async function readCodeVersion(root: string, env: NodeJS.ProcessEnv = {}): Promise<CodeVersion> {
  let version = '0.0.0';
  try {
    const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version?: unknown };
    if (typeof pkg.version === 'string') version = pkg.version;
  } catch {
    // A relocated build without package.json still trains; its version is unknown.
  }
  const fromEnv = env.CAIRN_COMMIT?.trim();
  return { version, commit: fromEnv ? fromEnv : await gitCommit(root) };
}

/** HEAD's commit from `.git` (a directory, or a worktree's `gitdir:` file), or null. */
export async function gitCommit(root: string): Promise<string | null> {
  try {
    let gitDir = join(root, '.git');
    if ((await stat(gitDir)).isFile()) {
      const pointer = (await readFile(gitDir, 'utf8')).trim();
      if (!pointer.startsWith('gitdir:')) return null;
      gitDir = resolve(root, pointer.slice('gitdir:'.length).trim());
    }
    const head = (await readFile(join(gitDir, 'HEAD'), 'utf8')).trim();
    if (SHA.test(head)) return head;
    if (!head.startsWith('ref:')) return null;
    const ref = head.slice('ref:'.length).trim();
    // A linked worktree keeps its refs in the main repository (`commondir`).
    const dirs = [gitDir];
    try {
      dirs.push(resolve(gitDir, (await readFile(join(gitDir, 'commondir'), 'utf8')).trim()));
    } catch {
      // not a linked worktree
    }
    for (const dir of dirs) {
      const loose = await readFile(join(dir, ref), 'utf8').then(
        (s) => s.trim(),
        () => null,
      );
      if (loose && SHA.test(loose)) return loose;
      const packed = await readFile(join(dir, 'packed-refs'), 'utf8').catch(() => '');
      for (const line of packed.split('\n')) {
        const [sha, name] = line.trim().split(' ');
        if (name === ref && SHA.test(sha)) return sha;
      }
    }
    return null;
  } catch {
    return null;
  }
}
