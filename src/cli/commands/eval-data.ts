/**
 * What `cairn eval` and `cairn tune` share: reading a data set (or pre-split train/test files),
 * filtering, weighting and splitting it under a protocol, and parsing `--param ALG.NAME=VALUE`.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { getAlgorithm, resolveParams } from '../../algorithms/index.ts';
import { csrFromCoo } from '../../algorithms/sparse.ts';
import type { AlgorithmSpec, Params, ParamValue } from '../../algorithms/types.ts';
import { loadConfig } from '../../config/load.ts';
import { CairnError } from '../../errors/errors.ts';
import type { Interactions } from '../../evaluation/filters.ts';
import { prepareInteractions } from '../../evaluation/prepare.ts';
import { PROTOCOLS, splitInteractions, type Protocol, type Split } from '../../evaluation/splits.ts';
import { interactionWeight } from '../../features/interactions.ts';
import {
  DATASET_FORMATS,
  readDataset,
  readTriples,
  type Dataset,
  type DatasetFormat,
} from '../../ingest/formats/index.ts';

export interface DataFlags {
  data?: string;
  format: string;
  protocol: string;
  seed: number;
  minRating?: number;
  kcore?: number;
  train?: string;
  test?: string;
  config?: string;
}

export interface LoadedData {
  split: Split;
  /** `given` when the split came from `--train`/`--test` files. */
  protocol: Protocol | 'given';
  dataset: { users: number; items: number; interactions: number };
  /**
   * `--train/--test` files: the users and items of the training file, which come first in the index
   * space (ids only the test file has follow them). Absent for a protocol split.
   */
  trainShape?: { users: number; items: number };
  /** One row per (user, item) pair with its time, what the split was made from (absent for `--train/--test`). */
  interactions?: Interactions;
}

/** Progress and notes go to stderr so stdout holds only the result. */
export function note(message: string): void {
  process.stderr.write(`${message}\n`);
}

export function parseNumberOption(
  name: string,
  opts: { integer?: boolean; min?: number } = {},
): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (
      v.trim() === '' ||
      !Number.isFinite(n) ||
      (opts.integer && !Number.isInteger(n)) ||
      (opts.min !== undefined && n < opts.min)
    ) {
      throw CairnError.validation([
        {
          field: name,
          message: `must be ${opts.integer ? 'an integer' : 'a number'}${opts.min !== undefined ? ` ≥ ${opts.min}` : ''}, got "${v}"`,
        },
      ]);
    }
    return n;
  };
}

/** Commander collector for repeatable options. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** `pop,itemknn,als` → specs, rejecting unknown names up front (before minutes of loading). */
export function parseAlgorithms(list: string): AlgorithmSpec[] {
  const names = list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (names.length === 0)
    throw CairnError.validation([{ field: 'algorithms', message: 'name at least one algorithm' }]);
  return names.map((n) => getAlgorithm(n));
}

function parseValue(raw: string): ParamValue {
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  const n = Number(raw);
  return raw.trim() !== '' && Number.isFinite(n) ? n : raw;
}

/** `--param als.factors=64` flags → per-algorithm overrides; each must name a listed algorithm. */
export function parseParamOverrides(values: string[], specs: AlgorithmSpec[]): Map<string, Params> {
  const out = new Map<string, Params>(specs.map((s) => [s.name, {}]));
  for (const v of values) {
    const m = /^([a-z0-9_-]+)\.([A-Za-z0-9_]+)=(.*)$/.exec(v);
    if (!m) throw CairnError.validation([{ field: 'param', message: `expected ALG.NAME=VALUE, got "${v}"` }]);
    const params = out.get(m[1]);
    if (!params)
      throw CairnError.validation([{ field: 'param', message: `"${m[1]}" is not among --algorithms` }]);
    params[m[2]] = parseValue(m[3]);
  }
  return out;
}

/** The resolved parameters of `spec` with `overrides` (validated by the registry). */
export function paramsFor(spec: AlgorithmSpec, overrides: Params | undefined): Params {
  return resolveParams(spec, overrides ?? {});
}

/**
 * Loads, prepares and splits the data the flags name. With `--train`/`--test` nothing is filtered or
 * split: the train file is fitted whole and the test file is the target.
 */
export async function loadData(flags: DataFlags): Promise<LoadedData> {
  if (flags.train !== undefined || flags.test !== undefined) return loadGivenSplit(flags);
  if (!flags.data)
    throw CairnError.validation([
      { field: 'data', message: 'pass --data PATH, or --train PATH --test PATH' },
    ]);
  if (flags.format !== 'auto' && !DATASET_FORMATS.includes(flags.format as DatasetFormat)) {
    throw CairnError.validation([
      { field: 'format', message: `must be auto or one of ${DATASET_FORMATS.join(', ')}` },
    ]);
  }
  if (!PROTOCOLS.includes(flags.protocol as Protocol)) {
    throw CairnError.validation([{ field: 'protocol', message: `must be one of ${PROTOCOLS.join(', ')}` }]);
  }
  const protocol = flags.protocol as Protocol;
  let started = performance.now();
  // A `cairn demo-data` directory evaluates on its event stream.
  const path = (await stat(flags.data).catch(() => null))?.isDirectory()
    ? join(flags.data, 'events.jsonl')
    : flags.data;
  const ds = await readDataset(path, flags.format as DatasetFormat | 'auto', {
    onProgress: (lines) => note(`reading ${path}: ${lines.toLocaleString('en')} lines`),
  });
  reportSkipped(path, ds);
  note(
    `read ${ds.userIdx.length.toLocaleString('en')} rows (${ds.format}, ${ds.users.length} users, ${ds.items.length} items) in ${secs(started)} s`,
  );
  started = performance.now();
  const types = ds.types ? loadConfig({ file: flags.config }).events.types : null;
  const prepared = prepareInteractions(ds, {
    minRating: flags.minRating,
    kcore: flags.kcore,
    weigh: types ? (type, value) => interactionWeight(types, { type, value }) : undefined,
  });
  const x = prepared.interactions;
  if (x.users.length === 0) {
    throw CairnError.validation([
      { field: 'data', message: 'no interactions left after filtering (--min-rating / --kcore)' },
    ]);
  }
  const split = splitInteractions(x, protocol, { seed: flags.seed });
  const c = prepared.counts;
  note(
    `prepared ${x.users.length.toLocaleString('en')} pairs (${c.pairs} distinct, ${c.afterMinRating} after --min-rating) over ${x.nUsers} users × ${x.nItems} items; ` +
      `split ${protocol}: train ${split.train.indices.length}, valid ${split.valid.indices.length}, test ${split.test.indices.length} (${secs(started)} s)`,
  );
  return {
    split,
    protocol,
    dataset: { users: x.nUsers, items: x.nItems, interactions: x.users.length },
    interactions: x,
  };
}

function reportSkipped(path: string, ds: Dataset): void {
  if (ds.errors.length === 0) return;
  const first = ds.errors[0];
  note(`warning: ${path}: skipped malformed lines (first at line ${first.line}: ${first.message})`);
}

async function loadGivenSplit(flags: DataFlags): Promise<LoadedData> {
  if (!flags.train || !flags.test)
    throw CairnError.validation([{ field: 'train', message: '--train and --test go together' }]);
  if (flags.data) note('note: --data is ignored with --train/--test');
  if (flags.minRating !== undefined || flags.kcore !== undefined)
    note('note: --min-rating and --kcore are ignored with --train/--test');
  const train = await readTriples(flags.train);
  const test = await readTriples(flags.test);
  reportSkipped(flags.train, train);
  reportSkipped(flags.test, test);
  // One index space: the train file's ids first, then ids only the test file has.
  const userIndex = new Map(train.users.map((u, i) => [u, i]));
  const itemIndex = new Map(train.items.map((u, i) => [u, i]));
  const map = (ids: string[], index: Map<string, number>): Int32Array =>
    Int32Array.from(ids, (id) => {
      let i = index.get(id);
      if (i === undefined) {
        i = index.size;
        index.set(id, i);
      }
      return i;
    });
  const testUser = map(test.users, userIndex);
  const testItem = map(test.items, itemIndex);
  const nUsers = userIndex.size;
  const nItems = itemIndex.size;
  const weights = Float32Array.from(train.values, (v) => (Number.isNaN(v) ? 1 : v));
  const trainCsr = csrFromCoo(nUsers, nItems, train.userIdx, train.itemIdx, weights);
  const testCsr = csrFromCoo(
    nUsers,
    nItems,
    Int32Array.from(test.userIdx, (u) => testUser[u]),
    Int32Array.from(test.itemIdx, (i) => testItem[i]),
    null,
  );
  const empty = csrFromCoo(nUsers, nItems, [], [], null);
  // A test pair also in train would be excluded from the candidates and could never be hit.
  let overlap = 0;
  for (let u = 0; u < nUsers; u++) {
    let p = trainCsr.indptr[u];
    for (let q = testCsr.indptr[u]; q < testCsr.indptr[u + 1]; q++) {
      while (p < trainCsr.indptr[u + 1] && trainCsr.indices[p] < testCsr.indices[q]) p++;
      if (p < trainCsr.indptr[u + 1] && trainCsr.indices[p] === testCsr.indices[q]) overlap++;
    }
  }
  if (overlap > 0)
    note(`warning: ${overlap} test pairs also appear in the train file; they cannot be recommended`);
  note(
    `train ${trainCsr.indices.length} pairs, test ${testCsr.indices.length} pairs over ${nUsers} users × ${nItems} items`,
  );
  return {
    split: { protocol: 'given', train: trainCsr, valid: empty, test: testCsr },
    protocol: 'given',
    dataset: { users: nUsers, items: nItems, interactions: trainCsr.indices.length + testCsr.indices.length },
    trainShape: { users: train.users.length, items: train.items.length },
  };
}

export function secs(since: number): string {
  return ((performance.now() - since) / 1000).toFixed(1);
}

/** Rounds for the JSON report: metrics to 6 decimals, so documents diff cleanly between runs. */
export function round(x: number, digits = 6): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
