/**
 * What a user's history gives the serving path — the events read, their profile, and per model version
 * the history in the model's indices and the folded-in user vector — kept in this process for a while,
 * keyed by the user's cache version (`OnlineState.cacheVersion`: it changes whenever an event of theirs
 * is applied or they are erased). An answer computed again because its time to live ran out (the user
 * did nothing since) then reads no history and folds nothing in: it costs the same after 10 events or
 * 10,000. A new event changes the version, so the next answer is computed from the history again.
 *
 * Bounded twice: by the events held (the budget counts each entry's history length), least recently used
 * first out, and by age — an entry is forgotten one answer lifetime (TTL + stale window) after it was
 * last stored, so an erased user's events leave this process at the latest then even if they never
 * come back (their new cache version already makes the entry unusable at once).
 */
import type { StoredEvent } from '../domain/types.ts';
import type { UserProfile } from '../features/interactions.ts';

/** Per model version: what scoring the user needs, filled on first use. */
export interface ModelMemo {
  /** The profile's positive items the model knows, by index (sorted), with their weights; null: none. */
  hist?: { items: Int32Array; weights: Float32Array } | null;
  /** The user's folded-in vector (factor models), as `FittedModel.userVector` gave it. */
  vector?: Float64Array;
}

export interface UserState {
  readonly version: string;
  readonly history: readonly StoredEvent[];
  readonly profile: UserProfile;
  /** Model version → memo (at most MODELS_PER_USER: the champion and an experiment arm, say). */
  readonly models: Map<string, ModelMemo>;
}

/** Model versions remembered per user; a further one replaces the oldest. */
const MODELS_PER_USER = 2;

export interface UserStatesOptions {
  /** Events the entries may hold in all (0: nothing is kept). */
  maxEvents: number;
  /** An entry's lifetime after it was last stored (ms). */
  maxAgeMs: number;
  now?: () => number;
}

export class UserStates {
  /** Least recently used first (a use moves the entry to the end). */
  private readonly entries = new Map<string, { state: UserState; storedAt: number }>();
  private events = 0;
  private readonly now: () => number;

  constructor(private readonly options: UserStatesOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Users held. */
  get size(): number {
    return this.entries.size;
  }

  /** The user's state if it was stored under this cache version and is not too old. */
  get(userId: string, version: string): UserState | null {
    const entry = this.entries.get(userId);
    if (!entry) return null;
    if (entry.state.version !== version || this.expired(entry.storedAt)) {
      this.remove(userId);
      return null;
    }
    this.entries.delete(userId);
    this.entries.set(userId, entry);
    return entry.state;
  }

  /** Stores (or renews) the user's state; returns what is held (null when it does not fit at all). */
  set(userId: string, state: UserState): UserState | null {
    this.remove(userId);
    const cost = state.history.length + 1;
    if (cost > this.options.maxEvents) return null;
    this.entries.set(userId, { state, storedAt: this.now() });
    this.events += cost;
    // Oldest first: the expired ones, then as many as the budget needs.
    for (const [id, entry] of this.entries) {
      if (this.events <= this.options.maxEvents && !this.expired(entry.storedAt)) break;
      this.remove(id);
    }
    return state;
  }

  /** The memo of `modelVersion` in `state`, created empty on first use. */
  static memo(state: UserState, modelVersion: string): ModelMemo {
    let memo = state.models.get(modelVersion);
    if (memo) return memo;
    if (state.models.size >= MODELS_PER_USER) state.models.delete(state.models.keys().next().value!);
    state.models.set(modelVersion, (memo = {}));
    return memo;
  }

  /** Forgets the entries past their lifetime (also done on every store, oldest first). */
  sweep(): void {
    for (const [id, entry] of this.entries) if (this.expired(entry.storedAt)) this.remove(id);
  }

  clear(): void {
    this.entries.clear();
    this.events = 0;
  }

  private expired(storedAt: number): boolean {
    return this.now() - storedAt > this.options.maxAgeMs;
  }

  private remove(userId: string): void {
    const entry = this.entries.get(userId);
    if (!entry) return;
    this.entries.delete(userId);
    this.events -= entry.state.history.length + 1;
  }
}
