/**
 * Conversion-rate estimates of offers: Beta posteriors from exposure and conversion counts, per
 * offer × segment, and Thompson sampling from them (exploration for offers with little data).
 *
 * Segments borrow strength from the offer: a segment's prior is centred on the offer's overall
 * posterior mean with the strength of the configured prior (α₀ + β₀ pseudo-exposures), so a segment
 * seen twice does not swing to 0 % or 100 %, and a segment with plenty of data speaks for itself:
 *
 *   overall:   α = α₀ + c,             β = β₀ + (n − c)
 *   segment s: α = m·μ + c_s,          β = m·(1 − μ) + (n_s − c_s),   μ = overall mean, m = α₀ + β₀
 *
 * with n = max(exposures, conversions) (a conversion without a counted exposure still was a trial, so
 * successes never exceed trials). Pure; randomness comes from the caller's seeded Rng.
 */
import type { Rng } from '../algorithms/random.ts';

export interface BetaParams {
  alpha: number;
  beta: number;
}

/** Counts of one offer (overall, or in one segment). */
export interface ConversionCounts {
  exposures: number;
  conversions: number;
}

/** The posterior after `counts` under `prior` (negative or non-finite counts count as 0). */
export function posterior(prior: BetaParams, counts: ConversionCounts): BetaParams {
  const c = clean(counts.conversions);
  const n = Math.max(clean(counts.exposures), c);
  return { alpha: prior.alpha + c, beta: prior.beta + (n - c) };
}

/** A segment's posterior, its prior centred on the offer's overall posterior (see the module comment). */
export function segmentPosterior(
  prior: BetaParams,
  overall: BetaParams,
  segment: ConversionCounts,
): BetaParams {
  const m = prior.alpha + prior.beta;
  const mu = betaMean(overall);
  return posterior({ alpha: m * mu, beta: m * (1 - mu) }, segment);
}

export function betaMean(p: BetaParams): number {
  return p.alpha / (p.alpha + p.beta);
}

/** Pseudo-exposures behind a posterior beyond its prior's (how much data it rests on). */
export function evidence(p: BetaParams, prior: BetaParams): number {
  return Math.max(0, p.alpha + p.beta - prior.alpha - prior.beta);
}

/**
 * A draw from Gamma(shape, 1): Marsaglia & Tsang (2000) for shape ≥ 1; below 1 through the boost
 * Gamma(a) = Gamma(a + 1) · U^(1/a).
 */
export function sampleGamma(shape: number, rng: Rng): number {
  if (!(shape > 0)) throw new RangeError(`gamma shape must be > 0, got ${shape}`);
  if (shape < 1) {
    let u = rng.float53();
    while (u === 0) u = rng.float53();
    return sampleGamma(shape + 1, rng) * Math.pow(u, 1 / shape);
  }
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = rng.normal();
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = rng.float53();
    const x2 = x * x;
    if (u < 1 - 0.0331 * x2 * x2) return d * v;
    if (u > 0 && Math.log(u) < 0.5 * x2 + d * (1 - v + Math.log(v))) return d * v;
  }
}

/** A draw from Beta(α, β) as X / (X + Y), X ~ Gamma(α), Y ~ Gamma(β). */
export function sampleBeta(p: BetaParams, rng: Rng): number {
  const x = sampleGamma(p.alpha, rng);
  const y = sampleGamma(p.beta, rng);
  const s = x + y;
  // Both tiny (shapes far below 1 underflow): fall back to the mean rather than 0/0.
  return s > 0 ? x / s : betaMean(p);
}

function clean(n: number): number {
  return Number.isFinite(n) && n > 0 ? n : 0;
}
