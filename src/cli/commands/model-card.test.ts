import { describe, expect, it } from 'vitest';
import type { ModelVersion } from '../../domain/types.ts';
import { formatModelCard } from './model-card.ts';

const base: ModelVersion = {
  version: '20240102-030405-als-abc123',
  algorithm: 'als',
  params: { factors: 1, iterations: 1 },
  status: 'rejected',
  trainingData: { users: 250, items: 120, interactions: 5000, events: 10000, lastEventSeq: 10000 },
  metrics: { 'ndcg@10': 0.05, 'recall@10': 0.07 },
  trainSeconds: 0.25,
  artifactPath: 'models/x.cairn',
  checksum: 'c0ffee',
  configHash: 'cfg1',
  parentVersion: null,
  createdAt: Date.UTC(2024, 0, 2, 3, 4, 5),
  promotedAt: null,
  error: null,
  lineage: {
    trigger: { kind: 'manual', key: null, requestedBy: 'anonymous', jobId: 'job-7' },
    data: { lastEventSeq: 10000, newestEventAt: Date.UTC(2024, 0, 2), trainingSetHash: 'f'.repeat(64) },
    code: { version: '0.1.0', commit: 'a'.repeat(40) },
    gate: {
      passed: false,
      reason: "ndcg@10 0.0500 is below the champion's 0.2000",
      holdout: 'random',
      holdoutUsers: 240,
      holdoutInteractions: 900,
      champion: '20240101-000000-als-000000',
      challengerMetrics: { 'ndcg@10': 0.05 },
      championMetrics: { 'ndcg@10': 0.2 },
      checks: [
        { name: 'finite_scores', passed: true, detail: 'all 100 scores checked are finite', challenger: 0 },
        {
          name: 'ndcg@10',
          passed: false,
          detail: "ndcg@10 0.0500 is below the champion's 0.2000",
          challenger: 0.05,
          champion: 0.2,
          tolerance: 0.05,
        },
      ],
    },
    drift: {
      eventTypes: { view: 0.75, purchase: 0.25 },
      itemPopularity: [1, 0],
      scoreEdges: [1],
      scoreShares: [0.5, 0.5],
    },
    audit: [
      {
        at: Date.UTC(2024, 0, 2, 3, 4, 5),
        action: 'registered',
        by: 'anonymous',
        detail: 'manual training (job job-7)',
      },
      { at: Date.UTC(2024, 0, 2, 3, 4, 5), action: 'rejected', by: 'system', detail: 'ndcg@10 below' },
    ],
  },
};

describe('formatModelCard', () => {
  it('prints status, params, snapshot, code, metrics, every gate check with pass/fail, and the audit', () => {
    const card = formatModelCard(base);
    expect(card).toContain('model 20240102-030405-als-abc123');
    expect(card).toMatch(/status\s+rejected/);
    expect(card).toMatch(/params\s+factors=1 iterations=1/);
    expect(card).toMatch(/requested by\s+anonymous/);
    expect(card).toMatch(/events\s+10000 \(up to seq 10000, newest 2024-01-02T00:00:00.000Z\)/);
    expect(card).toMatch(/training set\s+f{64}/);
    expect(card).toMatch(/commit\s+a{40}/);
    expect(card).toMatch(/ndcg@10\s+0\.0500/);
    expect(card).toContain("gate: FAILED — ndcg@10 0.0500 is below the champion's 0.2000");
    expect(card).toContain(
      'holdout random: 240 users, 900 interactions; champion 20240101-000000-als-000000',
    );
    expect(card).toMatch(/pass {2}finite_scores/);
    expect(card).toMatch(/FAIL {2}ndcg@10 .*\[challenger 0\.0500, champion 0\.2000, tolerance 0\.0500\]/);
    expect(card).toMatch(/event types\s+view 75\.0 %, purchase 25\.0 %/);
    expect(card).toMatch(/2024-01-02T03:04:05.000Z {2}rejected\s+by system: ndcg@10 below/);
  });

  it('says so for versions without lineage or artifact', () => {
    const card = formatModelCard({ ...base, status: 'failed', checksum: '', error: 'boom', lineage: null });
    expect(card).toMatch(/status\s+failed \(boom\)/);
    expect(card).toMatch(/checksum\s+— \(no artifact\)/);
    expect(card).toContain('(no lineage: recorded before lineage existed)');
    expect(card).not.toContain('gate:');
  });
});
