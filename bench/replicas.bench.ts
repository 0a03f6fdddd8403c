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
 *      load-generator process (this file run with --load-generator; node:http with keep-alive). Latency
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
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Agent, request as httpRequest } from 'node:http';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  assertServicesUp,
  childEnv,
  http,
  pollUntil,
  REPO_ROOT,
  runCairn,
  TestDeployment,
  type CairnProcess,
} from '../test/integration/helpers/processes.ts';

const { values } = parseArgs({
  options: {
    users: { type: 'string', default: '2000' },
    items: { type: 'string', default: '1000' },
    events: { type: 'string', default: '100000' },
    trials: { type: 'string', default: '200' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '30' },
    warmup: { type: 'string', default: '5' },
    // Internal: run as the load generator of (b).
    'load-generator': { type: 'boolean', default: false },
    targets: { type: 'string', default: '' },
  },
});
const users = Number(values.users);

/** CPU seconds (user + system) a process has used so far, from /proc (Linux). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name (which may contain spaces): utime is the 14th field.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
}

/** Nearest-rank percentile of an ascending array. */
function pct(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

function summary(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const f = (x: number) => `${x.toFixed(1)} ms`;
  return `min ${f(s[0])}  p50 ${f(pct(s, 50))}  p90 ${f(pct(s, 90))}  p99 ${f(pct(s, 99))}  max ${f(s[s.length - 1])}`;
}

const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

// ------------------------------------------------------------------------------------------------
// (b)'s load generator, in its own process so that its work does not stall the measuring event loop
// of the parent, and vice versa.
// ------------------------------------------------------------------------------------------------

interface LoadResult {
  rate: number;
  seconds: number;
  sent: number;
  ok: number;
  errors: number;
  errorKinds: Record<string, number>;
  personalized: number;
  /** Send phase length, first intended send to last actual send (s). */
  sendSeconds: number;
  /** First intended send to last answer (s). */
  totalSeconds: number;
  /** Largest delay of an actual send behind its intended time (ms): the generator's own lag. */
  maxSendLagMs: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

async function loadGenerator(): Promise<void> {
  const targets = values.targets.split(',').map((t) => new URL(t));
  const rate = Number(values.rate);
  const warm = Math.round(rate * Number(values.warmup));
  const measured = Math.round(rate * Number(values.seconds));
  const total = warm + measured;
  const interval = 1000 / rate;
  // Enough sockets that a slow answer never delays the next send: the loop stays open.
  const agents = targets.map(() => new Agent({ keepAlive: true, maxSockets: 1024 }));
  const latencies = new Float64Array(measured);
  let okCount = 0;
  let personalized = 0;
  const errorKinds: Record<string, number> = {};
  let finished = 0;
  let maxSendLagMs = 0;
  let lastSend = 0;
  let lastAnswer = 0;
  const start = performance.now() + 100;
  let resolveDone: () => void = () => undefined;
  const done = new Promise<void>((r) => (resolveDone = r));

  const finish = (i: number, intended: number, error: string | null, body: string) => {
    const now = performance.now();
    lastAnswer = now;
    if (i >= warm) {
      const j = i - warm;
      latencies[j] = now - intended;
      if (error === null) {
        okCount++;
        if (body.includes('"source":"personalized"')) personalized++;
      } else {
        errorKinds[error] = (errorKinds[error] ?? 0) + 1;
      }
    }
    if (++finished === total) resolveDone();
  };

  const fire = (i: number) => {
    const intended = start + i * interval;
    const now = performance.now();
    maxSendLagMs = Math.max(maxSendLagMs, now - intended);
    lastSend = now;
    const t = i % targets.length;
    // Known users of the demo shop, spread evenly (a prime stride visits them all).
    const user = `u${1 + ((i * 7919) % users)}`;
    let settled = false;
    const settle = (error: string | null, body = '') => {
      if (settled) return;
      settled = true;
      finish(i, intended, error, body);
    };
    const req = httpRequest(
      {
        host: targets[t].hostname,
        port: targets[t].port,
        path: `/v1/users/${user}/recommendations?k=10`,
        agent: agents[t],
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => settle(res.statusCode === 200 ? null : `HTTP ${res.statusCode}`, body));
        res.on('error', (e) => settle(e.message));
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error('timeout (10 s)')));
    req.on('error', (e: NodeJS.ErrnoException) => settle(e.code ?? e.message));
    req.end();
  };

  let next = 0;
  const tick = () => {
    const now = performance.now();
    while (next < total && start + next * interval <= now) fire(next++);
    if (next < total) setTimeout(tick, Math.max(0, start + next * interval - performance.now()));
  };
  setTimeout(tick, Math.max(0, start - performance.now()));
  await done;
  for (const a of agents) a.destroy();

  latencies.sort();
  const measuredStart = start + warm * interval;
  const result: LoadResult = {
    rate,
    seconds: Number(values.seconds),
    sent: measured,
    ok: okCount,
    errors: measured - okCount,
    errorKinds,
    personalized,
    sendSeconds: (lastSend - measuredStart) / 1000,
    totalSeconds: (lastAnswer - measuredStart) / 1000,
    maxSendLagMs,
    p50: pct(latencies, 50),
    p90: pct(latencies, 90),
    p99: pct(latencies, 99),
    p999: pct(latencies, 99.9),
    max: latencies[latencies.length - 1],
  };
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}

async function runLoadGenerator(targets: string[], rate: number): Promise<LoadResult> {
  const child = spawn(
    process.execPath,
    [
      join(REPO_ROOT, 'bin/run-ts.js'),
      fileURLToPath(import.meta.url),
      '--load-generator',
      '--targets',
      targets.join(','),
      '--rate',
      String(rate),
      '--seconds',
      values.seconds,
      '--warmup',
      values.warmup,
      '--users',
      values.users,
    ],
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  const line = out.split('\n').find((l) => l.startsWith('RESULT '));
  if (code !== 0 || !line) throw new Error(`load generator failed (exit ${code}):\n${out}`);
  return JSON.parse(line.slice('RESULT '.length)) as LoadResult;
}

// ------------------------------------------------------------------------------------------------
// The benchmark
// ------------------------------------------------------------------------------------------------

interface RecommendationWire {
  model_version: string | null;
  source: string;
  items: { item_id: string }[];
}

/** Loads `cairn demo-data` output through the API: catalog and users, then events in 10k batches. */
async function loadShop(d: TestDeployment, replicas: CairnProcess[]): Promise<number> {
  const dir = join(d.dir, 'shop');
  const gen = await runCairn(
    [
      'demo-data',
      '--users',
      values.users,
      '--items',
      values.items,
      '--events',
      values.events,
      '--seed',
      '42',
      '--out',
      dir,
    ],
    { env: childEnv(), cwd: d.dir, timeoutMs: 300_000 },
  );
  if (gen.code !== 0) throw new Error(`cairn demo-data failed:\n${gen.stderr}`);
  const lines = async (file: string) =>
    (await readFile(join(dir, file), 'utf8'))
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const items = await lines('items.jsonl');
  const shopUsers = await lines('users.jsonl');
  const events = await lines('events.jsonl');
  // The generator's window ends on a fixed date (deterministic output); shift it to end now, as
  // `cairn serve --demo` does, so time-decayed popularity reads as in a live shop.
  const now = Date.now();
  let end = 0;
  for (const e of events) end = Math.max(end, e.timestamp as number);
  const shift = now - end;
  for (const it of items) it.created_at = Math.min((it.created_at as number) + shift, now);
  for (const e of events) e.timestamp = (e.timestamp as number) + shift;

  const ok = (what: string, res: { status: number; body: unknown }, status = 200) => {
    if (res.status !== status)
      throw new Error(`${what}: HTTP ${res.status} ${JSON.stringify(res.body).slice(0, 500)}`);
  };
  const t0 = performance.now();
  for (let i = 0; i < items.length; i += 10_000)
    ok('items', await http('POST', `${replicas[0].url}/v1/items`, { items: items.slice(i, i + 10_000) }));
  // Users one by one (there is no batch endpoint), a few in flight per replica.
  let u = 0;
  await Promise.all(
    Array.from({ length: 8 }, async (_, w) => {
      for (let i = u++; i < shopUsers.length; i = u++) {
        const { id, ...rest } = shopUsers[i];
        ok('user', await http('PUT', `${replicas[w % replicas.length].url}/v1/users/${String(id)}`, rest));
      }
    }),
  );
  // Events in 10,000-event batches, one in flight per replica.
  let b = 0;
  const batches = Math.ceil(events.length / 10_000);
  await Promise.all(
    replicas.map(async (r) => {
      for (let i = b++; i < batches; i = b++) {
        const res = await http<{ accepted: number }>(
          'POST',
          `${r.url}/v1/events`,
          { events: events.slice(i * 10_000, (i + 1) * 10_000) },
          120_000,
        );
        ok('events', res);
        if (res.body.accepted !== Math.min(10_000, events.length - i * 10_000))
          throw new Error(`events: ${JSON.stringify(res.body).slice(0, 300)}`);
      }
    }),
  );
  const acked = performance.now();
  await pollUntil(
    'the demo events in PostgreSQL',
    async () => {
      const [{ n }] = await d.sql<{ n: number }>('SELECT count(*)::int AS n FROM $schema.events');
      return n >= events.length;
    },
    { timeoutMs: 300_000, intervalMs: 200 },
  );
  console.log(
    `loaded ${items.length} items, ${shopUsers.length} users, ${events.length} events through the API: ` +
      `acknowledged in ${((acked - t0) / 1000).toFixed(1)} s, all in PostgreSQL after ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  return events.length;
}

async function train(d: TestDeployment, replicas: CairnProcess[]): Promise<void> {
  const t0 = performance.now();
  const queued = await http<{ job_id: string }>('POST', `${replicas[0].url}/v1/models/train`, {});
  if (queued.status !== 202) throw new Error(`train: HTTP ${queued.status} ${JSON.stringify(queued.body)}`);
  const job = await pollUntil(
    'the training job',
    async () => {
      const { body } = await http<{ status: string; error?: unknown }>(
        'GET',
        `${replicas[0].url}/v1/jobs/${queued.body.job_id}`,
      );
      return body.status === 'succeeded' || body.status === 'failed' ? body : null;
    },
    { timeoutMs: 600_000, intervalMs: 200 },
  );
  if (job.status !== 'succeeded') throw new Error(`training failed: ${JSON.stringify(job)}\n${d.logs(40)}`);
  // The registry (not the job's result) says which version is the champion.
  const { body } = await http<{
    models: { version: string; status: string; algorithm: string; metrics: Record<string, number> }[];
  }>('GET', `${replicas[0].url}/v1/models`);
  const champion = body.models.find((m) => m.status === 'champion');
  if (!champion) throw new Error(`training gave no champion: ${JSON.stringify(job)} ${JSON.stringify(body)}`);
  // The promotion reaches every replica through the change log.
  for (const r of replicas) {
    await pollUntil(
      `${r.name} serving ${champion.version}`,
      async () =>
        (await http<RecommendationWire>('GET', `${r.url}/v1/users/u1/recommendations?k=10`)).body
          .model_version === champion.version,
      { timeoutMs: 60_000, intervalMs: 100 },
    );
  }
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
  const r = await runLoadGenerator(
    replicas.map((p) => p.url),
    rate,
  );
  const cpu = procs.map((p, i) => cpuSeconds(p.pid) - cpu0[i]);
  const apiCpu = cpu.slice(0, replicas.length).reduce((a, b) => a + b, 0);
  const ms = (x: number) => `${x.toFixed(1)} ms`;
  console.log(
    `\n(b) GET /v1/users/{id}/recommendations?k=10, open loop ${r.rate}/s for ${r.seconds} s over ${replicas.length} ` +
      `replicas (after ${values.warmup} s of warm-up), load average before ${before}, after ${load()}`,
  );
  console.log(
    `    sent ${r.sent} in ${r.sendSeconds.toFixed(1)} s (generator lag at most ${ms(r.maxSendLagMs)}), answered ` +
      `${(r.sent / r.totalSeconds).toFixed(0)}/s; ok ${r.ok} (${r.personalized} personalized), errors ${r.errors}` +
      `${r.errors > 0 ? ` ${JSON.stringify(r.errorKinds)}` : ''}`,
  );
  console.log(
    `    latency from intended send: p50 ${ms(r.p50)}  p90 ${ms(r.p90)}  p99 ${ms(r.p99)}  p99.9 ${ms(r.p999)}  max ${ms(r.max)}`,
  );
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
    await train(d, [A, B]);
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

if (values['load-generator']) await loadGenerator();
else await main();
