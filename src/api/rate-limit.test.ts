/**
 * Rate limits on the HTTP layer with in-process counters (the Redis-shared ones are tested in
 * test/integration/rate-limit.redis.test.ts): per client IP, per API key once access control knows it,
 * the loopback and /health exemptions, and the Cairn error shape of a 429.
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig, type Config, type DeepPartial } from '../config/load.ts';
import { createLogger } from '../monitoring/logger.ts';
import { createMetrics } from '../monitoring/metrics.ts';
import type { Authenticator } from '../security/contracts.ts';
import { buildOpsApp } from './app.ts';
import { isLoopback } from './rate-limit.ts';

/** Accepts `Bearer <id>` for ids starting with `k` as that API key, with every scope. */
const keys: Authenticator = {
  authenticate: (header) => {
    const id = header?.match(/^Bearer (k\w*)$/)?.[1];
    return Promise.resolve(
      id ? { principal: { id, kind: 'key', scopes: ['read', 'ingest', 'admin'] }, tenant: 'default' } : null,
    );
  },
};

let app: FastifyInstance | null = null;

async function open(overrides: DeepPartial<Config>): Promise<FastifyInstance> {
  const config = loadConfig({ env: {}, overrides });
  app = buildOpsApp({
    config,
    logger: createLogger('silent'),
    metrics: createMetrics({ defaultMetrics: false }),
    health: { ready: () => Promise.resolve({ ready: true, checks: {} }) },
    auth: keys,
  });
  await app.ready();
  return app;
}

afterEach(async () => {
  await app?.close();
  app = null;
});

const get = (url: string, remoteAddress = '10.0.0.1', key?: string) =>
  app!.inject({
    method: 'GET',
    url,
    remoteAddress,
    headers: key ? { authorization: `Bearer ${key}` } : {},
  });

function expectLimited(res: LightMyRequestResponse, by: 'ip' | 'api_key', limit: number): void {
  expect(res.statusCode).toBe(429);
  const retryAfter = Number(res.headers['retry-after']);
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(60);
  expect(res.headers['x-request-id']).toBeTruthy();
  const body = res.json<{ error: { code: string; details: Record<string, unknown> } }>();
  expect(body.error.code).toBe('CAIRN_RATE_LIMITED');
  expect(body.error.details).toEqual({
    limit,
    window_seconds: 60,
    retry_after_seconds: retryAfter,
    by,
  });
}

describe('rate limits', () => {
  it('limits a client IP to perIp requests per window, separately from other IPs', async () => {
    await open({ rateLimit: { perIp: 3, perKey: 100, windowSeconds: 60, exemptLoopback: false } });
    for (let i = 0; i < 3; i++) {
      const res = await get('/metrics');
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-ratelimit-remaining']).toBe(String(2 - i));
    }
    expectLimited(await get('/metrics'), 'ip', 3);
    expect((await get('/metrics', '10.0.0.2')).statusCode).toBe(200);
    // Without the loopback exemption, loopback counts like any other client.
    for (let i = 0; i < 3; i++) expect((await get('/metrics', '127.0.0.1')).statusCode).toBe(200);
    expect((await get('/metrics', '127.0.0.1')).statusCode).toBe(429);
  });

  it('counts a request with an API key against its key (perKey), not its IP', async () => {
    await open({
      auth: { enabled: true },
      rateLimit: { perIp: 2, perKey: 4, windowSeconds: 60, exemptLoopback: false },
    });
    for (let i = 0; i < 4; i++) expect((await get('/metrics', '10.0.0.1', 'k1')).statusCode).toBe(200);
    expectLimited(await get('/metrics', '10.0.0.1', 'k1'), 'api_key', 4);
    // Same IP, another key: its own budget.
    expect((await get('/metrics', '10.0.0.1', 'k2')).statusCode).toBe(200);
  });

  it('never limits /health/*', async () => {
    await open({ rateLimit: { perIp: 1, windowSeconds: 60, exemptLoopback: false } });
    expect((await get('/metrics')).statusCode).toBe(200);
    expect((await get('/metrics')).statusCode).toBe(429);
    for (let i = 0; i < 5; i++) {
      expect((await get('/health/live')).statusCode).toBe(200);
      expect((await get('/health/ready')).statusCode).toBe(200);
    }
  });

  it('exempts loopback clients when exemptLoopback is set', async () => {
    await open({ rateLimit: { perIp: 1, windowSeconds: 60, exemptLoopback: true } });
    for (let i = 0; i < 5; i++) {
      expect((await get('/metrics', '127.0.0.1')).statusCode).toBe(200);
      expect((await get('/metrics', '::1')).statusCode).toBe(200);
    }
    expect((await get('/metrics', '192.168.1.9')).statusCode).toBe(200);
    expect((await get('/metrics', '192.168.1.9')).statusCode).toBe(429);
  });

  it('does nothing when disabled', async () => {
    await open({ rateLimit: { enabled: false, perIp: 1, exemptLoopback: false } });
    for (let i = 0; i < 5; i++) {
      const res = await get('/metrics');
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-ratelimit-limit']).toBeUndefined();
    }
  });
});

describe('isLoopback', () => {
  it('knows the loopback addresses, in IPv4, IPv6 and IPv4-mapped form', () => {
    for (const ip of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1'])
      expect(isLoopback(ip)).toBe(true);
    for (const ip of ['10.0.0.1', '::ffff:10.0.0.1', '128.0.0.1', '::2', '1127.0.0.1'])
      expect(isLoopback(ip)).toBe(false);
  });
});
