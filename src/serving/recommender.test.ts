/**
 * The recommender when the online state (Redis in production) becomes unreachable: every request is
 * still answered, labelled `store_unavailable` and `degraded`, from what this process holds — the last
 * popular list it read — and personalized answers come back once the state answers again. A real
 * serving world (test/fixtures/serving-world.ts) with a champion; its memory online state sits behind a
 * switch that fails every call as an unreachable Redis does (CAIRN_UNAVAILABLE).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createWorld, item, ITEM_IDS, type World } from '../../test/fixtures/serving-world.ts';
import { systemContext } from '../domain/context.ts';
import { CairnError } from '../errors/errors.ts';
import type { OnlineState } from '../storage/ports.ts';
import { CatalogView } from './catalog.ts';
import { ChampionHolder } from './champion.ts';
import { PopularList } from './popular.ts';
import { Recommender } from './recommender.ts';

/** `inner` with every method failing while `down` is set. */
function switchable(inner: OnlineState): { online: OnlineState; down: { value: boolean } } {
  const down = { value: false };
  const online = new Proxy(inner, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) =>
        down.value
          ? Promise.reject(new CairnError('CAIRN_UNAVAILABLE', 'Redis unavailable: connection lost'))
          : (value as (...a: unknown[]) => unknown).apply(target, args);
    },
  });
  return { online, down };
}

describe('Recommender with the online state unreachable', () => {
  let world: World;
  let recommender: Recommender;
  let down: { value: boolean };
  /** The popular list's clock: its cached head is read again once 1 s old. */
  let t = Date.now();
  const ids = (items: { itemId: string }[]) => items.map((i) => i.itemId);

  beforeEach(async () => {
    // No answer cache: every answer here is computed.
    world = await createWorld({ serving: { cacheTtlSeconds: 0 } });
    await world.registry.promote((await world.registerModel()).version);
    const state = switchable(world.online);
    down = state.down;
    const champion = new ChampionHolder(world.registry, world.metrics, world.logger);
    await champion.refresh();
    const catalog = new CatalogView();
    catalog.upsert(ITEM_IDS.map((id) => item(id)));
    recommender = new Recommender({
      config: world.config,
      online: state.online,
      catalog,
      popular: new PopularList(state.online, 1000, 1000, () => t),
      metrics: world.metrics,
      logger: world.logger,
      champion: () => champion.get(),
    });
  });

  afterEach(() => world.close());

  it('answers every request from the last popular list read, labelled and degraded, until the state is back', async () => {
    const ctx = systemContext();
    const before = await recommender.recommend(ctx, { userId: 'u0', k: 5 });
    expect(before).toMatchObject({ source: 'personalized', degraded: false });
    const popular = await recommender.popular(ctx, { k: 5 });
    expect(popular).toMatchObject({ degraded: false, fallbackReason: null });
    expect(popular.items).toHaveLength(5);

    down.value = true;
    t += 1000;
    for (const userId of ['u0', 'someone-new']) {
      const answer = await recommender.recommend(ctx, { userId, k: 5 });
      expect(answer).toMatchObject({
        source: 'fallback',
        fallbackReason: 'store_unavailable',
        degraded: true,
      });
      expect(ids(answer.items)).toEqual(ids(popular.items));
    }
    const stale = await recommender.popular(ctx, { k: 5 });
    expect(stale).toMatchObject({ degraded: true, fallbackReason: 'store_unavailable' });
    expect(ids(stale.items)).toEqual(ids(popular.items));
    const similar = await recommender.similar(ctx, ids(popular.items)[0], { k: 20 });
    expect(similar.degraded).toBe(true);
    expect(similar.items.length).toBeGreaterThan(0);

    down.value = false;
    expect(await recommender.recommend(ctx, { userId: 'u0', k: 5 })).toMatchObject({
      source: 'personalized',
      degraded: false,
      items: before.items,
    });
  });
});
