/**
 * Small helpers shared by the storage adapters (no I/O): patch merging and option normalization, so that
 * both adapters apply exactly the same semantics.
 */
import type { ItemPatch } from './ports.ts';

/** Default page size of `EventStore.scan` when the caller gives none. */
export const DEFAULT_SCAN_BATCH = 1000;

/** Copy of `patch` without keys whose value is `undefined` (an absent field must not overwrite a stored one). */
export function definedFields<T extends object>(patch: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(patch)) {
    if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  }
  return out;
}

/**
 * Folds patches that name the same id into one (later fields win), keeping first-seen order. Applying the
 * folded patch equals applying the originals one after another, which is what a batch upsert means.
 */
export function foldItemPatches(patches: readonly ItemPatch[]): ItemPatch[] {
  const byId = new Map<string, ItemPatch>();
  for (const p of patches) {
    const prev = byId.get(p.id);
    byId.set(p.id, prev ? { ...prev, ...definedFields(p) } : { ...definedFields(p), id: p.id });
  }
  return [...byId.values()];
}

/** Resolved scan bounds: `afterSeq` exclusive, `untilSeq` inclusive, `batchSize` ≥ 1. */
export interface ScanBounds {
  afterSeq: number;
  untilSeq: number | undefined;
  batchSize: number;
}

export function scanBounds(options: {
  afterSeq?: number;
  batchSize?: number;
  untilSeq?: number;
}): ScanBounds {
  const batchSize = Math.max(1, Math.floor(options.batchSize ?? DEFAULT_SCAN_BATCH));
  return { afterSeq: Math.max(0, options.afterSeq ?? 0), untilSeq: options.untilSeq, batchSize };
}

/** Socket error codes that mean the server cannot be reached (→ CAIRN_UNAVAILABLE in every adapter). */
export const NETWORK_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);
