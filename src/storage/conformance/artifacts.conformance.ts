/**
 * The one conformance suite of the `ArtifactStore` port. Every adapter runs it from an integration test:
 *
 *   describeArtifactStoreConformance('files', async () => new FileArtifactStore({ root: freshDir() }));
 *
 * `factory` must return a fresh, empty store for each test (the suite closes it afterwards); `cleanup`
 * runs once after the whole suite (drop schemas, delete directories). Assertions are about behaviour the
 * port promises, never about an adapter's internals.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ArtifactStore } from '../ports.ts';

const MiB = 1024 * 1024;

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

const expectCode = async (p: Promise<unknown>, code: string) => {
  await expect(p).rejects.toMatchObject({ code });
};

/** Keys that name (or try to name) something outside the store, or nothing at all. */
const ESCAPING_KEYS = [
  '',
  '../x',
  '..',
  '.',
  'a/../../x',
  'models/../../etc/passwd',
  './a',
  '/etc/passwd',
  '/abs/models/v1.cairn',
  'C:\\Windows\\x',
  'c:/x',
  'a\\..\\..\\x',
  'a//b',
  'a/',
  'a/./b',
  '.hidden',
  'a\u0000b',
  'line\nbreak',
  'x'.repeat(1025),
];

export function describeArtifactStoreConformance(
  name: string,
  factory: () => Promise<ArtifactStore>,
  cleanup?: () => Promise<void>,
): void {
  describe(`ArtifactStore conformance: ${name}`, () => {
    let store: ArtifactStore;

    beforeEach(async () => {
      store = await factory();
    });

    afterEach(async () => {
      await store.close();
    });

    if (cleanup) afterAll(cleanup);

    it('reports its kind and starts empty', async () => {
      expect(typeof store.kind).toBe('string');
      expect(store.kind.length).toBeGreaterThan(0);
      expect(await store.list('')).toEqual([]);
      expect(await store.exists('models/v1.cairn')).toBe(false);
    });

    describe('put and get', () => {
      it.each([
        ['empty', 0],
        ['small', 37],
        ['exactly one chunk-sized MiB', MiB],
        ['several MiB spanning several chunks', 3 * MiB + 123_457],
      ])('round-trips %s bytes, reporting their size and sha256', async (_label, size) => {
        const bytes = randomBytes(size);
        const key = `models/size-${size}.cairn`;
        const stored = await store.put(key, bytes);
        expect(stored).toEqual({ checksum: sha256(bytes), bytes: size });
        expect(stored.checksum).toMatch(/^[0-9a-f]{64}$/);
        const back = await store.get(key);
        expect(Buffer.isBuffer(back)).toBe(true);
        expect(back.length).toBe(size);
        expect(back.equals(bytes)).toBe(true);
        expect(await store.exists(key)).toBe(true);
      });

      it('stores exactly the bytes of a Uint8Array view, not its whole underlying buffer', async () => {
        const whole = new Uint8Array(randomBytes(1000));
        const view = whole.subarray(100, 350);
        const stored = await store.put('view.bin', view);
        expect(stored).toEqual({ checksum: sha256(view), bytes: 250 });
        expect((await store.get('view.bin')).equals(Buffer.from(view))).toBe(true);
      });

      it('keeps keys with slashes apart and accepts every allowed character', async () => {
        const keys = ['models/v1.cairn', 'models/v1.cairn.bak', 'a/b/c/d.bin', 'a..b/-x_Y.9', 'snapshots/x'];
        for (const [i, key] of keys.entries()) await store.put(key, Buffer.from(`value ${i}`));
        for (const [i, key] of keys.entries()) {
          expect((await store.get(key)).toString()).toBe(`value ${i}`);
        }
      });

      it('overwrites: the newest bytes win, whatever the old and new sizes', async () => {
        const big = randomBytes(2 * MiB + 5);
        const small = Buffer.from('small');
        await store.put('k', big);
        expect(await store.put('k', small)).toEqual({ checksum: sha256(small), bytes: 5 });
        expect((await store.get('k')).equals(small)).toBe(true);
        await store.put('k', big);
        expect((await store.get('k')).equals(big)).toBe(true);
        await store.put('k', Buffer.alloc(0));
        expect((await store.get('k')).length).toBe(0);
        expect(await store.list('')).toEqual(['k']);
      });

      it('overwrites atomically: concurrent readers see the old or the new bytes, never a mix', async () => {
        // Random contents of different sizes: any mix of the two, or a torn write, matches neither.
        const a = randomBytes(2 * MiB + 511);
        const b = randomBytes(3 * MiB + 7);
        await store.put('models/hot.cairn', a);
        let writing = true;
        const seen = { a: 0, b: 0 };
        const reader = async () => {
          while (writing) {
            const got = await store.get('models/hot.cairn');
            if (got.equals(a)) seen.a++;
            else if (got.equals(b)) seen.b++;
            else throw new Error(`read a mix of old and new bytes (${got.length} bytes)`);
          }
        };
        const writer = async () => {
          try {
            for (let i = 0; i < 10; i++) await store.put('models/hot.cairn', i % 2 === 0 ? b : a);
          } finally {
            writing = false;
          }
        };
        await Promise.all([writer(), reader(), reader(), reader()]);
        expect(seen.a + seen.b).toBeGreaterThan(0);
        expect((await store.get('models/hot.cairn')).equals(a)).toBe(true);
      });

      it('concurrent puts of one key leave one of the values intact; of distinct keys, all of them', async () => {
        const values = Array.from({ length: 4 }, () => randomBytes(MiB + 3));
        await Promise.all(values.map((v) => store.put('same', v)));
        const got = await store.get('same');
        expect(values.some((v) => v.equals(got))).toBe(true);
        await Promise.all(values.map((v, i) => store.put(`distinct/${i}`, v)));
        for (const [i, v] of values.entries())
          expect((await store.get(`distinct/${i}`)).equals(v)).toBe(true);
      });
    });

    describe('missing keys, exists and delete', () => {
      it('get of a missing key is CAIRN_NOT_FOUND, also under an existing key or directory', async () => {
        await expectCode(store.get('models/missing.cairn'), 'CAIRN_NOT_FOUND');
        await store.put('models/v1.cairn', Buffer.from('x'));
        await expectCode(store.get('models'), 'CAIRN_NOT_FOUND');
        await expectCode(store.get('models/v1.cairn/inner'), 'CAIRN_NOT_FOUND');
        expect(await store.exists('models')).toBe(false);
        expect(await store.exists('models/v1.cairn/inner')).toBe(false);
      });

      it('delete reports whether something was stored, and only removes that key', async () => {
        await store.put('models/v1.cairn', Buffer.from('one'));
        await store.put('models/v2.cairn', Buffer.from('two'));
        expect(await store.delete('models/v1.cairn')).toBe(true);
        expect(await store.delete('models/v1.cairn')).toBe(false);
        expect(await store.delete('never/stored')).toBe(false);
        expect(await store.delete('models')).toBe(false);
        expect(await store.exists('models/v1.cairn')).toBe(false);
        await expectCode(store.get('models/v1.cairn'), 'CAIRN_NOT_FOUND');
        expect((await store.get('models/v2.cairn')).toString()).toBe('two');
        expect(await store.list('')).toEqual(['models/v2.cairn']);
        // A deleted key can be written again.
        await store.put('models/v1.cairn', Buffer.from('again'));
        expect((await store.get('models/v1.cairn')).toString()).toBe('again');
      });
    });

    describe('list', () => {
      it('returns the keys starting with the prefix, in byte order', async () => {
        const keys = [
          'models_x',
          'models/v2.cairn',
          'b',
          'models2/x',
          'models/V1.cairn',
          'models/v10.cairn',
          'models/sub/deep.bin',
        ];
        for (const key of keys) await store.put(key, Buffer.from(key));
        expect(await store.list('')).toEqual([
          'b',
          'models/V1.cairn',
          'models/sub/deep.bin',
          'models/v10.cairn',
          'models/v2.cairn',
          'models2/x',
          'models_x',
        ]);
        expect(await store.list('models/')).toEqual([
          'models/V1.cairn',
          'models/sub/deep.bin',
          'models/v10.cairn',
          'models/v2.cairn',
        ]);
        expect(await store.list('models/v1')).toEqual(['models/v10.cairn']);
        expect(await store.list('models/sub')).toEqual(['models/sub/deep.bin']);
        expect(await store.list('models')).toHaveLength(6);
        expect(await store.list('models/v2.cairn')).toEqual(['models/v2.cairn']);
        expect(await store.list('nothing/')).toEqual([]);
        expect(await store.list('c')).toEqual([]);
      });

      it('refuses a prefix no key can start with', async () => {
        for (const prefix of ['../', '/', '/etc', 'a//', 'a/../', '.', 'a\\b']) {
          await expectCode(store.list(prefix), 'CAIRN_VALIDATION');
        }
      });
    });

    describe('keys', () => {
      it('refuses keys that are empty or try to escape the store, with CAIRN_VALIDATION', async () => {
        for (const key of ESCAPING_KEYS) {
          await expectCode(store.put(key, Buffer.from('evil')), 'CAIRN_VALIDATION');
          await expectCode(store.get(key), 'CAIRN_VALIDATION');
          await expectCode(store.exists(key), 'CAIRN_VALIDATION');
          await expectCode(store.delete(key), 'CAIRN_VALIDATION');
        }
        expect(await store.list('')).toEqual([]);
      });

      it('refuses a key nested under a stored key, or above one, with CAIRN_CONFLICT', async () => {
        await store.put('a/b', Buffer.from('nested'));
        await expectCode(store.put('a', Buffer.from('parent')), 'CAIRN_CONFLICT');
        await expectCode(store.put('a/b/c', Buffer.from('child')), 'CAIRN_CONFLICT');
        // Siblings sharing a string prefix are no conflict.
        await store.put('a/bc', Buffer.from('sibling'));
        await store.put('ab', Buffer.from('other'));
        expect(await store.list('')).toEqual(['a/b', 'a/bc', 'ab']);
        expect((await store.get('a/b')).toString()).toBe('nested');
        // Once nothing is nested under it any more, the parent key is free.
        expect(await store.delete('a/b')).toBe(true);
        expect(await store.delete('a/bc')).toBe(true);
        await store.put('a', Buffer.from('parent'));
        expect((await store.get('a')).toString()).toBe('parent');
        expect(await store.list('')).toEqual(['a', 'ab']);
      });
    });
  });
}
