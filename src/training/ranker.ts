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
 * Logged answers add queries when present (`loggedQuery`: served answers with a click or conversion, from
 * the served log and its feedback): the candidates are the items the user saw, in served order, labelled
 * 2 converted / 1 clicked / 0 seen only, and every feature is computed as of the moment the answer was
 * served (point in time: the item states and the user's events then; popularity and the head as of then).
 * The challenger saw its training part, so an answer whose clicked or converted item is a training pair of
 * its user is left out (its model score would carry the label), and so is a seen-only item the user went on
 * to interact with. A seeded share of them is kept apart to report whether the ranker orders what users
 * chose above the order they were served in (`logged_ndcg@k` vs `served_ndcg@k`); the ship decision stays
 * on the held-out users.
 *
 * Pure computation (runs in the fit worker): no I/O.
 */
import { trainLambdaMart, type LambdaMartParams } from '../algorithms/gbdt.ts';
import { Rng } from '../algorithms/random.ts';
import type { FittedModel } from '../algorithms/types.ts';
import { MetricAccumulator } from '../evaluation/metrics.ts';
import { extraRetrievers, popularityRetriever, type RetrieverWorld } from '../evaluation/query-retrievers.ts';
import { buildQueries, RankingRows, type QueryRetriever } from '../evaluation/ranking-queries.ts';
import type { FeatureConfig, FeatureEvent, ItemMeta } from '../features/definitions.ts';
import { ItemStateTimeline } from '../features/item-state.ts';
import { popularityHalfLifeIndex, storedRanker, type StoredRanker } from '../features/ranker-artifact.ts';
import { RankingFeatures } from '../features/ranking.ts';
import type { ServedWithFeedback } from '../storage/ports.ts';
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
  /** Logged answers with outcomes (`loggedQuery`), newest first; empty: held-out queries only. */
  logged: readonly LoggedQuery[];
}

/** A served answer as a ranking query: the items the user saw, in served order, and their labels. */
export interface LoggedQuery {
  userId: string;
  /** When it was served (ms since the epoch, like event timestamps). */
  at: number;
  items: string[];
  /** Aligned with `items`: 2 converted, 1 clicked, 0 seen only. */
  labels: number[];
}

/**
 * The query of a logged answer: the items the user saw — those with impression feedback when the answer
 * has any, else every served item; clicked or converted ones always — labelled by their best outcome.
 * Null when it has no click or conversion on an item it served.
 */
export function loggedQuery({ served, feedback }: ServedWithFeedback): LoggedQuery | null {
  const label = new Map<string, number>();
  let impressions = false;
  for (const f of feedback) {
    const value = f.type === 'conversion' ? 2 : f.type === 'click' ? 1 : 0;
    if (f.type === 'impression') impressions = true;
    label.set(f.itemId, Math.max(label.get(f.itemId) ?? 0, value));
  }
  const items: string[] = [];
  const labels: number[] = [];
  for (const { itemId } of served.items) {
    if (impressions && !label.has(itemId)) continue;
    items.push(itemId);
    labels.push(label.get(itemId) ?? 0);
  }
  if (!labels.some((l) => l > 0)) return null;
  return { userId: served.userId, at: served.at, items, labels };
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
  { itemIds, userIds }: { itemIds: readonly string[]; userIds: readonly string[] },
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
  const userEvents = (u: number, at: number) =>
    newestFirst(kept, userEventIdx[u] ?? [], input.historyLimit, at);
  const matrixIndex = new Map(itemIds.map((id, i) => [id, i]));
  const world: RetrieverWorld = {
    timeline,
    itemIds,
    matrixIndex,
    features: input.features,
    popIndex: popularityHalfLifeIndex(input.features, input.popularityHalfLifeDays),
    categoriesOf: (id) => input.itemMeta[id]?.categories ?? [],
    userEvents,
    recentItems: input.recentItems,
  };
  const itemMeta = (id: string) => input.itemMeta[id] ?? null;
  const retrievers: QueryRetriever[] = [
    { name: algorithm, model },
    popularityRetriever(world),
    ...extraRetrievers(world, input.extraRetrievers, model, () =>
      Object.entries(input.itemMeta).map(([id, meta]) => ({ id, tokens: meta.tokens ?? [] })),
    ),
  ];
  const features = new RankingFeatures({ config: input.features, retrievers: retrievers.map((r) => r.name) });
  const nf = features.names.length;

  const isValid = new Uint8Array(chosen.length);
  for (let j = 0; j < chosen.length; j++) isValid[j] = rng.float() < input.validShare ? 1 : 0;
  const logged = loggedRows(input.logged, split, userIds, matrixIndex, input.validShare, rng);
  const sets = { train: new RankingRows(nf), valid: new RankingRows(nf) };
  const loggedValid: { rows: Float32Array; labels: Float32Array; count: number }[] = [];
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
    {
      users: Int32Array.from([...chosen, ...logged.queries.map((l) => l.user)]),
      at: Float64Array.from([...Array.from(chosen, () => cut), ...logged.queries.map((l) => l.at)]),
      given: [...Array.from(chosen, () => null), ...logged.queries.map((l) => l.items)],
    },
    features,
    input.candidates,
    (q) => {
      if (q.index >= chosen.length) {
        const l = logged.queries[q.index - chosen.length];
        if (l.valid)
          loggedValid.push({ rows: q.rows.slice(0, q.count * nf), labels: l.labels, count: q.count });
        else sets.train.add(q.rows, l.labels, q.count);
        return;
      }
      const relevant = split.test.items.subarray(split.test.indptr[q.user], split.test.indptr[q.user + 1]);
      let positives = 0;
      for (let c = 0; c < q.count; c++) {
        labels[c] = held(q.user, q.items[c]) ? 1 : 0;
        positives += labels[c];
      }
      const valid = isValid[q.index] === 1;
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
    logged_queries: logged.queries.length - loggedValid.length,
    logged_leaked: logged.leaked,
    logged_unknown: logged.unknown,
    ...loggedMetrics(gbdt, loggedValid, options.k, input.candidates),
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

/** The user's kept events at or before `at`, newest first (by timestamp, then seq), at most `limit`. */
function newestFirst(
  all: readonly FeatureEvent[],
  idx: readonly number[],
  limit: number,
  at: number,
): FeatureEvent[] {
  const list: FeatureEvent[] = [];
  for (const k of idx) if (all[k].timestamp <= at) list.push(all[k]);
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

/** A logged query ready to build: the user's row, the shown items' matrix indices and their labels. */
interface LoggedRows {
  user: number;
  at: number;
  items: Int32Array;
  labels: Float32Array;
  /** Kept apart to measure the ranker on (not trained on). */
  valid: boolean;
}

/**
 * The logged queries the challenger can be trained on without leaking their labels: users and items it
 * has rows for, no clicked or converted item among the user's training pairs (the model scored it from
 * the outcome itself), seen-only items the user went on to interact with dropped (not negatives), at
 * least one positive and one other item left. `leaked` and `unknown` count the answers left out for the
 * first reason and for having no model user.
 */
function loggedRows(
  logged: readonly LoggedQuery[],
  split: HoldoutSplit,
  userIds: readonly string[],
  matrixIndex: ReadonlyMap<string, number>,
  validShare: number,
  rng: Rng,
): { queries: LoggedRows[]; leaked: number; unknown: number } {
  const out = { queries: [] as LoggedRows[], leaked: 0, unknown: 0 };
  if (logged.length === 0) return out;
  const userIndex = new Map(userIds.map((id, u) => [id, u]));
  const { indptr, indices } = split.train;
  for (const l of logged) {
    const user = userIndex.get(l.userId);
    if (user === undefined) {
      out.unknown++;
      continue;
    }
    const trained = indices.subarray(indptr[user], indptr[user + 1]);
    const items: number[] = [];
    const labels: number[] = [];
    let leaked = false;
    for (let c = 0; c < l.items.length && !leaked; c++) {
      const item = matrixIndex.get(l.items[c]);
      if (item === undefined) continue;
      if (trained.includes(item)) {
        if (l.labels[c] > 0) leaked = true;
        continue;
      }
      items.push(item);
      labels.push(l.labels[c]);
    }
    if (leaked) out.leaked++;
    else if (items.length > 1 && labels.some((x) => x > 0))
      out.queries.push({
        user,
        at: l.at,
        items: Int32Array.from(items),
        labels: Float32Array.from(labels),
        valid: rng.float() < validShare,
      });
  }
  return out;
}

/**
 * The ranker against the served order on the logged queries kept apart: NDCG@k of the clicked or
 * converted items (binary) when the ranker orders the shown items, and as they were served.
 */
function loggedMetrics(
  gbdt: { predictMany(rows: Float32Array, count: number, out: Float32Array): void },
  queries: readonly { rows: Float32Array; labels: Float32Array; count: number }[],
  k: number,
  candidates: number,
): Record<string, number> {
  if (queries.length === 0) return {};
  const ranked = new MetricAccumulator(k, candidates);
  const served = new MetricAccumulator(k, candidates);
  const scores = new Float32Array(candidates);
  for (const q of queries) {
    gbdt.predictMany(q.rows, q.count, scores);
    const relevant = Int32Array.from(
      Array.from(q.labels.subarray(0, q.count).keys()).filter((c) => q.labels[c] > 0),
    );
    const byRanker = Int32Array.from(
      Array.from(q.labels.subarray(0, q.count).keys()).sort((a, b) => scores[b] - scores[a] || a - b),
    );
    const asServed = Int32Array.from(q.labels.subarray(0, q.count).keys());
    ranked.add(byRanker.subarray(0, k), Math.min(k, q.count), relevant);
    served.add(asServed.subarray(0, k), Math.min(k, q.count), relevant);
  }
  return {
    logged_valid_queries: queries.length,
    [`logged_ndcg@${k}`]: ranked.result()[`ndcg@${k}`] ?? 0,
    [`served_ndcg@${k}`]: served.result()[`ndcg@${k}`] ?? 0,
  };
}
