/**
 * The next-best-offer decision (`GET /v1/users/{id}/next-best-offer`): among this replica's offers
 * (book.ts), drop those the rules exclude (policy.ts), estimate each remaining offer's conversion
 * probability for the user, and rank by expected value:
 *
 *   expected_value = p(convert | user, offer) × value × offer lever × category levers
 *
 * p(convert | user, offer) = clip(B × A, 0, 1) where
 * - B is the Beta posterior of the offer in the user's most favourable segment (or overall; explore.ts)
 *   from the online feature state's counts: its mean, or with `offers.explore` a Thompson draw, so
 *   offers with little data are tried now and then and the better ones win as data comes in;
 * - A is the personal affinity of the champion model (1 when it does not know the user or the offer):
 *   the model scores the candidate offers, the scores are standardised across them (z = (s − mean) /
 *   std) and mapped to A_i = exp(γ z_i) / mean_j exp(γ z_j), γ = `offers.affinityStrength`, so A has
 *   mean 1 over the scored offers: it reorders offers by taste without inflating every estimate.
 * Opted-out users get non-personal estimates only (overall posterior, no affinity, no segment-targeted
 * offers), and their reasons say so.
 *
 * Served offers are appended to the event log as `impression` events (through the ingestion service,
 * with an id derived from the request id and the item, so a retried request is not counted twice)
 * BEFORE the answer is returned: the next call, on any replica, must see them, or a page reload could
 * dodge every cap. A failed recording still answers, labelled `degraded`.
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Rng } from '../algorithms/random.ts';
import type { UserHistory } from '../algorithms/types.ts';
import type { Config } from '../config/load.ts';
import type { RequestContext } from '../domain/context.ts';
import type { StoredEvent } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import { buildUserProfile } from '../features/interactions.ts';
import type { IngestService } from '../ingest/contracts.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { Metrics } from '../monitoring/metrics.ts';
import type { ServingModel } from '../serving/model-state.ts';
import type { OfferBook } from './book.ts';
import type {
  NextBestOfferRequest,
  NextBestOfferResult,
  NextBestOfferService,
  OfferCounts,
  OfferDecision,
  OfferExclusion,
  OfferStateReader,
} from './contracts.ts';
import { betaMean, evidence, posterior, sampleBeta, segmentPosterior, type BetaParams } from './explore.ts';
import {
  audienceExclusion,
  ContactHistory,
  contactExclusion,
  effectivePolicy,
  globalRemaining,
  IMPRESSION,
  offerExclusion,
  type Exclusion,
  type OfferEntry,
} from './policy.ts';

export interface OfferServiceDeps {
  config: Readonly<Config>;
  book: Pick<OfferBook, 'all' | 'has'>;
  online: OfferStateReader;
  /** The champion served by this process, or null before the first model. */
  champion: () => ServingModel | null;
  /** Where served offers are recorded as impressions (null: not recorded, whatever the config says). */
  recorder?: Pick<IngestService, 'ingestEvents'> | null;
  metrics?: Pick<Metrics, 'recommendationsServed' | 'recommendationDuration'> | null;
  logger: Pick<Logger, 'warn' | 'error'>;
  now?: () => number;
  /** Randomness of Thompson draws (tests pass a seeded one). */
  rng?: Rng;
}

/** Below this many exposures (beyond the prior) an offer's estimate is called exploratory in reasons. */
const LITTLE_DATA = 100;
const MAX_CHANNEL_LENGTH = 128;

interface Scored {
  entry: OfferEntry;
  probability: number;
  expectedValue: number;
  reason: () => string;
}

export class OfferDecider implements NextBestOfferService {
  private readonly now: () => number;
  private readonly rng: Rng;

  constructor(private readonly deps: OfferServiceDeps) {
    this.now = deps.now ?? Date.now;
    this.rng = deps.rng ?? new Rng(Math.floor(Math.random() * 0x7fffffff));
  }

  async nextBestOffer(ctx: RequestContext, request: NextBestOfferRequest): Promise<NextBestOfferResult> {
    const started = performance.now();
    const { config, online, logger } = this.deps;
    const k = this.checkK(request.k);
    const channel = this.checkChannel(request.channel);
    const now = this.now();
    const excluded: OfferExclusion[] = [];
    const exclude = (itemId: string, e: Exclusion) =>
      excluded.push({ itemId, rule: e.rule, detail: e.detail });
    const answer = (items: OfferDecision[], degraded: boolean, modelVersion: string | null = null) => {
      this.record(degraded, started);
      const result: NextBestOfferResult = {
        requestId: ctx.requestId,
        userId: request.userId,
        modelVersion,
        source: 'decision',
        degraded,
        items,
      };
      if (request.explain) result.excluded = excluded;
      return result;
    };

    // Rules that need nothing of the user first: no reads for offers that cannot be shown anyway.
    const open: OfferEntry[] = [];
    for (const entry of this.deps.book.all()) {
      const e = offerExclusion(entry, now, channel);
      if (e) exclude(entry.itemId, e);
      else open.push(entry);
    }
    if (open.length === 0) return answer([], false);

    let optedOut: boolean;
    let history: StoredEvent[];
    let segments: readonly string[];
    try {
      const [opt, events, meta] = await Promise.all([
        online.optedOut(request.userId),
        online.recentEvents(request.userId, config.serving.historyLimit),
        online.userMeta(request.userId),
      ]);
      optedOut = opt;
      history = events;
      segments = meta?.segments ?? [];
    } catch (err) {
      // Without the contact history no cap can be checked: no offer is better than one over its cap.
      logger.warn({ err, request_id: ctx.requestId }, 'online state unavailable; no offer decided');
      return answer([], true);
    }

    const contacts = new ContactHistory(history, (id) => this.deps.book.has(id));
    const defaults = config.offers.policy;
    const eligible: OfferEntry[] = [];
    for (const entry of open) {
      const e =
        audienceExclusion(entry.offer, segments, optedOut) ??
        contactExclusion(entry.itemId, effectivePolicy(entry.offer, defaults), contacts, now);
      if (e) exclude(entry.itemId, e);
      else eligible.push(entry);
    }
    const remaining = globalRemaining(contacts, config.offers.maxPerUserPerDay, now);
    if (remaining === 0) {
      const detail = `${config.offers.maxPerUserPerDay} offer impressions in the last 24 hours (global cap)`;
      for (const entry of eligible) exclude(entry.itemId, { rule: 'global_cap', detail });
      return answer([], false);
    }
    if (eligible.length === 0) return answer([], false);

    let degraded = false;
    let states: (OfferCounts | null)[];
    try {
      states = await online.itemFeatures(eligible.map((e) => e.itemId));
    } catch (err) {
      // Priors only: the answer is still within every rule, just less informed.
      logger.warn({ err, request_id: ctx.requestId }, 'offer statistics unavailable; deciding on priors');
      states = eligible.map(() => null);
      degraded = true;
    }

    const affinity = new Float64Array(eligible.length).fill(1);
    const sm = optedOut ? null : this.deps.champion();
    let modelVersion: string | null = null;
    if (sm) {
      try {
        if (this.affinity(sm, request.userId, history, eligible, affinity)) modelVersion = sm.version.version;
      } catch (err) {
        affinity.fill(1);
        logger.error({ err, version: sm.version.version }, 'model failed to score offers; no affinity');
      }
    }

    const scored: Scored[] = eligible.map((entry, i) =>
      this.score(entry, states[i], optedOut ? [] : segments, affinity[i], optedOut, modelVersion !== null),
    );
    scored.sort(
      (a, b) =>
        b.expectedValue - a.expectedValue ||
        (a.entry.itemId < b.entry.itemId ? -1 : a.entry.itemId > b.entry.itemId ? 1 : 0),
    );
    const take = Math.min(k, remaining, scored.length);
    const items: OfferDecision[] = scored.slice(0, take).map((s) => ({
      itemId: s.entry.itemId,
      probability: s.probability,
      value: s.entry.offer.value,
      expectedValue: s.expectedValue,
      reason: s.reason(),
    }));
    // Offers that made the top k but not today's remaining allowance were left out by the global cap.
    for (const s of scored.slice(take, Math.min(k, scored.length)))
      exclude(s.entry.itemId, {
        rule: 'global_cap',
        detail: `only ${remaining} more offer impression${remaining === 1 ? '' : 's'} allowed in the last 24 hours`,
      });

    if (items.length > 0 && config.offers.recordImpressions && this.deps.recorder) {
      if (!(await this.recordImpressions(ctx, request.userId, channel, items, now))) degraded = true;
    }
    return answer(items, degraded, modelVersion);
  }

  /** Conversion estimate, expected value and reason of one eligible offer. */
  private score(
    entry: OfferEntry,
    state: OfferCounts | null,
    segments: readonly string[],
    affinity: number,
    optedOut: boolean,
    personal: boolean,
  ): Scored {
    const { config } = this.deps;
    const prior = config.offers.prior;
    const overallCounts = countsOf(state?.counts ?? {}, config.offers);
    const overall = posterior(prior, overallCounts);
    let best: BetaParams = overall;
    let bestCounts = overallCounts;
    let bestSegment: string | null = null;
    if (state) {
      for (const s of segments) {
        if (!Object.prototype.hasOwnProperty.call(state.segments, s)) continue;
        const counts = countsOf(state.segments[s], config.offers);
        const p = segmentPosterior(prior, overall, counts);
        if (betaMean(p) > betaMean(best)) {
          best = p;
          bestCounts = counts;
          bestSegment = s;
        }
      }
    }
    const base = config.offers.explore ? sampleBeta(best, this.rng) : betaMean(best);
    const probability = Math.min(1, Math.max(0, base * affinity));
    const lever = entry.offer.lever * this.categoryLever(entry.categories);
    const expectedValue = probability * entry.offer.value * lever;

    // The reason is worded only for the offers returned (formatting thousands of strings would cost
    // more than the decision).
    const reason = () => {
      const trials = Math.max(bestCounts.exposures, bestCounts.conversions);
      const where = bestSegment === null ? 'overall' : `in segment ${bestSegment}`;
      const parts = [
        `${pct(betaMean(best))} conversion ${where} (${trials} exposures)`,
        `value ${fmt(entry.offer.value)}${lever !== 1 ? ` × lever ${fmt(lever)}` : ''}`,
      ];
      if (personal && affinity !== 1)
        parts.push(`your history ${affinity > 1 ? 'fits' : 'fits less'} (×${fmt(affinity)})`);
      let text = parts.join('; ');
      if (config.offers.explore && evidence(overall, prior) < LITTLE_DATA)
        text = `Exploring (little data yet): ${text}`;
      return optedOut ? `Non-personal estimate (personalization is off for this user): ${text}` : text;
    };
    return { entry, probability, expectedValue, reason };
  }

  /** Product of the configured levers of the offer's categories (1 when none is configured). */
  private categoryLever(categories: readonly string[]): number {
    const levers = this.deps.config.offers.categoryLevers;
    let lever = 1;
    for (const c of categories) if (Object.prototype.hasOwnProperty.call(levers, c)) lever *= levers[c];
    return lever;
  }

  /**
   * The champion's affinity factors of the eligible offers into `out` (see the module comment); false
   * (and `out` untouched) when the model cannot tell: it does not know the user, or fewer than two of
   * the offers, or scores them all alike.
   */
  private affinity(
    sm: ServingModel,
    userId: string,
    history: readonly StoredEvent[],
    offers: readonly OfferEntry[],
    out: Float64Array,
  ): boolean {
    const gamma = this.deps.config.offers.affinityStrength;
    if (gamma === 0) return false;
    const { config } = this.deps;
    const profile = buildUserProfile(config.events.types, history, config.events);
    const known: [number, number][] = [];
    for (const [id, w] of profile.positives) {
      const i = sm.itemIndex.get(id);
      if (i !== undefined) known.push([i, w]);
    }
    const userIdx = sm.userIndex.get(userId) ?? -1;
    if (known.length === 0 && userIdx < 0) return false;
    known.sort((a, b) => a[0] - b[0]);
    const hist: UserHistory = {
      items: Int32Array.from(known, (p) => p[0]),
      weights: Float32Array.from(known, (p) => p[1]),
    };
    const positions: number[] = [];
    const indices: number[] = [];
    for (let o = 0; o < offers.length; o++) {
      const i = sm.itemIndex.get(offers[o].itemId);
      if (i !== undefined) {
        positions.push(o);
        indices.push(i);
      }
    }
    const n = indices.length;
    if (n < 2) return false;
    const items = Int32Array.from(indices);
    const scores = new Float32Array(n);
    const foldIn = userIdx < 0 || history.some((e) => e.seq > sm.lastEventSeq);
    // Only the offers are scored (FittedModel.scoreItems: cost ∝ offers, plus one fold-in).
    sm.model.scoreItems(userIdx, hist, items, scores, foldIn);

    let mean = 0;
    for (let j = 0; j < n; j++) {
      if (!Number.isFinite(scores[j])) return false;
      mean += scores[j];
    }
    mean /= n;
    let variance = 0;
    for (let j = 0; j < n; j++) variance += (scores[j] - mean) ** 2;
    const std = Math.sqrt(variance / n);
    if (!(std > 0)) return false;
    const factors = new Float64Array(n);
    let sum = 0;
    for (let j = 0; j < n; j++) {
      factors[j] = Math.exp((gamma * (scores[j] - mean)) / std);
      sum += factors[j];
    }
    const norm = n / sum;
    for (let j = 0; j < n; j++) out[positions[j]] = factors[j] * norm;
    return true;
  }

  /** Appends `impression` events for the served offers; false when they could not all be recorded. */
  private async recordImpressions(
    ctx: RequestContext,
    userId: string,
    channel: string | undefined,
    items: readonly OfferDecision[],
    now: number,
  ): Promise<boolean> {
    const events = items.map((it) => ({
      event_id: impressionEventId(ctx.requestId, it.itemId),
      user_id: userId,
      item_id: it.itemId,
      type: IMPRESSION,
      timestamp: now,
      // Not `request_id`: that key makes an event feedback on a served recommendation (experiments).
      context: {
        decision: 'next_best_offer',
        offer_request_id: ctx.requestId,
        ...(channel ? { channel } : {}),
      },
    }));
    try {
      const outcomes = await this.deps.recorder!.ingestEvents(ctx, events);
      const rejected = outcomes.find((o) => o.status === 'rejected');
      if (rejected) {
        this.deps.logger.warn(
          { request_id: ctx.requestId, error: rejected.error },
          'offer impressions rejected (is the `impression` event type configured?); caps cannot count them',
        );
        return false;
      }
      return true;
    } catch (err) {
      this.deps.logger.warn({ err, request_id: ctx.requestId }, 'offer impressions could not be recorded');
      return false;
    }
  }

  private checkK(k: number | undefined): number {
    const { defaultK } = this.deps.config.offers;
    const { maxK } = this.deps.config.serving;
    if (k === undefined) return defaultK;
    if (!Number.isInteger(k) || k < 1 || k > maxK)
      throw CairnError.validation([{ field: 'k', message: `must be an integer from 1 to ${maxK}` }]);
    return k;
  }

  private checkChannel(channel: string | undefined): string | undefined {
    if (channel === undefined) return undefined;
    if (channel.trim().length === 0 || channel.length > MAX_CHANNEL_LENGTH)
      throw CairnError.validation([
        {
          field: 'channel',
          message: `must be a non-blank string of at most ${MAX_CHANNEL_LENGTH} characters`,
        },
      ]);
    return channel;
  }

  private record(degraded: boolean, started: number): void {
    const m = this.deps.metrics;
    if (!m) return;
    m.recommendationsServed.inc({
      endpoint: 'next_best_offer',
      source: 'decision',
      fallback_reason: degraded ? 'store_unavailable' : 'none',
    });
    m.recommendationDuration.observe({ endpoint: 'next_best_offer' }, (performance.now() - started) / 1000);
  }
}

/** The event id of the impression of `itemId` served in request `requestId` (a retry repeats it). */
export function impressionEventId(requestId: string, itemId: string): string {
  return `imp-${createHash('sha256').update(`cairn:impression:v1\u0000${requestId}\u0000${itemId}`).digest('hex').slice(0, 40)}`;
}

/** Exposures and conversions of one count table under the configured types. */
function countsOf(
  counts: Record<string, number>,
  types: Pick<Config['offers'], 'exposureTypes' | 'conversionTypes'>,
): { exposures: number; conversions: number } {
  let exposures = 0;
  let conversions = 0;
  for (const t of types.exposureTypes) exposures += counts[t] ?? 0;
  for (const t of types.conversionTypes) conversions += counts[t] ?? 0;
  return { exposures, conversions };
}

function pct(p: number): string {
  return `${(p * 100).toFixed(p < 0.1 ? 1 : 0)}%`;
}

function fmt(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(2);
}
