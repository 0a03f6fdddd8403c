/**
 * Rate limits counted in the real Redis (`CAIRN_TEST_REDIS_URL`, default redis://127.0.0.1:6379): two app
 * instances (replicas) with one key prefix share one counter, another prefix has its own, and a Redis
 * that cannot be reached lets requests through instead of failing them. Every test uses its own random
 * key prefix; only keys under it are deleted afterwards.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildOpsApp } from '../../src/api/app.ts';
import { loadConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/monitoring/logger.ts';
import { createMetrics } from '../../src/monitoring/metrics.ts';
import { createRateLimitRedis } from '../../src/storage/redis/rate-limit.ts';
import { assertServicesUp, freePort, SERVICES } from './helpers/processes.ts';

const run = randomBytes(4).toString('hex');
const prefixes: string[] = [];
const apps: FastifyInstance[] = [];
let admin: Redis;

function freshPrefix(): string {
  const prefix = `cairn-test:${run}:${prefixes.length}:`;
  prefixes.push(prefix);
  return prefix;
}

/** A replica's HTTP app counting in Redis at `url` under `keyPrefix`, 3 requests per IP per minute. */
async function replica(keyPrefix: string, url = SERVICES.redis, waitReady = true): Promise<FastifyInstance> {
  const logger = createLogger('silent');
  const config = loadConfig({
    env: {},
    overrides: {
      redis: { url, keyPrefix },
      rateLimit: { perIp: 3, windowSeconds: 60, exemptLoopback: false },
    },
  });
  const redis = createRateLimitRedis(url, () => undefined);
  // Until connected, a limiter command fails and the request goes through: wait, so counts are exact.
  if (waitReady) await once(redis, 'ready');
  const app = buildOpsApp({
    config,
    logger,
    metrics: createMetrics({ defaultMetrics: false }),
    health: { ready: () => Promise.resolve({ ready: true, checks: {} }) },
    rateLimitRedis: redis,
  });
  apps.push(app);
  await app.ready();
  return app;
}

const status = async (app: FastifyInstance, remoteAddress = '10.9.8.7') =>
  (await app.inject({ method: 'GET', url: '/metrics', remoteAddress })).statusCode;

beforeAll(async () => {
  await assertServicesUp(['redis']);
  admin = new Redis(SERVICES.redis, { maxRetriesPerRequest: 1 });
});

afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

afterAll(async () => {
  for (const prefix of prefixes) {
    const keys = await admin.keys(`${prefix}*`);
    if (keys.length > 0) await admin.del(...keys);
  }
  await admin.quit();
});

describe('rate limits in Redis', () => {
  it('share one counter between replicas with the same key prefix', async () => {
    const prefix = freshPrefix();
    const a = await replica(prefix);
    const b = await replica(prefix);
    expect([await status(a), await status(b), await status(a)]).toEqual([200, 200, 200]);
    expect(await status(b)).toBe(429);
    expect(await status(a)).toBe(429);
    // The counter is Redis's, under the configured prefix.
    expect(await admin.keys(`${prefix}ratelimit:*`)).toEqual([`${prefix}ratelimit:ip:10.9.8.7`]);
    // Another client IP has its own budget on both replicas.
    expect(await status(b, '10.9.8.6')).toBe(200);
  });

  it('keep deployments with different key prefixes apart', async () => {
    const a = await replica(freshPrefix());
    for (let i = 0; i < 3; i++) expect(await status(a)).toBe(200);
    expect(await status(a)).toBe(429);
    const other = await replica(freshPrefix());
    expect(await status(other)).toBe(200);
  });

  it('let requests through, neither 429 nor 5xx, while Redis cannot be reached', async () => {
    // Nothing listens on this port: every limiter command fails at once.
    const app = await replica(freshPrefix(), `redis://127.0.0.1:${await freePort()}`, false);
    for (let i = 0; i < 10; i++) expect(await status(app)).toBe(200);
  });
});
