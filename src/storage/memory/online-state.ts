/**
 * Online state in process memory: the embedded (all-in-one) deployment's serving state. Popularity lives in
 * typed arrays (features/popularity.ts), everything else in Maps. All work of a call is synchronous, so a
 * batch is applied atomically with its watermark and `snapshot()` always sees a consistent state.
 *
 * `snapshot()` / `MemoryOnlineState.restore()` let the process restart from the last snapshot plus its
 * watermarks (replaying only the log tail) instead of rescanning the whole event log. A service takes it
 * with `snapshotInSlices()`: the same bytes, written a few milliseconds at a time with the event loop free
 * in between (100k events took 133–150 ms in one piece). The state goes on changing meanwhile: the
 * snapshot captures its maps' entries when it starts, and a user's history or holdings that it still
 * holds are copied before an event changes them (item feature states are copied on write anyway).
 *
 * Item feature states (features/item-state.ts) are folded per applied event with `foldItemEvent`, the
 * acting user's segments taken from the user records applied so far (`userMeta`); an erase takes the
 * user's counted events back out with `unfoldItemEvent`, under the segments the user has at that point.
 */
import { crc32 } from 'node:zlib';
import type { EventTypeSpec, Item, StoredEvent } from '../../domain/types.ts';
import { CairnError } from '../../errors/errors.ts';
import {
  FEATURE_DEFAULTS,
  featureConfigIssues,
  type FeatureConfig,
  type FeatureEvent,
  type ItemFeatureState,
  type UserMeta,
} from '../../features/definitions.ts';
import { runSteps, runStepsSliced, TimeSlicer, type Steps } from '../../domain/cooperative.ts';
import { featureConfigOf, foldItemEvent, unfoldItemEvent } from '../../features/item-state.ts';
import {
  compareIds,
  ContributionRules,
  halfLifeMs,
  PopularityTracker,
  weightLimitIssues,
  type Contribution,
  type Holding,
} from '../../features/popularity.ts';
import type {
  EntityChange,
  LogRecord,
  OnlineState,
  OnlineStateOptions,
  OnlineWatermarks,
  PopularEntry,
} from '../ports.ts';

interface CacheEntry {
  value: string;
  /** Epoch ms after which the entry is gone. */
  expiresAt: number;
}

/** What an erase record carries of each erased event. */
type ErasedEvent = Extract<EntityChange, { kind: 'erase' }>['events'][number];

/** Oldest first: timestamp, then seq (log order). */
const byTime = (a: StoredEvent, b: StoredEvent): number => a.timestamp - b.timestamp || a.seq - b.seq;

/** Checks the options both adapters share; a bad value is a deployment error, reported by key. */
function checkOptions(options: OnlineStateOptions): void {
  const fields: { field: string; message: string }[] = [];
  if (!(options.popularityHalfLifeDays > 0) || !Number.isFinite(options.popularityHalfLifeDays)) {
    fields.push({ field: 'serving.popularityHalfLifeDays', message: 'must be a positive number' });
  }
  if (!Number.isInteger(options.historyLimit) || options.historyLimit < 1) {
    fields.push({ field: 'serving.historyLimit', message: 'must be an integer ≥ 1' });
  }
  fields.push(...weightLimitIssues(options));
  fields.push(...featureConfigIssues(options.features ?? FEATURE_DEFAULTS));
  if (fields.length > 0) throw new CairnError('CAIRN_CONFIG_INVALID', fields[0].message, { fields });
}

/**
 * Everything popularity depends on, in a canonical form: a snapshot taken under other settings holds sums
 * that these settings would not have produced, so it must not be restored.
 */
function popularitySettings(options: OnlineStateOptions): string {
  const types = Object.keys(options.types)
    .sort()
    .map((name) => {
      const t: EventTypeSpec = options.types[name];
      return [name, t.weight, t.useValue === true, t.negative === true, t.minValue ?? null];
    });
  // JSON writes an absent or infinite limit as null: both mean no limit.
  const limits = [options.maxEventWeight ?? null, options.maxUserItemWeight ?? null];
  const f = options.features ?? FEATURE_DEFAULTS;
  const features = [[...f.halfLivesDays], f.maxSegmentsPerItem];
  return JSON.stringify({ halfLifeMs: halfLifeMs(options.popularityHalfLifeDays), types, limits, features });
}

/** What a snapshot writes, captured when it starts (keys and values side by side). */
interface Captured {
  wm: OnlineWatermarks;
  pop: ReturnType<PopularityTracker['exportState']>;
  optOuts: string[];
  catalog: Item[];
  histories: [string[], StoredEvent[][]];
  holdings: [string[], Map<string, Holding>[]];
  states: [string[], ItemFeatureState[]];
  metas: [string[], UserMeta[]];
}

/** In-memory `OnlineState` (see the file comment); `kind` is `memory`. */
export class MemoryOnlineState implements OnlineState {
  readonly kind = 'memory';
  private readonly options: OnlineStateOptions;
  private pop: PopularityTracker;
  private readonly rules: ContributionRules;
  /** Per user, oldest first; trimmed back to `historyLimit` once it holds twice as many (amortized O(1)). */
  private histories = new Map<string, StoredEvent[]>();
  /** Per user and item, what the user holds of the item's popularity (kept only under a per-user cap). */
  private holdings = new Map<string, Map<string, Holding>>();
  private optOuts = new Set<string>();
  /** Item feature states, folded per applied event (features/item-state.ts). */
  private itemStates = new Map<string, ItemFeatureState>();
  /** States returned by `itemFeatures` (readers keep them): never modified again, copied to fold into. */
  private readonly handedOut = new WeakSet<ItemFeatureState>();
  /** Segments and attributes of users, from `user` records (dropped on erase). */
  private userMetas = new Map<string, UserMeta>();
  private readonly featureConfig: FeatureConfig;
  /** Reused for every fold: the fold reads the event, it never keeps it. */
  private readonly scratch: FeatureEvent = { itemId: '', type: '', value: null, timestamp: 0 };
  private catalog = new Map<string, Item>();
  /** Catalog ids in code-point order; null after an id was added (sorted again on the next listing). */
  private catalogOrder: string[] | null = [];
  private cache = new Map<string, Map<string, CacheEntry>>();
  private cacheEntries = 0;
  /** Per user, the clock value of their last cache drop (cacheVersion); absent: none since the start. */
  private cacheVersions = new Map<string, number>();
  private cacheClock = 0;
  /**
   * Bumped by every erase, whose user's version is forgotten (no id kept after an erase): a version read
   * before the erase cannot equal one read after it.
   */
  private cacheEpoch = 0;
  private setsSinceSweep = 0;
  private wm: OnlineWatermarks = { events: 0, changes: 0 };
  private closed = false;
  /** Set while `snapshotInSlices` runs (one snapshot at a time). */
  private snapshotting: Promise<unknown> | null = null;
  /** While a sliced snapshot runs: the history arrays and holdings maps it holds, copied before a change. */
  private frozen: WeakSet<object> | null = null;
  /** The size of the last snapshot: the next one's writer starts about this large (see SnapshotWriter). */
  private lastSnapshotBytes = 0;

  constructor(options: OnlineStateOptions) {
    checkOptions(options);
    this.options = { ...options, types: { ...options.types } };
    this.rules = new ContributionRules(this.options.types, options.popularityHalfLifeDays, options);
    this.pop = new PopularityTracker(this.options.popularityHalfLifeDays);
    this.featureConfig = featureConfigOf(this.options);
  }

  applyEvents(events: StoredEvent[]): Promise<void> {
    return this.run(() => {
      let top = this.wm.events;
      const added: Contribution[] = [];
      for (const e of events) {
        if (!(e.seq > top)) continue;
        top = e.seq;
        this.remember(e);
        const weight = this.rules.add(this.holdingsOf(e.userId), e);
        if (weight > 0) added.push({ itemId: e.itemId, timestamp: e.timestamp, weight });
        this.foldFeatures(e);
        this.dropCache(e.userId);
      }
      this.pop.add(added);
      this.wm.events = top;
    });
  }

  applyChanges(records: LogRecord<EntityChange>[]): Promise<void> {
    return this.run(() => {
      let top = this.wm.changes;
      for (const { seq, value: change } of records) {
        if (!(seq > top)) continue;
        top = seq;
        switch (change.kind) {
          case 'items':
            for (const item of change.items) {
              if (!this.catalog.has(item.id)) this.catalogOrder = null;
              // A private copy: callers may reuse the objects they handed in.
              this.catalog.set(item.id, structuredClone(item));
            }
            break;
          case 'user':
            if (change.user.optOut) this.optOuts.add(change.user.id);
            else this.optOuts.delete(change.user.id);
            this.userMetas.set(change.user.id, {
              segments: [...change.user.segments],
              attributes: structuredClone(change.user.attributes),
            });
            // The user's cached answers were computed from the record this one replaces.
            this.dropCache(change.user.id);
            break;
          case 'erase':
            // Before the metadata goes: the segments the user's events were counted under.
            this.unfoldFeatures(change.events, this.userMetas.get(change.userId)?.segments);
            this.histories.delete(change.userId);
            this.holdings.delete(change.userId);
            this.optOuts.delete(change.userId);
            this.userMetas.delete(change.userId);
            this.dropCache(change.userId);
            this.cacheVersions.delete(change.userId);
            this.cacheEpoch++;
            // Only what this state has counted can be taken away: an event past the event watermark was
            // never added here (the two logs are consumed independently). What each counted event added
            // (clamped and capped) is recomputed from the user's events.
            this.pop.subtract(this.rules.replay(change.events.filter((e) => e.seq <= this.wm.events)));
            break;
          case 'champion':
          case 'experiment':
            // Serving loads champions and experiments itself; here only the watermark moves.
            break;
        }
      }
      this.wm.changes = top;
    });
  }

  watermarks(): Promise<OnlineWatermarks> {
    return this.run(() => ({ ...this.wm }));
  }

  recentEvents(userId: string, limit: number): Promise<StoredEvent[]> {
    return this.run(() => {
      const history = this.histories.get(userId);
      const n = Math.min(Math.floor(limit), this.options.historyLimit, history?.length ?? 0);
      const out: StoredEvent[] = [];
      for (let i = 0; i < n; i++) out.push(history![history!.length - 1 - i]);
      return out;
    });
  }

  optedOut(userId: string): Promise<boolean> {
    return this.run(() => this.optOuts.has(userId));
  }

  popular(offset: number, count: number, now: number): Promise<PopularEntry[]> {
    return this.run(() => this.pop.page(Math.floor(offset), Math.floor(count), now));
  }

  popularity(itemIds: string[], now: number): Promise<number[]> {
    return this.run(() => this.pop.scores(itemIds, now));
  }

  popularCount(): Promise<number> {
    return this.run(() => this.pop.size);
  }

  items(after: string | undefined, limit: number): Promise<Item[]> {
    return this.run(() => {
      const order = (this.catalogOrder ??= [...this.catalog.keys()].sort(compareIds));
      let lo = 0;
      if (after !== undefined) {
        // First id strictly after `after`.
        let hi = order.length;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          if (compareIds(order[mid], after) <= 0) lo = mid + 1;
          else hi = mid;
        }
      }
      const end = Math.min(order.length, lo + Math.max(0, Math.floor(limit)));
      const out: Item[] = [];
      for (let i = lo; i < end; i++) out.push(this.catalog.get(order[i])!);
      return out;
    });
  }

  itemFeatures(itemIds: string[]): Promise<(ItemFeatureState | null)[]> {
    // Copy on write: serving reads the states of ~200 candidates per request, a batch of events touches
    // a few; copying on every read cost more than the rest of a ranked answer.
    return this.run(() =>
      itemIds.map((id) => {
        const state = this.itemStates.get(id);
        if (state === undefined) return null;
        // Handed out as is (a reader must not modify it); the next fold into it copies it first.
        this.handedOut.add(state);
        return state;
      }),
    );
  }

  userMeta(userId: string): Promise<UserMeta | null> {
    return this.run(() => {
      const meta = this.userMetas.get(userId);
      return meta === undefined ? null : structuredClone(meta);
    });
  }

  cacheGet(userId: string, key: string): Promise<string | null> {
    return this.run(() => {
      const entries = this.cache.get(userId);
      const entry = entries?.get(key);
      if (!entry) return null;
      if (entry.expiresAt <= Date.now()) {
        this.deleteCacheEntry(userId, entries!, key);
        return null;
      }
      return entry.value;
    });
  }

  cacheVersion(userId: string): Promise<string> {
    return this.run(() => this.versionOf(userId));
  }

  cacheSet(userId: string, key: string, value: string, ttlMs: number, version?: string): Promise<void> {
    return this.run(() => {
      if (version !== undefined && version !== this.versionOf(userId)) return;
      let entries = this.cache.get(userId);
      if (!(ttlMs > 0)) {
        // Expires at once: nothing to keep, and an older answer under the key must not survive it.
        if (entries?.has(key)) this.deleteCacheEntry(userId, entries, key);
        return;
      }
      if (!entries) this.cache.set(userId, (entries = new Map<string, CacheEntry>()));
      if (!entries.has(key)) this.cacheEntries++;
      entries.set(key, { value, expiresAt: Date.now() + ttlMs });
      // Entries nobody reads again would stay forever: sweep expired ones once the sets since the last sweep
      // reach half the cache size, which keeps the sweeping cost O(1) per set, amortized.
      if (++this.setsSinceSweep >= Math.max(1024, this.cacheEntries >>> 1)) this.sweepCache();
    });
  }

  clear(): Promise<void> {
    return this.run(() => this.reset());
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.reset(); // releases the memory even if the caller keeps a reference
    }
    return Promise.resolve();
  }

  /**
   * The whole state except the answer cache (cheap to recompute, and stale after a restart anyway), with
   * its watermarks, in a versioned binary format with a CRC-32 trailer. Synchronous, so it is consistent.
   */
  snapshot(): Buffer {
    this.assertOpen();
    return runSteps(this.snapshotSteps(this.capture()));
  }

  /**
   * `snapshot()`'s bytes, written in slices of about `sliceMs` of work with at least `restMs` between
   * them, so requests are answered while it runs: it takes at most sliceMs / (sliceMs + restMs) of the
   * loop. (With a slice on every loop turn instead, a snapshot under 1,000 requests/s took most of the loop
   * and requests queued behind it for up to 1.7 s; with 3 ms slices, every request arriving during one
   * waited for it: one in three for ~0.5 s a minute.) It holds the state as it was when it started: events,
   * changes and `clear()` are applied meanwhile without changing what it writes (copy on write).
   */
  async snapshotInSlices(sliceMs = 1, restMs = 3): Promise<Buffer> {
    while (this.snapshotting) await this.snapshotting;
    this.assertOpen();
    const captured = this.capture();
    this.frozen = new WeakSet<object>([...captured.histories[1], ...captured.holdings[1]]);
    const work = runStepsSliced(this.snapshotSteps(captured), new TimeSlicer(sliceMs, undefined, restMs));
    this.snapshotting = work.catch(() => undefined);
    try {
      return await work;
    } finally {
      this.snapshotting = null;
      this.frozen = null;
    }
  }

  /**
   * What a snapshot writes, as of now: the maps' keys and values (a pointer copy), the popularity and
   * opt-outs copied. Item feature states are marked handed out, so a fold copies them first.
   */
  private capture(): Captured {
    const states: [string[], ItemFeatureState[]] = [
      [...this.itemStates.keys()],
      [...this.itemStates.values()],
    ];
    for (const state of states[1]) this.handedOut.add(state);
    return {
      wm: { ...this.wm },
      pop: this.pop.exportState(),
      optOuts: [...this.optOuts],
      catalog: [...this.catalog.values()],
      histories: [[...this.histories.keys()], [...this.histories.values()]],
      holdings: [[...this.holdings.keys()], [...this.holdings.values()]],
      states,
      metas: [[...this.userMetas.keys()], [...this.userMetas.values()]],
    };
  }

  /** The snapshot of `c`, with a step after each user or item (where a slice may end). */
  private *snapshotSteps(c: Captured): Steps<Buffer> {
    const w = new SnapshotWriter(this.lastSnapshotBytes);
    w.str(popularitySettings(this.options));
    w.u32(this.options.historyLimit);
    w.f64(c.wm.events);
    w.f64(c.wm.changes);

    const pop = c.pop;
    w.f64(pop.reference ?? Number.NaN);
    w.u32(pop.ids.length);
    for (let i = 0; i < pop.ids.length; i++) {
      w.str(pop.ids[i]);
      w.f64(pop.sums[i]);
    }

    w.u32(c.optOuts.length);
    for (const id of c.optOuts) w.str(id);

    w.u32(c.catalog.length);
    for (const item of c.catalog) {
      w.str(JSON.stringify(item));
      yield* this.pause(w);
    }

    const [historyUsers, histories] = c.histories;
    w.u32(historyUsers.length);
    for (let u = 0; u < historyUsers.length; u++) {
      const userId = historyUsers[u];
      const history = histories[u];
      const from = Math.max(0, history.length - this.options.historyLimit);
      w.str(userId);
      w.u32(history.length - from);
      for (let i = from; i < history.length; i++) {
        const e = history[i];
        w.f64(e.seq);
        w.f64(e.timestamp);
        w.str(e.eventId);
        w.str(e.itemId);
        w.str(e.type);
        w.u8((e.value === null ? 0 : 1) | (e.context === null ? 0 : 2));
        if (e.value !== null) w.f64(e.value);
        if (e.context !== null) w.str(JSON.stringify(e.context));
      }
      yield* this.pause(w);
    }

    const [holdingUsers, holdings] = c.holdings;
    w.u32(holdingUsers.length);
    for (let u = 0; u < holdingUsers.length; u++) {
      const held = holdings[u];
      w.str(holdingUsers[u]);
      w.u32(held.size);
      for (const [itemId, h] of held) {
        w.str(itemId);
        w.f64(h.weight);
        w.f64(h.at);
      }
      yield* this.pause(w);
    }

    // JSON prints doubles in their shortest exact form: states round-trip bit for bit.
    const [itemIds, states] = c.states;
    w.u32(itemIds.length);
    for (let i = 0; i < itemIds.length; i++) {
      w.str(itemIds[i]);
      w.str(JSON.stringify(states[i]));
      yield* this.pause(w);
    }
    const [metaUsers, metas] = c.metas;
    w.u32(metaUsers.length);
    for (let u = 0; u < metaUsers.length; u++) {
      w.str(metaUsers[u]);
      w.str(JSON.stringify(metas[u]));
      yield* this.pause(w);
    }
    const bytes = w.finish();
    this.lastSnapshotBytes = bytes.length;
    return bytes;
  }

  /**
   * Where a sliced snapshot may give the loop a turn: the checksum is folded in as it goes (over 5 MB at
   * once it held the loop for several milliseconds), and a state closed meanwhile fails the snapshot
   * rather than truncate it (its maps were released).
   */
  private *pause(w: SnapshotWriter): Steps<void> {
    w.foldChecksum();
    yield;
    this.assertOpen();
  }

  /**
   * Rebuilds a state from `snapshot()` output; resume consuming both logs after its `watermarks()`.
   * Throws CAIRN_UNSUPPORTED (details.reason `format`, `checksum`, `version` or `settings`) when the bytes
   * are not a snapshot, are damaged, come from an unknown format version, or were taken under different
   * popularity settings or a smaller history limit: the caller then rebuilds from the logs instead.
   */
  static restore(snapshot: Uint8Array, options: OnlineStateOptions): MemoryOnlineState {
    const state = new MemoryOnlineState(options);
    try {
      state.load(new SnapshotReader(snapshot));
    } catch (e) {
      if (e instanceof CairnError) throw e;
      // Only a body that passed the checksum gets here, so this is a writer bug, not damage in transit.
      throw unsupported('format', `snapshot body is malformed (${(e as Error).message})`);
    }
    state.lastSnapshotBytes = snapshot.length;
    return state;
  }

  private load(r: SnapshotReader): void {
    if (r.str() !== popularitySettings(this.options)) {
      throw unsupported('settings', 'snapshot was taken under other event weights or half-life');
    }
    const historyLimit = r.u32();
    if (historyLimit < this.options.historyLimit) {
      throw unsupported('settings', 'snapshot kept fewer events per user than historyLimit asks for');
    }
    this.wm = { events: r.f64(), changes: r.f64() };

    const reference = r.f64();
    const n = r.u32();
    const ids = new Array<string>(n);
    const sums = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      ids[i] = r.str();
      sums[i] = r.f64();
    }
    this.pop = PopularityTracker.fromState(this.options.popularityHalfLifeDays, {
      reference: Number.isNaN(reference) ? null : reference,
      ids,
      sums,
    });

    for (let i = r.u32(); i > 0; i--) this.optOuts.add(r.str());

    for (let i = r.u32(); i > 0; i--) {
      const item = JSON.parse(r.str()) as Item;
      this.catalog.set(item.id, item);
    }
    this.catalogOrder = null;

    for (let u = r.u32(); u > 0; u--) {
      const userId = r.str();
      const count = r.u32();
      const history: StoredEvent[] = [];
      for (let i = 0; i < count; i++) {
        const seq = r.f64();
        const timestamp = r.f64();
        const eventId = r.str();
        const itemId = r.str();
        const type = r.str();
        const flags = r.u8();
        const value = flags & 1 ? r.f64() : null;
        const context = flags & 2 ? (JSON.parse(r.str()) as StoredEvent['context']) : null;
        history.push({ seq, eventId, userId, itemId, type, value, timestamp, context });
      }
      this.histories.set(userId, history.slice(Math.max(0, count - this.options.historyLimit)));
    }

    for (let u = r.u32(); u > 0; u--) {
      const userId = r.str();
      const held = new Map<string, Holding>();
      for (let i = r.u32(); i > 0; i--) held.set(r.str(), { weight: r.f64(), at: r.f64() });
      this.holdings.set(userId, held);
    }

    for (let i = r.u32(); i > 0; i--) {
      const itemId = r.str();
      this.itemStates.set(itemId, JSON.parse(r.str()) as ItemFeatureState);
    }
    for (let i = r.u32(); i > 0; i--) {
      const userId = r.str();
      this.userMetas.set(userId, JSON.parse(r.str()) as UserMeta);
    }
    r.end();
  }

  private remember(e: StoredEvent): void {
    let history = this.histories.get(e.userId);
    if (!history) this.histories.set(e.userId, (history = []));
    else if (this.frozen?.has(history)) this.histories.set(e.userId, (history = history.slice()));
    // Events arrive mostly in time order: walk back from the end to the insertion point.
    let i = history.length;
    while (i > 0 && byTime(history[i - 1], e) > 0) i--;
    if (i === history.length) history.push(e);
    else history.splice(i, 0, e);
    const limit = this.options.historyLimit;
    if (history.length >= 2 * limit) history.splice(0, history.length - limit);
  }

  /** The item's state to fold into in place: a copy of it when readers were handed the stored one. */
  private writable(itemId: string): ItemFeatureState | null {
    const state = this.itemStates.get(itemId);
    if (state === undefined || !this.handedOut.has(state)) return state ?? null;
    const copy = cloneState(state)!;
    this.itemStates.set(itemId, copy);
    return copy;
  }

  /** Folds an applied event into its item's feature state, with the acting user's current segments. */
  private foldFeatures(e: StoredEvent): void {
    const x = this.scratch;
    x.itemId = e.itemId;
    x.type = e.type;
    x.value = e.value;
    x.timestamp = e.timestamp;
    x.seq = e.seq;
    x.segments = this.userMetas.get(e.userId)?.segments;
    const before = this.writable(e.itemId);
    const after = foldItemEvent(before, x, this.featureConfig);
    if (before === null) this.itemStates.set(e.itemId, after);
  }

  /**
   * Takes an erased user's counted events (seq ≤ the event watermark, as for popularity) back out of their
   * items' states with the user's current segments; an item left with no counted event loses its state.
   */
  private unfoldFeatures(events: readonly ErasedEvent[], segments: readonly string[] | undefined): void {
    const x = this.scratch;
    x.segments = segments;
    for (const e of events) {
      if (e.seq > this.wm.events) continue;
      const state = this.writable(e.itemId);
      if (state === null) continue;
      x.itemId = e.itemId;
      x.type = e.type;
      x.value = e.value;
      x.timestamp = e.timestamp;
      x.seq = e.seq;
      if (unfoldItemEvent(state, x, this.featureConfig) === null) this.itemStates.delete(e.itemId);
    }
  }

  /** The user's holdings, created on first use; null when no per-user cap applies (nothing to keep). */
  private holdingsOf(userId: string): Map<string, Holding> | null {
    if (this.rules.cap === null) return null;
    let held = this.holdings.get(userId);
    if (!held) this.holdings.set(userId, (held = new Map<string, Holding>()));
    else if (this.frozen?.has(held)) {
      // Holdings change in place (capContribution): the snapshot keeps the old ones.
      const copy = new Map<string, Holding>();
      for (const [itemId, h] of held) copy.set(itemId, { ...h });
      this.holdings.set(userId, (held = copy));
    }
    return held;
  }

  private versionOf(userId: string): string {
    return `${this.cacheEpoch}.${this.cacheVersions.get(userId) ?? 0}`;
  }

  private dropCache(userId: string): void {
    this.cacheVersions.set(userId, ++this.cacheClock);
    const entries = this.cache.get(userId);
    if (!entries) return;
    this.cacheEntries -= entries.size;
    this.cache.delete(userId);
  }

  private deleteCacheEntry(userId: string, entries: Map<string, CacheEntry>, key: string): void {
    entries.delete(key);
    this.cacheEntries--;
    if (entries.size === 0) this.cache.delete(userId);
  }

  private sweepCache(): void {
    const now = Date.now();
    for (const [userId, entries] of this.cache) {
      for (const [key, entry] of entries) {
        if (entry.expiresAt <= now) this.deleteCacheEntry(userId, entries, key);
      }
    }
    this.setsSinceSweep = 0;
  }

  private reset(): void {
    this.pop.clear();
    this.histories = new Map();
    this.holdings = new Map();
    this.itemStates = new Map();
    this.userMetas = new Map();
    this.optOuts = new Set();
    this.catalog = new Map();
    this.catalogOrder = [];
    this.cache = new Map();
    this.cacheEntries = 0;
    // Versions read before the reset must not match those after it.
    this.cacheVersions = new Map();
    this.cacheEpoch++;
    this.setsSinceSweep = 0;
    this.wm = { events: 0, changes: 0 };
  }

  private assertOpen(): void {
    if (this.closed) throw new CairnError('CAIRN_UNAVAILABLE', 'online state is closed');
  }

  /** Runs synchronous work behind the async port, failing after close() like the remote adapters do. */
  private run<T>(fn: () => T): Promise<T> {
    try {
      this.assertOpen();
      return Promise.resolve(fn());
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }
}

/* -------------------------------------------------------------------------------------------------
 * Snapshot format, version 3 (little-endian):
 *   magic "CAIRNOS\0" · u32 version · body · u32 CRC-32 of everything before it
 * body: settings string · u32 historyLimit · f64 event watermark · f64 change watermark ·
 *   popularity (f64 reference, NaN = none · u32 n · n × (str id, f64 sum)) · opt-outs (u32 n · n × str) ·
 *   catalog (u32 n · n × str item JSON) · histories (u32 users · per user: str id · u32 n · n × event) ·
 *   holdings (u32 users · per user: str id · u32 n · n × (str item id, f64 weight, f64 at)) ·
 *   item feature states (u32 n · n × (str item id, str state JSON)) ·
 *   user metadata (u32 n · n × (str user id, str {segments, attributes} JSON))
 * event: f64 seq · f64 timestamp · str eventId · str itemId · str type · u8 flags (1 value, 2 context) ·
 *   [f64 value] · [str context JSON]
 * str: u32 byte length · UTF-8 bytes. A new layout gets a new version; restore() refuses unknown ones.
 * ----------------------------------------------------------------------------------------------- */

const MAGIC = Buffer.from('CAIRNOS\0', 'latin1');
/**
 * 2: holdings (per-user caps) added. 3: item feature states and user metadata added. An older snapshot is
 * refused and the state rebuilt from the logs.
 */
const SNAPSHOT_VERSION = 3;

/** A private copy of a state (null for none), to fold into while readers keep the original. */
function cloneState(state: ItemFeatureState | undefined): ItemFeatureState | null {
  if (state === undefined) return null;
  const segments: Record<string, Record<string, number>> = {};
  for (const seg of Object.keys(state.segments)) {
    Object.defineProperty(segments, seg, {
      value: { ...state.segments[seg] },
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return {
    firstSeen: state.firstSeen,
    lastSeen: state.lastSeen,
    counts: { ...state.counts },
    decayed: state.decayed.slice(),
    reference: state.reference,
    segments,
  };
}

function unsupported(reason: 'format' | 'checksum' | 'version' | 'settings', message: string): CairnError {
  return new CairnError('CAIRN_UNSUPPORTED', `cannot restore online state: ${message}`, { reason });
}

/**
 * Writes a snapshot into one growing buffer. Started at about the size of the state's last snapshot (an
 * eighth more: the state grows between two), so a snapshot like the last one never regrows: each doubling
 * copies all written so far in one step (4 MB of a 6 MB snapshot: ~1 ms of the loop), and so does a tight
 * copy at the end, made only when over a quarter of the buffer went unused.
 */
class SnapshotWriter {
  private buf: Buffer;
  private n = 0;
  /** CRC-32 of the first `crcEnd` bytes (folded in as the snapshot is written). */
  private crc = 0;
  private crcEnd = 0;

  constructor(expectedBytes = 0) {
    this.buf = Buffer.allocUnsafe(Math.max(1 << 16, Math.ceil(expectedBytes * 1.125)));
    this.bytes(MAGIC);
    this.u32(SNAPSHOT_VERSION);
  }

  u8(v: number): void {
    this.reserve(1);
    this.n = this.buf.writeUInt8(v, this.n);
  }

  u32(v: number): void {
    this.reserve(4);
    this.n = this.buf.writeUInt32LE(v, this.n);
  }

  f64(v: number): void {
    this.reserve(8);
    this.n = this.buf.writeDoubleLE(v, this.n);
  }

  str(s: string): void {
    const len = Buffer.byteLength(s, 'utf8');
    this.u32(len);
    this.reserve(len);
    this.n += this.buf.write(s, this.n, len, 'utf8');
  }

  /** Folds the bytes written since the last fold into the checksum, once there are 64 KiB of them. */
  foldChecksum(minBytes = 1 << 16): void {
    if (this.n - this.crcEnd < minBytes) return;
    this.crc = crc32(this.buf.subarray(this.crcEnd, this.n), this.crc);
    this.crcEnd = this.n;
  }

  finish(): Buffer {
    this.foldChecksum(0);
    this.u32(this.crc);
    const bytes = this.buf.subarray(0, this.n);
    // A view when the buffer fits (a presized one); a tight copy when over a quarter would be held unused.
    return this.n >= this.buf.length * 0.75 ? bytes : Buffer.from(bytes);
  }

  private bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.n);
    this.n += b.length;
  }

  private reserve(k: number): void {
    if (this.n + k <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.n + k));
    this.buf.copy(next, 0, 0, this.n);
    this.buf = next;
  }
}

class SnapshotReader {
  private readonly buf: Buffer;
  private n = 0;
  private readonly limit: number;

  constructor(bytes: Uint8Array) {
    this.buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (this.buf.length < MAGIC.length + 8 || !this.buf.subarray(0, MAGIC.length).equals(MAGIC)) {
      throw unsupported('format', 'not an online-state snapshot');
    }
    this.limit = this.buf.length - 4;
    if (crc32(this.buf.subarray(0, this.limit)) !== this.buf.readUInt32LE(this.limit)) {
      throw unsupported('checksum', 'snapshot is damaged (checksum mismatch)');
    }
    this.n = MAGIC.length;
    const version = this.u32();
    if (version !== SNAPSHOT_VERSION) throw unsupported('version', `unknown snapshot version ${version}`);
  }

  u8(): number {
    this.need(1);
    return this.buf.readUInt8(this.n++);
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.n);
    this.n += 4;
    return v;
  }

  f64(): number {
    this.need(8);
    const v = this.buf.readDoubleLE(this.n);
    this.n += 8;
    return v;
  }

  str(): string {
    const len = this.u32();
    this.need(len);
    const s = this.buf.toString('utf8', this.n, this.n + len);
    this.n += len;
    return s;
  }

  /** Every byte must have been read: a longer body is a layout this version does not know. */
  end(): void {
    if (this.n !== this.limit) throw unsupported('format', 'snapshot has trailing bytes');
  }

  private need(k: number): void {
    if (this.n + k > this.limit) throw unsupported('format', 'snapshot is truncated');
  }
}
