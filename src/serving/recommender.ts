/**
 * The online recommendation path: candidates from the champion model → business rules → fallback
 * chain → explanations. Every answer is labelled with where it came from:
 *
 *   personal (champion model, folding in the user's newest events; when the model version carries a
 *             trained ranker, the ranker re-ranks the candidates of several retrievers: see `ranked`)
 *     → similar-to-recent (item-to-item on the user's recent items)
 *     → cold start (a user with no events: popular items ranked by their segments and attributes)
 *     → category popular (the request's category, else the categories of the user's recent items)
 *     → global popular (online, time-decayed)
 *
 * An anonymous session (recommendSession) runs the same chain with the items it sent as its history
 * (the champion folds them in as a new user), labelled `session` when the model answered.
 *
 * Later links only fill what earlier links could not. Every item carries a reason about that item (the
 * history item that contributed most to its score, the seed it is similar to, the list it came from);
 * `explain=true` adds the full breakdown and `fields=` the item's catalog fields. The chain never fails: when the online state is
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
import type { FittedModel } from '../algorithms/types.ts';
import {
  ITEM_FIELDS,
  type AnswerOptions,
  type ListOptions,
  type PopularResult,
  type RecommendRequest,
  type RecommendationService,
  type SessionRequest,
  type SimilarResult,
} from './contracts.ts';
import type { Config } from '../config/load.ts';
import { yieldToLoop } from '../domain/cooperative.ts';
import { createContext, type RequestContext } from '../domain/context.ts';
import type {
  Experiment,
  ExperimentVariant,
  ItemExplanation,
  ItemField,
  RecommendationResult,
  RecommendedItem,
  ServedRecord,
  StoredEvent,
} from '../domain/types.ts';
import { RECOMMENDATIONS_ENDPOINT } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import { mergeCandidates } from '../features/candidates.ts';
import type { FeatureConfig, ItemFeatureState, UserMeta } from '../features/definitions.ts';
import { buildUserProfile, type UserProfile } from '../features/interactions.ts';
import { decayedAt, featureConfigFor } from '../features/item-state.ts';
import { popularityHalfLifeIndex } from '../features/ranker-artifact.ts';
import type { UserContext } from '../features/ranking.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { Metrics } from '../monitoring/metrics.ts';
import type { OnlineState } from '../storage/ports.ts';
import { AnswerRefresh } from './answer-refresh.ts';
import type { Predecessor } from './champion.ts';
import type { CatalogView } from './catalog.ts';
import { rankColdStart, userValues } from './cold-start.ts';
import type { Arm, ExperimentRouter } from './experiments.ts';
import type { ModelPool } from './model-pool.ts';
import type { ServingModel } from './model-state.ts';
import type { PopularList } from './popular.ts';
import { POP_RETRIEVER, RankerStage, SIMILAR_RETRIEVER, type ReasonKind } from './ranker.ts';
import { RetrievalHeadCache } from './retrieval-head.ts';
import { similarToRecent } from '../features/similar-retriever.ts';
import { CONTENT_RETRIEVER, ContentIndex, topOf } from '../features/content-retriever.ts';
import { CATEGORY_RETRIEVER, headList, headScore, TRENDING_RETRIEVER } from '../features/head-retrievers.ts';
import type { ServedLogSink } from './served-log.ts';
import { UserStates, type ModelMemo, type UserState } from './user-states.ts';
import { overlapAtK, shadowMetrics, shadowSampled, type ShadowMetrics } from './shadow.ts';

export interface RecommenderDeps {
  config: Readonly<Config>;
  online: Pick<
    OnlineState,
    | 'recentEvents'
    | 'optedOut'
    | 'popularity'
    | 'cacheGet'
    | 'cacheVersion'
    | 'cacheSet'
    | 'userMeta'
    | 'itemFeatures'
  >;
  catalog: CatalogView;
  popular: PopularList;
  metrics: Metrics;
  logger: Logger;
  /** The champion currently served by this process, or null before the first model. */
  champion: () => ServingModel | null;
  /**
   * The champion a newer one replaced (absent or null: none). For a while after the swap its cached
   * answers are served, labelled with its version, while the new champion's are computed.
   */
  predecessor?: () => Predecessor | null;
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
const MAX_ITEM_ID_LENGTH = 512;
/** History items listed in an explanation; the rest are summed into `otherWeight`. */
const MAX_CONTRIBUTIONS = 10;
/** The event type a session's items count as (they are what the session looked at). */
const SESSION_EVENT_TYPE = 'view';
/** Cold start: popular items ranked, and per category an attribute names, extra candidates from the head. */
const COLD_START_POOL = 200;
const COLD_START_CATEGORIES = 4;
const COLD_START_PER_CATEGORY = 50;

/** What a request asked to add to its items, validated. */
interface Answer {
  explain: boolean;
  fields: ItemField[];
}

/**
 * How much history item `a` speaks for item `b` in this model: its own item similarity when it has one,
 * else the dot product of the items' factors when its artifact holds factors, else nothing (null).
 * Cached per model: looking the factors up reads the artifact once.
 */
const affinities = new WeakMap<FittedModel, ((a: number, b: number) => number) | null>();
function affinityOf(model: FittedModel): ((a: number, b: number) => number) | null {
  let f = affinities.get(model);
  if (f !== undefined) return f;
  f = model.itemSimilarity ? model.itemSimilarity.bind(model) : factorDot(model);
  affinities.set(model, f);
  return f;
}

function factorDot(model: FittedModel): ((a: number, b: number) => number) | null {
  let y: unknown;
  let width: unknown;
  try {
    const artifact = model.toArtifact();
    y = artifact.arrays.itemFactors;
    width = artifact.meta.factors;
  } catch {
    return null;
  }
  if (!(y instanceof Float32Array) || typeof width !== 'number' || !(width > 0)) return null;
  if (y.length !== model.nItems * width) return null;
  const factors = y;
  const n = model.nItems;
  return (a, b) => {
    if (!(a >= 0 && a < n && b >= 0 && b < n)) return 0;
    let dot = 0;
    const oa = a * width;
    const ob = b * width;
    for (let f = 0; f < width; f++) dot += factors[oa + f] * factors[ob + f];
    return dot;
  };
}

/** Whether and how the second stage ranks one request (decided before any read). */
interface RankerChoice {
  /** The stage that ranks, or null (then `outcome` says why not). */
  stage: RankerStage | null;
  outcome: 'disabled' | 'no_ranker' | 'unusable' | null;
}

/** The user as a model scores them (see scoredUser), with what scoring them once left for next time. */
interface ScoredUser {
  index: number;
  foldIn: boolean;
  memo: ModelMemo;
}

/** What the model's own ranking is asked for (`personal`, `modelList`). */
interface PersonalQuery {
  sm: ServingModel;
  user: ScoredUser;
  profile: UserProfile;
  k: number;
  category: string | undefined;
  blocked: ReadonlySet<string>;
  explain: boolean;
  link: 'personal' | 'session';
}

/** The user's metadata read beside the history for the ranker: never rejects (failures are data). */
type MetaRead = { ok: true; meta: UserMeta | null } | { ok: false; err: unknown };
type ItemFeatureStateLike = Pick<ItemFeatureState, 'segments'>;

/**
 * An answer's time to live: the configured TTL shortened by up to a quarter, at random. Answers stored in
 * the same moment — every user's first request after a start or a model swap — would otherwise expire in
 * the same moment too and be computed again all at once, a burst of second-stage rankings that queues
 * every request behind it; spread over the last quarter of the TTL, the recomputations spread too.
 */
export function cacheTtlMs(ttlSeconds: number, random: () => number = Math.random): number {
  return ttlSeconds * 1000 * (1 - CACHE_TTL_JITTER * random());
}

/** Share of the TTL an answer's expiry is spread over (cacheTtlMs). */
const CACHE_TTL_JITTER = 0.25;

/** Expired answers that may wait for their background recomputation at once (AnswerRefresh). */
const MAX_PENDING_REFRESHES = 1000;

/**
 * Part of the event loop's time the background recomputations may take (AnswerRefresh's `share`): when
 * many answers expire together they are computed over a few seconds of their stale window, not in one
 * burst the requests queue behind.
 */
const REFRESH_SHARE = 0.25;

/**
 * Cached answers kept parsed, by their stored text (parsing one took ~20 µs of a hit's main-thread time,
 * and ~2.4 of its ~35 kB allocated: bench:load profiles). Oldest out first; ~2 kB each.
 */
const PARSED_ANSWERS = 4096;

/** Candidates whose features a background recomputation fills between two loop turns (~0.13 ms). */
const BACKGROUND_FILL_ROWS = 50;

/** What the second stage is asked (Recommender.ranked). */
interface RankRequest {
  k: number;
  category: string | undefined;
  blocked: ReadonlySet<string>;
  explain: boolean;
  /**
   * Computed off the response path (a background recomputation): the stage gives the event loop a turn
   * between its parts, so requests that arrive meanwhile wait for one part, not the whole answer.
   */
  background: boolean;
}

/**
 * A cached answer as stored: the items, when it stops being fresh (epoch ms), and whether it is a cold-start
 * user's answer (the fallback chain's, from their record and the popular items) rather than the model's.
 */
interface CachedAnswer {
  items: RecommendedItem[];
  freshUntil?: number;
  coldStart?: boolean;
}

/** A cached answer as read for a request (`from`: the replaced champion's version that computed it). */
interface CacheHit {
  items: RecommendedItem[];
  stale: boolean;
  coldStart: boolean;
  from?: string;
}

export class Recommender implements RecommendationService {
  private readonly now: () => number;
  private readonly popularWindow: string;
  private readonly shadowMetrics: ShadowMetrics;
  /** The feature settings the online state folds item states with (the ranker's vector must match). */
  private readonly featureConfig: FeatureConfig;
  /** The popular head with the head retrievers' scores (trending, the user's categories). */
  private readonly head: RetrievalHeadCache;
  /** The catalog's content index and the catalog version it was built from (see contentIndex). */
  private content: { index: ContentIndex; version: number; builtAt: number } | null = null;
  /** Per loaded model version: its ranker stage, or why it cannot rank here (decided and logged once). */
  private readonly stages = new WeakMap<ServingModel, RankerStage | { unusable: string }>();
  /** Expired cached answers being computed again off the response path (serving.cacheStaleSeconds). */
  private readonly refresh: AnswerRefresh;
  /** What users' histories gave, by cache version (serving.userStateEvents): no history read to recompute. */
  private readonly userStates: UserStates;
  /**
   * Cached answers as parsed, by the text the online state returned (which is new for every computed
   * answer: it holds the answer's freshness), with when they were parsed; kept for at most an answer's
   * lifetime (swept with the user states), as the store keeps the text. The items are shared by every
   * request the answer serves: never changed.
   */
  private readonly parsed = new Map<string, { entry: CachedAnswer; at: number }>();
  private readonly userStatesSweep: NodeJS.Timeout;
  /** explainPersonal's per-history-item affinities (scratch: synchronous use only). */
  private affinityScratch = new Float64Array(0);

  constructor(private readonly deps: RecommenderDeps) {
    this.now = deps.now ?? Date.now;
    const { config } = deps;
    this.featureConfig = featureConfigFor(config);
    this.shadowMetrics = shadowMetrics(deps.metrics.registry);
    this.head = new RetrievalHeadCache({
      popular: deps.popular,
      online: deps.online,
      catalog: deps.catalog,
      features: this.featureConfig,
      popIndex: popularityHalfLifeIndex(this.featureConfig, config.serving.popularityHalfLifeDays),
    });
    const days = deps.config.serving.popularityHalfLifeDays;
    this.popularWindow = days === 7 ? 'this week' : `over the last ${days} day${days === 1 ? '' : 's'}`;
    this.refresh = new AnswerRefresh({
      maxPending: MAX_PENDING_REFRESHES,
      share: REFRESH_SHARE,
      onError: (err) => deps.logger.warn({ err }, 'could not compute an expired answer again'),
      onRequest: (outcome) => deps.metrics.answerRefreshes.inc({ outcome }),
    });
    // Kept as long as a cached answer lives: its recomputation, once it expires, is what reuses them.
    const lifetimeMs = (config.serving.cacheTtlSeconds + config.serving.cacheStaleSeconds) * 1000;
    this.userStates = new UserStates({
      maxEvents: config.serving.userStateEvents,
      maxAgeMs: lifetimeMs,
      now: this.now,
    });
    this.userStatesSweep = setInterval(
      () => {
        this.userStates.sweep();
        this.sweepParsed(lifetimeMs);
      },
      Math.max(1000, lifetimeMs),
    );
    this.userStatesSweep.unref();
  }

  /** Stops computing expired answers again (what waits is dropped; the running one finishes). */
  async close(): Promise<void> {
    clearInterval(this.userStatesSweep);
    this.userStates.clear();
    this.parsed.clear();
    await this.refresh.close();
  }

  async recommend(ctx: RequestContext, request: RecommendRequest): Promise<RecommendationResult> {
    return this.personalAnswer(ctx, request, false);
  }

  /**
   * The answer to a request for a user's recommendations. `refresh`: computed again in the background
   * because its cached answer expired — the cache is not read, and the answer is only stored: it is not
   * served, so it is not recorded, logged, counted for an experiment arm or shadowed.
   */
  private async personalAnswer(
    ctx: RequestContext,
    request: RecommendRequest,
    refresh: boolean,
  ): Promise<RecommendationResult> {
    const started = performance.now();
    const k = this.checkK(request.k);
    const category = this.checkCategory(request.category);
    const answer = this.checkAnswer(request);
    const { config, logger } = this.deps;

    let optOut = false;
    let history: readonly StoredEvent[] = [];
    /** What the history gave when the user's cache version was last seen (then the history is not read). */
    let known: UserState | null = null;
    let storeDown = false;
    const champion = this.deps.champion();
    const assigned =
      this.deps.experiments?.assign(ctx, { user: request.userId, session: request.sessionId }) ?? null;
    const { model: sm, unavailable } = this.modelFor(assigned, champion, ctx);
    const ranker = this.rankerFor(sm, assigned, ctx);
    const keyOf = (version: string) =>
      this.cacheKey(version, assigned, k, category, request, ranker.stage !== null);
    const cacheKey = sm && config.serving.cacheTtlSeconds > 0 ? keyOf(sm.version.version) : null;
    // Cached answers hold no explanations: an explained answer is always computed.
    const readCache = cacheKey !== null && !answer.explain && !refresh;
    /** The replaced champion whose answer may stand in for the champion's (see handedOver). */
    const handover = readCache && sm === champion ? this.handedOver() : null;
    let cached: string | null = null;
    let previous: string | null = null;
    /** The user's cache version, read before the history: the answer is stored only if it still holds. */
    let version: string | undefined;
    let hit: CacheHit | null = null;
    let meta: Promise<MetaRead> | null = null;
    try {
      // The cheap reads first (one round trip: Redis pipelines them). A cached answer needs nothing else,
      // so a hit costs the same after 10 events or 10,000. Any event of the user's applied since the
      // answer was computed dropped it, and an answer computed from an older history than the current
      // one was never stored (cacheSet compares the version read here).
      [optOut, version, cached, previous] = await Promise.all([
        this.deps.online.optedOut(request.userId),
        cacheKey !== null ? this.deps.online.cacheVersion(request.userId) : Promise.resolve(undefined),
        readCache ? this.deps.online.cacheGet(request.userId, cacheKey) : Promise.resolve(null),
        handover ? this.deps.online.cacheGet(request.userId, keyOf(handover)) : Promise.resolve(null),
      ]);
      hit = cached !== null && !optOut && sm ? this.fromCache(cached, category) : null;
      if (!hit && previous !== null && !optOut && handover) {
        const before = this.fromCache(previous, category);
        if (before) hit = { ...before, stale: true, from: handover };
      }
      if (!hit) {
        // The ranker's user features need the user's segments: read beside the history, only when it ranks.
        meta = ranker.stage
          ? this.deps.online.userMeta(request.userId).then(
              (m): MetaRead => ({ ok: true, meta: m }),
              (err: unknown): MetaRead => ({ ok: false, err }),
            )
          : null;
        known = version !== undefined && !optOut ? this.userStates.get(request.userId, version) : null;
        history =
          known?.history ??
          (await this.deps.online.recentEvents(request.userId, config.serving.historyLimit));
      }
    } catch (err) {
      storeDown = true;
      logger.warn(
        { err, request_id: ctx.requestId },
        'online state unavailable while recommending; answering from this process',
      );
    }
    // An opted-out user takes part in no experiment: nothing personal is served to them, so no arm could
    // make a difference, and their answers must not feed results.
    const arm = optOut ? null : assigned;
    if (arm && !refresh) this.deps.experiments?.served(arm);
    const experiment = arm ? { id: arm.experiment.id, variant: arm.variant.name } : null;
    if (hit && sm) {
      const result: RecommendationResult = {
        requestId: ctx.requestId,
        userId: request.userId,
        // The version that computed these items: the replaced champion's for a handed-over answer.
        modelVersion: hit.from ?? sm.version.version,
        source: hit.coldStart ? 'fallback' : 'personalized',
        fallbackReason: hit.coldStart ? 'cold_start_user' : unavailable,
        degraded: false,
        items: this.withFields(hit.items, answer.fields),
        experiment,
      };
      this.record(
        'recommendations',
        result.source,
        result.fallbackReason,
        started,
        hit.from !== undefined ? 'handover' : hit.stale ? 'stale' : 'hit',
      );
      // Served as it is; the next request gets it computed again (the same request, in the background).
      if (hit.stale && cacheKey !== null)
        this.refresh.request(`${request.userId}\u0000${cacheKey}`, async () => {
          await this.personalAnswer(
            createContext({ principal: ctx.principal, tenant: ctx.tenant, experiment: ctx.experiment }),
            request,
            true,
          );
        });
      this.logServed(result, arm);
      // A shadow sampled on a hit reads the history itself, after the answer is sent.
      this.shadow(ctx, request, result, {
        history: null,
        profile: null,
        k,
        category,
        exclude: request.exclude,
      });
      return result;
    }
    // An opted-out user's history is not used at all, not even to pick fallback categories.
    const profile =
      known?.profile ?? buildUserProfile(config.events.types, optOut ? [] : history, config.events);
    // Kept under the version read before the history: an event applied since changed it, so a state
    // from a newer history than its version says is never found (the next read sees the new version).
    const state =
      version !== undefined && !optOut && !storeDown
        ? this.userStates.set(request.userId, known ?? { version, history, profile, models: new Map() })
        : null;
    const blocked = new Set<string>(request.exclude ?? []);
    for (const id of profile.negatives) blocked.add(id);
    if (config.serving.excludeSeen) for (const id of profile.seen) blocked.add(id);

    const items: RecommendedItem[] = [];
    let source: 'personalized' | 'fallback' = 'fallback';
    let reason: FallbackReason | null = null;
    let personalScores: number[] = [];
    /** Whether the trained ranker ranked the personal list (else the model's own ranking did). */
    let ranked = false;

    if (storeDown) reason = 'store_unavailable';
    else if (optOut) reason = 'opt_out';
    else if (!sm) reason = 'no_model';
    else if (profile.positives.size === 0) reason = 'cold_start_user';
    else if (this.pastDeadline(ctx)) reason = 'deadline';
    else {
      const user = this.scoredUser(sm, request.userId, history, state);
      if (ranker.outcome !== null) this.deps.metrics.rankerRequests.inc({ outcome: ranker.outcome });
      if (ranker.stage && meta) {
        const list = await this.rankOrNull(ctx, ranker.stage, sm, user, profile, history, meta, {
          k,
          category,
          blocked,
          explain: answer.explain,
          background: refresh,
        });
        if (list) {
          ranked = true;
          source = 'personalized';
          items.push(...list);
        }
      }
      if (!ranked) {
        const own = this.modelList({
          sm,
          user,
          profile,
          k,
          category,
          blocked,
          explain: answer.explain,
          link: 'personal',
        });
        if ('reason' in own) reason = own.reason;
        else {
          source = 'personalized';
          items.push(...own.items);
          personalScores = own.items.map((p) => p.score);
        }
      }
    }

    const late = reason === 'deadline' || this.pastDeadline(ctx);
    const failed = await this.fillChain(ctx, items, {
      sm,
      profile,
      k,
      category,
      blocked,
      explain: answer.explain,
      // Past the deadline only the cheapest link runs: popular in the asked category, else global popular.
      useHistory: !optOut && !storeDown && !late,
      storeDown,
      coldStartUser: !optOut && !storeDown && !late && profile.positives.size === 0 ? request.userId : null,
    });
    if (failed && !storeDown) {
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
      items: this.withFields(items, answer.fields),
      experiment,
    };
    if (!refresh) {
      this.record('recommendations', source, result.fallbackReason, started, 'miss');
      this.logServed(result, arm);
      // Drift of served scores is measured against the champion's training reference only: the metric
      // keeps one window per version, and arms on other versions would keep resetting it. Ranker scores
      // are on another scale than the model's: not observed.
      if (sm && sm === champion && !ranked && personalScores.length > 0)
        this.deps.metrics.observeServedScores(
          sm.version.version,
          sm.version.lineage?.drift ?? null,
          personalScores,
        );
      this.shadow(ctx, request, result, { history, profile, k, category, exclude: request.exclude });
    }
    // The key says whether the ranker was to rank: an answer the CF ranking gave in its stead (the online
    // state failed while ranking) is not stored under it. A cold-start user's answer is stored too (it
    // ranks the popular head for their record, ~1 ms); their first event or a new record drops it.
    const coldStart = source === 'fallback' && reason === 'cold_start_user' && !late;
    const personal = source === 'personalized' && ranked === (ranker.stage !== null);
    if (cacheKey && !result.degraded && (personal || coldStart)) {
      try {
        // What the answer is, not what this request added to it (fields are read fresh on every hit).
        const bare = items.map(({ itemId, score, reason }) => ({ itemId, score, reason }));
        // Fresh for the TTL, then served stale for up to cacheStaleSeconds while computed again.
        const fresh = cacheTtlMs(config.serving.cacheTtlSeconds);
        const entry: CachedAnswer = { items: bare, freshUntil: this.now() + fresh };
        if (coldStart) entry.coldStart = true;
        await this.deps.online.cacheSet(
          request.userId,
          cacheKey,
          JSON.stringify(entry),
          fresh + config.serving.cacheStaleSeconds * 1000,
          version,
        );
      } catch (err) {
        logger.debug({ err }, 'could not cache a recommendation');
      }
    }
    return result;
  }

  /**
   * An anonymous session: its items are folded in by the champion as the history of a new user (index
   * −1), so the answer is the model's own, labelled `session`; when the model knows none of them (or
   * there is no model) the fallback chain answers from the items instead (similar to them → popular in
   * their categories → popular). The items themselves are never returned. Nothing is read from the
   * online state but the popular lists, nothing is cached, and no experiment routes a session: arms
   * are assigned to users.
   */
  async recommendSession(ctx: RequestContext, request: SessionRequest): Promise<RecommendationResult> {
    const started = performance.now();
    const k = this.checkK(request.k);
    const category = this.checkCategory(request.category);
    const answer = this.checkAnswer(request);
    const sessionItems = this.checkSessionItems(request.items);
    const profile = this.sessionProfile(sessionItems);
    const sm = this.deps.champion();
    const blocked = new Set<string>(request.exclude ?? []);
    for (const id of sessionItems) blocked.add(id);

    const items: RecommendedItem[] = [];
    let source: 'session' | 'fallback' = 'fallback';
    let reason: FallbackReason | null = null;
    if (!sm) reason = 'no_model';
    else if (profile.positives.size === 0) reason = 'cold_start_user';
    else if (this.pastDeadline(ctx)) reason = 'deadline';
    else {
      const user: ScoredUser = { index: -1, foldIn: true, memo: {} };
      const own = this.modelList({
        sm,
        user,
        profile,
        k,
        category,
        blocked,
        explain: answer.explain,
        link: 'session',
      });
      if ('reason' in own) reason = own.reason;
      else {
        source = 'session';
        items.push(...own.items);
      }
    }
    const late = reason === 'deadline' || this.pastDeadline(ctx);
    const failed = await this.fillChain(ctx, items, {
      sm,
      profile,
      k,
      category,
      blocked,
      explain: answer.explain,
      useHistory: !late,
      storeDown: false,
      coldStartUser: null,
    });
    if (failed && source === 'fallback' && reason === null) reason = 'store_unavailable';
    const result: RecommendationResult = {
      requestId: ctx.requestId,
      userId: null,
      modelVersion: sm?.version.version ?? null,
      source,
      fallbackReason: source === 'session' ? null : reason,
      degraded: failed || reason === 'model_error' || reason === 'deadline',
      items: this.withFields(items, answer.fields),
      experiment: null,
    };
    this.record('recommendations', source, result.fallbackReason, started);
    return result;
  }

  /**
   * The links after the model's own list, each filling only what the earlier ones left: similar to the
   * user's recent items, cold-start ranking (a user with no events), popular in the asked category or
   * the recent items' categories, global popular. Returns whether the online state failed on the way
   * (the popular links then answer from this process's last list).
   */
  private async fillChain(
    ctx: RequestContext,
    items: RecommendedItem[],
    input: {
      sm: ServingModel | null;
      profile: UserProfile;
      k: number;
      category: string | undefined;
      blocked: ReadonlySet<string>;
      explain: boolean;
      /** Whether the links may use the user's history (not for an opted-out user, nor past the deadline). */
      useHistory: boolean;
      storeDown: boolean;
      /** The user to rank for from their segments and attributes (a user with no events), else null. */
      coldStartUser: string | null;
    },
  ): Promise<boolean> {
    const { sm, profile, k, category, blocked, explain, useHistory } = input;
    const taken = new Set(items.map((i) => i.itemId));
    const usable = (id: string) =>
      !taken.has(id) &&
      !blocked.has(id) &&
      this.deps.catalog.isAvailable(id) &&
      (!category || this.deps.catalog.inCategory(id, category));

    if (items.length < k && sm && useHistory && profile.recent.length > 0) {
      this.push(items, taken, this.similarToRecent(sm, profile, k - items.length, usable, explain));
    }
    // Reads that just failed are not retried for the popular links: they use this process's last list.
    const fallback = { failed: input.storeDown };
    if (items.length < k && input.coldStartUser !== null && !this.pastDeadline(ctx)) {
      this.push(
        items,
        taken,
        await this.coldStart(ctx, input.coldStartUser, k - items.length, usable, explain, fallback),
      );
    }
    if (items.length < k) {
      const categories = category ? [category] : useHistory ? this.userCategories(profile) : [];
      for (const c of categories) {
        if (items.length >= k) break;
        this.push(items, taken, await this.popularOrNone(c, k - items.length, usable, fallback, explain));
      }
    }
    if (items.length < k && !category)
      this.push(items, taken, await this.popularOrNone(null, k - items.length, usable, fallback, explain));
    return fallback.failed;
  }

  /**
   * The cache key of an answer: everything the answer depends on besides the user's own state. The
   * model version AND the arm are in it, so an answer of one arm is never served to another (two arms
   * may share a model version and differ otherwise, e.g. by the ranker).
   */
  private cacheKey(
    modelVersion: string,
    arm: Arm | null,
    k: number,
    category: string | undefined,
    request: RecommendRequest,
    ranker: boolean,
  ): string {
    const exclude = [...new Set(request.exclude ?? [])].sort();
    const armKey = arm ? [arm.experiment.id, arm.variant.name] : null;
    return JSON.stringify([modelVersion, armKey, k, category ?? null, exclude, ranker]);
  }

  /**
   * The replaced champion whose cached answers may still be served, labelled with its version, while the
   * champion's own are computed in the background: a promotion then does not turn every user's next
   * request into a miss at once. Only within the cache's lifetime of an answer after the swap (TTL and
   * stale window; older answers have expired anyway), only where stale answers are served at all
   * (`serving.cacheStaleSeconds` > 0), and never after a rollback (ChampionHolder names no predecessor).
   */
  private handedOver(): string | null {
    const before = this.deps.predecessor?.() ?? null;
    const { cacheTtlSeconds, cacheStaleSeconds } = this.deps.config.serving;
    if (before === null || cacheStaleSeconds <= 0) return null;
    const lifetimeMs = (cacheTtlSeconds + cacheStaleSeconds) * 1000;
    return this.now() - before.replacedAt < lifetimeMs ? before.version : null;
  }

  /**
   * Whether the second stage ranks for `sm` under this arm: the arm's `ranker` (true forces it, false
   * bypasses it) over config `ranking.enabled`; a model without a usable ranker never ranks (an arm
   * asking for one is answered by the CF ranking, said in a debug log). Usability is decided once per
   * loaded version and logged then.
   */
  private rankerFor(sm: ServingModel | null, arm: Arm | null, ctx: RequestContext): RankerChoice {
    if (!sm) return { stage: null, outcome: null };
    const wanted = arm?.variant.ranker ?? null;
    if (wanted === false || (wanted === null && !this.deps.config.ranking.enabled))
      return { stage: null, outcome: 'disabled' };
    let stage = this.stages.get(sm);
    if (stage === undefined) {
      if (sm.ranker) {
        stage = RankerStage.plan(sm.ranker, sm.model.algorithm, this.featureConfig);
        if (!(stage instanceof RankerStage))
          this.deps.logger.warn(
            { version: sm.version.version, why: stage.unusable },
            'the model version carries a ranker that cannot rank here; the CF ranking answers',
          );
        this.stages.set(sm, stage);
      } else if (sm.rankerError !== null) {
        this.deps.logger.warn(
          { version: sm.version.version, why: sm.rankerError },
          "the model version's ranker could not be read; the CF ranking answers",
        );
        stage = { unusable: sm.rankerError };
        this.stages.set(sm, stage);
      }
    }
    if (stage instanceof RankerStage) return { stage, outcome: null };
    if (wanted === true)
      this.deps.logger.debug(
        {
          request_id: ctx.requestId,
          experiment: arm?.experiment.id,
          variant: arm?.variant.name,
          version: sm.version.version,
          why: stage ? stage.unusable : 'no ranker in the model version',
        },
        'arm asks for the ranker; the model has no usable one, so the CF ranking answers',
      );
    return { stage: null, outcome: stage ? 'unusable' : 'no_ranker' };
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
      endpoint: RECOMMENDATIONS_ENDPOINT,
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
      /** The history the answer was computed from; null: a cached answer (the shadow reads it). */
      history: readonly StoredEvent[] | null;
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
      void this.shadowHistory(request.userId, input.history).then(
        (history) => {
          for (const { experiment, variant } of picked)
            this.scoreShadow(ctx, request, served, { ...input, history }, experiment, variant);
        },
        (err: unknown) => {
          for (const { experiment } of picked)
            this.shadowMetrics.requests.inc({ experiment: experiment.id, outcome: 'error' });
          this.deps.logger.warn(
            { err, request_id: ctx.requestId },
            'could not read the history for a shadow answer',
          );
        },
      );
    });
  }

  /** The history a shadow scores: the served answer's, or read now (the answer came from the cache). */
  private async shadowHistory(
    userId: string,
    history: readonly StoredEvent[] | null,
  ): Promise<readonly StoredEvent[]> {
    return history ?? this.deps.online.recentEvents(userId, this.deps.config.serving.historyLimit);
  }

  private scoreShadow(
    ctx: RequestContext,
    request: RecommendRequest,
    served: RecommendationResult,
    input: {
      history: readonly StoredEvent[];
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
      const user = this.scoredUser(sm, request.userId, input.history);
      const personal = this.personal({
        sm,
        user,
        profile,
        k: input.k,
        category: input.category,
        blocked,
        explain: false,
        link: 'personal',
      });
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
        this.push(items, taken, this.similarToRecent(sm, profile, input.k - items.length, usable, false));
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
          endpoint: RECOMMENDATIONS_ENDPOINT,
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
   * A cached answer, unless an item in it may no longer be served (unavailable, or out of the category
   * since): then it is recomputed rather than served short. (An answer computed from an older history
   * than the user's current one is never in the cache: see the cache version in `recommend`.)
   */
  private fromCache(raw: string, category: string | undefined): CacheHit | null {
    const entry = this.parsed.get(raw)?.entry ?? this.parse(raw);
    if (!entry) return null;
    const items = entry.items;
    const catalog = this.deps.catalog;
    for (const it of items) {
      if (!catalog.isAvailable(it.itemId)) return null;
      if (category && !catalog.inCategory(it.itemId, category)) return null;
    }
    // Written before answers carried their freshness: fresh until the store expires it.
    const stale =
      this.deps.config.serving.cacheStaleSeconds > 0 &&
      typeof entry.freshUntil === 'number' &&
      this.now() > entry.freshUntil;
    return { items, stale, coldStart: entry.coldStart === true };
  }

  /** A cached answer's text parsed and checked (kept in `parsed`), or null when it cannot be served. */
  private parse(raw: string): CachedAnswer | null {
    let entry: CachedAnswer;
    try {
      entry = JSON.parse(raw) as CachedAnswer;
    } catch {
      return null;
    }
    if (!Array.isArray(entry?.items)) return null;
    // Written by an older process, or damaged: a score that is not a finite number is never served.
    if (!entry.items.every((it) => Number.isFinite(it?.score))) return null;
    if (this.parsed.size >= PARSED_ANSWERS) this.parsed.delete(this.parsed.keys().next().value!);
    this.parsed.set(raw, { entry, at: this.now() });
    return entry;
  }

  /** Drops the answers parsed over `maxAgeMs` ago (the oldest come first). */
  private sweepParsed(maxAgeMs: number): void {
    const oldest = this.now() - maxAgeMs;
    for (const [raw, { at }] of this.parsed) {
      if (at > oldest) break;
      this.parsed.delete(raw);
    }
  }

  async similar(ctx: RequestContext, itemId: string, options: ListOptions): Promise<SimilarResult> {
    const started = performance.now();
    const k = this.checkK(options.k);
    const category = this.checkCategory(options.category);
    const answer = this.checkAnswer(options);
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
        items.push(...this.similarTo(sm, idx, k, category, answer.explain));
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
      this.push(
        items,
        taken,
        await this.popularOrNone(c, k - items.length, usable, fallback, answer.explain),
      );
    }
    if (items.length < k && !category)
      this.push(
        items,
        taken,
        await this.popularOrNone(null, k - items.length, usable, fallback, answer.explain),
      );
    if (fallback.failed) degraded = true;

    this.record('similar', source, source === 'personalized' ? null : reason, started);
    return {
      requestId: ctx.requestId,
      itemId,
      modelVersion: sm?.version.version ?? null,
      source,
      fallbackReason: source === 'personalized' ? null : reason,
      degraded,
      items: this.withFields(items, answer.fields),
    };
  }

  async popular(ctx: RequestContext, options: ListOptions): Promise<PopularResult> {
    const started = performance.now();
    const k = this.checkK(options.k);
    const category = this.checkCategory(options.category);
    const answer = this.checkAnswer(options);
    const catalog = this.deps.catalog;
    let degraded = false;
    let items: RecommendedItem[];
    const usable = (id: string) => catalog.isAvailable(id) && (!category || catalog.inCategory(id, category));
    try {
      items = await this.popularIn(category ?? null, k, usable, false, answer.explain);
    } catch (err) {
      degraded = true;
      this.deps.logger.warn({ err, request_id: ctx.requestId }, 'online state unavailable for popular items');
      items = await this.popularIn(category ?? null, k, usable, true, answer.explain);
    }
    this.record('popular', 'fallback', null, started);
    return {
      requestId: ctx.requestId,
      itemId: null,
      modelVersion: null,
      source: 'fallback',
      fallbackReason: degraded ? 'store_unavailable' : null,
      degraded,
      items: this.withFields(items, answer.fields),
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
    explain: boolean,
  ): Promise<RecommendedItem[]> {
    if (!state.failed) {
      try {
        return await this.popularIn(category, k, usable, false, explain);
      } catch (err) {
        state.failed = true;
        this.deps.logger.warn(
          { err },
          'online state unavailable for the popular fallback; using the last list read',
        );
      }
    }
    return this.popularIn(category, k, usable, true, explain);
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

  /**
   * The user as the model scores them: their training row, folded in again from their current history
   * whenever they have events the model has not seen (a user new to the model is always folded in).
   */
  private scoredUser(
    sm: ServingModel,
    userId: string,
    history: readonly StoredEvent[],
    state: UserState | null = null,
  ): ScoredUser {
    const index = sm.userIndex.get(userId) ?? -1;
    return {
      index,
      foldIn: index < 0 || history.some((e) => e.seq > sm.lastEventSeq),
      memo: state ? UserStates.memo(state, sm.version.version) : {},
    };
  }

  /**
   * The model's own list (`personal`), or why there is none: the history is unknown to the model, no
   * candidate is left, or the model failed (logged; the fallback chain answers).
   */
  private modelList(q: PersonalQuery): { items: RecommendedItem[] } | { reason: FallbackReason } {
    try {
      const items = this.personal(q);
      if (items === 'history_not_in_model') return { reason: items };
      return items.length === 0 ? { reason: 'no_personal_candidates' } : { items };
    } catch (err) {
      this.deps.logger.error(
        { err, version: q.sm.version.version, link: q.link },
        'model failed to score; falling back',
      );
      return { reason: 'model_error' };
    }
  }

  /** The model's own ranking for the history in `profile`, each item with the history items behind it. */
  private personal({
    sm,
    user,
    profile,
    k,
    category,
    blocked,
    explain,
    link,
  }: PersonalQuery): RecommendedItem[] | 'history_not_in_model' {
    const hist = this.modelHistory(sm, profile, user.memo);
    if (!hist) return 'history_not_in_model';
    const top = this.modelTop(sm, user, hist, k, category, blocked);
    const out: RecommendedItem[] = [];
    for (let r = 0; r < top.indices.length; r++) {
      const item = top.indices[r];
      out.push({
        itemId: sm.itemIds[item],
        score: top.scores[r],
        ...this.explainPersonal(sm, item, hist, profile, explain, link),
      });
    }
    return out;
  }

  /**
   * The profile's positive items that the model knows, by index, with their weights (null: none); kept in
   * the user's memo (the memo belongs to this profile and model).
   */
  private modelHistory(
    sm: ServingModel,
    profile: UserProfile,
    memo: ModelMemo,
  ): { items: Int32Array; weights: Float32Array } | null {
    if (memo.hist !== undefined) return memo.hist;
    return (memo.hist = this.knownHistory(sm, profile));
  }

  private knownHistory(
    sm: ServingModel,
    profile: UserProfile,
  ): { items: Int32Array; weights: Float32Array } | null {
    const known: [number, number][] = [];
    for (const [id, w] of profile.positives) {
      const i = sm.itemIndex.get(id);
      if (i !== undefined) known.push([i, w]);
    }
    if (known.length === 0) return null;
    known.sort((a, b) => a[0] - b[0]);
    return {
      items: Int32Array.from(known, (p) => p[0]),
      weights: Float32Array.from(known, (p) => p[1]),
    };
  }

  /**
   * The model's `k` best items for the user under the business rules (unavailable, outside the
   * category, blocked), scores finite (and positive for models whose 0 means no evidence). Leaves the
   * full-catalog scores in `sm.scores` (scratch: read them before the next await).
   */
  private modelTop(
    sm: ServingModel,
    user: ScoredUser,
    hist: { items: Int32Array; weights: Float32Array },
    k: number,
    category: string | undefined,
    blocked: ReadonlySet<string>,
  ): { indices: Int32Array; scores: Float32Array } {
    this.scoreInto(sm, user, hist);
    const mask = this.baseMask(sm, category);
    for (const id of blocked) {
      const i = sm.itemIndex.get(id);
      if (i !== undefined) mask[i] = 1;
    }
    const top = topK(sm.scores, k, mask);
    const needEvidence = EVIDENCE_MODELS.has(sm.model.algorithm);
    let n = 0;
    for (let r = 0; r < top.indices.length; r++) {
      const score = top.scores[r];
      if (!Number.isFinite(score) || (needEvidence && score <= 0)) continue;
      top.indices[n] = top.indices[r];
      top.scores[n++] = score;
    }
    return { indices: top.indices.subarray(0, n), scores: top.scores.subarray(0, n) };
  }

  /**
   * Every item's score for the user into `sm.scores`. A factor model's folded-in vector is kept in the
   * user's memo: scoring the same history again (an expired answer computed anew) folds nothing in.
   */
  private scoreInto(
    sm: ServingModel,
    user: ScoredUser,
    hist: { items: Int32Array; weights: Float32Array },
  ): void {
    const model = sm.model;
    if (user.foldIn && model.userVector && model.scoreVector) {
      user.memo.vector ??= Float64Array.from(model.userVector(user.index, hist, true));
      model.scoreVector(user.memo.vector, sm.scores);
    } else model.scoreUser(user.index, hist, sm.scores, user.foldIn);
  }

  /**
   * The personal list ranked by the trained ranker, or null when the CF ranking must answer instead
   * (the online state failed while ranking, or no candidate was left). Counts the outcome and times
   * the stage.
   */
  private async rankOrNull(
    ctx: RequestContext,
    stage: RankerStage,
    sm: ServingModel,
    user: ScoredUser,
    profile: UserProfile,
    history: readonly StoredEvent[],
    meta: Promise<MetaRead>,
    request: RankRequest,
  ): Promise<RecommendedItem[] | null> {
    const started = performance.now();
    const m = this.deps.metrics;
    try {
      const list = await this.ranked(stage, sm, user, profile, history, meta, request);
      m.rankerRequests.inc({ outcome: list.length > 0 ? 'ranked' : 'no_candidates' });
      return list.length > 0 ? list : null;
    } catch (err) {
      m.rankerRequests.inc({ outcome: 'error' });
      this.deps.logger.warn(
        { err, request_id: ctx.requestId, version: sm.version.version },
        'ranking failed (online state or model); the CF ranking answers',
      );
      return null;
    } finally {
      m.rankerDuration.observe((performance.now() - started) / 1000);
    }
  }

  /**
   * The second stage: the retrievers the ranker names (the model's own top-N, the popular head, items
   * similar to the recent ones) are merged round-robin into `ranking.candidates` candidates with the
   * business rules applied (blocked, seen, unavailable, outside the category: never candidates); the
   * candidates' item states are read in ONE online-state round trip (with the user's metadata read
   * since the request started); their feature vectors are filled into the stage's one buffer, scored,
   * and the top k returned with the ranker's scores. Each item's reason comes from its largest positive
   * feature contribution (REASON_TABLE), the model's own reason by default; `explain` adds the
   * per-feature contributions and bias (and the history items behind the model's score).
   */
  private async ranked(
    stage: RankerStage,
    sm: ServingModel,
    user: ScoredUser,
    profile: UserProfile,
    history: readonly StoredEvent[],
    meta: Promise<MetaRead>,
    request: RankRequest,
  ): Promise<RecommendedItem[]> {
    const { k, category, blocked, explain, background } = request;
    // In the background (an expired answer computed again, off the response path) the work gives the
    // loop a turn between its parts, none over ~0.3 ms (it ran as two blocks of ~1.2 and ~0.7 ms before:
    // bench:load), on buffers no request shares: the stage's twin and its own copy of the model's scores.
    const st = background ? stage.twin() : stage;
    const catalog = this.deps.catalog;
    const n = Math.max(k, this.deps.config.ranking.candidates);
    const now = this.now();
    const retrievers = stage.ranker.stored.retrievers;
    const usable = (id: string) =>
      !blocked.has(id) && catalog.isAvailable(id) && (!category || catalog.inCategory(id, category));

    // What may need a round trip, read before the model scores into its shared buffer: the popular
    // head, the head retrievers' scores (cached per process) and the user's metadata (read since the
    // request started), which the user context needs.
    const usesPop = retrievers.includes(POP_RETRIEVER);
    const usesHead = retrievers.includes(TRENDING_RETRIEVER) || retrievers.includes(CATEGORY_RETRIEVER);
    const [popular, head, metaRead] = await Promise.all([
      usesPop ? this.deps.popular.top(n, now, (id) => catalog.has(id) && usable(id)) : [],
      usesHead ? this.head.get(now) : null,
      meta,
    ]);
    if (!metaRead.ok) throw metaRead.err;
    if (background) await yieldToLoop();
    const features = st.features;
    const context = features.userContext(
      history,
      metaRead.meta,
      now,
      (id) => catalog.categories(id),
      (id) => catalog.rankingMeta(id)?.price ?? null,
    );

    // In a request, synchronous from here to the item-state read: `sm.scores` is this model's shared
    // scratch (the background reads its own copy of it, taken after the model's own list).
    const hist = this.modelHistory(sm, profile, user.memo);
    if (!hist) return [];
    const similar = retrievers.includes(SIMILAR_RETRIEVER) ? this.similarScores(sm, profile) : null;
    const content = retrievers.includes(CONTENT_RETRIEVER)
      ? this.contentIndex(now).scores(profile.recent.slice(0, this.deps.config.serving.recentItems))
      : null;
    const lists: { retriever: string; items: string[]; scores: ArrayLike<number> }[] = [];
    for (const name of retrievers) {
      if (background) await yieldToLoop();
      if (name === POP_RETRIEVER) {
        lists.push({
          retriever: name,
          items: popular.map((p) => p.itemId),
          scores: popular.map((p) => p.score),
        });
      } else if (name === SIMILAR_RETRIEVER) {
        const top = similar ? this.similarTop(sm, similar.acc, n, usable) : null;
        lists.push({
          retriever: name,
          items: top ? Array.from(top.indices, (i) => sm.itemIds[i]) : [],
          scores: top ? top.scores : [],
        });
      } else if (content && name === CONTENT_RETRIEVER) {
        lists.push({ retriever: name, ...topOf(content, n, usable) });
      } else if (head && (name === TRENDING_RETRIEVER || name === CATEGORY_RETRIEVER)) {
        const list = headList(head, name, context.categoryShares, n, (h) => usable(head.ids[h]));
        lists.push({ retriever: name, items: list.positions.map((h) => head.ids[h]), scores: list.scores });
      }
    }
    // The model's own list last computed, so its full-catalog scores stay in `sm.scores` for the signals.
    const algorithm: string = sm.model.algorithm;
    const ownIndex = retrievers.indexOf(algorithm);
    // (A popularity champion's own list is the popular head itself.)
    if (ownIndex >= 0 && algorithm !== POP_RETRIEVER && algorithm !== SIMILAR_RETRIEVER) {
      const own = this.modelTop(sm, user, hist, n, category, blocked);
      lists.splice(ownIndex, 0, {
        retriever: sm.model.algorithm,
        items: Array.from(own.indices, (i) => sm.itemIds[i]),
        scores: own.scores,
      });
    }
    const scores = background ? sm.scores.slice() : sm.scores;
    if (background) await yieldToLoop();
    const candidates = mergeCandidates(lists, n, (id) => !usable(id));
    if (candidates.length === 0) return [];
    if (background) await yieldToLoop();
    // As offline (evaluation/ltr.ts): every retriever's score for every candidate, the rank only where
    // its list holds the candidate.
    for (const c of candidates) {
      const i = sm.itemIndex.get(c.item);
      for (const name of retrievers) {
        if (c.signals.has(name)) continue;
        let score: number;
        // The popularity retriever's score is set from the item's state below, for every candidate.
        if (name === POP_RETRIEVER) score = 0;
        else if (name === SIMILAR_RETRIEVER) score = i === undefined || !similar ? 0 : similar.acc[i];
        else if (name === CONTENT_RETRIEVER) score = content?.get(c.item) ?? 0;
        else if (head && (name === TRENDING_RETRIEVER || name === CATEGORY_RETRIEVER))
          score = headScore(head, name, c.item, context.categoryShares);
        else score = i === undefined ? Number.NaN : scores[i];
        c.signals.set(name, { score, rank: Number.NaN });
      }
    }

    const ids = candidates.map((c) => c.item);
    // Past here the model's scratch is no longer read: as the item-state read may, a turn may pass.
    if (background) await yieldToLoop();
    const states = await this.deps.online.itemFeatures(ids);
    if (usesPop) {
      // As in training (training/ranker.ts): the item's decayed weight from its feature state, not the
      // popular list's own score (which also applies the per-user cap), so the column means the same.
      const h = popularityHalfLifeIndex(this.featureConfig, this.deps.config.serving.popularityHalfLifeDays);
      for (let c = 0; c < candidates.length; c++) {
        const signal = candidates[c].signals.get(POP_RETRIEVER);
        if (signal) signal.score = decayedAt(states[c], h, now, this.featureConfig);
      }
    }

    const rows = st.rowsFor(candidates.length);
    const nf = st.nFeatures;
    for (let c = 0; c < candidates.length; c++) {
      if (background && c > 0 && c % BACKGROUND_FILL_ROWS === 0) await yieldToLoop();
      features.fill(
        rows,
        c * nf,
        context,
        ids[c],
        states[c],
        catalog.rankingMeta(ids[c]),
        candidates[c].signals,
        now,
      );
    }
    if (background) await yieldToLoop();
    const top = st.top(candidates.length, k);
    if (background) await yieldToLoop();
    const out: RecommendedItem[] = [];
    for (let r = 0; r < top.rows.length; r++) {
      const row = top.rows[r];
      const itemId = ids[row];
      const why = st.explain(row, explain);
      const i = sm.itemIndex.get(itemId);
      const own = i === undefined ? null : this.explainPersonal(sm, i, hist, profile, explain, 'personal');
      const reason =
        (why.reason &&
          this.rankedReason(why.reason, { sm, i, profile, similar, context, state: states[row], itemId })) ??
        own?.reason ??
        (candidates[row].signals.get(POP_RETRIEVER)?.rank
          ? `Popular ${this.popularWindow}`
          : 'Recommended for you');
      const rec: RecommendedItem = { itemId, score: top.scores[r], reason };
      if (explain) {
        rec.explanation = {
          ...(own?.explanation ?? this.explanation('personal', null, [])),
          model: 'lambdamart',
          features: why.features ?? [],
          bias: why.bias ?? 0,
        };
      }
      out.push(rec);
    }
    return out;
  }

  /**
   * The content index of the catalog view (features/content-retriever.ts), rebuilt when the catalog
   * changed, at most once a minute (a rebuild runs on the event loop: linear in the catalog).
   */
  private contentIndex(now: number): ContentIndex {
    const c = this.content;
    const catalog = this.deps.catalog;
    if (c && (c.version === catalog.version || now - c.builtAt < 60_000)) return c.index;
    const index = new ContentIndex(catalog.contentEntries());
    this.content = { index, version: catalog.version, builtAt: now };
    return index;
  }

  /**
   * A reason worded for people from the feature that lifted the item most (see REASON_TABLE), or null
   * when what it needs is missing (then the model's own reason is used).
   */
  private rankedReason(
    why: { kind: ReasonKind; feature: string },
    input: {
      sm: ServingModel;
      i: number | undefined;
      profile: UserProfile;
      similar: { bestSource: Int32Array } | null;
      context: UserContext;
      state: ItemFeatureStateLike | null;
      itemId: string;
    },
  ): string | null {
    const { sm, i, profile, similar, context, state, itemId } = input;
    switch (why.kind) {
      case 'cf':
        return null; // the model's own reason (explainPersonal), the default
      case 'similar':
        return i !== undefined && similar && similar.bestSource[i] >= 0
          ? this.similarReason(sm, profile, similar.bestSource[i])
          : null;
      case 'popular':
        return `Popular ${this.popularWindow}`;
      case 'trending':
        return 'Trending this week';
      case 'category': {
        let best: string | null = null;
        let share = 0;
        for (const c of this.deps.catalog.categories(itemId)) {
          const s = context.categoryShares.get(c) ?? 0;
          if (s > share) {
            share = s;
            best = c;
          }
        }
        return best === null ? null : `Because you often choose ${best}`;
      }
      case 'segment': {
        if (!state) return null;
        let best: string | null = null;
        let most = 0;
        for (const seg of context.segments) {
          if (!Object.prototype.hasOwnProperty.call(state.segments, seg)) continue;
          let count = 0;
          for (const v of Object.values(state.segments[seg])) count += v;
          if (count > most) {
            most = count;
            best = seg;
          }
        }
        return best === null ? null : `Popular with customers in segment ${best}`;
      }
      case 'rate': {
        const type = why.feature.slice('item_rate_'.length);
        return `Often ${VERBS[type] ?? type} by people who view it`;
      }
      case 'new':
        return 'New in the catalog';
      case 'active':
        return 'Chosen by other customers recently';
      case 'price':
        return 'In your usual price range';
    }
  }

  /**
   * The ranking view of a catalog item (null: not in the catalog). The catalog view keeps no
   * `createdAt`, so `item_age_created_days` is missing online.
   */

  /**
   * Why the model scored `item`: the history items by their contribution to it (weight × the model's
   * affinity of the two items, see `affinityOf`), named in the reason and, with `explain`, listed by
   * their share of the item's positive evidence.
   */
  private explainPersonal(
    sm: ServingModel,
    item: number,
    hist: { items: Int32Array; weights: Float32Array },
    profile: UserProfile,
    explain: boolean,
    link: 'personal' | 'session',
  ): { reason: string; explanation?: ItemExplanation } {
    const affinity = affinityOf(sm.model);
    const general =
      link === 'session'
        ? `Recommended by the ${sm.model.algorithm} model from the ${hist.items.length} items of this session`
        : `Recommended by the ${sm.model.algorithm} model from your ${hist.items.length} interactions`;
    if (!affinity) {
      return explain
        ? { reason: general, explanation: this.explanation(link, sm.model.algorithm, []) }
        : { reason: general };
    }
    let best = -1;
    let bestC = 0;
    let second = -1;
    let secondC = 0;
    const parts: { itemId: string; weight: number }[] | null = explain ? [] : null;
    const affinities = this.affinitiesTo(sm.model, affinity, hist.items, item);
    for (let h = 0; h < hist.items.length; h++) {
      const c = affinities[h] * hist.weights[h];
      if (!(c > 0) || !Number.isFinite(c)) continue;
      parts?.push({ itemId: sm.itemIds[hist.items[h]], weight: c });
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
    const explanation = parts ? this.explanation(link, sm.model.algorithm, parts) : undefined;
    const withExplanation = (reason: string) => (explanation ? { reason, explanation } : { reason });
    if (best < 0) return withExplanation(general);
    const verb = (i: number) => VERBS[profile.strongestType.get(sm.itemIds[i]) ?? ''] ?? 'interacted with';
    const label = (i: number) => this.deps.catalog.label(sm.itemIds[i]);
    // A second item is named only when it weighs nearly as much: the reason is about this item's
    // strongest tie, not a list of the user's favourites repeated on every item.
    if (second < 0 || secondC < bestC * 0.75)
      return withExplanation(`Because you ${verb(best)} ${label(best)}`);
    return withExplanation(
      verb(best) === verb(second)
        ? `Because you ${verb(best)} ${label(best)} and ${label(second)}`
        : `Because you ${verb(best)} ${label(best)} and ${verb(second)} ${label(second)}`,
    );
  }

  /** affinity(items[h], item) for every h, in a scratch buffer (at once when the model can). */
  private affinitiesTo(
    model: FittedModel,
    affinity: (a: number, b: number) => number,
    items: Int32Array,
    item: number,
  ): Float64Array {
    if (this.affinityScratch.length < items.length)
      this.affinityScratch = new Float64Array(Math.max(items.length, 2 * this.affinityScratch.length));
    const out = this.affinityScratch;
    if (model.itemSimilarities) model.itemSimilarities(items, item, out.subarray(0, items.length));
    else for (let h = 0; h < items.length; h++) out[h] = affinity(items[h], item);
    return out;
  }

  /**
   * An explanation from raw positive contributions: shares of their total, largest first, the first
   * MAX_CONTRIBUTIONS listed and the rest summed into `otherWeight`.
   */
  private explanation(
    link: ItemExplanation['link'],
    model: string | null,
    parts: { itemId: string; weight: number }[],
    list?: string,
  ): ItemExplanation {
    let total = 0;
    for (const p of parts) total += p.weight;
    parts.sort((a, b) => b.weight - a.weight || (a.itemId < b.itemId ? -1 : 1));
    const listed = parts
      .slice(0, MAX_CONTRIBUTIONS)
      .map((p) => ({ itemId: p.itemId, weight: p.weight / total }));
    let shown = 0;
    for (const p of listed) shown += p.weight;
    const out: ItemExplanation = {
      link,
      model,
      contributions: listed,
      otherWeight: listed.length > 0 ? Math.max(0, 1 - shown) : 0,
    };
    if (list !== undefined) out.list = list;
    return out;
  }

  /**
   * Item-to-item scores on the user's most recent items, weighted 1/(rank + 1) towards the newest, with
   * the recent item that gave each item its largest term; null when none of the recent items is in the
   * model or the model has no item similarity. Uses `sm.scores` as scratch (synchronous).
   */
  private similarScores(
    sm: ServingModel,
    profile: UserProfile,
  ): { acc: Float32Array; bestSource: Int32Array; recent: number[] } | null {
    const recent: number[] = [];
    for (const id of profile.recent) {
      const i = sm.itemIndex.get(id);
      if (i !== undefined) recent.push(i);
      if (recent.length >= this.deps.config.serving.recentItems) break;
    }
    if (recent.length === 0) return null;
    const scores = similarToRecent(sm, recent, sm.nItems, sm.scores);
    return scores && { ...scores, recent };
  }

  /** The `k` best items by item-to-item score (positive, finite, `usable`). */
  private similarTop(
    sm: ServingModel,
    acc: Float32Array,
    k: number,
    usable: (id: string) => boolean,
  ): { indices: Int32Array; scores: Float32Array } {
    const mask = new Uint8Array(sm.nItems);
    for (let i = 0; i < mask.length; i++)
      mask[i] = acc[i] > 0 && Number.isFinite(acc[i]) && usable(sm.itemIds[i]) ? 0 : 1;
    return topK(acc, k, mask);
  }

  /** "Similar to X, which you viewed recently", X the recent item behind the item's largest term. */
  private similarReason(sm: ServingModel, profile: UserProfile, source: number): string {
    const src = sm.itemIds[source];
    const verb = VERBS[profile.strongestType.get(src) ?? ''] ?? 'interacted with';
    return `Similar to ${this.deps.catalog.label(src)}, which you ${verb} recently`;
  }

  /** Item-to-item on the user's most recent items, weighted towards the newest. */
  private similarToRecent(
    sm: ServingModel,
    profile: UserProfile,
    k: number,
    usable: (id: string) => boolean,
    explain: boolean,
  ): RecommendedItem[] {
    const scored = this.similarScores(sm, profile);
    if (!scored) return [];
    const { acc, bestSource, recent } = scored;
    const top = this.similarTop(sm, acc, k, usable);
    const affinity = explain ? affinityOf(sm.model) : null;
    const out: RecommendedItem[] = [];
    for (let r = 0; r < top.indices.length; r++) {
      const i = top.indices[r];
      const rec: RecommendedItem = {
        itemId: sm.itemIds[i],
        score: top.scores[r],
        reason: this.similarReason(sm, profile, bestSource[i]),
      };
      if (explain) {
        // The same sum the score is: each recent item's similarity, weighted 1/(rank + 1).
        const parts: { itemId: string; weight: number }[] = [];
        for (let q = 0; q < recent.length; q++) {
          const v = (affinity ? affinity(recent[q], i) : recent[q] === bestSource[i] ? 1 : 0) / (q + 1);
          if (v > 0 && Number.isFinite(v)) parts.push({ itemId: sm.itemIds[recent[q]], weight: v });
        }
        rec.explanation = this.explanation('similar_to_recent', sm.model.algorithm, parts);
      }
      out.push(rec);
    }
    return out;
  }

  private similarTo(
    sm: ServingModel,
    idx: number,
    k: number,
    category: string | undefined,
    explain: boolean,
  ): RecommendedItem[] {
    if (!sm.similarItems(idx, sm.scores)) return [];
    const mask = this.baseMask(sm, category);
    mask[idx] = 1;
    const top = topK(sm.scores, k, mask);
    const seed = sm.itemIds[idx];
    const label = this.deps.catalog.label(seed);
    const out: RecommendedItem[] = [];
    for (let r = 0; r < top.indices.length; r++) {
      if (!(top.scores[r] > 0) || !Number.isFinite(top.scores[r])) continue;
      const reason =
        sm.model.algorithm === 'itemknn' || sm.model.algorithm === 'ease'
          ? `Often chosen by the same people as ${label}`
          : `Liked by people with the same taste as those who liked ${label}`;
      const rec: RecommendedItem = { itemId: sm.itemIds[top.indices[r]], score: top.scores[r], reason };
      if (explain)
        rec.explanation = this.explanation('similar', sm.model.algorithm, [
          { itemId: seed, weight: top.scores[r] },
        ]);
      out.push(rec);
    }
    return out;
  }

  /** Popular items (in `category`), from the online state, or with `lastKnown` from this process's copy. */
  private async popularIn(
    category: string | null,
    k: number,
    usable: (id: string) => boolean,
    lastKnown = false,
    explain = false,
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
    const explanation = explain
      ? this.explanation(
          category ? 'category_popular' : 'popular',
          null,
          [],
          category ? `category:${category}` : 'popular',
        )
      : null;
    return entries.map((p) => {
      const rec: RecommendedItem = {
        itemId: p.itemId,
        score: p.score,
        reason: `${where} ${this.popularWindow}`,
      };
      if (explanation) rec.explanation = explanation;
      return rec;
    });
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

  /**
   * Cold start: a user with no events is ranked from their segments and attributes (cold-start.ts) over
   * the popular head and the popular items of the categories their attributes name, before the plain
   * popular links. Nothing to rank by (no segments, no attribute values, or the user unknown): nothing
   * here, and the popular links answer as before. An unreachable online state flags `state`.
   */
  private async coldStart(
    ctx: RequestContext,
    userId: string,
    k: number,
    usable: (id: string) => boolean,
    explain: boolean,
    state: { failed: boolean },
  ): Promise<RecommendedItem[]> {
    if (state.failed) return [];
    const catalog = this.deps.catalog;
    try {
      const meta = await this.deps.online.userMeta(userId);
      if (!meta) return [];
      const values = userValues(meta);
      if (meta.segments.length === 0 && values.length === 0) return [];
      const accept = (id: string) => catalog.has(id) && usable(id);
      const pool = Math.max(COLD_START_POOL, k);
      const head = await this.deps.popular.top(pool, this.now(), accept);
      const seen = new Set(head.map((p) => p.itemId));
      const entries = [...head];
      // The categories the user's attributes name, from the head just read (no more round trips).
      for (const v of values.slice(0, COLD_START_CATEGORIES)) {
        const more = this.deps.popular.lastKnown(
          COLD_START_PER_CATEGORY,
          (id) =>
            !seen.has(id) && accept(id) && catalog.categories(id).some((c) => c.toLowerCase() === v.match),
        );
        for (const e of more) {
          seen.add(e.itemId);
          entries.push(e);
        }
      }
      if (entries.length === 0) return [];
      const states = await this.deps.online.itemFeatures(entries.map((e) => e.itemId));
      const candidates = entries.map((e) => ({
        itemId: e.itemId,
        popularity: e.score,
        categories: catalog.categories(e.itemId),
        attributes: catalog.attributes(e.itemId),
      }));
      const ranked = rankColdStart(meta, candidates, states, this.deps.config.events.types);
      const popularReason = `Popular ${this.popularWindow}`;
      return ranked.slice(0, k).map((r) => {
        const rec: RecommendedItem = { itemId: r.itemId, score: r.score, reason: r.reason ?? popularReason };
        if (explain)
          rec.explanation = {
            ...this.explanation('cold_start', null, [], 'popular'),
            features: r.features,
            bias: 0,
          };
        return rec;
      });
    } catch (err) {
      state.failed = true;
      this.deps.logger.warn(
        { err, request_id: ctx.requestId },
        'online state unavailable for cold-start ranking; answering from the popular list',
      );
      return [];
    }
  }

  /** `explain` and `fields` of a request, checked: an unknown field is CAIRN_VALIDATION `fields`. */
  private checkAnswer(options: AnswerOptions): Answer {
    const fields: ItemField[] = [];
    for (const f of options.fields ?? []) {
      if (!(ITEM_FIELDS as readonly string[]).includes(f)) {
        throw CairnError.validation([
          {
            field: 'fields',
            message: `unknown field ${JSON.stringify(f.slice(0, 64))}; one of ${ITEM_FIELDS.join(', ')}`,
          },
        ]);
      }
      if (!fields.includes(f as ItemField)) fields.push(f as ItemField);
    }
    return { explain: options.explain === true, fields };
  }

  /** The items of a session request: 1..historyLimit non-empty ids (the HTTP schema checks the same). */
  private checkSessionItems(items: readonly string[]): string[] {
    const limit = this.deps.config.serving.historyLimit;
    // Typed, but checked as data: the service is also called from other entry points than HTTP.
    const list: unknown = items;
    if (!Array.isArray(list) || list.length < 1 || list.length > limit) {
      throw CairnError.validation([{ field: 'items', message: `must list 1 to ${limit} item ids` }]);
    }
    for (let i = 0; i < items.length; i++) {
      const id: unknown = items[i];
      if (typeof id !== 'string' || id.length < 1 || id.length > MAX_ITEM_ID_LENGTH) {
        throw CairnError.validation([
          { field: `items[${i}]`, message: `must be an item id of 1 to ${MAX_ITEM_ID_LENGTH} characters` },
        ]);
      }
    }
    return [...new Set(items)];
  }

  /**
   * A session's items as a profile: each a positive interaction of the session event type's weight (1
   * when that type is not configured as positive), the last sent the most recent.
   */
  private sessionProfile(items: readonly string[]): UserProfile {
    const spec = this.deps.config.events.types[SESSION_EVENT_TYPE];
    const weight = spec && !spec.negative && spec.weight > 0 ? spec.weight : 1;
    const positives = new Map<string, number>();
    const strongestType = new Map<string, string>();
    for (const id of items) {
      positives.set(id, weight);
      strongestType.set(id, SESSION_EVENT_TYPE);
    }
    return {
      positives,
      negatives: new Set(),
      seen: new Set(items),
      recent: [...items].reverse(),
      lastEventAt: null,
      strongestType,
    };
  }

  /** The items with the catalog fields asked for (read now: never from a cached answer). */
  private withFields(items: RecommendedItem[], fields: readonly ItemField[]): RecommendedItem[] {
    if (fields.length === 0) return items;
    const catalog = this.deps.catalog;
    return items.map((it) => ({ ...it, ...catalog.fields(it.itemId, fields) }));
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
    cache: 'hit' | 'stale' | 'handover' | 'miss' = 'miss',
  ): void {
    const m = this.deps.metrics;
    m.recommendationsServed.inc({ endpoint, source, fallback_reason: fallbackReason ?? 'none' });
    // The answers the cache may hold: the model's, and a cold-start user's.
    if (endpoint === 'recommendations' && (source === 'personalized' || fallbackReason === 'cold_start_user'))
      m.recommendationCache.inc({ outcome: cache });
    m.recommendationDuration.observe({ endpoint }, (performance.now() - started) / 1000);
  }
}
