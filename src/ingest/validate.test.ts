import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load.ts';
import { CairnError } from '../errors/errors.ts';
import {
  MAX_CONTEXT_BYTES,
  MAX_EVENT_VALUE,
  MIN_EVENT_TIMESTAMP,
  createEventValidator,
  deriveEventId,
  parseIsoTime,
  parseItem,
  parseUser,
  validateId,
  validateItem,
  validateUser,
  type EventValidation,
  type ValidationIssue,
} from './validate.ts';

const config = loadConfig({ env: {} });
const validator = createEventValidator(config.events);
const NOW = Date.UTC(2024, 4, 1, 12, 0, 0);
const SKEW_MS = config.events.maxFutureSkewSeconds * 1000;

const base = { user_id: 'u1', item_id: 'i1', type: 'view' };

function issuesOf(
  result: EventValidation | { ok: boolean; issues?: ValidationIssue[] },
): { code: string; field: string }[] {
  if (result.ok) throw new Error('expected a validation failure');
  return (result as { issues: ValidationIssue[] }).issues.map(({ code, field }) => ({ code, field }));
}

function eventIssues(raw: unknown, now = NOW): { code: string; field: string }[] {
  return issuesOf(validator.validate(raw, now));
}

function ok(raw: unknown, now = NOW) {
  const result = validator.validate(raw, now);
  if (!result.ok) throw new Error(`expected valid, got ${JSON.stringify(result.issues)}`);
  return result.event;
}

const V = 'CAIRN_VALIDATION';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-([0-9a-f])[0-9a-f]{3}-([89ab])[0-9a-f]{3}-[0-9a-f]{12}$/;

describe('event validation: shape', () => {
  it('accepts a minimal event and fills defaults', () => {
    const e = ok(base);
    expect(e).toMatchObject({
      userId: 'u1',
      itemId: 'i1',
      type: 'view',
      value: null,
      timestamp: NOW,
      context: null,
    });
    // No timestamp: a random (version 4) UUID.
    expect(UUID.exec(e.eventId)?.[1]).toBe('4');
    expect(ok(base).eventId).not.toBe(e.eventId);
  });

  it('maps every wire field to the domain event', () => {
    const e = ok({
      ...base,
      event_id: 'e-1',
      type: 'rating',
      value: 4.5,
      timestamp: NOW - 1000,
      context: { page: 'home', pos: 3 },
    });
    expect(e).toEqual({
      eventId: 'e-1',
      userId: 'u1',
      itemId: 'i1',
      type: 'rating',
      value: 4.5,
      timestamp: NOW - 1000,
      context: { page: 'home', pos: 3 },
    });
  });

  it('treats null optional fields as absent', () => {
    const e = ok({ ...base, event_id: null, value: null, timestamp: null, context: null });
    expect(e.value).toBeNull();
    expect(e.context).toBeNull();
    expect(e.timestamp).toBe(NOW);
  });

  it.each<[unknown]>([[null], [[]], ['view'], [42], [true]])(
    'rejects a non-object event %j at (root)',
    (raw) => {
      expect(eventIssues(raw)).toEqual([{ code: V, field: '(root)' }]);
    },
  );

  it('rejects unknown top-level fields by name', () => {
    expect(eventIssues({ ...base, userId: 'x', ts: 1 })).toEqual([
      { code: 'CAIRN_UNKNOWN_FIELD', field: 'userId' },
      { code: 'CAIRN_UNKNOWN_FIELD', field: 'ts' },
    ]);
  });

  it('summarises past ten unknown fields', () => {
    const raw: Record<string, unknown> = { ...base };
    for (let i = 0; i < 15; i++) raw[`x${i}`] = i;
    const issues = eventIssues(raw);
    expect(issues).toHaveLength(11);
    expect(issues.slice(0, 10).map((i) => i.field)).toEqual(Array.from({ length: 10 }, (_, i) => `x${i}`));
    expect(issues[10]).toEqual({ code: 'CAIRN_UNKNOWN_FIELD', field: '(root)' });
  });

  it('reports every problem of one event at once, in field order', () => {
    const result = validator.validate(
      {
        extra: 1,
        event_id: 'has space',
        user_id: '',
        item_id: 3.5,
        type: 'teleport',
        timestamp: 'yesterday',
        context: [],
      },
      NOW,
    );
    expect(issuesOf(result)).toEqual([
      { code: 'CAIRN_UNKNOWN_FIELD', field: 'extra' },
      { code: V, field: 'event_id' },
      { code: V, field: 'user_id' },
      { code: V, field: 'item_id' },
      { code: 'CAIRN_UNKNOWN_EVENT_TYPE', field: 'type' },
      { code: V, field: 'timestamp' },
      { code: V, field: 'context' },
    ]);
    expect(result.ok ? null : result.eventId).toBeNull();
  });

  it('keeps a valid client event id on a rejected event for correlation', () => {
    const result = validator.validate({ ...base, event_id: 'e-9', type: 'nope' }, NOW);
    expect(result.ok ? null : result.eventId).toBe('e-9');
  });

  it('parse() throws CAIRN_VALIDATION listing every issue with its code', () => {
    let thrown: unknown;
    try {
      validator.parse({ user_id: 'u', type: 'nope' }, NOW);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(CairnError);
    const err = thrown as CairnError;
    expect(err.code).toBe('CAIRN_VALIDATION');
    expect(err.status).toBe(400);
    expect((err.details as { fields: ValidationIssue[] }).fields.map((f) => [f.code, f.field])).toEqual([
      [V, 'item_id'],
      ['CAIRN_UNKNOWN_EVENT_TYPE', 'type'],
    ]);
    expect(validator.parse(base, NOW).userId).toBe('u1');
  });
});

describe('event validation: ids', () => {
  it.each([
    ['', 'empty'],
    ['a b', 'space'],
    ['x'.repeat(129), 'too long'],
    ['é1', 'non-ASCII'],
    ['a\tb', 'tab'],
  ])('rejects event_id %j (%s)', (eventId) => {
    expect(eventIssues({ ...base, event_id: eventId })).toEqual([{ code: V, field: 'event_id' }]);
  });

  it('accepts 128 visible ASCII characters and integer event ids', () => {
    const id = '!~'.repeat(64);
    expect(ok({ ...base, event_id: id }).eventId).toBe(id);
    expect(ok({ ...base, event_id: 12345 }).eventId).toBe('12345');
    expect(eventIssues({ ...base, event_id: 1.5 })).toEqual([{ code: V, field: 'event_id' }]);
    expect(eventIssues({ ...base, event_id: { id: 1 } })).toEqual([{ code: V, field: 'event_id' }]);
  });

  for (const field of ['user_id', 'item_id'] as const) {
    it(`validates ${field}`, () => {
      const bad: unknown[] = [
        undefined,
        null,
        '',
        '   ',
        'x'.repeat(257),
        'a\u0000b',
        'a\nb',
        'a\u007fb',
        'a\u0085b',
        'a\ud800b',
        1.5,
        2 ** 53,
        -Infinity,
        true,
        ['a'],
        { id: 1 },
      ];
      for (const v of bad) {
        const raw: Record<string, unknown> = { ...base, [field]: v };
        if (v === undefined) delete raw[field];
        expect(eventIssues(raw), JSON.stringify(v)).toEqual([{ code: V, field }]);
      }
      const good: [unknown, string][] = [
        ['x'.repeat(256), 'x'.repeat(256)],
        ['ユーザー😀', 'ユーザー😀'],
        [' padded ', ' padded '],
        [42, '42'],
        [-7, '-7'],
        [0, '0'],
        [Number.MAX_SAFE_INTEGER, String(Number.MAX_SAFE_INTEGER)],
      ];
      for (const [v, expected] of good)
        expect(ok({ ...base, [field]: v })[field === 'user_id' ? 'userId' : 'itemId']).toBe(expected);
    });
  }
});

describe('event validation: type and value', () => {
  it('requires a configured type', () => {
    expect(eventIssues({ user_id: 'u', item_id: 'i' })).toEqual([{ code: V, field: 'type' }]);
    expect(eventIssues({ ...base, type: 7 })).toEqual([{ code: V, field: 'type' }]);
    for (const t of ['teleport', 'View', 'constructor', '__proto__', 'toString', ''])
      expect(eventIssues({ ...base, type: t }), t).toEqual([
        { code: 'CAIRN_UNKNOWN_EVENT_TYPE', field: 'type' },
      ]);
    for (const t of Object.keys(config.events.types)) {
      const raw = config.events.types[t].useValue ? { ...base, type: t, value: 1 } : { ...base, type: t };
      expect(ok(raw).type).toBe(t);
    }
  });

  it('follows the configured types, not a fixed list', () => {
    const custom = createEventValidator({
      types: { play: { weight: 1 }, stars: { weight: 1, useValue: true } },
      maxFutureSkewSeconds: 0,
    });
    expect(custom.validate({ ...base, type: 'play' }, NOW).ok).toBe(true);
    expect(issuesOf(custom.validate({ ...base, type: 'view' }, NOW))).toEqual([
      { code: 'CAIRN_UNKNOWN_EVENT_TYPE', field: 'type' },
    ]);
    expect(issuesOf(custom.validate({ ...base, type: 'stars' }, NOW))).toEqual([{ code: V, field: 'value' }]);
  });

  it('requires a finite number value for useValue types', () => {
    expect(eventIssues({ ...base, type: 'rating' })).toEqual([{ code: V, field: 'value' }]);
    expect(eventIssues({ ...base, type: 'rating', value: null })).toEqual([{ code: V, field: 'value' }]);
    expect(ok({ ...base, type: 'rating', value: 0 }).value).toBe(0);
    expect(ok({ ...base, type: 'rating', value: 2.5 }).value).toBe(2.5);
  });

  it.each<[unknown]>([['4'], [NaN], [Infinity], [-Infinity], [1e308], [-1e10], [true], [[1]], [{ v: 1 }]])(
    'rejects value %j, whatever the type',
    (value) => {
      expect(eventIssues({ ...base, value })).toEqual([{ code: V, field: 'value' }]);
      expect(eventIssues({ ...base, type: 'rating', value })).toEqual([{ code: V, field: 'value' }]);
    },
  );

  it('accepts values up to MAX_EVENT_VALUE in magnitude on types without a range', () => {
    expect(ok({ ...base, value: MAX_EVENT_VALUE }).value).toBe(MAX_EVENT_VALUE);
    expect(ok({ ...base, value: -MAX_EVENT_VALUE }).value).toBe(-MAX_EVENT_VALUE);
    expect(eventIssues({ ...base, value: MAX_EVENT_VALUE * 1.000001 })).toEqual([
      { code: V, field: 'value' },
    ]);
  });

  it("rejects values outside the type's minValue/maxValue (rating: 0 to 10 by default)", () => {
    expect(ok({ ...base, type: 'rating', value: 10 }).value).toBe(10);
    for (const value of [-0.5, 10.5, 11, 1e308]) {
      const result = validator.validate({ ...base, type: 'rating', value }, NOW);
      expect(issuesOf(result), String(value)).toEqual([{ code: V, field: 'value' }]);
    }
    const issue = (
      validator.validate({ ...base, type: 'rating', value: 11 }, NOW) as { issues: ValidationIssue[] }
    ).issues[0];
    expect(issue.message).toBe('must be from 0 to 10 for "rating" events, got 11');
    const custom = createEventValidator({
      types: { stars: { weight: 1, useValue: true, minValue: 1 }, spend: { weight: 1, maxValue: 500 } },
      maxFutureSkewSeconds: 0,
    });
    expect(custom.validate({ ...base, type: 'stars', value: 1e6 }, NOW).ok).toBe(true);
    expect(issuesOf(custom.validate({ ...base, type: 'stars', value: 0.5 }, NOW))).toEqual([
      { code: V, field: 'value' },
    ]);
    // A range applies to the value wherever it is given; a type without `useValue` may still omit it.
    expect(issuesOf(custom.validate({ ...base, type: 'spend', value: 501 }, NOW))).toEqual([
      { code: V, field: 'value' },
    ]);
    expect(custom.validate({ ...base, type: 'spend' }, NOW).ok).toBe(true);
  });

  it('keeps an optional value on types that do not use it', () => {
    expect(ok({ ...base, value: 3 }).value).toBe(3);
  });
});

describe('event validation: request_id', () => {
  it('keeps the recommendation request id in context.request_id, merged with the rest of the context', () => {
    expect(ok({ ...base, request_id: 'req-1.a_B' }).context).toEqual({ request_id: 'req-1.a_B' });
    expect(ok({ ...base, request_id: 'r2', context: { page: 'home' } }).context).toEqual({
      page: 'home',
      request_id: 'r2',
    });
    // The same id in both places is fine; an id only in the context is kept as sent.
    expect(ok({ ...base, request_id: 'r3', context: { request_id: 'r3' } }).context).toEqual({
      request_id: 'r3',
    });
    expect(ok({ ...base, context: { request_id: 'r4' } }).context).toEqual({ request_id: 'r4' });
    expect(ok({ ...base, request_id: null }).context).toBeNull();
  });

  it('rejects a malformed request id, or one that contradicts context.request_id', () => {
    for (const request_id of ['', 'has space', 'x'.repeat(129), 42, true, {}, 'tab\t'])
      expect(eventIssues({ ...base, request_id }), JSON.stringify(request_id)).toEqual([
        { code: V, field: 'request_id' },
      ]);
    expect(eventIssues({ ...base, request_id: 'a', context: { request_id: 'b' } })).toEqual([
      { code: V, field: 'request_id' },
    ]);
  });

  it('does not change the derived event id (retries with and without it are one event)', () => {
    const t = { ...base, timestamp: NOW - 1000 };
    expect(ok({ ...t, request_id: 'r1' }).eventId).toBe(ok(t).eventId);
  });
});

describe('event validation: timestamps', () => {
  it('accepts epoch ms and truncates fractions', () => {
    expect(ok({ ...base, timestamp: NOW - 5 }).timestamp).toBe(NOW - 5);
    expect(ok({ ...base, timestamp: NOW - 5.9 }).timestamp).toBe(NOW - 6);
    expect(ok({ ...base, timestamp: MIN_EVENT_TIMESTAMP }).timestamp).toBe(MIN_EVENT_TIMESTAMP);
  });

  it('reads ISO-8601 strings as the same instant as their epoch ms', () => {
    const t = Date.UTC(2024, 3, 30, 10, 15, 30, 250);
    for (const s of [
      '2024-04-30T10:15:30.250Z',
      '2024-04-30T10:15:30.250000Z',
      '2024-04-30t10:15:30.25z',
      '2024-04-30 10:15:30.250Z',
      '2024-04-30T12:15:30.250+02:00',
      '2024-04-30T12:15:30.250+0200',
      '2024-04-30T05:15:30.250-05',
      '2024-04-30T15:45:30.250+05:30',
      '2024-04-30T10:15:30,250Z',
    ])
      expect(ok({ ...base, timestamp: s }).timestamp, s).toBe(t);
    expect(ok({ ...base, timestamp: '2024-04-30' }).timestamp).toBe(Date.UTC(2024, 3, 30));
    expect(ok({ ...base, timestamp: '2024-04-30T10:15Z' }).timestamp).toBe(Date.UTC(2024, 3, 30, 10, 15));
    expect(ok({ ...base, timestamp: '2024-02-29T00:00:00Z' }).timestamp).toBe(Date.UTC(2024, 1, 29));
  });

  it.each([
    'yesterday',
    '1714557600000',
    '2024-04-30T10:15:30', // no zone: ambiguous
    '2023-02-29T00:00:00Z',
    '2024-04-31',
    '2024-13-01T00:00:00Z',
    '2024-00-10',
    '2024-04-30T24:00:00Z',
    '2024-04-30T10:60:00Z',
    '2024-04-30T10:00:00+24:00',
    '2024-04-30T10:00:00+02:60',
    'May 1, 2024',
    '2024-04-30T10:00:00.Z',
    '',
  ])('rejects timestamp %j as CAIRN_VALIDATION', (timestamp) => {
    expect(eventIssues({ ...base, timestamp })).toEqual([{ code: V, field: 'timestamp' }]);
  });

  it.each<[unknown]>([[NaN], [Infinity], [true], [{}], [[NOW]]])(
    'rejects non-time timestamp %j',
    (timestamp) => {
      expect(eventIssues({ ...base, timestamp })).toEqual([{ code: V, field: 'timestamp' }]);
    },
  );

  it('rejects times before 2000-01-01, including epoch seconds', () => {
    const range = [{ code: 'CAIRN_TIMESTAMP_OUT_OF_RANGE', field: 'timestamp' }];
    expect(eventIssues({ ...base, timestamp: MIN_EVENT_TIMESTAMP - 1 })).toEqual(range);
    expect(eventIssues({ ...base, timestamp: '1999-12-31T23:59:59.999Z' })).toEqual(range);
    expect(eventIssues({ ...base, timestamp: -1e20 })).toEqual(range);
    const seconds = validator.validate({ ...base, timestamp: Math.floor(NOW / 1000) }, NOW);
    expect(issuesOf(seconds)).toEqual(range);
    expect(seconds.ok ? '' : seconds.issues[0].message).toContain('seconds');
  });

  it('accepts up to maxFutureSkewSeconds ahead of the server clock and no further', () => {
    const range = [{ code: 'CAIRN_TIMESTAMP_OUT_OF_RANGE', field: 'timestamp' }];
    expect(ok({ ...base, timestamp: NOW + SKEW_MS }).timestamp).toBe(NOW + SKEW_MS);
    expect(eventIssues({ ...base, timestamp: NOW + SKEW_MS + 1 })).toEqual(range);
    expect(eventIssues({ ...base, timestamp: new Date(NOW + SKEW_MS + 1000).toISOString() })).toEqual(range);
    expect(eventIssues({ ...base, timestamp: 1e20 })).toEqual(range);
    // The bound moves with the clock the caller passes.
    expect(ok({ ...base, timestamp: NOW + SKEW_MS + 1 }, NOW + 1).timestamp).toBe(NOW + SKEW_MS + 1);
    const strict = createEventValidator({ types: config.events.types, maxFutureSkewSeconds: 0 });
    expect(strict.validate({ ...base, timestamp: NOW }, NOW).ok).toBe(true);
    expect(strict.validate({ ...base, timestamp: NOW + 1 }, NOW).ok).toBe(false);
  });

  it('lets importers lower the earliest accepted time', () => {
    const old = createEventValidator({ ...config.events, minTimestamp: 0 });
    expect(old.validate({ ...base, timestamp: Date.UTC(1997, 8, 20) }, NOW).ok).toBe(true);
    expect(old.validate({ ...base, timestamp: -1 }, NOW).ok).toBe(false);
  });

  it('parseIsoTime agrees with Date for toISOString output, with and without milliseconds', () => {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    for (let i = 0; i < 2000; i++) {
      const t = Math.floor(Date.UTC(2000, 0, 1) + rand() * 100 * 365.25 * 86_400_000);
      const iso = new Date(t).toISOString();
      expect(parseIsoTime(iso)).toBe(t);
      const noMs = iso.slice(0, 19) + 'Z';
      expect(parseIsoTime(noMs)).toBe(Math.floor(t / 1000) * 1000);
    }
    for (const bad of [
      '2024-04-30T1a:15:30Z',
      '2024-04-30T10:15:3-Z',
      '2024-04-30T10:15:30.1-5Z',
      '2024-02-30T10:15:30Z',
      '2024-04-30T10:15:61.000Z',
      '2024-04-30X10:15:30Z',
    ])
      expect(typeof parseIsoTime(bad), bad).toBe('string');
  });

  it('parseIsoTime handles years below 100 and returns messages for bad input', () => {
    expect(parseIsoTime('0050-01-01T00:00:00Z')).toBe(new Date('0050-01-01T00:00:00Z').getTime());
    expect(typeof parseIsoTime('2024-02-30')).toBe('string');
  });
});

describe('event validation: context', () => {
  it('accepts a JSON object and rejects other shapes', () => {
    expect(ok({ ...base, context: { a: [1, 'x', null, true, { b: -1.5 }] } }).context).toEqual({
      a: [1, 'x', null, true, { b: -1.5 }],
    });
    expect(ok({ ...base, context: {} }).context).toEqual({});
    for (const context of [[], 'page=home', 5, true, new Date(NOW)])
      expect(eventIssues({ ...base, context }), String(context)).toEqual([{ code: V, field: 'context' }]);
  });

  it('names the offending nested value of a non-JSON context', () => {
    expect(eventIssues({ ...base, context: { a: { b: NaN } } })).toEqual([{ code: V, field: 'context.a.b' }]);
    expect(eventIssues({ ...base, context: { list: [1, undefined] } })).toEqual([
      { code: V, field: 'context.list[1]' },
    ]);
    expect(eventIssues({ ...base, context: { when: new Date(NOW) } })).toEqual([
      { code: V, field: 'context.when' },
    ]);
    expect(eventIssues({ ...base, context: { n: 10n } })).toEqual([{ code: V, field: 'context.n' }]);
  });

  it('rejects NUL and unpaired surrogates, in values and keys, which PostgreSQL cannot store', () => {
    expect(eventIssues({ ...base, context: { page: 'a\u0000b' } })).toEqual([
      { code: V, field: 'context.page' },
    ]);
    expect(eventIssues({ ...base, context: { list: ['ok', '\ud800'] } })).toEqual([
      { code: V, field: 'context.list[1]' },
    ]);
    expect(eventIssues({ ...base, context: { 'k\u0000': 1 } })).toEqual([{ code: V, field: 'context' }]);
    // Other control characters and paired surrogates (emoji) are stored as they are.
    expect(ok({ ...base, context: { s: 'tab\there \u0001 😀' } }).context).toEqual({
      s: 'tab\there \u0001 😀',
    });
  });

  it('limits nesting depth', () => {
    let deep: Record<string, unknown> = {};
    const root = deep;
    for (let i = 0; i < 40; i++) {
      const next = {};
      deep.d = next;
      deep = next;
    }
    const issues = eventIssues({ ...base, context: root });
    expect(issues).toHaveLength(1);
    expect(issues[0].code).toBe(V);
    expect(issues[0].field.startsWith('context.d.d')).toBe(true);
  });

  /** A context whose JSON is exactly `bytes` UTF-8 bytes long, filled with `ch` (1, 2 or 3 UTF-8 bytes). */
  function contextOfSize(bytes: number, ch = 'x'): Record<string, unknown> {
    const overhead = Buffer.byteLength(JSON.stringify({ s: '' }));
    const unit = Buffer.byteLength(JSON.stringify(ch)) - 2; // serialised bytes, escapes included
    const n = Math.floor((bytes - overhead) / unit);
    const pad = 'x'.repeat(bytes - overhead - n * unit);
    const ctx = { s: pad + ch.repeat(n) };
    expect(Buffer.byteLength(JSON.stringify(ctx))).toBe(bytes);
    return ctx;
  }

  it('accepts exactly 8 KB of serialised UTF-8 and rejects one byte more', () => {
    for (const ch of ['x', 'é', '€', '\n']) {
      expect(ok({ ...base, context: contextOfSize(MAX_CONTEXT_BYTES, ch) }).context).not.toBeNull();
      expect(eventIssues({ ...base, context: contextOfSize(MAX_CONTEXT_BYTES + 1, ch) }), ch).toEqual([
        { code: V, field: 'context' },
      ]);
    }
  });

  it('decides the size limit exactly like measuring JSON.stringify (random contexts near the limit)', () => {
    let seed = 12345;
    const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const alphabet = ['a', 'é', '€', '😀', '"', '\\', '\n', '\u0001', 'Z'];
    let accepted = 0;
    let rejected = 0;
    for (let trial = 0; trial < 300; trial++) {
      const ctx: Record<string, unknown> = {};
      const keys = 1 + Math.floor(rand() * 40);
      const perKey = (MAX_CONTEXT_BYTES * (0.5 + rand())) / keys;
      for (let k = 0; k < keys; k++) {
        const len = Math.floor((perKey / 3) * (0.5 + rand()));
        let s = '';
        for (let c = 0; c < len; c++) s += alphabet[Math.floor(rand() * alphabet.length)];
        ctx[`k${k}`] = rand() < 0.2 ? [s, rand() * 1e6, null, false] : s;
      }
      const fits = Buffer.byteLength(JSON.stringify(ctx)) <= MAX_CONTEXT_BYTES;
      const result = validator.validate({ ...base, context: ctx }, NOW);
      expect(result.ok).toBe(fits);
      if (fits) accepted++;
      else rejected++;
    }
    // Both sides of the limit were exercised.
    expect(accepted).toBeGreaterThan(20);
    expect(rejected).toBeGreaterThan(20);
  });

  it('rejects a huge context', () => {
    expect(eventIssues({ ...base, context: { blob: 'x'.repeat(10_000_000) } })).toEqual([
      { code: V, field: 'context' },
    ]);
    const many: Record<string, number> = {};
    for (let i = 0; i < 100_000; i++) many[`k${i}`] = i;
    expect(eventIssues({ ...base, context: many })).toEqual([{ code: V, field: 'context' }]);
  });
});

describe('derived event ids', () => {
  const at = Date.UTC(2024, 3, 30, 10, 0, 0);

  it('derives a stable version-8 UUID when a timestamp is given without an event_id', () => {
    const a = ok({ ...base, timestamp: at });
    const b = ok({ ...base, timestamp: at }, NOW + 60_000);
    expect(a.eventId).toBe(b.eventId);
    const m = UUID.exec(a.eventId);
    expect(m?.[1]).toBe('8');
    expect(a.eventId).toBe(deriveEventId('u1', 'i1', 'view', at, null));
  });

  it('is the same for equivalent spellings of the same event', () => {
    const id = ok({ ...base, timestamp: at }).eventId;
    expect(ok({ ...base, timestamp: '2024-04-30T10:00:00Z' }).eventId).toBe(id);
    expect(ok({ ...base, timestamp: '2024-04-30T12:00:00+02:00' }).eventId).toBe(id);
    expect(ok({ ...base, timestamp: at + 0.4 }).eventId).toBe(id);
    expect(ok({ ...base, timestamp: at, context: { page: 'x' } }).eventId).toBe(id);
    expect(ok({ user_id: 7, item_id: 8, type: 'view', timestamp: at }).eventId).toBe(
      ok({ user_id: '7', item_id: '8', type: 'view', timestamp: at }).eventId,
    );
  });

  it('differs when any hashed field differs', () => {
    const id = ok({ ...base, type: 'rating', value: 4, timestamp: at }).eventId;
    const variants = [
      { ...base, type: 'rating', value: 4, timestamp: at + 1 },
      { ...base, type: 'rating', value: 5, timestamp: at },
      { ...base, type: 'rating', value: 4, timestamp: at, user_id: 'u2' },
      { ...base, type: 'rating', value: 4, timestamp: at, item_id: 'i2' },
      { ...base, type: 'view', value: 4, timestamp: at },
    ];
    const ids = new Set(variants.map((v) => ok(v).eventId));
    expect(ids.size).toBe(variants.length);
    expect(ids.has(id)).toBe(false);
    // Field boundaries are unambiguous: shifting characters between ids gives another id.
    expect(deriveEventId('ab', 'c', 'view', at, null)).not.toBe(deriveEventId('a', 'bc', 'view', at, null));
    expect(deriveEventId('u', 'i', 'view', at, null)).not.toBe(deriveEventId('u', 'i', 'view', at, 0));
  });

  it('uses a client event_id when given, and random ids without a timestamp', () => {
    expect(ok({ ...base, timestamp: at, event_id: 'mine' }).eventId).toBe('mine');
    const ids = new Set(Array.from({ length: 100 }, () => ok(base).eventId));
    expect(ids.size).toBe(100);
  });
});

describe('item validation', () => {
  it('maps a full item and only the fields present (partial upsert)', () => {
    expect(
      parseItem(
        {
          categories: ['a', 'b', 'a'],
          attributes: { price: 9.5, title: 'T' },
          available: false,
          created_at: '2024-01-02T00:00:00Z',
        },
        'i1',
      ),
    ).toEqual({
      id: 'i1',
      categories: ['a', 'b'],
      attributes: { price: 9.5, title: 'T' },
      available: false,
      createdAt: Date.UTC(2024, 0, 2),
    });
    const partial = parseItem({ available: true }, 'i1');
    expect(partial).toEqual({ id: 'i1', available: true });
    expect(Object.keys(parseItem({}, 'i1'))).toEqual(['id']);
    expect(parseItem({ created_at: 86_400_000 }, 'i1').createdAt).toBe(86_400_000);
    expect(parseItem({ attributes: { price: 0 } }, 'i1').attributes).toEqual({ price: 0 });
  });

  it('needs an id in batch entries and a matching one in PUT bodies', () => {
    expect(issuesOf(validateItem({ available: true }))).toEqual([{ code: V, field: 'id' }]);
    expect(validateItem({ id: 'x', available: true })).toEqual({
      ok: true,
      value: { id: 'x', available: true },
    });
    expect(validateItem({ id: 12 })).toEqual({ ok: true, value: { id: '12' } });
    expect(issuesOf(validateItem({ id: 'other' }, 'i1'))).toEqual([{ code: V, field: 'id' }]);
    expect(validateItem({ id: 42 }, '42').ok).toBe(true);
    expect(validateItem({ id: 'i1' }, 'i1').ok).toBe(true);
    expect(issuesOf(validateItem({}, 'bad\u0000id'))).toEqual([{ code: V, field: 'id' }]);
  });

  it.each<[unknown, string]>([
    [{ categories: 'a' }, 'categories'],
    [{ categories: null }, 'categories'],
    [{ categories: Array.from({ length: 33 }, (_, i) => `c${i}`) }, 'categories'],
    [{ categories: ['ok', ''] }, 'categories[1]'],
    [{ categories: ['ok', 7] }, 'categories[1]'],
    [{ categories: [' '] }, 'categories[0]'],
    [{ categories: ['x'.repeat(129)] }, 'categories[0]'],
    [{ categories: ['a\nb'] }, 'categories[0]'],
    [{ attributes: [] }, 'attributes'],
    [{ attributes: null }, 'attributes'],
    [{ attributes: { price: -1 } }, 'attributes.price'],
    [{ attributes: { price: '10' } }, 'attributes.price'],
    [{ attributes: { price: null } }, 'attributes.price'],
    [{ attributes: { nested: { bad: Infinity } } }, 'attributes.nested.bad'],
    [{ attributes: { blob: 'x'.repeat(70_000) } }, 'attributes'],
    [{ available: 'yes' }, 'available'],
    [{ available: null }, 'available'],
    [{ available: 1 }, 'available'],
    [{ created_at: 'soon' }, 'created_at'],
    [{ created_at: null }, 'created_at'],
  ])('rejects item body #%# at its field', (raw, field) => {
    expect(issuesOf(validateItem(raw, 'i1'))).toEqual([{ code: V, field }]);
  });

  it('accepts 32 categories', () => {
    const categories = Array.from({ length: 32 }, (_, i) => `c${i}`);
    expect(parseItem({ categories }, 'i1').categories).toEqual(categories);
  });

  it('rejects unknown fields and negative or absurd creation times', () => {
    expect(issuesOf(validateItem({ title: 'x', price: 3 }, 'i1'))).toEqual([
      { code: 'CAIRN_UNKNOWN_FIELD', field: 'title' },
      { code: 'CAIRN_UNKNOWN_FIELD', field: 'price' },
    ]);
    expect(issuesOf(validateItem({ created_at: -1 }, 'i1'))).toEqual([
      { code: 'CAIRN_TIMESTAMP_OUT_OF_RANGE', field: 'created_at' },
    ]);
    expect(issuesOf(validateItem({ created_at: 1e17 }, 'i1'))).toEqual([
      { code: 'CAIRN_TIMESTAMP_OUT_OF_RANGE', field: 'created_at' },
    ]);
  });

  it('reports every item problem at once and parseItem throws them all', () => {
    const raw = {
      categories: [1, ''],
      attributes: { price: -3 },
      available: 'no',
      created_at: 'x',
      colour: 'red',
    };
    expect(issuesOf(validateItem(raw, 'i1'))).toEqual([
      { code: 'CAIRN_UNKNOWN_FIELD', field: 'colour' },
      { code: V, field: 'categories[0]' },
      { code: V, field: 'categories[1]' },
      { code: V, field: 'attributes.price' },
      { code: V, field: 'available' },
      { code: V, field: 'created_at' },
    ]);
    expect(() => parseItem(raw, 'i1')).toThrow(CairnError);
    try {
      parseItem(raw, 'i1');
    } catch (e) {
      expect((e as CairnError).code).toBe('CAIRN_VALIDATION');
      expect(((e as CairnError).details as { fields: unknown[] }).fields).toHaveLength(6);
    }
  });

  it.each<[unknown]>([[null], [[]], ['item']])('rejects a non-object item %j', (raw) => {
    expect(issuesOf(validateItem(raw, 'i1'))).toEqual([{ code: V, field: '(root)' }]);
  });
});

describe('user validation', () => {
  it('maps the user fields present', () => {
    expect(
      parseUser({ attributes: { country: 'FR' }, segments: ['vip', 'new', 'vip'], opt_out: true }, 'u1'),
    ).toEqual({
      id: 'u1',
      attributes: { country: 'FR' },
      segments: ['vip', 'new'],
      optOut: true,
    });
    expect(parseUser({ opt_out: false }, 'u1')).toEqual({ id: 'u1', optOut: false });
    expect(parseUser({}, 7 as unknown as string)).toEqual({ id: '7' });
  });

  it.each<[unknown, string, string]>([
    [{ opt_out: 'true' }, V, 'opt_out'],
    [{ opt_out: null }, V, 'opt_out'],
    [{ segments: 'vip' }, V, 'segments'],
    [{ segments: ['vip', 3] }, V, 'segments[1]'],
    [{ segments: Array.from({ length: 65 }, (_, i) => `s${i}`) }, V, 'segments'],
    [{ attributes: 'x' }, V, 'attributes'],
    [{ attributes: { a: () => 1 } }, V, 'attributes.a'],
    [{ optOut: true }, 'CAIRN_UNKNOWN_FIELD', 'optOut'],
    [{ id: 'u2' }, V, 'id'],
  ])('rejects user body #%#', (raw, code, field) => {
    expect(issuesOf(validateUser(raw, 'u1'))).toEqual([{ code, field }]);
  });

  it('rejects a bad path id and parseUser throws CAIRN_VALIDATION', () => {
    expect(issuesOf(validateUser({}, ''))).toEqual([{ code: V, field: 'id' }]);
    expect(() => parseUser({ opt_out: 1 }, 'u1')).toThrow(
      expect.objectContaining({ code: 'CAIRN_VALIDATION' }) as Error,
    );
  });

  it('validateId follows the id rules', () => {
    expect(validateId('abc')).toEqual({ ok: true, value: 'abc' });
    expect(validateId(5, 'user_id')).toEqual({ ok: true, value: '5' });
    expect(issuesOf(validateId('a\u0000', 'user_id'))).toEqual([{ code: V, field: 'user_id' }]);
  });
});
