/**
 * Append throughput of the system of record: 10,000-event batches (the API's default maximum batch) into
 * SQLite (temp file) and PostgreSQL (temp schema), fresh events and then a replay of the same events
 * (all duplicates). Prints events/s; never asserts.
 *
 *   npm run bench:ingest
 *   CAIRN_BENCH_BATCHES=50 CAIRN_BENCH_POSTGRES_URL=postgres://… npm run bench:ingest
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { CairnEvent } from '../src/domain/types.ts';
import type { Store } from '../src/storage/ports.ts';
import { PostgresStore } from '../src/storage/postgres/store.ts';
import { SqliteStore } from '../src/storage/sqlite/store.ts';

const BATCH = 10_000;
const BATCHES = Number(process.env.CAIRN_BENCH_BATCHES ?? 30);
const PG_URL = process.env.CAIRN_BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const TYPES = ['view', 'view', 'view', 'click', 'add_to_cart', 'purchase', 'rating'];

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

async function run(name: string, store: Store, batches: CairnEvent[][]): Promise<void> {
  await store.events.append(makeBatch(-1)); // warm-up (prepared statements, pool, page cache)
  for (const [label, expect] of [
    ['fresh', 'inserted'],
    ['replay', 'duplicate'],
  ] as const) {
    const times: number[] = [];
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    for (const batch of batches) {
      const t = performance.now();
      const out = await store.events.append(batch);
      times.push(performance.now() - t);
      if (out.some((o) => o !== expect)) throw new Error(`${name}: unexpected outcome in ${label} batch`);
    }
    const seconds = (performance.now() - start) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    const total = batches.length * BATCH;
    console.log(
      `${name.padEnd(10)} ${label.padEnd(6)} ${Math.round(total / seconds)
        .toLocaleString('en-US')
        .padStart(9)} events/s` +
        `  (${batches.length} × ${BATCH.toLocaleString('en-US')}-event batches, median ${median(times).toFixed(1)} ms/batch;` +
        ` ${Math.round(total / cpuSeconds).toLocaleString('en-US')} events per CPU-second of this process)`,
    );
  }
  console.log(`${name.padEnd(10)} stored ${(await store.events.count()).toLocaleString('en-US')} events`);
}

const batches = Array.from({ length: BATCHES }, (_, b) => makeBatch(b));
// Wall-clock figures depend on what else the machine runs; the load average is printed to judge them.
console.log(
  `node ${process.version}, ${BATCHES} batches of ${BATCH} events, ${availableParallelism()} cores, load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);

const dir = mkdtempSync(join(tmpdir(), 'cairn-bench-ingest-'));
const sqlite = new SqliteStore({ path: join(dir, 'bench.db') });
try {
  await sqlite.migrate();
  await run('sqlite', sqlite, batches);
} finally {
  await sqlite.close();
  rmSync(dir, { recursive: true, force: true });
}

const schema = `cairn_bench_${randomBytes(4).toString('hex')}`;
const postgres = new PostgresStore({ url: PG_URL, schema });
try {
  await postgres.migrate();
  await run('postgres', postgres, batches);
} catch (e) {
  console.log(`postgres   failed: ${(e as Error).message}`);
  process.exitCode = 1;
} finally {
  await postgres.close();
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
