/**
 * HTTP-layer tests: routing, status codes, wire mapping, validation codes and fields, request ids,
 * framework errors, metrics and the OpenAPI document. Services are small in-memory implementations
 * written here, so these tests exercise the API layer alone (end-to-end tests live elsewhere).
 */
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../config/load.ts';
import { systemContext, type RequestContext } from '../domain/context.ts';
import type { Item, Job, ModelVersion, RecommendationResult, TrainRequest, User } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import { createFeedbackService } from '../experiments/feedback.ts';
import { createExperimentService } from '../experiments/service.ts';
import { createKeyService } from '../security/keys.ts';
import { SqliteChangeLog } from '../storage/sqlite/log.ts';
import { SqliteStore } from '../storage/sqlite/store.ts';
import { createLogger } from '../monitoring/logger.ts';
import { createMetrics } from '../monitoring/metrics.ts';
import { buildApp } from './app.ts';
import type { CatalogService, EventOutcome, IngestService, ItemOutcome } from '../ingest/contracts.ts';
import type { JobService } from '../jobs/contracts.ts';
import type { HealthCheck, HealthService } from '../monitoring/health.ts';
import type {
  PopularResult,
  RecommendationService,
  RecommendRequest,
  SessionRequest,
  SimilarResult,
} from '../serving/contracts.ts';
import type { ModelService } from '../training/contracts.ts';
import type { AppDeps } from './deps.ts';

const T0 = Date.UTC(2024, 0, 2, 3, 4, 5, 678);

/* ------------------------------------------------------------------ in-memory services */

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

class MemoryIngest implements IngestService {
  readonly stored: { eventId: string; userId: string; itemId: string; type: string }[] = [];
  private readonly ids = new Set<string>();
  private next = 1;
  constructor(private readonly maxBatch: number) {}

  ingestEvents(_ctx: RequestContext, raw: unknown[]): Promise<EventOutcome[]> {
    if (raw.length > this.maxBatch) {
      return Promise.reject(new CairnError('CAIRN_BATCH_TOO_LARGE', `at most ${this.maxBatch} events`));
    }
    return Promise.resolve(
      raw.map((e, index): EventOutcome => {
        if (!isObject(e)) {
          return {
            index,
            eventId: null,
            status: 'rejected',
            error: { code: 'CAIRN_VALIDATION', field: `events[${index}]`, message: 'must be an object' },
          };
        }
        for (const field of ['user_id', 'item_id', 'type']) {
          if (typeof e[field] !== 'string' || e[field] === '') {
            return {
              index,
              eventId: null,
              status: 'rejected',
              error: { code: 'CAIRN_VALIDATION', field, message: 'must be a non-empty string' },
            };
          }
        }
        if (e.type === 'teleport') {
          return {
            index,
            eventId: null,
            status: 'rejected',
            error: { code: 'CAIRN_UNKNOWN_EVENT_TYPE', field: 'type', message: 'unknown event type' },
          };
        }
        const eventId = typeof e.event_id === 'string' ? e.event_id : `ev-${this.next++}`;
        if (this.ids.has(eventId)) return { index, eventId, status: 'duplicate' };
        this.ids.add(eventId);
        this.stored.push({
          eventId,
          userId: e.user_id as string,
          itemId: e.item_id as string,
          type: e.type as string,
        });
        return { index, eventId, status: 'accepted' };
      }),
    );
  }
}

class MemoryCatalog implements CatalogService {
  readonly items = new Map<string, Item>();
  readonly users = new Map<string, User>();

  private parseItem(id: string, raw: unknown): Item {
    if (!isObject(raw)) throw CairnError.validation([{ field: 'body', message: 'must be an object' }]);
    const categories = raw.categories ?? [];
    if (!Array.isArray(categories) || !categories.every((c) => typeof c === 'string')) {
      throw CairnError.validation([{ field: 'categories', message: 'must be an array of strings' }]);
    }
    const createdAt = typeof raw.created_at === 'string' ? Date.parse(raw.created_at) : T0;
    return {
      id,
      categories: categories,
      attributes: isObject(raw.attributes) ? raw.attributes : {},
      available: raw.available !== false,
      createdAt,
      updatedAt: T0 + 1000,
    };
  }

  putItem(_ctx: RequestContext, id: string, raw: unknown): Promise<Item> {
    const item = this.parseItem(id, raw);
    this.items.set(id, item);
    return Promise.resolve(item);
  }
  putItems(_ctx: RequestContext, raw: unknown[]): Promise<ItemOutcome[]> {
    return Promise.resolve(
      raw.map((r, index): ItemOutcome => {
        const id = isObject(r) && typeof r.id === 'string' ? r.id : null;
        if (id === null) {
          return {
            index,
            itemId: null,
            status: 'rejected',
            error: { code: 'CAIRN_VALIDATION', field: 'id', message: 'required' },
          };
        }
        try {
          this.items.set(id, this.parseItem(id, r));
          return { index, itemId: id, status: 'upserted' };
        } catch (e) {
          const issue = ((e as CairnError).details as { fields: { field: string; message: string }[] })
            .fields[0];
          return { index, itemId: id, status: 'rejected', error: { code: 'CAIRN_VALIDATION', ...issue } };
        }
      }),
    );
  }
  getItem(_ctx: RequestContext, id: string): Promise<Item> {
    const item = this.items.get(id);
    return item
      ? Promise.resolve(item)
      : Promise.reject(new CairnError('CAIRN_ITEM_NOT_FOUND', `item ${id} not found`));
  }
  putUser(_ctx: RequestContext, id: string, raw: unknown): Promise<User> {
    if (!isObject(raw))
      return Promise.reject(CairnError.validation([{ field: 'body', message: 'must be an object' }]));
    if (raw.opt_out !== undefined && typeof raw.opt_out !== 'boolean') {
      return Promise.reject(CairnError.validation([{ field: 'opt_out', message: 'must be a boolean' }]));
    }
    const user: User = {
      id,
      attributes: isObject(raw.attributes) ? raw.attributes : {},
      segments: Array.isArray(raw.segments) ? (raw.segments as string[]) : [],
      optOut: raw.opt_out === true,
      createdAt: T0,
      updatedAt: T0,
    };
    this.users.set(id, user);
    return Promise.resolve(user);
  }
  getUser(_ctx: RequestContext, id: string): Promise<User> {
    const user = this.users.get(id);
    return user
      ? Promise.resolve(user)
      : Promise.reject(new CairnError('CAIRN_USER_NOT_FOUND', `user ${id} not found`));
  }
  eraseUser(_ctx: RequestContext, id: string): Promise<void> {
    return this.users.delete(id)
      ? Promise.resolve()
      : Promise.reject(new CairnError('CAIRN_USER_NOT_FOUND', `user ${id} not found`));
  }
}

/** Ranks the catalog by a fixed score so answers are predictable; records every request it gets. */
class MemoryRecommendations implements RecommendationService {
  readonly requests: RecommendRequest[] = [];
  readonly contexts: RequestContext[] = [];
  private seq = 0;
  constructor(private readonly catalog: MemoryCatalog) {}

  private rank(options: { k?: number; category?: string; exclude?: string[] }) {
    if (
      options.category !== undefined &&
      ![...this.catalog.items.values()].some((i) => i.categories.includes(options.category!))
    ) {
      throw CairnError.validation([{ field: 'category', message: 'unknown category' }]);
    }
    return [...this.catalog.items.values()]
      .filter(
        (i) => i.available && (options.category === undefined || i.categories.includes(options.category)),
      )
      .filter((i) => !(options.exclude ?? []).includes(i.id))
      .sort((a, b) => a.id.localeCompare(b.id))
      .slice(0, options.k ?? 10)
      .map((i, rank) => ({ itemId: i.id, score: 1 / (rank + 1), reason: 'popular' }));
  }

  recommend(ctx: RequestContext, request: RecommendRequest): Promise<RecommendationResult> {
    this.requests.push(request);
    this.contexts.push(ctx);
    if (request.userId === 'explode')
      return Promise.reject(new Error('connection to postgres://admin:hunter2@db failed'));
    if (request.userId === 'down')
      return Promise.reject(new CairnError('CAIRN_UNAVAILABLE', 'redis at 10.0.0.7 is down'));
    try {
      const items = this.rank(request);
      const personalized = request.userId.startsWith('known');
      return Promise.resolve({
        requestId: ctx.requestId,
        userId: request.userId,
        modelVersion: personalized ? 'v7' : null,
        source: personalized ? 'personalized' : 'fallback',
        fallbackReason: personalized ? null : 'cold_user',
        degraded: false,
        items,
        // The arm follows the session when one is sent (what a session-unit experiment does).
        experiment: request.sessionId ? { id: 'exp-s', variant: `arm-${request.sessionId}` } : null,
      });
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }
  similar(
    _ctx: RequestContext,
    itemId: string,
    options: { k?: number; category?: string },
  ): Promise<SimilarResult> {
    if (!this.catalog.items.has(itemId))
      return Promise.reject(new CairnError('CAIRN_ITEM_NOT_FOUND', 'no such item'));
    const items = this.rank({ ...options, exclude: [itemId] });
    return Promise.resolve({
      requestId: `sim-${++this.seq}`,
      itemId,
      modelVersion: 'v7',
      source: 'personalized',
      fallbackReason: null,
      degraded: false,
      items,
    });
  }
  readonly sessions: SessionRequest[] = [];
  /** An anonymous session: ranked like a user's answer, without the session's items. */
  recommendSession(ctx: RequestContext, request: SessionRequest): Promise<RecommendationResult> {
    this.sessions.push(request);
    try {
      const items = this.rank({ ...request, exclude: [...(request.exclude ?? []), ...request.items] });
      return Promise.resolve({
        requestId: ctx.requestId,
        userId: null,
        modelVersion: 'v7',
        source: 'session',
        fallbackReason: null,
        degraded: false,
        items,
        experiment: null,
      });
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }
  popular(_ctx: RequestContext, options: { k?: number; category?: string }): Promise<PopularResult> {
    return Promise.resolve({
      requestId: `pop-${++this.seq}`,
      itemId: null,
      modelVersion: null,
      source: 'fallback',
      fallbackReason: 'popular',
      degraded: true,
      items: this.rank(options),
    });
  }
}

function model(version: string, status: ModelVersion['status'], parentVersion: string | null): ModelVersion {
  return {
    version,
    algorithm: 'als',
    params: { factors: 32 },
    status,
    trainingData: { users: 10, items: 20, interactions: 30, events: 40, lastEventSeq: 99 },
    metrics: { 'ndcg@10': 0.25 },
    trainSeconds: 1.5,
    artifactPath: '/secret/path/model.bin',
    checksum: 'abc',
    configHash: 'def',
    parentVersion,
    createdAt: T0,
    promotedAt: status === 'champion' ? T0 + 60_000 : null,
    error: null,
    lineage: null,
  };
}

class MemoryModels implements ModelService, JobService {
  readonly models: ModelVersion[] = [model('v2', 'champion', 'v1'), model('v1', 'retired', null)];
  readonly jobs = new Map<string, Job>();
  readonly trainRequests: TrainRequest[] = [];

  list(_ctx: RequestContext, limit?: number): Promise<ModelVersion[]> {
    return Promise.resolve(this.models.slice(0, limit ?? this.models.length));
  }
  train(_ctx: RequestContext, request: TrainRequest): Promise<Job> {
    if (request.algorithm !== undefined && !['als', 'bpr'].includes(request.algorithm)) {
      return Promise.reject(CairnError.validation([{ field: 'algorithm', message: 'unknown algorithm' }]));
    }
    this.trainRequests.push(request);
    const job: Job = {
      id: `job-${this.jobs.size + 1}`,
      name: 'train',
      payload: { ...request },
      status: 'queued',
      progress: 0,
      result: null,
      error: null,
      createdAt: T0,
      updatedAt: T0,
      attempts: 0,
      maxAttempts: 3,
      owner: null,
      leaseUntil: null,
      runAt: T0,
      dedupeKey: null,
    };
    this.jobs.set(job.id, job);
    return Promise.resolve(job);
  }
  getModel(_ctx: RequestContext, version: string): Promise<ModelVersion> {
    const m = this.models.find((x) => x.version === version);
    return m
      ? Promise.resolve(m)
      : Promise.reject(new CairnError('CAIRN_MODEL_NOT_FOUND', `model ${version} not found`));
  }
  readonly promoteRequests: { version: string; force?: boolean; reason?: string }[] = [];
  promote(
    _ctx: RequestContext,
    version: string,
    request: { force?: boolean; reason?: string } = {},
  ): Promise<ModelVersion> {
    this.promoteRequests.push({ version, ...request });
    const m = this.models.find((x) => x.version === version);
    if (!m) return Promise.reject(new CairnError('CAIRN_MODEL_NOT_FOUND', `model ${version} not found`));
    return Promise.resolve({ ...m, status: 'champion', promotedAt: T0 + 120_000 });
  }
  rollback(_ctx: RequestContext): Promise<ModelVersion> {
    const champion = this.models.find((m) => m.status === 'champion');
    if (!champion?.parentVersion)
      return Promise.reject(new CairnError('CAIRN_NO_PREVIOUS_MODEL', 'nothing to roll back to'));
    const previous = this.models.find((m) => m.version === champion.parentVersion)!;
    champion.status = 'retired';
    previous.status = 'champion';
    return Promise.resolve(previous);
  }
  get(_ctx: RequestContext, id: string): Promise<Job> {
    const job = this.jobs.get(id);
    return job
      ? Promise.resolve(job)
      : Promise.reject(new CairnError('CAIRN_JOB_NOT_FOUND', `job ${id} not found`));
  }
}

class MemoryHealth implements HealthService {
  state: 'ready' | 'not_ready' | 'throws' = 'ready';
  ready(): Promise<{ ready: boolean; checks: Record<string, HealthCheck> }> {
    if (this.state === 'throws') return Promise.reject(new Error('probe crashed: secret detail'));
    const ok = this.state === 'ready';
    return Promise.resolve({
      ready: ok,
      checks: { store: ok ? { ok: true } : { ok: false, detail: 'sqlite locked' }, model: { ok: true } },
    });
  }
}

/* ------------------------------------------------------------------ harness */

interface Harness {
  app: FastifyInstance;
  deps: AppDeps;
  ingest: MemoryIngest;
  catalog: MemoryCatalog;
  recs: MemoryRecommendations;
  models: MemoryModels;
  health: MemoryHealth;
  logs: Record<string, unknown>[];
  config: Readonly<Config>;
}

async function harness(bodyLimitBytes = 4096): Promise<Harness> {
  const config = loadConfig({
    env: {},
    overrides: {
      server: { bodyLimitBytes, maxBatchEvents: 3, maxBatchItems: 3 },
      serving: { defaultK: 4, maxK: 50 },
      // Every request gets its access line (sampling is tested in access-log.test.ts).
      logging: { level: 'info', accessSample: 1 },
    },
  });
  const logs: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n'))
        if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const ingest = new MemoryIngest(config.server.maxBatchEvents);
  const catalog = new MemoryCatalog();
  const recs = new MemoryRecommendations(catalog);
  const models = new MemoryModels();
  const health = new MemoryHealth();
  // Experiments and feedback on a private in-memory SQLite store (their routes are tested end to end
  // in test/e2e/experiments.test.ts); closed with the app.
  const store = new SqliteStore({ path: ':memory:' });
  await store.migrate();
  const changeLog = new SqliteChangeLog(store);
  const deps: AppDeps = {
    config,
    logger: createLogger('info', { destination }),
    metrics: createMetrics({ defaultMetrics: false }),
    ingest,
    catalog,
    recommendations: recs,
    models,
    jobs: models,
    health,
    experiments: createExperimentService({ store, changeLog, logger: createLogger('silent') }),
    keys: createKeyService({ store, tenants: ['default'] }),
    feedback: createFeedbackService({
      served: store.served,
      maxBatch: config.server.maxBatchEvents,
      maxFutureSkewMs: config.events.maxFutureSkewSeconds * 1000,
    }),
  };
  const app = await buildApp(deps);
  app.addHook('onClose', async () => {
    await changeLog.close();
    await store.close();
  });
  await app.ready();
  return { app, deps, ingest, catalog, recs, models, health, logs, config };
}

let h: Harness;
beforeEach(async () => {
  h = await harness();
});
afterEach(async () => {
  await h.app.close();
});

async function seedItems() {
  for (const [id, categories] of [
    ['a', ['books']],
    ['b', ['books']],
    ['c', ['music']],
    ['d', ['music']],
    ['e', ['books']],
    ['f', ['toys']],
  ] as const) {
    await h.catalog.putItem(systemContext(), id, { categories: [...categories] });
  }
}

/** Untyped JSON (response bodies, the OpenAPI document); tests poke into it freely. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

function json(res: { body: string }): Json {
  return JSON.parse(res.body);
}

/* ------------------------------------------------------------------ request ids */

describe('request ids', () => {
  it('generates a UUID when the client sends none, and echoes it', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/health/live' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-request-id']).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    const other = await h.app.inject({ method: 'GET', url: '/health/live' });
    expect(other.headers['x-request-id']).not.toBe(res.headers['x-request-id']);
  });

  it('honours a well-formed incoming id and replaces a malformed one', async () => {
    const ok = await h.app.inject({
      method: 'GET',
      url: '/health/live',
      headers: { 'x-request-id': 'abc.DEF_1-2' },
    });
    expect(ok.headers['x-request-id']).toBe('abc.DEF_1-2');
    for (const bad of ['has space', 'x'.repeat(129), 'semi;colon', '']) {
      const res = await h.app.inject({
        method: 'GET',
        url: '/health/live',
        headers: { 'x-request-id': bad },
      });
      expect(res.headers['x-request-id']).not.toBe(bad);
      expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    }
    const longest = 'y'.repeat(128);
    const edge = await h.app.inject({
      method: 'GET',
      url: '/health/live',
      headers: { 'x-request-id': longest },
    });
    expect(edge.headers['x-request-id']).toBe(longest);
  });

  it('is present on 404s, validation errors and malformed URLs', async () => {
    const notFound = await h.app.inject({
      method: 'GET',
      url: '/nope',
      headers: { 'x-request-id': 'r-404' },
    });
    expect(notFound.headers['x-request-id']).toBe('r-404');
    const invalid = await h.app.inject({
      method: 'GET',
      url: '/v1/users/u/recommendations?k=0',
      headers: { 'x-request-id': 'r-400' },
    });
    expect(invalid.headers['x-request-id']).toBe('r-400');
    const badUrl = await h.app.inject({
      method: 'GET',
      url: '/v1/items/%E0%A4%A',
      headers: { 'x-request-id': 'r-bad' },
    });
    expect(badUrl.statusCode).toBe(400);
    expect(json(badUrl).error.code).toBe('CAIRN_VALIDATION');
    expect(badUrl.headers['x-request-id']).toBe('r-bad');
  });

  it('writes one compact log line per request, carrying the request id', async () => {
    await h.app.inject({ method: 'GET', url: '/v1/popular', headers: { 'x-request-id': 'log-me' } });
    const lines = h.logs.filter((l) => l.request_id === 'log-me');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      msg: 'request completed',
      method: 'GET',
      route: '/v1/popular',
      status: 200,
    });
    expect(typeof lines[0].ms).toBe('number');
    expect(lines[0]).not.toHaveProperty('req');
  });

  it('logs the route pattern, never the URL: no user id from the path, other ids as params', async () => {
    await h.app.inject({
      method: 'GET',
      url: '/v1/users/jane-doe-77/recommendations?k=3',
      headers: { 'x-request-id': 'log-u' },
    });
    await h.app.inject({
      method: 'GET',
      url: '/v1/items/sku-9/similar',
      headers: { 'x-request-id': 'log-i' },
    });
    await h.app.inject({
      method: 'GET',
      url: '/v1/nowhere/jane-doe-77',
      headers: { 'x-request-id': 'log-n' },
    });
    const line = (id: string) => h.logs.find((l) => l.request_id === id)!;
    expect(line('log-u')).toMatchObject({ route: '/v1/users/:id/recommendations' });
    expect(line('log-i')).toMatchObject({ route: '/v1/items/:id/similar', params: { id: 'sku-9' } });
    expect(line('log-n')).toMatchObject({ route: 'unmatched', status: 404 });
    // This harness has no pseudonymizer: the user id is left out entirely.
    expect(line('log-u')).not.toHaveProperty('user');
    expect(JSON.stringify(h.logs)).not.toContain('jane-doe-77');
  });
});

/* ------------------------------------------------------------------ framework errors */

describe('framework errors', () => {
  it('answers 404 CAIRN_NOT_FOUND for an unknown route', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/v2/whatever?x=1' });
    expect(res.statusCode).toBe(404);
    expect(json(res)).toEqual({
      error: { code: 'CAIRN_NOT_FOUND', message: 'no route GET /v2/whatever', details: null },
    });
    const wrongMethod = await h.app.inject({ method: 'PATCH', url: '/v1/items/a', payload: {} });
    expect(wrongMethod.statusCode).toBe(404);
  });

  it('answers 400 CAIRN_INVALID_JSON for malformed JSON and prototype poisoning', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/events',
      headers: { 'content-type': 'application/json' },
      payload: '{"user_id": "u1",',
    });
    expect(res.statusCode).toBe(400);
    expect(json(res).error.code).toBe('CAIRN_INVALID_JSON');
    const poisoned = await h.app.inject({
      method: 'POST',
      url: '/v1/events',
      headers: { 'content-type': 'application/json' },
      payload: '{"user_id":"u","item_id":"i","type":"view","__proto__":{"admin":true}}',
    });
    expect(poisoned.statusCode).toBe(400);
    expect(json(poisoned).error.code).toBe('CAIRN_INVALID_JSON');
    expect(h.ingest.stored).toHaveLength(0);
  });

  it('answers 413 CAIRN_PAYLOAD_TOO_LARGE above the body limit', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/events',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({
        user_id: 'u',
        item_id: 'i',
        type: 'view',
        context: { pad: 'x'.repeat(5000) },
      }),
    });
    expect(res.statusCode).toBe(413);
    expect(json(res).error).toMatchObject({
      code: 'CAIRN_PAYLOAD_TOO_LARGE',
      details: { limit_bytes: 4096 },
    });
  });

  it('answers 415 CAIRN_UNSUPPORTED_MEDIA_TYPE for non-JSON bodies', async () => {
    for (const contentType of ['text/plain', 'application/x-www-form-urlencoded']) {
      const res = await h.app.inject({
        method: 'POST',
        url: '/v1/events',
        headers: { 'content-type': contentType },
        payload: 'user_id=u',
      });
      expect(res.statusCode).toBe(415);
      expect(json(res).error.code).toBe('CAIRN_UNSUPPORTED_MEDIA_TYPE');
    }
  });

  it('treats an empty JSON body as no body', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/models/train',
      headers: { 'content-type': 'application/json' },
      payload: '',
    });
    expect(res.statusCode).toBe(202);
    const required = await h.app.inject({
      method: 'POST',
      url: '/v1/recommendations',
      headers: { 'content-type': 'application/json' },
      payload: '',
    });
    expect(required.statusCode).toBe(400);
    expect(json(required).error).toMatchObject({
      code: 'CAIRN_VALIDATION',
      details: { fields: [{ field: 'body' }] },
    });
  });
});

/* ------------------------------------------------------------------ errors from services */

describe('service errors', () => {
  it('never leaks the message of an unexpected error, and logs it with the request id', async () => {
    const res = await h.app.inject({
      method: 'GET',
      url: '/v1/users/explode/recommendations',
      headers: { 'x-request-id': 'boom-1' },
    });
    expect(res.statusCode).toBe(500);
    const body = json(res);
    expect(body.error.code).toBe('CAIRN_INTERNAL');
    expect(body.error.details).toEqual({ request_id: 'boom-1' });
    expect(res.body).not.toContain('hunter2');
    expect(res.body).not.toContain('postgres');
    const logged = h.logs.find(
      (l) => l.request_id === 'boom-1' && l.level === 'error' && l.msg === 'request failed',
    );
    expect(logged).toBeDefined();
    expect(JSON.stringify(logged)).toContain('hunter2');
  });

  it('keeps the code of a 5xx CairnError but not its message', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/v1/users/down/recommendations' });
    expect(res.statusCode).toBe(503);
    expect(json(res).error.code).toBe('CAIRN_UNAVAILABLE');
    expect(res.body).not.toContain('10.0.0.7');
  });

  it('maps CairnError codes to their statuses', async () => {
    const cases: [string, string, number, string][] = [
      ['GET', '/v1/items/missing', 404, 'CAIRN_ITEM_NOT_FOUND'],
      ['GET', '/v1/users/missing', 404, 'CAIRN_USER_NOT_FOUND'],
      ['GET', '/v1/jobs/missing', 404, 'CAIRN_JOB_NOT_FOUND'],
      ['POST', '/v1/models/v9/promote', 404, 'CAIRN_MODEL_NOT_FOUND'],
      ['GET', '/v1/items/missing/similar', 404, 'CAIRN_ITEM_NOT_FOUND'],
    ];
    for (const [method, url, status, code] of cases) {
      // Body-less writes without a key still declare JSON (what a cross-site browser form cannot).
      const headers = method === 'GET' ? {} : { 'content-type': 'application/json' };
      const res = await h.app.inject({ method: method as 'GET', url, headers });
      expect([url, res.statusCode, json(res).error.code]).toEqual([url, status, code]);
      expect(json(res).error.message).toEqual(expect.any(String));
    }
  });
});

/* ------------------------------------------------------------------ events */

describe('POST /v1/events', () => {
  it('accepts a single event with 202 and reports a repeat as duplicate', async () => {
    const event = { event_id: 'e1', user_id: 'u1', item_id: 'i1', type: 'view' };
    const first = await h.app.inject({ method: 'POST', url: '/v1/events', payload: event });
    expect(first.statusCode).toBe(202);
    expect(json(first)).toEqual({ event_id: 'e1', status: 'accepted' });
    const again = await h.app.inject({ method: 'POST', url: '/v1/events', payload: event });
    expect(again.statusCode).toBe(202);
    expect(json(again)).toEqual({ event_id: 'e1', status: 'duplicate' });
    expect(h.ingest.stored).toHaveLength(1);
  });

  it('rejects a bad single event with its own code and field', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/events',
      payload: { item_id: 'i1', type: 'view' },
    });
    expect(res.statusCode).toBe(400);
    expect(json(res)).toEqual({
      error: {
        code: 'CAIRN_VALIDATION',
        message: 'user_id: must be a non-empty string',
        details: { fields: [{ field: 'user_id', message: 'must be a non-empty string' }] },
      },
    });
    const unknownType = await h.app.inject({
      method: 'POST',
      url: '/v1/events',
      payload: { user_id: 'u', item_id: 'i', type: 'teleport' },
    });
    expect(unknownType.statusCode).toBe(422);
    expect(json(unknownType).error).toMatchObject({
      code: 'CAIRN_UNKNOWN_EVENT_TYPE',
      details: { fields: [{ field: 'type' }] },
    });
  });

  it('reports a batch per event, storing the valid ones', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/events',
      payload: {
        events: [
          { event_id: 'x', user_id: 'u1', item_id: 'i1', type: 'view' },
          { user_id: 'u1', type: 'view' },
          { event_id: 'x', user_id: 'u1', item_id: 'i1', type: 'view' },
        ],
      },
    });
    expect(res.statusCode).toBe(200);
    expect(json(res)).toEqual({
      accepted: 1,
      duplicates: 1,
      rejected: 1,
      results: [
        { index: 0, event_id: 'x', status: 'accepted' },
        {
          index: 1,
          event_id: null,
          status: 'rejected',
          error: { code: 'CAIRN_VALIDATION', field: 'item_id', message: 'must be a non-empty string' },
        },
        { index: 2, event_id: 'x', status: 'duplicate' },
      ],
    });
    expect(h.ingest.stored.map((e) => e.eventId)).toEqual(['x']);
  });

  it('only checks the envelope: an object, with `events` an array', async () => {
    const notArray = await h.app.inject({ method: 'POST', url: '/v1/events', payload: { events: 'nope' } });
    expect(notArray.statusCode).toBe(400);
    expect(json(notArray).error).toMatchObject({
      code: 'CAIRN_VALIDATION',
      details: { fields: [{ field: 'events' }] },
    });
    const topArray = await h.app.inject({ method: 'POST', url: '/v1/events', payload: [{ user_id: 'u' }] });
    expect(topArray.statusCode).toBe(400);
    expect(json(topArray).error.details.fields[0].field).toBe('body');
    expect(h.ingest.stored).toHaveLength(0);
  });

  it('answers 413 CAIRN_BATCH_TOO_LARGE when the service refuses the batch size', async () => {
    const events = Array.from({ length: 4 }, (_, i) => ({ user_id: 'u', item_id: `i${i}`, type: 'view' }));
    const res = await h.app.inject({ method: 'POST', url: '/v1/events', payload: { events } });
    expect(res.statusCode).toBe(413);
    expect(json(res).error.code).toBe('CAIRN_BATCH_TOO_LARGE');
  });
});

/* ------------------------------------------------------------------ items and users */

describe('items', () => {
  it('PUT maps the item to snake_case with ISO times; GET returns the same', async () => {
    const res = await h.app.inject({
      method: 'PUT',
      url: '/v1/items/sku%2F42',
      payload: {
        categories: ['books'],
        attributes: { price: 9.5, nested: { a: [1] } },
        available: false,
        created_at: '2023-05-06T07:08:09.000Z',
      },
    });
    expect(res.statusCode).toBe(200);
    const expected = {
      id: 'sku/42',
      categories: ['books'],
      attributes: { price: 9.5, nested: { a: [1] } },
      available: false,
      created_at: '2023-05-06T07:08:09.000Z',
      updated_at: '2024-01-02T03:04:06.678Z',
    };
    expect(json(res)).toEqual(expected);
    const got = await h.app.inject({ method: 'GET', url: '/v1/items/sku%2F42' });
    expect(got.statusCode).toBe(200);
    expect(json(got)).toEqual(expected);
  });

  it('passes service validation errors through with their fields, and requires an object body', async () => {
    const res = await h.app.inject({ method: 'PUT', url: '/v1/items/x', payload: { categories: 'books' } });
    expect(res.statusCode).toBe(400);
    expect(json(res).error).toEqual({
      code: 'CAIRN_VALIDATION',
      message: 'categories: must be an array of strings',
      details: { fields: [{ field: 'categories', message: 'must be an array of strings' }] },
    });
    const notObject = await h.app.inject({ method: 'PUT', url: '/v1/items/x', payload: [1, 2] });
    expect(notObject.statusCode).toBe(400);
    expect(json(notObject).error.details.fields[0].field).toBe('body');
  });

  it('POST /v1/items reports per item and enforces the batch size', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/items',
      payload: { items: [{ id: 'a', categories: ['x'] }, { categories: ['y'] }, { id: 'c', categories: 3 }] },
    });
    expect(res.statusCode).toBe(200);
    expect(json(res)).toEqual({
      upserted: 1,
      rejected: 2,
      results: [
        { index: 0, item_id: 'a', status: 'upserted' },
        {
          index: 1,
          item_id: null,
          status: 'rejected',
          error: { code: 'CAIRN_VALIDATION', field: 'id', message: 'required' },
        },
        {
          index: 2,
          item_id: 'c',
          status: 'rejected',
          error: { code: 'CAIRN_VALIDATION', field: 'categories', message: 'must be an array of strings' },
        },
      ],
    });
    expect([...h.catalog.items.keys()]).toEqual(['a']);
    const tooMany = await h.app.inject({
      method: 'POST',
      url: '/v1/items',
      payload: { items: [{}, {}, {}, {}] },
    });
    expect(tooMany.statusCode).toBe(413);
    expect(json(tooMany).error).toMatchObject({
      code: 'CAIRN_BATCH_TOO_LARGE',
      details: { max: 3, received: 4 },
    });
    const missing = await h.app.inject({ method: 'POST', url: '/v1/items', payload: {} });
    expect(missing.statusCode).toBe(400);
    expect(json(missing).error.details.fields).toEqual([{ field: 'items', message: expect.any(String) }]);
  });

  it('validates path ids (length bounds)', async () => {
    const long = await h.app.inject({ method: 'GET', url: `/v1/items/${'a'.repeat(513)}` });
    expect(long.statusCode).toBe(400);
    expect(json(long).error.details.fields[0].field).toBe('id');
    const ok = await h.app.inject({ method: 'GET', url: `/v1/items/${'a'.repeat(512)}` });
    expect(ok.statusCode).toBe(404);
  });
});

describe('users', () => {
  it('PUT, GET and DELETE (204, then 404)', async () => {
    const put = await h.app.inject({
      method: 'PUT',
      url: '/v1/users/u1',
      payload: { attributes: { country: 'NL' }, segments: ['vip'], opt_out: true },
    });
    expect(put.statusCode).toBe(200);
    expect(json(put)).toEqual({
      id: 'u1',
      attributes: { country: 'NL' },
      segments: ['vip'],
      opt_out: true,
      created_at: '2024-01-02T03:04:05.678Z',
      updated_at: '2024-01-02T03:04:05.678Z',
    });
    const got = await h.app.inject({ method: 'GET', url: '/v1/users/u1' });
    expect(json(got).opt_out).toBe(true);
    const del = await h.app.inject({
      method: 'DELETE',
      url: '/v1/users/u1',
      headers: { 'content-type': 'application/json' },
    });
    expect(del.statusCode).toBe(204);
    expect(del.body).toBe('');
    const after = await h.app.inject({ method: 'GET', url: '/v1/users/u1' });
    expect(after.statusCode).toBe(404);
    const again = await h.app.inject({
      method: 'DELETE',
      url: '/v1/users/u1',
      headers: { 'content-type': 'application/json' },
    });
    expect(json(again).error.code).toBe('CAIRN_USER_NOT_FOUND');
  });

  it('reports the service validation field', async () => {
    const res = await h.app.inject({ method: 'PUT', url: '/v1/users/u1', payload: { opt_out: 'yes' } });
    expect(res.statusCode).toBe(400);
    expect(json(res).error.details.fields).toEqual([{ field: 'opt_out', message: 'must be a boolean' }]);
  });
});

/* ------------------------------------------------------------------ recommendations */

describe('GET /v1/users/:id/recommendations', () => {
  it('maps the answer to the wire format and applies the default k', async () => {
    await seedItems();
    const res = await h.app.inject({
      method: 'GET',
      url: '/v1/users/known-1/recommendations',
      headers: { 'x-request-id': 'rec-1' },
    });
    expect(res.statusCode).toBe(200);
    expect(h.recs.requests.at(-1)).toEqual({ userId: 'known-1', k: 4, explain: false });
    // One id everywhere: the header, the body's request_id and the context the service received.
    expect(res.headers['x-request-id']).toBe('rec-1');
    expect(h.recs.contexts.at(-1)).toMatchObject({
      requestId: 'rec-1',
      tenant: 'default',
      principal: { id: 'anonymous' },
    });
    expect(json(res)).toEqual({
      request_id: 'rec-1',
      user_id: 'known-1',
      model_version: 'v7',
      source: 'personalized',
      fallback_reason: null,
      degraded: false,
      experiment: null,
      items: [
        { item_id: 'a', score: 1, reason: 'popular' },
        { item_id: 'b', score: 0.5, reason: 'popular' },
        { item_id: 'c', score: 1 / 3, reason: 'popular' },
        { item_id: 'd', score: 0.25, reason: 'popular' },
      ],
    });
  });

  it('passes session_id to the service and answers with the experiment arm', async () => {
    await seedItems();
    const res = await h.app.inject({ method: 'GET', url: '/v1/users/known-2/recommendations?session_id=s9' });
    expect(res.statusCode).toBe(200);
    expect(h.recs.requests.at(-1)).toMatchObject({ userId: 'known-2', sessionId: 's9' });
    expect(json(res).experiment).toEqual({ id: 'exp-s', variant: 'arm-s9' });
    const body = await h.app.inject({
      method: 'POST',
      url: '/v1/recommendations',
      payload: { user_id: 'known-2', session_id: 's8' },
    });
    expect(json(body).experiment).toEqual({ id: 'exp-s', variant: 'arm-s8' });
    const bulk = await h.app.inject({
      method: 'POST',
      url: '/v1/recommendations/bulk',
      payload: { requests: [{ user_id: 'known-3', session_id: 's7' }, { user_id: 'known-4' }] },
    });
    expect(json(bulk).results.map((r: { experiment: unknown }) => r.experiment)).toEqual([
      { id: 'exp-s', variant: 'arm-s7' },
      null,
    ]);
    const bad = await h.app.inject({ method: 'GET', url: '/v1/users/known-2/recommendations?session_id=' });
    expect(bad.statusCode).toBe(400);
    expect(json(bad).error).toMatchObject({ code: 'CAIRN_VALIDATION' });
  });

  it('coerces the querystring: k, explain, category and exclude (comma-separated and repeated)', async () => {
    await seedItems();
    const res = await h.app.inject({
      method: 'GET',
      url: '/v1/users/new-1/recommendations?k=2&explain=true&category=books&exclude=a,%20b&exclude=a',
    });
    expect(res.statusCode).toBe(200);
    expect(h.recs.requests.at(-1)).toEqual({
      userId: 'new-1',
      k: 2,
      explain: true,
      category: 'books',
      exclude: ['a', 'b'],
    });
    const body = json(res);
    expect(body.items.map((i: { item_id: string }) => i.item_id)).toEqual(['e']);
    expect(body).toMatchObject({ source: 'fallback', fallback_reason: 'cold_user', model_version: null });
  });

  it('rejects k outside 1..maxK or not an integer, naming the field', async () => {
    for (const k of ['0', '51', '2.5', 'abc', '-1', '']) {
      const res = await h.app.inject({ method: 'GET', url: `/v1/users/u/recommendations?k=${k}` });
      expect([k, res.statusCode]).toEqual([k, 400]);
      expect(json(res).error.code).toBe('CAIRN_VALIDATION');
      expect(json(res).error.details.fields[0].field).toBe('k');
    }
    const max = await h.app.inject({ method: 'GET', url: '/v1/users/u/recommendations?k=50' });
    expect(max.statusCode).toBe(200);
    const badExplain = await h.app.inject({
      method: 'GET',
      url: '/v1/users/u/recommendations?explain=maybe',
    });
    expect(json(badExplain).error.details.fields[0].field).toBe('explain');
    expect(h.recs.requests).toHaveLength(1);
  });

  it('passes a service validation error (unknown category) through', async () => {
    await seedItems();
    const res = await h.app.inject({ method: 'GET', url: '/v1/users/u/recommendations?category=garden' });
    expect(res.statusCode).toBe(400);
    expect(json(res).error.details.fields).toEqual([{ field: 'category', message: 'unknown category' }]);
  });
});

describe('POST /v1/recommendations and /bulk', () => {
  it('takes the request from the body without coercing types', async () => {
    await seedItems();
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/recommendations',
      payload: { user_id: 'known-2', k: 1, exclude: ['a', 'a,b'], explain: true },
    });
    expect(res.statusCode).toBe(200);
    expect(h.recs.requests.at(-1)).toEqual({ userId: 'known-2', k: 1, exclude: ['a', 'b'], explain: true });
    expect(json(res).items).toEqual([{ item_id: 'c', score: 1, reason: 'popular' }]);

    const stringK = await h.app.inject({
      method: 'POST',
      url: '/v1/recommendations',
      payload: { user_id: 'u', k: '5' },
    });
    expect(stringK.statusCode).toBe(400);
    expect(json(stringK).error.details.fields[0].field).toBe('k');
    const numericUser = await h.app.inject({
      method: 'POST',
      url: '/v1/recommendations',
      payload: { user_id: 42 },
    });
    expect(json(numericUser).error.details.fields[0].field).toBe('user_id');
    const missing = await h.app.inject({ method: 'POST', url: '/v1/recommendations', payload: { k: 3 } });
    expect(json(missing).error.details.fields[0].field).toBe('user_id');
    const unknown = await h.app.inject({
      method: 'POST',
      url: '/v1/recommendations',
      payload: { user_id: 'u', kk: 3 },
    });
    expect(unknown.statusCode).toBe(400);
    expect(json(unknown).error.details.fields[0].field).toBe('kk');
  });

  it('answers an anonymous session from `items`, and refuses neither or both of user_id and items', async () => {
    await seedItems();
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/recommendations',
      payload: { items: ['a', 'b'], k: 2, fields: ['title,price'] },
    });
    expect(res.statusCode).toBe(200);
    expect(h.recs.sessions.at(-1)).toEqual({ items: ['a', 'b'], k: 2, fields: ['title', 'price'] });
    expect(json(res)).toMatchObject({
      user_id: null,
      source: 'session',
      items: [{ item_id: 'c' }, { item_id: 'd' }],
    });
    const both = await h.app.inject({
      method: 'POST',
      url: '/v1/recommendations',
      payload: { user_id: 'u', items: ['a'] },
    });
    expect(both.statusCode).toBe(400);
    expect(json(both).error.details.fields[0].field).toBe('items');
    for (const items of [
      [],
      [''],
      Array.from({ length: h.config.serving.historyLimit + 1 }, (_, i) => `i${i}`),
    ]) {
      const bad = await h.app.inject({ method: 'POST', url: '/v1/recommendations', payload: { items } });
      expect(bad.statusCode).toBe(400);
      expect(json(bad).error.details.fields[0].field).toMatch(/^items/);
    }
    const bulk = await h.app.inject({
      method: 'POST',
      url: '/v1/recommendations/bulk',
      payload: {
        requests: [
          { items: ['a'], k: 1 },
          { user_id: 'known-1', k: 1 },
        ],
      },
    });
    expect(json(bulk).results.map((r: { source: string }) => r.source)).toEqual(['session', 'personalized']);
    expect(h.recs.sessions).toHaveLength(2);
  });

  it('bulk answers in order, with per-request errors for rejected requests', async () => {
    await seedItems();
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/recommendations/bulk',
      payload: {
        requests: [
          { user_id: 'known-a', k: 1 },
          { user_id: 'b', k: 2, category: 'garden' },
          { user_id: 'c', k: 1, category: 'music' },
        ],
      },
    });
    expect(res.statusCode).toBe(200);
    const { results } = json(res);
    expect(results).toHaveLength(3);
    expect(results[0]).toMatchObject({
      user_id: 'known-a',
      source: 'personalized',
      items: [{ item_id: 'a' }],
    });
    expect(results[1]).toEqual({
      user_id: 'b',
      error: {
        code: 'CAIRN_VALIDATION',
        message: 'category: unknown category',
        details: { fields: [{ field: 'category', message: 'unknown category' }] },
      },
    });
    expect(results[2]).toMatchObject({ user_id: 'c', items: [{ item_id: 'c' }] });
    // k defaults to config.serving.defaultK when absent
    await h.app.inject({
      method: 'POST',
      url: '/v1/recommendations/bulk',
      payload: { requests: [{ user_id: 'z' }] },
    });
    expect(h.recs.requests.at(-1)).toEqual({ userId: 'z', k: 4 });
  });

  it('bulk validates each request by path and caps the count at 1000', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/recommendations/bulk',
      payload: { requests: [{ user_id: 'a' }, { user_id: 'b', k: 0 }] },
    });
    expect(res.statusCode).toBe(400);
    expect(json(res).error.details.fields[0].field).toBe('requests[1].k');
    expect(h.recs.requests).toHaveLength(0);
    const empty = await h.app.inject({
      method: 'POST',
      url: '/v1/recommendations/bulk',
      payload: { requests: [] },
    });
    expect(json(empty).error.details.fields[0].field).toBe('requests');
  });

  it('bulk accepts 1000 requests and refuses 1001', async () => {
    const big = await harness(1024 * 1024);
    try {
      const requests = (n: number) => Array.from({ length: n }, (_, i) => ({ user_id: `u${i}`, k: 1 }));
      const ok = await big.app.inject({
        method: 'POST',
        url: '/v1/recommendations/bulk',
        payload: { requests: requests(1000) },
      });
      expect(ok.statusCode).toBe(200);
      const { results } = json(ok);
      expect(results).toHaveLength(1000);
      expect(results.map((r: { user_id: string }) => r.user_id)).toEqual(
        requests(1000).map((r) => r.user_id),
      );
      const tooMany = await big.app.inject({
        method: 'POST',
        url: '/v1/recommendations/bulk',
        payload: { requests: requests(1001) },
      });
      expect(tooMany.statusCode).toBe(400);
      expect(json(tooMany).error.details.fields[0].field).toBe('requests');
    } finally {
      await big.app.close();
    }
  });

  it('a bulk request whose service call fails unexpectedly fails the call with a 500', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/recommendations/bulk',
      payload: { requests: [{ user_id: 'ok' }, { user_id: 'explode' }] },
    });
    expect(res.statusCode).toBe(500);
    expect(res.body).not.toContain('hunter2');
  });
});

describe('similar and popular', () => {
  it('GET /v1/items/:id/similar maps the answer and applies k', async () => {
    await seedItems();
    const res = await h.app.inject({ method: 'GET', url: '/v1/items/a/similar?k=2&category=books' });
    expect(res.statusCode).toBe(200);
    expect(json(res)).toEqual({
      request_id: 'sim-1',
      item_id: 'a',
      model_version: 'v7',
      source: 'personalized',
      fallback_reason: null,
      degraded: false,
      items: [
        { item_id: 'b', score: 1, reason: 'popular' },
        { item_id: 'e', score: 0.5, reason: 'popular' },
      ],
    });
  });

  it('GET /v1/popular has a null item_id and validates k', async () => {
    await seedItems();
    const res = await h.app.inject({ method: 'GET', url: '/v1/popular?category=music' });
    expect(res.statusCode).toBe(200);
    expect(json(res)).toMatchObject({
      item_id: null,
      source: 'fallback',
      fallback_reason: 'popular',
      degraded: true,
    });
    expect(json(res).items.map((i: { item_id: string }) => i.item_id)).toEqual(['c', 'd']);
    const bad = await h.app.inject({ method: 'GET', url: '/v1/popular?k=999' });
    expect(bad.statusCode).toBe(400);
    expect(json(bad).error.details.fields[0].field).toBe('k');
  });
});

/* ------------------------------------------------------------------ models, jobs, health, metrics, docs */

describe('models and jobs', () => {
  it('GET /v1/models maps versions without internal paths', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/v1/models?limit=1' });
    expect(res.statusCode).toBe(200);
    expect(json(res)).toEqual({
      models: [
        {
          version: 'v2',
          algorithm: 'als',
          params: { factors: 32 },
          status: 'champion',
          training_data: { users: 10, items: 20, interactions: 30, events: 40 },
          metrics: { 'ndcg@10': 0.25 },
          train_seconds: 1.5,
          created_at: '2024-01-02T03:04:05.678Z',
          promoted_at: '2024-01-02T03:05:05.678Z',
          parent_version: 'v1',
          error: null,
          lineage: null,
        },
      ],
    });
    expect(res.body).not.toContain('/secret/path');
    const bad = await h.app.inject({ method: 'GET', url: '/v1/models?limit=0' });
    expect(json(bad).error.details.fields[0].field).toBe('limit');
  });

  it('POST /v1/models/train answers 202 with a job id that GET /v1/jobs/:id knows', async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/models/train',
      payload: { algorithm: 'bpr', params: { factors: 8, loss: 'warp', verbose: false }, promote: false },
    });
    expect(res.statusCode).toBe(202);
    expect(json(res)).toEqual({ job_id: 'job-1', status: 'queued' });
    expect(h.models.trainRequests.at(-1)).toEqual({
      algorithm: 'bpr',
      params: { factors: 8, loss: 'warp', verbose: false },
      promote: false,
    });
    const job = await h.app.inject({ method: 'GET', url: '/v1/jobs/job-1' });
    expect(json(job)).toEqual({
      job_id: 'job-1',
      name: 'train',
      status: 'queued',
      progress: 0,
      attempts: 0,
      max_attempts: 3,
      created_at: '2024-01-02T03:04:05.678Z',
      updated_at: '2024-01-02T03:04:05.678Z',
    });
    h.models.jobs.set('job-1', {
      ...h.models.jobs.get('job-1')!,
      status: 'failed',
      progress: 0.5,
      error: 'not enough data',
      result: { tried: 1 },
    });
    const failed = await h.app.inject({ method: 'GET', url: '/v1/jobs/job-1' });
    expect(json(failed)).toMatchObject({
      status: 'failed',
      progress: 0.5,
      error: 'not enough data',
      result: { tried: 1 },
    });
  });

  it('train validates its body and passes service validation through', async () => {
    const badParams = await h.app.inject({
      method: 'POST',
      url: '/v1/models/train',
      payload: { params: { factors: [1] } },
    });
    expect(badParams.statusCode).toBe(400);
    expect(json(badParams).error.details.fields[0].field).toBe('params.factors');
    const unknownAlgo = await h.app.inject({
      method: 'POST',
      url: '/v1/models/train',
      payload: { algorithm: 'magic' },
    });
    expect(unknownAlgo.statusCode).toBe(400);
    expect(json(unknownAlgo).error.details.fields[0].field).toBe('algorithm');
    const noBody = await h.app.inject({
      method: 'POST',
      url: '/v1/models/train',
      headers: { 'content-type': 'application/json' },
    });
    expect(noBody.statusCode).toBe(202);
    expect(h.models.trainRequests.at(-1)).toEqual({});
  });

  it('promote and rollback answer the model; a second rollback is a 409', async () => {
    const promoted = await h.app.inject({
      method: 'POST',
      url: '/v1/models/v1/promote',
      headers: { 'content-type': 'application/json' },
    });
    expect(promoted.statusCode).toBe(200);
    expect(json(promoted)).toMatchObject({
      version: 'v1',
      status: 'champion',
      promoted_at: '2024-01-02T03:06:05.678Z',
    });
    const rolled = await h.app.inject({
      method: 'POST',
      url: '/v1/models/rollback',
      headers: { 'content-type': 'application/json' },
    });
    expect(rolled.statusCode).toBe(200);
    expect(json(rolled)).toMatchObject({ version: 'v1', status: 'champion' });
    const again = await h.app.inject({
      method: 'POST',
      url: '/v1/models/rollback',
      headers: { 'content-type': 'application/json' },
      payload: '',
    });
    expect(again.statusCode).toBe(409);
    expect(json(again).error.code).toBe('CAIRN_NO_PREVIOUS_MODEL');
  });

  it('promote takes an optional {force, reason}; GET /v1/models/:version answers the model card', async () => {
    const forced = await h.app.inject({
      method: 'POST',
      url: '/v1/models/v1/promote',
      payload: { force: true, reason: 'hotfix' },
    });
    expect(forced.statusCode).toBe(200);
    expect(h.models.promoteRequests.at(-1)).toEqual({ version: 'v1', force: true, reason: 'hotfix' });
    const bad = await h.app.inject({ method: 'POST', url: '/v1/models/v1/promote', payload: { force: 1 } });
    expect(bad.statusCode).toBe(400);
    expect(json(bad).error.details.fields[0].field).toBe('force');
    const extra = await h.app.inject({
      method: 'POST',
      url: '/v1/models/v1/promote',
      payload: { forse: true },
    });
    expect(extra.statusCode).toBe(400);

    const card = await h.app.inject({ method: 'GET', url: '/v1/models/v2' });
    expect(card.statusCode).toBe(200);
    expect(json(card)).toMatchObject({ version: 'v2', status: 'champion', lineage: null });
    expect(card.body).not.toContain('/secret/path');
    const missing = await h.app.inject({ method: 'GET', url: '/v1/models/v9' });
    expect(missing.statusCode).toBe(404);
    expect(json(missing).error.code).toBe('CAIRN_MODEL_NOT_FOUND');
  });
});

describe('health', () => {
  it('live is always ok; ready reflects the checks (503 with reasons)', async () => {
    expect(json(await h.app.inject({ method: 'GET', url: '/health/live' }))).toEqual({ status: 'ok' });
    const ready = await h.app.inject({ method: 'GET', url: '/health/ready' });
    expect(ready.statusCode).toBe(200);
    expect(json(ready)).toEqual({ status: 'ready', checks: { store: { ok: true }, model: { ok: true } } });
    h.health.state = 'not_ready';
    const notReady = await h.app.inject({ method: 'GET', url: '/health/ready' });
    expect(notReady.statusCode).toBe(503);
    expect(json(notReady)).toEqual({
      status: 'not_ready',
      checks: { store: { ok: false, detail: 'sqlite locked' }, model: { ok: true } },
    });
    h.health.state = 'throws';
    const crashed = await h.app.inject({ method: 'GET', url: '/health/ready' });
    expect(crashed.statusCode).toBe(503);
    expect(json(crashed).status).toBe('not_ready');
    expect(crashed.body).not.toContain('secret detail');
  });
});

describe('GET /metrics', () => {
  it('exposes request durations labelled by route pattern, never by raw URL', async () => {
    await seedItems();
    await h.app.inject({ method: 'GET', url: '/v1/users/alice/recommendations' });
    await h.app.inject({ method: 'GET', url: '/v1/users/bob/recommendations' });
    await h.app.inject({ method: 'GET', url: '/v1/users/bob/recommendations?k=0' });
    await h.app.inject({ method: 'GET', url: '/no/such/route' });
    const res = await h.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe(h.deps.metrics.registry.contentType);
    const text = res.body;
    const count = (labels: string) => {
      const m = text.match(
        new RegExp(`^cairn_http_request_duration_seconds_count\\{${labels}\\} (\\d+)$`, 'm'),
      );
      return m ? Number(m[1]) : 0;
    };
    expect(count('method="GET",route="/v1/users/:id/recommendations",status_code="200"')).toBe(2);
    expect(count('method="GET",route="/v1/users/:id/recommendations",status_code="400"')).toBe(1);
    expect(count('method="GET",route="unmatched",status_code="404"')).toBe(1);
    expect(text).not.toContain('alice');
    expect(text).not.toContain('/no/such/route');
  });
});

/** Keywords of an OpenAPI 3.0 Schema Object (OAS 3.0.3 §4.7.24); anything else (const, type arrays, $schema…) is invalid. */
const OAS30_SCHEMA_KEYWORDS = new Set(
  (
    'title multipleOf maximum exclusiveMaximum minimum exclusiveMinimum maxLength minLength pattern maxItems minItems ' +
    'uniqueItems maxProperties minProperties required enum type not allOf oneOf anyOf items properties ' +
    'additionalProperties description format default nullable discriminator readOnly writeOnly example externalDocs ' +
    'deprecated xml $ref'
  ).split(' '),
);
const OAS30_TYPES = new Set(['array', 'boolean', 'integer', 'number', 'object', 'string']);

function checkOas30Schema(schema: unknown, at: string, problems: string[]): void {
  if (typeof schema !== 'object' || schema === null) {
    problems.push(`${at}: not an object`);
    return;
  }
  const s = schema as Record<string, Json>;
  for (const key of Object.keys(s)) {
    if (!OAS30_SCHEMA_KEYWORDS.has(key) && !key.startsWith('x-')) problems.push(`${at}: keyword ${key}`);
  }
  if ('type' in s && !OAS30_TYPES.has(s.type)) problems.push(`${at}: type ${JSON.stringify(s.type)}`);
  if ('required' in s && (!Array.isArray(s.required) || s.required.length === 0))
    problems.push(`${at}: empty required`);
  for (const k of ['allOf', 'anyOf', 'oneOf'])
    (s[k] ?? []).forEach((x: unknown, i: number) => checkOas30Schema(x, `${at}.${k}[${i}]`, problems));
  for (const k of ['not', 'items']) if (k in s) checkOas30Schema(s[k], `${at}.${k}`, problems);
  for (const [name, x] of Object.entries(s.properties ?? {})) checkOas30Schema(x, `${at}.${name}`, problems);
  if (typeof s.additionalProperties === 'object')
    checkOas30Schema(s.additionalProperties, `${at}.*`, problems);
}

describe('OpenAPI and docs', () => {
  const ROUTES: [string, string][] = [
    ['post', '/v1/events'],
    ['put', '/v1/items/{id}'],
    ['post', '/v1/items'],
    ['get', '/v1/items/{id}'],
    ['put', '/v1/users/{id}'],
    ['get', '/v1/users/{id}'],
    ['delete', '/v1/users/{id}'],
    ['get', '/v1/users/{id}/recommendations'],
    ['post', '/v1/recommendations'],
    ['post', '/v1/recommendations/bulk'],
    ['get', '/v1/items/{id}/similar'],
    ['get', '/v1/popular'],
    ['get', '/v1/models'],
    ['post', '/v1/models/train'],
    ['get', '/v1/models/{version}'],
    ['post', '/v1/models/{version}/promote'],
    ['post', '/v1/models/rollback'],
    ['get', '/v1/jobs/{id}'],
    ['post', '/v1/experiments'],
    ['get', '/v1/experiments'],
    ['get', '/v1/experiments/{id}'],
    ['post', '/v1/experiments/{id}/stop'],
    ['get', '/v1/experiments/{id}/results'],
    ['post', '/v1/feedback'],
    ['post', '/v1/keys'],
    ['get', '/v1/keys'],
    ['delete', '/v1/keys/{id}'],
    ['get', '/health/live'],
    ['get', '/health/ready'],
    ['get', '/metrics'],
  ];

  it('serves an OpenAPI 3 document listing every route', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    const doc = json(res);
    expect(doc.openapi).toMatch(/^3\.\d+\.\d+$/);
    expect(doc.info).toMatchObject({ title: 'Cairn', version: expect.any(String) });
    const listed = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(
      ([path, ops]) => Object.keys(ops).map((method) => `${method} ${path}`),
    );
    expect(listed.sort()).toEqual(ROUTES.map(([m, p]) => `${m} ${p}`).sort());

    const operationIds = new Set<string>();
    for (const [method, path] of ROUTES) {
      const op = doc.paths[path][method];
      expect(op.operationId, `${method} ${path}`).toEqual(expect.any(String));
      expect(operationIds.has(op.operationId)).toBe(false);
      operationIds.add(op.operationId);
      expect(Object.keys(op.responses).length).toBeGreaterThan(0);
      // every {param} of the path is declared as a required path parameter
      for (const [, name] of path.matchAll(/\{(\w+)\}/g)) {
        const param = (op.parameters ?? []).find(
          (p: { in: string; name: string }) => p.in === 'path' && p.name === name,
        );
        expect(param, `${method} ${path} ${name}`).toMatchObject({ required: true });
      }
    }
    // every schema in the document is an OpenAPI 3.0 Schema Object (a JSON-schema subset)
    const problems: string[] = [];
    for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, Json>>)) {
      for (const [method, op] of Object.entries(ops)) {
        for (const p of op.parameters ?? [])
          checkOas30Schema(p.schema, `${method} ${path} ${p.name}`, problems);
        for (const c of Object.values<{ schema: unknown }>(op.requestBody?.content ?? {})) {
          checkOas30Schema(c.schema, `${method} ${path} body`, problems);
        }
        for (const [status, r] of Object.entries(op.responses as Record<string, Json>)) {
          if (typeof r.description !== 'string') problems.push(`${method} ${path} ${status}: no description`);
          for (const c of Object.values<{ schema: unknown }>(r.content ?? {})) {
            checkOas30Schema(c.schema, `${method} ${path} ${status}`, problems);
          }
        }
      }
    }
    expect(problems).toEqual([]);
    expect(doc.paths['/v1/models/train'].post.requestBody.required).toBe(false);
    expect(doc.paths['/v1/recommendations'].post.requestBody.required).toBe(true);
    // the events body documents the event fields although validation is per event
    const eventsBody = doc.paths['/v1/events'].post.requestBody.content['application/json'].schema;
    expect(JSON.stringify(eventsBody)).toContain('user_id');
    // nullable fields use OpenAPI 3.0 `nullable`, not JSON-schema type arrays
    const rec =
      doc.paths['/v1/users/{id}/recommendations'].get.responses['200'].content['application/json'].schema;
    expect(rec.properties.model_version).toMatchObject({ type: 'string', nullable: true });
    expect(JSON.stringify(doc)).not.toContain('"type":["');
    const k = doc.paths['/v1/users/{id}/recommendations'].get.parameters.find(
      (p: { name: string }) => p.name === 'k',
    );
    expect(k).toMatchObject({
      in: 'query',
      schema: { type: 'integer', minimum: 1, maximum: 50, default: 4 },
    });
  });

  it('serves the Swagger UI at /docs', async () => {
    let res = await h.app.inject({ method: 'GET', url: '/docs' });
    if (res.statusCode >= 300 && res.statusCode < 400) {
      res = await h.app.inject({
        method: 'GET',
        url: new URL(res.headers.location as string, 'http://x/docs/').pathname,
      });
    }
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/text\/html/);
    expect(res.body).toContain('swagger');
  });
});
