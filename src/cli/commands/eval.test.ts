import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isCairnError } from '../../errors/errors.ts';
import { formatTable, runEval } from './eval.ts';
import { parseMetric, runTune } from './tune.ts';

const fixture = (name: string): string =>
  fileURLToPath(new URL(`../../../test/fixtures/datasets/${name}`, import.meta.url));

const base = { format: 'auto', protocol: 'random-holdout', seed: 42, k: 10, param: [] as string[] };

describe('cairn eval', () => {
  it('evaluates pre-split files: popularity ranks the unseen popular item first', async () => {
    const report = await runEval({
      ...base,
      k: 2,
      algorithms: 'pop',
      train: fixture('given/train.tsv'),
      test: fixture('given/test.tsv'),
    });
    // u4 and item z exist only in the test file; they join the index space.
    expect(report.dataset).toEqual({ users: 4, items: 4, interactions: 7 });
    expect(report.protocol).toBe('given');
    const [pop] = report.results;
    expect(pop.algorithm).toBe('pop');
    expect(Object.keys(pop.metrics)).toEqual([
      'ndcg@2',
      'recall@2',
      'precision@2',
      'map@2',
      'mrr@2',
      'hit@2',
      'coverage@2',
    ]);
    // u3 (train: a) gets b then c (tie on popularity broken by index): hit at rank 1.
    // u4 (no train) gets a, b: its test item z was never seen, so no hit.
    expect(pop.metrics['hit@2']).toBe(0.5);
    expect(pop.metrics['ndcg@2']).toBe(0.5);
    expect(pop.metrics['coverage@2']).toBe(0.75);
    expect(pop.train_seconds).toBeGreaterThanOrEqual(0);
  });

  it('runs every algorithm on a MovieTweetings slice with the fixed JSON shape', async () => {
    const report = await runEval({
      ...base,
      data: fixture('movietweetings/ratings.dat'),
      algorithms: 'pop,itemknn,als,bpr,ease',
      param: ['als.iterations=3', 'bpr.iterations=5'],
    });
    expect(Object.keys(report)).toEqual(['dataset', 'protocol', 'k', 'seed', 'results']);
    expect(report.results.map((r) => r.algorithm)).toEqual(['pop', 'itemknn', 'als', 'bpr', 'ease']);
    expect(report.results[2].params.iterations).toBe(3);
    for (const r of report.results) {
      expect(Object.keys(r)).toEqual(['algorithm', 'params', 'metrics', 'train_seconds']);
      for (const v of Object.values(r.metrics)) {
        expect(v).toBeGreaterThanOrEqual(0);
        expect(v).toBeLessThanOrEqual(1);
      }
    }
    expect(formatTable(report)).toContain('ndcg@10');
  });

  it('rejects unknown algorithms, bad --param flags and protocols before reading data', async () => {
    const code = async (p: Promise<unknown>): Promise<string | undefined> => {
      const e = await p.then(
        () => undefined,
        (err: unknown) => err,
      );
      return isCairnError(e) ? e.code : undefined;
    };
    const data = fixture('movietweetings/ratings.dat');
    expect(await code(runEval({ ...base, data, algorithms: 'nope' }))).toBe('CAIRN_VALIDATION');
    expect(await code(runEval({ ...base, data, algorithms: 'als', param: ['bpr.factors=8'] }))).toBe(
      'CAIRN_VALIDATION',
    );
    expect(await code(runEval({ ...base, data, algorithms: 'als', param: ['factors=8'] }))).toBe(
      'CAIRN_VALIDATION',
    );
    expect(await code(runEval({ ...base, data, algorithms: 'pop', protocol: 'by-magic' }))).toBe(
      'CAIRN_VALIDATION',
    );
  });
});

describe('cairn eval --tune', () => {
  /** Two taste groups: 160 users with 14 of the 30 items of their group each. */
  function trainLines(): string {
    const lines: string[] = [];
    for (let u = 0; u < 160; u++) {
      const base = u % 2 === 0 ? 0 : 30;
      for (let j = 0; j < 14; j++) lines.push(`u${u}\ti${base + ((u * 7 + j * 11) % 30)}\t1`);
    }
    return `${lines.join('\n')}\n`;
  }

  it('tunes on the training file alone: a garbage test file yields the same chosen parameters', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-eval-tune-'));
    try {
      const train = join(dir, 'train.tsv');
      await writeFile(train, trainLines());
      const good = join(dir, 'test.tsv');
      const goodLines: string[] = [];
      for (let u = 0; u < 160; u++) goodLines.push(`u${u}\ti${(u % 2 === 0 ? 0 : 30) + ((u * 7 + 3) % 30)}`);
      await writeFile(good, `${goodLines.join('\n')}\n`);
      // Garbage: unknown users and items (which join the index space), repeats, a malformed line.
      const garbage = join(dir, 'garbage.tsv');
      const junk = ['nobody\tnothing', 'u1\ti59', 'u1\ti59', 'u3\tnew-item', 'not a line at all'];
      for (let j = 0; j < 200; j++) junk.push(`x${j}\ty${j % 17}\t${j}`);
      await writeFile(garbage, `${junk.join('\n')}\n`);
      const run = (test: string) =>
        runEval({
          ...base,
          algorithms: 'itemknn,als',
          train,
          test,
          tune: 3,
          param: ['als.iterations=3', 'als.factors=8'],
        });
      const a = await run(good);
      const b = await run(garbage);
      expect(Object.keys(a)).toEqual(['dataset', 'protocol', 'k', 'seed', 'results']);
      for (const r of a.results) {
        expect(Object.keys(r)).toEqual(['algorithm', 'params', 'metrics', 'train_seconds', 'tuning']);
        expect(r.tuning).toMatchObject({ trials: 3, metric: 'ndcg@10' });
        expect(r.tuning!.best_validation).toBeGreaterThan(0);
      }
      // --param pins a parameter: it is fitted as given, not searched.
      expect(a.results[1].params.iterations).toBe(3);
      expect(formatTable(a)).toMatch(/als tuned: 3 trials, validation ndcg@10/);
      expect(b.dataset).not.toEqual(a.dataset);
      expect(b.results.map((r) => [r.params, r.tuning])).toEqual(
        a.results.map((r) => [r.params, r.tuning && { ...r.tuning, seconds: expect.any(Number) }]),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('cairn tune', () => {
  it('parses NAME@K metrics', () => {
    expect(parseMetric('ndcg@10')).toEqual({ name: 'ndcg', k: 10 });
    expect(parseMetric('recall@20')).toEqual({ name: 'recall', k: 20 });
    expect(() => parseMetric('ndcg')).toThrow();
    expect(() => parseMetric('auc@10')).toThrow();
  });

  it('tunes on the validation split, defaults first, within the budget', async () => {
    const report = await runTune({
      ...base,
      data: fixture('movietweetings/ratings.dat'),
      algorithms: 'itemknn',
      trials: 4,
      metric: 'ndcg@10',
      sampler: 'tpe',
      param: [],
    });
    const [r] = report.results;
    expect(r.trials).toBe(4);
    expect(r.history[0].source).toBe('initial');
    expect(r.default_score).toBe(r.history[0].score);
    expect(r.best_score).toBe(Math.max(...r.history.map((h) => h.score ?? -1)));
  });
});

describe('quality on generated data with planted tastes', () => {
  it('every personalized algorithm clearly beats popularity under default parameters', async () => {
    const { generateInteractions, DEMO_EVENT_TYPES } = await import('../../ingest/demo-data.ts');
    const { loadConfig } = await import('../../config/load.ts');
    const { interactionWeight } = await import('../../features/interactions.ts');
    const { prepareInteractions } = await import('../../evaluation/prepare.ts');
    const { splitInteractions } = await import('../../evaluation/splits.ts');
    const { evaluateAlgorithm } = await import('../../evaluation/evaluator.ts');
    const { ALGORITHMS } = await import('../../algorithms/index.ts');
    const g = generateInteractions({ users: 1500, items: 600, events: 80_000, seed: 11 });
    const types = loadConfig({ env: {} }).events.types;
    const typeNames = g.typeNames as readonly string[];
    expect(typeNames).toEqual(DEMO_EVENT_TYPES);
    const prepared = prepareInteractions(
      {
        users: Array.from({ length: g.users }, (_, u) => String(u)),
        items: Array.from({ length: g.items }, (_, i) => String(i)),
        userIdx: g.userIdx,
        itemIdx: g.itemIdx,
        // Only ratings carry a value; other event types weigh by type alone.
        values: Float32Array.from(g.types, (t, r) => (typeNames[t] === 'rating' ? g.weights[r] : NaN)),
        timestamps: g.timestamps,
        types: Array.from(g.types, (t) => typeNames[t]),
        valueKind: 'weight',
      },
      { weigh: (type, value) => interactionWeight(types, { type, value }) },
    );
    const split = splitInteractions(prepared.interactions, 'random-holdout', { seed: 42 });
    const ndcg: Record<string, number> = {};
    for (const spec of Object.values(ALGORITHMS)) {
      const r = await evaluateAlgorithm(spec, spec.defaults, split, {
        k: 10,
        target: 'test',
        threads: 1,
        seed: 42,
      });
      ndcg[spec.name] = r.metrics['ndcg@10'];
    }
    for (const name of ['itemknn', 'als', 'bpr', 'ease'])
      expect(ndcg[name], name).toBeGreaterThan(1.3 * ndcg.pop);
  });
});
