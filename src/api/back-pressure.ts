/**
 * Back-pressure: a process refuses new work it cannot finish in time instead of queueing it without
 * limit. Past `server.maxInFlight` requests received and not yet answered, or past a mean event-loop
 * delay of `server.maxEventLoopDelayMs` over the last window, a new request is answered at once with 503
 * CAIRN_OVERLOADED and `Retry-After`, before authentication or body parsing (the cheapest answer there
 * is). `/health/live` is never refused (an overloaded process is alive; restarting it would not help), nor
 * `/metrics` (overload is when it is needed); readiness is, answering 503 `not_ready` with a failing
 * `overload` check, which takes the process out of rotation until it recovers.
 *
 * In flight is counted from the `onRequest` hook to the raw response's `close`, which fires whether the
 * answer was sent or the client went away, so an aborted request never leaks a slot.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Config } from '../config/load.ts';
import { ERROR_CODES } from '../errors/errors.ts';
import type { ErrorBodyWire, ReadyWire } from './schemas.ts';

const EXEMPT_ROUTES = new Set(['/health/live', '/metrics']);
/** Event-loop delay is averaged over windows this long: short enough to react, long enough to smooth GC. */
const WINDOW_MS = 500;
const RESOLUTION_MS = 10;

export type OverloadReason = 'in_flight' | 'event_loop_delay';

/** The current mean event-loop delay in ms. */
export type EventLoopDelayProbe = { delayMs(): number; close(): void };

export interface BackPressureDeps {
  config: Readonly<Pick<Config, 'server'>>;
  /** Where `cairn_http_in_flight` and `cairn_http_shed_total` are registered. */
  registry: Registry;
  /** Replaces the event-loop monitor (tests); closed with the app. */
  probe?: EventLoopDelayProbe;
}

/**
 * Mean event-loop delay over the last complete window, from Node's own monitor (a 10 ms timer whose
 * lateness is recorded natively), as `@fastify/under-pressure` measures it.
 */
export function eventLoopDelayProbe(windowMs = WINDOW_MS): EventLoopDelayProbe {
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  histogram.enable();
  let delay = 0;
  let count = 0;
  let sumNs = 0;
  const timer = setInterval(() => {
    // Windows are differences of the running totals: reset() would also forget when the monitor last
    // ticked, so a stall starting right after it would go unrecorded.
    const nowCount = histogram.count;
    const nowSum = nowCount > 0 ? histogram.mean * nowCount : 0;
    const ticks = nowCount - count;
    // The histogram records whole timer periods (ns); the period itself is not delay.
    delay = ticks > 0 ? Math.max(0, (nowSum - sumNs) / ticks / 1e6 - RESOLUTION_MS) : 0;
    count = nowCount;
    sumNs = nowSum;
  }, windowMs);
  timer.unref();
  return {
    delayMs: () => delay,
    close: () => {
      clearInterval(timer);
      histogram.disable();
    },
  };
}

/** Registers the overload check as an `onRequest` hook: register it before the costly ones (access control). */
export function registerBackPressure(app: FastifyInstance, deps: BackPressureDeps): void {
  const { maxInFlight, maxEventLoopDelayMs } = deps.config.server;
  if (maxInFlight <= 0 && maxEventLoopDelayMs <= 0) return;
  const probe = maxEventLoopDelayMs > 0 ? (deps.probe ?? eventLoopDelayProbe()) : null;
  if (probe) app.addHook('onClose', (_instance, done) => (probe.close(), done()));
  const { inFlightGauge, shed } = backPressureMetrics(deps.registry);
  let inFlight = 0;
  const release = () => {
    inFlight--;
    inFlightGauge.dec();
  };

  app.addHook('onRequest', (request, reply, done) => {
    const route = request.routeOptions.url;
    if (route !== undefined && EXEMPT_ROUTES.has(route)) return done();
    const delayMs = probe?.delayMs() ?? 0;
    const reason: OverloadReason | null =
      maxInFlight > 0 && inFlight >= maxInFlight
        ? 'in_flight'
        : probe && delayMs > maxEventLoopDelayMs
          ? 'event_loop_delay'
          : null;
    if (reason !== null) {
      shed.inc({ reason });
      refuse(request, reply, reason, reason === 'in_flight' ? maxInFlight : maxEventLoopDelayMs, delayMs);
      return;
    }
    inFlight++;
    inFlightGauge.inc();
    reply.raw.once('close', release);
    done();
  });
}

/** 503 in the Cairn error shape, sent from the hook: no error-level log line per refused request. */
function refuse(
  request: FastifyRequest,
  reply: FastifyReply,
  reason: OverloadReason,
  limit: number,
  delayMs: number,
): void {
  // An event-loop stall is retried once it may have passed; an in-flight limit clears within a second.
  const retryAfter = reason === 'event_loop_delay' ? Math.max(1, Math.ceil(delayMs / 1000)) : 1;
  const message =
    reason === 'in_flight'
      ? `more than ${limit} requests in flight in this process; retry in ${retryAfter} s`
      : `event loop delayed ${Math.round(delayMs)} ms (limit ${limit} ms); retry in ${retryAfter} s`;
  // Readiness answers in its own shape, so probes and orchestrators read the reason as a failing check.
  const body: ErrorBodyWire | ReadyWire =
    request.routeOptions.url === '/health/ready'
      ? { status: 'not_ready', checks: { overload: { ok: false, detail: message } } }
      : {
          error: {
            code: 'CAIRN_OVERLOADED',
            message,
            details: { reason, limit, retry_after_seconds: retryAfter, request_id: request.id },
          },
        };
  void reply.code(ERROR_CODES.CAIRN_OVERLOADED).header('retry-after', String(retryAfter)).send(body);
}

/** Reused when a registry already has them (one process may build more than one app on it). */
function backPressureMetrics(registry: Registry) {
  const inFlightGauge =
    (registry.getSingleMetric('cairn_http_in_flight') as Gauge | undefined) ??
    new Gauge({
      name: 'cairn_http_in_flight',
      help: 'HTTP requests received and not yet answered (counted against server.maxInFlight)',
      registers: [registry],
    });
  const shed =
    (registry.getSingleMetric('cairn_http_shed_total') as Counter<'reason'> | undefined) ??
    new Counter({
      name: 'cairn_http_shed_total',
      help: 'Requests refused with 503 CAIRN_OVERLOADED, by reason (in_flight, event_loop_delay)',
      labelNames: ['reason'] as const,
      registers: [registry],
    });
  return { inFlightGauge, shed };
}
