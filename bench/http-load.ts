/**
 * Pieces shared by the benchmarks that measure Cairn over real HTTP from outside its process
 * (bench/replicas.bench.ts, bench/load.bench.ts): statistics, CPU time of a process, loading the demo
 * shop and training a champion through the API, and the open-loop load generator, which runs in a
 * process of its own (bench/load-generator.ts) so that its work and the measured server never share an
 * event loop.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { childEnv, http, pollUntil, REPO_ROOT, runCairn } from '../test/integration/helpers/processes.ts';

/** CPU seconds (user + system) in a /proc `stat` line (a process's or a thread's). */
function statCpuSeconds(stat: string): number {
  // Fields after the parenthesised command name (which may contain spaces): utime is the 14th field.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux). */
export function cpuSeconds(pid: number): number {
  return statCpuSeconds(readFileSync(`/proc/${pid}/stat`, 'utf8'));
}

/**
 * CPU seconds each thread of a process has used so far (Linux), the main thread as `main`, the others
 * summed by the name the kernel has for them (Node 20 leaves V8's helpers, libuv's pool and worker threads
 * all named `node`, so those add up under one name).
 */
export function cpuSecondsByThread(pid: number): Map<string, number> {
  const byName = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // the thread ended meanwhile
    }
    const name = tid === `${pid}` ? 'main' : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    byName.set(name, (byName.get(name) ?? 0) + statCpuSeconds(stat));
  }
  return byName;
}

/**
 * CPU time the hypervisor gave to other guests while this machine's cores wanted to run ("steal", Linux
 * /proc/stat), sampled every 100 ms while it watches: a stall of every process at once that no code of
 * ours causes (a 100 ms burst showed as a 100 ms gap in the server's event loop with no CPU-profile sample
 * inside it). Printed beside wall-clock figures so a run hit by it can be told apart.
 */
export class StealWatch {
  private readonly timer: NodeJS.Timeout;
  private last = StealWatch.read();
  private readonly first = this.last;
  /** The largest steal of one 100 ms sample (ms, all cores together). */
  maxBurstMs = 0;

  constructor() {
    this.timer = setInterval(() => {
      const now = StealWatch.read();
      this.maxBurstMs = Math.max(this.maxBurstMs, now - this.last);
      this.last = now;
    }, 100);
  }

  /** Stops watching; returns the steal in all (ms, all cores together) and the largest 100 ms burst. */
  stop(): { totalMs: number; maxBurstMs: number } {
    clearInterval(this.timer);
    const now = StealWatch.read();
    this.maxBurstMs = Math.max(this.maxBurstMs, now - this.last);
    return { totalMs: now - this.first, maxBurstMs: this.maxBurstMs };
  }

  /** Steal of all cores so far (ms; the 8th field of the `cpu` line, in USER_HZ = 100 ticks/s). */
  private static read(): number {
    try {
      const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
      return Number(line.trim().split(/\s+/)[8] ?? 0) * 10;
    } catch {
      return 0; // not Linux: nothing to report
    }
  }
}

export function printSteal(stolen: { totalMs: number; maxBurstMs: number }): void {
  console.log(
    `    CPU stolen by the hypervisor meanwhile ${stolen.totalMs} ms, at most ${stolen.maxBurstMs} ms in 100 ms`,
  );
}

/** Nearest-rank percentile of an ascending array. */
export function pct(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export const ms = (x: number): string => `${x.toFixed(1)} ms`;

export function summary(values: number[]): string {
  const s = [...values].sort((a, b) => a - b);
  return `min ${ms(s[0])}  p50 ${ms(pct(s, 50))}  p90 ${ms(pct(s, 90))}  p99 ${ms(pct(s, 99))}  max ${ms(s[s.length - 1])}`;
}

/** The 1/5/15-minute load averages: wall-clock figures mean little without them. */
export const loadAverage = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

// ------------------------------------------------------------------------------------------------
// The open-loop load generator (its process: bench/load-generator.ts)
// ------------------------------------------------------------------------------------------------

/** What one request of the load asks: recommend, similar and popular read; ingest posts one event. */
export type Route = 'recommend' | 'similar' | 'popular' | 'ingest';
export type Scenario = Route | 'mixed';
export const SCENARIOS: readonly Scenario[] = ['recommend', 'similar', 'popular', 'ingest', 'mixed'];

export interface LoadSpec {
  /** Base URLs; request i goes to targets[i % targets.length]. */
  targets: string[];
  scenario: Scenario;
  /** Requests per second, all routes together. */
  rate: number;
  seconds: number;
  warmupSeconds: number;
  /** Users u1..uN the requests name, and items i1..iM. */
  users: number;
  items: number;
  /** Client deadline per request (ms): past it the request counts as a timeout. */
  timeoutMs: number;
  /** Unique per run: makes the ids of ingested events new. */
  runId: string;
}

export interface RouteResult {
  route: Route;
  /** Measured requests (after the warm-up). */
  sent: number;
  ok: number;
  /** Answers with a status other than 2xx, and transport errors, by status or error code. */
  errors: Record<string, number>;
  timeouts: number;
  /** Recommendations answered from the model rather than a fallback. */
  personalized: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  /** p99 from the actual send (ms): without the generator's own lag, i.e. what the server and the wire add. */
  p99FromSend: number;
}

export interface LoadResult {
  rate: number;
  seconds: number;
  /** Send phase length, first intended measured send to last actual send (s). */
  sendSeconds: number;
  /** First intended measured send to last answer (s). */
  totalSeconds: number;
  /** Largest delay of an actual send behind its intended time (ms): the generator's own lag. */
  maxSendLagMs: number;
  /** The generator's own pauses in the measured window (its event-loop delay, its garbage collections). */
  generator: {
    loopDelayP99Ms: number;
    loopDelayMaxMs: number;
    gcCount: number;
    gcTotalMs: number;
    gcMaxMs: number;
  };
  routes: RouteResult[];
}

/** Runs the load generator in a child process and returns what it measured. */
export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const child = spawn(
    process.execPath,
    [join(REPO_ROOT, 'bin/run-ts.js'), join(REPO_ROOT, 'bench/load-generator.ts'), JSON.stringify(spec)],
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  const line = out.split('\n').find((l) => l.startsWith('RESULT '));
  if (code !== 0 || !line) throw new Error(`load generator failed (exit ${code}):\n${out}`);
  return JSON.parse(line.slice('RESULT '.length)) as LoadResult;
}

/** One line per route: counts, achieved rate, errors and the latency percentiles. */
export function printLoad(r: LoadResult): void {
  console.log(
    `    sent ${r.routes.reduce((a, x) => a + x.sent, 0)} in ${r.sendSeconds.toFixed(1)} s (generator lag at ` +
      `most ${ms(r.maxSendLagMs)}), last answer after ${r.totalSeconds.toFixed(1)} s`,
  );
  const g = r.generator;
  console.log(
    `    generator: event-loop delay p99 ${ms(g.loopDelayP99Ms)} max ${ms(g.loopDelayMaxMs)}; ` +
      `${g.gcCount} collections, ${ms(g.gcTotalMs)} in all, longest ${ms(g.gcMaxMs)}`,
  );
  for (const x of r.routes) {
    const errors = Object.values(x.errors).reduce((a, b) => a + b, 0);
    console.log(
      `    ${x.route.padEnd(9)} sent ${x.sent}, answered ${(x.ok / r.totalSeconds).toFixed(0)}/s ok; ok ${x.ok}` +
        `${x.route === 'recommend' ? ` (${x.personalized} personalized)` : ''}, errors ${errors}` +
        `${errors > 0 ? ` ${JSON.stringify(x.errors)}` : ''}, timeouts ${x.timeouts}`,
    );
    console.log(
      `              latency from intended send: p50 ${ms(x.p50)}  p90 ${ms(x.p90)}  p99 ${ms(x.p99)}  ` +
        `p99.9 ${ms(x.p999)}  max ${ms(x.max)}  (p99 from the actual send ${ms(x.p99FromSend)})`,
    );
  }
}

// ------------------------------------------------------------------------------------------------
// The demo shop and a champion, through the API
// ------------------------------------------------------------------------------------------------

export interface ShopSize {
  users: number;
  items: number;
  events: number;
}

/**
 * Generates the demo shop (`cairn demo-data`, seed 42) in `dir` and loads it through the API of
 * `urls`: catalog, users one by one, then events in 10k batches. Returns the number of events.
 */
export async function loadShop(urls: string[], dir: string, size: ShopSize): Promise<number> {
  await mkdir(dir, { recursive: true }); // also the command's working directory
  const gen = await runCairn(
    [
      'demo-data',
      '--users',
      `${size.users}`,
      '--items',
      `${size.items}`,
      '--events',
      `${size.events}`,
    ].concat(['--seed', '42', '--out', dir]),
    { env: childEnv(), cwd: dir, timeoutMs: 300_000 },
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

  for (let i = 0; i < items.length; i += 10_000)
    expectStatus('items', await http('POST', `${urls[0]}/v1/items`, { items: items.slice(i, i + 10_000) }));
  // Users one by one (there is no batch endpoint), a few in flight per server.
  let u = 0;
  await Promise.all(
    Array.from({ length: 8 }, async (_, w) => {
      for (let i = u++; i < shopUsers.length; i = u++) {
        const { id, ...rest } = shopUsers[i];
        expectStatus('user', await http('PUT', `${urls[w % urls.length]}/v1/users/${String(id)}`, rest));
      }
    }),
  );
  await postEvents(urls, events);
  return events.length;
}

/** Posts events in 10,000-event batches, one batch in flight per server; every event must be accepted. */
export async function postEvents(urls: string[], events: unknown[]): Promise<void> {
  let b = 0;
  const batches = Math.ceil(events.length / 10_000);
  await Promise.all(
    urls.map(async (url) => {
      for (let i = b++; i < batches; i = b++) {
        const batch = events.slice(i * 10_000, (i + 1) * 10_000);
        const res = await http<{ accepted: number }>('POST', `${url}/v1/events`, { events: batch }, 120_000);
        expectStatus('events', res);
        if (res.body.accepted !== batch.length)
          throw new Error(`events: ${JSON.stringify(res.body).slice(0, 300)}`);
      }
    }),
  );
}

function expectStatus(what: string, res: { status: number; body: unknown }, status = 200): void {
  if (res.status !== status)
    throw new Error(`${what}: HTTP ${res.status} ${JSON.stringify(res.body).slice(0, 500)}`);
}

export interface Champion {
  version: string;
  algorithm: string;
  metrics: Record<string, number>;
}

/** Trains through the API and waits until every one of `urls` serves the new champion. */
/** Runs one training job through the API (`body`: the train request); resolves with the succeeded job. */
async function trainJob(url: string, body: object): Promise<{ status: string }> {
  const queued = await http<{ job_id: string }>('POST', `${url}/v1/models/train`, body);
  if (queued.status !== 202) throw new Error(`train: HTTP ${queued.status} ${JSON.stringify(queued.body)}`);
  const job = await pollUntil(
    'the training job',
    async () => {
      const { body } = await http<{ status: string }>('GET', `${url}/v1/jobs/${queued.body.job_id}`);
      return body.status === 'succeeded' || body.status === 'failed' ? body : null;
    },
    { timeoutMs: 600_000, intervalMs: 200 },
  );
  if (job.status !== 'succeeded') throw new Error(`training failed: ${JSON.stringify(job)}`);
  return job;
}

/** Trains a version without promoting it; resolves with its version (the newest that is not champion). */
export async function trainChallenger(url: string): Promise<string> {
  await trainJob(url, { promote: false });
  const { body } = await http<{ models: { version: string; status: string; created_at: string }[] }>(
    'GET',
    `${url}/v1/models`,
  );
  const newest = body.models
    .filter((m) => m.status !== 'champion')
    .sort((a, b) => b.created_at.localeCompare(a.created_at))[0];
  if (!newest) throw new Error(`no version besides the champion: ${JSON.stringify(body)}`);
  return newest.version;
}

/** Promotes `version` through the API (forced: a bench's challenger may have failed its gates). */
export async function promoteVersion(url: string, version: string): Promise<void> {
  const res = await http('POST', `${url}/v1/models/${version}/promote`, { force: true, reason: 'bench' });
  expectStatus('promote', res);
}

export async function trainChampion(urls: string[]): Promise<Champion> {
  const job = await trainJob(urls[0], {});
  // The registry (not the job's result) says which version is the champion.
  const { body } = await http<{ models: (Champion & { status: string })[] }>('GET', `${urls[0]}/v1/models`);
  const champion = body.models.find((m) => m.status === 'champion');
  if (!champion) throw new Error(`training gave no champion: ${JSON.stringify(job)} ${JSON.stringify(body)}`);
  // The promotion reaches every server through the change log.
  for (const url of urls) {
    await pollUntil(
      `${url} serving ${champion.version}`,
      async () =>
        (await http<{ model_version: string | null }>('GET', `${url}/v1/users/u1/recommendations?k=10`)).body
          .model_version === champion.version,
      { timeoutMs: 60_000, intervalMs: 100 },
    );
  }
  return champion;
}
