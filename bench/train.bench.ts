/**
 * Training throughput: seconds per ALS iteration and per BPR epoch, fold-in latency, and peak RSS,
 * on synthetic data (src/ingest/demo-data.ts: latent tastes, power-law popularity, sessions) and on
 * MovieTweetings.
 *
 *   npm run bench:train -- [--sizes 1e6,1e7] [--threads 2] [--factors 64] [--als-iters 5]
 *                          [--bpr-epochs 3] [--algos als,bpr] [--solver cg] [--kernel auto|js|wasm]
 *                          [--bpr-negatives 0]  (0: BPR's automatic candidate count)
 *                          [--movietweetings PATH|none]
 *                          [--users N --items M]
 *                          [--against FILE]  (tab-separated `user item [weight]`; alone, it
 *                                             replaces the synthetic sizes and MovieTweetings)
 *
 *   npm run bench:train -- --time-to-ndcg [--ttq-data synthetic,movietweetings] [--ttq-size 1e6]
 *                          [--ttq-als cg,cg-js,ialspp:16,ialspp:32] [--ttq-als-iters 30]
 *                          [--ttq-bpr-epochs 100] [--ttq-every-bpr 5] [--target-frac 0.98]
 *                          [--target-als X] [--target-bpr X] [--ttq-users 1000] [--threads 2]
 *
 * `--time-to-ndcg` measures time to quality instead: a seeded 10% per-user validation split is
 * carved from the data, each configuration trains on the rest with the early-stopping machinery
 * evaluating NDCG@10 on (1,000 of) the validation users after every ALS iteration / every few BPR
 * epochs, and the table gives the training seconds (evaluation time excluded) until the validation
 * NDCG first reached the target — by default `target-frac` × the best NDCG of the algorithm's first
 * (reference) configuration — and where `patience` 2 early stopping would have stopped.
 *
 * Sizes count generated events; duplicates (a user and item seen together again) merge into one
 * non-zero of the training matrix, so the table reports both.
 *
 * Each data set runs in this process one after another, so "peak RSS" is the high-water mark so
 * far (process.resourceUsage().maxRSS); run one size alone to get its own peak.
 */
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { alsSpec, type AlsModel } from '../src/algorithms/als.ts';
import { bprSpec, type BprModel } from '../src/algorithms/bpr.ts';
import { csrFromCoo, nnz, type Csr } from '../src/algorithms/sparse.ts';
import type { AlgorithmSpec, UserHistory } from '../src/algorithms/types.ts';
import { holdOutValidation, type EarlyStoppingEvent } from '../src/algorithms/early-stopping.ts';
import { fitAls } from '../src/algorithms/als.ts';
import { fitBpr } from '../src/algorithms/bpr.ts';
import { generateInteractions } from '../src/ingest/demo-data.ts';
import { readDataset, readTriples } from '../src/ingest/formats/index.ts';

/** The team's shared data sets sit beside the repository (`../shared`). */
const DEFAULT_MT = fileURLToPath(
  new URL('../../shared/datasets/movietweetings-100k/ratings.dat', import.meta.url),
);

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const has = (name: string): boolean => process.argv.includes(`--${name}`);
const againstPath = arg('against', '');
const sizes = arg('sizes', againstPath !== '' ? '' : '1e6,1e7')
  .split(',')
  .filter((s) => s.trim() !== '')
  .map((s) => Math.round(Number(s)));
const threads = Number(arg('threads', '2'));
const factors = Number(arg('factors', '64'));
const alsIters = Number(arg('als-iters', '5'));
const bprEpochs = Number(arg('bpr-epochs', '3'));
const algos = new Set(arg('algos', 'als,bpr').split(','));
const solver = arg('solver', 'cg');
const kernel = arg('kernel', 'auto');
const bprNegatives = Number(arg('bpr-negatives', '0'));
const mtPath = arg('movietweetings', againstPath !== '' ? 'none' : DEFAULT_MT);
const usersArg = Number(arg('users', '0'));
const itemsArg = Number(arg('items', '0'));

const rssMiB = (): number => process.resourceUsage().maxRSS / 1024;
const fmt = (x: number, d = 3): string => x.toFixed(d);

interface Row {
  data: string;
  users: number;
  items: number;
  nnz: number;
  algo: string;
  first: number;
  steady: number;
  /** Process CPU seconds (all threads) per steady step: robust to other load on the machine. */
  cpu: number;
  total: number;
  foldInMs?: number;
  rss: number;
}
const rows: Row[] = [];

/** Fits with per-step timestamps from onProgress; returns first step and mean of the rest. */
async function timeFit(spec: AlgorithmSpec, m: Csr, params: Record<string, number | string>, steps: number) {
  const marks: number[] = [];
  const cpuMarks: number[] = [];
  const cpuNow = (): number => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };
  const t0 = performance.now();
  const c0 = cpuNow();
  const model = await spec.fit(m, params, {
    threads,
    seed: 42,
    onProgress: (f) => {
      if (f > 0) {
        marks.push(performance.now());
        cpuMarks.push(cpuNow());
      }
    },
  });
  const total = (performance.now() - t0) / 1000;
  if (marks.length !== steps) throw new Error(`expected ${steps} progress steps, got ${marks.length}`);
  const per = marks.map((t, i) => (t - (i === 0 ? t0 : marks[i - 1])) / 1000);
  // Steady state excludes the first step (worker start-up, JIT warm-up).
  const n = Math.max(1, steps - 1);
  const steady = steps > 1 ? (marks[steps - 1] - marks[0]) / 1000 / n : per[0];
  const cpu = steps > 1 ? (cpuMarks[steps - 1] - cpuMarks[0]) / n : cpuMarks[0] - c0;
  return { model, first: per[0], steady, cpu, total };
}

/**
 * Mean fold-in time (the exact k×k solve of a user's vector from their history, without scoring)
 * for histories of `len` distinct random items, weight 1.
 */
function foldInLatency(model: AlsModel | BprModel, len: number): number {
  const n = Math.min(len, model.nItems);
  const hist: UserHistory[] = [];
  let seed = 12345;
  for (let h = 0; h < 200; h++) {
    const set = new Set<number>();
    while (set.size < n) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      set.add(seed % model.nItems);
    }
    const items = Int32Array.from([...set].sort((a, b) => a - b));
    hist.push({ items, weights: new Float32Array(n).fill(1) });
  }
  // Warm up the JIT, then time.
  for (const h of hist) model.userVector(-1, h, true);
  const t0 = performance.now();
  for (let r = 0; r < 3; r++) for (const h of hist) model.userVector(-1, h, true);
  return (performance.now() - t0) / (3 * hist.length);
}

async function run(name: string, m: Csr): Promise<void> {
  const base = { data: name, users: m.rows, items: m.cols, nnz: nnz(m) };
  console.error(`# ${name}: ${m.rows} users × ${m.cols} items, ${nnz(m)} non-zeros`);
  if (algos.has('als')) {
    const r = await timeFit(alsSpec, m, { factors, iterations: alsIters, solver, kernel }, alsIters);
    const als = r.model as AlsModel;
    const foldIn50 = foldInLatency(als, 50);
    const foldInMs = foldInLatency(als, 300);
    console.error(
      `  als: first ${fmt(r.first)} s, then ${fmt(r.steady)} s/iteration (${fmt(r.cpu)} CPU s); ` +
        `fold-in ${fmt(foldIn50)} ms (50 items), ${fmt(foldInMs)} ms (300 items)`,
    );
    rows.push({
      ...base,
      algo: `als (${solver}, ${kernel})`,
      first: r.first,
      steady: r.steady,
      cpu: r.cpu,
      total: r.total,
      foldInMs,
      rss: rssMiB(),
    });
  }
  if (algos.has('bpr')) {
    const r = await timeFit(
      bprSpec,
      m,
      { factors, iterations: bprEpochs, kernel, negatives: bprNegatives },
      bprEpochs,
    );
    const bpr = r.model as BprModel;
    const foldIn50 = foldInLatency(bpr, 50);
    const foldInMs = foldInLatency(bpr, 300);
    console.error(
      `  bpr: first ${fmt(r.first)} s, then ${fmt(r.steady)} s/epoch (${fmt(r.cpu)} CPU s); ` +
        `fold-in ${fmt(foldIn50)} ms (50 items), ${fmt(foldInMs)} ms (300 items)`,
    );
    rows.push({
      ...base,
      algo: `bpr (${kernel}, ${bpr.params.negatives} neg.)`,
      first: r.first,
      steady: r.steady,
      cpu: r.cpu,
      total: r.total,
      foldInMs,
      rss: rssMiB(),
    });
  }
}

console.error(
  `cpus: ${cpus().length} × ${cpus()[0]?.model ?? '?'}; node ${process.version}; threads=${threads}, factors=${factors}`,
);

/** The synthetic set of `n` events in the default shape (or --users/--items). */
function synthetic(n: number): Csr {
  const users = usersArg > 0 ? usersArg : Math.max(100, Math.round(n / 50));
  const items = itemsArg > 0 ? itemsArg : Math.max(50, Math.round(n / 250));
  const d = generateInteractions({ users, items, events: n, seed: 7 });
  return csrFromCoo(d.users, d.items, d.userIdx, d.itemIdx, d.weights);
}

/** MovieTweetings as the eval protocol reads it without --min-rating: every rating weighs 1. */
async function movieTweetings(path: string): Promise<Csr> {
  const ds = await readDataset(path, 'movietweetings');
  return csrFromCoo(ds.users.length, ds.items.length, ds.userIdx, ds.itemIdx, null);
}

interface Curve {
  data: string;
  algo: string;
  points: EarlyStoppingEvent[];
}

/** Time to quality (see the header): full validation curves, then the first time each reaches the target. */
async function timeToNdcg(): Promise<void> {
  const datasets = arg('ttq-data', 'synthetic').split(',');
  const alsConfigs = arg('ttq-als', 'cg,ialspp:16')
    .split(',')
    .filter((c) => c !== '');
  const alsMax = Number(arg('ttq-als-iters', '30'));
  const bprMax = Number(arg('ttq-bpr-epochs', '100'));
  const bprEvery = Number(arg('ttq-every-bpr', '5'));
  const frac = Number(arg('target-frac', '0.98'));
  const maxUsers = Number(arg('ttq-users', '1000'));
  const curves: Curve[] = [];
  for (const name of datasets) {
    const m =
      name === 'movietweetings'
        ? await movieTweetings(mtPath === 'none' ? DEFAULT_MT : mtPath)
        : synthetic(Math.round(Number(arg('ttq-size', '1e6'))));
    const label = name === 'movietweetings' ? 'MovieTweetings 100k' : `synthetic ${arg('ttq-size', '1e6')}`;
    const split = holdOutValidation(m, 0.1, 42);
    console.error(`# ${label}: fit ${nnz(split.fit)} / validation ${nnz(split.validation)} interactions`);
    if (algos.has('als')) {
      for (const cfg of alsConfigs) {
        const [solverName, b] = cfg.split(':');
        const params: Record<string, number | string> = { factors, iterations: alsMax };
        if (solverName === 'cg-js') Object.assign(params, { solver: 'cg', kernel: 'js' });
        else if (solverName === 'ialspp')
          Object.assign(params, { solver: 'ialspp', blockSize: Number(b ?? 16) });
        else Object.assign(params, { solver: solverName, kernel });
        const points: EarlyStoppingEvent[] = [];
        await fitAls(split.fit, params, {
          threads,
          seed: 42,
          earlyStopping: {
            validation: split.validation,
            patience: 0,
            evalEvery: 1,
            maxUsers,
            onEvaluate: (e) => points.push(e),
          },
        });
        curves.push({ data: label, algo: `als ${cfg}`, points });
        console.error(
          `  als ${cfg}: ${points.map((p) => `${p.iteration}:${fmt(p.ndcg, 4)}@${fmt(p.trainSeconds, 2)}s`).join(' ')}`,
        );
      }
    }
    if (algos.has('bpr')) {
      const points: EarlyStoppingEvent[] = [];
      await fitBpr(
        split.fit,
        { factors, iterations: bprMax, kernel, negatives: bprNegatives },
        {
          threads,
          seed: 42,
          earlyStopping: {
            validation: split.validation,
            patience: 0,
            evalEvery: bprEvery,
            maxUsers,
            onEvaluate: (e) => points.push(e),
          },
        },
      );
      curves.push({ data: label, algo: 'bpr', points });
      console.error(
        `  bpr: ${points.map((p) => `${p.iteration}:${fmt(p.ndcg, 4)}@${fmt(p.trainSeconds, 2)}s`).join(' ')}`,
      );
    }
  }
  console.log('');
  console.log(
    '| data | algorithm | best validation NDCG@10 (at step) | target | steps to target | seconds to target | of which first evaluated step | patience-2 stop: step, s, NDCG |',
  );
  console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const c of curves) {
    const family = c.algo.split(' ')[0];
    const explicit = Number(arg(`target-${family}`, 'NaN'));
    // The reference is the family's first configuration (today's default solver comes first).
    const ref = curves.find((o) => o.data === c.data && o.algo.split(' ')[0] === family) ?? c;
    const top = Math.max(...ref.points.map((p) => p.ndcg));
    const target = Number.isFinite(explicit) ? explicit : frac * top;
    const best = c.points.reduce((a, b) => (b.ndcg > a.ndcg ? b : a), c.points[0]);
    const hit = c.points.find((p) => p.ndcg >= target);
    // Early stopping with patience 2: stop after two evaluations without a new best.
    let stop = c.points[c.points.length - 1];
    let bestSoFar = -Infinity;
    let since = 0;
    let bestPoint = c.points[0];
    for (const p of c.points) {
      if (p.ndcg > bestSoFar) {
        bestSoFar = p.ndcg;
        bestPoint = p;
        since = 0;
      } else if (++since >= 2) {
        stop = p;
        break;
      }
    }
    console.log(
      `| ${c.data} | ${c.algo} | ${fmt(best.ndcg, 4)} (${best.iteration}) | ${fmt(target, 4)} | ${hit?.iteration ?? '—'} | ${hit === undefined ? 'not reached' : fmt(hit.trainSeconds, 2)} | ${fmt(c.points[0].trainSeconds, 2)} | ${stop.iteration}, ${fmt(stop.trainSeconds, 2)} s, ${fmt(bestPoint.ndcg, 4)} |`,
    );
  }
}

if (has('time-to-ndcg')) {
  await timeToNdcg();
  process.exit(0);
}

if (againstPath !== '') {
  const ds = await readTriples(againstPath);
  // A missing weight counts 1; repeated pairs add up, as `cairn eval --train` reads the file.
  const w = Float32Array.from(ds.values, (v) => (Number.isFinite(v) ? v : 1));
  const m = csrFromCoo(ds.users.length, ds.items.length, ds.userIdx, ds.itemIdx, w);
  await run(`against ${againstPath.split('/').pop() ?? againstPath}`, m);
}

for (const n of sizes) {
  // Default shape: ~50 events per user and 250 per item; --users/--items fix the counts instead
  // (e.g. MovieLens-20M's 138k users and 27k items).
  const users = usersArg > 0 ? usersArg : Math.max(100, Math.round(n / 50));
  const items = itemsArg > 0 ? itemsArg : Math.max(50, Math.round(n / 250));
  let t = performance.now();
  const d = generateInteractions({ users, items, events: n, seed: 7 });
  const genS = (performance.now() - t) / 1000;
  t = performance.now();
  const m = csrFromCoo(d.users, d.items, d.userIdx, d.itemIdx, d.weights);
  console.error(
    `# synthetic ${n}: generated in ${fmt(genS, 1)} s, CSR in ${fmt((performance.now() - t) / 1000, 1)} s`,
  );
  await run(
    `synthetic ${n.toExponential(0)} events${usersArg > 0 || itemsArg > 0 ? ' (fixed shape)' : ''}`,
    m,
  );
}

if (mtPath !== 'none' && existsSync(mtPath)) {
  const ds = await readDataset(mtPath, 'movietweetings');
  // Every rating is one implicit interaction (weight 1), as in the eval protocol without --min-rating.
  const m = csrFromCoo(ds.users.length, ds.items.length, ds.userIdx, ds.itemIdx, null);
  await run('MovieTweetings 100k', m);
}

console.log('');
console.log(
  '| data | users | items | non-zeros | algorithm | first step (s) | steady s/step (wall) | CPU s/step | fold-in, 300 items (ms) | peak RSS (MiB) |',
);
console.log('| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  console.log(
    `| ${r.data} | ${r.users} | ${r.items} | ${r.nnz} | ${r.algo} | ${fmt(r.first)} | ${fmt(r.steady)} | ${fmt(r.cpu)} | ${r.foldInMs === undefined ? '' : fmt(r.foldInMs)} | ${fmt(r.rss, 0)} |`,
  );
}
