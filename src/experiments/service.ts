/**
 * The experiment service behind `/v1/experiments` and `cairn experiments`: creates A/B tests, canaries
 * and shadow runs (validated against the registry), stops them, and computes their results.
 *
 * Writes go to the store first, then to the change log, which every replica's serving follower
 * applies (the router starts or stops sending users to the variants) — the same order as catalog
 * writes (ingest/service.ts). If the announcement fails the call fails (503) and the client retries:
 * creating the same experiment again, or stopping a stopped one, announces it again instead of failing,
 * so a retry finishes the job on every replica.
 */
import { isDeepStrictEqual } from 'node:util';
import type { RequestContext } from '../domain/context.ts';
import type { Experiment, ExperimentVariant, ModelVersion, ServedRecord } from '../domain/types.ts';
import { CairnError, type FieldIssue } from '../errors/errors.ts';
import type { ReadYourWrites } from '../ingest/service.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { ChangeLog, Store } from '../storage/ports.ts';
import type {
  CreateExperimentRequest,
  ExperimentResults,
  ExperimentService,
  ShadowResult,
} from './contracts.ts';
import { computeResults, summarizeShadow } from './results.ts';
import { parseCreateExperiment } from './validate.ts';

/** Experiment ids: path-safe, log-safe, short. */
export const EXPERIMENT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Variant names: the same alphabet (they become metric labels). */
export const VARIANT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const MIN_VARIANTS = 2;
export const MAX_VARIANTS = 10;
export const DEFAULT_GUARD: NonNullable<Experiment['guard']> = {
  metric: 'ctr',
  margin: 0.1,
  minImpressions: 1000,
};
/** Newest shadow answers compared per shadow variant in results (a bounded read). */
export const DEFAULT_SHADOW_SAMPLE = 1000;

const SERVABLE: ReadonlySet<ModelVersion['status']> = new Set(['ready', 'champion']);

export interface ExperimentServiceOptions {
  store: Pick<Store, 'experiments' | 'served' | 'models'>;
  /** Where creations and state changes are announced to every replica. */
  changeLog: Pick<ChangeLog, 'append'>;
  logger: Logger;
  /** The all-in-one process waits until its own serving follower applied the change. */
  readYourWrites?: Pick<ReadYourWrites, 'changes'>;
  now?: () => number;
  /** Newest shadow answers compared per shadow variant (default 1000). */
  shadowSample?: number;
}

/** Builds the experiment service. */
export function createExperimentService(options: ExperimentServiceOptions): ExperimentService {
  const { store, changeLog, logger, readYourWrites } = options;
  const now = options.now ?? Date.now;
  const shadowSample = Math.max(1, Math.floor(options.shadowSample ?? DEFAULT_SHADOW_SAMPLE));

  const announce = async (experiment: Experiment) => {
    const [seq] = await changeLog.append([{ kind: 'experiment', experiment }]);
    await readYourWrites?.changes(seq);
  };

  const find = async (id: string): Promise<Experiment> => {
    const experiment = typeof id === 'string' && id.length <= 256 ? await store.experiments.get(id) : null;
    if (!experiment)
      throw new CairnError('CAIRN_NOT_FOUND', `experiment "${id}" not found`, { experiment_id: id });
    return experiment;
  };

  /** The one running experiment that routes users, if any. */
  const runningRouter = async (): Promise<Experiment | null> =>
    (await store.experiments.list({ status: 'running' })).find((e) => e.kind !== 'shadow') ?? null;

  const conflictWith = (running: Experiment) =>
    new CairnError(
      'CAIRN_CONFLICT',
      `experiment "${running.id}" is running and routes users; stop it first (shadow experiments may run beside it)`,
      { running: running.id },
    );

  const service: ExperimentService = {
    createFromWire(ctx: RequestContext, raw: unknown): Promise<Experiment> {
      return service.create(ctx, parseCreateExperiment(raw));
    },

    async create(ctx: RequestContext, request: CreateExperimentRequest): Promise<Experiment> {
      const definition = await validate(request, store.models);
      const existing = await store.experiments.get(definition.id);
      if (existing) {
        // A retry of a create whose announcement failed: same definition, still running → announce again.
        if (existing.status === 'running' && sameDefinition(existing, definition)) {
          await announce(existing);
          return existing;
        }
        throw new CairnError('CAIRN_CONFLICT', `experiment "${definition.id}" already exists`, {
          experiment_id: definition.id,
        });
      }
      if (definition.kind !== 'shadow') {
        const running = await runningRouter();
        if (running) throw conflictWith(running);
      }
      const experiment: Experiment = {
        ...definition,
        status: 'running',
        createdAt: now(),
        createdBy: ctx.principal.id,
        stoppedAt: null,
        stopReason: null,
      };
      try {
        await store.experiments.create(experiment);
      } catch (err) {
        // Lost a race: another create of the same id, or of another routing experiment (the store
        // allows one at a time), committed between the checks above and this insert.
        if (err instanceof CairnError && err.code === 'CAIRN_CONFLICT') {
          if (await store.experiments.get(definition.id))
            throw new CairnError('CAIRN_CONFLICT', `experiment "${definition.id}" already exists`, {
              experiment_id: definition.id,
            });
          const running = await runningRouter();
          if (running) throw conflictWith(running);
        }
        throw err;
      }
      await announce(experiment);
      logger.info(
        {
          request_id: ctx.requestId,
          experiment: experiment.id,
          kind: experiment.kind,
          variants: experiment.variants.map((v) => `${v.name}:${v.weight}:${v.modelVersion ?? 'champion'}`),
        },
        'experiment started',
      );
      return experiment;
    },

    async get(_ctx: RequestContext, id: string): Promise<Experiment> {
      return find(id);
    },

    async list(_ctx: RequestContext): Promise<Experiment[]> {
      return store.experiments.list();
    },

    async stop(ctx: RequestContext, id: string, reason?: string): Promise<Experiment> {
      const current = await find(id);
      if (reason !== undefined && (typeof reason !== 'string' || reason.length > 1000))
        throw CairnError.validation([
          { field: 'reason', message: 'must be a string of at most 1000 characters' },
        ]);
      // Already stopped (or rolled back by a guard): announce again so a retry completes everywhere.
      const experiment =
        current.status === 'running'
          ? await store.experiments.update(id, {
              status: 'stopped',
              stoppedAt: now(),
              stopReason: reason ?? `stopped by ${ctx.principal.id}`,
            })
          : current;
      await announce(experiment);
      if (current.status === 'running')
        logger.info({ request_id: ctx.requestId, experiment: id }, 'experiment stopped');
      return experiment;
    },

    async results(_ctx: RequestContext, id: string): Promise<ExperimentResults> {
      const experiment = await find(id);
      if (experiment.kind === 'shadow') {
        const shadow: ShadowResult[] = [];
        const records = await store.served.list({ experimentId: id, mode: 'shadow', limit: shadowSample });
        for (const variant of experiment.variants) {
          const mine = records.filter((r) => r.variant === variant.name);
          const pairs = await pairWithServed(mine, (requestId) => store.served.get(requestId, 'served'));
          shadow.push(summarizeShadow(variant, pairs));
        }
        return { experimentId: id, srmPValue: null, variants: [], shadow };
      }
      return computeResults(experiment, await store.served.variantTotals(id));
    },
  };
  return service;
}

/** Looks up the served answer of each shadow answer, a few at a time. */
async function pairWithServed(
  shadows: ServedRecord[],
  get: (requestId: string) => Promise<ServedRecord | null>,
): Promise<{ shadow: ServedRecord; served: ServedRecord | null }[]> {
  const out: { shadow: ServedRecord; served: ServedRecord | null }[] = [];
  const width = 16;
  for (let i = 0; i < shadows.length; i += width) {
    const chunk = shadows.slice(i, i + width);
    const served = await Promise.all(chunk.map((s) => get(s.requestId)));
    chunk.forEach((shadow, j) => out.push({ shadow, served: served[j] }));
  }
  return out;
}

type Definition = Pick<Experiment, 'id' | 'kind' | 'unit' | 'variants' | 'guard'>;

function sameDefinition(a: Experiment, b: Definition): boolean {
  return (
    a.kind === b.kind &&
    a.unit === b.unit &&
    isDeepStrictEqual(a.variants, b.variants) &&
    isDeepStrictEqual(a.guard, b.guard)
  );
}

/**
 * Checks a create request against every rule and resolves algorithms to model versions. Throws
 * CAIRN_VALIDATION listing every issue (field paths in the wire's snake_case).
 */
export async function validate(
  request: CreateExperimentRequest,
  models: Pick<Store['models'], 'get' | 'list'>,
): Promise<Definition> {
  const issues: FieldIssue[] = [];
  const bad = (field: string, message: string) => issues.push({ field, message });

  if (typeof request.id !== 'string' || !EXPERIMENT_ID.test(request.id))
    bad('id', 'must be 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit');
  const kind = request.kind ?? 'ab';
  if (kind !== 'ab' && kind !== 'canary' && kind !== 'shadow') bad('kind', 'must be ab, canary or shadow');
  const unit = request.unit ?? 'user';
  if (unit !== 'user' && unit !== 'session') bad('unit', 'must be user or session');

  const raw = Array.isArray(request.variants) ? request.variants : [];
  if (!Array.isArray(request.variants)) bad('variants', 'is required');
  else if (kind === 'shadow' && raw.length !== 1)
    bad('variants', 'a shadow experiment has exactly one variant: the model that shadows the champion');
  else if (kind === 'canary' && raw.length !== 2)
    bad('variants', 'a canary has exactly two variants: the control and the challenger');
  else if (kind !== 'shadow' && (raw.length < MIN_VARIANTS || raw.length > MAX_VARIANTS))
    bad('variants', `must hold ${MIN_VARIANTS} to ${MAX_VARIANTS} variants, got ${raw.length}`);

  // Newest servable version per algorithm, read once when some variant names an algorithm.
  let newest: Map<string, ModelVersion> | null = null;
  const newestOf = async (algorithm: string) => {
    if (!newest) {
      newest = new Map();
      for (const m of await models.list())
        // newest first
        if (SERVABLE.has(m.status) && !newest.has(m.algorithm)) newest.set(m.algorithm, m);
    }
    return newest.get(algorithm) ?? null;
  };

  const names = new Set<string>();
  let weightSum = 0;
  const variants: ExperimentVariant[] = [];
  for (let i = 0; i < raw.length; i++) {
    const v = raw[i];
    const at = `variants[${i}]`;
    if (typeof v.name !== 'string' || !VARIANT_NAME.test(v.name))
      bad(`${at}.name`, 'must be 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit');
    else if (names.has(v.name)) bad(`${at}.name`, `"${v.name}" names two variants`);
    else names.add(v.name);
    if (typeof v.weight !== 'number' || !Number.isFinite(v.weight) || v.weight < 0)
      bad(`${at}.weight`, 'must be a finite number ≥ 0');
    else if (kind === 'shadow' && !(v.weight > 0 && v.weight <= 100))
      bad(`${at}.weight`, 'the percentage of requests the shadow model scores: more than 0, at most 100');
    else weightSum += v.weight;
    // `ranker: true` forces the second stage where the arm's model carries a usable ranker, `false`
    // bypasses it; a model without one is answered by its own ranking (serving decides per request).
    if (v.ranker !== undefined && v.ranker !== null && typeof v.ranker !== 'boolean')
      bad(`${at}.ranker`, 'must be a boolean');

    let modelVersion: string | null = null;
    if (v.modelVersion !== undefined && v.algorithm !== undefined) {
      bad(`${at}.model_version`, 'give a model_version or an algorithm, not both');
    } else if (v.modelVersion !== undefined) {
      const m =
        typeof v.modelVersion === 'string' && v.modelVersion.length <= 256
          ? await models.get(v.modelVersion)
          : null;
      if (!m) bad(`${at}.model_version`, `model version "${String(v.modelVersion)}" does not exist`);
      else if (m.status === 'failed' || m.status === 'training')
        bad(`${at}.model_version`, `model version "${m.version}" is ${m.status} and cannot serve`);
      else modelVersion = m.version;
    } else if (v.algorithm !== undefined) {
      const m = typeof v.algorithm === 'string' ? await newestOf(v.algorithm) : null;
      if (!m)
        bad(`${at}.algorithm`, `no ready or champion model version of algorithm "${String(v.algorithm)}"`);
      else modelVersion = m.version;
    }
    if (
      kind === 'shadow' &&
      modelVersion === null &&
      v.modelVersion === undefined &&
      v.algorithm === undefined
    )
      bad(`${at}.model_version`, 'a shadow variant names the model version (or algorithm) that shadows');
    if (
      kind === 'canary' &&
      i === 1 &&
      modelVersion === null &&
      v.modelVersion === undefined &&
      v.algorithm === undefined
    )
      bad(
        `${at}.model_version`,
        "a canary's second variant names the challenger's model version (or algorithm)",
      );
    variants.push({
      name: v.name,
      weight: v.weight,
      modelVersion,
      algorithm: v.algorithm ?? null,
      ranker: v.ranker ?? null,
    });
  }
  if (kind !== 'shadow' && raw.length > 0 && !(weightSum > 0))
    bad('variants', 'the weights must add up to more than 0');

  let guard: Experiment['guard'] = null;
  if (request.guard !== undefined && request.guard !== null) {
    if (kind !== 'canary') bad('guard', 'only a canary has a guard');
  }
  if (kind === 'canary') {
    const g = { ...DEFAULT_GUARD, ...definedOnly(request.guard ?? {}) };
    if (g.metric !== 'ctr' && g.metric !== 'conversion_rate')
      bad('guard.metric', 'must be ctr or conversion_rate');
    if (typeof g.margin !== 'number' || !(g.margin >= 0 && g.margin < 1))
      bad('guard.margin', 'must be a number in [0, 1): the relative shortfall tolerated');
    if (typeof g.minImpressions !== 'number' || !Number.isInteger(g.minImpressions) || g.minImpressions < 1)
      bad('guard.min_impressions', 'must be an integer ≥ 1');
    guard = g;
  }

  if (issues.length > 0) throw CairnError.validation(issues);
  return { id: request.id, kind, unit, variants, guard };
}

function definedOnly<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
