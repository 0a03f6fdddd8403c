/**
 * Data-set readers for offline evaluation and import: stream a file line by line (optionally
 * gzip-compressed) into a columnar `Dataset`. Each format also exports a pure line parser.
 */
import { createReadStream } from 'node:fs';
import { basename } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip } from 'node:zlib';
import { CairnError } from '../../errors/errors.ts';
import { parseCsvHeader, parseCsvLine, type CsvColumns } from './csv.ts';
import { parseJsonlLine } from './jsonl.ts';
import { parseLastfmLine } from './lastfm.ts';
import { movieLensVariant, parseMovieLensLine } from './movielens.ts';
import { parseMovieTweetingsLine } from './movietweetings.ts';
import { isTriplesHeader, parseTriplesLine } from './triples.ts';
import {
  DatasetBuilder,
  LineError,
  type Dataset,
  type DatasetFormat,
  type ParsedRow,
  type ValueKind,
} from './types.ts';

export type { Dataset, DatasetFormat, ParsedRow, ValueKind } from './types.ts';
export { LineError } from './types.ts';
export { parseMovieLensLine, movieLensVariant, type MovieLensVariant } from './movielens.ts';
export { parseMovieTweetingsLine } from './movietweetings.ts';
export { parseLastfmLine } from './lastfm.ts';
export { parseCsvHeader, parseCsvLine, splitCsvLine, type CsvColumns } from './csv.ts';
export { parseJsonlLine } from './jsonl.ts';
export { parseTriplesLine, isTriplesHeader } from './triples.ts';

export const DATASET_FORMATS: readonly DatasetFormat[] = [
  'movielens',
  'movietweetings',
  'lastfm',
  'csv',
  'jsonl',
];

export interface ReadDatasetOptions {
  /** Called every 1M lines and at the end with the number of lines read. */
  onProgress?: (lines: number) => void;
  /** Malformed lines tolerated (skipped and counted) before reading fails; default 1000. */
  maxErrors?: number;
}

/**
 * Decides the format of a file from its name and first non-blank line. Returns null when nothing
 * matches (the caller then asks for `--format`).
 */
export function detectFormat(path: string, firstLine: string): DatasetFormat | null {
  const name = basename(path).toLowerCase().replace(/\.gz$/, '');
  const line = firstLine.trim();
  if (name.endsWith('.jsonl') || name.endsWith('.ndjson') || line.startsWith('{')) return 'jsonl';
  if (name === 'user_artists.dat' || /^userID\tartistID/i.test(line)) return 'lastfm';
  if (name === 'u.data' || /^\d+\t\d+\t\d+(\.\d+)?\t\d+$/.test(line)) return 'movielens';
  if (line.includes('::')) {
    const f = line.split('::');
    // Both use user::item::rating::ts; MovieTweetings items are 7-digit zero-padded IMDb ids.
    if (/movietweetings/i.test(path) || (f.length === 4 && /^\d{7}$/.test(f[1]))) return 'movietweetings';
    return 'movielens';
  }
  if (/^userId,movieId,rating/.test(line)) return 'movielens';
  if (/[,;\t]/.test(line) && /user/i.test(line) && /(item|movie|artist|product)/i.test(line)) return 'csv';
  return null;
}

const VALUE_KINDS: Record<Exclude<DatasetFormat, 'csv'>, ValueKind> = {
  movielens: 'rating',
  movietweetings: 'rating',
  // Play counts: a confidence, not a preference scale.
  lastfm: 'count',
  // Event values are interpreted per event type (e.g. the stars of a `rating` event).
  jsonl: 'weight',
};

/** A line parser bound to the format (and header, for CSV). */
function makeParser(
  format: DatasetFormat,
  firstLine: string,
): { parse: (line: string) => ParsedRow | null; valueKind: ValueKind } {
  switch (format) {
    case 'movielens': {
      const variant = movieLensVariant(firstLine);
      return { parse: (l) => parseMovieLensLine(l, variant), valueKind: VALUE_KINDS.movielens };
    }
    case 'movietweetings':
      return { parse: parseMovieTweetingsLine, valueKind: VALUE_KINDS.movietweetings };
    case 'lastfm':
      return { parse: parseLastfmLine, valueKind: VALUE_KINDS.lastfm };
    case 'jsonl':
      return { parse: parseJsonlLine, valueKind: VALUE_KINDS.jsonl };
    case 'csv': {
      let cols: CsvColumns;
      try {
        cols = parseCsvHeader(firstLine);
      } catch (e) {
        throw CairnError.validation([{ field: 'format', message: (e as Error).message }]);
      }
      let header = true;
      return {
        parse: (l) => {
          if (header) {
            header = false;
            return null;
          }
          return parseCsvLine(l, cols);
        },
        valueKind: cols.valueKind,
      };
    }
  }
}

/**
 * Calls `onLine` for every line of a (possibly gzip-compressed) text file, in order, without holding
 * the file in memory. Handles `\n` and `\r\n` endings and a UTF-8 byte-order mark.
 */
export async function forEachLine(
  path: string,
  onLine: (line: string, lineNo: number) => void,
): Promise<number> {
  const raw = createReadStream(path, { highWaterMark: 1 << 20 });
  let stream: NodeJS.ReadableStream = raw;
  if (path.toLowerCase().endsWith('.gz')) {
    const gunzip = createGunzip();
    // pipe() does not forward errors: a missing file would leave the gunzip stream waiting forever.
    raw.on('error', (e) => gunzip.destroy(e));
    stream = raw.pipe(gunzip);
  }
  const decoder = new StringDecoder('utf8');
  let rest = '';
  let lineNo = 0;
  const emit = (line: string): void => {
    lineNo++;
    if (lineNo === 1 && line.charCodeAt(0) === 0xfeff) line = line.slice(1);
    onLine(line.endsWith('\r') ? line.slice(0, -1) : line, lineNo);
  };
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      const text = rest + decoder.write(chunk);
      let start = 0;
      for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
        emit(text.slice(start, nl));
        start = nl + 1;
      }
      rest = text.slice(start);
    }
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT' || err.code === 'EISDIR' || err.code === 'EACCES') {
      throw new CairnError('CAIRN_VALIDATION', `cannot read ${path}: ${err.code}`, {
        fields: [{ field: 'path', message: err.message }],
      });
    }
    throw e;
  }
  rest += decoder.end();
  if (rest.length > 0) emit(rest);
  return lineNo;
}

/**
 * Reads a whole interaction file. `auto` detects the format from the name and first line; a file
 * that matches nothing, has no readable row, or too many malformed lines fails with CAIRN_VALIDATION.
 */
export async function readDataset(
  path: string,
  format: DatasetFormat | 'auto',
  options: ReadDatasetOptions = {},
): Promise<Dataset> {
  const maxErrors = options.maxErrors ?? 1000;
  const builder = new DatasetBuilder();
  let parser: ReturnType<typeof makeParser> | null = null;
  let resolved: DatasetFormat | null = format === 'auto' ? null : format;
  let malformed = 0;
  const lines = await forEachLine(path, (line, lineNo) => {
    if (parser === null) {
      if (line.trim().length === 0) {
        builder.skip(lineNo);
        return;
      }
      resolved ??= detectFormat(path, line);
      if (resolved === null) {
        throw CairnError.validation([
          {
            field: 'format',
            message: `cannot detect the format of ${path}; pass --format ${DATASET_FORMATS.join('|')}`,
          },
        ]);
      }
      parser = makeParser(resolved, line);
    }
    try {
      const row = parser.parse(line);
      if (row === null) builder.skip(lineNo);
      else builder.add(row);
    } catch (e) {
      if (!(e instanceof LineError)) throw e;
      malformed++;
      builder.skip(lineNo, e.message);
      if (malformed > maxErrors) {
        throw CairnError.validation(
          builder.errors.map((x) => ({ field: `line ${x.line}`, message: x.message })),
          `${path}: more than ${maxErrors} malformed lines (first at line ${builder.errors[0]?.line}: ${builder.errors[0]?.message})`,
        );
      }
    }
    if (lineNo % 1_000_000 === 0) options.onProgress?.(lineNo);
  });
  options.onProgress?.(lines);
  const finalParser = parser as ReturnType<typeof makeParser> | null;
  if (resolved === null || finalParser === null || builder.length === 0) {
    throw CairnError.validation([{ field: 'path', message: `${path} holds no interactions` }]);
  }
  return builder.finish(resolved, finalParser.valueKind);
}

/**
 * Reads a tab-separated `user item [weight]` file (the `--train`/`--test` files of `cairn eval`).
 * Values are weights (NaN where the column is absent).
 */
export async function readTriples(path: string, options: ReadDatasetOptions = {}): Promise<Dataset> {
  const maxErrors = options.maxErrors ?? 1000;
  const builder = new DatasetBuilder();
  let first = true;
  let malformed = 0;
  let weighted = false;
  const lines = await forEachLine(path, (line, lineNo) => {
    if (first && line.trim().length > 0) {
      first = false;
      if (isTriplesHeader(line)) {
        builder.skip(lineNo);
        return;
      }
    }
    try {
      const row = parseTriplesLine(line);
      if (row === null) builder.skip(lineNo);
      else {
        if (!Number.isNaN(row.value)) weighted = true;
        builder.add(row);
      }
    } catch (e) {
      if (!(e instanceof LineError)) throw e;
      builder.skip(lineNo, e.message);
      if (++malformed > maxErrors) {
        throw CairnError.validation(
          [{ field: `line ${lineNo}`, message: e.message }],
          `${path}: more than ${maxErrors} malformed lines`,
        );
      }
    }
  });
  options.onProgress?.(lines);
  if (builder.length === 0)
    throw CairnError.validation([{ field: 'path', message: `${path} holds no interactions` }]);
  return builder.finish('triples', weighted ? 'weight' : 'none');
}
