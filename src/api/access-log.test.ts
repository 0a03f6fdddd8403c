/**
 * Access logs: at `info` a sample of ordinary requests plus every notable one (client and server errors
 * but the flooding kinds, slow requests), at `debug` every request; per-route summary lines with
 * counts, status classes and p50/p99/max; user ids only as pseudonyms.
 */
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadConfig, type Config, type DeepPartial } from '../config/load.ts';
import { CairnError } from '../errors/errors.ts';
import { createLogger } from '../monitoring/logger.ts';
import { createMetrics } from '../monitoring/metrics.ts';
import { RouteSummary } from './access-log.ts';
import { buildOpsApp } from './app.ts';

type Line = Record<string, unknown>;
const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

/** The ops app with a few routes and every log line captured. Summaries only on close unless asked. */
async function build(level: string, logging: DeepPartial<Config['logging']>) {
  const lines: Line[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as Line);
      cb();
    },
  });
  const app = buildOpsApp({
    config: loadConfig({ env: {}, overrides: { logging: { accessSummarySeconds: 3600, ...logging } } }),
    logger: createLogger(level, { destination }),
    metrics: createMetrics({ defaultMetrics: false }),
    health: { ready: () => Promise.resolve({ ready: true, checks: {} }) },
    pseudonymize: (id) => `p(${id.length})`,
  });
  const scope = { config: { scope: 'public' as const } };
  app.get('/t/ok', scope, () => ({ ok: true }));
  app.get('/v1/users/:id/things', scope, () => ({ ok: true }));
  app.get('/t/bad', scope, () => {
    throw CairnError.validation([{ field: 'k', message: 'must be an integer' }]);
  });
  app.get('/t/missing', scope, () => {
    throw new CairnError('CAIRN_ITEM_NOT_FOUND', 'no such item');
  });
  app.get('/t/down', scope, () => {
    throw new CairnError('CAIRN_UNAVAILABLE', 'store down');
  });
  app.get('/t/boom', scope, () => {
    throw new Error('bug');
  });
  app.get('/t/slow', scope, async () => {
    // Well over slowRequestMs 150, which no other request here comes near even on a loaded machine.
    await new Promise((r) => setTimeout(r, 400));
    return { ok: true };
  });
  apps.push(app);
  await app.ready();
  const get = async (url: string, id: string) => {
    await app.inject({ url, headers: { 'x-request-id': id } });
  };
  const accessLine = (id: string) => lines.find((l) => l.request_id === id && l.msg === 'request completed');
  return { app, lines, get, accessLine };
}

describe('access lines at info', () => {
  it('writes no line for an ordinary request the sample misses', async () => {
    const { get, accessLine } = await build('info', { accessSample: 0.5 });
    // Math.random() < 0.5 is false for a draw of 0.5 and up.
    vi.spyOn(Math, 'random').mockReturnValue(0.7);
    try {
      await get('/t/ok', 'miss');
    } finally {
      vi.restoreAllMocks();
    }
    expect(accessLine('miss')).toBeUndefined();
  });

  it('writes a sampled request with its sample rate, the user as a pseudonym, never the raw id', async () => {
    const { get, accessLine, lines } = await build('info', { accessSample: 1 });
    await get('/v1/users/jane-doe-77/things', 'hit');
    expect(accessLine('hit')).toMatchObject({
      level: 'info',
      route: '/v1/users/:id/things',
      user: 'p(11)',
      status: 200,
      sample_rate: 1,
    });
    expect(JSON.stringify(lines)).not.toContain('jane-doe-77');
  });

  it('always writes client errors, server errors and slow requests; samples 404 and 503 floods', async () => {
    const { get, accessLine, lines } = await build('info', { accessSample: 0, slowRequestMs: 150 });
    for (const [url, id] of [
      ['/t/ok', 'ok'],
      ['/t/bad', 'bad'],
      ['/t/boom', 'boom'],
      ['/t/slow', 'slow'],
      ['/t/missing', 'missing'],
      ['/t/nowhere', 'nowhere'],
      ['/t/down', 'down'],
      ['/health/live', 'live'],
    ])
      await get(url, id);
    expect(accessLine('bad')).toMatchObject({ level: 'info', status: 400 });
    expect(accessLine('boom')).toMatchObject({ level: 'info', status: 500 });
    expect(accessLine('slow')).toMatchObject({ level: 'info', status: 200, route: '/t/slow' });
    expect(accessLine('slow')!.ms).toBeGreaterThanOrEqual(150);
    expect(accessLine('bad')).not.toHaveProperty('sample_rate');
    for (const id of ['ok', 'missing', 'nowhere', 'down', 'live']) expect(accessLine(id)).toBeUndefined();
    // The outage's cause is still logged once, by the error handler.
    expect(lines.find((l) => l.request_id === 'down' && l.msg === 'request failed')).toBeDefined();
  });

  it('writes no line for probes and scrapes even when every request is sampled', async () => {
    const { get, accessLine } = await build('info', { accessSample: 1 });
    await get('/health/live', 'live');
    await get('/health/ready', 'ready');
    expect(accessLine('live')).toBeUndefined();
    expect(accessLine('ready')).toBeUndefined();
  });
});

describe('access lines at debug', () => {
  it('writes every request, sampled out or not', async () => {
    const { get, accessLine } = await build('debug', { accessSample: 0 });
    await get('/t/ok', 'ok');
    await get('/health/live', 'live');
    await get('/t/nowhere', 'nowhere');
    expect(accessLine('ok')).toMatchObject({ level: 'debug', status: 200, route: '/t/ok' });
    expect(accessLine('live')).toMatchObject({ level: 'debug', status: 200 });
    expect(accessLine('nowhere')).toMatchObject({ level: 'debug', status: 404, route: 'unmatched' });
  });
});

describe('per-route summaries', () => {
  it('writes one line per route with counts by status class when the app closes', async () => {
    const { app, get, lines } = await build('info', { accessSample: 0 });
    for (let i = 0; i < 3; i++) await get('/t/ok', `ok-${i}`);
    await get('/t/bad', 'bad');
    await get('/t/bad', 'bad-2');
    await get('/t/boom', 'boom');
    await app.close();
    const summaries = lines.filter((l) => l.msg === 'requests summary');
    expect(summaries).toHaveLength(3);
    const of = (route: string) => summaries.find((l) => l.route === route)!;
    expect(of('/t/ok')).toMatchObject({ method: 'GET', count: 3, statuses: { '2xx': 3 } });
    expect(of('/t/bad')).toMatchObject({ count: 2, statuses: { '4xx': 2 } });
    expect(of('/t/boom')).toMatchObject({ count: 1, statuses: { '5xx': 1 } });
    for (const line of summaries) {
      expect(line.p50_ms).toBeGreaterThan(0);
      expect(line.p99_ms).toBeGreaterThanOrEqual(line.p50_ms as number);
      expect(line.max_ms).toBeGreaterThanOrEqual(line.p99_ms as number);
    }
  });

  it('writes summaries every accessSummarySeconds, each covering only its own window', async () => {
    const { get, lines } = await build('info', { accessSample: 0, accessSummarySeconds: 0.05 });
    const summaries = () => lines.filter((l) => l.msg === 'requests summary');
    await get('/t/ok', 'first');
    await vi.waitFor(() => expect(summaries()).toHaveLength(1));
    await get('/t/ok', 'second');
    await get('/t/ok', 'third');
    await vi.waitFor(() => expect(summaries()).toHaveLength(2));
    expect(summaries().map((l) => l.count)).toEqual([1, 2]);
  });

  it('writes none with accessSummarySeconds 0', async () => {
    const { app, get, lines } = await build('info', { accessSample: 0, accessSummarySeconds: 0 });
    await get('/t/ok', 'ok');
    await app.close();
    expect(lines.filter((l) => l.msg === 'requests summary')).toHaveLength(0);
  });
});

describe('RouteSummary percentiles', () => {
  it('puts p50 and p99 within 5 % of the exact values, max exact', () => {
    const summary = new RouteSummary();
    for (let ms = 1; ms <= 100; ms++) summary.record('GET', '/r', 200, ms);
    summary.record('GET', '/r', 503, 1234.5);
    const [line] = summary.drain();
    expect(line).toMatchObject({
      method: 'GET',
      route: '/r',
      count: 101,
      statuses: { '2xx': 100, '5xx': 1 },
    });
    // Exact: rank 51 of 101 is 51 ms; rank 100 is 100 ms.
    expect(line.p50_ms).toBeGreaterThanOrEqual(51);
    expect(line.p50_ms).toBeLessThanOrEqual(51 * 1.05);
    expect(line.p99_ms).toBeGreaterThanOrEqual(100);
    expect(line.p99_ms).toBeLessThanOrEqual(105);
    expect(line.max_ms).toBe(1234.5);
  });

  it('starts every window from zero and leaves idle routes out', () => {
    const summary = new RouteSummary();
    summary.record('GET', '/a', 200, 2);
    summary.record('POST', '/b', 202, 3);
    expect(summary.drain()).toHaveLength(2);
    summary.record('GET', '/a', 200, 0.5);
    const lines = summary.drain();
    expect(lines).toEqual([
      { method: 'GET', route: '/a', count: 1, statuses: { '2xx': 1 }, p50_ms: 0.5, p99_ms: 0.5, max_ms: 0.5 },
    ]);
    expect(summary.drain()).toEqual([]);
  });
});
