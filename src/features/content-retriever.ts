/**
 * The `content` retriever: catalog items similar by content to the user's recent items — by their
 * categories and short string attributes (`brand: "Acme"`, `genre: "Jazz"`), whatever their history, so
 * an item nobody has touched yet can be a candidate. One definition for training rows offline (the
 * catalog at training time) and serving (the catalog view, re-indexed when it changed).
 *
 * Each item is a set of tokens: `c:<category>` per category and `a:<key>=<value>` per string attribute
 * of at most MAX_VALUE_LENGTH characters other than TEXT_KEYS (titles and descriptions name one item
 * only), lower-cased. A token weighs its inverse document frequency, ln(1 + N / df); the score of an
 * item for the user is the weighted cosine similarity to each of their `recent` items (most recent
 * first, weight 1 / (position + 1)), summed. An item never scores against itself.
 *
 * Pure: no I/O.
 */
import type { Item } from '../domain/types.ts';

export const CONTENT_RETRIEVER = 'content';
/** Longer string attributes are free text, not a shared property. */
const MAX_VALUE_LENGTH = 64;
/** Attributes that describe one item only. */
const TEXT_KEYS = new Set(['title', 'name', 'description', 'url', 'image', 'image_url', 'sku']);
/** Tokens shared by more items than this are skipped when scoring (they separate nothing, and cost). */
const MAX_POSTINGS = 50_000;

/** The content tokens of one catalog item (see the file comment). */
export function contentTokens(item: Pick<Item, 'categories' | 'attributes'>): string[] {
  const tokens = new Set<string>();
  for (const c of item.categories) tokens.add(`c:${c.toLowerCase()}`);
  for (const [key, value] of Object.entries(item.attributes)) {
    if (typeof value !== 'string' || value.length === 0 || value.length > MAX_VALUE_LENGTH) continue;
    if (TEXT_KEYS.has(key.toLowerCase())) continue;
    tokens.add(`a:${key.toLowerCase()}=${value.toLowerCase()}`);
  }
  return [...tokens].sort();
}

/** An inverted index of the catalog's content tokens. */
export class ContentIndex {
  readonly ids: readonly string[];
  private readonly position = new Map<string, number>();
  private readonly tokensOf: (readonly number[])[];
  private readonly postings: Int32Array[];
  private readonly idf: Float64Array;
  private readonly norm: Float64Array;
  /** Scratch: accumulated scores per item, and the items touched. */
  private readonly acc: Float64Array;
  private readonly touched: Int32Array;

  constructor(items: Iterable<{ id: string; tokens: readonly string[] }>) {
    const ids: string[] = [];
    const tokenIndex = new Map<string, number>();
    const lists: number[][] = [];
    this.tokensOf = [];
    for (const { id, tokens } of items) {
      if (this.position.has(id)) continue;
      const p = ids.length;
      ids.push(id);
      this.position.set(id, p);
      const own: number[] = [];
      for (const t of tokens) {
        let k = tokenIndex.get(t);
        if (k === undefined) {
          k = lists.length;
          tokenIndex.set(t, k);
          lists.push([]);
        }
        lists[k].push(p);
        own.push(k);
      }
      this.tokensOf.push(own);
    }
    this.ids = ids;
    const n = ids.length;
    this.postings = lists.map((l) => Int32Array.from(l));
    this.idf = Float64Array.from(lists, (l) => Math.log(1 + n / l.length));
    this.norm = new Float64Array(n);
    for (let p = 0; p < n; p++) {
      let s = 0;
      for (const k of this.tokensOf[p]) s += this.idf[k] * this.idf[k];
      this.norm[p] = Math.sqrt(s);
    }
    this.acc = new Float64Array(n);
    this.touched = new Int32Array(n);
  }

  /**
   * Calls `visit(position, score)` for every item with a positive score for these recent items (ids;
   * unknown ones are skipped), in no particular order. Allocates nothing.
   */
  private score(recent: readonly string[], visit: (p: number, score: number) => void): void {
    const { acc, touched, idf, norm } = this;
    let nTouched = 0;
    for (let r = 0; r < recent.length; r++) {
      const q = this.position.get(recent[r]);
      if (q === undefined || norm[q] === 0) continue;
      const w = 1 / (r + 1) / norm[q];
      for (const k of this.tokensOf[q]) {
        const list = this.postings[k];
        if (list.length > MAX_POSTINGS) continue;
        const v = w * idf[k] * idf[k];
        for (let j = 0; j < list.length; j++) {
          const p = list[j];
          if (p === q) continue;
          if (acc[p] === 0) touched[nTouched++] = p;
          acc[p] += v / norm[p];
        }
      }
    }
    for (let t = 0; t < nTouched; t++) {
      const p = touched[t];
      visit(p, acc[p]);
      acc[p] = 0;
    }
  }

  /** Every item's score for these recent items (0 for items without a shared token or not indexed). */
  scores(recent: readonly string[]): Map<string, number> {
    const out = new Map<string, number>();
    this.score(recent, (p, s) => out.set(this.ids[p], s));
    return out;
  }
}

/** The `n` best of `scores` passing `accept`, best first (a list for the merge). */
export function topOf(
  scores: ReadonlyMap<string, number>,
  n: number,
  accept: (id: string) => boolean,
): { items: string[]; scores: number[] } {
  const entries = [...scores].filter(([id, v]) => v > 0 && accept(id));
  entries.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const top = entries.slice(0, Math.max(0, n));
  return { items: top.map((e) => e[0]), scores: top.map((e) => e[1]) };
}
