/**
 * Does a training job (or loading the model it produced) block the event loop? The embedded service
 * (SQLite, demo data, a trained champion) listens on a local port; a separate client process probes a
 * cheap route every millisecond (one probe in flight at a time) while, in this process, new events are
 * already stored, a training job runs (extract → holdout → fit worker → gate → register) and its model is
 * promoted and hot-swapped into serving. Printed per run: the job's wall time, the probes' latency, and
 * the server's event-loop delay (perf_hooks.monitorEventLoopDelay, 1 ms resolution) over the run.
 *
 * "before" runs with `CAIRN_BENCH_NO_YIELD=1` (the time slicing off: extraction, holdout, artifact
 * encoding/decoding and index building run in one go), "after" with it on.
 *
 * `--batches N` (default 5) then measures the same probes while N 10,000-event batches are POSTed to
 * `/v1/events` over HTTP one after another (bodies serialized beforehand; each answered once persisted
 * and applied), with the slicing off ("batches before") and on ("batches after"), and once more while a
 * training job runs as well ("train+batches"). 0 skips them.
 *
 *   npm run bench:train-loop -- [--users 2000] [--items 1000] [--events 100000] [--runs 2]
 *                               [--route /health/live] [--algorithm als] [--batches 5]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/load.ts';
import { systemContext } from '../src/domain/context.ts';
import { generateDemoData } from '../src/ingest/demo-data.ts';
import { seedDemo, waitForJob } from '../src/main/demo.ts';
import { createEmbedded } from '../src/main/embedded.ts';
import { createLogger } from '../src/monitoring/logger.ts';

const { values } = parseArgs({
  options: {
    users: { type: 'string', default: '2000' },
    items: { type: 'string', default: '1000' },
    events: { type: 'string', default: '100000' },
    runs: { type: 'string', default: '2' },
    route: { type: 'string', default: '/health/live' },
    algorithm: { type: 'string', default: 'als' },
    batches: { type: 'string', default: '5' },
  },
});

/** The prober, plain JavaScript for a bare `node` child: probes until stdin closes, prints one JSON line. */
const CLIENT = `
import http from 'node:http';
const [port, path] = process.argv.slice(1);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const latencies = [];
let inFlight = false;
let failed = 0;
const timer = setInterval(() => {
  if (inFlight) return;
  inFlight = true;
  const t = performance.now();
  const req = http.get({ host: '127.0.0.1', port: Number(port), path, agent }, (res) => {
    res.resume();
    res.on('end', () => { if (res.statusCode !== 200) failed++; latencies.push(performance.now() - t); inFlight = false; });
  });
  req.on('error', () => { failed++; inFlight = false; });
}, 1);
process.stdout.write('ready\\n');
process.stdin.resume();
process.stdin.on('end', async () => {
  clearInterval(timer);
  while (inFlight) await new Promise((r) => setTimeout(r, 1));
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
  console.log(JSON.stringify({ probes: latencies.length, failed, p50: pct(0.5), p99: pct(0.99), max: latencies.at(-1) }));
  agent.destroy();
});
`;

interface ClientResult {
  probes: number;
  failed: number;
  p50: number;
  p99: number;
  max: number;
}

/** Starts the prober; resolves once it probes, with a function that stops it and returns its figures. */
function startClient(port: number): Promise<() => Promise<ClientResult>> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(
      process.execPath,
      ['--input-type=module', '-e', CLIENT, String(port), values.route],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    let out = '';
    const done = new Promise<ClientResult>((res, rej) => {
      child.on('exit', (code) =>
        code === 0
          ? res(JSON.parse(out.slice(out.indexOf('\n') + 1)) as ClientResult)
          : rej(new Error(`client exited ${code}`)),
      );
    });
    child.on('error', reject);
    child.stdout!.on('data', (c: Buffer) => {
      const ready = out === '';
      out += c.toString('utf8');
      if (ready && out.startsWith('ready\n')) {
        resolve(() => {
          child.stdin!.end();
          return done;
        });
      }
    });
  });
}

const dir = await mkdtemp(join(tmpdir(), 'cairn-bench-train-loop-'));
const config = loadConfig({
  env: {},
  overrides: { dataDir: dir, training: { algorithm: values.algorithm as 'als' } },
});
const cairn = await createEmbedded(config, { logger: createLogger('silent') });
const users = Number(values.users);
const items = Number(values.items);
const t0 = performance.now();
await seedDemo(cairn, { users, items, events: Number(values.events), seed: 42 });
console.log(
  `seeded ${values.events} events, ${users} users, ${items} items and trained ${values.algorithm} in ` +
    `${((performance.now() - t0) / 1000).toFixed(1)} s; load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
);
await cairn.app.listen({ host: '127.0.0.1', port: 0 });
const port = (cairn.app.server.address() as { port: number }).port;
const ctx = systemContext('bench-train-loop');

/** `events` new demo events (seeded), their window shifted to end now. */
function demoEventsNow(events: number, seed: number): object[] {
  const demo = generateDemoData({ users, items, events, seed });
  const shift = Date.now() - demo.endTime;
  return [...demo.events()].map((e) => ({ ...e, timestamp: e.timestamp + shift }));
}

/** Stores 5,000 more events (before probing): the next training sees data its champion did not. */
async function addEvents(seed: number): Promise<void> {
  const batch = demoEventsNow(5_000, seed);
  for (let i = 0; i < batch.length; i += config.server.maxBatchEvents)
    await cairn.ingest.ingestEvents(ctx, batch.slice(i, i + config.server.maxBatchEvents));
}

/** Trains (not promoting), then force-promotes and waits until serving has swapped to the new model. */
async function trainAndSwap(run: number): Promise<{ trainMs: number; swapMs: number }> {
  const t = performance.now();
  const job = await cairn.models.train(ctx, {
    promote: false,
    trigger: { kind: 'cli', key: `bench-${run}` },
  });
  const done = await waitForJob(cairn.jobs, job.id, 5);
  if (done.status !== 'succeeded') throw new Error(`training failed: ${done.error ?? done.status}`);
  const version = (done.result as { version: string }).version;
  const trainMs = performance.now() - t;
  const s = performance.now();
  await cairn.models.promote(ctx, version, { force: true, reason: 'bench' });
  while (cairn.champion.get()?.version.version !== version) await new Promise((r) => setTimeout(r, 5));
  return { trainMs, swapMs: performance.now() - s };
}

/** Bodies of `n` 10,000-event batches of new events, serialized before any measurement. */
function batchBodies(n: number, seed: number): string[] {
  const events = demoEventsNow(n * 10_000, seed);
  return Array.from({ length: n }, (_, b) =>
    JSON.stringify({ events: events.slice(b * 10_000, (b + 1) * 10_000) }),
  );
}

/** POSTs the bodies one after another; the wall time of all of them. */
async function postBatches(bodies: string[]): Promise<number> {
  const t = performance.now();
  for (const body of bodies) {
    const res = await fetch(`http://127.0.0.1:${port}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    const answer = (await res.json()) as { accepted?: number };
    if (answer.accepted !== 10_000) throw new Error(`batch not accepted: ${JSON.stringify(answer)}`);
  }
  return performance.now() - t;
}

const loop = monitorEventLoopDelay({ resolution: 1 });
const ms = (ns: number) => ns / 1e6;
const f = (x: number) => x.toFixed(1);
let runs = 0;

async function measure(
  label: string,
  noYield: boolean | null,
  options: { train?: boolean; batches?: number } = { train: true },
): Promise<void> {
  if (noYield) process.env.CAIRN_BENCH_NO_YIELD = '1';
  else delete process.env.CAIRN_BENCH_NO_YIELD;
  const train = noYield !== null && options.train === true;
  if (train) await addEvents(1000 + runs);
  const bodies = options.batches ? batchBodies(options.batches, 2000 + runs) : [];
  const stop = await startClient(port);
  loop.reset();
  loop.enable();
  const [job, postMs] = await Promise.all([
    train ? trainAndSwap(runs++) : null,
    bodies.length > 0 ? postBatches(bodies) : null,
  ]);
  if (job === null && postMs === null) await new Promise((r) => setTimeout(r, 2000));
  if (!train) runs++;
  loop.disable();
  const r = await stop();
  let what = job ? `train ${f(job.trainMs)} ms, swap ${f(job.swapMs)} ms; ` : '';
  if (postMs !== null)
    what += `${bodies.length} × 10k events in ${f(postMs)} ms (${Math.round((bodies.length * 10_000) / (postMs / 1000))} events/s); `;
  console.log(
    `${label.padEnd(8)} ${what || 'idle 2 s; '}probes n=${r.probes} failed=${r.failed} p50=${f(r.p50)} p99=${f(r.p99)} ` +
      `max=${f(r.max)} ms; server loop delay max=${f(ms(loop.max))} p99=${f(ms(loop.percentile(99)))} ms`,
  );
}

await measure('idle', null);
for (let run = 0; run < Number(values.runs); run++) {
  await measure('before', true);
  await measure('after', false);
}
const batches = Number(values.batches);
if (batches > 0) {
  await measure('batches before', true, { batches });
  await measure('batches after', false, { batches });
  await measure('train+batches', false, { train: true, batches });
}
console.log(
  `load average ${loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);

delete process.env.CAIRN_BENCH_NO_YIELD;
await cairn.close();
await rm(dir, { recursive: true, force: true });
