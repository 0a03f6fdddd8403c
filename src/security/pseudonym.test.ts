import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { SettingsStore } from '../storage/ports.ts';
import { createPseudonymizer, LOG_HASH_KEY_SETTING, logHashKey, PSEUDONYM_LENGTH } from './pseudonym.ts';

/** A settings store with the port's first-writer-wins semantics, counting writes. */
function memorySettings(): SettingsStore & { values: Map<string, string> } {
  const values = new Map<string, string>();
  return {
    values,
    get: (key) => Promise.resolve(values.get(key) ?? null),
    putIfAbsent(key, value) {
      if (!values.has(key)) values.set(key, value);
      return Promise.resolve(values.get(key)!);
    },
  };
}

const privacy = (logHashKey: string) => ({ privacy: { logHashKey } });

describe('createPseudonymizer', () => {
  it('is HMAC-SHA256 of the id under the key, hex, truncated to 16 characters', () => {
    const p = createPseudonymizer('k1');
    const full = createHmac('sha256', 'k1').update('alice', 'utf8').digest('hex');
    expect(p('alice')).toBe(full.slice(0, PSEUDONYM_LENGTH));
    expect(p('alice')).toMatch(/^[0-9a-f]{16}$/);
  });

  it('is stable per key, differs between ids and between keys, and never contains the id', () => {
    const a = createPseudonymizer('k1');
    const b = createPseudonymizer('k2');
    expect(a('user-42')).toBe(a('user-42'));
    expect(a('user-42')).not.toBe(a('user-43'));
    expect(a('user-42')).not.toBe(b('user-42'));
    // An id that looks like hex must not come back verbatim.
    expect(a('0123456789abcdef')).not.toBe('0123456789abcdef');
  });

  it('hashes ids as UTF-8 (non-ASCII ids are distinct)', () => {
    const p = createPseudonymizer('k');
    expect(p('zoë')).not.toBe(p('zoe'));
    expect(p('zoë')).toBe(
      createHmac('sha256', 'k').update(Buffer.from('zoë', 'utf8')).digest('hex').slice(0, 16),
    );
  });

  it('refuses an empty key (it would be a keyless hash anyone can recompute)', () => {
    expect(() => createPseudonymizer('')).toThrow();
  });
});

describe('logHashKey', () => {
  it('uses the configured key and stores nothing', async () => {
    const settings = memorySettings();
    expect(await logHashKey(privacy('configured-key'), settings)).toBe('configured-key');
    expect(settings.values.size).toBe(0);
  });

  it('generates a random key once and keeps it (every later call, and every process, gets the same)', async () => {
    const settings = memorySettings();
    const first = await logHashKey(privacy(''), settings);
    expect(first.length).toBeGreaterThanOrEqual(32);
    expect(settings.values.get(LOG_HASH_KEY_SETTING)).toBe(first);
    expect(await logHashKey(privacy(''), settings)).toBe(first);
  });

  it('two deployments (two stores) get different generated keys', async () => {
    const a = await logHashKey(privacy(''), memorySettings());
    const b = await logHashKey(privacy(''), memorySettings());
    expect(a).not.toBe(b);
  });
});
