/**
 * The Redis online state while its server is gone (a PRIVATE redis-server, helpers/private-servers.ts,
 * killed and started again on the same port and data): a call made while the client waits to reconnect
 * fails at once with CAIRN_UNAVAILABLE — it is not queued until the next connection attempt, which would
 * hold every recommendation of the outage for seconds — and the state answers again, with its data
 * (AOF), once the server is back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoredEvent } from '../../src/domain/types.ts';
import { RedisOnlineState } from '../../src/storage/redis/online-state.ts';
import { PrivateServer } from './helpers/private-servers.ts';
import { pollUntil } from './helpers/processes.ts';

const OPTIONS = {
  types: { view: { weight: 1 } },
  popularityHalfLifeDays: 7,
  historyLimit: 5,
  keyPrefix: 'outage:',
};

const view = (seq: number, itemId: string): StoredEvent => ({
  seq,
  eventId: `e${seq}`,
  userId: 'u1',
  itemId,
  type: 'view',
  value: null,
  timestamp: Date.now(),
  context: null,
});

let server: PrivateServer;

beforeAll(async () => {
  server = await PrivateServer.start('redis');
});

afterAll(async () => {
  await server?.destroy();
});

describe('Redis online state during an outage', () => {
  it('fails at once while reconnecting, without waiting for a connection attempt, and recovers', async () => {
    const state = await RedisOnlineState.open({ ...OPTIONS, url: server.url });
    try {
      await state.applyEvents([view(1, 'a')]);
      expect(await state.popularCount()).toBe(1);

      await server.kill();
      // The client notices the lost connection and waits before its next attempt.
      await pollUntil(
        'the client to wait for a reconnection',
        () => Promise.resolve(state.client.status === 'reconnecting'),
        {
          timeoutMs: 10_000,
          intervalMs: 5,
        },
      );
      const attempts: string[] = [];
      const count = () => attempts.push(state.client.status);
      state.client.on('connecting', count);
      try {
        await expect(state.recentEvents('u1', 5)).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
        await expect(state.applyEvents([view(2, 'b')])).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
        expect(attempts, 'connection attempts made before the calls failed').toEqual([]);
      } finally {
        state.client.off('connecting', count);
      }

      await server.start();
      await pollUntil(
        'the state to answer again',
        async () => {
          try {
            return (await state.popularCount()) === 1;
          } catch {
            return false;
          }
        },
        { timeoutMs: 15_000, intervalMs: 50 },
      );
      await state.applyEvents([view(2, 'b')]);
      expect((await state.recentEvents('u1', 5)).map((e) => e.itemId)).toEqual(['b', 'a']);
    } finally {
      await state.close();
    }
  });
});
