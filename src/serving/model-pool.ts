/**
 * The models a replica serves besides the champion: the versions named by running experiments (A/B
 * and canary arms, shadows), loaded through the registry and held in memory.
 *
 * The pool is bounded (`maxModels`): versions no experiment names any more are evicted on the next
 * sync, and versions beyond the bound are not loaded (their arms are served by the champion). A
 * version that fails to load is remembered with its error and retried after `retryMs`; meanwhile
 * `get` answers null and the recommender serves that arm with the champion and says so
 * (`fallback_reason: variant_model_unavailable`), never a 5xx.
 */
import type { ModelVersion } from '../domain/types.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { ModelRegistry } from '../registry/registry.ts';
import { loadServingModel, type ServingModel } from './model-state.ts';

type Slot =
  | { state: 'loading'; promise: Promise<void> }
  | { state: 'ready'; model: ServingModel }
  | { state: 'failed'; error: string; at: number };

export interface ModelPoolOptions {
  /** Most non-champion models held at once (default 4). */
  maxModels?: number;
  /** Wait before a failed version is tried again (default 30 s). */
  retryMs?: number;
  now?: () => number;
}

/** Why a named version is not being served from the pool. */
export type PoolMiss = 'loading' | 'failed' | 'pool_full' | 'not_named';

export class ModelPool {
  private readonly slots = new Map<string, Slot>();
  private named: string[] = [];
  private readonly maxModels: number;
  private readonly retryMs: number;
  private readonly now: () => number;
  private syncing: Promise<void> = Promise.resolve();

  constructor(
    private readonly registry: Pick<ModelRegistry, 'get' | 'load'>,
    /** The champion this replica serves: a variant naming the champion's version gets it. */
    private readonly champion: () => ServingModel | null,
    private readonly logger: Logger,
    options: ModelPoolOptions = {},
  ) {
    this.maxModels = Math.max(0, options.maxModels ?? 4);
    this.retryMs = options.retryMs ?? 30_000;
    this.now = options.now ?? Date.now;
  }

  /** The model of `version` when it is in memory (the champion's when it is the champion). */
  get(version: string): ServingModel | null {
    const champion = this.champion();
    if (champion?.version.version === version) return champion;
    const slot = this.slots.get(version);
    if (slot?.state === 'ready') return slot.model;
    if (slot?.state === 'failed' && this.now() - slot.at >= this.retryMs && this.named.includes(version)) {
      // Retry off the request path; this request is answered by the champion.
      void this.loadSlot(version);
    }
    return null;
  }

  /** Why `get(version)` answers null (for logs and the answer's label). */
  miss(version: string): PoolMiss {
    const at = this.named.indexOf(version);
    if (at < 0) return 'not_named';
    if (at >= this.maxModels) return 'pool_full';
    const slot = this.slots.get(version);
    // No slot while named: it was the champion until a moment ago and the next sync loads it.
    return slot?.state === 'failed' ? 'failed' : 'loading';
  }

  /** The last load error of `version`, if it failed. */
  error(version: string): string | null {
    const slot = this.slots.get(version);
    return slot?.state === 'failed' ? slot.error : null;
  }

  /** Models in memory now (e.g. to forget an erased user in every one of them). */
  models(): ServingModel[] {
    const out: ServingModel[] = [];
    for (const slot of this.slots.values()) if (slot.state === 'ready') out.push(slot.model);
    return out;
  }

  /**
   * Makes the pool hold exactly the `versions` named (up to the bound, in the order given): evicts
   * the others, loads the missing ones. Resolves when the loads settle; never rejects. Syncs are
   * serialised so the newest set wins.
   */
  sync(versions: readonly string[]): Promise<void> {
    const next = this.syncing.then(async () => {
      const wanted = [...new Set(versions)].slice(0, this.maxModels);
      this.named = [...new Set(versions)];
      for (const v of [...this.slots.keys()]) {
        if (!wanted.includes(v)) {
          this.slots.delete(v);
          this.logger.info({ version: v }, 'experiment model released');
        }
      }
      if (versions.length > wanted.length)
        this.logger.warn(
          { loaded: wanted, skipped: versions.slice(wanted.length), maxModels: this.maxModels },
          'more experiment models named than the pool holds; the rest are served by the champion',
        );
      const loads: Promise<void>[] = [];
      for (const v of wanted) {
        const slot = this.slots.get(v);
        if (slot?.state === 'loading') loads.push(slot.promise);
        else if (!slot || (slot.state === 'failed' && this.now() - slot.at >= this.retryMs))
          loads.push(this.loadSlot(v));
      }
      await Promise.all(loads);
    });
    this.syncing = next.catch(() => undefined);
    return this.syncing;
  }

  close(): Promise<void> {
    this.slots.clear();
    this.named = [];
    return Promise.resolve();
  }

  private loadSlot(version: string): Promise<void> {
    let done!: () => void;
    const promise = new Promise<void>((resolve) => (done = resolve));
    // The slot says `loading` before the load starts, so a release during the load is seen by it.
    this.slots.set(version, { state: 'loading', promise });
    void this.load(version).finally(done);
    return promise;
  }

  private async load(version: string): Promise<void> {
    try {
      if (this.champion()?.version.version === version) {
        // Served from the champion holder; nothing to hold twice.
        this.slots.delete(version);
        return;
      }
      const mv: ModelVersion = await this.registry.get(version);
      const model = await loadServingModel(this.registry, mv);
      // Released while loading: do not keep it.
      if (this.slots.get(version)?.state !== 'loading') return;
      this.slots.set(version, { state: 'ready', model });
      this.logger.info({ version, algorithm: mv.algorithm }, 'experiment model loaded');
    } catch (err) {
      const error = (err as Error).message;
      if (this.slots.get(version)?.state === 'loading')
        this.slots.set(version, { state: 'failed', error, at: this.now() });
      this.logger.error(
        { err, version },
        'experiment model failed to load; its arm is served by the champion',
      );
    }
  }
}
