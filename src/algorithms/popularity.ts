/**
 * Popularity: the non-personalised baseline and the last step of the serving fallback chain.
 *
 * The base score of an item is its number of distinct users (`by: 'users'`, robust to repeated
 * events) or the sum of its interaction weights (`by: 'weight'`). With `halfLifeDays > 0` and event
 * times available, every event is discounted by `0.5^(age / halfLife)` relative to `now`:
 *   score_i = base_i · mean over the item's events of 0.5^(age_e / halfLife)
 * which is exactly Σ_e 0.5^(age_e / halfLife) when each event is one interaction of weight 1, and
 * keeps the meaning of `by` when users repeat events or weights differ (event times carry neither
 * the user nor the weight). Without event times, the item's last-seen time discounts the whole base
 * score; without either, no decay applies. Decay relative to a later `now` multiplies every score by
 * the same factor, so a fitted ranking stays valid as time passes.
 */
import { CairnError } from '../errors/errors.ts';
import { readChoice, readNumber } from './params.ts';
import type { Csr } from './sparse.ts';
import type { AlgorithmSpec, FitOptions, FittedModel, ModelArtifact, Params, UserHistory } from './types.ts';

export const POP_FORMAT_VERSION = 1;

const DAY_MS = 86_400_000;

export interface PopParams {
  by: 'users' | 'weight';
  /** Half-life of the time decay in days; 0 disables decay. */
  halfLifeDays: number;
}

const DEFAULTS: PopParams = { by: 'users', halfLifeDays: 0 };

/** Reads and validates popularity parameters (missing ones take defaults). */
export function popParams(params: Params): PopParams {
  return {
    by: readChoice(params, 'pop', 'by', DEFAULTS.by, ['users', 'weight'] as const),
    halfLifeDays: readNumber(params, 'pop', 'halfLifeDays', DEFAULTS.halfLifeDays, { min: 0, max: 1e6 }),
  };
}

/** The time inputs of {@link popularityScores}: a subset of FitOptions. */
export type PopTimes = Pick<FitOptions, 'itemEventTimes' | 'itemLastSeen' | 'now'>;

/**
 * Popularity score of every item (length `train.cols`), pure. Serving can call it directly on
 * fresh counts; fitting the `pop` model stores its result.
 */
export function popularityScores(train: Csr, params: PopParams, times: PopTimes = {}): Float32Array {
  const nItems = train.cols;
  const base = new Float64Array(nItems);
  const nz = train.indptr[train.rows];
  for (let p = train.indptr[0]; p < nz; p++) {
    const w = train.data[p];
    if (!(w > 0)) continue;
    base[train.indices[p]] += params.by === 'users' ? 1 : w;
  }
  const out = new Float32Array(nItems);
  const halfLife = params.halfLifeDays * DAY_MS;
  const events = times.itemEventTimes;
  const lastSeen = times.itemLastSeen;
  if (halfLife > 0 && events !== undefined && events.items.length > 0) {
    const { items, times: t } = events;
    if (items.length !== t.length) throw new RangeError('pop: itemEventTimes arrays differ in length');
    const now = times.now ?? maxOf(t);
    const decaySum = new Float64Array(nItems);
    const count = new Float64Array(nItems);
    for (let e = 0; e < items.length; e++) {
      const i = items[e];
      if (!(i >= 0 && i < nItems)) continue;
      decaySum[i] += decay(now - t[e], halfLife);
      count[i] += 1;
    }
    // An item without event times (inconsistent input) keeps its undiscounted base score.
    for (let i = 0; i < nItems; i++) out[i] = count[i] > 0 ? (base[i] * decaySum[i]) / count[i] : base[i];
  } else if (halfLife > 0 && lastSeen !== undefined && lastSeen.length >= nItems) {
    const now = times.now ?? maxOf(lastSeen);
    for (let i = 0; i < nItems; i++) out[i] = base[i] * decay(now - lastSeen[i], halfLife);
  } else {
    out.set(base);
  }
  return out;
}

/** 0.5^(age / halfLife); events stamped after `now` (clock skew) count as new, not more than new. */
function decay(ageMs: number, halfLifeMs: number): number {
  return Math.pow(0.5, Math.max(0, ageMs) / halfLifeMs);
}

function maxOf(a: Float64Array): number {
  let m = -Infinity;
  for (let q = 0; q < a.length; q++) if (a[q] > m) m = a[q];
  return m;
}

/** A fitted popularity model: one score per item, the same for every user. */
export class PopModel implements FittedModel {
  readonly algorithm = 'pop' as const;
  readonly params: Params;
  readonly nUsers: number;
  readonly nItems: number;
  readonly scores: Float32Array;

  constructor(p: PopParams, nUsers: number, scores: Float32Array) {
    this.params = { ...p };
    this.nUsers = nUsers;
    this.nItems = scores.length;
    this.scores = scores;
  }

  scoreUser(_user: number, _history: UserHistory, out: Float32Array): void {
    out.set(
      out.length === this.nItems ? this.scores : this.scores.subarray(0, Math.min(out.length, this.nItems)),
    );
  }

  scoreItems(_user: number, _history: UserHistory, items: Int32Array, out: Float32Array): void {
    for (let j = 0; j < items.length; j++) {
      const i = items[j];
      out[j] = i >= 0 && i < this.nItems ? this.scores[i] : -Infinity;
    }
  }

  similarItems(_item: number, _out: Float32Array): boolean {
    return false;
  }

  toArtifact(): ModelArtifact {
    return {
      algorithm: 'pop',
      formatVersion: POP_FORMAT_VERSION,
      params: { ...this.params },
      meta: { users: this.nUsers, items: this.nItems },
      arrays: { scores: this.scores },
    };
  }
}

function fitPop(train: Csr, params: Params, opts: FitOptions): Promise<FittedModel> {
  // An exception thrown in the executor rejects the promise (bad params, abort).
  return new Promise((resolve) => {
    opts.signal?.throwIfAborted();
    const p = popParams(params);
    const scores = popularityScores(train, p, opts);
    opts.onProgress?.(1, `pop: ${train.cols} items`);
    resolve(new PopModel(p, train.rows, scores));
  });
}

function loadPop(artifact: ModelArtifact): FittedModel {
  if (artifact.algorithm !== 'pop')
    throw new CairnError('CAIRN_VALIDATION', `not a pop artifact: ${artifact.algorithm}`);
  if (artifact.formatVersion !== POP_FORMAT_VERSION) {
    throw new CairnError(
      'CAIRN_UNSUPPORTED',
      `pop artifact format ${artifact.formatVersion} is not supported`,
    );
  }
  const scores = artifact.arrays.scores;
  if (!(scores instanceof Float32Array) || Number(artifact.meta.items) !== scores.length) {
    throw new CairnError('CAIRN_VALIDATION', 'pop artifact is malformed');
  }
  return new PopModel(popParams(artifact.params), Number(artifact.meta.users), scores);
}

export const popSpec: AlgorithmSpec = {
  name: 'pop',
  defaults: { ...DEFAULTS },
  space: {
    by: { kind: 'choice', values: ['users', 'weight'] },
    halfLifeDays: { kind: 'choice', values: [0, 7, 30, 90, 365] },
  },
  fit: fitPop,
  load: loadPop,
};
