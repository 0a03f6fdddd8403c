/**
 * The online recommendation path: candidates from the champion model → business rules → fallback
 * chain → explanations. Every answer is labelled with where it came from:
 *
 *   personal (champion model, folding in the user's newest events)
 *     → similar-to-recent (item-to-item on the user's recent items)
 *     → category popular (the request's category, else the categories of the user's recent items)
 *     → global popular (online, time-decayed)
 *
 * Later links only fill what earlier links could not. The chain never fails: when the online state is
 * unreachable the answer comes from what this process holds and says `degraded: true`.
 *
 * Nothing here reads the store of record: histories, opt-outs and popularity come from the online state
 * (kept current by the change-feed consumer), the catalog and the champion from this replica's views.
 *
 * Experiments: a user in an A/B or canary arm that names a model version is answered by that model
 * (from the model pool; the champion, labelled `variant_model_unavailable`, when it is not in memory),
 * and every answer says which arm served it. Running shadow models also score a share of personalized
 * requests after the answer is sent; their answers are logged and compared, never served or cached.
 * Every answer is recorded in the served log (buffered, best effort) for feedback attribution.
 */
import { performance } from 'node:perf_hooks';
import { topK } from '../algorithms/topk.ts';
import type { PopularResult, RecommendRequest, RecommendationService, SimilarResult } from './contracts.ts';
import type { Config } from '../config/load.ts';
import type { RequestContext } from '../domain/context.ts';
import type {
  Experiment,
  ExperimentVariant,
  RecommendationResult,
  RecommendedItem,
  ServedRecord,
  StoredEvent,
} from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import { buildUserProfile, type UserProfile } from '../features/interactions.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { Metrics } from '../monitoring/metrics.ts';
import type { OnlineState } from '../storage/ports.ts';
import type { CatalogView } from './catalog.ts';
import type { Arm, ExperimentRouter } from './experiments.ts';
import type { ModelPool } from './model-pool.ts';
import type { ServingModel } from './model-state.ts';
import type { PopularList } from './popular.ts';
import type { ServedLogSink } from './served-log.ts';
import { overlapAtK, shadowMetrics, shadowSampled, type ShadowMetrics } from './shadow.ts';

export interface RecommenderDeps {
  config: Readonly<Config>;
  online: Pick<OnlineState, 'recentEvents' | 'optedOut' | 'popularity' | 'cacheGet' | 'cacheSet'>;
  catalog: CatalogView;
  popular: PopularList;
  metrics: Metrics;
  logger: Logger;
  /** The champion currently served by this process, or null before the first model. */
  champion: () => ServingModel | null;
  /** Running experiments of this replica (absent: nobody is routed, no shadows). */
  experiments?: Pick<ExperimentRouter, 'assign' | 'served' | 'shadows'> | null;
  /** Models named by experiments (absent: every arm is served by the champion). */
  pool?: Pick<ModelPool, 'get' | 'miss'> | null;
  /** Where answers are recorded (absent or `experiments.servedLog` off: not recorded). */
  servedLog?: ServedLogSink | null;
  now?: () => number;
}

export type FallbackReason =
  | 'store_unavailable'
  | 'opt_out'
  | 'no_model'
  | 'cold_start_user'
  | 'history_not_in_model'
  | 'no_personal_candidates'
  | 'model_error'
  | 'item_not_in_model'
  /** The arm's model is not in memory (loading or failed): the champion answered instead. */
  | 'variant_model_unavailable'
  /** The request's deadline passed before the model scored: the cheapest popular list answered. */
  | 'deadline';

const VERBS: Record<string, string> = {
  view: 'viewed',
  click: 'clicked',
  add_to_cart: 'added to cart',
  purchase: 'purchased',
  rating: 'rated',
  like: 'liked',
};

/** Models whose zero score means "no evidence" (sums over neighbours): such items are not candidates. */
const EVIDENCE_MODELS = new Set(['itemknn', 'ease', 'rp3beta']);
const MAX_CATEGORY_LENGTH = 256;

export class Recommender implements RecommendationService {
  private readonly now: () => number;
  private readonly popularWindow: string;
  private readonly shadowMetrics: ShadowMetrics;

  constructor(private readonly deps: RecommenderDeps) {
    this.now = deps.now ?? Date.now;
    this.shadowMetrics = shadowMetrics(deps.metrics.registry);
    const days = deps.config.serving.popularityHalfLifeDays;
    this.popularWindow = days === 7 ? 'this week' : `over the last ${days} day${days === 1 ? '' : 's'}`;
  }

  async recommend(ctx: RequestContext, request: RecommendRequest): Promise<RecommendationResult> {
    const started = performance.now();
    const k = this.checkK(request.k);
    const category = this.checkCategory(request.category);
    const { config, logger } = this.deps;

    let optOut = false;
    let history: StoredEvent[] = [];
    let storeDown = false;
    const champion = this.deps.champion();
    const assigned =
      this.deps.experiments?.assign(ctx, { user: request.userId, session: request.sessionId }) ?? null;
    const { model: sm, unavailable } = this.modelFor(assigned, champion, ctx);
    const cacheKey =
      sm && config.serving.cacheTtlSeconds > 0 ? this.cacheKey(sm, assigned, k, category, request) : null;
    let cached: string | null = null;
    try {
      // One round trip for the three reads (Redis pipelines them on one connection).
      [optOut, history, cached] = await Promise.all([
        this.deps.online.optedOut(request.userId),
        this.deps.online.recentEvents(request.userId, config.serving.historyLimit),
        cacheKey ? this.deps.online.cacheGet(request.userId, cacheKey) : Promise.resolve(null),
      ]);
    } catch (err) {
      storeDown = true;
      logger.warn(
        { err, request_id: ctx.requestId },
        'online state unavailable while recommending; answering from this process',
      );
    }
    // An opted-out user's history is not used at all, not even to pick fallback categories.
    const profile = buildUserProfile(config.events.types, optOut ? [] : history, config.events);
    // An opted-out user takes part in no experiment: nothing personal is served to them, so no arm could
    // make a difference, and their answers must not feed results.
    const arm = optOut ? null : assigned;
    if (arm) this.deps.experiments?.served(arm);
    const experiment = arm ? { id: arm.experiment.id, variant: arm.variant.name } : null;
    const blocked = new Set<string>(request.exclude ?? []);
    for (const id of profile.negatives) blocked.add(id);
    if (config.serving.excludeSeen) for (const id of profile.seen) blocked.add(id);

    // The newest event this answer is based on: a cached answer computed from an older history is stale
    // even if it was written after the invalidation that the newer event caused.
    let newestSeq = 0;
    for (const e of history) if (e.seq > newestSeq) newestSeq = e.seq;
    if (cached !== null && !optOut && sm) {
      const hit = this.fromCache(cached, category, newestSeq);
      if (hit) {
        const result: RecommendationResult = {
          requestId: ctx.requestId,
          userId: request.userId,
          modelVersion: sm.version.version,
          source: 'personalized',
          fallbackReason: unavailable,
          degraded: false,
          items: hit,
          experiment,
        };
        this.record('recommendations', 'personalized', unavailable, started, true);
        this.logServed(result, arm);
        this.shadow(ctx, request, result, { history, profile, k, category, exclude: request.exclude });
        return result;
      }
    }

    const items: RecommendedItem[] = [];
    let source: 'personalized' | 'fallback' = 'fallback';
    let reason: FallbackReason | null = null;
    let personalScores: number[] = [];

    if (storeDown) reason = 'store_unavailable';
    else if (optOut) reason = 'opt_out';
    else if (!sm) reason = 'no_model';
    else if (profile.positives.size === 0) reason = 'cold_start_user';
    else if (this.pastDeadline(ctx)) reason = 'deadline';
    else {
      try {
        const personal = this.personal(sm, request.userId, history, profile, k, category, blocked);
        if (personal === 'history_not_in_model') reason = personal;
        else if (personal.length === 0) reason = 'no_personal_candidates';
        else {
          source = 'personalized';
          items.push(...personal);
          personalScores = personal.map((p) => p.score);
        }
      } catch (err) {
        reason = 'model_error';
        logger.error({ err, version: sm.version.version }, 'model failed to score; falling back');
      }
    }

    const taken = new Set(items.map((i) => i.itemId));
    const usable = (id: string) =>
      !taken.has(id) &&
      !blocked.has(id) &&
      this.deps.catalog.isAvailable(id) &&
      (!category || this.deps.catalog.inCategory(id, category));

    // Past the deadline only the cheapest link runs: popular in the asked category, else global popular.
    const late = reason === 'deadline' || this.pastDeadline(ctx);
    if (items.length < k && sm && !optOut && !storeDown && !late && profile.recent.length > 0) {
      this.push(items, taken, this.similarToRecent(sm, profile, k - items.length, usable));
    }
    // Reads that just failed are not retried for the popular links: they use this process's last list.
    const fallback = { failed: storeDown };
    if (items.length < k) {
      const categories = category ? [category] : optOut || late ? [] : this.userCategories(profile);
      for (const c of categories) {
        if (items.length >= k) break;
        this.push(items, taken, await this.popularOrNone(c, k - items.length, usable, fallback));
      }
    }
    if (items.length < k && !category)
      this.push(items, taken, await this.popularOrNone(null, k - items.length, usable, fallback));
    if (fallback.failed && !storeDown) {
      storeDown = true;
      if (source === 'fallback' && reason === null) reason = 'store_unavailable';
    }

    const result: RecommendationResult = {
      requestId: ctx.requestId,
      userId: request.userId,
      // The model that answered (the arm's, or the champion standing in for it); the fallback chain's
      // similar-to-recent link uses it too, so it is named even on fallback answers.
      modelVersion: (optOut ? champion : sm)?.version.version ?? null,
      source,
      fallbackReason: source === 'personalized' ? unavailable : reason,
      degraded: storeDown || reason === 'model_error' || reason === 'deadline',
      items,
      experiment,
    };
    this.record('recommendations', source, result.fallbackReason, started, false);
    this.logServed(result, arm);
    // Drift of served scores is measured against the champion's training reference only: the metric
    // keeps one window per version, and arms on other versions would keep resetting it.
    if (sm && sm === champion && personalScores.length > 0)
      this.deps.metrics.observeServedScores(
        sm.version.version,
        sm.version.lineage?.drift ?? null,
        personalScores,
      );
    this.shadow(ctx, request, result, { history, profile, k, category, exclude: request.exclude });
    if (cacheKey && source === 'personalized' && !result.degraded) {
      try {
        await this.deps.online.cacheSet(
          request.userId,
          cacheKey,
          JSON.stringify({ seq: newestSeq, items }),
          config.serving.cacheTtlSeconds * 1000,
        );
      } catch (err) {
        logger.debug({ err }, 'could not cache a recommendation');
      }
    }
    return result;
  }

  /**
   * The cache key of an answer: everything the answer depends on besides the user's own state. The
   * model version AND the arm are in it, so an answer of one arm is never served to another (two arms
   * may share a model version and differ otherwise, e.g. by the ranker).
   */
  private cacheKey(
    sm: ServingModel,
    arm: Arm | null,
    k: number,
    category: string | undefined,
    request: RecommendRequest,
  ): string {
    const exclude = [...new Set(request.exclude ?? [])].sort();
    const armKey = arm ? [arm.experiment.id, arm.variant.name] : null;
    return JSON.stringify([sm.version.version, armKey, k, category ?? null, exclude]);
  }

  /**
   * The model answering an arm: the version it names, from the pool, or the champion when the arm names
   * none; the champion too, labelled `variant_model_unavailable`, when the named version is not in
   * memory (loading, failed to load, or beyond the pool's bound).
   */
  private modelFor(
    arm: Arm | null,
    champion: ServingModel | null,
    ctx: RequestContext,
  ): { model: ServingModel | null; unavailable: FallbackReason | null } {
    const version = arm?.variant.modelVersion;
    if (!version) return { model: champion, unavailable: null };
    const model = this.deps.pool?.get(version) ?? null;
    if (model) return { model, unavailable: null };
    this.deps.logger.debug(
      {
        request_id: ctx.requestId,
        experiment: arm.experiment.id,
        variant: arm.variant.name,
        version,
        why: this.deps.pool?.miss(version) ?? 'no_pool',
      },
      'arm model not in memory; the champion answers for it',
    );
    return { model: champion, unavailable: 'variant_model_unavailable' };
  }

  /** Queues the answer for the served log (never waits, never throws). */
  private logServed(result: RecommendationResult, arm: Arm | null): void {
    const sink = this.deps.servedLog;
    if (!sink || !this.deps.config.experiments.servedLog || result.userId === null) return;
    const record: ServedRecord = {
      requestId: result.requestId,
      userId: result.userId,
      mode: 'served',
      endpoint: 'recommendations',
      experimentId: arm?.experiment.id ?? null,
      variant: arm?.variant.name ?? null,
      modelVersion: result.modelVersion,
      source: result.source,
      items: result.items.map((it, position) => ({ itemId: it.itemId, position, score: it.score })),
      at: this.now(),
    };
    try {
      sink.write(record);
    } catch (err) {
      this.deps.logger.debug({ err }, 'served log refused a record');
    }
  }

  /**
   * Lets every running shadow model that samples this request score it too, after the answer is sent
   * (setImmediate: off the response path). Only personalized answers are shadowed: they are what a
   * challenger would change. The shadow answer is logged (mode `shadow`, same request id) and compared
   * with the served one; it is never served or cached.
   */
  private shadow(
    ctx: RequestContext,
    request: RecommendRequest,
    served: RecommendationResult,
    input: {
      history: StoredEvent[];
      profile: UserProfile | null;
      k: number;
      category: string | undefined;
      exclude: string[] | undefined;
    },
  ): void {
    if (served.source !== 'personalized') return;
    const shadows = this.deps.experiments?.shadows() ?? [];
    if (shadows.length === 0) return;
    const picked: { experiment: Experiment; variant: ExperimentVariant }[] = [];
    for (const experiment of shadows)
      for (const variant of experiment.variants)
        if (variant.modelVersion && shadowSampled(experiment.id, variant, ctx.requestId))
          picked.push({ experiment, variant });
    if (picked.length === 0) return;
    setImmediate(() => {
      for (const { experiment, variant } of picked)
        this.scoreShadow(ctx, request, served, input, experiment, variant);
    });
  }

  private scoreShadow(
    ctx: RequestContext,
    request: RecommendRequest,
    served: RecommendationResult,
    input: {
      history: StoredEvent[];
      profile: UserProfile | null;
      k: number;
      category: string | undefined;
      exclude: string[] | undefined;
    },
    experiment: Experiment,
    variant: ExperimentVariant,
  ): void {
    const m = this.shadowMetrics;
    const version = variant.modelVersion as string;
    const sm = this.deps.pool?.get(version) ?? null;
    if (!sm) {
      m.requests.inc({ experiment: experiment.id, outcome: 'unavailable' });
      return;
    }
    try {
      const { config } = this.deps;
      const profile = input.profile ?? buildUserProfile(config.events.types, input.history, config.events);
      // The same exclusions the served answer had: the comparison is of rankings, not of rules.
      const blocked = new Set<string>(input.exclude ?? []);
      for (const id of profile.negatives) blocked.add(id);
      if (config.serving.excludeSeen) for (const id of profile.seen) blocked.add(id);
      const items: RecommendedItem[] = [];
      const personal = this.personal(
        sm,
        request.userId,
        input.history,
        profile,
        input.k,
        input.category,
        blocked,
      );
      if (personal !== 'history_not_in_model') items.push(...personal);
      const source = items.length > 0 ? 'personalized' : 'fallback';
      if (items.length < input.k && profile.recent.length > 0) {
        const taken = new Set(items.map((i) => i.itemId));
        const category = input.category;
        const usable = (id: string) =>
          !taken.has(id) &&
          !blocked.has(id) &&
          this.deps.catalog.isAvailable(id) &&
          (!category || this.deps.catalog.inCategory(id, category));
        this.push(items, taken, this.similarToRecent(sm, profile, input.k - items.length, usable));
      }
      const overlap = overlapAtK(
        served.items.map((i) => i.itemId),
        items.map((i) => i.itemId),
      );
      m.requests.inc({ experiment: experiment.id, outcome: 'scored' });
      if (overlap !== null) m.overlap.observe({ experiment: experiment.id }, overlap);
      const sink = this.deps.servedLog;
      if (sink && config.experiments.servedLog) {
        sink.write({
          requestId: ctx.requestId,
          userId: request.userId,
          mode: 'shadow',
          endpoint: 'recommendations',
          experimentId: experiment.id,
          variant: variant.name,
          modelVersion: sm.version.version,
          source,
          items: items.map((it, position) => ({ itemId: it.itemId, position, score: it.score })),
          at: this.now(),
        });
      }
    } catch (err) {
      m.requests.inc({ experiment: experiment.id, outcome: 'error' });
      this.deps.logger.warn(
        { err, request_id: ctx.requestId, experiment: experiment.id, version },
        'shadow model failed to score a request',
      );
    }
  }

  /**
   * A cached answer, unless it was computed from another history than the user's current one, or an
   * item in it may no longer be served (unavailable, or out of the category since): then it is
   * recomputed rather than served short or stale.
   */
  private fromCache(raw: string, category: string | undefined, newestSeq: number): RecommendedItem[] | null {
    let entry: { seq: number; items: RecommendedItem[] };
    try {
      entry = JSON.parse(raw) as { seq: number; items: RecommendedItem[] };
    } catch {
      return null;
    }
    if (entry.seq !== newestSeq || !Array.isArray(entry.items)) return null;
    // Written by an older process, or damaged: a score that is not a finite number is never served.
    if (!entry.items.every((it) => Number.isFinite(it?.score))) return null;
    const items = entry.items;
    const catalog = this.deps.catalog;
    for (const it of items) {
      if (!catalog.isAvailable(it.itemId)) return null;
      if (category && !catalog.inCategory(it.itemId, category)) return null;
    }
    return items;
  }

  async similar(
    ctx: RequestContext,
    itemId: string,
    options: { k?: number; category?: string },
  ): Promise<SimilarResult> {
    const started = performance.now();
    const k = this.checkK(options.k);
    const category = this.checkCategory(options.category);
    const sm = this.deps.champion();
    const idx = sm?.itemIndex.get(itemId);
    const catalog = this.deps.catalog;
    if (idx === undefined && !catalog.has(itemId) && !(await this.hasPopularity(itemId))) {
      throw new CairnError('CAIRN_ITEM_NOT_FOUND', `item ${itemId} is unknown`, { field: 'id' });
    }
    const items: RecommendedItem[] = [];
    let reason: FallbackReason | null = null;
    let degraded = false;
    if (sm && idx !== undefined) {
      try {
        items.push(...this.similarTo(sm, idx, k, category));
      } catch (err) {
        degraded = true;
        reason = 'model_error';
        this.deps.logger.error({ err }, 'champion model failed on similar items');
      }
      if (items.length === 0 && reason === null) reason = 'no_personal_candidates';
    } else reason = sm ? 'item_not_in_model' : 'no_model';
    const source = items.length > 0 ? 'personalized' : 'fallback';

    const taken = new Set(items.map((i) => i.itemId));
    taken.add(itemId);
    const usable = (id: string) =>
      !taken.has(id) && catalog.isAvailable(id) && (!category || catalog.inCategory(id, category));
    const categories = category ? [category] : catalog.categories(itemId);
    const fallback = { failed: false };
    for (const c of categories) {
      if (items.length >= k) break;
      this.push(items, taken, await this.popularOrNone(c, k - items.length, usable, fallback));
    }
    if (items.length < k && !category)
      this.push(items, taken, await this.popularOrNone(null, k - items.length, usable, fallback));
    if (fallback.failed) degraded = true;

    this.record('similar', source, source === 'personalized' ? null : reason, started);
    return {
      requestId: ctx.requestId,
      itemId,
      modelVersion: sm?.version.version ?? null,
      source,
      fallbackReason: source === 'personalized' ? null : reason,
      degraded,
      items,
    };
  }

  async popular(ctx: RequestContext, options: { k?: number; category?: string }): Promise<PopularResult> {
    const started = performance.now();
    const k = this.checkK(options.k);
    const category = this.checkCategory(options.category);
    const catalog = this.deps.catalog;
    let degraded = false;
    let items: RecommendedItem[];
    const usable = (id: string) => catalog.isAvailable(id) && (!category || catalog.inCategory(id, category));
    try {
      items = await this.popularIn(category ?? null, k, usable);
    } catch (err) {
      degraded = true;
      this.deps.logger.warn({ err, request_id: ctx.requestId }, 'online state unavailable for popular items');
      items = await this.popularIn(category ?? null, k, usable, true);
    }
    this.record('popular', 'fallback', null, started);
    return {
      requestId: ctx.requestId,
      itemId: null,
      modelVersion: null,
      source: 'fallback',
      fallbackReason: degraded ? 'store_unavailable' : null,
      degraded,
      items,
    };
  }

  /**
   * The popular link of the chain. An unreachable online state flags `state`, and this link and the
   * later ones of the request answer from the last popular list this process read (no more round trips).
   */
  private async popularOrNone(
    category: string | null,
    k: number,
    usable: (id: string) => boolean,
    state: { failed: boolean },
  ): Promise<RecommendedItem[]> {
    if (!state.failed) {
      try {
        return await this.popularIn(category, k, usable);
      } catch (err) {
        state.failed = true;
        this.deps.logger.warn(
          { err },
          'online state unavailable for the popular fallback; using the last list read',
        );
      }
    }
    return this.popularIn(category, k, usable, true);
  }

  /** Whether the online state knows the item from events (an item never PUT can still be similar-able). */
  private async hasPopularity(itemId: string): Promise<boolean> {
    try {
      const [score] = await this.deps.online.popularity([itemId], this.now());
      return score > 0;
    } catch {
      return false;
    }
  }

  /** Whether the caller's deadline has passed (checked right before each expensive step, not on a timer). */
  private pastDeadline(ctx: RequestContext): boolean {
    return ctx.deadline !== null && this.now() >= ctx.deadline;
  }

  /** The champion's own ranking for the user, with the history items that made each item score. */
  private personal(
    sm: ServingModel,
    userId: string,
    history: readonly StoredEvent[],
    profile: UserProfile,
    k: number,
    category: string | undefined,
    blocked: ReadonlySet<string>,
  ): RecommendedItem[] | 'history_not_in_model' {
    const known: [number, number][] = [];
    for (const [id, w] of profile.positives) {
      const i = sm.itemIndex.get(id);
      if (i !== undefined) known.push([i, w]);
    }
    if (known.length === 0) return 'history_not_in_model';
    known.sort((a, b) => a[0] - b[0]);
    const hist = {
      items: Int32Array.from(known, (p) => p[0]),
      weights: Float32Array.from(known, (p) => p[1]),
    };
    const userIdx = sm.userIndex.get(userId) ?? -1;
    // Fold the user in from their current history whenever they have events the model has not seen.
    const foldIn = userIdx < 0 || history.some((e) => e.seq > sm.lastEventSeq);
    sm.model.scoreUser(userIdx, hist, sm.scores, foldIn);

    const mask = this.baseMask(sm, category);
    for (const id of blocked) {
      const i = sm.itemIndex.get(id);
      if (i !== undefined) mask[i] = 1;
    }
    const top = topK(sm.scores, k, mask);
    const needEvidence = EVIDENCE_MODELS.has(sm.model.algorithm);
    const out: RecommendedItem[] = [];
    for (let r = 0; r < top.indices.length; r++) {
      const score = top.scores[r];
      if (!Number.isFinite(score) || (needEvidence && score <= 0)) continue;
      const item = top.indices[r];
      out.push({ itemId: sm.itemIds[item], score, reason: this.explainPersonal(sm, item, hist, profile) });
    }
    return out;
  }

  private explainPersonal(
    sm: ServingModel,
    item: number,
    hist: { items: Int32Array; weights: Float32Array },
    profile: UserProfile,
  ): string {
    const sim = sm.model.itemSimilarity?.bind(sm.model);
    if (!sim)
      return `Recommended by the ${sm.model.algorithm} model from your ${hist.items.length} interactions`;
    let best = -1;
    let bestC = 0;
    let second = -1;
    let secondC = 0;
    for (let h = 0; h < hist.items.length; h++) {
      const c = sim(hist.items[h], item) * hist.weights[h];
      if (c > bestC) {
        second = best;
        secondC = bestC;
        best = hist.items[h];
        bestC = c;
      } else if (c > secondC) {
        second = hist.items[h];
        secondC = c;
      }
    }
    if (best < 0)
      return `Recommended by the ${sm.model.algorithm} model from your ${hist.items.length} interactions`;
    const verb = (i: number) => VERBS[profile.strongestType.get(sm.itemIds[i]) ?? ''] ?? 'interacted with';
    const label = (i: number) => this.deps.catalog.label(sm.itemIds[i]);
    if (second < 0) return `Because you ${verb(best)} ${label(best)}`;
    return verb(best) === verb(second)
      ? `Because you ${verb(best)} ${label(best)} and ${label(second)}`
      : `Because you ${verb(best)} ${label(best)} and ${verb(second)} ${label(second)}`;
  }

  /** Item-to-item on the user's most recent items, weighted towards the newest. */
  private similarToRecent(
    sm: ServingModel,
    profile: UserProfile,
    k: number,
    usable: (id: string) => boolean,
  ): RecommendedItem[] {
    const recent: number[] = [];
    for (const id of profile.recent) {
      const i = sm.itemIndex.get(id);
      if (i !== undefined) recent.push(i);
      if (recent.length >= this.deps.config.serving.recentItems) break;
    }
    if (recent.length === 0) return [];
    const acc = new Float32Array(sm.nItems);
    const bestSource = new Int32Array(sm.nItems).fill(-1);
    const bestValue = new Float32Array(sm.nItems);
    const buf = sm.scores;
    for (let r = 0; r < recent.length; r++) {
      if (!sm.model.similarItems(recent[r], buf)) return [];
      const w = 1 / (r + 1);
      for (let i = 0; i < buf.length; i++) {
        const v = buf[i] * w;
        if (v > 0) {
          acc[i] += v;
          if (v > bestValue[i]) {
            bestValue[i] = v;
            bestSource[i] = recent[r];
          }
        }
      }
    }
    const mask = new Uint8Array(sm.nItems);
    for (let i = 0; i < mask.length; i++)
      mask[i] = acc[i] > 0 && Number.isFinite(acc[i]) && usable(sm.itemIds[i]) ? 0 : 1;
    const top = topK(acc, k, mask);
    const out: RecommendedItem[] = [];
    for (let r = 0; r < top.indices.length; r++) {
      const i = top.indices[r];
      const src = sm.itemIds[bestSource[i]];
      const verb = VERBS[profile.strongestType.get(src) ?? ''] ?? 'interacted with';
      out.push({
        itemId: sm.itemIds[i],
        score: top.scores[r],
        reason: `Similar to ${this.deps.catalog.label(src)}, which you ${verb} recently`,
      });
    }
    return out;
  }

  private similarTo(
    sm: ServingModel,
    idx: number,
    k: number,
    category: string | undefined,
  ): RecommendedItem[] {
    if (!sm.model.similarItems(idx, sm.scores)) return [];
    const mask = this.baseMask(sm, category);
    mask[idx] = 1;
    const top = topK(sm.scores, k, mask);
    const label = this.deps.catalog.label(sm.itemIds[idx]);
    const out: RecommendedItem[] = [];
    for (let r = 0; r < top.indices.length; r++) {
      if (!(top.scores[r] > 0) || !Number.isFinite(top.scores[r])) continue;
      const reason =
        sm.model.algorithm === 'itemknn' || sm.model.algorithm === 'ease'
          ? `Often chosen by the same people as ${label}`
          : `Liked by people with the same taste as those who liked ${label}`;
      out.push({ itemId: sm.itemIds[top.indices[r]], score: top.scores[r], reason });
    }
    return out;
  }

  /** Popular items (in `category`), from the online state, or with `lastKnown` from this process's copy. */
  private async popularIn(
    category: string | null,
    k: number,
    usable: (id: string) => boolean,
    lastKnown = false,
  ): Promise<RecommendedItem[]> {
    const catalog = this.deps.catalog;
    // Only catalog items are popular: an id known from events alone (never PUT, maybe an attacker's) is
    // counted but not listed until it is in the catalog (inCategory is false for ids not in it).
    const accept = category
      ? (id: string) => catalog.inCategory(id, category) && usable(id)
      : (id: string) => catalog.has(id) && usable(id);
    const where = category ? `Popular in ${category}` : 'Popular';
    const entries = lastKnown
      ? this.deps.popular.lastKnown(k, accept)
      : await this.deps.popular.top(k, this.now(), accept);
    return entries.map((p) => ({
      itemId: p.itemId,
      score: p.score,
      reason: `${where} ${this.popularWindow}`,
    }));
  }

  /** Categories of the user's recent items, most frequent first. */
  private userCategories(profile: UserProfile): string[] {
    const counts = new Map<string, number>();
    for (const id of profile.recent.slice(0, this.deps.config.serving.recentItems)) {
      for (const c of this.deps.catalog.categories(id)) counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    return [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([c]) => c);
  }

  private baseMask(sm: ServingModel, category: string | undefined): Uint8Array {
    const mask = sm.mask;
    mask.set(sm.unavailable(this.deps.catalog));
    if (category) {
      const outside = sm.outsideCategory(this.deps.catalog, category);
      for (let i = 0; i < mask.length; i++) mask[i] |= outside[i];
    }
    return mask;
  }

  private push(items: RecommendedItem[], taken: Set<string>, more: RecommendedItem[]): void {
    for (const m of more) {
      // Every link's scores reach the client: one that is not a finite number (a broken model) is dropped.
      if (taken.has(m.itemId) || !Number.isFinite(m.score)) continue;
      taken.add(m.itemId);
      items.push(m);
    }
  }

  private checkK(k: number | undefined): number {
    const { defaultK, maxK } = this.deps.config.serving;
    if (k === undefined) return defaultK;
    if (!Number.isInteger(k) || k < 1 || k > maxK) {
      throw CairnError.validation([{ field: 'k', message: `must be an integer from 1 to ${maxK}` }]);
    }
    return k;
  }

  private checkCategory(category: string | undefined): string | undefined {
    if (category === undefined || category === '') return undefined;
    if (category.length > MAX_CATEGORY_LENGTH) {
      throw CairnError.validation([
        { field: 'category', message: `must be at most ${MAX_CATEGORY_LENGTH} characters` },
      ]);
    }
    return category;
  }

  private record(
    endpoint: string,
    source: string,
    fallbackReason: string | null,
    started: number,
    cached = false,
  ): void {
    const m = this.deps.metrics;
    m.recommendationsServed.inc({ endpoint, source, fallback_reason: fallbackReason ?? 'none' });
    if (endpoint === 'recommendations' && source === 'personalized')
      m.recommendationCache.inc({ outcome: cached ? 'hit' : 'miss' });
    m.recommendationDuration.observe({ endpoint }, (performance.now() - started) / 1000);
  }
}
