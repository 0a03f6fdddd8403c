/**
 * Does a big bulk request block the event loop? The embedded service (SQLite, demo data, a trained
 * champion) listens on a local port; a separate client process sends `POST /v1/recommendations/bulk`
 * with 1,000 users × k=200 while probing `GET /health/live` every millisecond (one probe in flight at a
 * time). Printed per run: the bulk request's wall time and answer sources, the probes' latency, and the
 * server's event-loop delay (perf_hooks.monitorEventLoopDelay, 1 ms resolution) over the run.
 *
 * "before" runs the same server with `CAIRN_BENCH_NO_YIELD=1` (users scored back to back, as before the
 * time slicing), "after" with the slicing on. The request deadline is off (`server.requestTimeoutMs` 0)
 * unless `--timeout-ms` is given, so both variants do the same work.
 *
 *   npm run bench:bulk -- [--users 2000] [--items 1000] [--events 100000] [--bulk 1000] [--k 200]
 *                         [--runs 2] [--timeout-ms 0] [--algorithm als]
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/load.ts';
import { ConfigSchema } from '../src/config/schema.ts';
import { seedDemo } from '../src/main/demo.ts';
import { createEmbedded } from '../src/main/embedded.ts';
import { createLogger } from '../src/monitoring/logger.ts';

const { values } = parseArgs({
  options: {
    users: { type: 'string', default: '2000' },
    items: { type: 'string', default: '1000' },
    events: { type: 'string', default: '100000' },
    bulk: { type: 'string', default: '1000' },
    k: { type: 'string', default: '200' },
    runs: { type: 'string', default: '2' },
    'timeout-ms': { type: 'string', default: '0' },
    algorithm: { type: 'string', default: 'als' },
  },
});

/**
 * The client, in plain JavaScript so it runs in a bare `node` child: probes /health/live every 1 ms while
 * (unless `idle`) one bulk request runs, then prints one JSON line.
 */
const CLIENT = `
import http from 'node:http';
import { readFileSync } from 'node:fs';
const [port, payloadFile, mode] = process.argv.slice(1);
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
const call = (method, path, body) => new Promise((resolve, reject) => {
  const req = http.request({ host: '127.0.0.1', port: Number(port), method, path, agent,
    headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {} },
    (res) => { const chunks = []; res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) })); });
  req.on('error', reject);
  req.end(body);
});
const latencies = [];
let inFlight = false;
const timer = setInterval(() => {
  if (inFlight) return;
  inFlight = true;
  const t = performance.now();
  call('GET', '/health/live').then(() => { latencies.push(performance.now() - t); inFlight = false; });
}, 1);
let bulk = null;
if (mode === 'idle') await new Promise((r) => setTimeout(r, 1000));
else {
  const t = performance.now();
  const res = await call('POST', '/v1/recommendations/bulk', readFileSync(payloadFile, 'utf8'));
  const ms = performance.now() - t;
  clearInterval(timer);
  // Parsing 30 MB blocks this client for a while: not while a probe is out.
  while (inFlight) await new Promise((r) => setTimeout(r, 1));
  const sources = {};
  for (const r of JSON.parse(res.body.toString('utf8')).results) {
    const key = r.error ? 'error:' + r.error.code : r.source + (r.fallback_reason ? ':' + r.fallback_reason : '');
    sources[key] = (sources[key] ?? 0) + 1;
  }
  bulk = { status: res.status, ms, bytes: res.body.length, sources };
}
clearInterval(timer);
while (inFlight) await new Promise((r) => setTimeout(r, 1));
latencies.sort((a, b) => a - b);
const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
console.log(JSON.stringify({ bulk, probes: latencies.length, p50: pct(0.5), p99: pct(0.99), max: latencies.at(-1) }));
agent.destroy();
`;

interface ClientResult {
  bulk: { status: number; ms: number; bytes: number; sources: Record<string, number> } | null;
  probes: number;
  p50: number;
  p99: number;
  max: number;
}

function runClient(port: number, payloadFile: string, mode: 'bulk' | 'idle'): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', CLIENT, String(port), payloadFile, mode],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve(JSON.parse(out) as ClientResult) : reject(new Error(`client exited ${code}`)),
    );
  });
}

const dir = await mkdtemp(join(tmpdir(), 'cairn-bench-bulk-'));
// A checkout from before request deadlines existed has no such key (the bench also measures those).
const hasDeadlines = 'requestTimeoutMs' in ConfigSchema.properties.server.properties;
const config = loadConfig({
  env: {},
  overrides: {
    dataDir: dir,
    training: { algorithm: values.algorithm as 'als' },
    server: hasDeadlines ? { requestTimeoutMs: Number(values['timeout-ms']) } : {},
  },
});
const cairn = await createEmbedded(config, { logger: createLogger('silent') });
const t0 = performance.now();
const users = Number(values.users);
await seedDemo(cairn, { users, items: Number(values.items), events: Number(values.events), seed: 42 });
console.log(
  `seeded ${values.events} events, ${users} users, ${values.items} items and trained ${values.algorithm} in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);
await cairn.app.listen({ host: '127.0.0.1', port: 0 });
const port = (cairn.app.server.address() as { port: number }).port;

const k = Number(values.k);
const payloadFile = join(dir, 'bulk.json');
const requests = Array.from({ length: Number(values.bulk) }, (_, i) => ({
  user_id: `u${(i % users) + 1}`,
  k,
}));
await writeFile(payloadFile, JSON.stringify({ requests }));

const loop = monitorEventLoopDelay({ resolution: 1 });
const ms = (ns: number) => ns / 1e6;
const f = (x: number) => x.toFixed(1);

async function measure(label: string, mode: 'bulk' | 'idle', noYield: boolean): Promise<void> {
  if (noYield) process.env.CAIRN_BENCH_NO_YIELD = '1';
  else delete process.env.CAIRN_BENCH_NO_YIELD;
  loop.reset();
  loop.enable();
  const r = await runClient(port, payloadFile, mode);
  loop.disable();
  const bulk = r.bulk
    ? `bulk ${r.bulk.status} in ${f(r.bulk.ms)} ms (${(r.bulk.bytes / 1e6).toFixed(1)} MB) ${JSON.stringify(r.bulk.sources)}; `
    : '';
  console.log(
    `${label.padEnd(8)} ${bulk}probes n=${r.probes} p50=${f(r.p50)} p99=${f(r.p99)} max=${f(r.max)} ms; ` +
      `server loop delay max=${f(ms(loop.max))} p99=${f(ms(loop.percentile(99)))} ms`,
  );
}

await measure('warm-up', 'bulk', false);
await measure('idle', 'idle', false);
for (let run = 0; run < Number(values.runs); run++) {
  await measure('before', 'bulk', true);
  await measure('after', 'bulk', false);
}

delete process.env.CAIRN_BENCH_NO_YIELD;
await cairn.close();
await rm(dir, { recursive: true, force: true });
