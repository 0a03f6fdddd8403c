/**
 * Rate limits (`@fastify/rate-limit`): a request with an API key counts against its key
 * (`rateLimit.perKey` per `rateLimit.windowSeconds`), any other against its client IP (`rateLimit.perIp`).
 * `/health/*` is never limited, nor loopback clients while `rateLimit.exemptLoopback` holds. Over the
 * limit: 429 CAIRN_RATE_LIMITED with `Retry-After`.
 *
 * Counters live in the Redis connection the composition root passes (storage/redis/rate-limit.ts, when
 * `redis.url` is set), so a limit holds across replicas; else in this process. An unreachable Redis lets
 * requests through (`skipOnError`): a limiter outage must not become an API outage.
 */
import rateLimit, { normalizeIP } from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import type { Redis } from 'ioredis';
import type { Config } from '../config/load.ts';
import { CairnError } from '../errors/errors.ts';

const KEY_PREFIX = 'key:';
const IP_PREFIX = 'ip:';

/** 127.0.0.0/8, ::1 and the IPv4-mapped form of 127/8 (what a dual-stack socket reports). */
export function isLoopback(ip: string): boolean {
  return ip === '::1' || ip.startsWith('127.') || ip.startsWith('::ffff:127.');
}

/** The counter a request counts against: its API key, else its client IP. */
export function rateLimitKey(request: FastifyRequest): string {
  const principal = request.ctx?.principal;
  if (principal?.kind === 'key') return KEY_PREFIX + principal.id;
  return IP_PREFIX + normalizeIP(request.ip);
}

export interface RateLimitDeps {
  config: Readonly<Pick<Config, 'rateLimit' | 'redis'>>;
  /** Where counters are kept across replicas (null or absent: in this process). Closed with the app. */
  redis?: Redis | null;
}

/**
 * Registers the limiter on `app`; call before any route is declared. Every route but `/health/*` gets the
 * check as a route-level `onRequest` hook, which Fastify runs after the app-level `onRequest` hooks that
 * build the request context and authenticate (so the key is known), and before the body is read.
 *
 * The hook is attached by our own `onRoute` hook, installed at once: the plugin's global mode would
 * attach it from an `onRoute` hook that only exists once the plugin has loaded, i.e. after the routes
 * of a synchronously built app were declared.
 */
export function registerRateLimit(app: FastifyInstance, deps: RateLimitDeps): void {
  const { config, redis } = deps;
  const limits = config.rateLimit;
  if (redis) app.addHook('onClose', () => redis.quit().then(noop, () => redis.disconnect()));
  if (!limits.enabled) return;

  let check: onRequestAsyncHookHandler | null = null;
  void app
    .register(rateLimit, {
      global: false,
      keyGenerator: rateLimitKey,
      max: (_request, key) => (key.startsWith(KEY_PREFIX) ? limits.perKey : limits.perIp),
      timeWindow: limits.windowSeconds * 1000,
      allowList: (request) => limits.exemptLoopback && isLoopback(request.ip),
      ...(redis ? { redis, nameSpace: `${config.redis.keyPrefix}ratelimit:` } : {}),
      skipOnError: true,
      errorResponseBuilder: (request, context) => {
        const retryAfter = Math.max(1, Math.ceil(context.ttl / 1000));
        const by = rateLimitKey(request).startsWith(KEY_PREFIX) ? 'api_key' : 'ip';
        return new CairnError(
          'CAIRN_RATE_LIMITED',
          `more than ${context.max} requests in ${limits.windowSeconds} s from this ${by === 'ip' ? 'client IP' : 'API key'}; retry in ${retryAfter} s`,
          { limit: context.max, window_seconds: limits.windowSeconds, retry_after_seconds: retryAfter, by },
        );
      },
    })
    .after(() => {
      check = app.rateLimit();
    });
  // Requests are only served once the app is ready, by which time the plugin has loaded.
  const limit: onRequestAsyncHookHandler = function (request, reply) {
    return check!.call(this, request, reply);
  };
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/health/')) return;
    const own = route.onRequest;
    route.onRequest = own === undefined ? [limit] : [...(Array.isArray(own) ? own : [own]), limit];
  });
}

function noop(): void {}
