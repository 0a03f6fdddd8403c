/**
 * The training pipeline: extract → split → fit (worker thread) → evaluate → register → gate → promote.
 *
 * Gates, in order: the model must beat the popularity baseline on the same holdout (unless it is the
 * popularity model), and must reach `training.autoPromoteMinRatio` × the champion's holdout ndcg@10.
 * A model that fails a gate is still registered (status `ready`) and can be promoted by hand.
 */
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { getAlgorithm, resolveParams } from '../algorithms/index.ts';
import { resolveThreads, workerBootstrap } from '../algorithms/parallel.ts';
import { nnz } from '../algorithms/sparse.ts';
import type { Config } from '../config/load.ts';
import type { JsonObject, ModelVersion, TrainRequest } from '../domain/types.ts';
import { CairnError, ERROR_CODES, type ErrorCode } from '../errors/errors.ts';
import type { JobContext } from '../jobs/queue.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { Metrics } from '../monitoring/metrics.ts';
import type { ModelRegistry } from '../registry/registry.ts';
import type { Store } from '../storage/ports.ts';
import { extractTrainingData } from './extract.ts';
import type { FitInput, FitOutput } from './fit.ts';
import type { FitWorkerMessage } from './fit-worker.ts';
import { holdoutSplit } from './holdout.ts';

export interface PipelineDeps {
  store: Pick<Store, 'events'>;
  config: Readonly<Config>;
  registry: ModelRegistry;
  metrics: Metrics;
  logger: Logger;
}

export const GATE_METRIC = 'ndcg@10';

export interface GateDecision {
  passed: boolean;
  reason: string;
}

export function decideGate(
  algorithm: string,
  metrics: Record<string, number>,
  baseline: Record<string, number>,
  champion: ModelVersion | null,
  minRatio: number,
): GateDecision {
  const score = metrics[GATE_METRIC];
  if (score === undefined) {
    return champion
      ? { passed: false, reason: 'too little data to hold out a test set, and a champion already exists' }
      : { passed: true, reason: 'first model (too little data to measure)' };
  }
  const base = baseline[GATE_METRIC];
  if (algorithm !== 'pop' && base !== undefined && score <= base) {
    return {
      passed: false,
      reason: `${GATE_METRIC} ${score.toFixed(4)} does not beat the popularity baseline ${base.toFixed(4)}`,
    };
  }
  const champ = champion?.metrics[GATE_METRIC];
  if (champ !== undefined && score < minRatio * champ) {
    return {
      passed: false,
      reason: `${GATE_METRIC} ${score.toFixed(4)} is below ${minRatio} × the champion's ${champ.toFixed(4)}`,
    };
  }
  return {
    passed: true,
    reason: champion ? `${GATE_METRIC} ${score.toFixed(4)} passes the gates` : 'first model',
  };
}

export async function runTrainingJob(
  deps: PipelineDeps,
  request: TrainRequest,
  ctx: JobContext,
): Promise<JsonObject> {
  const { config, registry, logger } = deps;
  const started = performance.now();
  const algorithm = request.algorithm ?? config.training.algorithm;
  const spec = getAlgorithm(algorithm);
  const params = resolveParams(spec, {
    ...(config.training.params[algorithm] ?? {}),
    ...(request.params ?? {}),
  });
  const timer = deps.metrics.trainingDuration.startTimer({ algorithm });
  try {
    ctx.progress(0.01);
    const data = await extractTrainingData(deps.store.events, config.events.types);
    const interactions = nnz(data.matrix);
    if (interactions < config.training.minInteractions) {
      throw new CairnError(
        'CAIRN_NOT_ENOUGH_DATA',
        `training needs at least ${config.training.minInteractions} positive interactions, the store has ${interactions}`,
        { interactions, required: config.training.minInteractions },
      );
    }
    ctx.progress(0.1);
    const split = holdoutSplit(data.matrix, config.training.holdoutFraction, config.training.seed);
    const input: FitInput = {
      algorithm,
      params,
      threads: resolveThreads(config.training.threads),
      seed: config.training.seed,
      k: 10,
      full: data.matrix,
      split: split.test.items.length > 0 ? split : null,
      itemEventTimes: data.itemEventTimes,
      now: data.newestEventAt,
      baselineParams: resolveParams(getAlgorithm('pop'), config.training.params.pop ?? {}),
    };
    const output = await fitInWorker(input, (f) => ctx.progress(0.1 + 0.85 * f), ctx.signal);

    const champion = await registry.champion();
    const metrics = { ...output.metrics };
    for (const [k, v] of Object.entries(output.baseline)) metrics[`baseline_${k}`] = v;
    const mv = await registry.register(
      {
        artifact: output.artifact,
        userIds: data.userIds,
        itemIds: data.itemIds,
        extra: { lastEventSeq: data.lastEventSeq, newestEventAt: data.newestEventAt },
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
      },
    );
    const gate = decideGate(
      algorithm,
      output.metrics,
      output.baseline,
      champion,
      config.training.autoPromoteMinRatio,
    );
    let promoted = false;
    if (request.promote !== false && gate.passed) {
      await registry.promote(mv.version);
      promoted = true;
    } else
      logger.info(
        { version: mv.version, gate: gate.reason, requested: request.promote !== false },
        'model not promoted',
      );
    timer({ status: 'succeeded' });
    return {
      version: mv.version,
      algorithm,
      params,
      metrics: output.metrics,
      baseline: output.baseline,
      promoted,
      gate_passed: gate.passed,
      gate_reason: gate.reason,
      train_seconds: output.trainSeconds,
      total_seconds: (performance.now() - started) / 1000,
      users: data.userIds.length,
      items: data.itemIds.length,
      interactions,
      events: data.events,
    };
  } catch (err) {
    timer({ status: 'failed' });
    throw err;
  }
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
