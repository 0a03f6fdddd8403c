/** The readable model card of `cairn models show V`: one version, its lineage, gate and audit trail. */
import type { ModelVersion } from '../../domain/types.ts';

const num = (x: number | undefined): string =>
  x === undefined ? '—' : Number.isInteger(x) ? String(x) : Number.isFinite(x) ? x.toFixed(4) : String(x);
const iso = (ms: number | null): string => (ms === null || ms <= 0 ? '—' : new Date(ms).toISOString());

/** Renders a model version as a plain-text card (no colours: it is piped and pasted into tickets). */
export function formatModelCard(m: ModelVersion): string {
  const out: string[] = [];
  const row = (label: string, value: string) => out.push(`  ${label.padEnd(21)} ${value}`);
  const l = m.lineage;

  out.push(`model ${m.version}`);
  row('status', m.status + (m.error ? ` (${m.error})` : ''));
  row('algorithm', m.algorithm);
  row(
    'params',
    Object.entries(m.params)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(' ') || '—',
  );
  row('created', iso(m.createdAt));
  row('promoted', iso(m.promotedAt));
  row('parent', m.parentVersion ?? '—');
  row('checksum', m.checksum || '— (no artifact)');
  row('config hash', m.configHash || '—');

  out.push('', 'trigger');
  if (l) {
    row('kind', l.trigger.kind + (l.trigger.key ? ` (${l.trigger.key})` : ''));
    row('requested by', l.trigger.requestedBy ?? '—');
    row('job', l.trigger.jobId ?? '—');
  } else out.push('  (no lineage: recorded before lineage existed)');

  out.push('', 'data snapshot');
  const t = m.trainingData;
  row(
    'events',
    `${t.events} (up to seq ${t.lastEventSeq}${l ? `, newest ${iso(l.data.newestEventAt)}` : ''})`,
  );
  row('matrix', `${t.users} users × ${t.items} items, ${t.interactions} interactions`);
  if (l) row('training set', l.data.trainingSetHash || '—');

  if (l) {
    out.push('', 'code');
    row('version', l.code.version);
    row('commit', l.code.commit ?? '—');
  }

  out.push('', 'metrics (holdout)');
  const metrics = Object.entries(m.metrics);
  if (metrics.length === 0) out.push('  —');
  for (const [k, v] of metrics) row(k, num(v));
  if (m.trainSeconds > 0) row('train seconds', m.trainSeconds.toFixed(2));

  const gate = l?.gate;
  if (gate) {
    out.push(
      '',
      `gate: ${gate.passed ? 'PASSED' : 'FAILED'} — ${gate.reason}`,
      `  holdout ${gate.holdout}: ${gate.holdoutUsers} users, ${gate.holdoutInteractions} interactions` +
        (gate.champion ? `; champion ${gate.champion}` : '; no champion'),
    );
    for (const c of gate.checks) {
      const values =
        c.challenger === undefined
          ? ''
          : ` [challenger ${num(c.challenger)}${c.champion === undefined ? '' : `, ${c.name === 'beats_popularity' ? 'popularity' : 'champion'} ${num(c.champion)}`}${c.tolerance === undefined ? '' : `, tolerance ${num(c.tolerance)}`}]`;
      out.push(`  ${c.passed ? 'pass' : 'FAIL'}  ${c.name.padEnd(17)} ${c.detail}${values}`);
    }
  }

  if (l?.drift) {
    const types = Object.entries(l.drift.eventTypes)
      .map(([k, v]) => `${k} ${(v * 100).toFixed(1)} %`)
      .join(', ');
    out.push('', 'drift reference');
    row('event types', types || '—');
    row('score bins', String(l.drift.scoreShares.length));
  }

  if (l?.tuning) {
    const t = l.tuning;
    out.push('', 'tuning');
    row(
      'search',
      `${t.trials.length} trials in ${t.seconds.toFixed(1)} s, best ${t.metric} ${num(t.best)} (validation)`,
    );
    row('warm start', t.warmStart ?? '— (no champion of this algorithm)');
  }
  if (l) {
    out.push('', 'audit');
    if (l.audit.length === 0) out.push('  —');
    for (const a of l.audit) out.push(`  ${iso(a.at)}  ${a.action.padEnd(18)} by ${a.by}: ${a.detail}`);
  }
  return `${out.join('\n')}\n`;
}
