/**
 * The experiment loop end to end, in one all-in-one process on SQLite, through HTTP (`app.inject`):
 * demo data, a trained champion and a second model version; an A/B test between them; 10,000
 * simulated users asking for recommendations; feedback with a planted better variant posted by
 * `request_id` (and one click arriving as an event carrying `request_id`); then the results endpoint
 * must attribute it, detect the lift (95 % interval excluding 0) and find no sample-ratio mismatch.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../src/algorithms/random.ts';
import { loadConfig } from '../../src/config/load.ts';
import { systemContext } from '../../src/domain/context.ts';
import { seedDemo, waitForJob } from '../../src/main/demo.ts';
import { createEmbedded, type Embedded } from '../../src/main/embedded.ts';
import { createLogger } from '../../src/monitoring/logger.ts';
import { waitFor } from '../../src/storage/conformance/helpers.ts';

interface Rec {
  request_id: string;
  user_id: string;
  model_version: string | null;
  experiment?: { id: string; variant: string } | null;
  items: { item_id: string }[];
}

interface Estimate {
  value: number;
  low: number;
  high: number;
}

interface Results {
  experiment_id: string;
  srm_p_value: number | null;
  variants: {
    name: string;
    users: number;
    impressions: number;
    clicks: number;
    conversions: number;
    ctr: Estimate;
    conversion_rate: Estimate;
    revenue_per_user: Estimate;
    lift_vs_control: Estimate | null;
  }[];
}

const USERS = 10_000;
/** Planted per-user rates: the challenger is better on both. */
const CLICK = { control: 0.1, challenger: 0.14 } as Record<string, number>;
const CONVERT = { control: 0.04, challenger: 0.06 } as Record<string, number>;

describe('experiments end to end (embedded, SQLite)', () => {
  let cairn: Embedded;
  let dir: string;
  let champion: string;
  let challenger: string;
  const answers: Rec[] = [];
  /** Repeated requests of already-counted users (served, without feedback). */
  const repeats: Rec[] = [];

  const inject = async (method: 'GET' | 'POST', url: string, payload?: unknown) => {
    const headers = method === 'GET' ? {} : { 'content-type': 'application/json' };
    const res = await cairn.app.inject({ method, url, headers, payload: payload as object | undefined });
    return { status: res.statusCode, body: res.json<Record<string, unknown>>() };
  };
  const results = async () =>
    (await inject('GET', '/v1/experiments/ab-1/results')).body as unknown as Results;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-e2e-exp-'));
    const config = loadConfig({
      env: {},
      overrides: {
        dataDir: dir,
        store: { url: '' },
        training: { threads: 1, algorithm: 'als' },
        // This file checks experiments, not load shedding: on a CI machine running other test files at
        // once, the event loop's measured delay passes 1 s now and then and would turn requests into 503s.
        server: { maxEventLoopDelayMs: 0 },
      },
    });
    cairn = await createEmbedded(config, { logger: createLogger('silent'), snapshotEveryMs: 0 });
    const seeded = await seedDemo(cairn, { users: 200, items: 120, events: 8000, seed: 5 });
    champion = seeded.modelVersion!;
    const job = await cairn.models.train(systemContext('e2e'), { algorithm: 'itemknn', promote: false });
    expect((await waitForJob(cairn.jobs, job.id)).status).toBe('succeeded');
    const second = (await cairn.registry.list()).find((m) => m.algorithm === 'itemknn');
    challenger = second!.version;
    expect(['ready', 'rejected']).toContain(second!.status);
  }, 120_000);

  afterAll(async () => {
    await cairn?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a 50/50 experiment and refuses a second one that routes users', async () => {
    const created = await inject('POST', '/v1/experiments', {
      id: 'ab-1',
      variants: [
        { name: 'control', weight: 50 },
        { name: 'challenger', weight: 50, model_version: challenger },
      ],
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      id: 'ab-1',
      kind: 'ab',
      status: 'running',
      unit: 'user',
      variants: [
        { name: 'control', weight: 50, model_version: null },
        { name: 'challenger', weight: 50, model_version: challenger },
      ],
    });
    const again = await inject('POST', '/v1/experiments', {
      id: 'ab-2',
      variants: [
        { name: 'a', weight: 1 },
        { name: 'b', weight: 1 },
      ],
    });
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ error: { code: 'CAIRN_CONFLICT', details: { running: 'ab-1' } } });
    const bad = await inject('POST', '/v1/experiments', {
      id: 'ab-3',
      variants: [
        { name: 'a', weight: 1, ranker: true },
        { name: 'a', weight: 'x' },
      ],
    });
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({
      error: { code: 'CAIRN_VALIDATION', details: { fields: [{ field: 'variants[1].weight' }] } },
    });
    const listed = await inject('GET', '/v1/experiments');
    expect((listed.body.experiments as { id: string }[]).map((e) => e.id)).toEqual(['ab-1']);
    expect((await inject('GET', '/v1/experiments/ab-1')).body).toMatchObject({
      id: 'ab-1',
      status: 'running',
    });
    expect((await inject('GET', '/v1/experiments/nope')).status).toBe(404);
  });

  it('assigns 10,000 simulated users within 2 % of the weights, and every answer names its arm', async () => {
    for (let u = 0; u < USERS; u++) {
      const { status, body } = await inject('GET', `/v1/users/sim-${u}/recommendations?k=5`);
      expect(status).toBe(200);
      answers.push(body as unknown as Rec);
    }
    const counts: Record<string, number> = {};
    for (const a of answers) {
      expect(a.experiment?.id).toBe('ab-1');
      const variant = a.experiment!.variant;
      counts[variant] = (counts[variant] ?? 0) + 1;
      // The control is served by the champion, the challenger by its own version.
      expect(a.model_version).toBe(variant === 'control' ? champion : challenger);
    }
    expect(Object.keys(counts).sort()).toEqual(['challenger', 'control']);
    expect(Math.abs(counts.control / USERS - 0.5)).toBeLessThan(0.02);
    // Deterministic: the same user lands in the same arm again.
    const again = await inject('GET', '/v1/users/sim-7/recommendations?k=5');
    expect((again.body as unknown as Rec).experiment).toEqual(answers[7].experiment);
    repeats.push(again.body as unknown as Rec);
  }, 120_000);

  it('attributes feedback by request id and detects the planted lift without a sample-ratio mismatch', async () => {
    const rng = new Rng(2024);
    const feedback: Record<string, unknown>[] = [];
    let planted = {
      control: { clicks: 0, conversions: 0 },
      challenger: { clicks: 0, conversions: 0 },
    } as Record<string, { clicks: number; conversions: number }>;
    for (const a of answers) {
      const variant = a.experiment!.variant;
      const item = a.items[0]?.item_id;
      if (!item) continue;
      for (const it of a.items)
        feedback.push({ request_id: a.request_id, item_id: it.item_id, type: 'impression' });
      if (rng.float() < CLICK[variant]) {
        feedback.push({ request_id: a.request_id, item_id: item, type: 'click' });
        planted[variant].clicks++;
      }
      if (rng.float() < CONVERT[variant]) {
        feedback.push({
          request_id: a.request_id,
          item_id: item,
          type: 'conversion',
          value: 20 + rng.float() * 30,
        });
        planted[variant].conversions++;
      }
    }
    // Feedback for a request that was never served is kept but never counted.
    feedback.push({ request_id: 'never-served', item_id: 'x', type: 'click' });
    for (let i = 0; i < feedback.length; i += 10_000) {
      const res = await inject('POST', '/v1/feedback', { feedback: feedback.slice(i, i + 10_000) });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ rejected: 0, duplicates: 0 });
    }
    // A repeat is a duplicate; a bad entry is rejected with its field.
    const repeat = await inject('POST', '/v1/feedback', feedback[0]);
    expect(repeat).toMatchObject({ status: 202, body: { status: 'duplicate' } });
    const invalid = await inject('POST', '/v1/feedback', { request_id: 'r', item_id: 'i', type: 'like' });
    expect(invalid).toMatchObject({ status: 400, body: { error: { code: 'CAIRN_VALIDATION' } } });

    // The served log is written in the background: wait until every answer is in it, the repeated
    // requests' too (their users are already counted: their items are what shows they arrived).
    const servedItems = [...answers, ...repeats].reduce((n, a) => n + a.items.length, 0);
    let r: Results = await results();
    await waitFor(
      async () => {
        r = await results();
        return (
          r.variants.reduce((n, v) => n + v.users, 0) === USERS &&
          r.variants.reduce((n, v) => n + v.impressions, 0) === servedItems
        );
      },
      'every served answer in the served log',
      20_000,
    );
    const [control, better] = r.variants;
    expect(control.name).toBe('control');
    expect(better.name).toBe('challenger');
    for (const v of r.variants) {
      const answered = answers.filter((a) => a.experiment!.variant === v.name);
      expect(v.users).toBe(answered.length);
      // Every served item got impression feedback; a request without any counts its served items.
      const extra = repeats.filter((a) => a.experiment!.variant === v.name);
      expect(v.impressions).toBe([...answered, ...extra].reduce((n, a) => n + a.items.length, 0));
      expect(v.clicks).toBe(planted[v.name].clicks);
      expect(v.conversions).toBe(planted[v.name].conversions);
      for (const e of [v.ctr, v.conversion_rate, v.revenue_per_user]) {
        expect(e.low).toBeLessThanOrEqual(e.value);
        expect(e.value).toBeLessThanOrEqual(e.high);
      }
    }
    expect(r.srm_p_value).toBeGreaterThan(0.001);
    expect(control.lift_vs_control).toBeNull();
    expect(better.lift_vs_control!.low).toBeGreaterThan(0);
    expect(better.lift_vs_control!.value).toBeGreaterThan(0.2);
    expect(better.ctr.low).toBeGreaterThan(control.ctr.high);
    planted = {};

    // A click arriving as an event that carries the answer's request id is attributed too.
    const quiet = answers.find(
      (a) =>
        a.experiment!.variant === 'control' &&
        !feedback.some((f) => f.request_id === a.request_id && f.type === 'click'),
    )!;
    const event = await inject('POST', '/v1/events', {
      user_id: quiet.user_id,
      item_id: quiet.items[0].item_id,
      type: 'click',
      request_id: quiet.request_id,
    });
    expect(event.status).toBe(202);
    await waitFor(
      async () => (await results()).variants[0].clicks === control.clicks + 1,
      'event attributed',
    );
  }, 120_000);

  it('stops the experiment: answers no longer carry it', async () => {
    const stopped = await inject('POST', '/v1/experiments/ab-1/stop', { reason: 'done' });
    expect(stopped).toMatchObject({ status: 200, body: { status: 'stopped', stop_reason: 'done' } });
    const after = await inject('GET', '/v1/users/sim-1/recommendations?k=5');
    expect((after.body as unknown as Rec).experiment ?? null).toBeNull();
    expect((after.body as unknown as Rec).model_version).toBe(champion);
  });

  it('erasing a user (GDPR) removes their served answers and feedback from the results', async () => {
    const before = await results();
    const gone = answers[3];
    const arm = gone.experiment!.variant;
    const res = await cairn.app.inject({
      method: 'DELETE',
      url: `/v1/users/${gone.user_id}`,
      headers: { 'content-type': 'application/json' },
    });
    expect(res.statusCode).toBe(204);
    expect(await cairn.store.served.get(gone.request_id)).toBeNull();
    const after = await results();
    const users = (r: Results) => r.variants.find((v) => v.name === arm)!.users;
    expect(users(after)).toBe(users(before) - 1);
  });
});
