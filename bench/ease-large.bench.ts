/**
 * EASE-class models on a catalogue too large for dense EASE: fit seconds, peak RSS and full-ranking
 * test metrics of sparse EASE (and RP3beta beside it) on synthetic data, measured exactly as
 * `cairn eval --data DIR --format jsonl --protocol random-holdout` would (same reader, weighting and
 * split), so the figures can be set beside an eval run.
 *
 *   npm run bench:ease-large -- [--data DIR] [--users 100000] [--items 50000] [--events 2000000]
 *                               [--seed 7] [--algos ease,rp3beta] [--neighbors 200] [--lambda 200]
 *
 * DIR defaults to $TMPDIR/cairn-ease-large-<users>-<items>-<events>-<seed>; when it holds no
 * events.jsonl, `cairn demo-data` writes one there first. Peak RSS is the process high-water mark
 * (process.resourceUsage().maxRSS) after each step, so run one algorithm alone (`--algos ease`) to
 * read its own peak. Fitting is sequential (one thread).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getAlgorithm, resolveParams } from '../src/algorithms/index.ts';
import { nnz } from '../src/algorithms/sparse.ts';
import type { Params } from '../src/algorithms/types.ts';
import { loadData } from '../src/cli/commands/eval-data.ts';
import { evaluateAlgorithm } from '../src/evaluation/evaluator.ts';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const users = arg('users', '100000');
const items = arg('items', '50000');
const events = arg('events', '2000000');
const seed = arg('seed', '7');
const dir = arg('data', join(tmpdir(), `cairn-ease-large-${users}-${items}-${events}-${seed}`));
const algos = arg('algos', 'ease,rp3beta').split(',');
const neighbors = arg('neighbors', '');
const lambda = arg('lambda', '');
const rssMiB = (): number => process.resourceUsage().maxRSS / 1024;

if (!existsSync(join(dir, 'events.jsonl'))) {
  const cli = fileURLToPath(new URL('../bin/cairn.js', import.meta.url));
  console.error(`# writing synthetic data to ${dir}`);
  execFileSync(
    process.execPath,
    [cli, 'demo-data', '--users', users, '--items', items, '--events', events, '--seed', seed, '--out', dir],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
}
let t = performance.now();
const { split, dataset } = await loadData({
  data: dir,
  format: 'jsonl',
  protocol: 'random-holdout',
  seed: 42,
});
const trainItems = new Set<number>();
for (let q = 0; q < nnz(split.train); q++) trainItems.add(split.train.indices[q]);
console.error(
  `# ${dir}: ${dataset.users} users, ${dataset.items} items, ${dataset.interactions} pairs → train ${nnz(split.train)} over ${trainItems.size} items (${((performance.now() - t) / 1000).toFixed(1)} s, RSS ${rssMiB().toFixed(0)} MiB)`,
);

console.log('| algorithm | params | fit s | peak RSS MiB | ndcg@10 | recall@10 | coverage@10 |');
console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: |');
for (const name of algos) {
  const spec = getAlgorithm(name);
  const over: Params = {};
  if (name === 'ease' && neighbors !== '') over.neighbors = neighbors;
  if (name === 'ease' && lambda !== '') over.lambda = lambda;
  t = performance.now();
  const r = await evaluateAlgorithm(spec, resolveParams(spec, over), split, {
    k: 10,
    target: 'test',
    threads: 1,
    seed: 42,
    onProgress: (f, stage) => {
      if (performance.now() - t > 10_000) {
        t = performance.now();
        console.error(`# ${name}: ${(f * 100).toFixed(0)} % ${stage}`);
      }
    },
  });
  const shown = Object.entries(r.params)
    .filter(([k]) => ['lambda', 'variant', 'neighbors', 'alpha', 'beta'].includes(k))
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(' ');
  console.log(
    `| ${name} | ${shown} | ${r.trainSeconds.toFixed(1)} | ${rssMiB().toFixed(0)} | ${r.metrics['ndcg@10'].toFixed(4)} | ${r.metrics['recall@10'].toFixed(4)} | ${r.metrics['coverage@10'].toFixed(4)} |`,
  );
}
