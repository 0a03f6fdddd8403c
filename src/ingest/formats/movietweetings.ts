/**
 * MovieTweetings `ratings.dat`: `user_id::movie_id::rating::rating_timestamp`, ratings 0..10 taken
 * from tweets, movie ids are zero-padded IMDb numbers (kept as strings so `0104257` survives),
 * timestamps epoch seconds. The layout is MovieLens' `ratings.dat`, so the same fast parser reads it.
 */
import { parseMovieLensLine } from './movielens.ts';
import { LineError, type ParsedRow } from './types.ts';

/** One line of MovieTweetings `ratings.dat`; null for a blank line. */
export function parseMovieTweetingsLine(line: string): ParsedRow | null {
  const row = parseMovieLensLine(line, 'dat');
  if (row !== null && Number.isNaN(row.timestamp))
    throw new LineError('expected user::item::rating::timestamp');
  return row;
}
