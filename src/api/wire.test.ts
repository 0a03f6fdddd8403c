import { describe, expect, it } from 'vitest';
import type { Job } from '../domain/types.ts';
import { mapLimited } from './routes/recommendations.ts';
import {
  eventOutcomesToWire,
  isoTime,
  jobToWire,
  parseExclude,
  listQueryToOptions,
  recommendBodyToCall,
  recommendationToWire,
  recommendQueryToRequest,
  similarToWire,
} from './wire.ts';

describe('wire mapping', () => {
  it('formats epoch milliseconds as ISO-8601 UTC', () => {
    expect(isoTime(0)).toBe('1970-01-01T00:00:00.000Z');
    expect(isoTime(Date.UTC(2024, 1, 29, 23, 59, 59, 1))).toBe('2024-02-29T23:59:59.001Z');
  });

  it('parses exclude lists: comma-separated and repeated, trimmed, deduplicated, order kept', () => {
    expect(parseExclude(undefined)).toBeUndefined();
    expect(parseExclude([])).toBeUndefined();
    expect(parseExclude([' , ,'])).toBeUndefined();
    expect(parseExclude(['b,a', ' c ', 'a', 'd,,b'])).toEqual(['b', 'a', 'c', 'd']);
  });

  it('builds service requests from the query and the body without inventing fields', () => {
    expect(recommendQueryToRequest('u', { k: 3 })).toEqual({ userId: 'u', k: 3 });
    expect(recommendQueryToRequest('u', { k: 3, category: 'c', explain: false, exclude: ['x,y'] })).toEqual({
      userId: 'u',
      k: 3,
      category: 'c',
      explain: false,
      exclude: ['x', 'y'],
    });
    expect(recommendBodyToCall({ user_id: 'u' }, 7)).toEqual({
      session: false,
      request: { userId: 'u', k: 7 },
    });
    expect(recommendBodyToCall({ user_id: 'u', k: 2, exclude: [] }, 7)).toEqual({
      session: false,
      request: { userId: 'u', k: 2 },
    });
    expect(recommendQueryToRequest('u', { fields: ['title,price', 'title'] })).toEqual({
      userId: 'u',
      fields: ['title', 'price'],
    });
    expect(listQueryToOptions({ k: 2, explain: true, fields: ['categories'] })).toEqual({
      k: 2,
      explain: true,
      fields: ['categories'],
    });
  });

  it('maps a body with items to a session call, and refuses neither or both of user_id and items', () => {
    expect(recommendBodyToCall({ items: ['a', 'b'], fields: ['price'], explain: true }, 7)).toEqual({
      session: true,
      request: { items: ['a', 'b'], k: 7, fields: ['price'], explain: true },
    });
    const fieldOf = (body: Parameters<typeof recommendBodyToCall>[0]) => {
      try {
        recommendBodyToCall(body, 7);
      } catch (e) {
        return (e as { code: string; details: { fields: { field: string }[] } }).details.fields[0].field;
      }
      return null;
    };
    expect(fieldOf({ k: 3 })).toBe('user_id');
    expect(fieldOf({ user_id: 'u', items: ['a'] })).toBe('items');
  });

  it('puts asked catalog fields and explanations on the wire, and nothing that was not asked', () => {
    const base = { requestId: 'q', modelVersion: 'v', source: 'session' as const, degraded: false };
    const wire = recommendationToWire({
      ...base,
      userId: null,
      fallbackReason: null,
      items: [
        {
          itemId: 'a',
          score: 1,
          reason: 'r',
          title: null,
          categories: ['x'],
          price: 9.5,
          attributes: { brand: 'Acme' },
          explanation: {
            link: 'session',
            model: 'als',
            contributions: [{ itemId: 'h', weight: 1 }],
            otherWeight: 0,
          },
        },
        { itemId: 'b', score: 0.5, reason: 'r' },
      ],
    });
    expect(wire.user_id).toBeNull();
    expect(wire.items).toEqual([
      {
        item_id: 'a',
        score: 1,
        reason: 'r',
        title: null,
        categories: ['x'],
        price: 9.5,
        attributes: { brand: 'Acme' },
        explanation: {
          link: 'session',
          model: 'als',
          contributions: [{ item_id: 'h', weight: 1 }],
          other_weight: 0,
        },
      },
      { item_id: 'b', score: 0.5, reason: 'r' },
    ]);
  });

  it('never writes a score that is not a finite number (it would be serialized as null)', () => {
    const items = [
      { itemId: 'a', score: 2.5, reason: 'r' },
      { itemId: 'b', score: Infinity, reason: 'r' },
      { itemId: 'c', score: Number.NaN, reason: 'r' },
      { itemId: 'd', score: null as unknown as number, reason: 'r' },
      { itemId: 'e', score: 0, reason: 'r' },
    ];
    const base = { requestId: 'q', modelVersion: null, source: 'fallback' as const, degraded: false, items };
    const rec = recommendationToWire({ ...base, userId: 'u', fallbackReason: null, experiment: null });
    const similar = similarToWire({ ...base, itemId: null, fallbackReason: null });
    for (const wire of [rec, similar]) {
      expect(wire.items).toEqual([
        { item_id: 'a', score: 2.5, reason: 'r' },
        { item_id: 'e', score: 0, reason: 'r' },
      ]);
      expect(JSON.stringify(wire.items)).not.toMatch(/null|Infinity|NaN/);
    }
  });

  it('counts event outcomes by status and keeps the error only where there is one', () => {
    const wire = eventOutcomesToWire([
      { index: 0, eventId: 'a', status: 'accepted' },
      { index: 1, eventId: 'a', status: 'duplicate' },
      { index: 2, eventId: null, status: 'rejected', error: { code: 'C', field: 'f', message: 'm' } },
      { index: 3, eventId: 'b', status: 'accepted' },
    ]);
    expect([wire.accepted, wire.duplicates, wire.rejected]).toEqual([2, 1, 1]);
    expect(wire.results.map((r) => 'error' in r)).toEqual([false, false, true, false]);
    expect(wire.results[2]).toEqual({
      index: 2,
      event_id: null,
      status: 'rejected',
      error: { code: 'C', field: 'f', message: 'm' },
    });
  });

  it('omits a job result and error while they are null', () => {
    const job: Job = {
      id: 'j',
      name: 'train',
      payload: {},
      status: 'running',
      progress: 0.25,
      result: null,
      error: null,
      createdAt: 0,
      updatedAt: 1000,
      attempts: 1,
      maxAttempts: 3,
      owner: 'w1',
      leaseUntil: 31_000,
      runAt: 0,
      dedupeKey: null,
    };
    expect(jobToWire(job)).toEqual({
      job_id: 'j',
      name: 'train',
      status: 'running',
      progress: 0.25,
      attempts: 1,
      max_attempts: 3,
      created_at: '1970-01-01T00:00:00.000Z',
      updated_at: '1970-01-01T00:00:01.000Z',
    });
    expect(jobToWire({ ...job, status: 'succeeded', result: { version: 'v3' } })).toMatchObject({
      result: { version: 'v3' },
    });
  });
});

describe('mapLimited', () => {
  it('keeps input order and never runs more than `limit` calls at once', async () => {
    let inFlight = 0;
    let peak = 0;
    const inputs = Array.from({ length: 25 }, (_, i) => i);
    const out = await mapLimited(inputs, 4, async (x) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      // finish out of order: later inputs resolve sooner
      await new Promise((r) => setTimeout(r, (25 - x) % 5));
      inFlight--;
      return x * 2;
    });
    expect(out).toEqual(inputs.map((x) => x * 2));
    expect(peak).toBe(4);
    expect(await mapLimited([], 4, () => Promise.resolve(1))).toEqual([]);
  });

  it('rejects when one call fails', async () => {
    await expect(
      mapLimited([1, 2, 3], 2, (x) => (x === 2 ? Promise.reject(new Error('no')) : Promise.resolve(x))),
    ).rejects.toThrow('no');
  });
});
