/** The request context's deadline: `server.requestTimeoutMs` after the request arrived, or none for 0. */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load.ts';
import { createLogger } from '../monitoring/logger.ts';
import { createMetrics } from '../monitoring/metrics.ts';
import { buildOpsApp } from './app.ts';

async function deadlineOf(requestTimeoutMs: number): Promise<{ before: number; deadline: number | null }> {
  const app = buildOpsApp({
    config: loadConfig({ env: {}, overrides: { server: { requestTimeoutMs } } }),
    logger: createLogger('silent'),
    metrics: createMetrics({ defaultMetrics: false }),
    health: { ready: () => Promise.resolve({ ready: true, checks: {} }) },
  });
  let deadline: number | null | undefined;
  app.addHook('onResponse', (request, _reply, done) => {
    deadline = request.ctx.deadline;
    done();
  });
  try {
    const before = Date.now();
    expect((await app.inject({ method: 'GET', url: '/health/live' })).statusCode).toBe(200);
    expect(deadline).not.toBeUndefined();
    return { before, deadline: deadline! };
  } finally {
    await app.close();
  }
}

describe('request deadline', () => {
  it('is the configured budget after the request arrived', async () => {
    const { before, deadline } = await deadlineOf(1500);
    expect(deadline).toBeGreaterThanOrEqual(before + 1500);
    expect(deadline).toBeLessThanOrEqual(Date.now() + 1500);
  });

  it('is absent when the budget is 0', async () => {
    expect((await deadlineOf(0)).deadline).toBeNull();
  });
});
