/**
 * The CPU-heavy part of training, run off the event loop in a worker thread (fit-worker.ts) so the
 * embedded server keeps answering while it trains:
 *
 * 0. with self-tuning on (`training.tuneTrials`), search the parameters on a validation part carved
 *    from the training part (the gate's holdout stays out of it, so the gate still measures a model
 *    on pairs nothing was chosen on), warm-started from the champion's parameters;
 * 1. on the gate's holdout (training/holdout.ts), fit the challenger on the training part and score it
 *    on the held-out pairs, next to the popularity baseline and the champion on the SAME pairs — the
 *    champion's stored model scored the way serving scores it (fresh holdout), or its configuration
 *    refitted on the same training part (random holdout);
 * 2. fit the served model on all data;
 * 3. score a sample of users with it: non-finite scores, overlap with popularity's top-10, and the
 *    score distribution that becomes the drift reference; hash the training set for the lineage.
 */
import { getAlgorithm, resolveParams } from '../algorithms/index.ts';
import type { Csr } from '../algorithms/sparse.ts';
import { TopKHeap } from '../algorithms/topk.ts';
import type { FittedModel, ModelArtifact, Params, UserHistory } from '../algorithms/types.ts';
import type { DriftReference, ModelTuning } from '../domain/types.ts';
import { isCairnError } from '../errors/errors.ts';
import { evaluateModel } from '../evaluation/evaluator.ts';
import { MetricAccumulator } from '../evaluation/metrics.ts';
import { selfTune } from '../evaluation/self-tune.ts';
import { buildDriftReference } from '../monitoring/drift.ts';
import type { StoredModel } from '../registry/artifacts.ts';
import { trainingSetHash } from './extract.ts';
import type { HoldoutSplit } from './holdout.ts';
import { trainRanker, type RankerInput, type RankerOutcome } from './ranker.ts';

/** Users scored for the drift reference and the sanity checks. */
export const SAMPLE_USERS = 500;

/** The champion the challenger is compared with, as the holdout kind requires. */
export type ChampionInput =
  /** Fresh holdout: the champion's stored model, scored as served (fold-in where it applies). */
  | { kind: 'stored'; version: string; model: StoredModel; lastEventSeq: number }
  /** Random holdout: the champion's configuration, refitted on the same training part. */
  | { kind: 'refit'; version: string; algorithm: string; params: Params };

export interface FitInput {
  algorithm: string;
  params: Params;
  threads: number;
  seed: number;
  k: number;
  full: Csr;
  userIds: string[];
  itemIds: string[];
  /** The gate's holdout (null: too little data to hold anything out). */
  holdout: {
    kind: 'fresh' | 'random';
    split: HoldoutSplit;
    /** Fresh holdout: per user, 1 when their training part has events newer than the champion's watermark. */
    newerThanChampion?: Uint8Array;
  } | null;
  champion: ChampionInput | null;
  itemEventTimes: { items: Int32Array; times: Float64Array };
  /** Events per type in the snapshot (drift reference). */
  typeCounts: Record<string, number>;
  now: number;
  /** Popularity parameters for the baseline every new model must beat. */
  baselineParams: Params;
  /** Self-tuning of `params` before fitting (absent or null: fit `params` as given). */
  tuning?: TuningInput | null;
  /** Learn a second-stage ranker on the holdout (training/ranker.ts); absent or null: none. */
  ranker?: RankerInput | null;
}

/** What the search needs: its budget, the points to try first and what stays fixed. */
export interface TuningInput {
  trials: number;
  budgetSeconds: number;
  metric: { name: string; k: number };
  /** The champion whose parameters are tried first (only when its algorithm is the one trained). */
  warmStart: { version: string; params: Params } | null;
  /** Tried next: the configured parameters (`training.params` over the algorithm's defaults). */
  defaults: Params;
  /** Not searched: parameters the training request named explicitly, and keys outside the space. */
  fixed: Params;
}

export interface FitOutput {
  artifact: ModelArtifact;
  /** Holdout metrics of the challenger (empty when there was nothing to hold out). */
  metrics: Record<string, number>;
  /** Holdout metrics of the popularity baseline on the same holdout. */
  baseline: Record<string, number>;
  /** Holdout metrics of the champion on the same holdout (null: no champion, or it could not be scored). */
  championMetrics: Record<string, number> | null;
  championError: string | null;
  /** Users scored on the holdout. */
  holdoutUsers: number;
  nonFiniteScores: number;
  scoresChecked: number;
  /** Mean share of the served model's top-k that is also in popularity's top-k (null for `pop`). */
  popularityOverlap: number | null;
  drift: DriftReference;
  /** Each item's popularity bucket (aligned with itemIds), stored in the artifact's extra. */
  popularityBuckets: number[];
  trainingSetHash: string;
  /** Seconds spent fitting the served model (the refit on all data). */
  trainSeconds: number;
  /** The parameters fitted: `input.params`, or the ones the self-tuning chose. */
  params: Params;
  /** The self-tuning search (null: off, or too little data to carve a validation part). */
  tuning: ModelTuning | null;
  /** Why the self-tuning was skipped although asked for (null otherwise). */
  tuningSkipped: string | null;
  /** The ranker's training and ship decision (null: not asked for, or no holdout to learn from). */
  ranker: RankerOutcome | null;
}

export type ProgressFn = (fraction: number, stage: string) => void;

export async function fitAndEvaluate(
  input: FitInput,
  report: ProgressFn,
  signal?: AbortSignal,
): Promise<FitOutput> {
  const spec = getAlgorithm(input.algorithm);
  // Event times cover every event, held-out ones included: only the final fit on all data may see them.
  const common = { threads: input.threads, seed: input.seed, signal };
  let params = input.params;
  let tuning: ModelTuning | null = null;
  let tuningSkipped: string | null = null;
  let tuneShare = 0;
  if (input.tuning && input.tuning.trials > 0) {
    const t = input.tuning;
    tuneShare = 0.4;
    // The gate's holdout is not given to the search: carved from what the challenger trains on.
    const tuneOn = input.holdout ? input.holdout.split.train : input.full;
    const warm = t.warmStart ? [t.warmStart.params] : [];
    try {
      const started = performance.now();
      const result = await selfTune(spec, tuneOn, {
        trials: t.trials,
        budgetSeconds: t.budgetSeconds,
        metric: t.metric,
        seed: input.seed,
        threads: input.threads,
        initial: [...warm, t.defaults],
        fixed: t.fixed,
        signal,
        onTrial: (trial) => {
          const byTrials = (trial.index + 1) / t.trials;
          const byTime = (performance.now() - started) / 1000 / Math.max(t.budgetSeconds, 1e-9);
          report(tuneShare * Math.min(1, Math.max(byTrials, byTime)), `tuning: trial ${trial.index + 1}`);
        },
      });
      params = result.params;
      tuning = {
        trials: result.trials.map((x) => ({
          params: x.params,
          value: Number.isFinite(x.score) ? x.score : null,
        })),
        metric: result.metric,
        best: result.best.score,
        seconds: result.seconds,
        // The champion's parameters were trial 1 unless they could not be read (selfTune drops them).
        warmStart:
          t.warmStart && sameSearched(result.trials[0].params, t.warmStart.params, t.fixed)
            ? t.warmStart.version
            : null,
      };
    } catch (err) {
      signal?.throwIfAborted();
      if (!isCairnError(err) || err.code !== 'CAIRN_NOT_ENOUGH_DATA') throw err;
      tuningSkipped = err.message;
    }
  }
  const onProgress: ProgressFn = (f, stage) => report(tuneShare + f * (1 - tuneShare), stage);
  const withTimes = { ...common, itemEventTimes: input.itemEventTimes, now: input.now };
  const watch = { bad: 0, checked: 0 };
  let metrics: Record<string, number> = {};
  let baseline: Record<string, number> = {};
  let championMetrics: Record<string, number> | null = null;
  let championError: string | null = null;
  let holdoutUsers = 0;
  let ranker: RankerOutcome | null = null;
  const evalShare = input.holdout ? 0.5 : 0;

  if (input.holdout) {
    const { split } = input.holdout;
    const target = testAsCsr(split);
    const model = await spec.fit(split.train, params, {
      ...common,
      onProgress: (f, stage) => onProgress(f * 0.3, `holdout fit: ${stage}`),
    });
    const evaluation = evaluateModel(watchFinite(model, watch), split.train, target, [split.train], input.k);
    metrics = evaluation.metrics;
    holdoutUsers = evaluation.users;
    if (input.ranker && input.algorithm !== 'pop') {
      onProgress(0.31, 'ranker');
      ranker = trainRanker(input.ranker, split, model, input.algorithm, input, {
        seed: input.seed,
        k: input.k,
        signal,
      });
    }
    onProgress(0.32, 'holdout evaluation');
    if (input.algorithm === 'pop') baseline = metrics;
    else {
      const pop = await getAlgorithm('pop').fit(split.train, input.baselineParams, common);
      baseline = evaluateModel(pop, split.train, target, [split.train], input.k).metrics;
    }
    onProgress(0.35, 'champion on the same holdout');
    const champion = input.champion;
    if (champion) {
      try {
        if (champion.kind === 'stored') {
          championMetrics = scoreStoredChampion(
            champion.model,
            input,
            target,
            input.holdout.newerThanChampion,
          );
        } else if (champion.algorithm === input.algorithm && sameParams(champion.params, model.params)) {
          // The same configuration on the same data and seed: the challenger's own measurement.
          championMetrics = metrics;
        } else {
          const cspec = getAlgorithm(champion.algorithm);
          const cparams = resolveParams(cspec, champion.params);
          const cmodel = await cspec.fit(split.train, cparams, {
            ...common,
            onProgress: (f, stage) => onProgress(0.35 + f * 0.15, `champion refit: ${stage}`),
          });
          championMetrics = evaluateModel(cmodel, split.train, target, [split.train], input.k).metrics;
        }
      } catch (err) {
        signal?.throwIfAborted();
        championError = (err as Error).message;
      }
    }
  }

  const started = performance.now();
  const model = await spec.fit(input.full, params, {
    ...withTimes,
    onProgress: (f, stage) => onProgress(evalShare + f * (0.95 - evalShare), `fit: ${stage}`),
  });
  const trainSeconds = (performance.now() - started) / 1000;

  onProgress(0.95, 'sanity checks');
  const pop =
    input.algorithm === 'pop'
      ? null
      : await getAlgorithm('pop').fit(input.full, input.baselineParams, common);
  const sample = sampleScores(watchFinite(model, watch), pop, input.full, input.k);
  const itemCounts = new Float64Array(input.full.cols);
  for (const i of input.itemEventTimes.items) itemCounts[i]++;
  const { reference, popularityBuckets } = buildDriftReference({
    typeCounts: input.typeCounts,
    itemCounts,
    scores: sample.scores,
  });
  return {
    artifact: model.toArtifact(),
    metrics,
    baseline,
    championMetrics,
    championError,
    holdoutUsers,
    nonFiniteScores: watch.bad,
    scoresChecked: watch.checked,
    popularityOverlap: sample.overlap,
    drift: reference,
    popularityBuckets,
    trainingSetHash: trainingSetHash(input.full, input.userIds, input.itemIds),
    trainSeconds,
    params,
    tuning,
    tuningSkipped,
    ranker,
  };
}

/**
 * Whether a trial's searched parameters (fixed ones aside) agree with `warm` wherever it names them:
 * false when the champion's parameters could not be used (selfTune drops ones that no longer validate).
 */
function sameSearched(trial: Params, warm: Params, fixed: Params): boolean {
  for (const k of Object.keys(trial)) {
    if (k in fixed || !(k in warm)) continue;
    if (String(warm[k]) !== String(trial[k])) return false;
  }
  return true;
}

function testAsCsr(split: HoldoutSplit): Csr {
  return {
    rows: split.train.rows,
    cols: split.train.cols,
    indptr: split.test.indptr,
    indices: split.test.items,
    data: new Float32Array(split.test.items.length).fill(1),
  };
}

function sameParams(a: Params, b: Params): boolean {
  const norm = (p: Params) =>
    JSON.stringify(
      Object.keys(p)
        .sort()
        .map((k) => [k, p[k]]),
    );
  return norm(a) === norm(b);
}

/** Counts non-finite scores of every scoreUser call (before any exclusion sets −∞). */
export function watchFinite(model: FittedModel, watch: { bad: number; checked: number }): FittedModel {
  return {
    algorithm: model.algorithm,
    params: model.params,
    nUsers: model.nUsers,
    nItems: model.nItems,
    scoreUser(user, history, out, foldIn) {
      model.scoreUser(user, history, out, foldIn);
      let bad = 0;
      for (let i = 0; i < out.length; i++) if (!Number.isFinite(out[i])) bad++;
      watch.bad += bad;
      watch.checked += out.length;
    },
    scoreItems(user, history, items, out, foldIn) {
      model.scoreItems(user, history, items, out, foldIn);
      let bad = 0;
      for (let j = 0; j < items.length; j++) if (!Number.isFinite(out[j])) bad++;
      watch.bad += bad;
      watch.checked += items.length;
    },
    similarItems: (item, out) => model.similarItems(item, out),
    toArtifact: () => model.toArtifact(),
  };
}

/**
 * Scores the champion's stored model on the holdout the way serving does (serving/recommender.ts
 * `personal()`): the user's known items mapped into the champion's id space, folded in when the user is
 * new to it or has events newer than its watermark; items it does not know are never recommended by it
 * and count as misses, and users it can say nothing about get an empty list (all misses).
 */
export function scoreStoredChampion(
  stored: StoredModel,
  input: Pick<FitInput, 'userIds' | 'itemIds' | 'k'> & { holdout: { split: HoldoutSplit } | null },
  target: Csr,
  newer: Uint8Array | undefined,
): Record<string, number> {
  const split = input.holdout!.split;
  const model = getAlgorithm(stored.artifact.algorithm).load(stored.artifact);
  const k = input.k;
  const nItems = target.cols;
  const champItem = new Map(stored.itemIds.map((id, i) => [id, i]));
  const champUser = new Map(stored.userIds.map((id, i) => [id, i]));
  const toChamp = new Int32Array(nItems).fill(-1);
  const toGlobal = new Int32Array(stored.itemIds.length).fill(-1);
  for (let i = 0; i < nItems; i++) {
    const c = champItem.get(input.itemIds[i]);
    if (c !== undefined) {
      toChamp[i] = c;
      toGlobal[c] = i;
    }
  }
  const scores = new Float32Array(stored.itemIds.length);
  const heap = new TopKHeap(k);
  const ranked = new Int32Array(k);
  const rankedScores = new Float32Array(k);
  const acc = new MetricAccumulator(k, nItems);
  const pairs: [number, number][] = [];
  for (let u = 0; u < target.rows; u++) {
    const ts = target.indptr[u];
    const te = target.indptr[u + 1];
    if (te === ts) continue;
    const relevant = target.indices.subarray(ts, te);
    pairs.length = 0;
    for (let p = split.train.indptr[u]; p < split.train.indptr[u + 1]; p++) {
      const c = toChamp[split.train.indices[p]];
      if (c >= 0) pairs.push([c, split.train.data[p]]);
    }
    const cu = champUser.get(input.userIds[u]) ?? -1;
    if (pairs.length === 0 && cu < 0) {
      acc.add(ranked, 0, relevant);
      continue;
    }
    pairs.sort((a, b) => a[0] - b[0]);
    const hist: UserHistory = {
      items: Int32Array.from(pairs, (x) => x[0]),
      weights: Float32Array.from(pairs, (x) => x[1]),
    };
    model.scoreUser(cu, hist, scores, cu < 0 || newer?.[u] === 1);
    for (const c of hist.items) scores[c] = -Infinity;
    heap.reset(k);
    for (let c = 0; c < scores.length; c++) {
      const s = scores[c];
      if (toGlobal[c] >= 0 && s > heap.threshold()) heap.push(c, s);
    }
    const count = heap.drainInto(ranked, rankedScores, 0);
    for (let j = 0; j < count; j++) ranked[j] = toGlobal[ranked[j]];
    acc.add(ranked, count, relevant);
  }
  return acc.result();
}

/** Users with at least one interaction, evenly spread over the matrix (deterministic). */
export function sampleUsers(m: Csr, max: number): number[] {
  const active: number[] = [];
  for (let u = 0; u < m.rows; u++) if (m.indptr[u + 1] > m.indptr[u]) active.push(u);
  if (active.length <= max) return active;
  const out: number[] = [];
  for (let j = 0; j < max; j++) out.push(active[Math.floor((j * active.length) / max)]);
  return out;
}

/**
 * The served model's top-k for a sample of users (their known items excluded, as served): the scores
 * (drift reference) and the mean overlap with popularity's top-k for the same users.
 */
function sampleScores(
  model: FittedModel,
  pop: FittedModel | null,
  full: Csr,
  k: number,
): { scores: number[]; overlap: number | null } {
  const users = sampleUsers(full, SAMPLE_USERS);
  const scores: number[] = [];
  const buf = new Float32Array(full.cols);
  const heap = new TopKHeap(k);
  const ranked = new Int32Array(k);
  const rankedScores = new Float32Array(k);
  const popRanked = new Int32Array(k);
  let overlapSum = 0;
  let compared = 0;
  const hist: UserHistory = { items: new Int32Array(0), weights: new Float32Array(0) };
  const top = (m: FittedModel, u: number, into: Int32Array): number => {
    m.scoreUser(u, hist, buf);
    for (const i of hist.items) buf[i] = -Infinity;
    heap.reset(k);
    for (let i = 0; i < buf.length; i++) if (buf[i] > heap.threshold()) heap.push(i, buf[i]);
    return heap.drainInto(into, rankedScores, 0);
  };
  for (const u of users) {
    hist.items = full.indices.subarray(full.indptr[u], full.indptr[u + 1]);
    hist.weights = full.data.subarray(full.indptr[u], full.indptr[u + 1]);
    const n = top(model, u, ranked);
    for (let j = 0; j < n; j++) if (Number.isFinite(rankedScores[j])) scores.push(rankedScores[j]);
    if (pop) {
      const mine = new Set(ranked.subarray(0, n));
      const np = top(pop, u, popRanked);
      if (np === 0) continue;
      let same = 0;
      for (let j = 0; j < np; j++) if (mine.has(popRanked[j])) same++;
      overlapSum += same / np;
      compared++;
    }
  }
  return { scores, overlap: compared > 0 ? overlapSum / compared : null };
}
