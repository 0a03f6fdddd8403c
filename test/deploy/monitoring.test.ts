/**
 * The monitoring artefacts (deploy/prometheus/, deploy/grafana/) against the real tools and a real
 * service:
 * - promtool (Debian package `prometheus`; .ci/run installs it, so a missing promtool FAILS here) checks
 *   the alert rules and the example configuration and runs the rules' unit tests;
 * - every PromQL expression of the rules and of the dashboard is parsed by promtool, and every metric it
 *   names must be exposed by a real embedded Cairn (demo data, one training, one failed training) —
 *   so a renamed metric cannot leave a silent alert or an empty panel behind;
 * - readiness of that service: `degraded` after a real failed training, `stale` past a tiny
 *   serving.maxModelAgeSeconds, readiness staying 200 all along; drift and freshness gauges sampled.
 */
/* eslint-disable @typescript-eslint/no-unsafe-return -- helpers return parts of untyped parsed YAML/JSON */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig, type Config } from '../../src/config/load.ts';
import { systemContext } from '../../src/domain/context.ts';
import { seedDemo, waitForJob } from '../../src/main/demo.ts';
import { createEmbedded, type Embedded } from '../../src/main/embedded.ts';
import { createLogger } from '../../src/monitoring/logger.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const PROM = join(ROOT, 'deploy/prometheus');
const RULES = join(PROM, 'cairn-alerts.yaml');
const DASHBOARD = join(ROOT, 'deploy/grafana/cairn-dashboard.json');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

function promtool(...args: string[]): { status: number | null; out: string } {
  const r = spawnSync('promtool', args, { cwd: PROM, encoding: 'utf8', timeout: 30_000 });
  if (r.error) {
    throw new Error(
      `promtool could not run (${r.error.message}): install the Debian package \`prometheus\` ` +
        '(apt-get install -y prometheus; .ci/run does)',
    );
  }
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

// ------------------------------------------------------------------------------------------------
// Expressions and the metric names they use
// ------------------------------------------------------------------------------------------------

interface Expr {
  where: string;
  expr: string;
}

const rulesDoc: Json = parse(readFileSync(RULES, 'utf8'));
const dashboard: Json = JSON.parse(readFileSync(DASHBOARD, 'utf8'));

function ruleExprs(): Expr[] {
  const out: Expr[] = [];
  for (const group of rulesDoc.groups)
    for (const rule of group.rules)
      out.push({ where: `rule ${rule.alert ?? rule.record}`, expr: String(rule.expr) });
  return out;
}

/** Every panel, including those nested in collapsed rows. */
function allPanels(panels: Json[]): Json[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

function dashboardExprs(): Expr[] {
  const out: Expr[] = [];
  for (const p of allPanels(dashboard.panels))
    for (const t of p.targets ?? [])
      out.push({ where: `panel "${p.title}" ${t.refId}`, expr: String(t.expr) });
  for (const a of dashboard.annotations?.list ?? [])
    if (a.expr) out.push({ where: `annotation "${a.name}"`, expr: String(a.expr) });
  for (const v of dashboard.templating.list) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : v.query.query;
    // Grafana's label_values(metric, label) is not PromQL: its metric is what must exist.
    const m = /^label_values\((.+),\s*\w+\)$/.exec(q);
    out.push({ where: `variable ${v.name}`, expr: m ? m[1] : q });
  }
  return out;
}

/** Grafana's variables replaced by values that make PromQL of the expression. */
function grafanaToPromql(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '5m')
    .replaceAll('$__interval', '1m')
    .replaceAll('$__range', '1h')
    .replace(/\$\{?(\w+)\}?/g, '.*');
}

const KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'and',
  'or',
  'unless',
  'offset',
  'inf',
  'nan',
]);

/**
 * The metric names an expression selects: identifiers that are not function calls, keywords, label
 * names (inside `{}` or a grouping clause), numbers or durations.
 */
export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""') // strings
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // ranges and subqueries
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' '); // grouping labels
  const names = new Set<string>();
  const re = /[a-zA-Z_:][a-zA-Z0-9_:]*/g;
  for (let m = re.exec(stripped); m; m = re.exec(stripped)) {
    const name = m[0];
    const before = stripped[m.index - 1] ?? ' ';
    const after = stripped.slice(m.index + name.length).trimStart();
    if (/[0-9.]/.test(before)) continue; // the unit of a number (5m) or an exponent
    if (after.startsWith('(')) continue; // function or aggregation
    if (KEYWORDS.has(name.toLowerCase())) continue;
    names.add(name);
  }
  return [...names];
}

describe('metricNames', () => {
  it('finds the selected metrics and nothing else', () => {
    expect(
      metricNames(
        'histogram_quantile(0.99, sum by (le) (rate(cairn_x_bucket{route=~"/v1/.*", a="b"}[5m]))) > 0.25 ' +
          'and on(job) scalar(max(up)) - max without (instance) (cairn:lag:max offset 5m) > 2e3 ' +
          'unless time() - cairn_y > 48 * 3600',
      ).sort(),
    ).toEqual(['cairn:lag:max', 'cairn_x_bucket', 'cairn_y', 'up']);
  });
});

// ------------------------------------------------------------------------------------------------
// promtool: rules, their unit tests, the example configuration, every expression's syntax
// ------------------------------------------------------------------------------------------------

describe('Prometheus rules (promtool)', () => {
  it('promtool is installed (Debian package prometheus)', () => {
    const r = promtool('--version');
    expect(r.status, r.out).toBe(0);
  });

  it('`promtool check rules` accepts the shipped rules', () => {
    const r = promtool('check', 'rules', RULES);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('`promtool test rules` passes the rules’ unit tests (stale model, failed training, drift, ...)', () => {
    const tests: Json = parse(readFileSync(join(PROM, 'cairn-alerts.test.yaml'), 'utf8'));
    const tested = new Set<string>(
      tests.tests.flatMap((t: Json) => (t.alert_rule_test ?? []).map((a: Json) => a.alertname)),
    );
    for (const name of ['CairnModelStale', 'CairnTrainingFailed', 'CairnDriftHigh'])
      expect(tested).toContain(name);
    const r = promtool('test', 'rules', 'cairn-alerts.test.yaml');
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain('SUCCESS');
  });

  it('`promtool check config` accepts the example prometheus.yml, which loads the rules', () => {
    const config: Json = parse(readFileSync(join(PROM, 'prometheus.yml'), 'utf8'));
    expect(config.rule_files).toContain('cairn-alerts.yaml');
    const r = promtool('check', 'config', 'prometheus.yml');
    expect(r.status, r.out).toBe(0);
  });

  it('has the alerts the runbook promises, each with for, severity, summary and description', () => {
    const alerts = new Map<string, Json>();
    for (const group of rulesDoc.groups)
      for (const rule of group.rules) if (rule.alert) alerts.set(rule.alert, rule);
    for (const name of [
      'CairnModelStale',
      'CairnTrainingFailed',
      'CairnNoSuccessfulTraining',
      'CairnDriftHigh',
      'CairnConsumerLagGrowing',
      'CairnRecommendationsMostlyFallback',
      'CairnHighErrorRate',
      'CairnHighLatencyP99',
      'CairnNotReady',
    ])
      expect([...alerts.keys()]).toContain(name);
    for (const [name, rule] of alerts) {
      expect(rule.for, name).toMatch(/^\d+[smh]$/);
      expect(['critical', 'warning'], name).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary, name).toBeTruthy();
      expect(rule.annotations?.description, name).toBeTruthy();
    }
    // Drift: PSI above 0.25 for 30 minutes, per dimension.
    const drift = alerts.get('CairnDriftHigh');
    expect(drift.expr).toMatch(/by \(dimension\)/);
    expect(drift.expr).toMatch(/> 0\.25/);
    expect(drift.for).toBe('30m');
  });

  it('every dashboard expression is valid PromQL (parsed by promtool)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-promql-'));
    try {
      const exprs = dashboardExprs();
      const doc = {
        groups: [
          {
            name: 'dashboard',
            rules: exprs.map((e, i) => ({
              record: `cairn_dashboard:expr_${i}`,
              expr: grafanaToPromql(e.expr),
            })),
          },
        ],
      };
      const file = join(dir, 'dashboard-exprs.json');
      writeFileSync(file, JSON.stringify(doc));
      const r = promtool('check', 'rules', file);
      expect(r.status, `${r.out}\n${exprs.map((e, i) => `expr_${i}: ${e.where}`).join('\n')}`).toBe(0);
      expect(r.out).toContain(`SUCCESS: ${exprs.length} rules found`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Grafana dashboard', () => {
  it('is importable: a datasource variable every panel uses, unique ids, titles, a query per panel', () => {
    const ds = dashboard.templating.list.find((v: Json) => v.type === 'datasource');
    expect(ds?.query).toBe('prometheus');
    expect(dashboard.uid).toBeTruthy();
    const panels = allPanels(dashboard.panels).filter((p) => p.type !== 'row');
    const ids = allPanels(dashboard.panels).map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of panels) {
      expect(p.title).toBeTruthy();
      expect(p.datasource?.uid, p.title).toBe(`\${${ds.name}}`);
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets) expect(t.datasource?.uid, p.title).toBe(`\${${ds.name}}`);
    }
    // What the operator needs to see, by the metric that shows it.
    const all = dashboardExprs()
      .map((e) => e.expr)
      .join('\n');
    for (const metric of [
      'cairn_http_request_duration_seconds_count', // traffic
      'cairn_http_request_duration_seconds_bucket', // latency
      'cairn_recommendations_total', // fallback share
      'cairn_recommendation_cache_total', // cache hit rate
      'cairn_events_ingested_total', // ingestion
      'cairn_log_consumer_position', // consumer lag
      'cairn_model_age_seconds',
      'cairn_model_quality',
      'cairn_model_stale',
      'cairn_training_outcomes_total',
      'cairn_training_last_success_timestamp_seconds',
      'cairn_drift_psi',
      'cairn_experiment_assignments_total',
    ])
      expect(all).toContain(metric);
  });
});

// ------------------------------------------------------------------------------------------------
// A real service: every metric named exists; readiness degraded and stale
// ------------------------------------------------------------------------------------------------

/** Metric families in an exposition: name → type. */
function families(exposition: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1], m[2]);
  return out;
}

/** Whether `name` is exposed: a family, or a histogram's/summary's series (_bucket, _sum, _count). */
function exposed(name: string, fams: Map<string, string>): boolean {
  if (fams.has(name)) return true;
  const m = /^(.+)_(bucket|sum|count)$/.exec(name);
  if (!m) return false;
  const type = fams.get(m[1]);
  return type === 'histogram' || (type === 'summary' && m[2] !== 'bucket');
}

describe('a real embedded service', () => {
  let dir: string;
  let cairn: Embedded | null = null;
  let config: Readonly<Config>;

  const configWith = (serving: Partial<Config['serving']> = {}) =>
    loadConfig({
      env: {},
      overrides: {
        dataDir: dir,
        store: { url: '' },
        training: { threads: 1, algorithm: 'als' },
        jobs: { maxAttempts: 1 },
        monitoring: { freshnessCheckSeconds: 3600, driftWindow: 1000 },
        serving,
      },
    });

  const scrape = async () => {
    const res = await cairn!.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    return res.body;
  };
  const ready = async () => {
    const res = await cairn!.app.inject({ method: 'GET', url: '/health/ready' });
    return { status: res.statusCode, body: res.json() };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-monitoring-'));
    config = configWith();
    cairn = await createEmbedded(config, { logger: createLogger('silent'), snapshotEveryMs: 0 });
    const seeded = await seedDemo(cairn, { users: 200, items: 120, events: 8000, seed: 11 });
    expect(seeded.modelVersion).not.toBeNull();
  }, 120_000);

  afterAll(async () => {
    await cairn?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('exposes the champion quality, training and readiness gauges after a training', async () => {
    await cairn!.monitors.freshness.check();
    const text = await scrape();
    expect(text).toMatch(/^cairn_model_quality\{metric="ndcg@10"\} \d/m);
    expect(text).toMatch(/^cairn_model_stale 0$/m);
    expect(text).toMatch(/^cairn_training_last_failed 0$/m);
    expect(text).toMatch(/^cairn_training_last_success_timestamp_seconds \d/m);
    expect(text).not.toMatch(/^cairn_training_last_failure_timestamp_seconds /m);
    expect(text).toMatch(/^cairn_ready 1$/m);
    expect(text).toMatch(/^cairn_health_check_ok\{check="model"\} 1$/m);
    const { status, body } = await ready();
    expect(status).toBe(200);
    expect(body.checks.model.status).toBe('ok');
  });

  it('measures drift of the events that arrive after the training snapshot', async () => {
    const c = cairn!;
    const champion = c.champion.get()!.version;
    expect(champion.lineage?.drift, 'the training pipeline stores a drift reference').toBeTruthy();
    await c.monitors.drift!.useChampion(champion);
    // 300 purchases of items the model never saw: a new mix and an unseen-items flood.
    const outcomes = await c.ingest.ingestEvents(
      systemContext('drift-test'),
      Array.from({ length: 300 }, (_, i) => ({
        user_id: `u${i % 50}`,
        item_id: `brand-new-${i % 9}`,
        type: 'purchase',
      })),
    );
    expect(outcomes.every((o) => o.status === 'accepted')).toBe(true);
    await c.monitors.drift!.caughtUp(await c.eventLog.head());
    const text = await scrape();
    const psi = (dimension: string) =>
      Number(new RegExp(`^cairn_drift_psi\\{dimension="${dimension}"\\} (\\S+)$`, 'm').exec(text)?.[1]);
    expect(psi('event_types')).toBeGreaterThan(0.25);
    expect(psi('item_popularity')).toBeGreaterThan(0.25);
  });

  it('reports the model degraded after a real failed training, still ready', async () => {
    const c = cairn!;
    // A job the pipeline refuses for good (unknown algorithm): it records a `failed` version.
    const job = await c.jobs.enqueue('train', { algorithm: 'no-such-algorithm' }, { maxAttempts: 1 });
    c.runner.wake();
    expect((await waitForJob(c.jobs, job.id)).status).toBe('failed');
    await c.monitors.freshness.check();
    const { status, body } = await ready();
    expect(status).toBe(200);
    expect(body.checks.model).toMatchObject({ ok: true, status: 'degraded' });
    expect(body.checks.model.detail).toContain('last training failed at ');
    const text = await scrape();
    expect(text).toMatch(/^cairn_training_last_failed 1$/m);
    expect(text).toMatch(/^cairn_training_last_failure_timestamp_seconds \d/m);
  });

  it('exposes every metric the alert rules and the dashboard name', async () => {
    const fams = families(await scrape());
    const recorded = new Set<string>(
      rulesDoc.groups.flatMap((g: Json) => g.rules.filter((r: Json) => r.record).map((r: Json) => r.record)),
    );
    const missing: string[] = [];
    for (const { where, expr } of [...ruleExprs(), ...dashboardExprs()]) {
      const names = metricNames(grafanaToPromql(expr));
      expect(names.length, `${where} names no metric: ${expr}`).toBeGreaterThan(0);
      for (const name of names) {
        // `up` is Prometheus's own; recording rules are defined in the rules file itself.
        if (name === 'up' || recorded.has(name)) continue;
        if (!exposed(name, fams)) missing.push(`${where}: ${name}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('reports the model stale past a tiny serving.maxModelAgeSeconds, still ready (restart on the same data)', async () => {
    await cairn!.close();
    cairn = null;
    cairn = await createEmbedded(configWith({ maxModelAgeSeconds: 1 }), {
      logger: createLogger('silent'),
      snapshotEveryMs: 0,
    });
    const version = cairn.champion.get()?.version;
    expect(version).toBeTruthy();
    // The model is at least as old as the tests above took; wait (bounded) until it is past 1 s.
    let model: Json = null;
    for (let i = 0; i < 100; i++) {
      const { status, body } = await ready();
      expect(status).toBe(200);
      model = body.checks.model;
      if (model.status === 'stale') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(model).toMatchObject({ ok: true, status: 'stale' });
    expect(model.detail).toContain(`champion ${version!.version} is `);
    expect(model.detail).toContain('(limit 1s)');
    expect(await scrape()).toMatch(/^cairn_model_stale 1$/m);
  });
});
