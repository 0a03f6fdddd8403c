/**
 * Hyper-parameter search over an algorithm's `space`: random search, or a Tree-structured Parzen
 * Estimator (Bergstra et al. 2011, as in hyperopt/Optuna): after a few random trials, the trials are
 * split into the best quantile ("good") and the rest ("bad"); for each parameter, candidates are drawn
 * from a kernel density over the good values and the one maximising l(x) / g(x) (good density over
 * bad density) is tried next. Parameters are modelled independently (hyperopt's default).
 *
 * The objective is opaque here: the caller scores on the validation part of a split, never on the
 * test part. Seeded: the same seed, space and objective give the same trials.
 */
import { Rng } from '../algorithms/random.ts';
import type { ParamSpace, ParamValue, Params } from '../algorithms/types.ts';

export type Sampler = 'random' | 'tpe';

export interface Trial {
  /** 0-based order of evaluation. */
  index: number;
  params: Params;
  /** Objective value (higher is better); -Infinity when the trial failed. */
  score: number;
  seconds: number;
  /** How the parameters were chosen. */
  source: 'initial' | 'random' | 'tpe';
  error?: string;
}

export interface TuneOptions {
  /** Total trials, initial ones included. */
  trials: number;
  seed: number;
  sampler?: Sampler;
  /** Stop after this many consecutive trials without improving the best score (default: never). */
  patience?: number;
  /** Random trials before TPE starts modelling (default: min(10, max(3, ⌈trials / 4⌉))). */
  startupTrials?: number;
  /** Parameter sets evaluated first, e.g. the algorithm's defaults (missing keys are sampled). */
  initial?: Params[];
  /** Fixed parameters merged into every trial (not searched). */
  fixed?: Params;
  /** Fraction of trials counted as good (default 0.25, at most 25 trials). */
  gamma?: number;
  /** Candidates drawn from the good density per parameter (default 24). */
  candidates?: number;
  /**
   * Wall-time budget of the search, seconds. The first trial always runs (a search must answer);
   * after it, a trial starts only when the time spent plus the mean trial time so far stays within the
   * budget, so a search overruns its budget by at most the spread of its trial times.
   */
  budgetSeconds?: number;
  /** Clock in seconds for the budget (default `performance.now() / 1000`); tests pass a fake one. */
  clock?: () => number;
  onTrial?: (trial: Trial, best: Trial) => void;
  signal?: AbortSignal;
}

export interface TuneResult {
  best: Trial;
  trials: Trial[];
  /** True when the search ended before the trial budget: patience ran out or a finite space was exhausted. */
  stoppedEarly: boolean;
  /** Why it ended before the trial budget (absent when every trial ran). */
  stopReason?: 'patience' | 'exhausted' | 'budget';
}

/** Searches `space` for the parameters that maximise `objective`. */
export async function tune(
  space: Record<string, ParamSpace>,
  objective: (params: Params) => Promise<number>,
  options: TuneOptions,
): Promise<TuneResult> {
  if (!(options.trials >= 1)) throw new RangeError('trials must be ≥ 1');
  const rng = new Rng(options.seed);
  const sampler = options.sampler ?? 'tpe';
  const startup = options.startupTrials ?? Math.min(10, Math.max(3, Math.ceil(options.trials / 4)));
  const names = Object.keys(space).sort();
  const trials: Trial[] = [];
  const seen = new Set<string>();
  let best: Trial | null = null;
  let sinceBest = 0;
  let stopReason: TuneResult['stopReason'];
  const clock = options.clock ?? (() => performance.now() / 1000);
  const searchStarted = clock();

  for (let t = 0; t < options.trials; t++) {
    options.signal?.throwIfAborted();
    if (t > 0 && options.budgetSeconds !== undefined) {
      const spent = clock() - searchStarted;
      if (spent + spent / t > options.budgetSeconds) {
        stopReason = 'budget';
        break;
      }
    }
    let source: Trial['source'];
    let searched: Params;
    const initial = options.initial?.[t];
    if (initial) {
      source = 'initial';
      searched = { ...sampleRandom(space, names, rng), ...pick(initial, names) };
    } else {
      source = sampler === 'tpe' && trials.length >= startup ? 'tpe' : 'random';
      const proposed = propose(space, names, trials, rng, source, options, seen);
      if (proposed === null) {
        // A finite space is exhausted: more trials would only repeat.
        stopReason = 'exhausted';
        break;
      }
      searched = proposed;
    }
    seen.add(keyOf(searched, names));
    const params = { ...searched, ...options.fixed };
    const started = performance.now();
    let score: number;
    let error: string | undefined;
    try {
      score = await objective(params);
      if (Number.isNaN(score)) throw new Error('objective returned NaN');
    } catch (e) {
      options.signal?.throwIfAborted();
      score = -Infinity;
      error = e instanceof Error ? e.message : String(e);
    }
    const trial: Trial = { index: t, params, score, seconds: (performance.now() - started) / 1000, source };
    if (error !== undefined) trial.error = error;
    trials.push(trial);
    if (best === null || score > best.score) {
      best = trial;
      sinceBest = 0;
    } else sinceBest++;
    options.onTrial?.(trial, best);
    if (options.patience !== undefined && sinceBest >= options.patience && t + 1 < options.trials) {
      stopReason = 'patience';
      break;
    }
  }
  return {
    best: best!,
    trials,
    stoppedEarly: stopReason !== undefined,
    ...(stopReason !== undefined ? { stopReason } : {}),
  };
}

function pick(params: Params, names: string[]): Params {
  const out: Params = {};
  for (const n of names) if (n in params) out[n] = params[n];
  return out;
}

function keyOf(params: Params, names: string[]): string {
  return JSON.stringify(names.map((n) => params[n]));
}

/**
 * Proposes unseen parameters when it can, so budget is not spent on repeats: a few sampler draws,
 * then, for a small finite space (choices only), a random unseen grid point; null when every point
 * of a finite space has been tried.
 */
function propose(
  space: Record<string, ParamSpace>,
  names: string[],
  trials: Trial[],
  rng: Rng,
  source: 'random' | 'tpe',
  options: TuneOptions,
  seen: Set<string>,
): Params | null {
  let params: Params = {};
  for (let attempt = 0; attempt < 20; attempt++) {
    params =
      source === 'tpe' && attempt < 10
        ? sampleTpe(space, names, trials, rng, options)
        : sampleRandom(space, names, rng);
    if (!seen.has(keyOf(params, names))) return params;
  }
  const grid = finiteGrid(space, names);
  if (grid === null) return params;
  const unseen = grid.filter((p) => !seen.has(keyOf(p, names)));
  return unseen.length === 0 ? null : unseen[rng.int(unseen.length)];
}

/** Every point of a space made only of choices (up to 10 000 points), else null. */
function finiteGrid(space: Record<string, ParamSpace>, names: string[]): Params[] | null {
  let grid: Params[] = [{}];
  for (const n of names) {
    const s = space[n];
    if (s.kind !== 'choice' || grid.length * s.values.length > 10_000) return null;
    grid = grid.flatMap((p) => s.values.map((v) => ({ ...p, [n]: v })));
  }
  return grid;
}

// ---- internal (unit) space: numbers map to [lo, hi] in linear or log scale; choices to indices ----

interface Dim {
  lo: number;
  hi: number;
  kind: 'int' | 'float' | 'choice';
  log: boolean;
}

function dimOf(s: ParamSpace): Dim {
  if (s.kind === 'choice') return { lo: 0, hi: s.values.length - 1, kind: 'choice', log: false };
  const log = s.log === true && s.min > 0;
  return { lo: log ? Math.log(s.min) : s.min, hi: log ? Math.log(s.max) : s.max, kind: s.kind, log };
}

/** Internal coordinate → parameter value (rounded and clamped to the space). */
function decode(s: ParamSpace, x: number): ParamValue {
  if (s.kind === 'choice') return s.values[Math.min(s.values.length - 1, Math.max(0, Math.round(x)))];
  const d = dimOf(s);
  let v = d.log ? Math.exp(x) : x;
  v = Math.min(s.max, Math.max(s.min, v));
  if (s.kind === 'int') return Math.min(s.max, Math.max(s.min, Math.round(v)));
  // Four significant digits: enough resolution, and readable in reports.
  return Number(v.toPrecision(4));
}

/** Parameter value → internal coordinate, or null when the value is not in the space. */
function encode(s: ParamSpace, v: ParamValue | undefined): number | null {
  if (v === undefined) return null;
  if (s.kind === 'choice') {
    const i = s.values.indexOf(v);
    return i < 0 ? null : i;
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) return null;
  const d = dimOf(s);
  if (d.log) return v > 0 ? Math.log(v) : null;
  return v;
}

function sampleRandom(space: Record<string, ParamSpace>, names: string[], rng: Rng): Params {
  const out: Params = {};
  for (const n of names) {
    const s = space[n];
    if (s.kind === 'choice') out[n] = s.values[rng.int(s.values.length)];
    else if (s.kind === 'int') {
      const d = dimOf(s);
      // Integers: sample the continuous range widened by half a step each side so ends are not halved.
      const lo = d.log ? Math.log(Math.max(s.min - 0.5, s.min / 1.5)) : s.min - 0.5;
      const hi = d.log ? Math.log(s.max + 0.5) : s.max + 0.5;
      out[n] = decode(s, lo + rng.float() * (hi - lo));
    } else {
      const d = dimOf(s);
      out[n] = decode(s, d.lo + rng.float() * (d.hi - d.lo));
    }
  }
  return out;
}

// ---- TPE ----

/** A 1-d Parzen estimator: Gaussian kernels truncated to [lo, hi] plus a wide prior kernel. */
interface Parzen {
  mus: number[];
  sigmas: number[];
  weights: number[];
  lo: number;
  hi: number;
}

function erf(x: number): number {
  // Abramowitz & Stegun 7.1.26, |error| < 1.5e-7: ample for normalising kernels.
  const sign = x < 0 ? -1 : 1;
  const a = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * a);
  const y =
    1 -
    ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) *
      t *
      Math.exp(-a * a);
  return sign * y;
}

function normalCdf(x: number, mu: number, sigma: number): number {
  return 0.5 * (1 + erf((x - mu) / (sigma * Math.SQRT2)));
}

/**
 * hyperopt's adaptive Parzen estimator: each observation gets a kernel whose width is the larger
 * distance to its neighbours (clipped to [range / min(100, n + 1), range]); a prior kernel centred on
 * the range with the range as width keeps unexplored regions reachable.
 */
function buildParzen(values: number[], lo: number, hi: number): Parzen {
  const range = Math.max(hi - lo, 1e-12);
  const prior = { mu: (lo + hi) / 2, sigma: range };
  const sorted = [...values, prior.mu].sort((a, b) => a - b);
  const mus: number[] = [];
  const sigmas: number[] = [];
  const minSigma = range / Math.min(100, sorted.length + 1);
  let priorTaken = false;
  for (let i = 0; i < sorted.length; i++) {
    const mu = sorted[i];
    if (!priorTaken && mu === prior.mu) {
      priorTaken = true;
      mus.push(prior.mu);
      sigmas.push(prior.sigma);
      continue;
    }
    const left = i > 0 ? mu - sorted[i - 1] : mu - lo;
    const right = i < sorted.length - 1 ? sorted[i + 1] - mu : hi - mu;
    mus.push(mu);
    sigmas.push(Math.min(range, Math.max(minSigma, left, right)));
  }
  const weights = mus.map(() => 1 / mus.length);
  return { mus, sigmas, weights, lo, hi };
}

function parzenSample(p: Parzen, rng: Rng): number {
  let r = rng.float();
  let j = 0;
  for (; j < p.weights.length - 1; j++) {
    r -= p.weights[j];
    if (r < 0) break;
  }
  for (let attempt = 0; attempt < 32; attempt++) {
    const x = p.mus[j] + p.sigmas[j] * rng.normal();
    if (x >= p.lo && x <= p.hi) return x;
  }
  return Math.min(p.hi, Math.max(p.lo, p.mus[j]));
}

function parzenLogPdf(p: Parzen, x: number): number {
  let density = 0;
  for (let j = 0; j < p.mus.length; j++) {
    const mu = p.mus[j];
    const s = p.sigmas[j];
    const mass = normalCdf(p.hi, mu, s) - normalCdf(p.lo, mu, s);
    const z = (x - mu) / s;
    density += (p.weights[j] * Math.exp(-0.5 * z * z)) / (s * Math.sqrt(2 * Math.PI) * Math.max(mass, 1e-12));
  }
  return Math.log(Math.max(density, 1e-300));
}

/** Categorical estimator: observed counts plus one pseudo-count per choice. */
function categorical(indices: number[], n: number): number[] {
  const w = new Array<number>(n).fill(1);
  for (const i of indices) w[i]++;
  const total = w.reduce((a, b) => a + b, 0);
  return w.map((x) => x / total);
}

function sampleTpe(
  space: Record<string, ParamSpace>,
  names: string[],
  trials: Trial[],
  rng: Rng,
  options: TuneOptions,
): Params {
  const done = trials.filter((t) => Number.isFinite(t.score));
  if (done.length < 2) return sampleRandom(space, names, rng);
  const ranked = [...done].sort((a, b) => b.score - a.score || a.index - b.index);
  const gamma = options.gamma ?? 0.25;
  const nGood = Math.min(25, Math.max(1, Math.ceil(gamma * ranked.length)));
  const good = ranked.slice(0, nGood);
  const bad = ranked.slice(nGood);
  const nCandidates = options.candidates ?? 24;
  const out: Params = {};
  for (const n of names) {
    const s = space[n];
    const d = dimOf(s);
    const obs = (ts: Trial[]): number[] =>
      ts.map((t) => encode(s, t.params[n])).filter((x): x is number => x !== null);
    if (s.kind === 'choice') {
      const l = categorical(obs(good), s.values.length);
      const g = categorical(obs(bad), s.values.length);
      let bestI = 0;
      let bestRatio = -Infinity;
      for (let c = 0; c < nCandidates; c++) {
        let r = rng.float();
        let i = 0;
        for (; i < l.length - 1; i++) {
          r -= l[i];
          if (r < 0) break;
        }
        const ratio = Math.log(l[i]) - Math.log(g[i]);
        if (ratio > bestRatio) {
          bestRatio = ratio;
          bestI = i;
        }
      }
      out[n] = s.values[bestI];
      continue;
    }
    // Integers are modelled on the half-step-widened range, like random sampling.
    const lo = s.kind === 'int' && !d.log ? d.lo - 0.5 : d.lo;
    const hi = s.kind === 'int' && !d.log ? d.hi + 0.5 : d.hi;
    const l = buildParzen(obs(good), lo, hi);
    const g = buildParzen(obs(bad), lo, hi);
    let bestX = l.mus[0];
    let bestRatio = -Infinity;
    for (let c = 0; c < nCandidates; c++) {
      const x = parzenSample(l, rng);
      const ratio = parzenLogPdf(l, x) - parzenLogPdf(g, x);
      if (ratio > bestRatio) {
        bestRatio = ratio;
        bestX = x;
      }
    }
    out[n] = decode(s, bestX);
  }
  return out;
}

/** Exposed for tests: the internal helpers with a stable contract. */
export const internals = { sampleRandom, decode, encode, buildParzen, parzenLogPdf, erf };
