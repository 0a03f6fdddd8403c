/**
 * Offline evaluation of the two-stage pipeline (`cairn eval --algorithms ltr`): retrievers propose
 * candidates, a LambdaMART model ranks them on the ranking features (src/features/ranking.ts), and the
 * result is measured exactly like a single algorithm (evaluator.ts: same users, same exclusions, same
 * metrics).
 *
 * The test part is used for nothing but the final metrics. The ranker learns from the TRAINING part
 * alone, by the same protocol one level down:
 *
 * 1. an inner split of the training pairs (random-holdout and given: a random share per user, as the
 *    self-tuning carves it; leave-last-out: each user's newest training pair; temporal: the newest
 *    share of all training pairs by time);
 * 2. retrievers fitted on the inner train propose candidates for users with inner-validation pairs;
 *    features are computed as of the inner cut (item states folded from inner-train events at that
 *    time, the user's context from their inner-train events), labels mark candidates in the user's
 *    inner-validation row; queries without a positive are dropped; LambdaMART trains on them, with a
 *    held-out share of the queries for early stopping;
 * 3. the retrievers are refitted on the whole training part and the same candidates and features,
 *    now as of the outer cut, are ranked by the model; a list shorter than k is filled from the
 *    retriever that was best on the inner validation.
 *
 * Pure: no I/O.
 */
import { getAlgorithm, resolveParams } from '../algorithms/index.ts';
import {
  LAMBDAMART_DEFAULTS,
  resolveLambdaMartParams,
  trainLambdaMart,
  type GbdtModel,
  type LambdaMartParams,
} from '../algorithms/gbdt.ts';
import { mixSeed, Rng } from '../algorithms/random.ts';
import type { Csr } from '../algorithms/sparse.ts';
import { TopKHeap } from '../algorithms/topk.ts';
import type { FittedModel, Params, ParamValue } from '../algorithms/types.ts';
import { CairnError } from '../errors/errors.ts';
import type { FeatureConfig, FeatureEvent } from '../features/definitions.ts';
import { ItemStateTimeline } from '../features/item-state.ts';
import { popularityHalfLifeIndex } from '../features/ranker-artifact.ts';
import { RankingFeatures } from '../features/ranking.ts';
import type { AlgorithmEvaluation } from './evaluator.ts';
import type { Interactions } from './filters.ts';
import { MetricAccumulator } from './metrics.ts';
import { carveValidation, csrPart, VALIDATION_FRACTION } from './self-tune.ts';
import { extraRetrievers, type RetrieverWorld } from './query-retrievers.ts';
import { buildQueries, RankingRows } from './ranking-queries.ts';
import { splitCounts, type Split } from './splits.ts';

/** Retrievers the pipeline can use (single algorithms of the registry). */
export const LTR_RETRIEVERS = ['pop', 'itemknn', 'als', 'ease', 'bpr', 'rp3beta'] as const;
export type LtrRetriever = (typeof LTR_RETRIEVERS)[number];

/** Retrievers that are not fitted algorithms (query-retrievers.ts), after the fitted ones. */
export const LTR_EXTRA_RETRIEVERS = ['trending', 'similar'] as const;
export type LtrExtraRetriever = (typeof LTR_EXTRA_RETRIEVERS)[number];

export interface LtrSettings {
  /** Retrievers, in round-robin order. */
  retrievers: LtrRetriever[];
  /**
   * After them, as serving's ranker draws them: `trending` over the popular head, `similar` on the
   * item-to-item scores of the first retriever that has them (popularity excepted). The data sets
   * evaluated carry no catalog, so `category` and `content` have nothing to work on.
   */
  extraRetrievers: LtrExtraRetriever[];
  /** Parameter overrides per retriever (the algorithm's defaults otherwise). */
  retrieverParams: Partial<Record<LtrRetriever, Params>>;
  /** EASE is left out above this many items (its dense fit is O(items³)). */
  easeMaxItems: number;
  /** Candidates per user after merging. */
  candidates: number;
  lambdaMart: LambdaMartParams;
  /** Share of the training queries held out for early stopping. */
  validShare: number;
  /** At most this many training queries (a seeded sample; 0: all). */
  maxTrainQueries: number;
  /**
   * Time the features are computed at: `cut` the split's cut (the newest training event), `user` the
   * user's own newest training event (leave-last-out: their next event follows it), `auto` = `user`
   * for leave-last-out, `cut` otherwise.
   */
  pointInTime: 'auto' | 'cut' | 'user';
}

/** Defaults (chosen on the inner validation split of the benchmark data sets, never on a test part). */
export const LTR_DEFAULTS: LtrSettings = {
  retrievers: ['pop', 'itemknn', 'als', 'ease'],
  // Chosen on the inner validation: higher under all three protocols on MovieTweetings (docs/benchmarks.md).
  extraRetrievers: ['trending', 'similar'],
  retrieverParams: { pop: { halfLifeDays: 30 } },
  easeMaxItems: 30_000,
  candidates: 200,
  lambdaMart: { ...LAMBDAMART_DEFAULTS },
  validShare: 0.2,
  maxTrainQueries: 20_000,
  pointInTime: 'auto',
};

/**
 * Settings from `--param ltr.NAME=VALUE` style overrides: `candidates`, `validShare`,
 * `maxTrainQueries`, `easeMaxItems`, `pointInTime`, `retrievers` (`pop+itemknn+als`), any LambdaMART
 * parameter (`trees`, `leaves`, …) and `<retriever>.<param>` (e.g. `pop.halfLifeDays`).
 */
export function resolveLtrSettings(
  base: LtrSettings,
  overrides: Readonly<Record<string, ParamValue>>,
): LtrSettings {
  const out: LtrSettings = {
    ...base,
    retrievers: [...base.retrievers],
    extraRetrievers: [...base.extraRetrievers],
    retrieverParams: Object.fromEntries(Object.entries(base.retrieverParams).map(([k, v]) => [k, { ...v }])),
    lambdaMart: { ...base.lambdaMart },
  };
  const bad = (key: string, message: string): CairnError =>
    CairnError.validation([{ field: `ltr.${key}`, message }]);
  const num = (key: string, v: ParamValue, min: number, max: number, integer: boolean): number => {
    const n = typeof v === 'number' ? v : Number(v);
    if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
      throw bad(key, `must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}]`);
    }
    return n;
  };
  const nameList = <T extends string>(key: string, v: ParamValue, known: readonly T[]): T[] => {
    const names = String(v)
      .split(/[+,]/)
      .map((x) => x.trim())
      .filter(Boolean);
    for (const n of names) {
      if (!(known as readonly string[]).includes(n))
        throw bad(key, `unknown retriever "${n}" (known: ${known.join(', ')})`);
    }
    return [...new Set(names)] as T[];
  };
  const lm: Partial<LambdaMartParams> = {};
  for (const [key, v] of Object.entries(overrides)) {
    const dot = key.indexOf('.');
    if (dot > 0) {
      const r = key.slice(0, dot);
      if (!(LTR_RETRIEVERS as readonly string[]).includes(r)) throw bad(key, `unknown retriever "${r}"`);
      const name = r as LtrRetriever;
      out.retrieverParams[name] = { ...(out.retrieverParams[name] ?? {}), [key.slice(dot + 1)]: v };
      continue;
    }
    if (key === 'candidates') out.candidates = num(key, v, 1, 100_000, true);
    else if (key === 'validShare') out.validShare = num(key, v, 0, 0.9, false);
    else if (key === 'maxTrainQueries') out.maxTrainQueries = num(key, v, 0, 1e9, true);
    else if (key === 'easeMaxItems') out.easeMaxItems = num(key, v, 0, 1e9, true);
    else if (key === 'pointInTime') {
      if (v !== 'auto' && v !== 'cut' && v !== 'user') throw bad(key, 'must be auto, cut or user');
      out.pointInTime = v;
    } else if (key === 'retrievers') {
      out.retrievers = nameList(key, v, LTR_RETRIEVERS);
      if (out.retrievers.length === 0) throw bad(key, 'name at least one retriever');
    } else if (key === 'extraRetrievers') {
      out.extraRetrievers = String(v) === 'none' ? [] : nameList(key, v, LTR_EXTRA_RETRIEVERS);
    } else if (key in LAMBDAMART_DEFAULTS) {
      lm[key as keyof LambdaMartParams] = num(key, v, -Infinity, Infinity, false);
    } else {
      throw bad(key, 'unknown parameter');
    }
  }
  out.lambdaMart = resolveLambdaMartParams({ ...out.lambdaMart, ...lm }, 'ltr');
  // Check retriever parameters now, not after minutes of fitting.
  for (const [r, p] of Object.entries(out.retrieverParams)) resolveParams(getAlgorithm(r), p);
  return out;
}

export interface LtrOptions {
  k: number;
  seed: number;
  threads: number;
  settings: LtrSettings;
  /** Item feature settings (config `features`); event types are fixed here (one interaction type). */
  halfLivesDays: readonly number[];
  /** Config `serving.recentItems`: the recent items the `similar` retriever starts from (default 10). */
  recentItems?: number;
  onProgress?: (fraction: number, stage: string) => void;
  signal?: AbortSignal;
}

export interface LtrEvaluation extends AlgorithmEvaluation {
  model: GbdtModel;
  /** What the ranker was trained on. */
  training: {
    queries: number;
    validQueries: number;
    rows: number;
    bestIteration: number;
    validNdcg: number;
    /** Inner-validation NDCG@k of each retriever alone (full ranking) on the query users. */
    retrieverNdcg: Record<string, number>;
    /**
     * Inner-validation NDCG@k on the early-stopping users (none of which trained the trees): the
     * ranker's, and each retriever's alone on the same users.
     */
    heldOut: { users: number; ltr: number; retrievers: Record<string, number> };
    fillRetriever: string;
    pointInTime: 'cut' | 'user';
    lambdaMartSeconds: number;
  };
}

/**
 * Timestamps of `m`'s stored pairs, aligned with `m.indices` (NaN where `x` has none): `x` holds one
 * row per (user, item) pair, as the split was made from.
 */
export function pairTimes(m: Csr, x: Pick<Interactions, 'users' | 'items' | 'times'>): Float64Array {
  const out = new Float64Array(m.indices.length).fill(Number.NaN);
  for (let r = 0; r < x.users.length; r++) {
    const u = x.users[r];
    if (u >= m.rows) continue;
    let lo = m.indptr[u];
    let hi = m.indptr[u + 1] - 1;
    const i = x.items[r];
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = m.indices[mid];
      if (v === i) {
        out[mid] = x.times[r];
        break;
      }
      if (v < i) lo = mid + 1;
      else hi = mid - 1;
    }
  }
  return out;
}

/** A training matrix with the timestamp of every stored pair (aligned with `indices`). */
interface TimedCsr {
  m: Csr;
  times: Float64Array;
}

function subsetCsr(src: TimedCsr, flags: Uint8Array, which: number): TimedCsr {
  // csrPart keeps the pairs in (row, col) order, so the kept times stay aligned with its indices.
  return { m: csrPart(src.m, flags, which), times: src.times.filter((_, p) => flags[p] === which) };
}

/** The inner split of the training pairs under the outer protocol (see the file comment). */
export function innerSplit(
  train: TimedCsr,
  protocol: Split['protocol'],
  seed: number,
): { train: TimedCsr; valid: TimedCsr } {
  const { m, times } = train;
  const flags = new Uint8Array(m.indices.length);
  if (protocol === 'leave-last-out') {
    for (let u = 0; u < m.rows; u++) {
      const s = m.indptr[u];
      const e = m.indptr[u + 1];
      if (e - s < 2) continue;
      let newest = s;
      for (let p = s + 1; p < e; p++) if (times[p] > times[newest]) newest = p;
      flags[newest] = 1;
    }
  } else if (protocol === 'temporal') {
    const order = Int32Array.from({ length: flags.length }, (_, p) => p);
    order.sort((a, b) => times[a] - times[b] || a - b);
    // The outer 80/10 train/valid proportion, one level down.
    const [nTrain] = splitCounts(order.length, [8, 1]);
    for (let j = nTrain; j < order.length; j++) flags[order[j]] = 1;
  } else {
    const inner = carveValidation(m, seed, VALIDATION_FRACTION);
    // carveValidation returns matrices; recover the flags by membership in its validation part.
    for (let u = 0; u < m.rows; u++) {
      let q = inner.valid.indptr[u];
      for (let p = m.indptr[u]; p < m.indptr[u + 1]; p++) {
        if (q < inner.valid.indptr[u + 1] && inner.valid.indices[q] === m.indices[p]) {
          flags[p] = 1;
          q++;
        }
      }
    }
  }
  return { train: subsetCsr(train, flags, 0), valid: subsetCsr(train, flags, 1) };
}

/** The one event type of evaluation data: each pair is one event weighing its training weight. */
const EVENT_TYPE = 'interaction';

function featureConfig(halfLivesDays: readonly number[]): FeatureConfig {
  return {
    types: { [EVENT_TYPE]: { weight: 1, useValue: true } },
    halfLivesDays: [...halfLivesDays],
    maxSegmentsPerItem: 0,
  };
}

/** Item ids are the dense indices as strings (what the feature store keys items by). */
const itemIds = (n: number): string[] => Array.from({ length: n }, (_, i) => String(i));

interface Stage {
  retrievers: { name: string; model: FittedModel }[];
  /** Drawn after the fitted retrievers (query-retrievers.ts). */
  extra: readonly LtrExtraRetriever[];
  history: TimedCsr;
  /** Cut time (newest history time; 0 without times). */
  cut: number;
  /** Items each user may not be offered (besides their history). */
  exclude: readonly Csr[];
  /** The head's popularity half-life (the `pop` retriever's). */
  popularityHalfLifeDays: number;
  /** The recent items `similar` starts from. */
  recentItems: number;
}

async function fitRetrievers(
  history: TimedCsr,
  settings: LtrSettings,
  options: LtrOptions,
  stage: string,
  progress: (f: number, s: string) => void,
): Promise<{ retrievers: { name: string; model: FittedModel }[]; seconds: number; cut: number }> {
  const names = settings.retrievers.filter((r) => r !== 'ease' || history.m.cols <= settings.easeMaxItems);
  if (names.length === 0) {
    throw CairnError.validation([
      { field: 'ltr.retrievers', message: 'no retriever left (EASE skipped: too many items)' },
    ]);
  }
  const { items, times } = timedEvents(history);
  let cut = -Infinity;
  for (const t of times) if (t > cut) cut = t;
  const started = performance.now();
  const out: { name: string; model: FittedModel }[] = [];
  for (let r = 0; r < names.length; r++) {
    const spec = getAlgorithm(names[r]);
    const params = resolveParams(spec, settings.retrieverParams[names[r]] ?? {});
    options.signal?.throwIfAborted();
    const model = await spec.fit(history.m, params, {
      threads: options.threads,
      seed: options.seed,
      signal: options.signal,
      onProgress: (f) => progress((r + f) / names.length, `${stage}: fit ${names[r]}`),
      ...(items.length > 0 ? { itemEventTimes: { items, times }, now: cut } : {}),
    });
    out.push({ name: names[r], model });
  }
  return {
    retrievers: out,
    seconds: (performance.now() - started) / 1000,
    cut: Number.isFinite(cut) ? cut : 0,
  };
}

function timedEvents(h: TimedCsr): { items: Int32Array; times: Float64Array } {
  let n = 0;
  for (const t of h.times) if (!Number.isNaN(t)) n++;
  const items = new Int32Array(n);
  const times = new Float64Array(n);
  let q = 0;
  for (let p = 0; p < h.times.length; p++) {
    if (Number.isNaN(h.times[p])) continue;
    items[q] = h.m.indices[p];
    times[q++] = h.times[p];
  }
  return { items, times };
}

/** Per user, events of the history newest first (timestamp 0 when unknown). */
function userEvents(h: TimedCsr, u: number, ids: readonly string[]): FeatureEvent[] {
  const out: FeatureEvent[] = [];
  for (let p = h.m.indptr[u]; p < h.m.indptr[u + 1]; p++) out.push(pairEvent(h, p, ids));
  out.sort((a, b) => b.timestamp - a.timestamp);
  return out;
}

/** History pair `p` as an event of the one interaction type (timestamp 0 when unknown). */
function pairEvent(h: TimedCsr, p: number, ids: readonly string[]): FeatureEvent {
  const t = h.times[p];
  return {
    itemId: ids[h.m.indices[p]],
    type: EVENT_TYPE,
    value: h.m.data[p],
    timestamp: Number.isNaN(t) ? 0 : t,
  };
}

/** The user's newest history time, or the cut when they have no timed pair. */
function userTime(h: TimedCsr, u: number, cut: number): number {
  let t = -Infinity;
  for (let p = h.m.indptr[u]; p < h.m.indptr[u + 1]; p++) if (h.times[p] > t) t = h.times[p];
  return Number.isFinite(t) ? t : cut;
}

/**
 * Every query's candidates and feature rows for `users` (ranking-queries.ts), with this pipeline's
 * inputs: item ids are the dense indices as strings, item states folded from the history's timed pairs
 * (one interaction type), the user's events are their history pairs, at the cut or at the user's own
 * newest pair (`pointInTime`).
 */
function buildStageQueries(
  stage: Stage,
  users: Int32Array,
  pointInTime: 'cut' | 'user',
  features: RankingFeatures,
  config: FeatureConfig,
  candidates: number,
  onUser: (
    u: number,
    items: Int32Array,
    count: number,
    rows: Float32Array,
    scores: readonly Float32Array[],
  ) => void,
  signal?: AbortSignal,
): void {
  const { history } = stage;
  const ids = itemIds(history.m.cols);
  const events: FeatureEvent[] = [];
  for (let p = 0; p < history.m.indices.length; p++) events.push({ ...pairEvent(history, p, ids), seq: p });
  const at = Float64Array.from(users, (u) =>
    pointInTime === 'user' ? userTime(history, u, stage.cut) : stage.cut,
  );
  const timeline = new ItemStateTimeline(events, config);
  // Every pair of the history is at or before the query's time (the cut, or the user's newest pair).
  const eventsOf = (u: number) => userEvents(history, u, ids);
  const world: RetrieverWorld = {
    timeline,
    itemIds: ids,
    matrixIndex: new Map(ids.map((id, i) => [id, i])),
    features: config,
    popIndex: popularityHalfLifeIndex(config, stage.popularityHalfLifeDays),
    categoriesOf: () => [],
    userEvents: eventsOf,
    recentItems: stage.recentItems,
  };
  const probe = new Float32Array(history.m.cols);
  const similarFrom = stage.retrievers.find((r) => r.name !== 'pop' && r.model.similarItems(0, probe));
  const noSimilarity = { similarItems: () => false };
  buildQueries(
    {
      retrievers: [
        ...stage.retrievers,
        ...extraRetrievers(world, stage.extra, similarFrom?.model ?? noSimilarity),
      ],
      history: history.m,
      exclude: stage.exclude,
      itemIds: ids,
      timeline,
      userEvents: eventsOf,
    },
    { users, at },
    features,
    candidates,
    (q) => onUser(q.user, q.items, q.count, q.rows, q.scores),
    signal,
  );
}

/** Users with a non-empty row in `m`. */
function usersWithRows(m: Csr): Int32Array {
  const out: number[] = [];
  for (let u = 0; u < m.rows; u++) if (m.indptr[u + 1] > m.indptr[u]) out.push(u);
  return Int32Array.from(out);
}

function contains(m: Csr, u: number, item: number): boolean {
  let lo = m.indptr[u];
  let hi = m.indptr[u + 1] - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const v = m.indices[mid];
    if (v === item) return true;
    if (v < item) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/**
 * Evaluates the two-stage pipeline on `split` (see the file comment). `trainTimes` holds the time of
 * every training pair aligned with `split.train.indices` (NaN when unknown; the time-based protocols
 * need them).
 */
export async function evaluateLtr(
  split: Split,
  trainTimes: Float64Array,
  options: LtrOptions,
): Promise<LtrEvaluation> {
  const settings = options.settings;
  const k = options.k;
  if (trainTimes.length !== split.train.indices.length)
    throw new RangeError('trainTimes must align with split.train');
  const progress = options.onProgress ?? (() => {});
  const pointInTime =
    settings.pointInTime === 'auto'
      ? split.protocol === 'leave-last-out'
        ? 'user'
        : 'cut'
      : settings.pointInTime;
  const config = featureConfig(options.halfLivesDays);
  const started = performance.now();

  // ---- Stage A: learn the ranker from the training part only.
  const outer: TimedCsr = { m: split.train, times: trainTimes };
  const inner = innerSplit(outer, split.protocol, mixSeed(options.seed, 1));
  const innerFit = await fitRetrievers(inner.train, settings, options, 'inner', (f, s) =>
    progress(0.3 * f, s),
  );
  const names = [...innerFit.retrievers.map((r) => r.name), ...settings.extraRetrievers];
  const features = new RankingFeatures({ config, retrievers: names });
  const stageOf = (
    fit: { retrievers: Stage['retrievers']; cut: number },
    history: TimedCsr,
    exclude: Csr[],
  ) => ({
    retrievers: fit.retrievers,
    extra: settings.extraRetrievers,
    history,
    cut: fit.cut,
    exclude,
    popularityHalfLifeDays: Number(
      resolveParams(getAlgorithm('pop'), settings.retrieverParams.pop ?? {}).halfLifeDays,
    ),
    recentItems: options.recentItems ?? 10,
  });
  const nf = features.names.length;
  let queryUsers = usersWithRows(inner.valid.m);
  const rng = new Rng(mixSeed(options.seed, 2));
  if (settings.maxTrainQueries > 0 && queryUsers.length > settings.maxTrainQueries) {
    rng.shuffle(queryUsers);
    queryUsers = queryUsers.slice(0, settings.maxTrainQueries).sort();
  }
  // Early-stopping queries: a seeded share of the users, decided before the candidates are seen.
  const isValidQuery = new Uint8Array(split.train.rows);
  for (const u of queryUsers) if (rng.float() < settings.validShare) isValidQuery[u] = 1;
  const trainSet = new RankingRows(nf);
  const validSet = new RankingRows(nf);
  const labels = new Float32Array(settings.candidates);
  const retrieverAcc = names.map(() => new MetricAccumulator(k, split.train.cols));
  // The same, on the early-stopping users only: what the ranker's inner score is compared with.
  const retrieverHeldAcc = names.map(() => new MetricAccumulator(k, split.train.cols));
  /** Early-stopping users in order, with the index of their query in validSet (−1: no positive). */
  const heldUsers: number[] = [];
  const heldQuery: number[] = [];
  const heldItems: Int32Array[] = [];
  const topHeap = new TopKHeap(k);
  const topItems = new Int32Array(k);
  const topScores = new Float32Array(k);
  let done = 0;
  buildStageQueries(
    stageOf(innerFit, inner.train, []),
    queryUsers,
    pointInTime,
    features,
    config,
    settings.candidates,
    (u, items, count, rows, scores) => {
      const target = inner.valid.m.indices.subarray(inner.valid.m.indptr[u], inner.valid.m.indptr[u + 1]);
      // Each retriever alone, full ranking (history excluded), to pick the one that fills short lists.
      for (let r = 0; r < scores.length; r++) {
        // The features are written: the score vector may be overwritten now.
        const s = scores[r];
        const { indptr, indices } = inner.train.m;
        for (let p = indptr[u]; p < indptr[u + 1]; p++) s[indices[p]] = -Infinity;
        topHeap.reset(k);
        for (let i = 0; i < s.length; i++) if (s[i] > topHeap.threshold()) topHeap.push(i, s[i]);
        const n = topHeap.drainInto(topItems, topScores, 0);
        retrieverAcc[r].add(topItems, n, target);
        if (isValidQuery[u]) retrieverHeldAcc[r].add(topItems, n, target);
      }
      let positives = 0;
      for (let c = 0; c < count; c++) {
        labels[c] = contains(inner.valid.m, u, items[c]) ? 1 : 0;
        positives += labels[c];
      }
      if (isValidQuery[u]) {
        heldUsers.push(u);
        heldQuery.push(positives > 0 ? validSet.queries : -1);
        if (positives > 0) heldItems.push(items.slice(0, count));
      }
      if (positives > 0) (isValidQuery[u] ? validSet : trainSet).add(rows, labels, count);
      if (++done % 512 === 0) progress(0.3 + (0.2 * done) / queryUsers.length, 'inner candidates');
    },
    options.signal,
  );
  if (trainSet.queries === 0) {
    throw new CairnError(
      'CAIRN_NOT_ENOUGH_DATA',
      'ltr: no inner-validation pair is among the candidates; nothing to learn from',
    );
  }
  const retrieverNdcg: Record<string, number> = {};
  let fill = 0;
  names.forEach((name, j) => {
    retrieverNdcg[name] = retrieverAcc[j].result()[`ndcg@${k}`];
    if (retrieverNdcg[name] > retrieverNdcg[names[fill]]) fill = j;
  });
  const trainData = trainSet.build();
  const validData = validSet.queries > 0 ? validSet.build() : null;
  const lmStarted = performance.now();
  const model = trainLambdaMart(trainData, validData, settings.lambdaMart, {
    featureNames: features.names,
    signal: options.signal,
    onProgress: (f) => progress(0.5 + 0.2 * f, 'lambdamart'),
  });
  const lambdaMartSeconds = (performance.now() - lmStarted) / 1000;
  // The ranker on the early-stopping users, measured like the retrievers beside it (users whose
  // candidates miss every positive count 0): the number to compare designs and defaults by.
  const innerAcc = new MetricAccumulator(k, split.train.cols);
  const retrieverHeldNdcg: Record<string, number> = {};
  if (validData) {
    const innerPred = new Float32Array(settings.candidates);
    const ranked = new Int32Array(k);
    const rankedScores = new Float32Array(k);
    for (let h = 0; h < heldUsers.length; h++) {
      const u = heldUsers[h];
      const target = inner.valid.m.indices.subarray(inner.valid.m.indptr[u], inner.valid.m.indptr[u + 1]);
      const q = heldQuery[h];
      if (q < 0) {
        innerAcc.add(ranked, 0, target);
        continue;
      }
      const s = validData.groups[q];
      const count = validData.groups[q + 1] - s;
      model.predictMany(validData.features.subarray(s * nf, (s + count) * nf), count, innerPred);
      topHeap.reset(k);
      for (let c = 0; c < count; c++) topHeap.push(c, innerPred[c]);
      const n = topHeap.drainInto(ranked, rankedScores, 0);
      const items = heldItems[q];
      for (let j = 0; j < n; j++) ranked[j] = items[ranked[j]];
      innerAcc.add(ranked, n, target);
    }
    names.forEach((name, j) => (retrieverHeldNdcg[name] = retrieverHeldAcc[j].result()[`ndcg@${k}`]));
  }

  // ---- Stage B: refit the retrievers on the whole training part, rank, measure on the target.
  const outerFit = await fitRetrievers(outer, settings, options, 'refit', (f, s) =>
    progress(0.7 + 0.15 * f, s),
  );
  const trainSeconds = (performance.now() - started) / 1000;
  const target = split.test;
  const exclude = [split.train, split.valid];
  const acc = new MetricAccumulator(k, target.cols);
  const testUsers = usersWithRows(target);
  const predicted = new Float32Array(settings.candidates);
  const ranked = new Int32Array(k);
  const rankedScores = new Float32Array(k);
  const scoreStarted = performance.now();
  done = 0;
  buildStageQueries(
    stageOf(outerFit, outer, [split.valid]),
    testUsers,
    pointInTime,
    features,
    config,
    settings.candidates,
    (u, items, count, rows, scores) => {
      model.predictMany(rows, count, predicted);
      topHeap.reset(k);
      for (let c = 0; c < count; c++) topHeap.push(c, predicted[c]);
      let n = topHeap.drainInto(ranked, rankedScores, 0);
      for (let j = 0; j < n; j++) ranked[j] = items[ranked[j]];
      // The outer stage draws the same retrievers in the same order (same items: EASE stays or goes alike).
      if (n < k) n = fillFrom(scores[fill], u, exclude, ranked, n, k);
      acc.add(ranked, n, target.indices.subarray(target.indptr[u], target.indptr[u + 1]));
      if (++done % 512 === 0) progress(0.85 + (0.15 * done) / testUsers.length, 'ranking');
    },
    options.signal,
  );
  progress(1, 'done');
  const best = model.history.bestIteration;
  return {
    algorithm: 'ltr',
    params: {
      retrievers: [...outerFit.retrievers.map((r) => r.name), ...settings.extraRetrievers].join('+'),
      candidates: settings.candidates,
      trees: model.nTrees,
      ...Object.fromEntries(
        Object.entries(settings.lambdaMart)
          .filter(([key]) => key !== 'trees')
          .map(([key, v]) => [key, v]),
      ),
      maxTrees: settings.lambdaMart.trees,
      pointInTime,
      ...Object.fromEntries(
        Object.entries(settings.retrieverParams).flatMap(([r, p]) =>
          Object.entries(p ?? {}).map(([key, v]) => [`${r}.${key}`, v]),
        ),
      ),
    },
    trainSeconds,
    metrics: acc.result(),
    users: acc.users,
    scoreSeconds: (performance.now() - scoreStarted) / 1000,
    model,
    training: {
      queries: trainSet.queries,
      validQueries: validSet.queries,
      rows: trainSet.size,
      bestIteration: best,
      validNdcg: best > 0 ? (model.history.validNdcg[best - 1] ?? Number.NaN) : Number.NaN,
      retrieverNdcg,
      heldOut: { users: innerAcc.users, ltr: innerAcc.result()[`ndcg@${k}`], retrievers: retrieverHeldNdcg },
      fillRetriever: names[fill],
      pointInTime,
      lambdaMartSeconds,
    },
  };
}

/** Appends the retriever's best items not yet listed nor excluded until `k` are ranked. */
function fillFrom(
  scores: Float32Array,
  u: number,
  exclude: readonly Csr[],
  ranked: Int32Array,
  n: number,
  k: number,
): number {
  const heap = new TopKHeap(k);
  for (const m of exclude)
    for (let p = m.indptr[u]; p < m.indptr[u + 1]; p++) scores[m.indices[p]] = -Infinity;
  for (let j = 0; j < n; j++) scores[ranked[j]] = -Infinity;
  for (let i = 0; i < scores.length; i++) if (scores[i] > heap.threshold()) heap.push(i, scores[i]);
  const extra = new Int32Array(k);
  const extraScores = new Float32Array(k);
  const m = heap.drainInto(extra, extraScores, 0);
  let out = n;
  for (let j = 0; j < m && out < k; j++) ranked[out++] = extra[j];
  return out;
}
