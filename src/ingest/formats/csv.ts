/**
 * Generic delimited files with a header naming the columns: `user_id`, `item_id` (required) and
 * optionally a value (`value` | `rating` | `weight` | `count`), `timestamp` and `type`. The
 * delimiter (comma, tab or semicolon) is taken from the header; RFC 4180 double quotes are honoured
 * within a line (quoted fields may not span lines).
 */
import { LineError, parseNumber, parseTimestamp, type ParsedRow, type ValueKind } from './types.ts';

export interface CsvColumns {
  delimiter: string;
  user: number;
  item: number;
  /** -1 when absent. */
  value: number;
  timestamp: number;
  type: number;
  /** What the value column is, from its name. */
  valueKind: ValueKind;
  width: number;
}

// Header names are matched lower-cased with `_`, `-` and spaces removed, so `userId`, `user_id` and
// `User ID` all name the user column.
const USER_NAMES = new Set(['userid', 'user', 'uid']);
const ITEM_NAMES = new Set(['itemid', 'item', 'iid', 'movieid', 'artistid', 'productid']);
const VALUE_NAMES: Record<string, ValueKind> = {
  rating: 'rating',
  score: 'rating',
  value: 'weight',
  weight: 'weight',
  count: 'count',
  plays: 'count',
  playcount: 'count',
};
const TIME_NAMES = new Set(['timestamp', 'time', 'ts', 'datetime', 'date']);
const TYPE_NAMES = new Set(['type', 'eventtype', 'event']);

function normalise(name: string): string {
  return name
    .trim()
    .replace(/^\uFEFF/, '')
    .toLowerCase()
    .replace(/[\s_-]/g, '');
}

/** Finds the delimiter and the role of each column from the header line. */
export function parseCsvHeader(line: string): CsvColumns {
  const delimiter = line.includes('\t') ? '\t' : line.includes(',') ? ',' : line.includes(';') ? ';' : ',';
  const names = splitCsvLine(line, delimiter).map(normalise);
  const cols: CsvColumns = {
    delimiter,
    user: -1,
    item: -1,
    value: -1,
    timestamp: -1,
    type: -1,
    valueKind: 'none',
    width: names.length,
  };
  names.forEach((n, i) => {
    if (cols.user < 0 && USER_NAMES.has(n)) cols.user = i;
    else if (cols.item < 0 && ITEM_NAMES.has(n)) cols.item = i;
    else if (cols.value < 0 && n in VALUE_NAMES) {
      cols.value = i;
      cols.valueKind = VALUE_NAMES[n];
    } else if (cols.timestamp < 0 && TIME_NAMES.has(n)) cols.timestamp = i;
    else if (cols.type < 0 && TYPE_NAMES.has(n)) cols.type = i;
  });
  if (cols.user < 0 || cols.item < 0) {
    throw new LineError(`the header must name a user_id and an item_id column; got ${JSON.stringify(line)}`);
  }
  return cols;
}

/** Splits one line on `delimiter`, honouring double quotes (`""` is a literal quote). */
export function splitCsvLine(line: string, delimiter: string): string[] {
  if (!line.includes('"')) return line.split(delimiter);
  const out: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"') {
        if (line[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else field += ch;
    } else if (ch === '"') quoted = true;
    else if (line.startsWith(delimiter, i)) {
      out.push(field);
      field = '';
      i += delimiter.length - 1;
    } else field += ch;
  }
  if (quoted) throw new LineError('unterminated quoted field');
  out.push(field);
  return out;
}

/** One data line of a CSV file described by `cols`; null for a blank line. */
export function parseCsvLine(line: string, cols: CsvColumns): ParsedRow | null {
  if (line.trim().length === 0) return null;
  const f = splitCsvLine(line.endsWith('\r') ? line.slice(0, -1) : line, cols.delimiter);
  const user = (f[cols.user] ?? '').trim();
  const item = (f[cols.item] ?? '').trim();
  if (user.length === 0 || item.length === 0) throw new LineError('empty user or item id');
  const rawValue = cols.value >= 0 ? (f[cols.value] ?? '').trim() : '';
  const rawTime = cols.timestamp >= 0 ? (f[cols.timestamp] ?? '').trim() : '';
  const row: ParsedRow = {
    user,
    item,
    value: rawValue.length > 0 ? parseNumber(rawValue, 'value') : NaN,
    timestamp: parseTimestamp(rawTime),
  };
  if (cols.type >= 0) row.type = (f[cols.type] ?? '').trim();
  return row;
}
