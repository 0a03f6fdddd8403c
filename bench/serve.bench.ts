/**
 * Online path latency: `GET /v1/users/{id}/recommendations` through the whole Fastify app in-process
 * (`app.inject`, no network), on the embedded SQLite store seeded with demo data and a trained champion.
 * Prints p50/p95/p99 for personalized users, cold-start users and similar items.
 *
 *   npm run bench:serve -- [--users 2000] [--items 1000] [--events 100000] [--requests 5000] [--algorithm als]
 *
 * `--ranker` measures the second stage instead: a LambdaMART ranker of full size (300 trees, 31 leaves,
 * trained here on RankingFeatures rows) is registered with the champion's artifact and promoted, and
 * personalized answers (200 candidates from the model, popular and similar retrievers; one item-state
 * read; full feature vectors) are timed in-process (`recommender.recommend`, no HTTP) and through
 * `app.inject`, beside the same model's CF ranking.
 *
 * `--computed` measures what one computed personalized answer costs in-process as histories grow:
 * `--history N` more view events for each of `--active U` users after training (the model knows none
 * of them), then explained answers for those users (`recommender.recommend` with explain: never read
 * from the answer cache, always computed). The first pass reads each user's history; the measured passes
 * find what it gave in the process's user states (serving.userStateEvents, `--user-states N`; 0 turns
 * them off), as an expired answer's background recomputation does while the user did nothing.
 *
 *   npm run bench:serve -- --computed [--history 2000] [--active 50] [--user-states 200000]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { trainLambdaMart } from '../src/algorithms/gbdt.ts';
import { Rng } from '../src/algorithms/random.ts';
import { loadConfig } from '../src/config/load.ts';
import { systemContext } from '../src/domain/context.ts';
import { featureConfigOf } from '../src/features/item-state.ts';
import { storedRanker } from '../src/features/ranker-artifact.ts';
import { RankingFeatures } from '../src/features/ranking.ts';
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
    ranker: { type: 'boolean', default: false },
    computed: { type: 'boolean', default: false },
    history: { type: 'string', default: '0' },
    active: { type: 'string', default: '50' },
    'user-states': { type: 'string', default: '200000' },
  },
});
const users = Number(values.users);
// Item ids the demo generator made (i1..iN): similar-item requests stay on known items at any --items.
const knownItems = Math.min(500, Number(values.items));
const requests = Number(values.requests);

const dir = await mkdtemp(join(tmpdir(), 'cairn-bench-serve-'));
const config = loadConfig({
  env: {},
  overrides: {
    dataDir: dir,
    training: { algorithm: values.algorithm as 'als' },
    // The ranked path is what is measured: no answer comes from the cache.
    ...(values.ranker ? { serving: { cacheTtlSeconds: 0 } } : {}),
    ...(values.computed ? { serving: { userStateEvents: Number(values['user-states']) } } : {}),
  },
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

if (values.computed) {
  await measureComputed();
  await cairn.close();
  await rm(dir, { recursive: true, force: true });
  process.exit(0);
}

if (values.ranker) {
  await measureRanker();
  await cairn.close();
  await rm(dir, { recursive: true, force: true });
  process.exit(0);
}

/** In-process: the recommender alone (no HTTP), `requests` personalized answers. */
async function direct(label: string): Promise<void> {
  const { times, sources } = await timeAnswers(200, (i) =>
    cairn.recommender.recommend(systemContext(), { userId: `u${(i % users) + 1}`, k: 10 }),
  );
  console.log(
    `${label.padEnd(44)} n=${requests} p50=${pct(times, 50).toFixed(3)} ms p95=${pct(times, 95).toFixed(3)} ms p99=${pct(times, 99).toFixed(3)} ms  sources=${JSON.stringify(Object.fromEntries(sources))}`,
  );
}

/** `warm` answers, then `requests` timed ones (sorted times, counts by source). */
async function timeAnswers(
  warm: number,
  run: (i: number) => Promise<{ source: string }>,
): Promise<{ times: number[]; sources: Map<string, number> }> {
  for (let i = 0; i < warm; i++) await run(i);
  const times: number[] = [];
  const sources = new Map<string, number>();
  for (let i = 0; i < requests; i++) {
    const s = performance.now();
    const res = await run(i);
    times.push(performance.now() - s);
    sources.set(res.source, (sources.get(res.source) ?? 0) + 1);
  }
  times.sort((a, b) => a - b);
  return { times, sources };
}

async function measureComputed(): Promise<void> {
  const history = Number(values.history);
  const active = Math.min(users, Number(values.active));
  const t0 = performance.now();
  for (let u = 1; u <= active && history > 0; u++) {
    for (let from = 0; from < history; from += 1000) {
      const events = Array.from({ length: Math.min(1000, history - from) }, (_, j) => ({
        event_id: `computed-${u}-${from + j}`,
        user_id: `u${u}`,
        item_id: `i${1 + ((u * 31 + (from + j) * 17) % Number(values.items))}`,
        type: 'view',
        timestamp: Date.now() - (history - from - j) * 1000,
      }));
      // Answered once this process's projector applied the batch (read-your-writes).
      const res = await cairn.app.inject({ method: 'POST', url: '/v1/events', payload: { events } });
      if (res.json<{ accepted: number }>().accepted !== events.length) throw new Error('batch not accepted');
    }
  }
  if (history > 0)
    console.log(
      `ingested ${history} view events for each of ${active} users in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
  // The warm-up reads every active user's history (and keeps what it gave, unless --user-states 0).
  const { times, sources } = await timeAnswers(Math.max(active, 200), (i) =>
    cairn.recommender.recommend(systemContext(), { userId: `u${(i % active) + 1}`, k: 10, explain: true }),
  );
  const personalized = sources.get('personalized') ?? 0;
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  console.log(
    `explained answers of ${active} users (+${history} events each), user states ${config.serving.userStateEvents}: ` +
      `n=${requests} p50=${pct(times, 50).toFixed(3)} ms p95=${pct(times, 95).toFixed(3)} ms ` +
      `p99=${pct(times, 99).toFixed(3)} ms mean=${mean.toFixed(3)} ms (${personalized} personalized)`,
  );
}

async function measureRanker(): Promise<void> {
  const retrievers = [values.algorithm, 'pop', 'similar'];
  const fc = featureConfigOf({ types: config.events.types, features: config.features });
  const names = new RankingFeatures({ config: fc, retrievers }).names;
  const nf = names.length;
  // Rows over every column (relevance from several of them), so the trees are of full size and split
  // on many features, as a trained ranker's do.
  const rows = 20_000;
  const features = new Float32Array(rows * nf);
  const labels = new Float32Array(rows);
  const rng = new Rng(1);
  for (let r = 0; r < rows; r++) {
    let z = 0;
    for (let f = 0; f < nf; f++) {
      const v = rng.float();
      features[r * nf + f] = v;
      if (f % 3 === 0) z += v * ((f % 7) - 3);
    }
    labels[r] = z > 1 ? 2 : z > 0 ? 1 : 0;
  }
  const t0 = performance.now();
  const model = trainLambdaMart(
    {
      nFeatures: nf,
      features,
      labels,
      groups: Int32Array.from({ length: rows / 200 + 1 }, (_, q) => q * 200),
    },
    null,
    { trees: 300, leaves: 31, earlyStoppingRounds: 0 },
    { featureNames: names },
  );
  console.log(
    `trained a ${model.nTrees}-tree ranker on ${nf} features in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  const champion = (await cairn.registry.champion())!;
  const stored = await cairn.registry.load(champion);
  await direct(`CF ranking in-process (${values.algorithm}, k=10)`);
  const mv = await cairn.registry.register(
    {
      ...stored,
      extra: {
        ...stored.extra,
        ranker: storedRanker(model, { names }, retrievers, fc, config.ranking.candidates, {}),
      },
    },
    {
      algorithm: champion.algorithm,
      params: champion.params,
      trainingData: champion.trainingData,
      metrics: champion.metrics,
      trainSeconds: 0,
      configHash: champion.configHash,
    },
  );
  await cairn.registry.promote(mv.version);
  await cairn.champion.useVersion(mv.version);
  if (cairn.champion.get()?.version.version !== mv.version) throw new Error('ranked version not served');
  await direct(`ranked in-process (${config.ranking.candidates} candidates, k=10)`);
  // Training held the event loop for seconds: the overload guard sheds requests until the delay it
  // measures settles. Wait for it, so what follows measures answers, not refusals.
  for (let tries = 0; tries < 200; tries++) {
    const res = await cairn.app.inject({ method: 'GET', url: '/v1/users/u1/recommendations?k=10' });
    if (res.statusCode === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await measure('ranked via app.inject (k=10)', (i) => `/v1/users/u${(i % users) + 1}/recommendations?k=10`);
  const ranked = (await cairn.metrics.rankerRequests.get()).values;
  console.log(
    `ranker outcomes: ${JSON.stringify(Object.fromEntries(ranked.map((v) => [v.labels.outcome, v.value])))}`,
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
