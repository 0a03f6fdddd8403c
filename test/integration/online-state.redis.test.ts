/**
 * Runs the OnlineState conformance suite against the real Redis (`CAIRN_TEST_REDIS_URL`, default
 * redis://127.0.0.1:6379), plus what only the Redis adapter promises. Every test writes under its own random
 * key prefix, and only those keys are deleted afterwards (SCAN MATCH + DEL; never FLUSHDB). Outage tests use
 * a private redis-server on a free port that the test starts and stops. An unreachable server fails the file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { StoredEvent } from '../../src/domain/types.ts';
import { describeOnlineStateConformance } from '../../src/storage/conformance/online-state.conformance.ts';
import { MemoryOnlineState } from '../../src/storage/memory/online-state.ts';
import type { OnlineStateOptions } from '../../src/storage/ports.ts';
import { RedisOnlineState } from '../../src/storage/redis/online-state.ts';

const url = process.env.CAIRN_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const run = randomBytes(4).toString('hex');
const prefixes: string[] = [];
let n = 0;

function freshPrefix(): string {
  const prefix = `cairn-test:${run}:${n++}:`;
  prefixes.push(prefix);
  return prefix;
}

async function keysUnder(client: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, page] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...page);
  } while (cursor !== '0');
  return keys;
}

async function deleteOurKeys(): Promise<void> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await client.connect();
  try {
    for (const prefix of prefixes.splice(0)) {
      const keys = await keysUnder(client, prefix);
      if (keys.length > 0) await client.del(...keys);
    }
  } finally {
    await client.quit();
  }
}

const OPTIONS: OnlineStateOptions = {
  types: { view: { weight: 1 }, purchase: { weight: 8 }, dislike: { weight: 0, negative: true } },
  popularityHalfLifeDays: 7,
  historyLimit: 5,
};
const DAY = 86_400_000;
const NOW = 1_700_000_000_000;

const ev = (seq: number, userId: string, itemId: string, type = 'view', timestamp = NOW): StoredEvent => ({
  seq,
  eventId: `e${seq}`,
  userId,
  itemId,
  type,
  value: null,
  timestamp,
  context: null,
});

beforeAll(async () => {
  // Fail loudly (not skip) when the server is not there.
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  try {
    await probe.connect();
    expect(await probe.ping()).toBe('PONG');
  } finally {
    probe.disconnect();
  }
});

afterAll(deleteOurKeys);

describeOnlineStateConformance('redis', (options) =>
  RedisOnlineState.open({ ...options, url, keyPrefix: freshPrefix() }),
);

/** A private, non-persistent redis-server on a free port, for tests that take the server away. */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  const deadline = Date.now() + 10_000;
  for (;;) {
    const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      await probe.ping();
      return child;
    } catch (e) {
      if (Date.now() > deadline || child.exitCode !== null) {
        child.kill('SIGKILL');
        throw e;
      }
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      probe.disconnect();
    }
  }
}

async function stopRedis(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}

describe('Redis online state adapter', () => {
  it('keeps every key under `${keyPrefix}online:`, with TTLs on history, holdings and cache', async () => {
    const prefix = freshPrefix();
    const s = await RedisOnlineState.open({
      ...OPTIONS,
      url,
      keyPrefix: prefix,
      historyTtlMs: 3_600_000,
      maxUserItemWeight: 16,
    });
    try {
      await s.applyEvents([ev(1, 'u1', 'a'), ev(2, 'u2', 'b', 'purchase')]);
      await s.applyChanges([
        {
          seq: 1,
          value: {
            kind: 'items',
            items: [{ id: 'a', categories: [], attributes: {}, available: true, createdAt: 1, updatedAt: 1 }],
          },
        },
        {
          seq: 2,
          value: {
            kind: 'user',
            user: { id: 'u1', attributes: {}, segments: [], optOut: true, createdAt: 1, updatedAt: 1 },
          },
        },
      ]);
      await s.cacheSet('u3', 'k', 'v', 60_000);
      const keys = (await keysUnder(s.client, prefix)).sort();
      expect(keys).toEqual(
        [
          'cache:u3',
          'contrib:u1',
          'contrib:u2',
          'cver:u1',
          'cver:u2',
          'features',
          'history:u1',
          'history:u2',
          'item-ids',
          'items',
          'meta',
          'optout',
          'pop',
          'users',
          'wm',
        ].map((k) => `${prefix}online:${k}`),
      );
      for (const key of ['history:u1', 'contrib:u2', 'cver:u1']) {
        const ttl = await s.client.pttl(`${prefix}online:${key}`);
        expect(ttl).toBeGreaterThan(3_500_000);
        expect(ttl).toBeLessThanOrEqual(3_600_000);
      }
      // The holding: weight and time of the user's share of the item's popularity.
      expect(await s.client.hget(`${prefix}online:contrib:u2`, 'b')).toBe(`8 ${NOW}`);
      const cacheTtl = await s.client.pttl(`${prefix}online:cache:u3`);
      expect(cacheTtl).toBeGreaterThan(50_000);
      expect(cacheTtl).toBeLessThanOrEqual(60_000);
      expect(await s.client.hget(`${prefix}online:meta`, 't0')).toBe(String(NOW));

      // The reference T0 moves forward (all members rescaled) once an exponent passes the limit.
      const far = NOW + 5000 * DAY; // 714 half-lives
      await s.applyEvents([ev(3, 'u1', 'c', 'view', far)]);
      expect(await s.client.hget(`${prefix}online:meta`, 't0')).toBe(String(far));
      const [b, c] = await s.popularity(['b', 'c'], far);
      expect(Math.abs(b / (8 * Math.pow(2, -5000 / 7)) - 1)).toBeLessThan(1e-9);
      expect(c).toBe(1);

      // An erase takes the user's holdings with their history.
      await s.applyChanges([{ seq: 3, value: { kind: 'erase', userId: 'u2', events: [] } }]);
      expect(await s.client.exists(`${prefix}online:contrib:u2`, `${prefix}online:history:u2`)).toBe(0);
      expect(await s.client.exists(`${prefix}online:contrib:u1`)).toBe(1);

      const before = Date.now();
      await s.clear();
      // Nothing left but the cache epoch, started again from the time (never from 0: a cache version read
      // before the clear must not come back).
      expect(await keysUnder(s.client, prefix)).toEqual([`${prefix}online:wm`]);
      expect(await s.client.hgetall(`${prefix}online:wm`)).toEqual({ cepoch: expect.any(String) });
      expect(Number(await s.client.hget(`${prefix}online:wm`, 'cepoch'))).toBeGreaterThanOrEqual(before);
    } finally {
      await s.close();
    }
  });

  it('applies a 1,000-event batch in two round trips (read for the fold, apply), and closes only a client it created', async () => {
    const client = new Redis(url);
    const s = new RedisOnlineState({ ...OPTIONS, client, keyPrefix: freshPrefix() });
    try {
      await client.ping();
      const events = Array.from({ length: 1000 }, (_, i) =>
        ev(i + 1, `u${i % 97}`, `i${i % 31}`, i % 5 === 0 ? 'purchase' : 'view', NOW - i * 60_000),
      );
      const sent = vi.spyOn(client, 'sendCommand');
      await s.applyEvents(events);
      // Per script EVALSHA, plus EVAL when the server did not know it yet.
      expect(sent.mock.calls.length).toBeGreaterThanOrEqual(2);
      expect(sent.mock.calls.length).toBeLessThanOrEqual(4);
      sent.mockClear();
      await s.applyEvents(events.map((e) => ({ ...e, seq: e.seq + 1000, eventId: `x${e.seq}` })));
      expect(sent.mock.calls.length).toBe(2);
      sent.mockClear();
      await s.applyEvents(events); // a replay: the read shows nothing to apply
      expect(sent.mock.calls.length).toBe(1);
      sent.mockRestore();
      expect(await s.watermarks()).toEqual({ events: 2000, changes: 0 });
      expect(await s.popularCount()).toBe(31);

      await s.close();
      expect(client.status).toBe('ready');
      await expect(s.popularCount()).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
    } finally {
      await s.close();
      await client.quit();
    }

    const own = await RedisOnlineState.open({ ...OPTIONS, url, keyPrefix: freshPrefix() });
    await own.close();
    expect(own.client.status).toBe('end');
  });

  it('agrees with the memory adapter under the abuse limits: same caps (the Lua copy), same erases', async () => {
    const limited: OnlineStateOptions = {
      types: { ...OPTIONS.types, rating: { weight: 1, useValue: true } },
      popularityHalfLifeDays: 1,
      historyLimit: 5,
      maxEventWeight: 10,
      maxUserItemWeight: 16,
    };
    const redis = await RedisOnlineState.open({ ...limited, url, keyPrefix: freshPrefix() });
    const memory = new MemoryOnlineState(limited);
    try {
      // Few users and items, heavy repeats, times jumping back and forth over days: the caps bind often.
      let seed = 99;
      const next = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
      const types = ['view', 'purchase', 'rating', 'dislike'];
      const events: StoredEvent[] = Array.from({ length: 3000 }, (_, i) => {
        const type = types[Math.floor(next() * types.length)];
        return {
          ...ev(i + 1, `u${Math.floor(next() * 12)}`, `i${Math.floor(next() * 8)}`, type),
          timestamp: NOW + Math.floor((next() - 0.5) * 6 * DAY),
          value: type === 'rating' ? (next() < 0.1 ? 1e300 : next() * 10) : null,
        };
      });
      for (let from = 0; from < events.length; from += 250) {
        await redis.applyEvents(events.slice(from, from + 250));
        await memory.applyEvents(events.slice(from, from + 250));
      }
      const items = Array.from({ length: 8 }, (_, i) => `i${i}`);
      const compare = async () => {
        const [r, m] = [await redis.popularity(items, NOW), await memory.popularity(items, NOW)];
        items.forEach((_, i) => expect(Math.abs(r[i] - m[i])).toBeLessThanOrEqual(1e-12 * m[i]));
        expect(await redis.popularCount()).toBe(await memory.popularCount());
        return m;
      };
      const before = await compare();
      // The caps bound: 12 users can hold at most 12 · 16 of an item, decayed from the newest event on.
      for (const score of before) expect(score).toBeLessThanOrEqual(12 * 16 * Math.pow(2, 3));
      const erase = ['u0', 'u3', 'u7'].map((userId, k) => ({
        seq: k + 1,
        value: {
          kind: 'erase' as const,
          userId,
          events: events
            .filter((e) => e.userId === userId)
            .map(({ seq, itemId, type, value, timestamp }) => ({ seq, itemId, type, value, timestamp })),
        },
      }));
      await redis.applyChanges(erase);
      await memory.applyChanges(erase);
      const after = await compare();
      expect(after.reduce((x, y) => x + y)).toBeLessThan(before.reduce((x, y) => x + y));
    } finally {
      await redis.close();
      await memory.close();
    }
  });

  it('never reads out a sum that overflowed before weights were clamped (state written by an older version)', async () => {
    const prefix = freshPrefix();
    const s = await RedisOnlineState.open({ ...OPTIONS, url, keyPrefix: prefix });
    try {
      await s.applyEvents([ev(1, 'u1', 'a')]);
      await s.client.zadd(`${prefix}online:pop`, '-inf', 'overflowed');
      expect(await s.popular(0, 10, NOW)).toEqual([{ itemId: 'a', score: 1 }]);
      expect(await s.popularity(['overflowed', 'a'], NOW)).toEqual([0, 1]);
    } finally {
      await s.close();
    }
  });

  it('refuses ambiguous or unsafe connection options with CAIRN_CONFIG_INVALID', () => {
    const prefixed = new Redis(url, { lazyConnect: true, keyPrefix: 'x:' });
    try {
      expect(() => new RedisOnlineState({ ...OPTIONS, keyPrefix: 'p:' })).toThrow(
        expect.objectContaining({ code: 'CAIRN_CONFIG_INVALID' }),
      );
      expect(() => new RedisOnlineState({ ...OPTIONS, url, client: prefixed, keyPrefix: 'p:' })).toThrow(
        expect.objectContaining({ code: 'CAIRN_CONFIG_INVALID' }),
      );
      expect(() => new RedisOnlineState({ ...OPTIONS, client: prefixed, keyPrefix: 'p:' })).toThrow(
        expect.objectContaining({ code: 'CAIRN_CONFIG_INVALID' }),
      );
      expect(() => new RedisOnlineState({ ...OPTIONS, url, keyPrefix: 'p:', historyLimit: 0 })).toThrow(
        expect.objectContaining({ code: 'CAIRN_CONFIG_INVALID' }),
      );
    } finally {
      prefixed.disconnect();
    }
  });

  it('reports an unreachable server as CAIRN_UNAVAILABLE, quickly', async () => {
    const started = Date.now();
    await expect(
      RedisOnlineState.open({ ...OPTIONS, url: 'redis://127.0.0.1:1', keyPrefix: freshPrefix() }),
    ).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('fails with CAIRN_UNAVAILABLE while the server is down, recovers when it is back, reloads its scripts', async () => {
    const port = await freePort();
    let server = await startRedis(port);
    const s = await RedisOnlineState.open({ ...OPTIONS, url: `redis://127.0.0.1:${port}`, keyPrefix: 'p:' });
    try {
      await s.applyEvents([ev(1, 'u1', 'a')]);
      expect(await s.popularCount()).toBe(1);

      await stopRedis(server);
      const started = Date.now();
      await expect(s.watermarks()).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
      await expect(s.applyEvents([ev(2, 'u1', 'b')])).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
      expect(Date.now() - started).toBeLessThan(5000);

      // A restarted, empty server: the client reconnects and the scripts are loaded again (NOSCRIPT → EVAL).
      server = await startRedis(port);
      let recovered = false;
      for (let i = 0; i < 100 && !recovered; i++) {
        try {
          await s.applyEvents([ev(3, 'u1', 'c')]);
          recovered = true;
        } catch (e) {
          expect(e).toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      expect(recovered).toBe(true);
      expect(await s.watermarks()).toEqual({ events: 3, changes: 0 });
      expect(await s.popularity(['a', 'c'], NOW)).toEqual([0, 1]);
    } finally {
      await s.close();
      await stopRedis(server);
    }
  });
});
