/**
 * Online path latency: `GET /v1/users/{id}/recommendations` through the whole Fastify app in-process
 * (`app.inject`, no network), on the embedded SQLite store seeded with demo data and a trained champion.
 * Prints p50/p95/p99 for personalized users, cold-start users and similar items.
 *
 *   npm run bench:serve -- [--users 2000] [--items 1000] [--events 100000] [--requests 5000] [--algorithm als]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/load.ts';
import { seedDemo } from '../src/main/demo.ts';
import { createEmbedded } from '../src/main/embedded.ts';
import { createLogger } from '../src/monitoring/logger.ts';

const { values } = parseArgs({
  options: {
    users: { type: 'string', default: '2000' },
    items: { type: 'string', default: '1000' },
    events: { type: 'string', default: '100000' },
    requests: { type: 'string', default: '5000' },
    algorithm: { type: 'string', default: 'als' },
  },
});
const users = Number(values.users);
// Item ids the demo generator made (i1..iN): similar-item requests stay on known items at any --items.
const knownItems = Math.min(500, Number(values.items));
const requests = Number(values.requests);

const dir = await mkdtemp(join(tmpdir(), 'cairn-bench-serve-'));
const config = loadConfig({
  env: {},
  overrides: { dataDir: dir, training: { algorithm: values.algorithm as 'als' } },
});
// The all-in-one process as `cairn serve` builds it: projector, serving follower, job runner and the
// periodic online-state snapshot all run during the measurements, as they would in production.
const cairn = await createEmbedded(config, { logger: createLogger('silent') });
const t0 = performance.now();
await seedDemo(cairn, { users, items: Number(values.items), events: Number(values.events), seed: 42 });
console.log(
  `seeded ${values.events} events and trained ${values.algorithm} in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function measure(label: string, url: (i: number) => string): Promise<void> {
  for (let i = 0; i < 200; i++) await cairn.app.inject({ method: 'GET', url: url(i) }); // warm-up
  const times: number[] = [];
  const sources = new Map<string, number>();
  for (let i = 0; i < requests; i++) {
    const s = performance.now();
    const res = await cairn.app.inject({ method: 'GET', url: url(i) });
    times.push(performance.now() - s);
    const src = res.json<{ source: string }>().source;
    sources.set(src, (sources.get(src) ?? 0) + 1);
  }
  times.sort((a, b) => a - b);
  console.log(
    `${label.padEnd(34)} n=${requests} p50=${pct(times, 50).toFixed(3)} ms p95=${pct(times, 95).toFixed(3)} ms p99=${pct(times, 99).toFixed(3)} ms  sources=${JSON.stringify(Object.fromEntries(sources))}`,
  );
}

await measure(
  'recommendations (known users, k=10)',
  (i) => `/v1/users/u${(i % users) + 1}/recommendations?k=10`,
);
await measure('recommendations (new users, k=10)', (i) => `/v1/users/new-${i}/recommendations?k=10`);
await measure('similar items (k=10)', (i) => `/v1/items/i${(i % knownItems) + 1}/similar?k=10`);
await measure('popular (k=10)', () => `/v1/popular?k=10`);

// Ingestion through HTTP: validation, the idempotent event-log append, and the wait until this process's
// projector applied the batch to the online state (read-your-writes). 10k-event batches.
{
  const batches = 20;
  const times: number[] = [];
  for (let b = 0; b < batches; b++) {
    const events = Array.from({ length: 10_000 }, (_, i) => ({
      event_id: `bench-${b}-${i}`,
      user_id: `u${((b * 10_000 + i) % users) + 1}`,
      item_id: `i${(i % 500) + 1}`,
      type: 'view',
      timestamp: Date.now() - 1000,
    }));
    const payload = JSON.stringify({ events });
    const s = performance.now();
    const res = await cairn.app.inject({
      method: 'POST',
      url: '/v1/events',
      payload,
      headers: { 'content-type': 'application/json' },
    });
    times.push(performance.now() - s);
    if (res.json<{ accepted: number }>().accepted !== 10_000) throw new Error('batch not fully accepted');
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  console.log(
    `${'ingest POST /v1/events (10k batch)'.padEnd(34)} n=${batches} median=${median.toFixed(1)} ms/batch → ${Math.round(10_000 / (median / 1000)).toLocaleString('en')} events/s`,
  );
}

await cairn.close();
await rm(dir, { recursive: true, force: true });
