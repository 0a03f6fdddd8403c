/**
 * Append throughput of the system of record: 10,000-event batches (the API's default maximum batch) into
 * SQLite (temp file) and PostgreSQL (temp schema), fresh events and then a replay of the same events
 * (all duplicates). With `--posts N`, also N single-event `POST /v1/events` through the embedded service
 * (`app.inject`) on each store of `--stores`: the path where each acknowledged event pays a commit.
 * `--concurrency C` (default 1) spreads those posts over C clients posting at once, each waiting for its
 * 202 before the next: one client cannot share a commit, concurrent ones can (group commit). Prints
 * events/s; never asserts.
 *
 *   npm run bench:ingest
 *   npm run bench:ingest -- [--synchronous full|normal] [--batches 30] [--posts 2000] [--concurrency 16]
 *     [--stores sqlite,postgres] [--window 100] [--fresh-only]
 *
 * `--clients C` (default 1) appends the batches from C callers at once; `--writers W` (default 1,
 * PostgreSQL) spreads them over W store instances on the same schema, each with its own pool and group
 * commit, as W api processes have (in this one process, so the client side shares one core), e.g.
 * `--stores postgres --clients 4 --writers 4`.
 *
 * `--window N` prints the rate of every N fresh batches with the events stored by then, e.g.
 * `--stores sqlite --batches 800 --window 100 --fresh-only`: SQLite from 0 to 8M stored events.
 * After the SQLite run it merges what the event lookups left unmerged and prints how long that took and how
 * long the merge steps held the event loop.
 *   CAIRN_BENCH_BATCHES=50 CAIRN_BENCH_POSTGRES_URL=postgres://… npm run bench:ingest
 *
 * `--synchronous` is SQLite's `store.synchronous` (default `full`: every commit synced to disk).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import type { CairnEvent } from '../src/domain/types.ts';
import type { Store } from '../src/storage/ports.ts';
import { PostgresStore } from '../src/storage/postgres/store.ts';
import { SqliteStore } from '../src/storage/sqlite/store.ts';

const { values: flags } = parseArgs({
  options: {
    synchronous: { type: 'string', default: 'full' },
    batches: { type: 'string', default: process.env.CAIRN_BENCH_BATCHES ?? '30' },
    posts: { type: 'string', default: '0' },
    concurrency: { type: 'string', default: '1' },
    /** Callers appending the 10,000-event batches at once. */
    clients: { type: 'string', default: '1' },
    /** PostgreSQL store instances (pools, group commits) the callers are spread over. */
    writers: { type: 'string', default: '1' },
    stores: { type: 'string', default: 'sqlite,postgres' },
    /** Also print the rate of every N fresh batches (how throughput holds as the store grows); 0: off. */
    window: { type: 'string', default: '0' },
    /** Skip the replay of the same events (duplicates) after the fresh run. */
    'fresh-only': { type: 'boolean', default: false },
  },
});
if (flags.synchronous !== 'full' && flags.synchronous !== 'normal') {
  throw new Error(`--synchronous must be full or normal, got "${flags.synchronous}"`);
}
const SYNCHRONOUS: 'full' | 'normal' = flags.synchronous;
const STORES = new Set(flags.stores.split(',').map((s) => s.trim()));
const BATCH = 10_000;
const BATCHES = Number(flags.batches);
const POSTS = Number(flags.posts);
const CONCURRENCY = Number(flags.concurrency);
const WINDOW = Number(flags.window);
const CLIENTS = Number(flags.clients);
const WRITERS = Number(flags.writers);
for (const [name, n] of [
  ['concurrency', CONCURRENCY],
  ['clients', CLIENTS],
  ['writers', WRITERS],
] as const) {
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`--${name} must be a positive integer, got "${flags[name]}"`);
}
const PG_URL = process.env.CAIRN_BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const TYPES = ['view', 'view', 'view', 'click', 'add_to_cart', 'purchase', 'rating'];
/** Single POSTs carry no value, so no `rating`. */
const POST_TYPES = TYPES.filter((t) => t !== 'rating');

function makeBatch(b: number): CairnEvent[] {
  const t0 = 1_700_000_000_000 + b * BATCH * 1000;
  return Array.from({ length: BATCH }, (_, i) => {
    const type = TYPES[i % TYPES.length];
    return {
      eventId: randomUUID(), // random ids: the unique index is written at random places, as in production
      userId: `user-${(i * 7919 + b) % 50_000}`,
      itemId: `item-${(i * 104_729) % 20_000}`,
      type,
      value: type === 'rating' ? (i % 5) + 1 : null,
      timestamp: t0 + i * 1000,
      context: i % 4 === 0 ? { page: 'home', position: i % 20, device: 'mobile' } : null,
    };
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function run(
  name: string,
  stores: Store[],
  batches: Iterable<CairnEvent[]> & { length: number },
): Promise<void> {
  const store = stores[0];
  // Warm-up (prepared statements, pools, page cache): one batch per store instance.
  for (let w = 0; w < stores.length; w++) await stores[w].events.append(makeBatch(-1 - w));
  const runs = [
    ['fresh', 'inserted'],
    ['replay', 'duplicate'],
  ] as const;
  for (const [label, expect] of flags['fresh-only'] ? runs.slice(0, 1) : runs) {
    const times: number[] = [];
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    let windowStart = start;
    let done = 0;
    const source = batches[Symbol.iterator]();
    // CLIENTS callers take the next batch as each finishes its last; caller c appends through store c mod W.
    const client = async (c: number) => {
      for (let next = source.next(); !next.done; next = source.next()) {
        const t = performance.now();
        const out = await stores[c % stores.length].events.append(next.value);
        times.push(performance.now() - t);
        if (out.some((o) => o !== expect)) throw new Error(`${name}: unexpected outcome in ${label} batch`);
        done++;
        if (WINDOW > 0 && label === 'fresh' && done % WINDOW === 0) {
          const now = performance.now();
          console.log(
            `${name.padEnd(10)} window ${Math.round((WINDOW * BATCH) / ((now - windowStart) / 1000))
              .toLocaleString('en-US')
              .padStart(
                9,
              )} events/s with ${((done + stores.length) * BATCH).toLocaleString('en-US')} events stored`,
          );
          windowStart = now;
        }
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
    const seconds = (performance.now() - start) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    const total = batches.length * BATCH;
    console.log(
      `${name.padEnd(10)} ${label.padEnd(6)} ${Math.round(total / seconds)
        .toLocaleString('en-US')
        .padStart(9)} events/s` +
        `  (${batches.length} × ${BATCH.toLocaleString('en-US')}-event batches from ${CLIENTS} client(s)` +
        ` over ${stores.length} store instance(s), median ${median(times).toFixed(1)} ms/batch;` +
        ` ${Math.round(total / cpuSeconds).toLocaleString('en-US')} events per CPU-second of this process)`,
    );
  }
  console.log(`${name.padEnd(10)} stored ${(await store.events.count()).toLocaleString('en-US')} events`);
}

/**
 * `count` single-event POSTs through the embedded service on a fresh store (SQLite in a temp directory,
 * PostgreSQL in a temp schema): validation, the append's commit, the projector's catch-up. `CONCURRENCY`
 * clients post at once, each waiting for its 202 before sending the next.
 */
async function posts(count: number, kind: 'sqlite' | 'postgres'): Promise<void> {
  // Loaded only here: the store-only runs need none of the service.
  const { loadConfig } = await import('../src/config/load.ts');
  const { createEmbedded } = await import('../src/main/embedded.ts');
  const { createLogger } = await import('../src/monitoring/logger.ts');
  const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-posts-'));
  const schema = `cairn_bench_${randomBytes(4).toString('hex')}`;
  const store = kind === 'sqlite' ? { synchronous: SYNCHRONOUS } : { url: PG_URL, schema };
  const config = loadConfig({ env: {}, overrides: { dataDir: dir, store } });
  const cairn = await createEmbedded(config, { logger: createLogger('silent'), snapshotEveryMs: 0 });
  const post = async (i: number) => {
    const res = await cairn.app.inject({
      method: 'POST',
      url: '/v1/events',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({
        event_id: randomUUID(),
        user_id: `user-${(i * 7919) % 50_000}`,
        item_id: `item-${(i * 104_729) % 20_000}`,
        type: POST_TYPES[Math.abs(i) % POST_TYPES.length],
        timestamp: Date.now(),
      }),
    });
    if (res.statusCode !== 202) throw new Error(`POST /v1/events answered ${res.statusCode}: ${res.body}`);
  };
  try {
    for (let i = 0; i < 200; i++) await post(-1 - i); // warm-up
    const times: number[] = [];
    let next = 0;
    const client = async () => {
      while (next < count) {
        const i = next++;
        const t = performance.now();
        await post(i);
        times.push(performance.now() - t);
      }
    };
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, count) }, client));
    const seconds = (performance.now() - start) / 1000;
    const cpu = process.cpuUsage(cpu0);
    times.sort((a, b) => a - b);
    const p = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))].toFixed(2);
    console.log(
      `${`api/${kind}`.padEnd(15)} single ${Math.round(count / seconds)
        .toLocaleString('en-US')
        .padStart(9)} events/s  (${count.toLocaleString('en-US')} single-event POSTs from ${CONCURRENCY}` +
        ` concurrent client(s), p50 ${p(0.5)} ms, p99 ${p(0.99)} ms;` +
        ` ${Math.round(count / ((cpu.user + cpu.system) / 1e6)).toLocaleString('en-US')} events per CPU-second of this process)`,
    );
  } finally {
    await cairn.close();
    rmSync(dir, { recursive: true, force: true });
    if (kind === 'postgres') await dropSchema(schema);
  }
}

async function dropSchema(schema: string): Promise<void> {
  const admin = new pg.Client({ connectionString: PG_URL });
  try {
    await admin.connect();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } catch {
    // nothing to drop when the server was unreachable
  } finally {
    await admin.end().catch(() => undefined);
  }
}

/** The batches, made on first use and kept for the replay (made anew per use with --fresh-only: no replay). */
const batches: Iterable<CairnEvent[]> & { length: number } = flags['fresh-only']
  ? {
      length: BATCHES,
      *[Symbol.iterator]() {
        for (let b = 0; b < BATCHES; b++) yield makeBatch(b);
      },
    }
  : Array.from({ length: BATCHES }, (_, b) => makeBatch(b));
// Wall-clock figures depend on what else the machine runs; the load average is printed to judge them.
console.log(
  `node ${process.version}, ${BATCHES} batches of ${BATCH} events, SQLite synchronous=${SYNCHRONOUS}, ` +
    `${availableParallelism()} cores, load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
);

if (POSTS > 0) {
  for (const kind of ['sqlite', 'postgres'] as const) if (STORES.has(kind)) await posts(POSTS, kind);
}

if (STORES.has('sqlite')) {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-ingest-'));
  const sqlite = new SqliteStore({ path: join(dir, 'bench.db'), synchronous: SYNCHRONOUS });
  try {
    await sqlite.migrate();
    await run('sqlite', [sqlite], batches);
    // Merges of the event lookups run beside the appends (src/storage/sqlite/event-index.ts): what was
    // left unmerged at the end, how long merging it took, and how long write steps held the write lock
    // (on the merge thread: appends wait for a step, the event loop does not).
    const tail = sqlite.eventIndex.tailSize;
    const t = performance.now();
    await sqlite.eventIndex.mergeNow();
    const { merges, steps, slowSteps, maxStepMs } = sqlite.eventIndex.stats;
    console.log(
      `sqlite     event lookups: ${tail.toLocaleString('en-US')} events unmerged at the end, merged in ` +
        `${((performance.now() - t) / 1000).toFixed(1)} s; ${merges} merges, ` +
        `${steps.toLocaleString('en-US')} write steps (${slowSteps} over 20 ms), longest ${maxStepMs.toFixed(1)} ms`,
    );
  } finally {
    await sqlite.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (STORES.has('postgres')) {
  const schema = `cairn_bench_${randomBytes(4).toString('hex')}`;
  const writers = Array.from({ length: WRITERS }, () => new PostgresStore({ url: PG_URL, schema }));
  try {
    for (const w of writers) await w.migrate();
    await run('postgres', writers, batches);
  } catch (e) {
    console.log(`postgres   failed: ${(e as Error).message}`);
    process.exitCode = 1;
  } finally {
    for (const w of writers) await w.close();
    await dropSchema(schema);
  }
}
