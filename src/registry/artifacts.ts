/**
 * Model artifact files. One file per model version:
 *
 *   "CAIRNMDL" (8 bytes) | u32 LE header length | header JSON (utf8) | padding to 8 | array blobs (8-aligned)
 *
 * The header carries the container format version, the algorithm's own artifact format version,
 * params, the id mappings and a table of arrays (name, dtype, byte offset, length). The SHA-256 of the
 * whole file is recorded in the registry and verified on load. Readers accept every container version
 * they know; a newer one is refused with a clear error instead of being misread.
 *
 * This module only encodes and decodes: where the bytes live is the ArtifactStore's business. The one
 * file read left here serves registry rows from earlier versions, which recorded an absolute file path.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { ModelArtifact } from '../algorithms/types.ts';
import { runSteps, runStepsSliced, type Steps } from '../domain/cooperative.ts';
import { CairnError } from '../errors/errors.ts';

export const CONTAINER_FORMAT_VERSION = 1;
/** Bytes hashed or copied per unit of work: a model is loaded on the serving event loop, a few ms at a time. */
const CHUNK = 1 << 20;
const MAGIC = Buffer.from('CAIRNMDL', 'ascii');

type DType = 'f32' | 'i32' | 'f64';

interface ArrayEntry {
  name: string;
  dtype: DType;
  offset: number;
  length: number;
}

interface Header {
  container: number;
  artifact: Omit<ModelArtifact, 'arrays'>;
  userIds: string[];
  itemIds: string[];
  extra: Record<string, unknown>;
  arrays: ArrayEntry[];
}

/** A fitted model plus the id spaces it was fitted on. */
export interface StoredModel {
  artifact: ModelArtifact;
  userIds: string[];
  itemIds: string[];
  /** Anything else the pipeline keeps with the model (e.g. training watermark). */
  extra: Record<string, unknown>;
}

function dtypeOf(a: Float32Array | Int32Array | Float64Array): DType {
  if (a instanceof Float32Array) return 'f32';
  if (a instanceof Int32Array) return 'i32';
  return 'f64';
}

export function encodeModel(model: StoredModel): Buffer {
  return runSteps(encodeSteps(model));
}

/** encodeModel giving the event loop a turn every few milliseconds (domain/cooperative.ts). */
export function encodeModelSliced(model: StoredModel): Promise<Buffer> {
  return runStepsSliced(encodeSteps(model));
}

function* encodeSteps(model: StoredModel): Steps<Buffer> {
  const { arrays, ...rest } = model.artifact;
  const entries: ArrayEntry[] = [];
  let offset = 0;
  for (const [name, arr] of Object.entries(arrays)) {
    entries.push({ name, dtype: dtypeOf(arr), offset, length: arr.length });
    offset += Math.ceil(arr.byteLength / 8) * 8;
  }
  const header: Header = {
    container: CONTAINER_FORMAT_VERSION,
    artifact: rest,
    userIds: model.userIds,
    itemIds: model.itemIds,
    extra: model.extra,
    arrays: entries,
  };
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const preamble = MAGIC.length + 4 + headerBytes.length;
  const dataStart = Math.ceil(preamble / 8) * 8;
  const out = Buffer.alloc(dataStart + offset);
  MAGIC.copy(out, 0);
  out.writeUInt32LE(headerBytes.length, MAGIC.length);
  headerBytes.copy(out, MAGIC.length + 4);
  for (const e of entries) {
    const arr = arrays[e.name];
    yield* copySteps(new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength), out, dataStart + e.offset);
  }
  return out;
}

/** Copies `from` into `to` at `at`, a chunk per unit of work. */
function* copySteps(from: Uint8Array, to: Uint8Array, at: number): Steps<void> {
  for (let p = 0; p < from.length; p += CHUNK) {
    yield;
    to.set(from.subarray(p, Math.min(from.length, p + CHUNK)), at + p);
  }
}

export function decodeModel(buf: Buffer): StoredModel {
  return runSteps(decodeSteps(buf));
}

function* decodeSteps(buf: Buffer): Steps<StoredModel> {
  if (buf.length < MAGIC.length + 4 || !buf.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new Error('not a Cairn model artifact (bad magic)');
  }
  const headerLength = buf.readUInt32LE(MAGIC.length);
  const header = JSON.parse(
    buf.toString('utf8', MAGIC.length + 4, MAGIC.length + 4 + headerLength),
  ) as Header;
  if (header.container > CONTAINER_FORMAT_VERSION) {
    throw new Error(
      `model artifact container version ${header.container} is newer than this Cairn supports (${CONTAINER_FORMAT_VERSION})`,
    );
  }
  const dataStart = Math.ceil((MAGIC.length + 4 + headerLength) / 8) * 8;
  const arrays: ModelArtifact['arrays'] = {};
  for (const e of header.arrays) {
    const start = dataStart + e.offset;
    // Copy into a fresh aligned buffer: typed arrays need alignment and must not pin the file buffer.
    const Ctor = e.dtype === 'f32' ? Float32Array : e.dtype === 'i32' ? Int32Array : Float64Array;
    const bytes = e.length * Ctor.BYTES_PER_ELEMENT;
    const copy = new Uint8Array(bytes);
    yield* copySteps(buf.subarray(start, start + bytes), copy, 0);
    arrays[e.name] = new Ctor(copy.buffer, 0, e.length);
  }
  return {
    artifact: { ...header.artifact, arrays },
    userIds: header.userIds,
    itemIds: header.itemIds,
    extra: header.extra,
  };
}

/** SHA-256 of the bytes, lowercase hex: the checksum recorded in ModelVersion.checksum. */
export function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

/**
 * Verifies `buf` against the checksum recorded for it and decodes it. A mismatch is CAIRN_INTERNAL: the
 * bytes were damaged at rest or in transit, and must never be served as a model.
 */
export function decodeVerified(buf: Buffer, expectedChecksum: string, where: string): StoredModel {
  return runSteps(decodeVerifiedSteps(buf, expectedChecksum, where));
}

/** decodeVerified giving the event loop a turn every few milliseconds (how the registry loads models). */
export function decodeVerifiedSliced(
  buf: Buffer,
  expectedChecksum: string,
  where: string,
): Promise<StoredModel> {
  return runStepsSliced(decodeVerifiedSteps(buf, expectedChecksum, where));
}

function* decodeVerifiedSteps(buf: Buffer, expectedChecksum: string, where: string): Steps<StoredModel> {
  const hash = createHash('sha256');
  for (let p = 0; p < buf.length; p += CHUNK) {
    yield;
    hash.update(buf.subarray(p, Math.min(buf.length, p + CHUNK)));
  }
  if (hash.digest('hex') !== expectedChecksum) {
    throw new CairnError('CAIRN_INTERNAL', `model artifact ${where} is corrupt: checksum mismatch`);
  }
  return yield* decodeSteps(buf);
}

/**
 * Reads a model file by absolute path and verifies its checksum. Only for registry rows written before
 * artifacts moved to the ArtifactStore (their `artifactPath` is a file path, not a key).
 */
export async function readModelFile(path: string, expectedChecksum: string): Promise<StoredModel> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    if ((e as { code?: unknown }).code === 'ENOENT') {
      throw new CairnError('CAIRN_NOT_FOUND', `model artifact file ${path} not found`, undefined, {
        cause: e,
      });
    }
    throw e;
  }
  return decodeVerifiedSliced(buf, expectedChecksum, path);
}
