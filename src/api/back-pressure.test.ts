/**
 * Back-pressure: past `server.maxInFlight` requests in flight or `server.maxEventLoopDelayMs` of mean
 * event-loop delay, new requests get 503 CAIRN_OVERLOADED with Retry-After; `/health/live` never does.
 */
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadConfig, type Config, type DeepPartial } from '../config/load.ts';
import { createLogger } from '../monitoring/logger.ts';
import { createMetrics, type Metrics } from '../monitoring/metrics.ts';
import { buildOpsApp } from './app.ts';
import { eventLoopDelayProbe, registerBackPressure, type EventLoopDelayProbe } from './back-pressure.ts';

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

/** A route whose handlers stay open until `release()`; `entered` counts handlers that started. */
function holdRoute(app: FastifyInstance) {
  const gate = { entered: 0, release: () => {} };
  let open!: Promise<void>;
  const reset = () => {
    open = new Promise<void>((resolve) => (gate.release = resolve));
  };
  reset();
  app.get('/t/hold', { config: { scope: 'public' } }, async () => {
    gate.entered++;
    await open;
    return { held: true };
  });
  app.get('/t/quick', { config: { scope: 'public' } }, () => ({ quick: true }));
  return gate;
}

/** The Cairn ops app (health, metrics, access control, errors) with back-pressure from config. */
async function opsApp(server: DeepPartial<Config['server']>) {
  const metrics = createMetrics({ defaultMetrics: false });
  const app = buildOpsApp({
    config: loadConfig({ env: {}, overrides: { server } }),
    logger: createLogger('silent'),
    metrics,
    health: { ready: () => Promise.resolve({ ready: true, checks: {} }) },
  });
  apps.push(app);
  const gate = holdRoute(app);
  await app.ready();
  return { app, gate, metrics };
}

function expectOverloaded(res: LightMyRequestResponse, reason: string, retryAfter: string): void {
  expect(res.statusCode).toBe(503);
  expect(res.headers['retry-after']).toBe(retryAfter);
  const body = res.json<{ error: { code: string; details: Record<string, unknown> } }>();
  expect(body.error.code).toBe('CAIRN_OVERLOADED');
  expect(body.error.details).toMatchObject({ reason, retry_after_seconds: Number(retryAfter) });
}

async function shedCount(metrics: Metrics, reason: string): Promise<number> {
  const metric = await metrics.registry.getSingleMetric('cairn_http_shed_total')!.get();
  return metric.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

describe('in-flight limit', () => {
  it('refuses with 503 once maxInFlight requests are held open, and admits again once they finish', async () => {
    const { app, gate, metrics } = await opsApp({ maxInFlight: 2, maxEventLoopDelayMs: 0 });
    const held = [app.inject('/t/hold'), app.inject('/t/hold')];
    await vi.waitFor(() => expect(gate.entered).toBe(2));

    const refused = await app.inject({ url: '/t/quick', headers: { 'x-request-id': 'shed-1' } });
    expectOverloaded(refused, 'in_flight', '1');
    expect(refused.headers['x-request-id']).toBe('shed-1');
    expect(refused.json<{ error: { details: { limit: number } } }>().error.details.limit).toBe(2);
    // Liveness and scrapes are never refused; readiness is (it takes the process out of rotation).
    expect((await app.inject('/health/live')).statusCode).toBe(200);
    expect((await app.inject('/metrics')).statusCode).toBe(200);
    const ready = await app.inject('/health/ready');
    expect(ready.statusCode).toBe(503);
    expect(ready.headers['retry-after']).toBe('1');
    expect(ready.json()).toMatchObject({ status: 'not_ready', checks: { overload: { ok: false } } });
    expect(await shedCount(metrics, 'in_flight')).toBe(2);
    expect(await shedCount(metrics, 'event_loop_delay')).toBe(0);

    gate.release();
    for (const res of await Promise.all(held)) expect(res.statusCode).toBe(200);
    expect((await app.inject('/t/quick')).statusCode).toBe(200);
  });

  it('admits everything with maxInFlight 0', async () => {
    const { app, gate } = await opsApp({ maxInFlight: 0, maxEventLoopDelayMs: 0 });
    const held = [1, 2, 3].map(() => app.inject('/t/hold'));
    await vi.waitFor(() => expect(gate.entered).toBe(3));
    expect((await app.inject('/t/quick')).statusCode).toBe(200);
    gate.release();
    await Promise.all(held);
  });

  it('frees the slot of a client that went away before its answer', async () => {
    const { app, gate } = await opsApp({ maxInFlight: 1, maxEventLoopDelayMs: 0 });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const client = httpRequest({ host: '127.0.0.1', port, path: '/t/hold' });
    client.on('error', () => {}); // the abort below
    client.end();
    await vi.waitFor(() => expect(gate.entered).toBe(1));
    expectOverloaded(await app.inject('/t/quick'), 'in_flight', '1');

    client.destroy();
    // The handler is still held open; the slot is free once the server saw the connection close.
    await vi.waitFor(async () => expect((await app.inject('/t/quick')).statusCode).toBe(200));
    gate.release();
  });
});

describe('event-loop delay ceiling', () => {
  function fakeProbe(delayMs: number) {
    const probe = { delay: delayMs, closed: false };
    const api: EventLoopDelayProbe = { delayMs: () => probe.delay, close: () => void (probe.closed = true) };
    return { probe, api };
  }

  async function bareApp(probe: EventLoopDelayProbe, registry = new Registry()) {
    const app = Fastify() as unknown as FastifyInstance;
    const config = loadConfig({ env: {}, overrides: { server: { maxEventLoopDelayMs: 1000 } } });
    registerBackPressure(app, { config, registry, probe });
    app.get('/health/live', () => ({ status: 'ok' }));
    app.get('/t/quick', () => ({ quick: true }));
    apps.push(app);
    await app.ready();
    return app;
  }

  it('refuses while the mean delay is above maxEventLoopDelayMs, with a Retry-After covering it', async () => {
    const { probe, api } = fakeProbe(1500);
    const app = await bareApp(api);
    expectOverloaded(await app.inject('/t/quick'), 'event_loop_delay', '2');
    expect((await app.inject('/health/live')).statusCode).toBe(200);

    probe.delay = 999;
    expect((await app.inject('/t/quick')).statusCode).toBe(200);
    await app.close();
    expect(probe.closed).toBe(true);
  });

  it('measures a stalled event loop', async () => {
    const probe = eventLoopDelayProbe(50);
    try {
      // Node's monitor starts timing at its first tick: let it tick before stalling.
      await new Promise((resolve) => setTimeout(resolve, 30));
      const until = performance.now() + 300;
      while (performance.now() < until); // a synchronous stall, like a big batch on the main thread
      let seen = 0;
      await vi.waitFor(
        () => {
          seen = Math.max(seen, probe.delayMs());
          expect(seen).toBeGreaterThan(20);
        },
        { timeout: 5000, interval: 5 },
      );
    } finally {
      probe.close();
    }
  });
});
