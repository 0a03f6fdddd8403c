import { describe, expect, it } from 'vitest';
import { isCairnError } from '../errors/errors.ts';
import {
  DEMO_EVENT_TYPES,
  generateDemoData,
  generateInteractions,
  type DemoData,
  type DemoEvent,
  type DemoDataOptions,
} from './demo-data.ts';

const MAIN: DemoDataOptions = { users: 2000, items: 1000, events: 100_000, seed: 42 };
const data: DemoData = generateDemoData(MAIN);
const events: DemoEvent[] = [...data.events()];
const itemById = new Map(data.items.map((it) => [it.id, it]));
const userById = new Map(data.users.map((u) => [u.id, u]));
const primaryCategory = (itemId: string): string => itemById.get(itemId)!.categories[0];

function countBy<T>(xs: Iterable<T>, key: (x: T) => string): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of xs) m.set(key(x), (m.get(key(x)) ?? 0) + 1);
  return m;
}

function topShare(counts: Map<string, number>, fraction: number, total: number): number {
  const sorted = [...counts.values()].sort((a, b) => b - a);
  const top = sorted.slice(0, Math.ceil(fraction * sorted.length)).reduce((a, b) => a + b, 0);
  return top / total;
}

/** Mean, over users with at least `min` events, of the share of their events in their top category. */
function meanTopCategoryShare(evs: { user_id: string; item_id: string }[], min: number): number {
  const byUser = new Map<string, Map<string, number>>();
  for (const e of evs) {
    let m = byUser.get(e.user_id);
    if (!m) byUser.set(e.user_id, (m = new Map()));
    const c = primaryCategory(e.item_id);
    m.set(c, (m.get(c) ?? 0) + 1);
  }
  let sum = 0;
  let n = 0;
  for (const m of byUser.values()) {
    const counts = [...m.values()];
    const total = counts.reduce((a, b) => a + b, 0);
    if (total < min) continue;
    sum += Math.max(...counts) / total;
    n++;
  }
  return sum / n;
}

describe('generateDemoData', () => {
  it('is deterministic for a seed and differs across seeds', () => {
    const again = generateDemoData(MAIN);
    expect(again.items).toEqual(data.items);
    expect(again.users).toEqual(data.users);
    // Compared as text: a deep toEqual over 100k objects is slow and its diff unreadable.
    expect(JSON.stringify([...again.events()]) === JSON.stringify(events)).toBe(true);
    // events() replays the same stream on every call.
    expect([...data.events()].slice(0, 1000)).toEqual(events.slice(0, 1000));

    const other = generateDemoData({ ...MAIN, seed: 43 });
    const otherEvents = [...other.events()];
    expect(otherEvents).toHaveLength(MAIN.events);
    let same = 0;
    for (let k = 0; k < 1000; k++) {
      if (otherEvents[k].user_id === events[k].user_id && otherEvents[k].item_id === events[k].item_id)
        same++;
    }
    expect(same).toBeLessThan(50);
    expect(other.items.map((i) => i.attributes.title)).not.toEqual(data.items.map((i) => i.attributes.title));
  });

  it('produces exactly the requested counts, also at the edges', () => {
    expect(events).toHaveLength(MAIN.events);
    expect(data.items).toHaveLength(MAIN.items);
    expect(data.users).toHaveLength(MAIN.users);
    for (const o of [
      { users: 1, items: 1, events: 57, seed: 1 },
      { users: 50, items: 3, events: 0, seed: 2 },
      { users: 300, items: 40, events: 1234, seed: 3, categories: 30 },
      { users: 500, items: 20, events: 137, seed: -9, days: 7 },
    ]) {
      const d = generateDemoData(o);
      const evs = [...d.events()];
      expect(evs).toHaveLength(o.events);
      expect(d.items).toHaveLength(o.items);
      expect(d.users).toHaveLength(o.users);
      const items = new Set(d.items.map((i) => i.id));
      const users = new Set(d.users.map((u) => u.id));
      expect(items.size).toBe(o.items);
      expect(users.size).toBe(o.users);
      expect(evs.filter((e) => !items.has(e.item_id) || !users.has(e.user_id))).toEqual([]);
      expect(generateInteractions(o).userIdx).toHaveLength(o.events);
    }
  });

  it('emits well-formed events that refer to existing users and items', () => {
    const ids = new Set<string>();
    const types = new Set<string>(DEMO_EVENT_TYPES);
    // Collected rather than asserted per event: 100k expect() calls would dominate the run time.
    const bad: DemoEvent[] = [];
    for (const e of events) {
      ids.add(e.event_id);
      const keys = Object.keys(e).sort().join(',');
      const ok =
        userById.has(e.user_id) &&
        itemById.has(e.item_id) &&
        types.has(e.type) &&
        (e.type === 'rating'
          ? Number.isInteger(e.value) &&
            e.value! >= 1 &&
            e.value! <= 5 &&
            keys === 'event_id,item_id,timestamp,type,user_id,value'
          : keys === 'event_id,item_id,timestamp,type,user_id');
      if (!ok) bad.push(e);
    }
    expect(bad).toEqual([]);
    expect(ids.size).toBe(events.length);
  });

  it('keeps timestamps inside the window, globally ordered, and after each item arrived', () => {
    expect(data.endTime - data.startTime).toBe(90 * 86_400_000);
    let previous = -Infinity;
    const bad: DemoEvent[] = [];
    for (const e of events) {
      const ok =
        Number.isInteger(e.timestamp) &&
        e.timestamp >= data.startTime &&
        e.timestamp <= data.endTime &&
        e.timestamp >= previous &&
        e.timestamp >= itemById.get(e.item_id)!.created_at;
      if (!ok) bad.push(e);
      previous = e.timestamp;
    }
    expect(bad).toEqual([]);
    // The window end is derived from the seed, not the clock, and can be pinned.
    const pinned = generateDemoData({
      users: 20,
      items: 10,
      events: 500,
      seed: 1,
      referenceTime: 1_700_000_000_000,
    });
    expect(pinned.endTime).toBe(1_700_000_000_000);
    for (const e of pinned.events()) expect(e.timestamp).toBeLessThanOrEqual(1_700_000_000_000);
  });

  it('walks the funnel in order: no step without the step before it, for the same user and item', () => {
    // Per (user, item), counts so far of view, click, add_to_cart, purchase. A step needs more of
    // the step before it than of itself (each click follows its own view, and so on); a rating
    // needs a click and a dislike a view.
    const seen = new Map<string, number[]>();
    const before: Record<string, number> = { click: 0, add_to_cart: 1, purchase: 2, rating: 1, dislike: 0 };
    const steps = ['view', 'click', 'add_to_cart', 'purchase'];
    const bad: DemoEvent[] = [];
    for (const e of events) {
      const key = `${e.user_id}\u0000${e.item_id}`;
      let c = seen.get(key);
      if (!c) seen.set(key, (c = [0, 0, 0, 0]));
      const step = steps.indexOf(e.type);
      if (e.type in before && !(c[before[e.type]] > (step >= 0 ? c[step] : 0))) bad.push(e);
      if (step >= 0) c[step]++;
    }
    expect(bad).toEqual([]);
    const n = countBy(events, (e) => e.type);
    expect(n.get('view')!).toBeGreaterThan(n.get('click')!);
    expect(n.get('click')!).toBeGreaterThan(n.get('add_to_cart')!);
    expect(n.get('add_to_cart')!).toBeGreaterThan(n.get('purchase')!);
    expect(n.get('purchase')!).toBeGreaterThan(0);
    expect(n.get('rating')!).toBeGreaterThan(0);
    expect(n.get('dislike')!).toBeGreaterThan(0);
  });

  it('groups each user’s events into sessions of several events', () => {
    const last = new Map<string, number>();
    let gaps = 0;
    let breaks = 0;
    for (const e of events) {
      const p = last.get(e.user_id);
      if (p !== undefined) {
        gaps++;
        if (e.timestamp - p > 30 * 60_000) breaks++;
      }
      last.set(e.user_id, e.timestamp);
    }
    const eventsPerSession = gaps / breaks;
    expect(eventsPerSession).toBeGreaterThan(3);
    expect(eventsPerSession).toBeLessThan(20);
  });

  it('has heavy-tailed item popularity and user activity', () => {
    const items = countBy(events, (e) => e.item_id);
    expect(topShare(items, 0.1, events.length)).toBeGreaterThan(0.4);
    // …but no single item swamps the data.
    expect(Math.max(...items.values()) / events.length).toBeLessThan(0.06);
    const users = countBy(events, (e) => e.user_id);
    expect(topShare(users, 0.1, events.length)).toBeGreaterThan(0.25);
  });

  it('carries a taste signal: users concentrate on few categories, sessions stay on topic', () => {
    const real = meanTopCategoryShare(events, 20);
    // Null model: the same events with items shuffled across them (same popularity, no taste).
    const items = events.map((e) => e.item_id);
    let s = 7;
    for (let k = items.length - 1; k > 0; k--) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      const j = s % (k + 1);
      [items[k], items[j]] = [items[j], items[k]];
    }
    const shuffled = events.map((e, k) => ({ user_id: e.user_id, item_id: items[k] }));
    const null_ = meanTopCategoryShare(shuffled, 20);
    expect(real).toBeGreaterThan(null_ + 0.2);

    // Consecutive views within a session mostly stay in one category.
    const last = new Map<string, { c: string; t: number }>();
    let same = 0;
    let pairs = 0;
    for (const e of events) {
      if (e.type !== 'view') continue;
      const p = last.get(e.user_id);
      const c = primaryCategory(e.item_id);
      if (p && e.timestamp - p.t < 30 * 60_000) {
        pairs++;
        if (p.c === c) same++;
      }
      last.set(e.user_id, { c, t: e.timestamp });
    }
    expect(same / pairs).toBeGreaterThan(0.45);
  });

  it('rates liked items higher: ratings in a user’s main category beat the rest', () => {
    const perUser = new Map<string, Map<string, number>>();
    for (const e of events) {
      let m = perUser.get(e.user_id);
      if (!m) perUser.set(e.user_id, (m = new Map()));
      m.set(primaryCategory(e.item_id), (m.get(primaryCategory(e.item_id)) ?? 0) + 1);
    }
    const main = new Map([...perUser].map(([u, m]) => [u, [...m].sort((a, b) => b[1] - a[1])[0][0]]));
    const inside: number[] = [];
    const outside: number[] = [];
    for (const e of events) {
      if (e.type !== 'rating') continue;
      (primaryCategory(e.item_id) === main.get(e.user_id) ? inside : outside).push(e.value!);
    }
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    expect(inside.length).toBeGreaterThan(100);
    expect(outside.length).toBeGreaterThan(100);
    expect(mean(inside)).toBeGreaterThan(mean(outside) + 0.3);
  });

  it('builds a plausible catalog: ~5% unavailable, category-dependent prices, items keep arriving', () => {
    for (const n of [1000, 777]) {
      const d = n === 1000 ? data : generateDemoData({ users: 10, items: n, events: 10, seed: 5 });
      const unavailable = d.items.filter((i) => !i.available).length / n;
      expect(Math.abs(unavailable - 0.05)).toBeLessThan(0.01);
    }
    const medianPrice = (category: string) => {
      const p = data.items
        .filter((i) => i.categories[0] === category)
        .map((i) => i.attributes.price)
        .sort((a, b) => a - b);
      return p[Math.floor(p.length / 2)];
    };
    expect(medianPrice('Computers')).toBeGreaterThan(3 * medianPrice('Books'));
    expect(medianPrice('Electronics')).toBeGreaterThan(3 * medianPrice('Grocery'));
    for (const it of data.items) {
      expect(it.attributes.price).toBeGreaterThan(0);
      expect(it.attributes.title.startsWith(it.attributes.brand)).toBe(true);
      expect(it.categories.length).toBeGreaterThanOrEqual(1);
      expect(new Set(it.categories).size).toBe(it.categories.length);
    }
    const arrivedInWindow = data.items.filter((i) => i.created_at >= data.startTime).length;
    expect(arrivedInWindow).toBeGreaterThan(0.1 * data.items.length);
    expect(arrivedInWindow).toBeLessThan(0.5 * data.items.length);
    // Withdrawn items stop getting events: the last events before the end avoid them.
    const late = events.filter((e) => e.timestamp > data.endTime - 86_400_000);
    expect(late.length).toBeGreaterThan(0);
    const lateUnavailable = late.filter((e) => !itemById.get(e.item_id)!.available).length / late.length;
    const allUnavailable = events.filter((e) => !itemById.get(e.item_id)!.available).length / events.length;
    expect(lateUnavailable).toBeLessThan(allUnavailable);
  });

  it('derives user segments from behaviour', () => {
    const allowed = new Set(['new', 'loyal', 'bargain_hunter', 'big_spender', 'window_shopper', 'dormant']);
    const perUser = countBy(events, (e) => e.user_id);
    const bySegment = new Map<string, number[]>();
    for (const u of data.users) {
      expect(typeof u.attributes.country).toBe('string');
      expect(typeof u.attributes.age_band).toBe('string');
      for (const s of u.segments) {
        expect(allowed.has(s)).toBe(true);
        const a = bySegment.get(s) ?? [];
        a.push(perUser.get(u.id) ?? 0);
        bySegment.set(s, a);
      }
    }
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    const overall = events.length / data.users.length;
    expect(mean(bySegment.get('loyal')!)).toBeGreaterThan(overall);
    expect(mean(bySegment.get('new')!)).toBeLessThan(overall);
    for (const s of bySegment.get('dormant') ?? []) expect(s).toBe(0);
    // Window shoppers convert less than everyone else.
    const rate = (pred: (segments: string[]) => boolean) => {
      let views = 0;
      let purchases = 0;
      for (const e of events) {
        if (!pred(userById.get(e.user_id)!.segments)) continue;
        if (e.type === 'view') views++;
        if (e.type === 'purchase') purchases++;
      }
      return purchases / views;
    };
    expect(rate((s) => s.includes('window_shopper'))).toBeLessThan(
      0.7 * rate((s) => !s.includes('window_shopper')),
    );
  });

  it('rejects invalid options with CAIRN_VALIDATION', () => {
    for (const bad of [
      { users: 0, items: 1, events: 1, seed: 1 },
      { users: 1, items: 1.5, events: 1, seed: 1 },
      { users: 1, items: 1, events: -1, seed: 1 },
      { users: 1, items: 1, events: 1, seed: Number.NaN },
    ]) {
      let caught: unknown;
      try {
        generateDemoData(bad);
      } catch (err) {
        caught = err;
      }
      expect(isCairnError(caught) && caught.code).toBe('CAIRN_VALIDATION');
    }
  });
});

describe('generateInteractions', () => {
  it('returns the same events as events(), as typed arrays with the documented weights', () => {
    const x = generateInteractions(MAIN);
    expect(x.users).toBe(MAIN.users);
    expect(x.items).toBe(MAIN.items);
    expect(x.typeNames).toEqual([...DEMO_EVENT_TYPES]);
    expect(x.userIdx).toHaveLength(events.length);
    const weightOf: Record<string, number> = { view: 1, click: 2, add_to_cart: 4, purchase: 8, dislike: 0 };
    const mismatches: number[] = [];
    for (let k = 0; k < events.length; k++) {
      const e = events[k];
      const ok =
        data.users[x.userIdx[k]].id === e.user_id &&
        data.items[x.itemIdx[k]].id === e.item_id &&
        x.typeNames[x.types[k]] === e.type &&
        x.timestamps[k] === e.timestamp &&
        x.weights[k] === (e.type === 'rating' ? e.value : weightOf[e.type]);
      if (!ok) mismatches.push(k);
    }
    expect(mismatches).toEqual([]);
  });
});
