/**
 * The in-memory shape every data-set reader produces: columnar typed arrays over dense user and item
 * indices, so files with millions of interactions fit in a few dozen bytes per row.
 */

import { Column } from '../../algorithms/column.ts';

/** Formats `readDataset` understands; `auto` picks one from the file name and its first line. */
export type DatasetFormat = 'movielens' | 'movietweetings' | 'lastfm' | 'csv' | 'jsonl';

/**
 * What the `values` column means, which decides how it becomes a training weight:
 * `rating` (explicit score: filter with `--min-rating`, then weight 1), `count` (plays, purchases:
 * a confidence), `weight` (already a weight), `none` (no value column: every row counts once).
 */
export type ValueKind = 'rating' | 'count' | 'weight' | 'none';

/** One interaction per row; row `r` is (users[userIdx[r]], items[itemIdx[r]], values[r], ...). */
export interface Dataset {
  /** Index → external user id, in order of first appearance. */
  users: string[];
  /** Index → external item id, in order of first appearance. */
  items: string[];
  userIdx: Int32Array;
  itemIdx: Int32Array;
  /** The row's value (rating, count, weight) or NaN when the row has none. */
  values: Float32Array;
  /** Event time in ms since the epoch, NaN when absent. */
  timestamps: Float64Array;
  /** Event type per row (interned strings) for event-stream formats, else null. */
  types?: string[] | null;
  /** The format the file was read as (resolved when `auto` was asked); `triples` for `readTriples`. */
  format: DatasetFormat | 'triples';
  valueKind: ValueKind;
  /** Lines skipped because they were blank, comments, a header or malformed (see `errors`). */
  skipped: number;
  /** The first few malformed lines (1-based line number and reason), for a useful message. */
  errors: { line: number; message: string }[];
}

/** One parsed line. `value`/`timestamp` are NaN when the line has none. */
export interface ParsedRow {
  user: string;
  item: string;
  value: number;
  /** Milliseconds since the epoch, or NaN. */
  timestamp: number;
  type?: string;
}

/** Thrown by a line parser for a line that is not blank or a header but cannot be read. */
export class LineError extends Error {}

const MAX_REPORTED_ERRORS = 10;

/** `s` as an int when it is a canonical non-negative decimal (no sign, no leading zero) below 1e9. */
function canonicalInt(s: string): number {
  const n = s.length;
  if (n === 0 || n > 9) return -1;
  let v = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9 || (c === 0 && i === 0 && n > 1)) return -1;
    v = v * 10 + c;
  }
  return v;
}

/**
 * External id → dense index. Most data sets use integer ids; those go through an open-addressing
 * Int32 table, which is several times faster than a Map<string> lookup (no string hashing, no
 * pointer chasing). Other ids (and non-canonical numbers like MovieTweetings' `0104257`) use a Map;
 * a string is either canonical or not, so the two tables never disagree.
 */
class IdIndex {
  readonly ids: string[] = [];
  private readonly byString = new Map<string, number>();
  private keys = new Int32Array(1024).fill(-1);
  private vals = new Int32Array(1024);
  private intCount = 0;

  indexOf(id: string): number {
    const k = canonicalInt(id);
    if (k < 0) {
      let i = this.byString.get(id);
      if (i === undefined) {
        i = this.ids.length;
        id = detach(id);
        this.byString.set(id, i);
        this.ids.push(id);
      }
      return i;
    }
    const mask = this.keys.length - 1;
    let h = (Math.imul(k, 0x9e3779b1) >>> 0) & mask;
    for (;;) {
      const x = this.keys[h];
      if (x === k) return this.vals[h];
      if (x === -1) break;
      h = (h + 1) & mask;
    }
    const i = this.ids.length;
    this.ids.push(detach(id));
    this.keys[h] = k;
    this.vals[h] = i;
    if (++this.intCount * 2 > this.keys.length) this.grow();
    return i;
  }

  private grow(): void {
    const oldKeys = this.keys;
    const oldVals = this.vals;
    this.keys = new Int32Array(oldKeys.length * 2).fill(-1);
    this.vals = new Int32Array(oldKeys.length * 2);
    const mask = this.keys.length - 1;
    for (let p = 0; p < oldKeys.length; p++) {
      const k = oldKeys[p];
      if (k === -1) continue;
      let h = (Math.imul(k, 0x9e3779b1) >>> 0) & mask;
      while (this.keys[h] !== -1) h = (h + 1) & mask;
      this.keys[h] = k;
      this.vals[h] = oldVals[p];
    }
  }
}

/**
 * A copy of `s` that does not point into the 1 MB chunk it was sliced from (V8 keeps long slices as
 * views), so interning a few ids does not pin every chunk of the file in memory.
 */
function detach(s: string): string {
  return s.length < 13 ? s : Buffer.from(s, 'utf8').toString('utf8');
}

/** Accumulates parsed rows, interning user, item and type ids. */
export class DatasetBuilder {
  private readonly userIndex = new IdIndex();
  private readonly itemIndex = new IdIndex();
  private readonly typeIndex = new Map<string, string>();
  private readonly userCol = new Column(new Int32Array(4096), (n) => new Int32Array(n));
  private readonly itemCol = new Column(new Int32Array(4096), (n) => new Int32Array(n));
  private readonly valueCol = new Column(new Float32Array(4096), (n) => new Float32Array(n));
  private readonly timeCol = new Column(new Float64Array(4096), (n) => new Float64Array(n));
  private types: string[] | null = null;
  skipped = 0;
  readonly errors: { line: number; message: string }[] = [];

  get length(): number {
    return this.userCol.length;
  }

  add(row: ParsedRow): void {
    const u = this.userIndex.indexOf(row.user);
    const i = this.itemIndex.indexOf(row.item);
    if (row.type !== undefined) {
      // Types arrive on the first typed row; earlier untyped rows get the empty type.
      if (this.types === null) this.types = new Array<string>(this.length).fill('');
      let t = this.typeIndex.get(row.type);
      if (t === undefined) {
        t = detach(row.type);
        this.typeIndex.set(t, t);
      }
      this.types.push(t);
    } else if (this.types !== null) {
      this.types.push('');
    }
    this.userCol.push(u);
    this.itemCol.push(i);
    this.valueCol.push(row.value);
    this.timeCol.push(row.timestamp);
  }

  skip(line: number, message?: string): void {
    this.skipped++;
    if (message !== undefined && this.errors.length < MAX_REPORTED_ERRORS)
      this.errors.push({ line, message });
  }

  finish(format: DatasetFormat | 'triples', valueKind: ValueKind): Dataset {
    return {
      users: this.userIndex.ids,
      items: this.itemIndex.ids,
      userIdx: this.userCol.finish(),
      itemIdx: this.itemCol.finish(),
      values: this.valueCol.finish(),
      timestamps: this.timeCol.finish(),
      types: this.types,
      format,
      valueKind,
      skipped: this.skipped,
      errors: this.errors,
    };
  }
}

/** Parses a finite number or throws a LineError naming the field. */
export function parseNumber(text: string, field: string): number {
  const v = Number(text);
  if (text.length === 0 || !Number.isFinite(v))
    throw new LineError(`${field} is not a number: ${JSON.stringify(text)}`);
  return v;
}

/** Epoch seconds (as MovieLens and MovieTweetings store them) → ms. */
export function secondsToMs(text: string): number {
  return parseNumber(text, 'timestamp') * 1000;
}

/**
 * A free-form timestamp: a number is epoch seconds when below 1e11 (year 5138 in seconds, 1973 in
 * ms), else epoch ms; anything else must be an ISO-8601 string.
 */
export function parseTimestamp(text: string): number {
  if (text.length === 0) return NaN;
  const n = Number(text);
  if (Number.isFinite(n)) return Math.abs(n) < 1e11 ? n * 1000 : n;
  const t = Date.parse(text);
  if (Number.isNaN(t))
    throw new LineError(`timestamp is neither epoch nor ISO-8601: ${JSON.stringify(text)}`);
  return t;
}
