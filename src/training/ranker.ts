/**
 * The second stage of a trained model version: a LambdaMART ranker (algorithms/gbdt.ts) over the ranking
 * features (features/ranking.ts), learned in the training worker from the gate's holdout and stored in
 * the version's artifact (`extra.ranker`, features/ranker-artifact.ts) for serving to rank its
 * candidates with.
 *
 * Rows come from held-out interactions and the candidates the retrievers propose for them (the issue's
 * "held-out interactions and sampled candidates"): the challenger fitted on the holdout's training part
 * and the time-decayed popularity are the retrievers (online: the served model and the popular list),
 * features are computed as of the newest event kept, from every event of every type except those of
 * held-out pairs (so no label leaks into a count), through the same fold the online state applies, and a
 * candidate is relevant when its pair was held out. A seeded share of the queries is kept apart: early
 * stopping watches it, and the ranker is shipped only if, on those queries, its top-k beats the
 * challenger's own top-k (NDCG@k); otherwise the version serves its model's ranking and says why.
 *
 * Pure computation (runs in the fit worker): no I/O.
 */
import { trainLambdaMart, type LambdaMartParams } from '../algorithms/gbdt.ts';
import { Rng } from '../algorithms/random.ts';
import type { FittedModel } from '../algorithms/types.ts';
import { MetricAccumulator } from '../evaluation/metrics.ts';
import { buildQueries, RankingRows, type QueryRetriever } from '../evaluation/ranking-queries.ts';
import type { FeatureConfig, FeatureEvent, ItemMeta } from '../features/definitions.ts';
import { decayedAt, ItemStateTimeline } from '../features/item-state.ts';
import {
  POPULARITY_RETRIEVER,
  popularityHalfLifeIndex,
  storedRanker,
  type StoredRanker,
} from '../features/ranker-artifact.ts';
import { RankingFeatures } from '../features/ranking.ts';
import {
  buildHead,
  CATEGORY_RETRIEVER,
  categoryScore,
  TRENDING_RETRIEVER,
} from '../features/head-retrievers.ts';
import { buildUserProfile } from '../features/interactions.ts';
import { SIMILAR_RETRIEVER, similarToRecent } from '../features/similar-retriever.ts';
import { CONTENT_RETRIEVER, ContentIndex } from '../features/content-retriever.ts';
import { buildUserContext } from '../features/user-features.ts';
import type { FeatureEventColumns } from './extract.ts';
import type { HoldoutSplit } from './holdout.ts';

/** What the fit worker needs to train a ranker (config `ranking`, `features`, `serving`). */
export interface RankerInput {
  events: FeatureEventColumns;
  features: FeatureConfig;
  /** Config `serving.historyLimit`: the user features see at most this many newest events, as online. */
  historyLimit: number;
  /** Config `serving.popularityHalfLifeDays`: the popularity retriever's half-life. */
  popularityHalfLifeDays: number;
  candidates: number;
  /** Irrelevant candidates kept per training query (a seeded sample; the relevant ones are all kept). */
  negatives: number;
  /** Config `ranking.extraRetrievers`: `trending`, `category`, `similar` (in round-robin order after the two). */
  extraRetrievers: readonly ('trending' | 'category' | 'similar' | 'content')[];
  /** Config `serving.recentItems`: the similar retriever's recent items, as online. */
  recentItems: number;
  /** At most this many queries (a seeded sample of the held-out users). */
  maxQueries: number;
  /** Share of the queries kept apart for early stopping and the ship decision. */
  validShare: number;
  lambdaMart: Partial<LambdaMartParams>;
  /** Catalog attributes (categories, price, createdAt) of the items that have them. */
  itemMeta: Record<string, ItemMeta>;
  /** Queries needed to train at all (fewer: no ranker, with the reason). */
  minQueries: number;
}

export interface RankerOutcome {
  /** Null: not shipped (see `reason`). */
  ranker: StoredRanker | null;
  reason: string;
  metrics: Record<string, number>;
  queries: number;
  rows: number;
  seconds: number;
}

/**
 * Trains the ranker on `split` with `model` (the challenger fitted on `split.train`, named `algorithm`)
 * and the popularity retriever, and decides whether it ships.
 */
export function trainRanker(
  input: RankerInput,
  split: HoldoutSplit,
  model: FittedModel,
  algorithm: string,
  itemIds: readonly string[],
  options: { seed: number; k: number; signal?: AbortSignal },
): RankerOutcome {
  const started = performance.now();
  const out = (reason: string, extra: Partial<RankerOutcome> = {}): RankerOutcome => ({
    ranker: null,
    reason,
    metrics: {},
    queries: 0,
    rows: 0,
    seconds: (performance.now() - started) / 1000,
    ...extra,
  });
  const ev = input.events;
  const held = heldOut(split);
  // Events of held-out pairs are left out of every feature: their counts would carry the label.
  const kept: FeatureEvent[] = [];
  const userEventIdx: number[][] = [];
  let cut = -Infinity;
  for (let k = 0; k < ev.user.length; k++) {
    const u = ev.user[k];
    const i = ev.item[k];
    if (u >= 0 && i >= 0 && held(u, i)) continue;
    const e: FeatureEvent = {
      itemId: ev.itemIds[ev.featureItem[k]],
      type: ev.types[ev.type[k]],
      value: Number.isNaN(ev.value[k]) ? null : ev.value[k],
      timestamp: ev.timestamp[k],
      seq: ev.seq[k],
    };
    if (u >= 0) (userEventIdx[u] ??= []).push(kept.length);
    kept.push(e);
    if (e.timestamp > cut) cut = e.timestamp;
  }
  const users: number[] = [];
  for (let u = 0; u < split.train.rows; u++)
    if (split.test.indptr[u + 1] > split.test.indptr[u]) users.push(u);
  if (users.length < input.minQueries)
    return out(`${users.length} held-out users, fewer than the ${input.minQueries} a ranker needs`);
  const rng = new Rng(options.seed ^ 0x5eed);
  shuffle(users, rng);
  const chosen = Int32Array.from(users.slice(0, Math.max(1, input.maxQueries)));

  const timeline = new ItemStateTimeline(kept, input.features);
  timeline.advanceTo(cut);
  const popIndex = popularityHalfLifeIndex(input.features, input.popularityHalfLifeDays);
  const popScores = new Float32Array(itemIds.length);
  for (let i = 0; i < itemIds.length; i++)
    popScores[i] = decayedAt(timeline.state(itemIds[i]), popIndex, cut, input.features);
  const userEvents = (u: number) => newestFirst(kept, userEventIdx[u] ?? [], input.historyLimit);
  const items: MatrixItems = { itemIds, matrixIndex: new Map(itemIds.map((id, i) => [id, i])) };
  // The user's recent positive items, as serving's profile finds them; the retrievers of one query ask
  // in turn for the same user, so the last answer is kept.
  let last: { user: number; recent: string[] } | null = null;
  const recentOf = (u: number): string[] => {
    if (last?.user !== u) {
      const events = userEvents(u);
      last = {
        user: u,
        recent: buildUserProfile(input.features.types, events, input.features.limits).recent,
      };
    }
    return last.recent;
  };
  const itemMeta = (id: string) => input.itemMeta[id] ?? null;
  const retrievers: QueryRetriever[] = [
    { name: algorithm, model },
    { name: POPULARITY_RETRIEVER, model: { scoreUser: (_u, _h, o) => o.set(popScores) } },
  ];
  const head = input.extraRetrievers.some((r) => r === TRENDING_RETRIEVER || r === CATEGORY_RETRIEVER)
    ? headRetrieversAt(cut, timeline, items, input, userEvents)
    : [];
  for (const name of input.extraRetrievers) {
    if (name === SIMILAR_RETRIEVER) retrievers.push(similarRetriever(model, items, input, recentOf));
    else if (name === CONTENT_RETRIEVER) retrievers.push(contentRetriever(items, input, recentOf));
    else retrievers.push(head.find((r) => r.name === name)!);
  }
  const features = new RankingFeatures({ config: input.features, retrievers: retrievers.map((r) => r.name) });
  const nf = features.names.length;

  const isValid = new Uint8Array(chosen.length);
  for (let j = 0; j < chosen.length; j++) isValid[j] = rng.float() < input.validShare ? 1 : 0;
  const position = new Map<number, number>();
  chosen.forEach((u, j) => position.set(u, j));
  const sets = { train: new RankingRows(nf), valid: new RankingRows(nf) };
  const accModel = new MetricAccumulator(options.k, itemIds.length);
  const validQueries: { user: number; items: Int32Array; rows: Float32Array; count: number }[] = [];
  const labels = new Float32Array(input.candidates);
  const pick = { rows: new Float32Array(input.candidates * nf), labels: new Float32Array(input.candidates) };
  buildQueries(
    {
      retrievers,
      history: split.train,
      exclude: [],
      itemIds,
      timeline,
      userEvents,
      itemMeta,
    },
    chosen,
    new Float64Array(chosen.length).fill(cut),
    features,
    input.candidates,
    (q) => {
      const relevant = split.test.items.subarray(split.test.indptr[q.user], split.test.indptr[q.user + 1]);
      let positives = 0;
      for (let c = 0; c < q.count; c++) {
        labels[c] = held(q.user, q.items[c]) ? 1 : 0;
        positives += labels[c];
      }
      const valid = isValid[position.get(q.user)!] === 1;
      if (valid) {
        // The challenger's own top-k on the same user: its list is the first retriever's.
        accModel.add(q.lists[0].items, q.lists[0].n, relevant);
        validQueries.push({
          user: q.user,
          items: q.items.slice(0, q.count),
          rows: q.rows.slice(0, q.count * nf),
          count: q.count,
        });
      }
      // A query without a relevant candidate teaches a ranker nothing (every order is as good).
      if (positives === 0) return;
      if (valid) sets.valid.add(q.rows, labels, q.count);
      else {
        // Training rows: every relevant candidate and a seeded sample of the others (the fit's cost is
        // linear in rows; the validation queries keep every candidate, as serving ranks them all).
        const n = sampleRows(q.rows, labels, q.count, nf, input.negatives, rng, pick);
        sets.train.add(pick.rows, pick.labels, n);
      }
    },
    options.signal,
  );
  const rowsSeconds = (performance.now() - started) / 1000;
  const train = sets.train.build();
  const valid = sets.valid.build();
  const queries = sets.train.queries;
  if (queries < input.minQueries)
    return out(`${queries} queries with a relevant candidate, fewer than ${input.minQueries}`, { queries });
  const gbdt = trainLambdaMart(train, valid.groups.length > 1 ? valid : null, input.lambdaMart, {
    featureNames: features.names,
    signal: options.signal,
  });

  // The ship decision: both top-k lists on the queries kept apart, against their held-out items.
  const accRanker = new MetricAccumulator(options.k, itemIds.length);
  const order = new Int32Array(input.candidates);
  const scored = new Float32Array(input.candidates);
  for (const q of validQueries) {
    gbdt.predictMany(q.rows, q.count, scored);
    for (let c = 0; c < q.count; c++) order[c] = c;
    const idx = Array.from(order.subarray(0, q.count)).sort((a, b) => scored[b] - scored[a] || a - b);
    const ranked = Int32Array.from(idx.slice(0, options.k), (c) => q.items[c]);
    accRanker.add(
      ranked,
      ranked.length,
      split.test.items.subarray(split.test.indptr[q.user], split.test.indptr[q.user + 1]),
    );
  }
  const key = `ndcg@${options.k}`;
  const rankerNdcg = accRanker.result()[key] ?? 0;
  const modelNdcg = accModel.result()[key] ?? 0;
  const metrics = {
    [key]: rankerNdcg,
    [`model_${key}`]: modelNdcg,
    queries,
    valid_queries: validQueries.length,
    trees: gbdt.history.bestIteration,
    rows_seconds: rowsSeconds,
    fit_seconds: (performance.now() - started) / 1000 - rowsSeconds,
  };
  const common = { metrics, queries, rows: sets.train.size };
  if (validQueries.length === 0) return out('no queries left to check the ranker on', common);
  if (!(rankerNdcg > modelNdcg))
    return out(
      `the ranker's ${key} ${rankerNdcg.toFixed(4)} does not beat the ${algorithm} model's ${modelNdcg.toFixed(4)} on ${validQueries.length} held-out users`,
      common,
    );
  return {
    ranker: storedRanker(
      gbdt,
      features,
      retrievers.map((r) => r.name),
      input.features,
      input.candidates,
      metrics,
    ),
    reason: `the ranker's ${key} ${rankerNdcg.toFixed(4)} beats the ${algorithm} model's ${modelNdcg.toFixed(4)} on ${validQueries.length} held-out users`,
    ...common,
    seconds: (performance.now() - started) / 1000,
  };
}

/** Membership test of the holdout's (user, item) pairs. */
function heldOut(split: HoldoutSplit): (u: number, i: number) => boolean {
  const { indptr, items } = split.test;
  const sets = new Map<number, Set<number>>();
  for (let u = 0; u + 1 < indptr.length; u++) {
    if (indptr[u + 1] > indptr[u]) sets.set(u, new Set(items.subarray(indptr[u], indptr[u + 1])));
  }
  return (u, i) => sets.get(u)?.has(i) ?? false;
}

/** The user's kept events, newest first (by timestamp, then seq), at most `limit`. */
function newestFirst(all: readonly FeatureEvent[], idx: readonly number[], limit: number): FeatureEvent[] {
  const list = idx.map((k) => all[k]);
  list.sort((a, b) => b.timestamp - a.timestamp || (b.seq ?? 0) - (a.seq ?? 0));
  return list.length > limit ? list.slice(0, limit) : list;
}

/**
 * Copies the relevant rows of a query and at most `negatives` of the others (reservoir-sampled) into
 * `into`, in their original order; returns how many.
 */
function sampleRows(
  rows: Float32Array,
  labels: Float32Array,
  count: number,
  nf: number,
  negatives: number,
  rng: Rng,
  into: { rows: Float32Array; labels: Float32Array },
): number {
  const keep = new Uint8Array(count);
  const reservoir: number[] = [];
  let t = 0; // irrelevant candidates met so far
  for (let c = 0; c < count; c++) {
    if (labels[c] > 0) keep[c] = 1;
    else if (t++ < negatives) reservoir.push(c);
    else {
      const j = rng.int(t);
      if (j < negatives) reservoir[j] = c;
    }
  }
  for (const c of reservoir) keep[c] = 1;
  let n = 0;
  for (let c = 0; c < count; c++) {
    if (keep[c] === 0) continue;
    into.rows.set(rows.subarray(c * nf, (c + 1) * nf), n * nf);
    into.labels[n++] = labels[c];
  }
  return n;
}

function shuffle(a: number[], rng: Rng): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

/**
 * The head retrievers at `cut` (features/head-retrievers.ts): the head is the HEAD_SIZE items of the
 * model with the largest decayed weight; every other item is missing (NaN) for them, as online.
 */
function headRetrieversAt(
  cut: number,
  timeline: ItemStateTimeline,
  { itemIds, matrixIndex }: MatrixItems,
  input: RankerInput,
  userEvents: (u: number) => FeatureEvent[],
): QueryRetriever[] {
  const popIndex = popularityHalfLifeIndex(input.features, input.popularityHalfLifeDays);
  const head = buildHead(
    itemIds.map((id) => ({
      id,
      state: timeline.state(id),
      categories: input.itemMeta[id]?.categories ?? [],
    })),
    cut,
    input.features,
    popIndex,
  );
  const at = Int32Array.from(head.ids, (id) => matrixIndex.get(id)!);
  const categoriesOf = (id: string) => input.itemMeta[id]?.categories ?? [];
  return [
    {
      name: TRENDING_RETRIEVER,
      minScore: 0,
      model: {
        scoreUser: (_u, _h, o) => {
          o.fill(Number.NaN);
          for (let h = 0; h < at.length; h++) o[at[h]] = head.trending[h];
        },
      },
    },
    {
      name: CATEGORY_RETRIEVER,
      minScore: 0,
      model: {
        scoreUser: (u, _h, o) => {
          // The shares of the user context the features are filled from (the same events and time).
          const { categoryShares } = buildUserContext(userEvents(u), null, cut, input.features, categoriesOf);
          o.fill(Number.NaN);
          for (let h = 0; h < at.length; h++) o[at[h]] = categoryScore(head, h, categoryShares);
        },
      },
    },
  ];
}

/**
 * The similar retriever (features/similar-retriever.ts) on the challenger's item-to-item scores, for the
 * user's recent items as serving finds them: the profile of the same newest events, its positive items
 * most recent first, the first `recentItems` the model knows.
 */
function similarRetriever(
  model: FittedModel,
  { itemIds, matrixIndex }: MatrixItems,
  input: RankerInput,
  recentOf: (u: number) => readonly string[],
): QueryRetriever {
  const buf = new Float32Array(itemIds.length);
  return {
    name: SIMILAR_RETRIEVER,
    minScore: 0,
    model: {
      scoreUser: (u, _h, o) => {
        const recent: number[] = [];
        for (const id of recentOf(u)) {
          const i = matrixIndex.get(id);
          if (i !== undefined) recent.push(i);
          if (recent.length >= input.recentItems) break;
        }
        const scores = recent.length > 0 ? similarToRecent(model, recent, itemIds.length, buf) : null;
        if (scores) o.set(scores.acc);
        else o.fill(0);
      },
    },
  };
}

/**
 * The content retriever (features/content-retriever.ts) over the catalog's content tokens, for the
 * user's recent items as serving finds them (the profile's positive items, most recent first, the first
 * `recentItems`). Only the model's items can be rows here; online it also proposes items without events.
 */
function contentRetriever(
  { matrixIndex }: MatrixItems,
  input: RankerInput,
  recentOf: (u: number) => readonly string[],
): QueryRetriever {
  const index = new ContentIndex(
    Object.entries(input.itemMeta).map(([id, meta]) => ({ id, tokens: meta.tokens ?? [] })),
  );
  return {
    name: CONTENT_RETRIEVER,
    minScore: 0,
    model: {
      scoreUser: (u, _h, o) => {
        o.fill(0);
        for (const [id, score] of index.scores(recentOf(u).slice(0, input.recentItems))) {
          const i = matrixIndex.get(id);
          if (i !== undefined) o[i] = score;
        }
      },
    },
  };
}

/** The model's item ids by matrix index, and the index of each id. */
interface MatrixItems {
  itemIds: readonly string[];
  matrixIndex: ReadonlyMap<string, number>;
}
