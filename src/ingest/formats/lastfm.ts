/**
 * Last.fm HetRec 2011 `user_artists.dat`: header `userID\tartistID\tweight`, then one row per
 * (user, artist) with the play count as weight. There are no timestamps in this file.
 */
import { LineError, parseNumber, type ParsedRow } from './types.ts';

/** One line of `user_artists.dat`; null for a blank line or the header. */
export function parseLastfmLine(line: string): ParsedRow | null {
  const text = line.trim();
  if (text.length === 0) return null;
  const f = text.split('\t');
  if (f[0] === 'userID') return null;
  if (f.length < 3) throw new LineError(`expected userID, artistID, weight; got ${f.length} field(s)`);
  if (f[0].length === 0 || f[1].length === 0) throw new LineError('empty user or artist id');
  const plays = parseNumber(f[2], 'weight');
  if (plays < 0) throw new LineError('negative play count');
  return { user: f[0], item: f[1], value: plays, timestamp: NaN };
}
