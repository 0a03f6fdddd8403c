/**
 * The Redis connection the HTTP rate limiter counts in (src/api/rate-limit.ts), so a limit holds across
 * every API replica. Its own connection, tuned for a check that sits in front of every request: no
 * offline queue and no retries, so while Redis is away a command fails at once (and the request goes
 * through unlimited) instead of waiting for a reconnection; a slow Redis costs a request at most
 * `commandTimeoutMs`.
 */
import { Redis } from 'ioredis';
import type { Logger } from '../../monitoring/logger.ts';

export function createRateLimitRedis(
  url: string,
  logger: Logger,
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
    logger.warn({ err }, 'rate-limit Redis unreachable; requests are not limited until it is back');
  });
  client.on('ready', () => {
    if (up) return;
    up = true;
    logger.info('rate-limit Redis reachable again');
  });
  return client;
}
