/**
 * The training pipeline: extract → choose the gate's holdout → fit and score (worker thread) → gate →
 * register with lineage → promote.
 *
 * The gate (gate.ts) compares the challenger with the champion on the SAME held-out pairs: interactions
 * newer than the champion's snapshot when there are enough of them (neither model saw them), else a
 * random per-user holdout on which the champion's configuration is refitted. A version that fails the
 * gate is registered as `rejected` (promotable only with `force`) and the champion keeps serving. A
 * training that fails for good is registered as a `failed` version, so the failure is visible.
 */
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { getAlgorithm, resolveParams } from '../algorithms/index.ts';
import { resolveThreads, workerBootstrap } from '../algorithms/parallel.ts';
import type { Params } from '../algorithms/types.ts';
import { nnz } from '../algorithms/sparse.ts';
import type { Config } from '../config/load.ts';
import type {
  GateRecord,
  JsonObject,
  ModelLineage,
  ModelVersion,
  TrainRequest,
  TrainTrigger,
} from '../domain/types.ts';
import { RECOMMENDATIONS_ENDPOINT } from '../domain/types.ts';
import { runStepsSliced, type Steps } from '../domain/cooperative.ts';
import { CairnError, ERROR_CODES, type ErrorCode } from '../errors/errors.ts';
import { isPermanent, type JobContext } from '../jobs/queue.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { Metrics } from '../monitoring/metrics.ts';
import type { ModelRegistry } from '../registry/registry.ts';
import type { Store } from '../storage/ports.ts';
import { codeVersion } from './code-version.ts';
import { forgetErasedSince } from './erasure-race.ts';
import { extractTrainingData, type FeatureEventColumns, type TrainingData } from './extract.ts';
import { loggedQuery, type LoggedQuery, type RankerInput } from './ranker.ts';
import type { ItemMeta } from '../features/definitions.ts';
import { featureConfigFor } from '../features/item-state.ts';
import { itemMetaOf } from '../features/ranking.ts';
import type { ChampionInput, FitInput, FitOutput } from './fit.ts';
import type { FitWorkerMessage } from './fit-worker.ts';
import { decideGate, GATE_METRIC } from './gate.ts';
import { chooseHoldoutSliced } from './holdout.ts';

export { decideGate, GATE_METRIC } from './gate.ts';

export interface PipelineDeps {
  store: Pick<Store, 'events' | 'audit' | 'items' | 'served'>;
  /** The deployment's pseudonym of user ids (to recognize users erased while this training ran). */
  pseudonymize: (id: string) => string;
  config: Readonly<Config>;
  registry: ModelRegistry;
  metrics: Metrics;
  logger: Logger;
  /**
   * Where the store of record is fed by a consumer of the event log (NATS deployments: the store
   * writer): resolves once the store holds every event the log had acknowledged when it was called, or
   * after `ms` (returns false then). Training reads the store, so without it a training started right
   * after an ingest could miss those events.
   */
  storeCaughtUp?: (ms: number) => Promise<boolean>;
}

/** Longest wait of a training for the store writer to reach the event log's head (ms). */
export const STORE_CATCH_UP_MS = 120_000;

/** What a training ended with (the `outcome` label of `cairn_training_outcomes_total`). */
export type TrainingOutcome = 'promoted' | 'not_promoted' | 'rejected' | 'failed';

/** The trigger recorded when a request names none. */
export const MANUAL_TRIGGER: TrainTrigger = { kind: 'manual', key: null };

/**
 * Runs one training (the `train` job's handler). Returns the job result: version, metrics, gate
 * decision and outcome. Throws on failure; a permanent failure (or the last attempt) is first recorded
 * in the registry as a `failed` version.
 */
export async function runTrainingJob(
  deps: PipelineDeps,
  request: TrainRequest,
  ctx: JobContext,
): Promise<JsonObject> {
  const { config, registry, logger } = deps;
  const started = performance.now();
  const algorithm = request.algorithm ?? config.training.algorithm;
  const trigger = { ...(request.trigger ?? MANUAL_TRIGGER) };
  const lineageTrigger = { ...trigger, requestedBy: request.requested_by ?? null, jobId: ctx.jobId };
  const count = (outcome: TrainingOutcome) =>
    deps.metrics.trainingOutcomes.inc({ outcome, trigger: trigger.kind });
  const timer = deps.metrics.trainingDuration.startTimer({ algorithm });
  let params: Params = {};
  let data: TrainingData | null = null;
  try {
    const spec = getAlgorithm(algorithm);
    const configured = config.training.params[algorithm] ?? {};
    params = resolveParams(spec, { ...configured, ...(request.params ?? {}) });
    ctx.progress(0.01);
    if (deps.storeCaughtUp && !(await deps.storeCaughtUp(STORE_CATCH_UP_MS)))
      logger.warn(
        { waitedMs: STORE_CATCH_UP_MS },
        'the store of record is still behind the event log; training on the events it holds',
      );
    const readingSince = Date.now();
    data = await extractTrainingData(deps.store.events, config.events.types, {
      limits: config.events,
      featureEvents: config.ranking.train,
    });
    const interactions = nnz(data.matrix);
    if (interactions < config.training.minInteractions) {
      throw new CairnError(
        'CAIRN_NOT_ENOUGH_DATA',
        `training needs at least ${config.training.minInteractions} positive interactions, the store has ${interactions}`,
        { interactions, required: config.training.minInteractions },
      );
    }
    ctx.progress(0.1);
    const championVersion = await registry.champion();
    const { holdout, champion } = await prepareGate(deps, data, championVersion);
    const input: FitInput = {
      algorithm,
      params,
      threads: resolveThreads(config.training.threads),
      seed: config.training.seed,
      k: 10,
      full: data.matrix,
      userIds: data.userIds,
      itemIds: data.itemIds,
      holdout,
      champion,
      itemEventTimes: data.itemEventTimes,
      typeCounts: data.typeCounts,
      now: data.newestEventAt,
      baselineParams: resolveParams(getAlgorithm('pop'), config.training.params.pop ?? {}),
      tuning: tuningInput(config, spec.space, algorithm, configured, request.params ?? {}, championVersion),
      ranker: data.featureEvents ? await rankerInput(deps, data.featureEvents) : null,
    };
    const output = await fitInWorker(input, (f) => ctx.progress(0.1 + 0.85 * f), ctx.signal);
    if (output.tuningSkipped) logger.warn({ reason: output.tuningSkipped }, 'self-tuning skipped');
    if (output.tuning) {
      params = output.params;
      logger.info(
        {
          trials: output.tuning.trials.length,
          metric: output.tuning.metric,
          best: output.tuning.best,
          warmStart: output.tuning.warmStart,
          seconds: output.tuning.seconds,
          params,
        },
        'self-tuning chose parameters',
      );
    }

    const gateCfg = config.training.gate;
    const gate: GateRecord = decideGate(
      {
        algorithm,
        holdout: holdout?.kind ?? 'none',
        holdoutUsers: output.holdoutUsers,
        holdoutInteractions: holdout ? holdout.split.test.items.length : 0,
        champion: championVersion?.version ?? null,
        challenger: output.metrics,
        championMetrics: output.championMetrics,
        baseline: output.baseline,
        nonFiniteScores: output.nonFiniteScores,
        scoresChecked: output.scoresChecked,
        popularityOverlap: output.popularityOverlap,
        championError: output.championError,
      },
      {
        tolerances: gateCfg.tolerances,
        minRatio: config.training.autoPromoteMinRatio,
        minUsersScored: gateCfg.minUsersScored,
        maxPopularityOverlap: gateCfg.maxPopularityOverlap,
      },
    );
    const lineage: ModelLineage = {
      trigger: lineageTrigger,
      data: {
        lastEventSeq: data.lastEventSeq,
        newestEventAt: data.newestEventAt,
        trainingSetHash: output.trainingSetHash,
      },
      code: await codeVersion(),
      gate,
      drift: output.drift,
      audit: [],
      ...(output.tuning ? { tuning: output.tuning } : {}),
    };
    const metrics = { ...output.metrics };
    for (const [k, v] of Object.entries(output.baseline)) metrics[`baseline_${k}`] = v;
    for (const [k, v] of Object.entries(output.ranker?.metrics ?? {})) metrics[`ranker_${k}`] = v;
    if (output.ranker) {
      logger.info(
        {
          shipped: output.ranker.ranker !== null,
          reason: output.ranker.reason,
          seconds: output.ranker.seconds,
        },
        'second-stage ranker',
      );
    }
    const mv = await registry.register(
      {
        artifact: output.artifact,
        userIds: data.userIds,
        itemIds: data.itemIds,
        extra: {
          lastEventSeq: data.lastEventSeq,
          newestEventAt: data.newestEventAt,
          popularityBuckets: output.popularityBuckets,
          ...(output.ranker?.ranker ? { ranker: output.ranker.ranker } : {}),
        },
      },
      {
        algorithm,
        params,
        trainingData: {
          users: data.userIds.length,
          items: data.itemIds.length,
          interactions,
          events: data.events,
          lastEventSeq: data.lastEventSeq,
        },
        metrics,
        trainSeconds: output.trainSeconds,
        configHash: configHash(config, algorithm, params),
        status: gate.passed ? 'ready' : 'rejected',
        lineage,
      },
    );
    const erased = await forgetErasedSince(
      { audit: deps.store.audit, registry, pseudonymize: deps.pseudonymize },
      readingSince,
      data.userIds,
    );
    if (erased.length > 0)
      logger.info({ version: mv.version, users: erased.length }, 'erased during training');
    let outcome: TrainingOutcome;
    if (!gate.passed) {
      outcome = 'rejected';
      logger.warn({ version: mv.version, gate: gate.reason }, 'model rejected by its gate');
    } else if (request.promote !== false) {
      await registry.promote(mv.version, { by: 'system', reason: gate.reason });
      outcome = 'promoted';
    } else {
      outcome = 'not_promoted';
      logger.info({ version: mv.version, gate: gate.reason }, 'model passed its gate; not promoted as asked');
    }
    count(outcome);
    timer({ status: 'succeeded' });
    return {
      version: mv.version,
      algorithm,
      params,
      trigger: trigger.kind,
      outcome,
      metrics: output.metrics,
      baseline: output.baseline,
      champion: gate.champion,
      champion_metrics: output.championMetrics,
      holdout: gate.holdout,
      promoted: outcome === 'promoted',
      gate_passed: gate.passed,
      gate_reason: gate.reason,
      gate_checks: gate.checks.map((c) => ({ name: c.name, passed: c.passed, detail: c.detail })),
      train_seconds: output.trainSeconds,
      tuning: output.tuning
        ? {
            trials: output.tuning.trials.length,
            metric: output.tuning.metric,
            best_validation: output.tuning.best,
            seconds: output.tuning.seconds,
            warm_start: output.tuning.warmStart,
          }
        : null,
      ranker: output.ranker
        ? {
            shipped: output.ranker.ranker !== null,
            reason: output.ranker.reason,
            metrics: output.ranker.metrics,
            queries: output.ranker.queries,
            seconds: output.ranker.seconds,
          }
        : null,
      total_seconds: (performance.now() - started) / 1000,
      users: data.userIds.length,
      items: data.itemIds.length,
      interactions,
      events: data.events,
    };
  } catch (err) {
    timer({ status: 'failed' });
    // A cancelled attempt (shutdown, lost lease) is not a failure of the training: it runs again.
    if (!ctx.signal.aborted && (isPermanent(err) || ctx.attempt >= config.jobs.maxAttempts)) {
      count('failed');
      await recordFailure(deps, { algorithm, params, err, data, trigger: lineageTrigger }).catch(
        (recordErr: unknown) => logger.error({ err: recordErr }, 'could not record the failed training'),
      );
    }
    throw err;
  }
}

/**
 * What the fit worker needs to learn a ranker: the events, the feature settings serving folds with, and
 * the catalog's attributes (read in pages, like every other scan of the store here).
 */
async function rankerInput(deps: PipelineDeps, events: FeatureEventColumns): Promise<RankerInput> {
  const { config } = deps;
  const itemMeta: Record<string, ItemMeta> = {};
  let after: string | undefined;
  for (;;) {
    const page = await deps.store.items.list({ after, limit: 1000 });
    for (const item of page) itemMeta[item.id] = itemMetaOf(item);
    if (page.length < 1000) break;
    after = page[page.length - 1].id;
  }
  return {
    events,
    // The settings the online state folds with (main/adapters.ts onlineStateOptions): no skew.
    features: featureConfigFor(config),
    historyLimit: config.serving.historyLimit,
    popularityHalfLifeDays: config.serving.popularityHalfLifeDays,
    candidates: config.ranking.candidates,
    negatives: config.ranking.negatives,
    extraRetrievers: config.ranking.extraRetrievers as RankerInput['extraRetrievers'],
    recentItems: config.serving.recentItems,
    maxQueries: config.ranking.maxQueries,
    minQueries: config.ranking.minQueries,
    validShare: config.ranking.validShare,
    lambdaMart: { ...config.ranking.lambdaMart, seed: config.training.seed },
    itemMeta,
    logged: await loggedQueries(deps),
  };
}

/**
 * The newest `ranking.loggedQueries` served recommendations with an outcome, as ranking queries, read in
 * pages (each page one short read; the event loop gets a turn between them).
 */
async function loggedQueries(deps: PipelineDeps): Promise<LoggedQuery[]> {
  const out: LoggedQuery[] = [];
  const want = deps.config.ranking.loggedQueries;
  let before: { at: number; requestId: string } | undefined;
  for (let read = 0; read < want;) {
    const page = await deps.store.served.withOutcomes({
      endpoint: RECOMMENDATIONS_ENDPOINT,
      limit: Math.min(LOGGED_PAGE, want - read),
      before,
    });
    for (const answer of page) {
      const q = loggedQuery(answer);
      if (q) out.push(q);
    }
    read += page.length;
    if (page.length < LOGGED_PAGE) break;
    const last = page[page.length - 1].served;
    before = { at: last.at, requestId: last.requestId };
    await new Promise((resolve) => setImmediate(resolve));
  }
  return out;
}

/** Logged answers per read. */
const LOGGED_PAGE = 500;

/**
 * The self-tuning search of a training (null when `training.tuneTrials` is 0). Parameters the request
 * names are held fixed, and so are configured keys the space does not search (e.g. `als.kernel`);
 * configured values of searched keys are only the second starting point, after the champion's.
 */
export function tuningInput(
  config: Readonly<Config>,
  space: Readonly<Record<string, unknown>>,
  algorithm: string,
  configured: Params,
  requested: Params,
  champion: Pick<ModelVersion, 'version' | 'algorithm' | 'params'> | null,
): FitInput['tuning'] {
  const trials = config.training.tuneTrials;
  if (trials <= 0) return null;
  const fixed: Params = {};
  for (const [k, v] of Object.entries(configured)) if (!(k in space)) fixed[k] = v;
  Object.assign(fixed, requested);
  const [name, k] = GATE_METRIC.split('@');
  return {
    trials,
    budgetSeconds: config.training.tuneBudgetSeconds,
    metric: { name, k: Number(k) },
    warmStart:
      champion && champion.algorithm === algorithm
        ? { version: champion.version, params: champion.params as Params }
        : null,
    defaults: resolveParams(getAlgorithm(algorithm), configured),
    fixed,
  };
}

/**
 * The gate's holdout and the champion input for the fit worker. Fresh holdout: the champion's stored
 * model is loaded (an unreadable one is scored as nothing: the gate notes it and falls back to
 * comparing with popularity). Random holdout: the champion's configuration, to refit.
 */
async function prepareGate(
  deps: PipelineDeps,
  data: TrainingData,
  champion: ModelVersion | null,
): Promise<{ holdout: FitInput['holdout']; champion: ChampionInput | null }> {
  const { config } = deps;
  const choice = await chooseHoldoutSliced(
    data.matrix,
    data.pairSeqs.first,
    champion?.trainingData.lastEventSeq ?? null,
    {
      minFresh: config.training.gate.minFreshInteractions,
      fraction: config.training.holdoutFraction,
      seed: config.training.seed,
    },
  );
  if (choice.kind === 'none' || !choice.split) return { holdout: null, champion: null };
  if (!champion) return { holdout: { kind: choice.kind, split: choice.split }, champion: null };
  if (choice.kind === 'random') {
    return {
      holdout: { kind: 'random', split: choice.split },
      champion: {
        kind: 'refit',
        version: champion.version,
        algorithm: champion.algorithm,
        params: champion.params as Params,
      },
    };
  }
  const seq = champion.trainingData.lastEventSeq;
  const newer = await runStepsSliced(newerThanChampion(data, seq));
  let stored;
  try {
    stored = await deps.registry.load(champion);
  } catch (err) {
    deps.logger.warn(
      { err, version: champion.version },
      'champion artifact unreadable; gating against popularity',
    );
    return { holdout: { kind: 'fresh', split: choice.split, newerThanChampion: newer }, champion: null };
  }
  return {
    holdout: { kind: 'fresh', split: choice.split, newerThanChampion: newer },
    champion: { kind: 'stored', version: champion.version, model: stored, lastEventSeq: seq },
  };
}

/**
 * Users the champion would fold in: serving does so when a user has events newer than the champion's
 * snapshot (recommender.ts), here events on pairs the champion already knew (the newer pairs are the
 * ones held out).
 */
function* newerThanChampion(data: TrainingData, seq: number): Steps<Uint8Array> {
  const newer = new Uint8Array(data.matrix.rows);
  const { first, last } = data.pairSeqs;
  for (let u = 0; u < data.matrix.rows; u++) {
    if (u % 256 === 0) yield;
    for (let p = data.matrix.indptr[u]; p < data.matrix.indptr[u + 1]; p++) {
      if (first[p] <= seq && last[p] > seq) {
        newer[u] = 1;
        break;
      }
    }
  }
  return newer;
}

async function recordFailure(
  deps: PipelineDeps,
  f: {
    algorithm: string;
    params: Params;
    err: unknown;
    data: TrainingData | null;
    trigger: ModelLineage['trigger'];
  },
): Promise<void> {
  const data = f.data;
  await deps.registry.recordFailure({
    algorithm: f.algorithm,
    params: f.params,
    error: f.err instanceof Error ? f.err.message : String(f.err),
    trainingData: data
      ? {
          users: data.userIds.length,
          items: data.itemIds.length,
          interactions: nnz(data.matrix),
          events: data.events,
          lastEventSeq: data.lastEventSeq,
        }
      : undefined,
    configHash: configHash(deps.config, f.algorithm, f.params),
    lineage: {
      trigger: f.trigger,
      data: {
        lastEventSeq: data?.lastEventSeq ?? 0,
        newestEventAt: data?.newestEventAt ?? 0,
        trainingSetHash: '',
      },
      code: await codeVersion(),
      gate: null,
      drift: null,
      audit: [],
    },
  });
}

function configHash(config: Readonly<Config>, algorithm: string, params: unknown): string {
  const relevant = {
    algorithm,
    params,
    types: config.events.types,
    holdout: config.training.holdoutFraction,
    seed: config.training.seed,
  };
  return createHash('sha256').update(JSON.stringify(relevant)).digest('hex').slice(0, 16);
}

/** Runs fit.ts in a dedicated worker thread; cancellation terminates it. */
function fitInWorker(
  input: FitInput,
  onProgress: (f: number) => void,
  signal: AbortSignal,
): Promise<FitOutput> {
  return new Promise((resolve, reject) => {
    // Compiled builds (dist/…/pipeline.js) have fit-worker.js beside them, sources fit-worker.ts:
    // a `.ts` URL would make the worker load tsx and look for a file the build does not ship.
    const here = import.meta.url;
    const fitWorker = new URL(here.endsWith('.ts') ? './fit-worker.ts' : './fit-worker.js', here);
    const worker = new Worker(workerBootstrap(fitWorker.href), {
      eval: true,
      workerData: input,
    });
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      fn();
    };
    const onAbort = () => {
      void worker.terminate();
      finish(() => reject(new CairnError('CAIRN_UNAVAILABLE', 'training was cancelled')));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    worker.on('message', (m: FitWorkerMessage) => {
      if (m.type === 'progress') onProgress(m.fraction);
      else if (m.type === 'done') finish(() => resolve(m.output));
      else {
        // Typed refusals (e.g. EASE above its item limit) keep their code: they are permanent, not retried.
        const err =
          m.code && m.code in ERROR_CODES
            ? new CairnError(m.code as ErrorCode, m.message)
            : new Error(m.message);
        finish(() => reject(err));
      }
    });
    worker.on('error', (err) => finish(() => reject(err)));
    worker.on('exit', (code) => finish(() => reject(new Error(`training worker exited with code ${code}`))));
  });
}
