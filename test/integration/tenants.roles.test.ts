/**
 * Tenants in the production architecture: an API replica and a worker (`cairn serve --role api|worker`)
 * on PostgreSQL, Redis and NATS JetStream serving the default tenant and `acme`, with keys minted by the
 * `cairn keys` CLI. What acme ingests travels through acme's own streams, is projected by the worker into
 * acme's own Redis keys and lands in acme's own schema; acme's training job runs on acme's queue; the
 * default tenant sees none of it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertServicesUp, pollUntil, TestDeployment, type CairnProcess } from './helpers/processes.ts';

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

describe('tenants on api and worker roles', () => {
  let d: TestDeployment;
  let api: CairnProcess;
  const tenantsEnv = { CAIRN_TENANTS: '["acme"]', CAIRN_AUTH_ENABLED: 'true', CAIRN_TRAINING_THREADS: '1' };
  const tokens = { default: '', acme: '' };

  const call = async (token: string, method: string, path: string, body?: unknown): Promise<Answer> => {
    const res = await fetch(`${api.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  };
  const popularIds = async (token: string) =>
    ((await call(token, 'GET', '/v1/popular?k=50')).body.items as { item_id: string }[]).map(
      (i) => i.item_id,
    );

  beforeAll(async () => {
    await assertServicesUp(['postgres', 'redis', 'nats']);
    d = await TestDeployment.create({ name: 'tenants', redis: true, nats: true });
    const mint = async (tenant: string) => {
      const out = await d.cli(['keys', 'create', '--scopes', 'admin', '--tenant', tenant], d.env(tenantsEnv));
      expect(out.code, out.stderr).toBe(0);
      return out.stdout.trim().split('\n').at(-1)!;
    };
    // The CLI creates the default tenant's schema (where keys live) before any server starts.
    tokens.default = await mint('default');
    tokens.acme = await mint('acme');
    [api] = await Promise.all([d.serve('api', 'api', tenantsEnv), d.serve('worker', 'worker', tenantsEnv)]);
  }, 240_000);

  afterAll(async () => {
    await d?.cleanup();
  });

  it('refuses a request without a key, and a key of the other tenant sees nothing of acme', async () => {
    expect((await fetch(`${api.url}/v1/popular`)).status).toBe(401);
    const items = Array.from({ length: 10 }, (_, i) => ({ id: `acme-i${i}`, categories: ['c'] }));
    expect((await call(tokens.acme, 'POST', '/v1/items', { items })).status).toBe(200);
    const events = Array.from({ length: 200 }, (_, n) => ({
      event_id: `acme-e${n}`,
      user_id: `acme-u${n % 25}`,
      item_id: `acme-i${(n * 3) % 10}`,
      type: 'purchase',
    }));
    expect((await call(tokens.acme, 'POST', '/v1/events', { events })).status).toBe(200);

    // The worker projects acme's events from acme's streams into acme's online state.
    const seen = await pollUntil('acme popularity', async () => (await popularIds(tokens.acme)).length > 0, {
      timeoutMs: 30_000,
    });
    expect(seen).toBe(true);
    expect((await popularIds(tokens.acme)).every((id) => id.startsWith('acme-'))).toBe(true);
    expect(await popularIds(tokens.default)).toEqual([]);
    expect((await call(tokens.default, 'GET', '/v1/items/acme-i1')).status).toBe(404);

    // ...and its store writer lands them in acme's schema only.
    const count = (schema: string) => d.sql<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".events`);
    await pollUntil(
      'acme events in PostgreSQL',
      async () => Number((await count(`${d.schema}_t_acme`))[0].n) === 200,
      { timeoutMs: 30_000 },
    );
    expect(Number((await count(d.schema))[0].n)).toBe(0);
  });

  it('runs acme’s training on acme’s queue and serves the model to acme only', async () => {
    const job = await call(tokens.acme, 'POST', '/v1/models/train', { algorithm: 'pop' });
    expect(job.status, JSON.stringify(job.body)).toBe(202);
    const done = await pollUntil(
      'acme training',
      async () => {
        const j = await call(tokens.acme, 'GET', `/v1/jobs/${String(job.body.job_id)}`);
        return j.body.status === 'succeeded' || j.body.status === 'failed' ? j.body : null;
      },
      { timeoutMs: 90_000, intervalMs: 200 },
    );
    expect(done.status, JSON.stringify(done)).toBe('succeeded');
    expect(((await call(tokens.acme, 'GET', '/v1/models')).body.models as unknown[]).length).toBe(1);
    expect(((await call(tokens.default, 'GET', '/v1/models')).body.models as unknown[]).length).toBe(0);
    // A job id of acme is not a job of the default tenant.
    expect((await call(tokens.default, 'GET', `/v1/jobs/${String(job.body.job_id)}`)).status).toBe(404);
  }, 120_000);
});
