/**
 * MovieLens rating files: `u.data` (100K: `user\titem\trating\tts`), `ratings.dat` (1M/10M:
 * `user::item::rating::ts`) and `ratings.csv` (20M/25M/latest: header `userId,movieId,rating,timestamp`).
 * Timestamps are epoch seconds.
 */
import { LineError, parseNumber, secondsToMs, type ParsedRow } from './types.ts';

export type MovieLensVariant = 'tab' | 'dat' | 'csv';

const SEPARATORS: Record<MovieLensVariant, string> = { tab: '\t', dat: '::', csv: ',' };

/** The variant a MovieLens file uses, from its first line. */
export function movieLensVariant(firstLine: string): MovieLensVariant {
  if (firstLine.includes('::')) return 'dat';
  if (firstLine.includes('\t')) return 'tab';
  return 'csv';
}

/** One line of a MovieLens ratings file; null for a blank line or the CSV header. */
export function parseMovieLensLine(line: string, variant: MovieLensVariant): ParsedRow | null {
  const sep = SEPARATORS[variant];
  // indexOf + slice instead of trim + split: this runs once per line of multi-million-line files.
  const a = line.indexOf(sep);
  if (a < 0) {
    if (line.trim().length === 0) return null;
    throw new LineError('expected user, item, rating[, timestamp]; got 1 field');
  }
  const b = line.indexOf(sep, a + sep.length);
  if (b < 0) throw new LineError('expected user, item, rating[, timestamp]; got 2 fields');
  const c = line.indexOf(sep, b + sep.length);
  const user = line.slice(0, a).trim();
  if (variant === 'csv' && user === 'userId') return null;
  const item = line.slice(a + sep.length, b).trim();
  if (user.length === 0 || item.length === 0) throw new LineError('empty user or item id');
  const rating = line.slice(b + sep.length, c < 0 ? line.length : c).trim();
  let timestamp = NaN;
  if (c >= 0) {
    const d = line.indexOf(sep, c + sep.length);
    timestamp = secondsToMs(line.slice(c + sep.length, d < 0 ? line.length : d).trim());
  }
  return { user, item, value: parseNumber(rating, 'rating'), timestamp };
}
