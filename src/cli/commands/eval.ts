/**
 * `cairn eval`: offline evaluation of algorithms on a data file under a stated protocol (full
 * ranking, RecBole definitions). With `--json` stdout holds exactly one JSON document (DESIGN §4);
 * progress and notes go to stderr.
 */
import type { Command } from 'commander';
import { evaluateAlgorithm } from '../../evaluation/evaluator.ts';
import { progressBar } from '../progress.ts';
import {
  collect,
  loadData,
  note,
  paramsFor,
  parseAlgorithms,
  parseNumberOption,
  parseParamOverrides,
  round,
  type DataFlags,
} from './eval-data.ts';

/** Threads for fitting: fixed so `train_seconds` compare across machines with ≥ 2 cores. */
const FIT_THREADS = 2;

interface EvalFlags extends DataFlags {
  algorithms: string;
  k: number;
  param: string[];
  json?: boolean;
}

export interface EvalResult {
  algorithm: string;
  params: Record<string, number | string | boolean>;
  metrics: Record<string, number>;
  train_seconds: number;
}

export interface EvalReport {
  dataset: { users: number; items: number; interactions: number };
  protocol: string;
  k: number;
  seed: number;
  results: EvalResult[];
}

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description('evaluate algorithms offline on a data file (full ranking, RecBole metric definitions)')
    .option('--data <path>', 'interaction file (MovieLens, MovieTweetings, Last.fm, CSV or JSONL events)')
    .option('--format <format>', 'auto | movielens | movietweetings | lastfm | csv | jsonl', 'auto')
    .option('--protocol <protocol>', 'random-holdout | leave-last-out | temporal', 'random-holdout')
    .option('--algorithms <list>', 'comma-separated: pop,itemknn,als,bpr,ease', 'pop,itemknn,als,bpr,ease')
    .option('--k <n>', 'cut-off of the @k metrics', parseNumberOption('k', { integer: true, min: 1 }), 10)
    .option(
      '--seed <n>',
      'seed of the split and of model fitting',
      parseNumberOption('seed', { integer: true }),
      42,
    )
    .option('--min-rating <r>', 'keep interactions with value ≥ r', parseNumberOption('min-rating'))
    .option(
      '--kcore <n>',
      'iteratively keep users and items with ≥ n interactions',
      parseNumberOption('kcore', { integer: true, min: 1 }),
    )
    .option('--train <path>', 'pre-split training pairs (tab-separated user item [weight]); needs --test')
    .option('--test <path>', 'pre-split test pairs (tab-separated user item [weight]); needs --train')
    .option(
      '--param <ALG.NAME=VALUE>',
      'override one hyper-parameter, e.g. als.factors=64 (repeatable)',
      collect,
      [],
    )
    .option('--config <file>', 'configuration file (event-type weights for typed event files)')
    .option('--json', 'print one JSON document on stdout')
    .action(async (flags: EvalFlags) => {
      const report = await runEval(flags);
      if (flags.json) process.stdout.write(`${JSON.stringify(report)}\n`);
      else process.stdout.write(formatTable(report));
    });
}

/** Runs the evaluation the flags describe and returns the report (exported for tests). */
export async function runEval(flags: EvalFlags): Promise<EvalReport> {
  const specs = parseAlgorithms(flags.algorithms);
  const overrides = parseParamOverrides(flags.param, specs);
  // Resolve every algorithm's parameters before loading: a typo fails in milliseconds, not minutes.
  const params = new Map(specs.map((s) => [s.name, paramsFor(s, overrides.get(s.name))]));
  const { split, protocol, dataset } = await loadData(flags);
  const results: EvalResult[] = [];
  for (const spec of specs) {
    const bar = progressBar(`eval ${spec.name}`);
    const r = await evaluateAlgorithm(spec, params.get(spec.name)!, split, {
      k: flags.k,
      target: 'test',
      threads: FIT_THREADS,
      seed: flags.seed,
      onProgress: (f, stage) => bar.update(f, stage),
    });
    bar.stop();
    note(
      `${spec.name}: ndcg@${flags.k} ${r.metrics[`ndcg@${flags.k}`].toFixed(4)} over ${r.users} users; fit ${r.trainSeconds.toFixed(2)} s, scoring ${r.scoreSeconds.toFixed(2)} s`,
    );
    const metrics: Record<string, number> = {};
    for (const [name, v] of Object.entries(r.metrics)) metrics[name] = round(v);
    results.push({
      algorithm: spec.name,
      params: r.params,
      metrics,
      train_seconds: round(r.trainSeconds, 3),
    });
  }
  return { dataset, protocol, k: flags.k, seed: flags.seed, results };
}

/** The report as an aligned text table. */
export function formatTable(report: EvalReport): string {
  const names = report.results.length > 0 ? Object.keys(report.results[0].metrics) : [];
  const header = ['algorithm', ...names, 'train s'];
  const rows = report.results.map((r) => [
    r.algorithm,
    ...names.map((n) => r.metrics[n].toFixed(4)),
    r.train_seconds.toFixed(2),
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]): string =>
    cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ');
  const d = report.dataset;
  return [
    `${d.users} users, ${d.items} items, ${d.interactions} interactions; protocol ${report.protocol}, k=${report.k}, seed ${report.seed}`,
    line(header),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    '',
  ].join('\n');
}
