/**
 * The open-loop load generator of bench/http-load.ts, run as its own process:
 * `node bin/run-ts.js bench/load-generator.ts '<LoadSpec as JSON>'`; prints one `RESULT <LoadResult>` line.
 *
 * Request i is due at start + i / rate and is sent then whatever earlier requests are doing (node:http,
 * keep-alive, enough sockets that a slow answer never holds back the next send). Latency counts from the
 * intended send time, so a server that falls behind cannot hide its queue (no coordinated omission).
 */
import { Agent, request as httpRequest } from 'node:http';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import type { LoadResult, LoadSpec, Route, RouteResult, Scenario } from './http-load.ts';
import { pct } from './http-load.ts';

const spec = JSON.parse(process.argv[2]) as LoadSpec;

/** mixed: of every 10 requests, 6 recommendations, 3 single-event ingestions, 1 popular. */
const MIXED: readonly Route[] = [
  'recommend',
  'ingest',
  'recommend',
  'popular',
  'recommend',
  'ingest',
  'recommend',
  'recommend',
  'ingest',
  'recommend',
];

const routeOf = (scenario: Scenario, i: number): Route => (scenario === 'mixed' ? MIXED[i % 10] : scenario);

interface Call {
  method: 'GET' | 'POST';
  path: string;
  body?: string;
}

/** Users and items visited evenly (a prime stride visits them all) and spread over the run. */
function callFor(route: Route, i: number): Call {
  const user = `u${1 + ((i * 7919) % spec.users)}`;
  const item = `i${1 + ((i * 104_729) % spec.items)}`;
  switch (route) {
    case 'recommend':
      return { method: 'GET', path: `/v1/users/${user}/recommendations?k=10` };
    case 'similar':
      return { method: 'GET', path: `/v1/items/${item}/similar?k=10` };
    case 'popular':
      return { method: 'GET', path: '/v1/popular?k=10' };
    case 'ingest': {
      const event = { event_id: `load-${spec.runId}-${i}`, user_id: user, item_id: item, type: 'view' };
      return {
        method: 'POST',
        path: '/v1/events',
        body: JSON.stringify({ ...event, timestamp: Date.now() }),
      };
    }
  }
}

/** What one route collected during the measured part of the run. */
class RouteStats {
  readonly latencies: number[] = [];
  /** The same latencies counted from the actual send. */
  readonly fromSend: number[] = [];
  ok = 0;
  timeouts = 0;
  personalized = 0;
  readonly errors: Record<string, number> = {};

  constructor(readonly route: Route) {}

  result(): RouteResult {
    const s = Float64Array.from(this.latencies).sort();
    const [p50, p90, p99, p999] = [50, 90, 99, 99.9].map((p) => pct(s, p));
    return {
      route: this.route,
      sent: s.length,
      ok: this.ok,
      errors: this.errors,
      timeouts: this.timeouts,
      personalized: this.personalized,
      ...{ p50, p90, p99, p999 },
      max: s.length > 0 ? s[s.length - 1] : NaN,
      p99FromSend: pct(Float64Array.from(this.fromSend).sort(), 99),
    };
  }
}

const TIMEOUT = 'timeout';

async function main(): Promise<LoadResult> {
  const targets = spec.targets.map((t) => new URL(t));
  const warm = Math.round(spec.rate * spec.warmupSeconds);
  const total = warm + Math.round(spec.rate * spec.seconds);
  const interval = 1000 / spec.rate;
  const agents = targets.map(() => new Agent({ keepAlive: true, maxSockets: 1024 }));
  const stats = new Map<Route, RouteStats>();
  let finished = 0;
  let maxSendLagMs = 0;
  let lastSend = 0;
  let lastAnswer = 0;
  const start = performance.now() + 100;
  let resolveDone: () => void = () => undefined;
  const done = new Promise<void>((r) => (resolveDone = r));

  const finish = (
    i: number,
    route: Route,
    times: { intended: number; sent: number },
    error: string | null,
    body: string,
  ) => {
    const now = performance.now();
    lastAnswer = now;
    if (i >= warm) {
      let st = stats.get(route);
      if (!st) stats.set(route, (st = new RouteStats(route)));
      st.latencies.push(now - times.intended);
      st.fromSend.push(now - times.sent);
      if (error === null) {
        st.ok++;
        if (body.includes('"source":"personalized"')) st.personalized++;
      } else if (error === TIMEOUT) st.timeouts++;
      else st.errors[error] = (st.errors[error] ?? 0) + 1;
    }
    if (++finished === total) resolveDone();
  };

  const fire = (i: number) => {
    const intended = start + i * interval;
    const now = performance.now();
    maxSendLagMs = Math.max(maxSendLagMs, now - intended);
    lastSend = now;
    const t = i % targets.length;
    const route = routeOf(spec.scenario, i);
    const call = callFor(route, i);
    let settled = false;
    const settle = (error: string | null, body = '') => {
      if (settled) return;
      settled = true;
      finish(i, route, { intended, sent: now }, error, body);
    };
    const headers = call.body === undefined ? {} : { 'content-type': 'application/json' };
    const req = httpRequest(
      {
        host: targets[t].hostname,
        port: targets[t].port,
        agent: agents[t],
        method: call.method,
        path: call.path,
        headers,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        const status = res.statusCode ?? 0;
        res.on('end', () => settle(status >= 200 && status < 300 ? null : `HTTP ${status}`, body));
        res.on('error', (e) => settle(e.message));
      },
    );
    req.setTimeout(spec.timeoutMs, () => {
      settle(TIMEOUT);
      req.destroy();
    });
    req.on('error', (e: NodeJS.ErrnoException) => settle(e.code ?? e.message));
    req.end(call.body);
  };

  let next = 0;
  const tick = () => {
    const now = performance.now();
    while (next < total && start + next * interval <= now) fire(next++);
    if (next < total) setTimeout(tick, Math.max(0, start + next * interval - performance.now()));
  };
  setTimeout(tick, Math.max(0, start - performance.now()));
  // The generator's own pauses in the measured window: its event loop's delay and its collections.
  const loop = monitorEventLoopDelay({ resolution: 1 });
  const gc = { count: 0, totalMs: 0, maxMs: 0 };
  const gcObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (e.startTime < start + warm * interval) continue;
      gc.count++;
      gc.totalMs += e.duration;
      gc.maxMs = Math.max(gc.maxMs, e.duration);
    }
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  setTimeout(() => loop.enable(), Math.max(0, start + warm * interval - performance.now()));
  await done;
  loop.disable();
  gcObserver.disconnect();
  for (const a of agents) a.destroy();

  const measuredStart = start + warm * interval;
  return {
    rate: spec.rate,
    seconds: spec.seconds,
    sendSeconds: (lastSend - measuredStart) / 1000,
    totalSeconds: (lastAnswer - measuredStart) / 1000,
    maxSendLagMs,
    generator: {
      loopDelayP99Ms: loop.percentile(99) / 1e6,
      loopDelayMaxMs: loop.max / 1e6,
      gcCount: gc.count,
      gcTotalMs: gc.totalMs,
      gcMaxMs: gc.maxMs,
    },
    routes: [...stats.values()].map((s) => s.result()),
  };
}

process.stdout.write(`RESULT ${JSON.stringify(await main())}\n`);
