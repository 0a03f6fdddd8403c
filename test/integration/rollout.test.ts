/**
 * Safe rollout end to end in the all-in-one process, through HTTP (`app.inject`) on the real SQLite
 * store: demo data and a trained champion, a second model trained through the API and not promoted,
 * then
 *  - a shadow experiment: the challenger scores live requests, its answers are logged under the same
 *    request id (mode `shadow`) and compared, and what is served stays exactly the champion's answer;
 *  - a canary: users routed by hash to the champion or the challenger (answers carry `experiment` and
 *    the answering model's version), clicks planted through `POST /v1/feedback` with a lower CTR for
 *    the canary, and the embedded role's canary guard rolls it back by itself: the experiment ends
 *    `rolled_back`, the version is `rejected`, and the next answers for canary users come from the
 *    champion.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { seedDemo, waitForJob } from '../../src/main/demo.ts';
import { createEmbedded, type Embedded } from '../../src/main/embedded.ts';
import { createLogger } from '../../src/monitoring/logger.ts';

interface Rec {
  request_id: string;
  user_id: string;
  model_version: string | null;
  source: string;
  fallback_reason: string | null;
  experiment: { id: string; variant: string } | null;
  items: { item_id: string; score: number; reason: string }[];
}

describe('safe rollout (embedded, SQLite)', () => {
  let cairn: Embedded;
  let dir: string;
  let champion: string;
  let challenger: string;
  let users: string[];

  const get = async <T>(url: string, headers: Record<string, string> = {}) => {
    const res = await cairn.app.inject({ method: 'GET', url, headers });
    return { status: res.statusCode, body: res.json<T>() };
  };
  const post = async <T>(url: string, payload: unknown) => {
    const res = await cairn.app.inject({ method: 'POST', url, payload: payload as object });
    return { status: res.statusCode, body: res.json<T>() };
  };
  const recommend = async (user: string, requestId: string) => {
    const res = await get<Rec>(`/v1/users/${encodeURIComponent(user)}/recommendations?k=5`, {
      'x-request-id': requestId,
    });
    expect(res.status).toBe(200);
    expect(res.body.request_id).toBe(requestId);
    return res.body;
  };
  /** Polls until `check` gives a value (the served log is written in the background). */
  const eventually = async <T>(check: () => Promise<T | null | undefined>, what: string): Promise<T> => {
    for (let i = 0; i < 400; i++) {
      const value = await check();
      if (value !== null && value !== undefined) return value;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`timed out waiting for ${what}`);
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-rollout-'));
    const config = loadConfig({
      env: {},
      overrides: {
        dataDir: dir,
        store: { url: '' },
        // Answers recomputed every time: "served = the champion's answer" is then a real comparison.
        serving: { cacheTtlSeconds: 0 },
        // A lenient gate: the second model must be servable whatever its offline score.
        training: {
          threads: 1,
          algorithm: 'als',
          autoPromoteMinRatio: 0,
          gate: {
            tolerances: { 'recall@10': 1, 'coverage@10': 1 },
            minUsersScored: 1,
            maxPopularityOverlap: 1,
          },
        },
        experiments: { guardCheckSeconds: 0.2 },
      },
    });
    cairn = await createEmbedded(config, { logger: createLogger('silent'), snapshotEveryMs: 0 });
    const seeded = await seedDemo(cairn, { users: 200, items: 120, events: 10_000, seed: 11 });
    champion = seeded.modelVersion!;
    expect(champion).toBeTruthy();

    // The challenger: another ALS configuration, trained through the API and not promoted.
    const train = await post<{ job_id: string }>('/v1/models/train', {
      algorithm: 'als',
      params: { factors: 16, iterations: 8 },
      promote: false,
    });
    expect(train.status).toBe(202);
    const job = await waitForJob(cairn.jobs, train.body.job_id);
    expect(job.status, JSON.stringify(job.error)).toBe('succeeded');
    challenger = (job.result as { version: string }).version;
    expect((await cairn.registry.get(challenger)).status, JSON.stringify(job.result)).toBe('ready');

    const seen = new Set<string>();
    for await (const page of cairn.store.events.scan({ batchSize: 5000 }))
      for (const e of page) seen.add(e.userId);
    users = [...seen].sort().slice(0, 120);
  }, 180_000);

  afterAll(async () => {
    await cairn?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('shadow: the challenger scores live requests, logged under the same request id, never served', async () => {
    const reference = new Map<string, Rec>();
    for (const u of users) reference.set(u, await recommend(u, `ref-${u}`));

    const created = await post('/v1/experiments', {
      id: 'shadow-1',
      kind: 'shadow',
      variants: [{ name: 'challenger', weight: 100, model_version: challenger }],
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);

    const personalized: Rec[] = [];
    for (const u of users) {
      const answer = await recommend(u, `shadow-${u}`);
      // Served exactly as before the shadow ran: the champion's answer, no experiment arm.
      expect(answer.model_version).toBe(champion);
      expect(answer.experiment).toBeNull();
      expect(answer.items).toEqual(reference.get(u)!.items);
      if (answer.source === 'personalized') personalized.push(answer);
    }
    const shadowed = personalized.length;
    // Shadow scoring runs after each answer, and the served log is written in the background.
    const shadows = await eventually(async () => {
      const list = await cairn.store.served.list({ experimentId: 'shadow-1', mode: 'shadow', limit: 1000 });
      return list.length >= shadowed ? list : null;
    }, 'the shadow records');
    expect(shadows).toHaveLength(shadowed);
    let differing = 0;
    for (const answer of personalized) {
      const shadow = (await cairn.store.served.get(answer.request_id, 'shadow'))!;
      expect(shadow).toMatchObject({
        userId: answer.user_id,
        mode: 'shadow',
        experimentId: 'shadow-1',
        variant: 'challenger',
        modelVersion: challenger,
      });
      const served = (await cairn.store.served.get(answer.request_id, 'served'))!;
      expect(served.items.map((i) => i.itemId)).toEqual(answer.items.map((i) => i.item_id));
      const shadowIds = shadow.items.map((i) => i.itemId);
      if (JSON.stringify(shadowIds) !== JSON.stringify(served.items.map((i) => i.itemId))) differing++;
    }
    expect(shadowed).toBeGreaterThan(users.length / 2);
    // The challenger really ranks differently, and still none of its lists reached a user.
    expect(differing).toBeGreaterThan(shadowed / 4);

    const text = (await cairn.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(text).toMatch(/cairn_shadow_requests_total\{experiment="shadow-1",outcome="scored"\} \d+/);
    expect(text).toMatch(/cairn_shadow_overlap_ratio_count\{experiment="shadow-1"\} \d+/);

    const stopped = await post<{ status: string }>('/v1/experiments/shadow-1/stop', {
      reason: 'seen enough',
    });
    expect(stopped.status).toBe(200);
    expect(stopped.body.status).toBe('stopped');
  });

  it('canary: an underperforming challenger is rolled back automatically and its users get the champion', async () => {
    const created = await post('/v1/experiments', {
      id: 'canary-1',
      kind: 'canary',
      variants: [
        { name: 'control', weight: 50 },
        { name: 'canary', weight: 50, model_version: challenger },
      ],
      guard: { metric: 'ctr', margin: 0.2, min_impressions: 100 },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);

    const answers: Rec[] = [];
    for (const u of users) {
      const answer = await recommend(u, `canary-${u}`);
      expect(answer.experiment?.id).toBe('canary-1');
      if (answer.source === 'personalized' || answer.model_version !== null)
        expect(answer.model_version).toBe(answer.experiment!.variant === 'canary' ? challenger : champion);
      answers.push(answer);
    }
    const canaryUsers = answers.filter((a) => a.experiment!.variant === 'canary').map((a) => a.user_id);
    expect(canaryUsers.length).toBeGreaterThan(users.length / 4);
    expect(canaryUsers.length).toBeLessThan((users.length * 3) / 4);

    // Every answer recorded before feedback is planted (feedback counts once its answer is known).
    await eventually(
      async () =>
        (await cairn.store.served.list({ experimentId: 'canary-1', mode: 'served', limit: 1000 })).length ===
        answers.length
          ? true
          : null,
      'the served log',
    );
    // Planted outcomes: every control answer gets a click on its first item (CTR 0.2); one canary
    // answer in five does (CTR 0.04).
    let n = 0;
    const feedback = answers
      .filter((a) => a.items.length > 0 && (a.experiment!.variant === 'control' || n++ % 5 === 0))
      .map((a) => ({ request_id: a.request_id, item_id: a.items[0].item_id, type: 'click' }));
    const sent = await post<{ results?: unknown[] }>('/v1/feedback', { feedback });
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);

    // The guard runs in the background (every 0.2 s here) and stops the canary by itself.
    const rolledBack = await eventually(async () => {
      const res = await get<{ status: string; stop_reason: string | null }>('/v1/experiments/canary-1');
      return res.body.status === 'rolled_back' ? res.body : null;
    }, 'the canary to be rolled back');
    expect(rolledBack.stop_reason).toMatch(/canary ctr .* below control/);
    expect((await cairn.registry.get(challenger)).status).toBe('rejected');
    expect((await cairn.registry.champion())?.version).toBe(champion);
    const text = (await cairn.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(text).toMatch(/cairn_canary_rollbacks_total\{experiment="canary-1"\} 1/);

    // Once this replica's follower applied the change (it is in the change log already), every canary
    // user's next answer is the champion's.
    const head = await cairn.changeLog.head();
    const last = (await cairn.changeLog.read(head - 1, 1))[0];
    expect(last.value).toMatchObject({
      kind: 'experiment',
      experiment: { id: 'canary-1', status: 'rolled_back' },
    });
    await eventually(
      async () => ((await recommend(canaryUsers[0], 'probe')).experiment === null ? true : null),
      'the replica to stop routing',
    );
    for (const u of canaryUsers) {
      const answer = await recommend(u, `after-${u}`);
      expect(answer.experiment).toBeNull();
      if (answer.model_version !== null) expect(answer.model_version).toBe(champion);
    }
  });
});
