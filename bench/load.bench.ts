/**
 * What a client sees over real HTTP under a steady load. `cairn serve` (the all-in-one role, SQLite in a
 * temporary data directory) runs as a separate process on a free port; the demo shop is loaded through
 * its API and a champion trained; optionally `--history N` more events per active user are ingested
 * after training (the model no longer knows them: "after N new events per user"). Then a separate
 * load-generator process (bench/load-generator.ts) sends requests at a fixed rate, open loop, and
 * latency counts from each request's intended send time (no coordinated omission).
 *
 * `--floor` measures the machine and the generator instead: the same load against a bare `node:http` server
 * (its own process) answering every request with a fixed 10-item JSON body — no latency figure of Cairn's
 * can be lower than this. `--floor-cpu-us N` makes it spin N µs per request first: what a handler costing
 * that much CPU gets on this machine, whatever it does.
 *
 * `--swap-at S` trains a second version before the load (not promoted) and promotes it S seconds into the
 * first measured window: what a client sees while the champion changes under it.
 *
 * Scenarios: recommend (`GET /v1/users/{id}/recommendations?k=10`), similar (`GET /v1/items/{id}/similar
 * ?k=10`), popular (`GET /v1/popular?k=10`), ingest (`POST /v1/events`, one event), mixed (of every 10
 * requests: 6 recommend, 3 ingest, 1 popular). Printed per route: p50/p90/p99/p99.9/max, errors by
 * status, client timeouts and the achieved rate; and the server's CPU seconds meanwhile.
 *
 *   npm run bench:load -- [--scenario recommend] [--rate 1000[,RATE...]] [--seconds 20] [--warmup 5]
 *                         [--users 2000] [--items 1000] [--events 100000] [--active USERS]
 *                         [--history 0] [--timeout-ms 10000] [--log-level warn] [--cpu-prof DIR [--cpu-prof-interval µs]]
 *                         [--heap-prof DIR]
 *                         [--swap-at SECONDS] [--floor [--floor-cpu-us 0]]
 *
 * Wall-clock figures depend on what else runs on the machine: the load average is printed with them.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CairnProcess, childEnv, freePort } from '../test/integration/helpers/processes.ts';
import {
  cpuSeconds,
  cpuSecondsByThread,
  loadAverage,
  loadShop,
  postEvents,
  printLoad,
  printSteal,
  promoteVersion,
  runLoad,
  SCENARIOS,
  StealWatch,
  trainChallenger,
  trainChampion,
  type Scenario,
} from './http-load.ts';

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'recommend' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '5' },
    users: { type: 'string', default: '2000' },
    items: { type: 'string', default: '1000' },
    events: { type: 'string', default: '100000' },
    active: { type: 'string' },
    history: { type: 'string', default: '0' },
    'timeout-ms': { type: 'string', default: '10000' },
    'log-level': { type: 'string', default: 'warn' },
    /** Extra server configuration, repeatable: `--server-env CAIRN_RATE_LIMIT_ENABLED=false`. */
    'server-env': { type: 'string', multiple: true, default: [] },
    /** Write a V8 CPU profile of the server (whole run) into this directory when it stops. */
    'cpu-prof': { type: 'string' },
    /** With --cpu-prof: the sampling interval in µs (V8's default 1000 blurs tasks of a few ms). */
    'cpu-prof-interval': { type: 'string' },
    /** Write a V8 sampling heap profile of the server (allocations still live when it stops) into this directory. */
    'heap-prof': { type: 'string' },
    /** Promote a second trained version this many seconds into the (first) measured window. */
    'swap-at': { type: 'string' },
    /** Load a bare node:http server instead of Cairn (the floor of the figures on this machine). */
    floor: { type: 'boolean', default: false },
    /** With --floor: CPU (µs) the bare server spins per request before it answers. */
    'floor-cpu-us': { type: 'string', default: '0' },
  },
});
const scenario = values.scenario as Scenario;
if (!SCENARIOS.includes(scenario)) throw new Error(`--scenario must be one of ${SCENARIOS.join(', ')}`);
const size = { users: Number(values.users), items: Number(values.items), events: Number(values.events) };
/** The users the load (and --history) names: u1..uN. */
const active = Math.min(size.users, Number(values.active ?? values.users));
const history = Number(values.history);

/** `history` view events for each of u1..u{active}, posted 100k at a time, spread over the last hour. */
async function ingestHistory(url: string, runId: string): Promise<void> {
  const total = active * history;
  const now = Date.now();
  for (let from = 0; from < total; from += 100_000) {
    const events = [];
    for (let n = from; n < Math.min(total, from + 100_000); n++) {
      const u = n % active;
      events.push({
        event_id: `history-${runId}-${n}`,
        user_id: `u${u + 1}`,
        item_id: `i${1 + ((n * 104_729 + u * 31) % size.items)}`,
        type: 'view',
        timestamp: now - 3_600_000 + Math.floor((n / total) * 3_600_000),
      });
    }
    await postEvents([url], events);
  }
}

/** The load of the command line at `rate` against `url` (the generator in its own process). */
function loadAt(url: string, rate: number, runId: string): ReturnType<typeof runLoad> {
  return runLoad({
    targets: [url],
    scenario,
    rate,
    seconds: Number(values.seconds),
    warmupSeconds: Number(values.warmup),
    users: active,
    items: size.items,
    timeoutMs: Number(values['timeout-ms']),
    runId,
  });
}

async function measure(
  server: CairnProcess,
  rate: number,
  runId: string,
  swap: { version: string; atSeconds: number } | null,
): Promise<void> {
  const before = loadAverage();
  const cpu0 = cpuSeconds(server.pid);
  const threads0 = cpuSecondsByThread(server.pid);
  // The promotion, timed from the generator's start (its warm-up first); awaited after the load.
  let swapped: Promise<string> = Promise.resolve('');
  if (swap) {
    const delayMs = (Number(values.warmup) + swap.atSeconds) * 1000;
    swapped = new Promise((resolve, reject) =>
      setTimeout(() => {
        const t = performance.now();
        promoteVersion(server.url, swap.version).then(
          () =>
            resolve(
              `    promoted ${swap.version} ${swap.atSeconds} s into the window (the call took ` +
                `${(performance.now() - t).toFixed(0)} ms)`,
            ),
          reject,
        );
      }, delayMs),
    );
  }
  const steal = new StealWatch();
  const r = await loadAt(server.url, rate, `${runId}-${rate}`);
  const stolen = steal.stop();
  const cpu = cpuSeconds(server.pid) - cpu0;
  const threads = [...cpuSecondsByThread(server.pid)]
    .map(([name, s]) => [name, s - (threads0.get(name) ?? 0)] as const)
    .filter(([, s]) => s >= 0.05)
    .sort((a, b) => b[1] - a[1])
    .map(([name, s]) => `${name} ${s.toFixed(1)} s`)
    .join(', ');
  console.log(
    `\n${scenario}, open loop ${rate}/s for ${r.seconds} s (after ${values.warmup} s of warm-up), ` +
      `load average before ${before}, after ${loadAverage()}`,
  );
  printLoad(r);
  printSteal(stolen);
  if (swap) console.log(await swapped);
  // Warm-up and measured requests both ran in the CPU window.
  const requests = Math.round(rate * (r.seconds + Number(values.warmup)));
  console.log(
    `    server CPU meanwhile ${cpu.toFixed(1)} s → ${Math.round(requests / cpu)} requests per CPU-second (${threads})`,
  );
  // How the answers were made (counted since the server started: warm-up and earlier rates included).
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  const counts = (name: string) =>
    [...metrics.matchAll(new RegExp(`^${name}\\{outcome="(\\w+)"\\} (\\S+)$`, 'gm'))]
      .map((m) => `${m[1]} ${m[2]}`)
      .join(', ');
  console.log(
    `    since the start: answers by cache outcome ${counts('cairn_recommendation_cache_total') || 'none'}; ` +
      `background recomputations ${counts('cairn_answer_refresh_total') || 'none'}; ` +
      `event-loop delay p99 ${metrics.match(/^cairn_process_nodejs_eventloop_lag_p99_seconds (\S+)$/m)?.[1] ?? '?'} s`,
  );
}

/** The fixed answer of the floor server: ten items, as a recommendation list's size. */
const FLOOR_BODY = JSON.stringify({
  items: Array.from({ length: 10 }, (_, i) => ({ item_id: `i${i + 1}`, score: 1 - i / 10, reason: 'floor' })),
});

/** `--floor`: the load against a bare node:http server in its own process. */
async function floor(): Promise<void> {
  const port = await freePort();
  const spinNs = Math.round(Number(values['floor-cpu-us']) * 1000);
  const code =
    `require('node:http').createServer((q, s) => { q.resume(); ` +
    `const t = process.hrtime.bigint(); while (process.hrtime.bigint() - t < ${spinNs}n); ` +
    `s.writeHead(200, { 'content-type': 'application/json' }); s.end(${JSON.stringify(FLOOR_BODY)}); })` +
    `.listen(${port}, '127.0.0.1', () => console.log('listening'));`;
  const server = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      server.stdout.once('data', () => resolve());
      server.once('exit', (c) => reject(new Error(`the floor server exited (${c})`)));
    });
    for (const rate of values.rate.split(',').map(Number)) {
      const steal = new StealWatch();
      const r = await loadAt(`http://127.0.0.1:${port}`, rate, `floor-${rate}`);
      const stolen = steal.stop();
      console.log(
        `\nfloor (bare node:http server, ${values['floor-cpu-us']} µs of CPU per request), ${scenario} ` +
          `requests, open loop ${rate}/s for ${r.seconds} s`,
      );
      printLoad(r);
      printSteal(stolen);
    }
  } finally {
    server.kill();
  }
}

async function main(): Promise<void> {
  console.log(`node ${process.version}, ${availableParallelism()} cores, load average ${loadAverage()}`);
  if (values.floor) return floor();
  const dir = await mkdtemp(join(tmpdir(), 'cairn-bench-load-'));
  const runId = randomBytes(4).toString('hex');
  const port = await freePort();
  const extra = Object.fromEntries(
    values['server-env'].map((kv) => kv.split(/=(.*)/s, 2) as [string, string]),
  );
  const env = childEnv({ CAIRN_LOGGING_LEVEL: values['log-level'], ...extra });
  const args = ['serve', '--data', join(dir, 'data'), '--port', `${port}`];
  const prof = values['cpu-prof'];
  const heap = values['heap-prof'];
  const nodeArgs = [
    ...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []),
    ...(prof && values['cpu-prof-interval'] ? [`--cpu-prof-interval=${values['cpu-prof-interval']}`] : []),
    ...(heap ? ['--heap-prof', `--heap-prof-dir=${heap}`] : []),
  ];
  const server = new CairnProcess('cairn', args, port, env, dir, nodeArgs);
  try {
    await server.waitReady(60_000);
    let t0 = performance.now();
    const events = await loadShop([server.url], dir, size);
    const champion = await trainChampion([server.url]);
    console.log(
      `loaded ${size.items} items, ${size.users} users, ${events} events through the API and trained ` +
        `${champion.algorithm} ${champion.version} in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    if (history > 0) {
      t0 = performance.now();
      await ingestHistory(server.url, runId);
      console.log(
        `then ingested ${history} events for each of ${active} users (${active * history} events) in ` +
          `${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
    }
    let swap: { version: string; atSeconds: number } | null = null;
    if (values['swap-at'] !== undefined) {
      t0 = performance.now();
      swap = { version: await trainChallenger(server.url), atSeconds: Number(values['swap-at']) };
      console.log(
        `trained ${swap.version} (not promoted) in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
    }
    for (const rate of values.rate.split(',').map(Number)) {
      await measure(server, rate, runId, swap);
      swap = null; // only the first window sees the swap
    }
  } catch (err) {
    console.error(server.tail(30));
    throw err;
  } finally {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
