/**
 * The Redis connection the HTTP rate limiter counts in (src/api/rate-limit.ts), so a limit holds across
 * every API replica. Its own connection, tuned for a check that sits in front of every request: no
 * offline queue and no retries, so while Redis is away a command fails at once (and the request goes
 * through unlimited) instead of waiting for a reconnection; a slow Redis costs a request at most
 * `commandTimeoutMs`.
 */
import { Redis } from 'ioredis';

/** Told once when Redis becomes unreachable (with the error) and once when it is back (null). */
export type ReachabilityListener = (err: Error | null) => void;

export function createRateLimitRedis(
  url: string,
  onReachability: ReachabilityListener,
  options: { commandTimeoutMs?: number } = {},
): Redis {
  const client = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 2000,
    commandTimeout: options.commandTimeoutMs ?? 250,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
  });
  // ioredis reports every failed reconnection: log the outage once, and its end.
  let up = true;
  client.on('error', (err: Error) => {
    if (!up) return;
    up = false;
    onReachability(err);
  });
  client.on('ready', () => {
    if (up) return;
    up = true;
    onReachability(null);
  });
  return client;
}
