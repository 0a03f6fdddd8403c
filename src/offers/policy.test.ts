import { describe, expect, it } from 'vitest';
import type { StoredEvent } from '../domain/types.ts';
import type { Offer } from './contracts.ts';
import {
  audienceExclusion,
  ContactHistory,
  contactExclusion,
  effectivePolicy,
  globalRemaining,
  offerExclusion,
  type OfferEntry,
} from './policy.ts';

const DAY = 86_400_000;
const NOW = Date.UTC(2025, 0, 10);
const offer = (o: Partial<Offer> = {}): Offer => ({
  value: 10,
  lever: 1,
  segments: null,
  channels: null,
  start: null,
  end: null,
  inventory: null,
  budget: null,
  policy: {},
  ...o,
});
const entry = (o: Partial<Offer> = {}, available = true): OfferEntry => ({
  itemId: 'o1',
  offer: offer(o),
  available,
  categories: [],
  title: null,
});
let seq = 0;
const ev = (itemId: string, type: string, ageDays: number): StoredEvent => ({
  eventId: `e${++seq}`,
  seq,
  userId: 'u',
  itemId,
  type,
  value: null,
  timestamp: NOW - ageDays * DAY,
  context: null,
});
const defaults = {
  maxImpressions: 3,
  periodDays: 7,
  suppressAfter: 1,
  suppressOutcomes: ['purchase', 'dismiss'],
  suppressDays: 30,
};

describe('eligibility', () => {
  it('passes an open offer and names each rule that excludes one', () => {
    expect(offerExclusion(entry(), NOW, undefined)).toBeNull();
    const rule = (e: OfferEntry, channel?: string) => offerExclusion(e, NOW, channel)?.rule ?? null;
    expect(rule(entry({}, false))).toBe('unavailable');
    expect(rule(entry({ start: NOW + 1 }))).toBe('window');
    expect(rule(entry({ end: NOW }))).toBe('window');
    expect(rule(entry({ start: NOW, end: NOW + 1 }))).toBeNull();
    expect(rule(entry({ inventory: 0 }))).toBe('inventory');
    expect(rule(entry({ inventory: 1 }))).toBeNull();
    expect(rule(entry({ budget: 9.99 }))).toBe('budget');
    expect(rule(entry({ budget: 10 }))).toBeNull();
    expect(rule(entry({ channels: ['email'] }), 'web')).toBe('channel');
    expect(rule(entry({ channels: ['email'] }))).toBe('channel');
    expect(rule(entry({ channels: ['email', 'web'] }), 'web')).toBeNull();
  });

  it('segments: users in none are excluded; opted-out users get no targeted offer', () => {
    expect(audienceExclusion(offer({ segments: ['gold'] }), ['silver'], false)?.rule).toBe('segment');
    expect(audienceExclusion(offer({ segments: ['gold'] }), ['silver', 'gold'], false)).toBeNull();
    expect(audienceExclusion(offer({ segments: ['gold'] }), ['gold'], true)?.rule).toBe('opt_out');
    expect(audienceExclusion(offer(), [], true)).toBeNull();
  });
});

describe('contact policy', () => {
  const policy = effectivePolicy(offer(), defaults);

  it('frequency cap counts impressions of the offer inside the period only', () => {
    const history = (ages: number[]) =>
      new ContactHistory(
        [...ages.map((a) => ev('o1', 'impression', a)), ev('o2', 'impression', 0)],
        () => true,
      );
    expect(contactExclusion('o1', policy, history([1, 2]), NOW)).toBeNull();
    expect(contactExclusion('o1', policy, history([1, 2, 6.9]), NOW)?.rule).toBe('frequency_cap');
    // The third is older than 7 days: it no longer counts.
    expect(contactExclusion('o1', policy, history([1, 2, 7.1]), NOW)).toBeNull();
    const off = effectivePolicy(offer({ policy: { maxImpressions: 0 } }), defaults);
    expect(contactExclusion('o1', off, history([0, 0, 0, 0]), NOW)).toBeNull();
  });

  it('suppression after N outcomes lasts D days after the latest', () => {
    const p = effectivePolicy(
      offer({ policy: { suppressAfter: 2, suppressDays: 5, suppressOutcomes: ['dismiss'] } }),
      defaults,
    );
    const h = (events: StoredEvent[]) => new ContactHistory(events, () => true);
    expect(contactExclusion('o1', p, h([ev('o1', 'dismiss', 1)]), NOW)).toBeNull();
    expect(contactExclusion('o1', p, h([ev('o1', 'dismiss', 1), ev('o1', 'dismiss', 20)]), NOW)?.rule).toBe(
      'suppressed',
    );
    expect(contactExclusion('o1', p, h([ev('o1', 'dismiss', 6), ev('o1', 'dismiss', 20)]), NOW)).toBeNull();
    // Other types, and outcomes on other offers, do not count.
    expect(
      contactExclusion(
        'o1',
        p,
        h([ev('o1', 'purchase', 1), ev('o1', 'purchase', 2), ev('o2', 'dismiss', 1)]),
        NOW,
      ),
    ).toBeNull();
    // The default: one purchase suppresses for 30 days.
    expect(contactExclusion('o1', policy, h([ev('o1', 'purchase', 29)]), NOW)?.rule).toBe('suppressed');
    expect(contactExclusion('o1', policy, h([ev('o1', 'purchase', 31)]), NOW)).toBeNull();
  });

  it('the global cap counts impressions of any offer in the last 24 hours, and only of offers', () => {
    const events = [
      ev('o1', 'impression', 0.1),
      ev('o2', 'impression', 0.9),
      ev('o3', 'impression', 1.1),
      ev('x', 'impression', 0),
    ];
    const h = new ContactHistory(events, (id) => id !== 'x');
    expect(globalRemaining(h, 5, NOW)).toBe(3);
    expect(globalRemaining(h, 2, NOW)).toBe(0);
    expect(globalRemaining(h, 0, NOW)).toBe(Infinity);
  });
});
