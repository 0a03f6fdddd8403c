import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { isCairnError } from '../../errors/errors.ts';
import {
  detectFormat,
  forEachLine,
  LineError,
  parseCsvHeader,
  parseCsvLine,
  parseJsonlLine,
  parseLastfmLine,
  parseMovieLensLine,
  parseMovieTweetingsLine,
  readDataset,
  splitCsvLine,
  type Dataset,
} from './index.ts';

const fixture = (name: string): string =>
  fileURLToPath(new URL(`../../../test/fixtures/datasets/${name}`, import.meta.url));

const tmp = mkdtempSync(join(tmpdir(), 'cairn-formats-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The (user, item, value, time) rows of a data set with external ids, for readable assertions. */
function rows(d: Dataset): [string, string, number, number][] {
  return Array.from(d.userIdx, (u, r) => [d.users[u], d.items[d.itemIdx[r]], d.values[r], d.timestamps[r]]);
}

describe('line parsers', () => {
  it('reads the three MovieLens layouts, seconds to ms', () => {
    expect(parseMovieLensLine('196\t242\t3\t881250949', 'tab')).toEqual({
      user: '196',
      item: '242',
      value: 3,
      timestamp: 881250949000,
    });
    expect(parseMovieLensLine('1::1193::5::978300760', 'dat')).toEqual({
      user: '1',
      item: '1193',
      value: 5,
      timestamp: 978300760000,
    });
    expect(parseMovieLensLine('1,31,2.5,1260759144', 'csv')?.value).toBe(2.5);
    expect(parseMovieLensLine('userId,movieId,rating,timestamp', 'csv')).toBeNull();
    expect(parseMovieLensLine('   ', 'tab')).toBeNull();
    // Without a timestamp column the time is unknown, not zero.
    expect(parseMovieLensLine('5\t6\t4', 'tab')?.timestamp).toBeNaN();
    expect(() => parseMovieLensLine('1\t2', 'tab')).toThrow(LineError);
    expect(() => parseMovieLensLine('1\t2\tfive\t3', 'tab')).toThrow(/rating/);
  });

  it('keeps MovieTweetings zero-padded IMDb ids as strings and requires a timestamp', () => {
    expect(parseMovieTweetingsLine('2::0104257::8::1364690142')).toEqual({
      user: '2',
      item: '0104257',
      value: 8,
      timestamp: 1364690142000,
    });
    expect(() => parseMovieTweetingsLine('2::0104257::8')).toThrow(LineError);
  });

  it('reads Last.fm play counts and skips the header', () => {
    expect(parseLastfmLine('userID\tartistID\tweight')).toBeNull();
    expect(parseLastfmLine('2\t51\t13883')).toEqual({ user: '2', item: '51', value: 13883, timestamp: NaN });
    expect(() => parseLastfmLine('2\t51\t-1')).toThrow(LineError);
  });

  it('maps CSV header names to roles whatever their spelling', () => {
    const cols = parseCsvHeader('Timestamp;Item ID;USER_ID;Rating');
    expect(cols).toMatchObject({
      delimiter: ';',
      user: 2,
      item: 1,
      value: 3,
      timestamp: 0,
      type: -1,
      valueKind: 'rating',
    });
    expect(parseCsvHeader('user_id\titem_id\tplays').valueKind).toBe('count');
    expect(parseCsvHeader('user_id,item_id').valueKind).toBe('none');
    expect(() => parseCsvHeader('a,b,c')).toThrow(LineError);
  });

  it('splits quoted CSV fields and parses epoch or ISO times', () => {
    expect(splitCsvLine('a,"b, c","d ""q"""', ',')).toEqual(['a', 'b, c', 'd "q"']);
    expect(() => splitCsvLine('a,"b', ',')).toThrow(LineError);
    const cols = parseCsvHeader('user_id,item_id,type,value,timestamp');
    expect(parseCsvLine('u,i,view,,2024-01-01T00:00:00Z', cols)).toEqual({
      user: 'u',
      item: 'i',
      value: NaN,
      timestamp: Date.UTC(2024, 0, 1),
      type: 'view',
    });
    // Epoch seconds and epoch ms both land in ms.
    expect(parseCsvLine('u,i,view,1,1704067200', cols)?.timestamp).toBe(Date.UTC(2024, 0, 1));
    expect(parseCsvLine('u,i,view,1,1704067200000', cols)?.timestamp).toBe(Date.UTC(2024, 0, 1));
    expect(() => parseCsvLine('u,i,view,1,yesterday', cols)).toThrow(/timestamp/);
    expect(() => parseCsvLine(',i,view,1,', cols)).toThrow(/empty/);
  });

  it('reads Cairn wire-format events from JSONL', () => {
    expect(
      parseJsonlLine('{"event_id":"e","user_id":"u","item_id":"i","type":"view","timestamp":5}'),
    ).toEqual({
      user: 'u',
      item: 'i',
      value: NaN,
      timestamp: 5,
      type: 'view',
    });
    expect(
      parseJsonlLine(
        '{"user_id":"u","item_id":"i","type":"rating","value":4,"timestamp":"2024-01-01T00:00:00.000Z"}',
      ),
    ).toMatchObject({ value: 4, timestamp: Date.UTC(2024, 0, 1) });
    expect(parseJsonlLine('')).toBeNull();
    expect(() => parseJsonlLine('{"user_id":"u","item_id":"i"}')).toThrow(/type/);
    expect(() => parseJsonlLine('{"user_id":"u","item_id":"i","type":"v","value":"4"}')).toThrow(/value/);
    expect(() => parseJsonlLine('[1]')).toThrow(LineError);
    expect(() => parseJsonlLine('{oops')).toThrow(/JSON/);
  });
});

describe('detectFormat', () => {
  it('recognises files by name and first line', () => {
    expect(detectFormat('/x/u.data', '196\t242\t3\t881250949')).toBe('movielens');
    expect(detectFormat('/x/whatever.tsv', '196\t242\t3\t881250949')).toBe('movielens');
    expect(detectFormat('/x/ratings.dat', '1::1193::5::978300760')).toBe('movielens');
    expect(detectFormat('/x/ratings.dat', '1::0114508::8::1381006850')).toBe('movietweetings');
    expect(detectFormat('/data/MovieTweetings/ratings.dat', '1::1193::5::978300760')).toBe('movietweetings');
    expect(detectFormat('/x/ratings.csv', 'userId,movieId,rating,timestamp')).toBe('movielens');
    expect(detectFormat('/x/user_artists.dat', 'userID\tartistID\tweight')).toBe('lastfm');
    expect(detectFormat('/x/events.jsonl.gz', '')).toBe('jsonl');
    expect(detectFormat('/x/dump.txt', '{"user_id":"u"}')).toBe('jsonl');
    expect(detectFormat('/x/events.csv', 'user_id,item_id,type')).toBe('csv');
    expect(detectFormat('/x/notes.txt', 'hello world')).toBeNull();
  });
});

describe('readDataset', () => {
  it('reads MovieLens u.data, interning ids in order of appearance', async () => {
    const d = await readDataset(fixture('movielens/u.data'), 'auto');
    expect(d.format).toBe('movielens');
    expect(d.valueKind).toBe('rating');
    expect(d.users).toEqual(['196', '186', '22', '244']);
    expect(d.items).toEqual(['242', '302', '377', '51']);
    expect(Array.from(d.userIdx)).toEqual([0, 1, 2, 0, 3]);
    expect(Array.from(d.itemIdx)).toEqual([0, 1, 2, 1, 3]);
    expect(rows(d)[3]).toEqual(['196', '302', 5, 881250950000]);
    expect(d.types).toBeNull();
    expect(d.skipped).toBe(1); // the blank line
  });

  it('reads MovieLens ratings.dat and ratings.csv (CRLF, header)', async () => {
    const dat = await readDataset(fixture('movielens/ratings.dat'), 'auto');
    expect(rows(dat)).toEqual([
      ['1', '1193', 5, 978300760000],
      ['1', '661', 3, 978302109000],
      ['2', '1193', 4, 978298413000],
      ['2', '3068', 4, 978299000000],
    ]);
    const csv = await readDataset(fixture('movielens/ratings.csv'), 'auto');
    expect(csv.format).toBe('movielens');
    expect(rows(csv)).toEqual([
      ['1', '31', 2.5, 1260759144000],
      ['1', '1029', 3, 1260759179000],
      ['7', '31', 4.5, 1260759200000],
    ]);
  });

  it('reads the MovieTweetings slice with its padded ids', async () => {
    const d = await readDataset(fixture('movietweetings/ratings.dat'), 'auto');
    expect(d.format).toBe('movietweetings');
    expect(d.userIdx.length).toBe(150);
    expect(d.items).toContain('0104257');
    expect(rows(d)[0]).toEqual(['1', '1074638', 7, 1365029107000]);
    for (let r = 0; r < d.values.length; r++) {
      expect(d.values[r]).toBeGreaterThanOrEqual(0);
      expect(d.values[r]).toBeLessThanOrEqual(10);
    }
  });

  it('reads Last.fm counts without timestamps', async () => {
    const d = await readDataset(fixture('lastfm/user_artists.dat'), 'auto');
    expect(d.format).toBe('lastfm');
    expect(d.valueKind).toBe('count');
    expect(rows(d)).toEqual([
      ['2', '51', 13883, NaN],
      ['2', '52', 11690, NaN],
      ['3', '51', 5, NaN],
      ['4', '99', 1, NaN],
    ]);
  });

  it('reads typed CSV and JSONL events', async () => {
    const csv = await readDataset(fixture('events.csv'), 'auto');
    expect(csv.format).toBe('csv');
    expect(csv.types).toEqual(['view', 'purchase', 'rating', 'vi"ew']);
    expect(csv.items).toEqual(['i1', 'item, with comma', 'i2']);
    expect(Array.from(csv.values)).toEqual([NaN, 2, 4.5, NaN]);
    expect(Array.from(csv.timestamps)).toEqual([
      Date.UTC(2024, 0, 1, 10),
      Date.UTC(2024, 0, 1, 10, 5),
      1704103200000,
      NaN,
    ]);
    const jsonl = await readDataset(fixture('events.jsonl'), 'auto');
    expect(jsonl.format).toBe('jsonl');
    expect(jsonl.types).toEqual(['view', 'purchase', 'like']);
    expect(rows(jsonl)).toEqual([
      ['u1', 'i1', NaN, 1704103200000],
      ['u1', 'i2', Math.fround(29.9), Date.UTC(2024, 0, 1, 10, 5)],
      ['u2', 'i1', NaN, NaN],
    ]);
  });

  it('honours an explicit format and reads gzip files', async () => {
    const text = '1::0000001::9::100\n2::0000001::3::200\n';
    const path = join(tmp, 'ratings.dat.gz');
    writeFileSync(path, gzipSync(text));
    const d = await readDataset(path, 'movietweetings');
    expect(rows(d)).toEqual([
      ['1', '0000001', 9, 100000],
      ['2', '0000001', 3, 200000],
    ]);
  });

  it('skips a few malformed lines, reports them, and fails beyond maxErrors', async () => {
    const path = join(tmp, 'bad.data');
    writeFileSync(path, '1\t2\t3\t4\nbroken line\n1\t3\tx\t4\n2\t2\t5\t9\n');
    const d = await readDataset(path, 'movielens');
    expect(d.userIdx.length).toBe(2);
    expect(d.errors.map((e) => e.line)).toEqual([2, 3]);
    await expect(readDataset(path, 'movielens', { maxErrors: 1 })).rejects.toSatisfy(
      (e) => isCairnError(e) && e.code === 'CAIRN_VALIDATION',
    );
  });

  it('fails with a validation error for missing, empty or unknown files', async () => {
    const code = (e: unknown): string | undefined => (isCairnError(e) ? e.code : undefined);
    expect(code(await readDataset(join(tmp, 'missing.csv'), 'auto').catch((e: unknown) => e))).toBe(
      'CAIRN_VALIDATION',
    );
    const empty = join(tmp, 'empty.data');
    writeFileSync(empty, '\n\n');
    expect(code(await readDataset(empty, 'movielens').catch((e: unknown) => e))).toBe('CAIRN_VALIDATION');
    const unknown = join(tmp, 'notes.txt');
    writeFileSync(unknown, 'hello world\n');
    expect(code(await readDataset(unknown, 'auto').catch((e: unknown) => e))).toBe('CAIRN_VALIDATION');
    const noHeader = join(tmp, 'x.csv');
    writeFileSync(noHeader, 'a,b\n1,2\n');
    expect(code(await readDataset(noHeader, 'csv').catch((e: unknown) => e))).toBe('CAIRN_VALIDATION');
  });
});

describe('forEachLine', () => {
  it('yields every line intact across 1 MB chunk boundaries, with BOM and CRLF removed', async () => {
    const n = 120_000;
    const lines = Array.from({ length: n }, (_, i) => `${i}\tülkü-${i % 97}\t${(i * 7) % 5}`);
    const path = join(tmp, 'many.tsv');
    writeFileSync(path, '\uFEFF' + lines.join('\r\n')); // no trailing newline: the last line still counts
    const seen: string[] = [];
    const count = await forEachLine(path, (line) => seen.push(line));
    expect(count).toBe(n);
    expect(seen).toEqual(lines);
  });
});
