/**
 * Second-stage ranking latency, in process: for one request, the full ranking vector of 200 candidates
 * (RankingFeatures.fill over item states, the user context and four retrievers' signals), LambdaMART
 * scores (predictMany) and the top k (TopKHeap). The model has the default size (LAMBDAMART_DEFAULTS:
 * every tree grown, no early stopping) and is trained on synthetic rows built by the same `fill`.
 * Item states and user contexts are prepared beforehand, as serving reads them from the online state.
 * Prints p50/p99/max over the requests.
 *
 *   npm run bench:rank -- [--requests 5000] [--candidates 200] [--items 20000] [--trees 300]
 */
import { parseArgs } from 'node:util';
import { LAMBDAMART_DEFAULTS, trainLambdaMart, type RankingDataset } from '../src/algorithms/gbdt.ts';
import { Rng } from '../src/algorithms/random.ts';
import { TopKHeap } from '../src/algorithms/topk.ts';
import type { FeatureConfig, FeatureEvent } from '../src/features/definitions.ts';
import { itemStatesAt } from '../src/features/item-state.ts';
import { RankingFeatures, type UserContext } from '../src/features/ranking.ts';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '5000' },
    candidates: { type: 'string', default: '200' },
    items: { type: 'string', default: '20000' },
    trees: { type: 'string', default: String(LAMBDAMART_DEFAULTS.trees) },
    k: { type: 'string', default: '10' },
  },
});
const requests = Number(values.requests);
const nCand = Number(values.candidates);
const nItems = Number(values.items);
const k = Number(values.k);
const DAY = 86_400_000;
const NOW = 1_700_000_000_000;
const RETRIEVERS = ['pop', 'itemknn', 'als', 'ease'];

const config: FeatureConfig = {
  types: { view: { weight: 0 }, click: { weight: 1 }, purchase: { weight: 3 } },
  halfLivesDays: [1, 7, 30],
  maxSegmentsPerItem: 32,
};
const features = new RankingFeatures({ config, retrievers: RETRIEVERS });
const nf = features.names.length;
const rng = new Rng(42);

// Item states from 300k synthetic events over 60 days (power-law popularity).
const types = ['view', 'view', 'view', 'click', 'purchase'];
const events: FeatureEvent[] = [];
for (let e = 0; e < 300_000; e++) {
  const item = Math.floor(nItems * rng.float() ** 3);
  events.push({
    itemId: `i${item}`,
    type: types[rng.int(types.length)],
    value: null,
    timestamp: NOW - rng.float() * 60 * DAY,
    segments: rng.float() < 0.5 ? ['gold'] : ['new'],
  });
}
let t0 = performance.now();
const states = itemStatesAt(events, NOW, config);
console.log(
  `item states of ${states.size} items from ${events.length} events in ${(performance.now() - t0).toFixed(0)} ms`,
);

function userContext(): UserContext {
  const history: FeatureEvent[] = [];
  const n = 5 + rng.int(50);
  for (let j = 0; j < n; j++) {
    history.push({
      itemId: `i${rng.int(nItems)}`,
      type: types[rng.int(types.length)],
      value: null,
      timestamp: NOW - j * 3_600_000,
    });
  }
  return features.userContext(history, { segments: ['gold'], attributes: {} }, NOW, (id) => [
    `c${id.length % 7}`,
  ]);
}

/** One request's candidates: ids and four retrievers' signals (each retrieves about half of them). */
function candidates(): { ids: string[]; signals: Map<string, { score: number; rank: number }>[] } {
  const ids: string[] = [];
  const signals: Map<string, { score: number; rank: number }>[] = [];
  for (let c = 0; c < nCand; c++) {
    ids.push(`i${Math.floor(nItems * rng.float() ** 2)}`);
    const m = new Map<string, { score: number; rank: number }>();
    for (const r of RETRIEVERS)
      if (rng.float() < 0.5) m.set(r, { score: rng.normal(), rank: 1 + rng.int(nCand) });
    signals.push(m);
  }
  return { ids, signals };
}

// Training rows by the same fill; relevance a hidden function of a few columns, so trees are real.
const queries = 400;
const rows = queries * nCand;
const train: RankingDataset = {
  nFeatures: nf,
  features: new Float32Array(rows * nf),
  labels: new Float32Array(rows),
  groups: Int32Array.from({ length: queries + 1 }, (_, q) => q * nCand),
};
const col = (name: string): number => features.names.indexOf(name);
const cPop = col('item_decayed_7d');
const cAls = col('retriever_als_score');
const cRank = col('retriever_itemknn_rank');
for (let q = 0; q < queries; q++) {
  const ctx = userContext();
  const { ids, signals } = candidates();
  for (let c = 0; c < nCand; c++) {
    const r = q * nCand + c;
    features.fill(train.features, r * nf, ctx, ids[c], states.get(ids[c]) ?? null, null, signals[c], NOW);
    const f = train.features.subarray(r * nf, (r + 1) * nf);
    const u =
      Math.log1p(f[cPop]) * 0.3 +
      (Number.isNaN(f[cAls]) ? 0 : f[cAls]) +
      (Number.isNaN(f[cRank]) ? 0 : 2 - f[cRank] / 50);
    train.labels[r] = u + rng.normal() * 0.5 > 2.5 ? 1 : 0;
  }
}
t0 = performance.now();
const model = trainLambdaMart(
  train,
  null,
  { ...LAMBDAMART_DEFAULTS, trees: Number(values.trees), earlyStoppingRounds: 0 },
  { featureNames: features.names },
);
console.log(
  `trained ${model.nTrees} trees × ≤ ${LAMBDAMART_DEFAULTS.leaves} leaves on ${rows} rows × ${nf} features in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);

// Requests: prepared inputs (what the online state and retrievers hand over), then the timed part.
const prepared = Array.from({ length: 200 }, () => ({ ctx: userContext(), ...candidates() }));
const vec = new Float32Array(nCand * nf);
const scores = new Float32Array(nCand);
const heap = new TopKHeap(k);
const top = new Int32Array(k);
const topScores = new Float32Array(k);
let sink = 0;
/** Time spent in each part (fill, predict), summed over the timed requests. */
const parts = { fill: 0, predict: 0 };
function rank(i: number): void {
  const p = prepared[i % prepared.length];
  const t0 = performance.now();
  for (let c = 0; c < nCand; c++) {
    features.fill(vec, c * nf, p.ctx, p.ids[c], states.get(p.ids[c]) ?? null, null, p.signals[c], NOW);
  }
  const t1 = performance.now();
  model.predictMany(vec, nCand, scores);
  parts.fill += t1 - t0;
  parts.predict += performance.now() - t1;
  heap.reset(k);
  for (let c = 0; c < nCand; c++) heap.push(c, scores[c]);
  sink += heap.drainInto(top, topScores, 0);
}
for (let i = 0; i < 500; i++) rank(i); // warm-up (JIT)
parts.fill = 0;
parts.predict = 0;
const times: number[] = [];
for (let i = 0; i < requests; i++) {
  const s = performance.now();
  rank(i);
  times.push(performance.now() - s);
}
times.sort((a, b) => a - b);
const pct = (p: number): number => times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))];
console.log(
  `rank ${nCand} candidates × ${nf} features, ${model.nTrees} trees, top ${k}: ` +
    `p50 ${pct(50).toFixed(3)} ms  p99 ${pct(99).toFixed(3)} ms  max ${times[times.length - 1].toFixed(3)} ms  (${requests} requests${sink > 0 ? '' : ' '})`,
);
console.log(
  `mean per request: features ${(parts.fill / requests).toFixed(3)} ms, predict ${(parts.predict / requests).toFixed(3)} ms`,
);
