import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { countLoopTurns } from '../../../test/fixtures/loop-turns.ts';
import { artifactChecksum } from './artifacts.ts';

describe('artifactChecksum', () => {
  it('is the SHA-256 of the bytes, views and empty ones included', async () => {
    const bytes = randomBytes(200_003);
    const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
    expect(await artifactChecksum(bytes)).toBe(sha256(bytes));
    const view = bytes.subarray(70_001, 150_000);
    expect(await artifactChecksum(view)).toBe(sha256(view));
    expect(await artifactChecksum(new Uint8Array(0))).toBe(sha256(new Uint8Array(0)));
  });

  it('gives the event loop turns while it hashes many megabytes', async () => {
    const bytes = randomBytes(32 << 20); // ~20 ms of hashing: at least one 1 ms slice ends in it
    const turns = countLoopTurns();
    const checksum = await artifactChecksum(bytes);
    turns.stop();
    expect(checksum).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(turns.count).toBeGreaterThan(3);
  });
});
