/**
 * `cairn eval`: offline evaluation of algorithms on a data file under a stated protocol (full
 * ranking, RecBole definitions). With `--json` stdout holds exactly one JSON document (DESIGN §4);
 * progress and notes go to stderr.
 */
import type { Command } from 'commander';
import { loadConfig } from '../../config/load.ts';
import { CairnError } from '../../errors/errors.ts';
import { evaluateAlgorithm } from '../../evaluation/evaluator.ts';
import {
  evaluateLtr,
  LTR_DEFAULTS,
  pairTimes,
  resolveLtrSettings,
  type LtrSettings,
} from '../../evaluation/ltr.ts';
import { cropCsr, selfTune, type SelfTuneResult } from '../../evaluation/self-tune.ts';
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
import { parseMetric } from './tune.ts';

/** Threads for fitting: fixed so `train_seconds` compare across machines with ≥ 2 cores. */
const FIT_THREADS = 2;

interface EvalFlags extends DataFlags {
  algorithms: string;
  k: number;
  param: string[];
  /** Trials per algorithm of the self-tuning on a validation part of the training data (0: off). */
  tune?: number;
  /** Validation metric of the tuning (default `ndcg@K` with the report's k). */
  tuneMetric?: string;
  json?: boolean;
}

export interface EvalResult {
  algorithm: string;
  /** The parameters fitted: the chosen ones when tuned. */
  params: Record<string, number | string | boolean>;
  metrics: Record<string, number>;
  train_seconds: number;
  /** With `--tune N`: the search that chose `params` (validation carved from the training part). */
  tuning?: { trials: number; metric: string; best_validation: number; seconds: number };
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
    .option(
      '--algorithms <list>',
      'comma-separated: pop,itemknn,als,bpr,ease,rp3beta,ltr (two-stage: retrievers + LambdaMART)',
      'pop,itemknn,als,bpr,ease',
    )
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
    .option(
      '--tune <n>',
      'tune each algorithm with n trials on a validation part carved from the training data, then refit the best',
      parseNumberOption('tune', { integer: true, min: 0 }),
      0,
    )
    .option('--tune-metric <name@k>', 'validation metric the tuning maximises (default ndcg@K)')
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
  // `ltr` is the two-stage pipeline (evaluation/ltr.ts), not a registry algorithm.
  const names = flags.algorithms
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const ltr = names.includes('ltr') ? ltrSettings(flags) : null;
  const singles = names.filter((n) => n !== 'ltr');
  const specs = ltr && singles.length === 0 ? [] : parseAlgorithms(singles.join(','));
  const overrides = parseParamOverrides(
    flags.param.filter((p) => !p.startsWith('ltr.')),
    specs,
  );
  // Resolve every algorithm's parameters before loading: a typo fails in milliseconds, not minutes.
  const params = new Map(specs.map((s) => [s.name, paramsFor(s, overrides.get(s.name))]));
  const tuneTrials = flags.tune ?? 0;
  const tuneMetric = parseMetric(flags.tuneMetric ?? `ndcg@${flags.k}`);
  const loaded = await loadData(flags);
  const { split, protocol, dataset, trainShape } = loaded;
  // The tuning gets the training part and nothing else; with --train/--test files, cropped to the
  // training file's own users and items (ids only the test file has come after them).
  const tuneOn = trainShape ? cropCsr(split.train, trainShape.users, trainShape.items) : split.train;
  const results: EvalResult[] = [];
  const bySpec = new Map(specs.map((s) => [s.name as string, s]));
  for (const name of new Set(names)) {
    if (name === 'ltr') {
      results.push(await runLtr(flags, ltr!, split, loaded.interactions));
      continue;
    }
    const spec = bySpec.get(name)!;
    let tuned: SelfTuneResult | null = null;
    if (tuneTrials > 0) {
      // --param flags pin a parameter: it is not searched.
      tuned = await selfTune(spec, tuneOn, {
        trials: tuneTrials,
        metric: tuneMetric,
        seed: flags.seed,
        threads: FIT_THREADS,
        initial: [params.get(spec.name)!],
        fixed: overrides.get(spec.name) ?? {},
        onTrial: (t, best) =>
          note(
            `tune ${spec.name} #${t.index + 1}/${tuneTrials} validation ${tuneMetric.name}@${tuneMetric.k}=${fmt(t.score)} (best ${fmt(best.score)}) ${JSON.stringify(t.params)} ${t.seconds.toFixed(1)} s${t.error ? ` error: ${t.error}` : ''}`,
          ),
      });
      note(
        `tune ${spec.name}: chose ${JSON.stringify(tuned.best.params)} after ${tuned.trials.length} trials (validation ${tuned.metric} ${tuned.best.score.toFixed(4)} on ${tuned.validationUsers} users, ${tuned.seconds.toFixed(1)} s); refitting on the whole training part`,
      );
    }
    const bar = progressBar(`eval ${spec.name}`);
    const r = await evaluateAlgorithm(spec, tuned ? tuned.params : params.get(spec.name)!, split, {
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
      ...(tuned
        ? {
            tuning: {
              trials: tuned.trials.length,
              metric: tuned.metric,
              best_validation: round(tuned.best.score),
              seconds: round(tuned.seconds, 1),
            },
          }
        : {}),
    });
  }
  return { dataset, protocol, k: flags.k, seed: flags.seed, results };
}

/** `ranking` config (defaults, file, env) with `--param ltr.NAME=VALUE` on top; checked before loading. */
function ltrSettings(flags: EvalFlags): {
  settings: LtrSettings;
  halfLivesDays: readonly number[];
  recentItems: number;
} {
  const config = loadConfig({ file: flags.config });
  const r = config.ranking;
  const base: LtrSettings = {
    ...LTR_DEFAULTS,
    candidates: r.candidates,
    retrievers: [...r.retrievers] as LtrSettings['retrievers'],
    easeMaxItems: r.easeMaxItems,
    lambdaMart: { ...LTR_DEFAULTS.lambdaMart, ...r.lambdaMart },
  };
  const overrides: Record<string, string | number | boolean> = {};
  for (const p of flags.param) {
    if (!p.startsWith('ltr.')) continue;
    const m = /^ltr\.([A-Za-z0-9_.]+)=(.*)$/.exec(p);
    if (!m) throw CairnError.validation([{ field: 'param', message: `expected ltr.NAME=VALUE, got "${p}"` }]);
    const n = Number(m[2]);
    overrides[m[1]] =
      m[2] === 'true' ? true : m[2] === 'false' ? false : m[2].trim() !== '' && Number.isFinite(n) ? n : m[2];
  }
  return {
    settings: resolveLtrSettings(base, overrides),
    halfLivesDays: config.features.halfLivesDays,
    recentItems: config.serving.recentItems,
  };
}

async function runLtr(
  flags: EvalFlags,
  ltr: { settings: LtrSettings; halfLivesDays: readonly number[]; recentItems: number },
  split: Awaited<ReturnType<typeof loadData>>['split'],
  interactions: Awaited<ReturnType<typeof loadData>>['interactions'],
): Promise<EvalResult> {
  const bar = progressBar('eval ltr');
  const times = interactions
    ? pairTimes(split.train, interactions)
    : new Float64Array(split.train.indices.length).fill(Number.NaN);
  const r = await evaluateLtr(split, times, {
    k: flags.k,
    seed: flags.seed,
    threads: FIT_THREADS,
    settings: ltr.settings,
    halfLivesDays: ltr.halfLivesDays,
    recentItems: ltr.recentItems,
    onProgress: (f, stage) => bar.update(f, stage),
  });
  bar.stop();
  const t = r.training;
  note(
    `ltr: ${t.queries} training queries (${t.rows} rows), ${t.validQueries} early-stopping queries; best iteration ${t.bestIteration} (validation ndcg@${ltr.settings.lambdaMart.ndcgAt} ${t.validNdcg.toFixed(4)}), LambdaMART ${t.lambdaMartSeconds.toFixed(1)} s; ` +
      `features at ${t.pointInTime}; inner-validation ndcg@${flags.k} per retriever ${JSON.stringify(Object.fromEntries(Object.entries(t.retrieverNdcg).map(([n, v]) => [n, round(v, 4)])))} (fill from ${t.fillRetriever})`,
  );
  const held = t.heldOut.retrievers;
  note(
    `ltr: inner validation on ${t.heldOut.users} held-out users, ndcg@${flags.k}: ltr ${t.heldOut.ltr.toFixed(4)} vs ${Object.entries(
      held,
    )
      .map(([n, v]) => `${n} ${v.toFixed(4)}`)
      .join(', ')}`,
  );
  const top = Object.entries(r.model.importance('gain'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, 8)
    .map(([n, v]) => `${n} ${v.toFixed(1)}`);
  note(`ltr: top features by gain: ${top.join(', ')}`);
  note(
    `ltr: ndcg@${flags.k} ${r.metrics[`ndcg@${flags.k}`].toFixed(4)} over ${r.users} users; fit ${r.trainSeconds.toFixed(2)} s, scoring ${r.scoreSeconds.toFixed(2)} s`,
  );
  const metrics: Record<string, number> = {};
  for (const [name, v] of Object.entries(r.metrics)) metrics[name] = round(v);
  return { algorithm: 'ltr', params: r.params, metrics, train_seconds: round(r.trainSeconds, 3) };
}

function fmt(x: number): string {
  return Number.isFinite(x) ? x.toFixed(4) : 'failed';
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
    ...report.results
      .filter((r) => r.tuning)
      .map(
        (r) =>
          `${r.algorithm} tuned: ${r.tuning!.trials} trials, validation ${r.tuning!.metric} ${r.tuning!.best_validation.toFixed(4)}, ${r.tuning!.seconds} s; params ${JSON.stringify(r.params)}`,
      ),
    '',
  ].join('\n');
}
