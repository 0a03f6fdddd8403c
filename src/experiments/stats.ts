/**
 * The statistics of experiment results (pure): 95 % intervals for rates, means and relative lifts, and
 * the chi-square sample-ratio-mismatch test. Textbook methods, chosen for honest behaviour at the
 * edges (few users, zero counts) rather than for being the simplest:
 *
 * - rates: the Wilson score interval, which stays inside [0, 1] and keeps its coverage near 0 and 1
 *   where the normal ("Wald") interval collapses to a point;
 * - means (revenue per user): mean ± z·s/√n from the sum and sum of squares (the CLT; fine for the
 *   thousands of users an experiment needs, and the only thing computable from SQL totals);
 * - relative lift of a rate vs the control: the delta method on the log of the rate ratio (Katz et al.
 *   1978), `se(ln r) = √((1−p₁)/x₁ + (1−p₀)/x₀)`, with a 0.5 continuity correction when a count is 0 so
 *   the interval stays finite; exponentiated back, so it is asymmetric like the ratio itself;
 * - sample-ratio mismatch: Pearson's chi-square of users per variant against the configured weights,
 *   p-value from the regularized upper incomplete gamma function `Q(df/2, χ²/2)`.
 */

/** z of a two-sided 95 % interval (Φ⁻¹(0.975)). */
export const Z95 = 1.959963984540054;

/** A point estimate with its 95 % interval. */
export interface Interval {
  value: number;
  low: number;
  high: number;
}

/**
 * Wilson score interval of `successes / trials`. With no trials nothing is known: value 0, interval
 * [0, 1]. Successes above trials (e.g. more clicks than impressions reported) are clamped to trials.
 */
export function wilson(successes: number, trials: number, z = Z95): Interval {
  if (!(trials > 0)) return { value: 0, low: 0, high: 1 };
  const x = Math.min(Math.max(successes, 0), trials);
  const p = x / trials;
  const z2 = z * z;
  const denom = 1 + z2 / trials;
  const centre = (p + z2 / (2 * trials)) / denom;
  const half = (z / denom) * Math.sqrt((p * (1 - p)) / trials + z2 / (4 * trials * trials));
  // At the edges the exact bound is 0 (no success) or 1 (all successes); the formula gives it only up to
  // rounding (e.g. 2.8e-17), which would print as a spurious non-zero.
  return {
    value: p,
    low: x === 0 ? 0 : Math.max(0, centre - half),
    high: x === trials ? 1 : Math.min(1, centre + half),
  };
}

/**
 * Mean of `n` observations from their sum and sum of squares, with a normal 95 % interval
 * (mean ± z·s/√n, s the sample standard deviation). With n = 0 everything is 0; with n = 1 the spread
 * is unknown and the interval is the point itself. Rounding that makes the variance slightly negative
 * (all observations equal) is clamped to 0.
 */
export function meanInterval(sum: number, sumSquares: number, n: number, z = Z95): Interval {
  if (!(n > 0)) return { value: 0, low: 0, high: 0 };
  const mean = sum / n;
  if (n < 2) return { value: mean, low: mean, high: mean };
  const variance = Math.max(0, (sumSquares - n * mean * mean) / (n - 1));
  const half = z * Math.sqrt(variance / n);
  return { value: mean, low: mean - half, high: mean + half };
}

/**
 * Relative lift `p₁/p₀ − 1` of a treatment rate (x₁ of n₁) over a control rate (x₀ of n₀), with a 95 %
 * interval from the delta method on ln(p₁/p₀). Null when either arm has no trials (nothing to compare).
 * A zero count gets 0.5 added to it (and to its trials) so the log ratio and its variance stay finite:
 * the point estimate then reads "about −100 %" or "very large" with a wide interval, never ±∞.
 */
export function relativeLift(
  treatment: { successes: number; trials: number },
  control: { successes: number; trials: number },
  z = Z95,
): Interval | null {
  if (!(treatment.trials > 0) || !(control.trials > 0)) return null;
  let x1 = Math.min(Math.max(treatment.successes, 0), treatment.trials);
  let n1 = treatment.trials;
  let x0 = Math.min(Math.max(control.successes, 0), control.trials);
  let n0 = control.trials;
  if (x1 === 0 || x0 === 0) {
    x1 += 0.5;
    n1 += 0.5;
    x0 += 0.5;
    n0 += 0.5;
  }
  const p1 = x1 / n1;
  const p0 = x0 / n0;
  const logRatio = Math.log(p1 / p0);
  const se = Math.sqrt(Math.max(0, (1 - p1) / x1) + Math.max(0, (1 - p0) / x0));
  // The point estimate uses the raw rates when both counts are positive (no correction applied then).
  return {
    value: Math.exp(logRatio) - 1,
    low: Math.exp(logRatio - z * se) - 1,
    high: Math.exp(logRatio + z * se) - 1,
  };
}

/**
 * Sample-ratio mismatch: p-value of Pearson's chi-square test of the observed units per variant against
 * the shares the weights promise. Small (say < 0.001) means assignment or logging is broken, and the
 * experiment's results cannot be trusted. Null when there is nothing to test (no units, or fewer than
 * two variants with weight). Units in a variant of weight 0 are impossible under the design: p = 0.
 */
export function srmPValue(observed: readonly number[], weights: readonly number[]): number | null {
  if (observed.length !== weights.length) throw new RangeError('one observed count per weight');
  let total = 0;
  let weightSum = 0;
  let arms = 0;
  for (let i = 0; i < observed.length; i++) {
    total += observed[i];
    if (weights[i] > 0) {
      weightSum += weights[i];
      arms++;
    } else if (observed[i] > 0) return 0;
  }
  if (!(total > 0) || arms < 2) return null;
  let chi2 = 0;
  for (let i = 0; i < observed.length; i++) {
    if (!(weights[i] > 0)) continue;
    const expected = (total * weights[i]) / weightSum;
    chi2 += (observed[i] - expected) ** 2 / expected;
  }
  return chiSquareSurvival(chi2, arms - 1);
}

/** P(X ≥ x) for X ~ χ²(df). */
export function chiSquareSurvival(x: number, df: number): number {
  if (!(df > 0)) throw new RangeError('df must be positive');
  if (!(x > 0)) return 1;
  return regularizedGammaQ(df / 2, x / 2);
}

/** ln Γ(x) for x > 0 (Lanczos approximation, g = 7, n = 9; ~15 significant digits). */
export function logGamma(x: number): number {
  if (x < 0.5) {
    // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
    return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  }
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  const z = x - 1;
  let a = c[0];
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += c[i] / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

const EPS = 1e-15;
const MAX_ITERATIONS = 10_000;
const TINY = 1e-300;

/**
 * Regularized upper incomplete gamma Q(a, x) = Γ(a, x) / Γ(a), for a > 0, x ≥ 0. Series expansion of
 * P = 1 − Q for x < a + 1, Lentz's continued fraction for Q otherwise (each converges fast in its
 * region; Numerical Recipes §6.2).
 */
export function regularizedGammaQ(a: number, x: number): number {
  if (!(a > 0)) throw new RangeError('a must be positive');
  if (!(x > 0)) return 1;
  const logPrefix = a * Math.log(x) - x - logGamma(a);
  if (x < a + 1) {
    // P(a, x) = e^{-x} x^a / Γ(a+1) · Σ x^n / ((a+1)…(a+n))
    let term = 1 / a;
    let sum = term;
    for (let n = 1; n < MAX_ITERATIONS; n++) {
      term *= x / (a + n);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * EPS) break;
    }
    return Math.min(1, Math.max(0, 1 - sum * Math.exp(logPrefix)));
  }
  // Q(a, x) = e^{-x} x^a / Γ(a) · 1 / (x + 1 − a − 1·(1−a)/(x + 3 − a − …))  (modified Lentz)
  let b = x + 1 - a;
  let c = 1 / TINY;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < MAX_ITERATIONS; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < TINY) d = TINY;
    c = b + an / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < EPS) break;
  }
  return Math.min(1, Math.max(0, Math.exp(logPrefix) * h));
}
