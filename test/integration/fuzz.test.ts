/**
 * A seeded fuzz of the whole HTTP API: the real embedded service (demo data, a trained champion) gets
 * thousands of generated requests through `app.inject` — every operation of its OpenAPI document,
 * with valid, boundary and hostile inputs (wrong types, huge numbers, unicode, long and traversal ids,
 * nested junk, empty and non-JSON bodies, wrong content types, duplicate events, unknown fields, wrong
 * methods). Every answer must be a 2xx that matches its declared schema or a 4xx with a `CAIRN_*` code
 * — never a 5xx — and what was stored before the fuzz must still be there afterwards.
 *
 * It runs on the embedded default (SQLite) and on PostgreSQL (fewer requests: it refuses text SQLite
 * takes, such as NUL characters). The seed is printed; `CAIRN_FUZZ_SEED=N` replays a run,
 * `CAIRN_FUZZ_REQUESTS=N` changes the SQLite run's length (the PostgreSQL run makes 2/5 as many).
 * Auth is disabled (the default); a refusal for a missing `Content-Type: application/json` (415) counts as
 * a valid answer.
 */
import { randomInt } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { ERROR_CODES } from '../../src/errors/errors.ts';
import { demoUserId } from '../../src/ingest/demo-data.ts';
import { seedDemo } from '../../src/main/demo.ts';
import { createEmbedded, type Embedded } from '../../src/main/embedded.ts';
import { createLogger } from '../../src/monitoring/logger.ts';
import {
  CONTENT_TYPES,
  declaredResponse,
  HOSTILE_NUMBERS,
  HOSTILE_STRINGS,
  hostileRawBody,
  hostileValue,
  operationsOf,
  Rng,
  schemaProblems,
  validValue,
  type Hint,
  type Operation,
  type Parameter,
  type Schema,
} from './helpers/fuzz.ts';

const SEED = Number(process.env.CAIRN_FUZZ_SEED ?? randomInt(2 ** 31));
const REQUESTS = Number(process.env.CAIRN_FUZZ_REQUESTS ?? 5000);
const PG_URL = process.env.CAIRN_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const BACKENDS = [
  { name: 'sqlite', requests: REQUESTS },
  { name: 'postgres', requests: Math.ceil((REQUESTS * 2) / 5) },
] as const;
/** Failures listed in full; the count covers all of them. */
const MAX_REPORTED = 25;

interface FuzzRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  payload?: string;
  /** The operation the request was generated for (null: an unknown path). */
  op: Operation | null;
}

/** Ids the generator draws from: what the service holds, and what its answers named. */
interface Pools {
  users: string[];
  items: string[];
  categories: string[];
  models: string[];
  experiments: string[];
  jobs: string[];
  keys: string[];
  requestIds: string[];
  eventIds: string[];
}

/* ------------------------------------------------------------------ data kept across the fuzz */

const SENTINEL_ITEMS = Array.from({ length: 5 }, (_, i) => ({
  id: `sentinel-item-${i}`,
  body: { categories: [`sentinel-cat-${i % 2}`], attributes: { price: 10 + i, title: `Sentinel ${i} ✓` } },
}));
const SENTINEL_USERS = Array.from({ length: 3 }, (_, i) => ({
  id: `sentinel-user-${i}`,
  body: { segments: ['sentinel'], attributes: { tier: i } },
}));
const SENTINEL_EVENTS = Array.from({ length: 30 }, (_, i) => ({
  event_id: `sentinel-event-${i}`,
  user_id: SENTINEL_USERS[i % 3].id,
  item_id: SENTINEL_ITEMS[i % 5].id,
  type: i % 6 === 5 ? 'purchase' : 'view',
  timestamp: Date.now() - (i + 1) * 60_000,
}));

/* ------------------------------------------------------------------ request generation */

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'];
const UNKNOWN_PATHS = [
  '/v1/unknown',
  '/v2/events',
  '/v1/events/extra/segments',
  '//v1//items//',
  '/v1/items/',
  '/v1/users//recommendations',
  '/../../etc/passwd',
  '/v1/items/%ZZ',
  '/v1/users/%00/recommendations',
  '/%E0%A4%A',
  `/v1/items/${'z'.repeat(1100)}`,
  `/v1/items/${'%F0%9F%A7%A8'.repeat(300)}`,
];
const ALGORITHMS = ['pop', 'als', 'itemknn', 'ease', 'rp3beta', 'bpr'];
type Mode = 'valid' | 'boundary' | 'hostile';

class Generator {
  private fresh = 0;

  constructor(
    private readonly rng: Rng,
    private readonly pools: Pools,
    private readonly eventTypes: string[],
  ) {}

  request(ops: readonly Operation[]): FuzzRequest {
    const rng = this.rng;
    if (rng.chance(0.02)) {
      return { method: rng.pick(['GET', 'POST']), url: rng.pick(UNKNOWN_PATHS), headers: {}, op: null };
    }
    let op = rng.pick(ops);
    // Operations without inputs (probes, metrics, lists) have little to fuzz: drawn a third as often.
    if (op.parameters.length === 0 && !op.body && rng.chance(2 / 3)) op = rng.pick(ops);
    // A valid training request fits a model in the background (most of this test's CPU): a quarter as often.
    if (op.operationId === 'trainModel' && rng.chance(3 / 4)) op = rng.pick(ops);
    const mode: Mode = rng.pick(['valid', 'valid', 'boundary', 'hostile', 'hostile']);
    const method = rng.chance(0.04) ? rng.pick(METHODS) : op.method;
    const url = this.path(op, mode) + this.query(op, mode);
    const headers: Record<string, string> = {};
    if (rng.chance(0.05)) headers['x-request-id'] = rng.pick(['../../x', 'a b', 'r'.repeat(300), 'ok-id-1']);
    if (rng.chance(0.03)) headers.origin = 'https://evil.example';
    if (rng.chance(0.03)) headers.authorization = rng.pick(['Bearer junk', 'Basic Zm9vOmJhcg==', 'Bearer ']);
    const body = this.body(op, mode, method);
    if (body === undefined) {
      // State-changing requests without a key may need the JSON content type, body or not.
      if (method !== 'GET' && method !== 'HEAD' && rng.chance(0.6))
        headers['content-type'] = 'application/json';
      return { method, url, headers, op };
    }
    const contentType = mode === 'valid' && rng.chance(0.9) ? 'application/json' : rng.pick(CONTENT_TYPES);
    if (contentType !== undefined) headers['content-type'] = contentType;
    return { method, url, headers, payload: body, op };
  }

  /** A fresh id no pool holds yet. */
  private freshId(prefix: string): string {
    return `fz-${prefix}-${SEED}-${++this.fresh}`;
  }

  private pathValue(op: Operation, name: string, mode: Mode): string {
    const rng = this.rng;
    if (mode === 'hostile') return rng.pick(HOSTILE_STRINGS).slice(0, rng.pick([40, 600, 1100]));
    if (mode === 'boundary') return rng.pick(['a', 'é', '🧨', 'x'.repeat(512), 'x'.repeat(513), ' ', '.']);
    const pool = this.poolFor(op.path, name);
    return pool.length > 0 && rng.chance(0.8) ? rng.pick(pool) : this.freshId(name);
  }

  private poolFor(path: string, name: string): string[] {
    const p = this.pools;
    if (name === 'version') return p.models;
    if (path.startsWith('/v1/items/')) return p.items;
    if (path.startsWith('/v1/users/')) return p.users;
    if (path.startsWith('/v1/experiments/')) return p.experiments;
    if (path.startsWith('/v1/jobs/')) return p.jobs;
    if (path.startsWith('/v1/keys/')) return p.keys;
    return [];
  }

  private path(op: Operation, mode: Mode): string {
    return op.path.replace(/\{([^}]+)\}/g, (_, name: string) => {
      const value = this.pathValue(op, name, mode);
      // Hostile ids go out raw now and then: unencoded traversal, stray percent signs.
      if (mode === 'hostile' && this.rng.chance(0.3)) return value.replace(/[\s?#]/g, '');
      return encode(value);
    });
  }

  private query(op: Operation, mode: Mode): string {
    const rng = this.rng;
    const parts: string[] = [];
    for (const p of op.parameters.filter((x) => x.in === 'query')) {
      if (!p.required && !rng.chance(mode === 'valid' ? 0.5 : 0.7)) continue;
      for (const v of this.queryValues(p, mode)) parts.push(`${encode(p.name)}=${v}`);
    }
    if (mode !== 'valid' && rng.chance(0.2)) parts.push(`unknown_${rng.int(0, 9)}=${encode('x')}`);
    if (mode === 'hostile' && rng.chance(0.1))
      parts.push(rng.pick(['%ZZ', 'k=%', '&&&', '=', 'k[]=1', 'a[b][c]=1']));
    return parts.length > 0 ? `?${parts.join('&')}` : '';
  }

  /** Encoded values of one query parameter (several: the parameter repeated). */
  private queryValues(p: Parameter, mode: Mode): string[] {
    const rng = this.rng;
    const s = p.schema;
    if (mode === 'valid') {
      const v = validValue(rng, s, this.hint, p.name);
      return Array.isArray(v) ? [v.map(String).map(encodeURIComponent).join(',')] : [encode(String(v))];
    }
    if (mode === 'boundary') {
      const candidates: unknown[] = ['', 'abc', '1.5', 'NaN', '1e308', '-1', '0', 'true', 'maybe'];
      if (s.minimum !== undefined) candidates.push(s.minimum - 1, s.minimum);
      if (s.maximum !== undefined) candidates.push(s.maximum, s.maximum + 1);
      if (s.maxLength !== undefined) candidates.push('m'.repeat(s.maxLength), 'm'.repeat(s.maxLength + 1));
      if (s.maxItems !== undefined)
        candidates.push(Array.from({ length: s.maxItems + 1 }, (_, i) => `e${i}`).join(','));
      const v = String(rng.pick(candidates));
      return rng.chance(0.15) ? [encode(v), encode(v)] : [encode(v)];
    }
    const v = rng.chance(0.5) ? rng.pick(HOSTILE_STRINGS) : String(rng.pick(HOSTILE_NUMBERS));
    return [encode(v.slice(0, 2000))];
  }

  /** A JSON (or not) body for the operation, or undefined to send none. */
  private body(op: Operation, mode: Mode, method: string): string | undefined {
    const rng = this.rng;
    if (!op.body) return mode === 'hostile' && rng.chance(0.2) ? hostileRawBody(rng) : undefined;
    if (!op.body.required && rng.chance(0.3)) return undefined;
    if (method === 'GET' || method === 'HEAD') return undefined;
    const value = validValue(rng, op.body.schema, this.hint, '');
    if (mode === 'valid') return JSON.stringify(value);
    if (mode === 'boundary') return JSON.stringify(this.boundaryBody(op.body.schema, value));
    switch (rng.int(0, 4)) {
      case 0:
        return hostileRawBody(rng);
      case 1:
        return JSON.stringify(hostileValue(rng));
      case 2:
        return this.deepField(value);
      default:
        return JSON.stringify(this.mutate(value, rng.int(1, 3)));
    }
  }

  /**
   * The valid body with one field (a free object such as `context` or `attributes`, or any other) nested
   * thousands of levels deep: written as text, since building it as a value would overflow this stack.
   */
  private deepField(value: unknown): string {
    const rng = this.rng;
    const holder = this.randomContainer(value);
    if (holder === null) return JSON.stringify(value);
    const keys = Object.keys(holder);
    const key = keys.length > 0 ? rng.pick(keys) : 'context';
    (holder as Record<string, unknown>)[key] = '__DEEP__';
    const depth = rng.pick([2_000, 20_000, 200_000]);
    const deep = rng.chance(0.5)
      ? `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`
      : `${'['.repeat(depth)}${']'.repeat(depth)}`;
    return JSON.stringify(value).replace('"__DEEP__"', () => deep);
  }

  /** The valid body with one field at or past its limit, an unknown field, or events repeated. */
  private boundaryBody(schema: Schema, value: unknown): unknown {
    const rng = this.rng;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
    const out = { ...(value as Record<string, unknown>) };
    const arrays = Object.entries(schema.properties ?? {}).filter(([, s]) => s.type === 'array');
    switch (rng.int(0, 4)) {
      case 0:
        out[`unknown_${rng.int(0, 9)}`] = 'x';
        return out;
      case 1: {
        if (arrays.length === 0) return out;
        const [name, s] = rng.pick(arrays);
        // maxItems + 1 of the API's largest batches is tens of thousands of objects: at most 2,000 here.
        const count = Math.min((s.maxItems ?? 10) + 1, 2_000);
        out[name] = Array.from({ length: count }, () => validValue(rng, s.items ?? {}, this.hint, name, 1));
        return out;
      }
      case 2: {
        const names = Object.keys(out);
        if (names.length === 0) return out;
        const name = rng.pick(names);
        out[name] = rng.pick([0, -1, 1e308, -1e308, 2 ** 53 + 1, '', 'x'.repeat(100_000), [], {}]);
        return out;
      }
      case 3: {
        // A batch of one event sent twice under one id: the second is a duplicate.
        if (!Array.isArray(out.events) || out.events.length === 0) return out;
        out.events = [...(out.events as unknown[]), out.events[0]];
        return out;
      }
      default:
        return Object.fromEntries(Object.keys(out).map((k) => [k, null]));
    }
  }

  /** `value` with `times` random changes: a field replaced by junk, a required field dropped, one added. */
  private mutate(value: unknown, times: number): unknown {
    const rng = this.rng;
    let v = structuredClone(value);
    for (let t = 0; t < times; t++) {
      const holder = this.randomContainer(v);
      if (holder === null) {
        v = hostileValue(rng);
        continue;
      }
      const keys = Object.keys(holder);
      const key =
        keys.length > 0 && rng.chance(0.7) ? rng.pick(keys) : rng.pick(HOSTILE_STRINGS).slice(0, 30);
      if (rng.chance(0.2)) delete (holder as Record<string, unknown>)[key];
      else (holder as Record<string, unknown>)[key] = hostileValue(rng);
    }
    return v;
  }

  /** An object or array somewhere inside `v` (null when `v` holds none). */
  private randomContainer(v: unknown): object | null {
    if (typeof v !== 'object' || v === null) return null;
    const children = Object.values(v).filter((c) => typeof c === 'object' && c !== null) as object[];
    return children.length > 0 && this.rng.chance(0.5)
      ? (this.randomContainer(this.rng.pick(children)) ?? v)
      : v;
  }

  /** Values that pass validation and reach the services: known ids, configured types, recent times. */
  readonly hint: Hint = (name, schema) => {
    const rng = this.rng;
    const p = this.pools;
    const fromPool = (pool: string[], prefix: string) =>
      pool.length > 0 && rng.chance(0.85) ? rng.pick(pool) : this.freshId(prefix);
    switch (name) {
      case 'user_id':
        return fromPool(p.users, 'user');
      case 'item_id':
        return fromPool(p.items, 'item');
      case 'event_id': {
        if (p.eventIds.length > 0 && rng.chance(0.25)) return rng.pick(p.eventIds); // a duplicate
        const id = this.freshId('event');
        remember(p.eventIds, id);
        return id;
      }
      case 'type':
        return schema.enum ? undefined : rng.pick(this.eventTypes);
      case 'value':
        return rng.int(1, 5);
      case 'timestamp':
      case 'created_at': {
        const at = Date.now() - rng.int(0, 7 * 86_400_000);
        return rng.chance(0.5) ? at : new Date(at).toISOString();
      }
      case 'category':
        return rng.pick(p.categories);
      case 'categories':
        return [rng.pick(p.categories)];
      case 'request_id':
        return fromPool(p.requestIds, 'request');
      case 'model_version':
        return fromPool(p.models, 'model');
      case 'session_id':
        return `s-${rng.int(1, 50)}`;
      case 'algorithm':
        return rng.pick(ALGORITHMS);
      case 'params':
        return {};
      case 'k':
        return rng.int(1, 20);
      case 'exclude':
        return p.items.slice(0, rng.int(0, 3));
      case 'attributes':
        return { price: rng.int(1, 500), brand: rng.pick(['acme', 'globex']) };
      case 'context':
        return { page: 'home', position: rng.int(0, 20) };
      case 'name':
        return schema.enum ? undefined : rng.pick(['control', 'treatment', 'c']);
      case 'weight':
        return rng.int(1, 100);
      case 'id':
        return this.freshId('id');
      default:
        return undefined;
    }
  };
}

/**
 * `encodeURIComponent`, except that a lone surrogate (which it refuses) goes out as the bytes of its
 * invalid UTF-8 encoding: the server must decode that too.
 */
function encode(value: string): string {
  try {
    return encodeURIComponent(value);
  } catch {
    return `${encodeURIComponent(value.replace(/[\ud800-\udfff]/g, ''))}%ED%A0%80`;
  }
}

/** The operation whose method and path template match the request (null: none does). */
function resolveOperation(ops: readonly Operation[], method: string, url: string): Operation | null {
  const path = url.split('?', 1)[0];
  return (
    ops.find(
      (o) => o.method === method && new RegExp(`^${o.path.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(path),
    ) ?? null
  );
}

/** Adds `id` to a pool, keeping it bounded (newest kept). */
function remember(pool: string[], id: string): void {
  if (pool.includes(id)) return;
  pool.push(id);
  if (pool.length > 200) pool.shift();
}

/* ------------------------------------------------------------------ checking answers */

const KNOWN_CODES = ERROR_CODES as Record<string, number>;
/** 2xx bodies checked against their declared schema (the check must not pass by checking nothing). */
let schemaChecked = 0;

/** What is wrong with an answer (null: nothing). */
function problemWith(
  req: FuzzRequest,
  status: number,
  headers: Record<string, unknown>,
  body: string,
): string | null {
  if (status >= 500) return `server error ${status}: ${body.slice(0, 300)}`;
  if (status < 200 || (status >= 300 && status < 400)) return `unexpected status ${status}`;
  if (typeof headers['x-request-id'] !== 'string') return 'no x-request-id header';
  if (req.method === 'HEAD') return null;
  if (status >= 400) return errorBodyProblem(status, body);
  if (!req.op) return `${status} for a request no route declares`;
  const declared = declaredResponse(req.op, status);
  if (!declared) return `undeclared status ${status}`;
  if (status === 204) return body === '' ? null : 'a 204 with a body';
  if (declared.schema === null) {
    const type = typeof headers['content-type'] === 'string' ? headers['content-type'] : '';
    return declared.contentType && !type.startsWith(declared.contentType)
      ? `content-type ${type}, declared ${declared.contentType}`
      : null;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return `a ${status} body that is not JSON: ${body.slice(0, 200)}`;
  }
  const problems = schemaProblems(declared.schema, parsed);
  schemaChecked++;
  return problems.length === 0 ? null : `a ${status} body off its schema: ${problems.join('; ')}`;
}

function errorBodyProblem(status: number, body: string): string | null {
  let parsed: { error?: { code?: unknown; message?: unknown } };
  try {
    parsed = JSON.parse(body) as typeof parsed;
  } catch {
    return `a ${status} body that is not JSON: ${body.slice(0, 200)}`;
  }
  const code = parsed.error?.code;
  if (typeof code !== 'string' || !/^CAIRN_[A-Z_]+$/.test(code))
    return `a ${status} without a CAIRN_ code: ${body.slice(0, 200)}`;
  if (!(code in KNOWN_CODES)) return `unknown error code ${code}`;
  if (KNOWN_CODES[code] !== status)
    return `${code} answered with ${status}, its status is ${KNOWN_CODES[code]}`;
  if (typeof parsed.error?.message !== 'string') return `${code} without a message`;
  return null;
}

/** Ids an answer names, for later requests (request ids for feedback, versions, jobs, experiments, keys). */
function harvest(pools: Pools, op: Operation, body: unknown): void {
  if (typeof body !== 'object' || body === null) return;
  const walk = (v: unknown, key: string) => {
    if (typeof v === 'string') {
      if (key === 'request_id') remember(pools.requestIds, v);
      else if (key === 'job_id') remember(pools.jobs, v);
      else if (key === 'version') remember(pools.models, v);
      else if (key === 'id' && op.path.startsWith('/v1/experiments')) remember(pools.experiments, v);
      else if (key === 'id' && op.path.startsWith('/v1/keys')) remember(pools.keys, v);
    } else if (Array.isArray(v)) v.forEach((x) => walk(x, key));
    else if (typeof v === 'object' && v !== null) for (const [k, x] of Object.entries(v)) walk(x, k);
  };
  walk(body, '');
}

function describeRequest(i: number, req: FuzzRequest): string {
  const type = req.headers['content-type'];
  const body =
    req.payload === undefined
      ? ''
      : ` body ${JSON.stringify(req.payload.slice(0, 200))}${req.payload.length > 200 ? `… (${req.payload.length} chars)` : ''}`;
  return `#${i} ${req.method} ${req.url.slice(0, 300)}${type === undefined ? '' : ` [${type}]`}${body}`;
}

/* ------------------------------------------------------------------ the test */

for (const { name: backend, requests: REQUESTS } of BACKENDS)
  describe(`HTTP fuzz on ${backend}, seed ${SEED} (replay: CAIRN_FUZZ_SEED=${SEED})`, () => {
    let cairn: Embedded;
    let dir: string;
    const schema = `cairn_fuzz_${process.pid}_${randomInt(2 ** 31).toString(36)}`;
    let ops: Operation[];
    const pools: Pools = {
      users: [],
      items: [],
      categories: [],
      models: [],
      experiments: [],
      jobs: [],
      keys: [],
      requestIds: [],
      eventIds: [],
    };

    const send = (method: string, url: string, payload?: unknown) =>
      cairn.app.inject({
        method: method as 'GET',
        url,
        ...(payload === undefined
          ? {}
          : { headers: { 'content-type': 'application/json' }, payload: JSON.stringify(payload) }),
      });

    beforeAll(async () => {
      console.log(
        `fuzz on ${backend}: seed ${SEED}, ${REQUESTS} requests (CAIRN_FUZZ_SEED=${SEED} replays this run)`,
      );
      dir = await mkdtemp(join(tmpdir(), 'cairn-fuzz-'));
      const config = loadConfig({
        env: {},
        overrides: {
          dataDir: dir,
          store: backend === 'sqlite' ? { url: '' } : { url: PG_URL, schema },
          // Every valid POST /v1/models/train fits a model (and its gate refits the champion's configuration)
          // in the background: small models keep the fuzz's CPU on the requests.
          training: {
            threads: 1,
            algorithm: 'als',
            params: { als: { factors: 16, iterations: 5 }, bpr: { factors: 16, iterations: 10 } },
          },
        },
      });
      cairn = await createEmbedded(config, { logger: createLogger('silent'), snapshotEveryMs: 0 });
      const seeded = await seedDemo(cairn, { users: 200, items: 120, events: 6_000, seed: 11 });
      expect(seeded.modelVersion).not.toBeNull();

      for (const it of SENTINEL_ITEMS)
        expect((await send('PUT', `/v1/items/${it.id}`, it.body)).statusCode).toBe(200);
      for (const u of SENTINEL_USERS)
        expect((await send('PUT', `/v1/users/${u.id}`, u.body)).statusCode).toBe(200);
      const posted = await send('POST', '/v1/events', { events: SENTINEL_EVENTS });
      expect(posted.json<{ accepted: number }>().accepted).toBe(SENTINEL_EVENTS.length);

      await cairn.app.ready();
      ops = operationsOf(cairn.app.swagger());
      const items = await cairn.store.items.list({ limit: 1000 });
      pools.items = items.map((i) => i.id).filter((id) => !id.startsWith('sentinel-'));
      pools.categories = [...new Set(items.flatMap((i) => i.categories))].filter(
        (c) => !c.startsWith('sentinel-'),
      );
      pools.users = Array.from({ length: 200 }, (_, u) => demoUserId(u));
      pools.models = (await cairn.store.models.list()).map((m) => m.version);
    }, 180_000);

    afterAll(async () => {
      await cairn?.close();
      await rm(dir, { recursive: true, force: true });
      if (backend === 'postgres') {
        const admin = new pg.Client({ connectionString: PG_URL });
        await admin.connect();
        try {
          await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        } finally {
          await admin.end();
        }
      }
    });

    it('checks answers against their schemas (the checker itself rejects a wrong one)', () => {
      const op = ops.find((o) => o.operationId === 'getPopularItems')!;
      const schema = declaredResponse(op, 200)!.schema!;
      const good = {
        request_id: 'r',
        item_id: null,
        model_version: null,
        source: 'fallback',
        fallback_reason: null,
        degraded: false,
        items: [],
      };
      expect(schemaProblems(schema, good)).toEqual([]);
      expect(schemaProblems(schema, { ...good, source: 'bogus' })).not.toEqual([]);
      expect(schemaProblems(schema, { ...good, degraded: 'no' })).not.toEqual([]);
      expect(
        schemaProblems(schema, { ...good, items: [{ item_id: 'a', score: 'high', reason: '' }] }),
      ).not.toEqual([]);
      const { request_id: _, ...withoutId } = good;
      expect(schemaProblems(schema, withoutId)).not.toEqual([]);
    });

    it(`answers ${REQUESTS} generated requests with a declared 2xx or a CAIRN_* 4xx, never a 5xx`, async () => {
      const eventTypes = Object.keys(cairn.config.events.types);
      const generator = new Generator(new Rng(SEED), pools, eventTypes);
      schemaChecked = 0;
      const failures: string[] = [];
      let failed = 0;
      const byOperation = new Map<string, Record<string, number>>();
      for (let i = 0; i < REQUESTS; i++) {
        const req = generator.request(ops);
        let res;
        const started = performance.now();
        try {
          res = await cairn.app.inject({
            method: req.method as 'GET',
            url: req.url,
            headers: req.headers,
            payload: req.payload,
          });
        } catch (err) {
          failed++;
          if (failures.length < MAX_REPORTED)
            failures.push(`${describeRequest(i, req)} → inject threw: ${(err as Error).message}`);
          continue;
        }
        req.op = resolveOperation(ops, req.method, req.url);
        const problem = problemWith(req, res.statusCode, res.headers, res.body);
        const name = req.op?.operationId ?? 'unrouted';
        const counts = byOperation.get(name) ?? {};
        const bucket = `${String(res.statusCode)[0]}xx`;
        counts[bucket] = (counts[bucket] ?? 0) + 1;
        counts.ms = Math.round((counts.ms ?? 0) + performance.now() - started);
        byOperation.set(name, counts);
        if (problem) {
          failed++;
          if (failures.length < MAX_REPORTED) failures.push(`${describeRequest(i, req)} → ${problem}`);
        } else if (req.op && res.statusCode < 300 && req.method !== 'HEAD' && res.body !== '') {
          try {
            harvest(pools, req.op, JSON.parse(res.body));
          } catch {
            // not JSON (metrics): nothing to harvest
          }
        }
      }
      console.log(
        `fuzz on ${backend}, seed ${SEED}: ${schemaChecked} 2xx bodies checked against their schema; answers per operation\n${[
          ...byOperation,
        ]
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([name, c]) => `  ${name.padEnd(24)} ${JSON.stringify(c)}`)
          .join('\n')}`,
      );
      // Every operation of the document was exercised, and a good share of answers were checked bodies.
      expect(ops.filter((o) => !byOperation.has(o.operationId)).map((o) => o.operationId)).toEqual([]);
      expect(schemaChecked).toBeGreaterThan(REQUESTS / 10);
      expect(
        failures,
        `${failed} of ${REQUESTS} answers wrong (${backend}, seed ${SEED}):\n${failures.join('\n')}`,
      ).toEqual([]);
    }, 300_000);

    it('still holds the items, users and events stored before the fuzz, unchanged', async () => {
      for (const item of SENTINEL_ITEMS) {
        const res = await send('GET', `/v1/items/${item.id}`);
        expect(res.statusCode, item.id).toBe(200);
        expect(res.json()).toMatchObject({ id: item.id, ...item.body, available: true });
      }
      for (const user of SENTINEL_USERS) {
        const res = await send('GET', `/v1/users/${user.id}`);
        expect(res.statusCode, user.id).toBe(200);
        expect(res.json()).toMatchObject({ id: user.id, ...user.body });
      }
      for (const user of SENTINEL_USERS) {
        const stored = await cairn.store.events.forUser(user.id, 1000);
        const expected = SENTINEL_EVENTS.filter((e) => e.user_id === user.id);
        expect(
          stored.map((e) => ({
            event_id: e.eventId,
            user_id: e.userId,
            item_id: e.itemId,
            type: e.type,
            timestamp: e.timestamp,
          })),
        ).toEqual(expect.arrayContaining(expected));
      }
      const again = await send('POST', '/v1/events', { events: SENTINEL_EVENTS });
      expect(again.json<{ duplicates: number }>().duplicates).toBe(SENTINEL_EVENTS.length);
      expect((await send('GET', '/health/ready')).statusCode).toBe(200);
      const rec = await send('GET', `/v1/users/${SENTINEL_USERS[0].id}/recommendations?k=5`);
      expect(rec.statusCode).toBe(200);
    });
  });
