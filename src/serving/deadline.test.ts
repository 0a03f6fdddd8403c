/**
 * Request deadlines in the recommender: a personal answer that would be computed past the caller's
 * deadline is replaced by the cheapest labelled fallback (popular items, `fallback_reason: 'deadline'`,
 * degraded). The deadline is checked where the work is, after the online-state reads and before the
 * model scores, so a budget spent waiting on a slow store is noticed. On the serving test world (real
 * SQLite registry, memory online state, a tiny ALS champion) with a clock the test moves.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createContext, systemContext, type RequestContext } from '../domain/context.ts';
import type { Serving } from '../main/serving.ts';
import {
  createWorld,
  historyOf,
  item,
  ITEM_IDS,
  onlineView,
  startWorldServing,
  USER_IDS,
  type World,
} from '../../test/fixtures/serving-world.ts';
import { Recommender } from './recommender.ts';

let world: World;
let serving: Serving;
let clock: number;
/** Added to the clock by every history read: a store that takes this long to answer. */
let readCost: number;

/** The recommender as startServing builds it, on the test's clock and a store that takes `readCost`. */
function recommender(): Recommender {
  const online = world.online;
  return new Recommender({
    config: world.config,
    online: onlineView(online, {
      recentEvents: (user, limit) => {
        clock += readCost;
        return online.recentEvents(user, limit);
      },
    }),
    catalog: serving.catalogView,
    popular: serving.popular,
    metrics: world.metrics,
    logger: world.logger,
    champion: () => serving.champion.get(),
    now: () => clock,
  });
}

/** A context whose caller waits `budgetMs` from the test clock's now. */
const withBudget = (budgetMs: number): RequestContext =>
  createContext({ ...systemContext(), deadline: clock + budgetMs });

beforeEach(async () => {
  // The cache off: every answer here is computed, none replayed.
  world = await createWorld({ serving: { cacheTtlSeconds: 0 } });
  await world.registry.promote((await world.registerModel()).version);
  serving = await startWorldServing(world);
  // Popular lists only name catalog items.
  serving.catalogView.upsert(ITEM_IDS.map((id) => item(id)));
  clock = Date.now();
  readCost = 0;
});

afterEach(async () => {
  await serving?.close();
  await world?.close();
});

describe('request deadlines', () => {
  it('answers personally within the budget, and with labelled popular items once it is spent', async () => {
    const r = recommender();
    const user = { userId: USER_IDS[5], k: 4 };
    const inTime = await r.recommend(withBudget(1000), user);
    expect(inTime).toMatchObject({ source: 'personalized', fallbackReason: null, degraded: false });

    const late = await r.recommend(withBudget(0), user);
    expect(late).toMatchObject({ source: 'fallback', fallbackReason: 'deadline', degraded: true });
    expect(late.items).toHaveLength(4);
    for (const it of late.items) expect(it.reason).toMatch(/^Popular /);
    // The user's own items are still excluded: the history was read before the deadline was checked.
    const seen = new Set(historyOf(5).map((i) => ITEM_IDS[i]));
    expect(late.items.filter((i) => seen.has(i.itemId))).toEqual([]);

    const counted = (await world.metrics.recommendationsServed.get()).values.find(
      (v) => v.labels.fallback_reason === 'deadline',
    );
    expect(counted?.value).toBe(1);
  });

  it('notices a budget spent waiting on the store before scoring', async () => {
    const r = recommender();
    readCost = 50;
    const user = { userId: USER_IDS[9], k: 3 };
    expect((await r.recommend(withBudget(100), user)).source).toBe('personalized');
    expect((await r.recommend(withBudget(40), user)).fallbackReason).toBe('deadline');
  });

  it('never expires a context without a deadline', async () => {
    const r = recommender();
    clock += 365 * 86_400_000;
    const answer = await r.recommend(systemContext(), { userId: USER_IDS[2], k: 3 });
    expect(answer.source).toBe('personalized');
  });
});
