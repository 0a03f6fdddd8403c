import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  decodeModel,
  decodeVerified,
  encodeModel,
  readModelFile,
  sha256,
  type StoredModel,
} from './artifacts.ts';

const model: StoredModel = {
  artifact: {
    algorithm: 'als',
    formatVersion: 1,
    params: { factors: 2, alpha: 1.5 },
    meta: { nUsers: 2, nItems: 3 },
    arrays: {
      userFactors: new Float32Array([1, 2, 3, 4]),
      indices: new Int32Array([0, 2, 1]),
      times: new Float64Array([1.5, 2.25]),
    },
  },
  userIds: ['u1', 'ü2'],
  itemIds: ['a', 'b', 'c'],
  extra: { lastEventSeq: 42 },
};

describe('model artifacts', () => {
  const dirs: string[] = [];
  afterAll(async () => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

  it('round-trips arrays of every dtype, ids and header fields', () => {
    const back = decodeModel(encodeModel(model));
    expect(back.userIds).toEqual(model.userIds);
    expect(back.itemIds).toEqual(model.itemIds);
    expect(back.extra).toEqual({ lastEventSeq: 42 });
    expect(back.artifact.params).toEqual(model.artifact.params);
    expect(back.artifact.arrays.userFactors).toBeInstanceOf(Float32Array);
    expect(Array.from(back.artifact.arrays.userFactors)).toEqual([1, 2, 3, 4]);
    expect(back.artifact.arrays.indices).toBeInstanceOf(Int32Array);
    expect(Array.from(back.artifact.arrays.indices)).toEqual([0, 2, 1]);
    expect(Array.from(back.artifact.arrays.times)).toEqual([1.5, 2.25]);
  });

  it('refuses a file that is not an artifact and a newer container version', () => {
    expect(() => decodeModel(Buffer.from('hello world, not a model'))).toThrow(/bad magic/);
    const buf = encodeModel(model);
    const len = buf.readUInt32LE(8);
    const header = JSON.parse(buf.toString('utf8', 12, 12 + len)) as { container: number };
    header.container = 99;
    const patched = Buffer.from(JSON.stringify(header));
    const forged = Buffer.concat([buf.subarray(0, 8), Buffer.alloc(4), patched]);
    forged.writeUInt32LE(patched.length, 8);
    expect(() => decodeModel(forged)).toThrow(/newer than this Cairn supports/);
  });

  it('decodes only bytes that match the recorded checksum (CAIRN_INTERNAL otherwise)', () => {
    const bytes = encodeModel(model);
    const checksum = sha256(bytes);
    expect(checksum).toMatch(/^[0-9a-f]{64}$/);
    expect(decodeVerified(bytes, checksum, 'models/x.cairn').itemIds).toEqual(['a', 'b', 'c']);
    const damaged = Buffer.from(bytes);
    damaged[damaged.length - 1] ^= 0xff;
    expect(() => decodeVerified(damaged, checksum, 'models/x.cairn')).toThrow(
      expect.objectContaining({ code: 'CAIRN_INTERNAL' }),
    );
  });

  it('reads a legacy model file by absolute path, verifying its checksum', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-art-'));
    dirs.push(dir);
    const path = join(dir, 'm.cairn');
    const bytes = encodeModel(model);
    const checksum = sha256(bytes);
    await writeFile(path, bytes);
    expect((await readModelFile(path, checksum)).extra).toEqual({ lastEventSeq: 42 });
    bytes[bytes.length - 1] ^= 0xff;
    await writeFile(path, bytes);
    await expect(readModelFile(path, checksum)).rejects.toMatchObject({ code: 'CAIRN_INTERNAL' });
    await expect(readModelFile(join(dir, 'gone.cairn'), checksum)).rejects.toMatchObject({
      code: 'CAIRN_NOT_FOUND',
    });
  });
});
