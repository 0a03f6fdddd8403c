/**
 * Pre-split evaluation files (`cairn eval --train PATH --test PATH`): tab-separated
 * `user<TAB>item[<TAB>weight]`, one pair per line, no header required (a first line whose weight is
 * not a number, or that names `user`, is taken as a header and skipped). Lines starting with `#` are
 * comments.
 */
import { LineError, parseNumber, type ParsedRow } from './types.ts';

/** One line of a triples file; null for a blank line or a comment. */
export function parseTriplesLine(line: string): ParsedRow | null {
  const text = line.trim();
  if (text.length === 0 || text.startsWith('#')) return null;
  const f = text.split('\t');
  if (f.length < 2) throw new LineError('expected user<TAB>item[<TAB>weight]');
  if (f[0].length === 0 || f[1].length === 0) throw new LineError('empty user or item id');
  return {
    user: f[0],
    item: f[1],
    value: f.length > 2 ? parseNumber(f[2].trim(), 'weight') : NaN,
    timestamp: NaN,
  };
}

/** True when the first line of a triples file is a header rather than data. */
export function isTriplesHeader(line: string): boolean {
  const f = line.trim().split('\t');
  return /^user/i.test(f[0] ?? '') || (f.length > 2 && !Number.isFinite(Number(f[2])));
}
