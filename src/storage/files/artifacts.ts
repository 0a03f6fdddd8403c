/**
 * Artifact store on the local filesystem (the embedded default): key `models/v1.cairn` is the file
 * `<root>/models/v1.cairn`, so with the root at `dataDir` the files sit exactly where earlier versions
 * wrote them. Also home of the key rules every ArtifactStore adapter shares, so that a key accepted by
 * one adapter is accepted by all of them and a deployment can move its artifacts between them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { TimeSlicer } from '../../domain/cooperative.ts';
import { CairnError } from '../../errors/errors.ts';
import type { ArtifactStore } from '../ports.ts';

/** Longest key accepted, in characters (keys are ASCII, so also in bytes). */
export const MAX_ARTIFACT_KEY_LENGTH = 1024;

/**
 * One path segment of a key. Deliberately narrow: portable file names on every filesystem Cairn runs on,
 * no `.`/`..` (a segment cannot start with a dot, which also keeps the files adapter's hidden temp files
 * out of the key space), no separators or drive letters, no control characters. At most 255 characters
 * (NAME_MAX of common filesystems).
 */
const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$/;

function invalidKey(field: string, value: string, message: string): CairnError {
  return CairnError.validation(
    [{ field, message }],
    // JSON.stringify: the value may hold control characters that should not reach a log line raw.
    `invalid artifact ${field} ${JSON.stringify(value.slice(0, 200))}: ${message}`,
  );
}

/**
 * Checks an artifact key: relative, `/`-separated segments of `[A-Za-z0-9._-]` that do not start with a
 * dot, at most {@link MAX_ARTIFACT_KEY_LENGTH} characters. Anything that could name a place outside the
 * store (`../x`, `/etc/passwd`, `C:\x`, empty) is refused with CAIRN_VALIDATION.
 */
export function checkArtifactKey(key: string): string {
  if (typeof key !== 'string' || key === '') throw invalidKey('key', String(key), 'must not be empty');
  if (key.length > MAX_ARTIFACT_KEY_LENGTH) {
    throw invalidKey('key', key, `must be at most ${MAX_ARTIFACT_KEY_LENGTH} characters`);
  }
  for (const segment of key.split('/')) {
    if (!SEGMENT.test(segment)) {
      throw invalidKey(
        'key',
        key,
        'must be relative, made of "/"-separated segments of letters, digits, ".", "_" and "-" that do not start with "."',
      );
    }
  }
  return key;
}

/**
 * Checks a `list` prefix: any string some valid key can start with (`''`, `models/`, `models/v1`).
 * A prefix no key can have (`../`, `/`) is refused rather than answered with an empty list, so a caller
 * building prefixes from bad input finds out.
 */
export function checkArtifactPrefix(prefix: string): string {
  if (typeof prefix !== 'string') throw invalidKey('prefix', String(prefix), 'must be a string');
  if (prefix === '') return prefix;
  // A prefix is valid exactly when extending its last segment by one allowed character makes a valid key.
  try {
    checkArtifactKey(`${prefix}x`);
  } catch {
    throw invalidKey('prefix', prefix, 'no valid artifact key can start with it');
  }
  return prefix;
}

/** Bytes hashed per step of {@link artifactChecksum} (~45 µs of SHA-256 each). */
const HASH_STEP = 64 * 1024;

/**
 * SHA-256 of the bytes, lowercase hex: the checksum every ArtifactStore reports. Hashed a millisecond at
 * a time with the event loop free between: at ~0.7 ms per MB, hashing a 6 MB online-state snapshot at
 * once held every request in flight ~4.5 ms (bench:load), a model of 100 MB would hold them 70 ms. The
 * caller must not change the bytes before it resolves.
 */
export async function artifactChecksum(bytes: Uint8Array): Promise<string> {
  const hash = createHash('sha256');
  const slicer = new TimeSlicer(1);
  for (let p = 0; p < bytes.length; p += HASH_STEP) {
    if (p > 0) await slicer.turn();
    hash.update(bytes.subarray(p, Math.min(bytes.length, p + HASH_STEP)));
  }
  return hash.digest('hex');
}

/** The parent keys of `key` (`a/b/c` → `a`, `a/b`): none of them may be an artifact while `key` is. */
export function parentKeys(key: string): string[] {
  const parts = key.split('/');
  return parts.slice(1).map((_, i) => parts.slice(0, i + 1).join('/'));
}

export interface FileArtifactStoreOptions {
  /** Directory holding the artifacts (created on first write); relative paths resolve against the cwd. */
  root: string;
}

const errno = (e: unknown): string | undefined => {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
};

/** The filesystem cannot serve us (permissions, read-only or full disk, I/O errors, descriptor limits). */
const UNAVAILABLE_CODES = new Set([
  'EACCES',
  'EPERM',
  'EROFS',
  'ENOSPC',
  'EDQUOT',
  'EIO',
  'EMFILE',
  'ENFILE',
]);

/** A key's file or directory collides with a key nested under it, or with one it is nested under. */
const CONFLICT_CODES = new Set(['ENOTDIR', 'EISDIR', 'EEXIST', 'ENOTEMPTY']);

/** How often `put` starts over when a concurrent `delete` pruned the directory it was writing into. */
const PUT_ATTEMPTS = 5;

function mapFsError(e: unknown, key: string): unknown {
  if (e instanceof CairnError) return e;
  const code = errno(e);
  if (code && UNAVAILABLE_CODES.has(code)) {
    return new CairnError(
      'CAIRN_UNAVAILABLE',
      `artifact storage unavailable (${code}) for ${key}`,
      undefined,
      {
        cause: e,
      },
    );
  }
  return e;
}

/**
 * {@link ArtifactStore} on a directory. Writes are atomic and durable: the bytes go to a hidden temp
 * file in the target directory, which is fsynced, renamed over the key's file and the directory fsynced,
 * so a reader (which holds its open file) sees the old or the new bytes, and a crash leaves one of them.
 *
 * As on a filesystem, a key cannot be both an artifact and the parent of another (`a` and `a/b`): such a
 * put is refused with CAIRN_CONFLICT (the PostgreSQL adapter enforces the same rule). Empty parent
 * directories are removed on delete so that the parent key becomes usable again.
 */
export class FileArtifactStore implements ArtifactStore {
  readonly kind = 'files';
  /** Absolute root directory. */
  readonly root: string;

  constructor(options: FileArtifactStoreOptions) {
    this.root = resolve(options.root);
  }

  /** The key's file; the relative-path check is defence in depth behind {@link checkArtifactKey}. */
  private pathOf(key: string): string {
    checkArtifactKey(key);
    const path = join(this.root, ...key.split('/'));
    const rel = relative(this.root, path);
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) {
      throw invalidKey('key', key, 'resolves outside the artifact store');
    }
    return path;
  }

  async put(key: string, bytes: Uint8Array): Promise<{ checksum: string; bytes: number }> {
    const path = this.pathOf(key);
    const checksum = await artifactChecksum(bytes);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.writeAtomically(path, bytes);
        return { checksum, bytes: bytes.byteLength };
      } catch (e) {
        // ENOENT here means a concurrent delete removed the (then empty) directory between our mkdir and
        // our open: make it again.
        if (errno(e) === 'ENOENT' && attempt < PUT_ATTEMPTS) continue;
        if (CONFLICT_CODES.has(errno(e) ?? '')) {
          throw new CairnError(
            'CAIRN_CONFLICT',
            `artifact key ${key} collides with a stored key nested under it or above it`,
            { field: 'key' },
            { cause: e },
          );
        }
        throw mapFsError(e, key);
      }
    }
  }

  private async writeAtomically(path: string, bytes: Uint8Array): Promise<void> {
    const dir = dirname(path);
    await mkdir(dir, { recursive: true });
    // Same directory as the target (rename is only atomic within one filesystem); the leading dot keeps
    // it out of the key space, the random part lets concurrent writers of one key not collide.
    const tmp = join(dir, `.${randomBytes(8).toString('hex')}.tmp`);
    const handle = await open(tmp, 'wx', 0o644);
    let renamed = false;
    try {
      try {
        await handle.writeFile(bytes);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, path);
      renamed = true;
    } finally {
      if (!renamed) await unlink(tmp).catch(() => undefined);
    }
    await syncDirectory(dir);
  }

  async get(key: string): Promise<Buffer> {
    const path = this.pathOf(key);
    try {
      // One open: a concurrent rename replaces the directory entry, not the file this read holds.
      return await readFile(path);
    } catch (e) {
      const code = errno(e);
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') throw notFound(key, e);
      throw mapFsError(e, key);
    }
  }

  async exists(key: string): Promise<boolean> {
    const path = this.pathOf(key);
    try {
      return (await stat(path)).isFile();
    } catch (e) {
      const code = errno(e);
      if (code === 'ENOENT' || code === 'ENOTDIR') return false;
      throw mapFsError(e, key);
    }
  }

  async delete(key: string): Promise<boolean> {
    const path = this.pathOf(key);
    try {
      await unlink(path);
    } catch (e) {
      const code = errno(e);
      // EISDIR (Linux) / EPERM (macOS): the key names a directory of other keys, not an artifact.
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return false;
      if (code === 'EPERM' && (await isDirectory(path))) return false;
      throw mapFsError(e, key);
    }
    await this.pruneEmptyParents(dirname(path));
    return true;
  }

  /** Removes now-empty directories from `dir` up to (not including) the root. */
  private async pruneEmptyParents(dir: string): Promise<void> {
    while (dir !== this.root && dir.startsWith(this.root + sep)) {
      try {
        await rmdir(dir);
      } catch {
        return; // not empty (another key or an in-flight write), or already gone: stop here
      }
      dir = dirname(dir);
    }
  }

  async list(prefix: string): Promise<string[]> {
    checkArtifactPrefix(prefix);
    // Walk only the directory the prefix pins down (`models/v` → `models/`), then filter by the prefix.
    const slash = prefix.lastIndexOf('/');
    const base = slash < 0 ? '' : prefix.slice(0, slash);
    const keys: string[] = [];
    await this.walk(base === '' ? this.root : join(this.root, ...base.split('/')), base, keys);
    // Keys are ASCII, so code-unit order is byte order: the same order as PostgreSQL's COLLATE "C".
    return keys.filter((k) => k.startsWith(prefix)).sort();
  }

  private async walk(dir: string, keyPrefix: string, out: string[]): Promise<void> {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (e) {
      const code = errno(e);
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw mapFsError(e, keyPrefix);
    }
    for (const entry of entries) {
      // Temp files of in-flight writes start with a dot; anything else that is not a valid segment was
      // not written through this store and is not an artifact.
      if (!SEGMENT.test(entry.name)) continue;
      const key = keyPrefix === '' ? entry.name : `${keyPrefix}/${entry.name}`;
      if (entry.isDirectory()) await this.walk(join(dir, entry.name), key, out);
      else if (entry.isFile() && key.length <= MAX_ARTIFACT_KEY_LENGTH) out.push(key);
    }
  }

  /** Nothing to release: every operation opens and closes its own files. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function notFound(key: string, cause?: unknown): CairnError {
  return new CairnError('CAIRN_NOT_FOUND', `artifact ${key} not found`, { field: 'key' }, { cause });
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Makes a rename in `dir` durable. Some platforms cannot open or fsync a directory (Windows: EPERM,
 * EISDIR); there the rename is as durable as the OS makes it, which is the best available.
 */
async function syncDirectory(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, 'r');
  } catch {
    return;
  }
  try {
    await handle.sync();
  } catch (e) {
    const code = errno(e);
    if (code !== 'EPERM' && code !== 'EISDIR' && code !== 'EINVAL') throw e;
  } finally {
    await handle.close();
  }
}
