/**
 * Honest promotion gates end to end, through HTTP (`app.inject`) on the all-in-one service over the
 * real SQLite and PostgreSQL of this machine: a deliberately worse challenger is rejected with its
 * reason while the champion keeps serving; promoting it needs `force`, which is recorded with the
 * caller; the model card carries the lineage; new interactions make the gate use a fresh holdout
 * scored by both models; identical training requests share one job.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { seedDemo, waitForJob } from '../../src/main/demo.ts';
import { createEmbedded, type Embedded } from '../../src/main/embedded.ts';
import { createLogger } from '../../src/monitoring/logger.ts';

const PG_URL = process.env.CAIRN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

interface Check {
  name: string;
  passed: boolean;
  detail: string;
  challenger?: number;
  champion?: number;
  tolerance?: number;
}
interface ModelCard {
  version: string;
  algorithm: string;
  status: string;
  params: Record<string, unknown>;
  parent_version: string | null;
  metrics: Record<string, number>;
  lineage: {
    trigger: { kind: string; key: string | null; requested_by: string | null; job_id: string | null };
    data: { last_event_seq: number; newest_event_at: string | null; training_set_hash: string };
    code: { version: string; commit: string | null };
    gate: {
      passed: boolean;
      reason: string;
      holdout: string;
      holdout_users: number;
      holdout_interactions: number;
      champion: string | null;
      challenger_metrics: Record<string, number>;
      champion_metrics: Record<string, number>;
      checks: Check[];
    } | null;
    drift: { event_types: Record<string, number>; item_popularity: number[]; score_shares: number[] } | null;
    audit: { at: string; action: string; by: string; detail: string }[];
  } | null;
}

/** The gate scenario on one backend (one test file per backend keeps each file short). */
export function describeModelGates(backend: 'sqlite' | 'postgres'): void {
  describe(`promotion gates on ${backend}`, () => {
    let cairn: Embedded;
    let dir: string;
    let champion: string;
    const schema = `cairn_gate_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'cairn-gate-'));
      const config = loadConfig({
        env: {},
        overrides: {
          dataDir: dir,
          store: backend === 'sqlite' ? { url: '' } : { url: PG_URL, schema },
          training: {
            threads: 1,
            algorithm: 'als',
            gate: { minFreshInteractions: 150, minUsersScored: 20 },
          },
        },
      });
      cairn = await createEmbedded(config, { logger: createLogger('silent'), snapshotEveryMs: 0 });
      const seeded = await seedDemo(cairn, { users: 250, items: 120, events: 10_000, seed: 11 });
      champion = seeded.modelVersion!;
      expect(champion).toMatch(/-als-/);
    }, 120_000);

    afterAll(async () => {
      await cairn?.close();
      await rm(dir, { recursive: true, force: true });
      if (backend === 'postgres') {
        const client = new pg.Client({ connectionString: PG_URL });
        await client.connect();
        await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        await client.end();
      }
    });

    const call = async <T = unknown>(method: 'GET' | 'POST', url: string, payload?: unknown) => {
      // Writes declare JSON even without a body (key-less state changes without it are refused).
      const headers = method === 'GET' ? {} : { 'content-type': 'application/json' };
      const res = await cairn.app.inject({ method, url, headers, payload: payload as object | undefined });
      return { status: res.statusCode, body: res.json<T>() };
    };
    const card = async (version: string) => {
      const { status, body } = await call<ModelCard>('GET', `/v1/models/${version}`);
      expect(status).toBe(200);
      return body;
    };
    const train = async (body: unknown) => {
      const res = await call<{ job_id: string }>('POST', '/v1/models/train', body);
      expect(res.status).toBe(202);
      const job = await waitForJob(cairn.jobs, res.body.job_id);
      expect(job.error).toBeNull();
      expect(job.status).toBe('succeeded');
      return job.result as { version: string; outcome: string; holdout: string; gate_reason: string };
    };
    const servedVersion = async () => {
      const { status, body } = await call<{ model_version: string; source: string }>(
        'GET',
        '/v1/users/u1/recommendations?k=5',
      );
      expect(status).toBe(200);
      return body;
    };

    it('the first model carries its lineage: trigger, snapshot, code, gate, drift reference, audit', async () => {
      const m = await card(champion);
      expect(m.status).toBe('champion');
      const l = m.lineage!;
      expect(l.trigger).toMatchObject({ kind: 'demo', requested_by: 'system' });
      expect(l.trigger.job_id).toEqual(expect.any(String));
      expect(l.data.last_event_seq).toBeGreaterThan(0);
      expect(l.data.training_set_hash).toMatch(/^[0-9a-f]{64}$/);
      expect(l.code.version).toBe('0.1.0');
      expect(l.gate).toMatchObject({
        passed: true,
        reason: 'first model',
        holdout: 'random',
        champion: null,
      });
      expect(l.gate!.checks.map((c) => c.name)).toEqual([
        'finite_scores',
        'beats_popularity',
        'not_popularity',
      ]);
      expect(Object.keys(l.drift!.event_types).length).toBeGreaterThan(0);
      expect(l.drift!.item_popularity.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
      expect(l.audit.map((a) => [a.action, a.by])).toEqual([
        ['registered', 'system'],
        ['promoted', 'system'],
      ]);
      // The list carries lineage too.
      const list = await call<{ models: ModelCard[] }>('GET', '/v1/models');
      expect(list.body.models.find((x) => x.version === champion)?.lineage?.data.training_set_hash).toBe(
        l.data.training_set_hash,
      );
      expect((await call('GET', '/v1/models/nope')).status).toBe(404);
    });

    it('rejects a worse challenger with its reason; the champion keeps serving', async () => {
      const result = await train({ algorithm: 'als', params: { factors: 1, iterations: 1 } });
      expect(result.outcome).toBe('rejected');
      const m = await card(result.version);
      expect(m.status).toBe('rejected');
      const gate = m.lineage!.gate!;
      expect(gate.passed).toBe(false);
      expect(gate.holdout).toBe('random');
      expect(gate.champion).toBe(champion);
      expect(gate.reason).toBe(result.gate_reason);
      const ndcg = gate.checks.find((c) => c.name === 'ndcg@10')!;
      // Both measured on the same holdout: the champion's configuration was refitted on it.
      expect(ndcg.champion).toBe(gate.champion_metrics['ndcg@10']);
      expect(ndcg.challenger).toBe(gate.challenger_metrics['ndcg@10']);
      expect(ndcg.passed).toBe(false);
      expect(ndcg.challenger!).toBeLessThan(ndcg.champion! * 0.95);
      expect(gate.reason).toBe(gate.checks.find((c) => !c.passed)!.detail);
      expect(m.lineage!.audit.map((a) => a.action)).toEqual(['registered', 'rejected']);
      expect(m.lineage!.trigger).toMatchObject({ kind: 'manual', requested_by: 'anonymous' });

      const served = await servedVersion();
      expect(served).toMatchObject({ model_version: champion, source: 'personalized' });
      const metrics = await cairn.app.inject({ method: 'GET', url: '/metrics' });
      expect(metrics.body).toMatch(/cairn_training_outcomes_total\{outcome="rejected",trigger="manual"\} 1/);
      expect(metrics.body).toMatch(/cairn_training_outcomes_total\{outcome="promoted",trigger="demo"\} 1/);

      // Promoting it needs force; without, a 409 that says why.
      const refused = await call<{ error: { code: string; details: { status: string; reason: string } } }>(
        'POST',
        `/v1/models/${result.version}/promote`,
      );
      expect(refused.status).toBe(409);
      expect(refused.body.error.code).toBe('CAIRN_MODEL_NOT_PROMOTABLE');
      expect(refused.body.error.details).toMatchObject({ status: 'rejected', reason: gate.reason });
      const badBody = await call<{ error: { code: string } }>(
        'POST',
        `/v1/models/${result.version}/promote`,
        {
          force: 'yes',
        },
      );
      expect(badBody.status).toBe(400);
      expect(badBody.body.error.code).toBe('CAIRN_VALIDATION');
      expect((await servedVersion()).model_version).toBe(champion);

      const forced = await call<ModelCard>('POST', `/v1/models/${result.version}/promote`, {
        force: true,
        reason: 'checking the gate in a test',
      });
      expect(forced.status).toBe(200);
      expect(forced.body).toMatchObject({ status: 'champion', parent_version: champion });
      expect(forced.body.lineage!.audit.at(-1)).toMatchObject({
        action: 'force_promoted',
        by: 'anonymous',
        detail: expect.stringMatching(/^forced over its rejection .*: checking the gate in a test$/),
      });
      expect((await card(result.version)).lineage!.audit.map((a) => a.action)).toEqual([
        'registered',
        'rejected',
        'force_promoted',
      ]);

      // Roll back: the good champion serves again, and both audit trails say so.
      const rolled = await call<ModelCard>('POST', '/v1/models/rollback');
      expect(rolled.status).toBe(200);
      expect(rolled.body.version).toBe(champion);
      expect(rolled.body.lineage!.audit.at(-1)).toMatchObject({ action: 'promoted', by: 'anonymous' });
      expect((await card(result.version)).lineage!.audit.at(-1)).toMatchObject({
        action: 'rolled_back',
        by: 'anonymous',
      });
      await cairn.champion.refresh();
      expect((await servedVersion()).model_version).toBe(champion);
    }, 60_000);

    it('gates on a fresh holdout once enough interactions are newer than the champion', async () => {
      const before = await card(champion);
      // 60 known users each buy 4 items new to them: pairs neither the champion nor any model saw.
      const events: unknown[] = [];
      for (let u = 1; u <= 60; u++) {
        for (let j = 0; j < 4; j++) {
          events.push({
            event_id: `fresh-${u}-${j}`,
            user_id: `u${u}`,
            item_id: `i${((u * 7 + j * 13) % 120) + 1}`,
            type: 'purchase',
          });
        }
      }
      const ingested = await call<{ accepted: number }>('POST', '/v1/events', { events });
      expect(ingested.status).toBe(200);
      // Wait until the store holds them (the training reads the store).
      for (
        let i = 0;
        i < 100 && (await cairn.store.events.lastSeq()) <= before.lineage!.data.last_event_seq;
        i++
      )
        await new Promise((r) => setTimeout(r, 50));

      const result = await train({ promote: false });
      expect(result.holdout).toBe('fresh');
      const gate = (await card(result.version)).lineage!.gate!;
      expect(gate.champion).toBe(champion);
      // Pairs already known to a user are not new interactions; the rest are held out.
      expect(gate.holdout_interactions).toBeGreaterThanOrEqual(150);
      expect(gate.holdout_interactions).toBeLessThanOrEqual(240);
      expect(gate.holdout_users).toBeGreaterThanOrEqual(20);
      // The champion was scored from its stored artifact on the same pairs.
      expect(gate.champion_metrics['ndcg@10']).toEqual(expect.any(Number));
      expect(gate.champion_metrics['ndcg@10']).not.toBe(before.metrics['ndcg@10']);
      expect(['rejected', 'not_promoted']).toContain(result.outcome);
      expect((await servedVersion()).model_version).toBe(champion);
    }, 60_000);

    it('identical training requests share one job; a different one gets its own', async () => {
      const body = { algorithm: 'pop', promote: false };
      const [a, b] = await Promise.all([
        call<{ job_id: string }>('POST', '/v1/models/train', body),
        call<{ job_id: string }>('POST', '/v1/models/train', {
          promote: false,
          algorithm: 'pop',
          params: {},
        }),
      ]);
      expect(a.status).toBe(202);
      expect(b.status).toBe(202);
      expect(b.body.job_id).toBe(a.body.job_id);
      const other = await call<{ job_id: string }>('POST', '/v1/models/train', {
        algorithm: 'pop',
        promote: false,
        params: { halfLifeDays: 3 },
      });
      expect(other.body.job_id).not.toBe(a.body.job_id);
      const jobs = await Promise.all([
        waitForJob(cairn.jobs, a.body.job_id),
        waitForJob(cairn.jobs, other.body.job_id),
      ]);
      expect(jobs.map((j) => j.status)).toEqual(['succeeded', 'succeeded']);
      expect(jobs[0].payload).toMatchObject({
        trigger: { kind: 'manual', key: null },
        requested_by: 'anonymous',
      });
      // Finished: the same request now queues a new training.
      const again = await call<{ job_id: string }>('POST', '/v1/models/train', body);
      expect(again.body.job_id).not.toBe(a.body.job_id);
      await waitForJob(cairn.jobs, again.body.job_id);
    }, 60_000);
  });
}
