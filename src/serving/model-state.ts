/**
 * A champion model ready to serve: the fitted model, its id spaces, and masks derived from the
 * catalog (unavailable items, category members) that are rebuilt only when the catalog changes.
 * Scratch buffers are reused across requests: scoring is synchronous on the event loop, so one
 * request at a time uses them.
 */
import { loadArtifact } from '../algorithms/index.ts';
import type { FittedModel } from '../algorithms/types.ts';
import { runStepsSliced, type Steps } from '../domain/cooperative.ts';
import type { ModelVersion } from '../domain/types.ts';
import { userRows } from '../registry/forget.ts';
import type { ModelRegistry } from '../registry/registry.ts';
import type { CatalogView } from './catalog.ts';
import { loadRanker, type LoadedRanker } from './ranker.ts';

/**
 * Reads `mv`'s artifact through the registry (checksum verified) and builds the model ready to serve.
 * Shared by the champion holder and the experiment model pool, so both load a version the same way.
 */
export async function loadServingModel(
  registry: Pick<ModelRegistry, 'load'>,
  mv: ModelVersion,
): Promise<ServingModel> {
  const stored = await registry.load(mv);
  const model = loadArtifact(stored.artifact);
  const lastEventSeq = typeof stored.extra.lastEventSeq === 'number' ? stored.extra.lastEventSeq : 0;
  // The id maps of a large model take a while to build: sliced, as this runs beside live requests.
  const indexes = {
    userIndex: await runStepsSliced(indexSteps(stored.userIds)),
    itemIndex: await runStepsSliced(indexSteps(stored.itemIds)),
  };
  // The second-stage ranker is decoded once here, so hot-swaps, rollbacks and the experiment pool carry it.
  const ranker = loadRanker(stored.extra);
  return new ServingModel(mv, model, stored.userIds, stored.itemIds, lastEventSeq, indexes, ranker);
}

/** id → position, yielding every few thousand ids (domain/cooperative.ts). */
function* indexSteps(ids: readonly string[]): Steps<Map<string, number>> {
  const index = new Map<string, number>();
  for (let i = 0; i < ids.length; i++) {
    if (i % 4096 === 0) yield;
    index.set(ids[i], i);
  }
  return index;
}

/**
 * Bytes of item-to-item score rows each serving model keeps (`ServingModel.similarItems`): the rows of the
 * items most recently asked for, least recently used first out. 32 MiB holds 8,000 rows of a 1,000-item
 * model and 160 rows of a 50,000-item one.
 */
export const SIMILAR_ROWS_BYTES = 32 * 1024 * 1024;

export class ServingModel {
  readonly itemIndex: Map<string, number>;
  readonly userIndex: Map<string, number>;
  readonly scores: Float32Array;
  readonly mask: Uint8Array;
  private unavailableMask: Uint8Array | null = null;
  private unavailableVersion = -1;
  private readonly categoryMasks = new Map<string, Uint8Array>();
  private categoryVersion = -1;
  /** The version's trained second-stage ranker (artifact `extra.ranker`), or null. */
  readonly ranker: LoadedRanker | null;
  /** Why the artifact's ranker could not be decoded (null: none stored, or decoded). */
  readonly rankerError: string | null;
  /** Memoized `model.similarItems` rows by item (null: the model has none for it), in LRU order. */
  private readonly similarRows = new Map<number, Float32Array | null>();
  private readonly maxSimilarRows: number;

  constructor(
    readonly version: ModelVersion,
    readonly model: FittedModel,
    readonly userIds: readonly string[],
    readonly itemIds: readonly string[],
    /** Event sequence watermark of the training data: newer events are folded in at serve time. */
    readonly lastEventSeq: number,
    /** Prebuilt id → position maps (loadServingModel builds them without holding the loop). */
    indexes?: { userIndex: Map<string, number>; itemIndex: Map<string, number> },
    /** The decoded `extra.ranker` (serving/ranker.ts loadRanker); absent: no ranker. */
    ranker?: { ranker: LoadedRanker | null; error: string | null },
  ) {
    this.ranker = ranker?.ranker ?? null;
    this.rankerError = ranker?.error ?? null;
    this.itemIndex = indexes?.itemIndex ?? new Map(itemIds.map((id, i) => [id, i]));
    this.userIndex = indexes?.userIndex ?? new Map(userIds.map((id, i) => [id, i]));
    this.scores = new Float32Array(itemIds.length);
    this.mask = new Uint8Array(itemIds.length);
    this.maxSimilarRows = Math.floor(SIMILAR_ROWS_BYTES / Math.max(1, 4 * itemIds.length));
  }

  /**
   * The model's item-to-item scores of `item` into `out` (`FittedModel.similarItems`), remembered: the
   * users' recent items repeat (popular items are recent for many users), and each row costs a pass over
   * the whole catalog (for ALS, items × factors multiply-adds). Rows never change for a loaded version
   * (an erasure rewrites user rows only). False when the model has no item similarity.
   */
  similarItems(item: number, out: Float32Array): boolean {
    let row = this.similarRows.get(item);
    if (row === undefined) {
      row = this.model.similarItems(item, out) ? out.slice(0, this.itemIds.length) : null;
      if (this.maxSimilarRows === 0) return row !== null;
      if (this.similarRows.size >= this.maxSimilarRows) {
        this.similarRows.delete(this.similarRows.keys().next().value!);
      }
      this.similarRows.set(item, row);
      return row !== null;
    }
    // Most recently used last.
    this.similarRows.delete(item);
    this.similarRows.set(item, row);
    if (row === null) return false;
    out.set(row);
    return true;
  }

  get nItems(): number {
    return this.itemIds.length;
  }

  /**
   * Forgets an erased user in memory: out of the user index (they are scored as a new user from now
   * on), their id blanked and their rows zeroed. The stored artifact is rewritten by the registry.
   */
  forgetUser(userId: string): void {
    const u = this.userIndex.get(userId);
    if (u === undefined) return;
    this.userIndex.delete(userId);
    // The array is the decoded artifact's own (mutable) list; nothing else indexes it by position.
    (this.userIds as string[])[u] = '';
    // toArtifact() hands out the model's own arrays, so this zeroes the rows the model holds.
    for (const { array, width } of userRows(this.model.toArtifact(), this.userIds.length)) {
      array.fill(0, u * width, (u + 1) * width);
    }
  }

  /** 1 for items that may not be recommended to anyone right now (unavailable). */
  unavailable(catalog: CatalogView): Uint8Array {
    if (this.unavailableMask === null || this.unavailableVersion !== catalog.version) {
      const m = new Uint8Array(this.itemIds.length);
      for (let i = 0; i < m.length; i++) m[i] = catalog.isAvailable(this.itemIds[i]) ? 0 : 1;
      this.unavailableMask = m;
      this.unavailableVersion = catalog.version;
    }
    return this.unavailableMask;
  }

  /** 1 for items OUTSIDE the category. */
  outsideCategory(catalog: CatalogView, category: string): Uint8Array {
    if (this.categoryVersion !== catalog.version) {
      this.categoryMasks.clear();
      this.categoryVersion = catalog.version;
    }
    let m = this.categoryMasks.get(category);
    if (!m) {
      m = new Uint8Array(this.itemIds.length);
      for (let i = 0; i < m.length; i++) m[i] = catalog.inCategory(this.itemIds[i], category) ? 0 : 1;
      // Bound the cache: categories are few in practice, but a client could send many distinct ones.
      if (this.categoryMasks.size > 256) this.categoryMasks.clear();
      this.categoryMasks.set(category, m);
    }
    return m;
  }
}
