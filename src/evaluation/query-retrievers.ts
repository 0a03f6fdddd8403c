/**
 * The retrievers of offline ranking queries (ranking-queries.ts) besides the fitted models: popularity,
 * the head retrievers (`trending`, `category`; features/head-retrievers.ts), `similar`
 * (features/similar-retriever.ts) and `content` (features/content-retriever.ts), each as of the query's
 * time as serving computes it then. One definition for the training pipeline's ranker
 * (training/ranker.ts) and the two-stage evaluation (ltr.ts).
 *
 * Pure: no I/O.
 */
import type { FittedModel } from '../algorithms/types.ts';
import { CONTENT_RETRIEVER, ContentIndex } from '../features/content-retriever.ts';
import type { FeatureConfig, FeatureEvent } from '../features/definitions.ts';
import {
  buildHead,
  CATEGORY_RETRIEVER,
  categoryScore,
  HEAD_REFRESH_MS,
  TRENDING_RETRIEVER,
} from '../features/head-retrievers.ts';
import { buildUserProfile } from '../features/interactions.ts';
import { decayedAt, type ItemStateTimeline } from '../features/item-state.ts';
import { POPULARITY_RETRIEVER } from '../features/ranker-artifact.ts';
import { SIMILAR_RETRIEVER, similarToRecent } from '../features/similar-retriever.ts';
import { buildUserContext } from '../features/user-features.ts';
import type { QueryRetriever } from './ranking-queries.ts';

/** What the retrievers read: the replay the queries advance, the users' events and the catalog. */
export interface RetrieverWorld {
  /** Item states, advanced by the query builder to each query's time before the retrievers. */
  timeline: ItemStateTimeline;
  /** Matrix index → item id, and back. */
  itemIds: readonly string[];
  matrixIndex: ReadonlyMap<string, number>;
  features: FeatureConfig;
  /** Index of the popularity half-life in `features.halfLivesDays` (ranker-artifact.ts). */
  popIndex: number;
  categoriesOf: (itemId: string) => readonly string[];
  /** The user's events at or before `at`, newest first, bounded like the online history. */
  userEvents: (user: number, at: number) => FeatureEvent[];
  /** Config `serving.recentItems`: the recent items `similar` and `content` start from. */
  recentItems: number;
}

/**
 * The popularity retriever: every item's decayed weight over the popularity half-life as of the query's
 * time (recomputed when the time moves).
 */
export function popularityRetriever(world: RetrieverWorld): QueryRetriever {
  const { itemIds, timeline, popIndex, features } = world;
  const scores = new Float32Array(itemIds.length);
  let at = Number.NaN;
  return {
    name: POPULARITY_RETRIEVER,
    advanceTo: (now) => {
      if (now === at) return;
      at = now;
      for (let i = 0; i < itemIds.length; i++)
        scores[i] = decayedAt(timeline.state(itemIds[i]), popIndex, now, features);
    },
    model: { scoreUser: (_u, _h, o) => o.set(scores) },
  };
}

/**
 * The named extra retrievers, in the order given: `trending` and `category` over the head, `similar` on
 * `model`'s item-to-item scores, `content` over `contentTokens` (the catalog's, by item id).
 */
export function extraRetrievers(
  world: RetrieverWorld,
  names: readonly string[],
  model: Pick<FittedModel, 'similarItems'>,
  contentTokens: () => Iterable<{ id: string; tokens: readonly string[] }> = () => [],
): QueryRetriever[] {
  const recentOf = recentItemsOf(world);
  const head = names.some((r) => r === TRENDING_RETRIEVER || r === CATEGORY_RETRIEVER)
    ? headRetrievers(world)
    : [];
  return names.map((name) => {
    if (name === SIMILAR_RETRIEVER) return similarRetriever(world, model, recentOf);
    if (name === CONTENT_RETRIEVER) return contentRetriever(world, contentTokens(), recentOf);
    const r = head.find((h) => h.name === name);
    if (!r) throw new RangeError(`unknown retriever "${name}"`);
    return r;
  });
}

/**
 * The user's recent positive items at a time, as serving's profile finds them (most recent first); the
 * retrievers of one query ask in turn for the same user and time, so the last answer is kept.
 */
function recentItemsOf(world: RetrieverWorld): (u: number, at: number) => readonly string[] {
  let last: { user: number; at: number; recent: string[] } | null = null;
  return (u, at) => {
    if (last?.user !== u || last.at !== at) {
      const { types, limits } = world.features;
      last = { user: u, at, recent: buildUserProfile(types, world.userEvents(u, at), limits).recent };
    }
    return last.recent;
  };
}

/**
 * The head retrievers (features/head-retrievers.ts) as of the query's time: the head is the HEAD_SIZE
 * items with the largest decayed weight then, rebuilt when the time moved HEAD_REFRESH_MS past the last
 * build, as serving rebuilds it; every other item is missing (NaN) for them, as online.
 */
function headRetrievers(world: RetrieverWorld): QueryRetriever[] {
  const { itemIds, matrixIndex, timeline, features, popIndex, categoriesOf } = world;
  let now = Number.NaN;
  let builtAt = Number.NaN;
  let head: ReturnType<typeof buildHead> | null = null;
  let at = new Int32Array(0);
  const advanceTo = (t: number) => {
    now = t;
    if (t >= builtAt && t - builtAt < HEAD_REFRESH_MS) return;
    builtAt = t;
    head = buildHead(
      itemIds.map((id) => ({ id, state: timeline.state(id), categories: categoriesOf(id) })),
      t,
      features,
      popIndex,
    );
    at = Int32Array.from(head.ids, (id) => matrixIndex.get(id)!);
  };
  return [
    {
      name: TRENDING_RETRIEVER,
      minScore: 0,
      advanceTo,
      model: {
        scoreUser: (_u, _h, o) => {
          o.fill(Number.NaN);
          for (let h = 0; h < at.length; h++) o[at[h]] = head!.trending[h];
        },
      },
    },
    {
      name: CATEGORY_RETRIEVER,
      minScore: 0,
      advanceTo,
      model: {
        scoreUser: (u, _h, o) => {
          // The shares of the user context the features are filled from (the same events and time).
          const events = world.userEvents(u, now);
          const { categoryShares } = buildUserContext(events, null, now, features, categoriesOf);
          o.fill(Number.NaN);
          for (let h = 0; h < at.length; h++) o[at[h]] = categoryScore(head!, h, categoryShares);
        },
      },
    },
  ];
}

/**
 * The similar retriever on the model's item-to-item scores, for the user's recent items at the query's
 * time: the profile of the same newest events, its positive items most recent first, the first
 * `recentItems` the model knows.
 */
function similarRetriever(
  { itemIds, matrixIndex, recentItems }: RetrieverWorld,
  model: Pick<FittedModel, 'similarItems'>,
  recentOf: (u: number, at: number) => readonly string[],
): QueryRetriever {
  const buf = new Float32Array(itemIds.length);
  let now = Number.NaN;
  return {
    name: SIMILAR_RETRIEVER,
    minScore: 0,
    advanceTo: (t) => {
      now = t;
    },
    model: {
      scoreUser: (u, _h, o) => {
        const recent: number[] = [];
        for (const id of recentOf(u, now)) {
          const i = matrixIndex.get(id);
          if (i !== undefined) recent.push(i);
          if (recent.length >= recentItems) break;
        }
        const scores = recent.length > 0 ? similarToRecent(model, recent, itemIds.length, buf) : null;
        if (scores) o.set(scores.acc);
        else o.fill(0);
      },
    },
  };
}

/**
 * The content retriever over the catalog's content tokens, for the user's recent items at the query's
 * time (the profile's positive items, most recent first, the first `recentItems`). Only the model's items
 * can be rows here; online it also proposes items without events.
 */
function contentRetriever(
  { matrixIndex, recentItems }: RetrieverWorld,
  catalog: Iterable<{ id: string; tokens: readonly string[] }>,
  recentOf: (u: number, at: number) => readonly string[],
): QueryRetriever {
  const index = new ContentIndex(catalog);
  let now = Number.NaN;
  return {
    name: CONTENT_RETRIEVER,
    minScore: 0,
    advanceTo: (t) => {
      now = t;
    },
    model: {
      scoreUser: (u, _h, o) => {
        o.fill(0);
        for (const [id, score] of index.scores(recentOf(u, now).slice(0, recentItems))) {
          const i = matrixIndex.get(id);
          if (i !== undefined) o[i] = score;
        }
      },
    },
  };
}
