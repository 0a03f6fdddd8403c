/**
 * Production roles on real servers: two `cairn serve --role api` replicas (A, B) and one `--role worker`,
 * spawned as processes on PostgreSQL (a schema of their own), Redis (a key prefix of their own) and NATS
 * JetStream (a stream prefix of their own), all removed afterwards (test/integration/helpers/processes.ts,
 * the same deployment helper the multi-process tests use). The demo shop (`cairn demo-data`) is posted
 * through the API and a champion is trained through the API; then it prints:
 *
 *  (a) propagation: an event ingested through A, until B no longer recommends its item (the worker
 *      projects the event log into Redis, which B reads per request) — min/p50/p90/p99/max over N trials,
 *      timed from just before A is sent the event;
 *  (b) recommendation latency at a steady open-loop rate spread over both replicas, from a separate
 *      load-generator process (bench/load-generator.ts; node:http with keep-alive). Latency
 *      counts from each request's intended send time, so a server that falls behind cannot hide its queue
 *      (no coordinated omission). `--rate 1000,400` measures each rate in turn. The CPU seconds the Cairn
 *      processes spent meanwhile are printed too: requests per CPU-second do not depend on what else the
 *      machine runs, wall-clock latencies do.
 *
 * Ingestion throughput through JetStream → PostgreSQL is bench/ingest-nats.bench.ts.
 *
 *   npm run bench:replicas -- [--users 2000] [--items 1000] [--events 100000] [--trials 200]
 *                             [--rate 1000[,RATE...]] [--seconds 30] [--warmup 5]
 *
 * Servers: CAIRN_TEST_POSTGRES_URL, CAIRN_TEST_REDIS_URL, CAIRN_TEST_NATS_URL (default: this machine's).
 * Wall-clock figures depend on what else runs on the machine: the load average is printed with them.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  assertServicesUp,
  http,
  pollUntil,
  TestDeployment,
  type CairnProcess,
} from '../test/integration/helpers/processes.ts';
import {
  cpuSeconds,
  loadAverage as load,
  loadShop as postShop,
  printLoad,
  runLoad,
  summary,
  trainChampion,
} from './http-load.ts';

const { values } = parseArgs({
  options: {
    users: { type: 'string', default: '2000' },
    items: { type: 'string', default: '1000' },
    events: { type: 'string', default: '100000' },
    trials: { type: 'string', default: '200' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '30' },
    warmup: { type: 'string', default: '5' },
  },
});
const users = Number(values.users);

// ------------------------------------------------------------------------------------------------
// The benchmark
// ------------------------------------------------------------------------------------------------

interface RecommendationWire {
  model_version: string | null;
  source: string;
  items: { item_id: string }[];
}

/** Loads the demo shop through the API of both replicas and waits until every event is in PostgreSQL. */
async function loadShop(d: TestDeployment, replicas: CairnProcess[]): Promise<number> {
  const t0 = performance.now();
  const size = { users, items: Number(values.items), events: Number(values.events) };
  const events = await postShop(
    replicas.map((r) => r.url),
    join(d.dir, 'shop'),
    size,
  );
  const acked = performance.now();
  await pollUntil(
    'the demo events in PostgreSQL',
    async () => {
      const [{ n }] = await d.sql<{ n: number }>('SELECT count(*)::int AS n FROM $schema.events');
      return n >= events;
    },
    { timeoutMs: 300_000, intervalMs: 200 },
  );
  console.log(
    `loaded ${size.items} items, ${size.users} users, ${events} events through the API: ` +
      `acknowledged in ${((acked - t0) / 1000).toFixed(1)} s, all in PostgreSQL after ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  return events;
}

async function train(replicas: CairnProcess[]): Promise<void> {
  const t0 = performance.now();
  const champion = await trainChampion(replicas.map((r) => r.url));
  console.log(
    `trained ${champion.algorithm} ${champion.version} (holdout ndcg@10 ${champion.metrics['ndcg@10']?.toFixed(3)}) ` +
      `and served by both replicas ${((performance.now() - t0) / 1000).toFixed(1)} s after the request`,
  );
}

/** (a): event through A → item no longer recommended by B. */
async function propagation(A: CairnProcess, B: CairnProcess, run: string): Promise<void> {
  const trials = Number(values.trials);
  const before = load();
  const visible: number[] = [];
  const acks: number[] = [];
  let timeouts = 0;
  const sources = new Map<string, number>();
  for (let t = 0; t < trials; t++) {
    const user = `u${1 + ((t * 37) % users)}`;
    const before = await http<RecommendationWire>('GET', `${B.url}/v1/users/${user}/recommendations?k=10`);
    const item = before.body.items[0]?.item_id;
    if (before.status !== 200 || item === undefined)
      throw new Error(`B: ${before.status} ${JSON.stringify(before.body)}`);
    sources.set(before.body.source, (sources.get(before.body.source) ?? 0) + 1);
    const t0 = performance.now();
    const ack = await http('POST', `${A.url}/v1/events`, {
      event_id: `prop-${run}-${t}`,
      user_id: user,
      item_id: item,
      type: 'view',
      timestamp: Date.now(),
    });
    acks.push(performance.now() - t0);
    if (ack.status !== 202) throw new Error(`A: ${ack.status} ${JSON.stringify(ack.body)}`);
    // Back-to-back reads of B: the resolution is one request's round trip.
    for (;;) {
      const res = await http<RecommendationWire>('GET', `${B.url}/v1/users/${user}/recommendations?k=10`);
      if (res.status === 200 && !res.body.items.some((i) => i.item_id === item)) {
        visible.push(performance.now() - t0);
        break;
      }
      if (performance.now() - t0 > 5000) {
        timeouts++;
        break;
      }
    }
  }
  console.log(
    `\n(a) propagation, event through A → item excluded by B, ${trials} trials ` +
      `(recommendations before: ${JSON.stringify(Object.fromEntries(sources))}), load average before ${before}, after ${load()}`,
  );
  console.log(`    visible on B: ${summary(visible)}${timeouts > 0 ? `  (${timeouts} trials > 5 s)` : ''}`);
  console.log(`    A's 202:      ${summary(acks)}`);
}

/** (b): open-loop recommendation load over both replicas. */
async function steadyLoad(replicas: CairnProcess[], worker: CairnProcess, rate: number): Promise<void> {
  const before = load();
  const procs = [...replicas, worker];
  const cpu0 = procs.map((p) => cpuSeconds(p.pid));
  const r = await runLoad({
    targets: replicas.map((p) => p.url),
    scenario: 'recommend',
    rate,
    seconds: Number(values.seconds),
    warmupSeconds: Number(values.warmup),
    users,
    items: Number(values.items),
    timeoutMs: 10_000,
    runId: '',
  });
  const cpu = procs.map((p, i) => cpuSeconds(p.pid) - cpu0[i]);
  const apiCpu = cpu.slice(0, replicas.length).reduce((a, b) => a + b, 0);
  console.log(
    `\n(b) GET /v1/users/{id}/recommendations?k=10, open loop ${r.rate}/s for ${r.seconds} s over ${replicas.length} ` +
      `replicas (after ${values.warmup} s of warm-up), load average before ${before}, after ${load()}`,
  );
  printLoad(r);
  // Warm-up and measured requests both ran in the CPU window.
  const requests = Math.round(r.rate * (r.seconds + Number(values.warmup)));
  console.log(
    `    CPU seconds meanwhile: ${procs.map((p, i) => `${p.name} ${cpu[i].toFixed(1)}`).join(', ')} → ` +
      `${Math.round(requests / apiCpu)} requests per CPU-second of the api replicas`,
  );
}

async function main(): Promise<void> {
  console.log(`node ${process.version}, ${availableParallelism()} cores, load average ${load()}`);
  await assertServicesUp(['postgres', 'redis', 'nats']);
  const d = await TestDeployment.create({ name: 'benchrepl', redis: true, nats: true });
  // Request logs at info would cost the replicas more than the requests measured.
  const env = { CAIRN_LOGGING_LEVEL: 'warn' };
  const stop = () => {
    void d.cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  try {
    const started = await Promise.allSettled([
      d.serve('api-A', 'api', env),
      d.serve('api-B', 'api', env),
      d.serve('worker', 'worker', env),
    ]);
    const [A, B, W] = started.map((s) => {
      if (s.status === 'rejected') throw s.reason;
      return s.value;
    });
    await loadShop(d, [A, B]);
    await train([A, B]);
    await propagation(A, B, randomBytes(4).toString('hex'));
    for (const rate of values.rate.split(',').map(Number)) await steadyLoad([A, B], W, rate);
  } catch (err) {
    console.error(d.logs(30));
    throw err;
  } finally {
    process.removeListener('SIGINT', stop);
    await d.cleanup();
  }
}

await main();
