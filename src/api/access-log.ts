/**
 * Access logs that stay cheap under load. One line per request at `info` cost ~30 µs of CPU and hundreds
 * of MB a day, so at `info` only a sample of ordinary requests gets a line (`logging.accessSample`), plus
 * every request worth a look: transport errors, client errors other than 404/429, server errors other
 * than 503 (those come in floods: overload and outages, whose causes the error handler logs) and requests
 * slower than `logging.slowRequestMs`. At `debug` every request gets its line, as before.
 * Every request is counted in a per-route summary written every `logging.accessSummarySeconds`: count,
 * status classes, p50/p99/max ms, from fixed log-scale buckets (one array increment per request).
 *
 * Lines name the route pattern, never the raw URL: user ids in paths appear only as their pseudonym
 * (`user`), and not at all without a pseudonymizer. Probes and scrapes never get a line at `info`.
 */
import { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Config } from '../config/load.ts';
import type { Logger } from '../monitoring/logger.ts';

const QUIET_ROUTES = new Set(['/metrics', '/health/live', '/health/ready']);
/** Statuses that arrive in floods (unknown ids, rate limits, shedding): sampled like successes. */
const SAMPLED_STATUSES = new Set([404, 429, 503]);

export interface AccessLogOptions {
  logging: Pick<Config['logging'], 'accessSample' | 'slowRequestMs' | 'accessSummarySeconds'>;
  /** Where summary lines go (request lines go to each request's child logger). */
  logger: Logger;
  /** Keyed hash of user ids (security/pseudonym.ts); without it user ids are left out. */
  pseudonymize?: (id: string) => string;
  /** Uniform in [0, 1); tests pass a fixed one. */
  random?: () => number;
}

/** Fastify's per-request logging, replaced by sampled lines and per-route summaries. */
export class AccessLogController extends LogController {
  private readonly summary = new RouteSummary();
  private readonly sample: number;
  private readonly slowMs: number;
  private readonly random: () => number;
  private readonly summarySeconds: number;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private windowStart = Date.now();

  constructor(private readonly options: AccessLogOptions) {
    super({ requestIdLogLabel: 'request_id' });
    this.sample = options.logging.accessSample;
    this.slowMs = options.logging.slowRequestMs;
    this.summarySeconds = options.logging.accessSummarySeconds;
    this.random = options.random ?? (() => Math.random());
  }

  override incomingRequest(): void {}

  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    const route = request.routeOptions.url;
    const status = reply.statusCode;
    const ms = reply.elapsedTime;
    if (this.timer === null && this.summarySeconds > 0 && !this.closed) this.startSummaries();
    this.summary.record(request.method, route ?? 'unmatched', status, ms);
    if (error) {
      reply.log.error({ ...this.fields(request, route, status, ms), err: error }, 'request errored');
      return;
    }
    const quiet = route !== undefined && QUIET_ROUTES.has(route);
    const notable = !quiet && (this.isNotable(status) || (this.slowMs > 0 && ms > this.slowMs));
    if (notable) {
      reply.log.info(this.fields(request, route, status, ms), 'request completed');
    } else if (!quiet && this.sample > 0 && this.random() < this.sample) {
      // The rate lets a reader weigh sampled lines back into counts.
      reply.log.info(
        { ...this.fields(request, route, status, ms), sample_rate: this.sample },
        'request completed',
      );
    } else if (this.options.logger.isLevelEnabled('debug')) {
      // Checked first: building the fields is most of the cost of a line nobody writes.
      reply.log.debug(this.fields(request, route, status, ms), 'request completed');
    }
  }

  /**
   * Writes summaries every `logging.accessSummarySeconds` from `app`'s first request, and a last one when
   * it closes. (Started lazily rather than from `onReady`: an idle app holds no timer.)
   */
  attach(app: FastifyInstance): void {
    if (this.summarySeconds <= 0) return;
    app.addHook('onClose', (_instance, done) => {
      this.closed = true;
      if (this.timer) clearInterval(this.timer);
      this.timer = null;
      this.flush();
      done();
    });
  }

  private startSummaries(): void {
    this.windowStart = Date.now();
    this.timer = setInterval(() => this.flush(), this.summarySeconds * 1000);
    this.timer.unref();
  }

  /** Writes one summary line per route that had requests since the last flush, and starts a new window. */
  flush(): void {
    const now = Date.now();
    const seconds = Math.round((now - this.windowStart) / 100) / 10;
    this.windowStart = now;
    for (const line of this.summary.drain()) {
      this.options.logger.info({ ...line, seconds }, 'requests summary');
    }
  }

  private isNotable(status: number): boolean {
    return status >= 400 && !SAMPLED_STATUSES.has(status);
  }

  private fields(request: FastifyRequest, route: string | undefined, status: number, ms: number) {
    return {
      method: request.method,
      route: route ?? 'unmatched',
      ...routeParams(route, request.params, this.options.pseudonymize),
      status,
      ms: round2(ms),
    };
  }
}

/**
 * Path parameters for a request line: a user id (`/v1/users/:id…`) as `user`, its pseudonym; other ids
 * (items, models, jobs, experiments) as they are.
 */
export function routeParams(
  route: string | undefined,
  params: unknown,
  pseudonymize: ((id: string) => string) | undefined,
): { user?: string; params?: Record<string, string> } {
  if (route === undefined || typeof params !== 'object' || params === null) return {};
  const out: { user?: string; params?: Record<string, string> } = {};
  for (const [name, value] of Object.entries(params)) {
    if (typeof value !== 'string') continue;
    if (route.startsWith('/v1/users/:') && name === 'id') {
      if (pseudonymize) out.user = pseudonymize(value);
    } else {
      (out.params ??= {})[name] = value;
    }
  }
  return out;
}

/* ------------------------------------------------------------------ per-route summary */

/** Smallest latency bucket bound (ms); buckets grow by 5 %, so a percentile is off by at most 5 %. */
const MIN_MS = 0.01;
const GROWTH = 1.05;
const LOG_GROWTH = Math.log(GROWTH);
/** Up to ~2 minutes; slower requests land in the last bucket (the exact max is kept besides). */
const BUCKETS = Math.ceil(Math.log(120_000 / MIN_MS) / LOG_GROWTH) + 1;

export interface RouteSummaryLine {
  method: string;
  route: string;
  count: number;
  /** Requests by status class, e.g. `{ "2xx": 97, "4xx": 3 }`; classes without requests are left out. */
  statuses: Record<string, number>;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
}

interface RouteStats {
  method: string;
  route: string;
  count: number;
  /** Index c holds the requests answered with status (c+1)xx. */
  classes: Uint32Array;
  buckets: Uint32Array;
  maxMs: number;
}

/** Request counts and latency histograms by method and route pattern, drained once per interval. */
export class RouteSummary {
  private readonly stats = new Map<string, RouteStats>();

  record(method: string, route: string, status: number, ms: number): void {
    const key = `${method} ${route}`;
    let s = this.stats.get(key);
    if (s === undefined) {
      s = {
        method,
        route,
        count: 0,
        classes: new Uint32Array(5),
        buckets: new Uint32Array(BUCKETS),
        maxMs: 0,
      };
      this.stats.set(key, s);
    }
    s.count++;
    const cls = Math.floor(status / 100) - 1;
    if (cls >= 0 && cls < 5) s.classes[cls]++;
    s.buckets[bucketOf(ms)]++;
    if (ms > s.maxMs) s.maxMs = ms;
  }

  /** The lines of every route with requests since the last drain; the counts restart at zero. */
  drain(): RouteSummaryLine[] {
    const lines: RouteSummaryLine[] = [];
    for (const s of this.stats.values()) {
      if (s.count === 0) continue;
      lines.push(toLine(s));
      // Kept and zeroed rather than dropped: the set of routes is small and fixed.
      s.count = 0;
      s.maxMs = 0;
      s.classes.fill(0);
      s.buckets.fill(0);
    }
    return lines;
  }
}

function bucketOf(ms: number): number {
  if (!(ms > MIN_MS)) return 0;
  return Math.min(BUCKETS - 1, Math.ceil(Math.log(ms / MIN_MS) / LOG_GROWTH));
}

function toLine(s: RouteStats): RouteSummaryLine {
  const statuses: Record<string, number> = {};
  s.classes.forEach((n, c) => {
    if (n > 0) statuses[`${c + 1}xx`] = n;
  });
  return {
    method: s.method,
    route: s.route,
    count: s.count,
    statuses,
    p50_ms: round2(percentile(s, 0.5)),
    p99_ms: round2(percentile(s, 0.99)),
    max_ms: round2(s.maxMs),
  };
}

/** The upper bound of the bucket holding the q-quantile, never above the exact max. */
function percentile(s: RouteStats, q: number): number {
  const rank = Math.max(1, Math.ceil(q * s.count));
  let seen = 0;
  for (let i = 0; i < BUCKETS; i++) {
    seen += s.buckets[i];
    if (seen >= rank) return Math.min(s.maxMs, MIN_MS * GROWTH ** i);
  }
  return s.maxMs;
}

function round2(ms: number): number {
  return Math.round(ms * 100) / 100;
}
