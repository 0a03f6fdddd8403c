/**
 * `cairn tune`: hyper-parameter search per algorithm on the VALIDATION part of a split (fit on train,
 * score valid with train items excluded). The test part is never looked at, so a later `cairn eval
 * --param …` of the winner is an honest estimate. The algorithm's defaults are always trial 0, which
 * shows whether tuning beat them at all.
 */
import type { Command } from 'commander';
import type { Params } from '../../algorithms/types.ts';
import { CairnError } from '../../errors/errors.ts';
import { evaluateAlgorithm } from '../../evaluation/evaluator.ts';
import { RANKING_METRICS } from '../../evaluation/metrics.ts';
import { tune, type Sampler, type Trial } from '../../evaluation/tuner.ts';
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

const FIT_THREADS = 2;

interface TuneFlags extends DataFlags {
  algorithms: string;
  trials: number;
  metric: string;
  sampler: string;
  patience?: number;
  param: string[];
  json?: boolean;
}

export interface TuneReport {
  dataset: { users: number; items: number; interactions: number };
  protocol: string;
  metric: string;
  seed: number;
  sampler: Sampler;
  results: {
    algorithm: string;
    best_params: Params;
    best_score: number;
    default_params: Params;
    default_score: number;
    trials: number;
    stopped_early: boolean;
    seconds: number;
    history: {
      trial: number;
      source: string;
      params: Params;
      score: number | null;
      seconds: number;
      error?: string;
    }[];
  }[];
}

/** `ndcg@10` → metric name and k. */
export function parseMetric(metric: string): { name: string; k: number } {
  const m = /^([a-z]+)@(\d+)$/.exec(metric);
  const valid = [...RANKING_METRICS, 'coverage'] as string[];
  if (!m || !valid.includes(m[1]) || Number(m[2]) < 1) {
    throw CairnError.validation([
      { field: 'metric', message: `expected NAME@K with NAME one of ${valid.join(', ')}, got "${metric}"` },
    ]);
  }
  return { name: m[1], k: Number(m[2]) };
}

export function registerTune(program: Command): void {
  program
    .command('tune')
    .description('search hyper-parameters per algorithm on the validation split (never the test split)')
    .option('--data <path>', 'interaction file (MovieLens, MovieTweetings, Last.fm, CSV or JSONL events)')
    .option('--format <format>', 'auto | movielens | movietweetings | lastfm | csv | jsonl', 'auto')
    .option('--protocol <protocol>', 'random-holdout | leave-last-out | temporal', 'random-holdout')
    .option(
      '--algorithms <list>',
      'comma-separated: pop,itemknn,als,bpr,ease,rp3beta',
      'itemknn,als,bpr,ease',
    )
    .option(
      '--trials <n>',
      'trial budget per algorithm (the defaults are trial 1)',
      parseNumberOption('trials', { integer: true, min: 1 }),
      30,
    )
    .option(
      '--seed <n>',
      'seed of the split, the sampler and fitting',
      parseNumberOption('seed', { integer: true }),
      42,
    )
    .option('--metric <name@k>', 'validation metric to maximise', 'ndcg@10')
    .option('--sampler <sampler>', 'tpe | random', 'tpe')
    .option(
      '--patience <n>',
      'stop after n trials without improvement',
      parseNumberOption('patience', { integer: true, min: 1 }),
    )
    .option('--min-rating <r>', 'keep interactions with value ≥ r', parseNumberOption('min-rating'))
    .option(
      '--kcore <n>',
      'iteratively keep users and items with ≥ n interactions',
      parseNumberOption('kcore', { integer: true, min: 1 }),
    )
    .option(
      '--param <ALG.NAME=VALUE>',
      'fix one hyper-parameter instead of searching it (repeatable)',
      collect,
      [],
    )
    .option('--config <file>', 'configuration file (event-type weights for typed event files)')
    .option('--json', 'print one JSON document on stdout')
    .action(async (flags: TuneFlags) => {
      const report = await runTune(flags);
      if (flags.json) process.stdout.write(`${JSON.stringify(report)}\n`);
      else process.stdout.write(formatTuneReport(report));
    });
}

/** Runs the search the flags describe (exported for tests). */
export async function runTune(flags: TuneFlags): Promise<TuneReport> {
  if (flags.sampler !== 'tpe' && flags.sampler !== 'random') {
    throw CairnError.validation([{ field: 'sampler', message: 'must be tpe or random' }]);
  }
  if (flags.train || flags.test) {
    throw CairnError.validation([
      { field: 'train', message: 'tune needs a validation split: pass --data, not --train/--test' },
    ]);
  }
  const sampler = flags.sampler;
  const metric = parseMetric(flags.metric);
  const key = `${metric.name}@${metric.k}`;
  const specs = parseAlgorithms(flags.algorithms);
  const fixed = parseParamOverrides(flags.param, specs);
  for (const s of specs) paramsFor(s, fixed.get(s.name)); // validate early
  const { split, protocol, dataset } = await loadData(flags);
  if (split.valid.indices.length === 0) {
    throw CairnError.validation([
      {
        field: 'data',
        message: 'the split has no validation pairs to tune on (too few interactions per user?)',
      },
    ]);
  }
  const results: TuneReport['results'] = [];
  for (const spec of specs) {
    const started = performance.now();
    const fixedParams = fixed.get(spec.name) ?? {};
    const space = Object.fromEntries(Object.entries(spec.space).filter(([name]) => !(name in fixedParams)));
    const defaults = paramsFor(spec, fixedParams);
    const budget = Object.keys(space).length === 0 ? 1 : flags.trials;
    const outcome = await tune(
      space,
      async (params) => {
        const r = await evaluateAlgorithm(spec, paramsFor(spec, params), split, {
          k: metric.k,
          target: 'valid',
          threads: FIT_THREADS,
          seed: flags.seed,
        });
        return r.metrics[key];
      },
      {
        trials: budget,
        seed: flags.seed,
        sampler,
        patience: flags.patience,
        initial: [defaults],
        fixed: fixedParams,
        onTrial: (t: Trial, best: Trial) =>
          note(
            `tune ${spec.name} #${t.index + 1}/${budget} ${key}=${fmt(t.score)} (best ${fmt(best.score)}) ${JSON.stringify(t.params)} ${t.seconds.toFixed(1)} s${t.error ? ` error: ${t.error}` : ''}`,
          ),
      },
    );
    const first = outcome.trials[0];
    results.push({
      algorithm: spec.name,
      best_params: paramsFor(spec, outcome.best.params),
      best_score: round(outcome.best.score),
      default_params: defaults,
      default_score: round(first.score),
      trials: outcome.trials.length,
      stopped_early: outcome.stoppedEarly,
      seconds: round((performance.now() - started) / 1000, 1),
      history: outcome.trials.map((t) => ({
        trial: t.index + 1,
        source: t.source,
        params: t.params,
        score: Number.isFinite(t.score) ? round(t.score) : null,
        seconds: round(t.seconds, 2),
        ...(t.error ? { error: t.error } : {}),
      })),
    });
  }
  return { dataset, protocol, metric: key, seed: flags.seed, sampler, results };
}

function fmt(x: number): string {
  return Number.isFinite(x) ? x.toFixed(4) : 'failed';
}

export function formatTuneReport(report: TuneReport): string {
  const lines = [
    `${report.dataset.users} users, ${report.dataset.items} items, ${report.dataset.interactions} interactions; protocol ${report.protocol}; validation ${report.metric}; ${report.sampler}, seed ${report.seed}`,
  ];
  for (const r of report.results) {
    lines.push(
      `${r.algorithm}: best ${r.best_score.toFixed(4)} (defaults ${r.default_score.toFixed(4)}) after ${r.trials} trials${r.stopped_early ? ' (stopped early)' : ''}, ${r.seconds} s`,
      `  best params: ${JSON.stringify(r.best_params)}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
