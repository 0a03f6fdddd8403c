/**
 * `cairn experiments list|show ID|results ID|create --file F|stop ID`: the experiments API from the
 * command line, on the same service (store first, then announced on the change log so running
 * replicas pick it up). `--json` prints exactly what the HTTP API answers.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { experimentToWire, resultsToWire } from '../../api/experiment-wire.ts';
import type { Experiment } from '../../domain/types.ts';
import { CairnError } from '../../errors/errors.ts';
import type { ExperimentResults, ExperimentService } from '../../experiments/contracts.ts';
import { createExperimentService } from '../../experiments/service.ts';
import { parseCreateExperiment } from '../../experiments/validate.ts';
import { addStoreOptions, configFrom, CTX, openForCommand, type StoreOptions } from '../common.ts';

interface ExperimentOptions extends StoreOptions {
  json?: boolean;
  file?: string;
  reason?: string;
}

/** Every experiments command works on an existing store: none of them makes sense on a new, empty one. */
async function withService<T>(
  opts: StoreOptions,
  fn: (service: ExperimentService) => Promise<T>,
): Promise<T> {
  const config = configFrom({ logLevel: 'warn', ...opts });
  const cairn = await openForCommand(config, { existingStore: true });
  try {
    return await fn(
      createExperimentService({ store: cairn.store, changeLog: cairn.changeLog, logger: cairn.logger }),
    );
  } finally {
    await cairn.close();
  }
}

const out = (text: string) => process.stdout.write(`${text}\n`);
const json = (value: unknown) => out(JSON.stringify(value, null, 2));

function line(e: Experiment): string {
  const arms = e.variants.map((v) => `${v.name}:${v.weight}${v.modelVersion ? `@${v.modelVersion}` : ''}`);
  return [
    e.id.padEnd(24),
    e.kind.padEnd(7),
    e.status.padEnd(12),
    arms.join(' ').padEnd(48),
    new Date(e.createdAt).toISOString(),
  ].join(' ');
}

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
const interval = (e: { value: number; low: number; high: number }, f: (x: number) => string) =>
  `${f(e.value)} [${f(e.low)}, ${f(e.high)}]`;

function resultsText(r: ExperimentResults): string {
  const rows = [
    `experiment ${r.experimentId}   srm p-value: ${r.srmPValue === null ? 'n/a' : r.srmPValue.toPrecision(3)}`,
  ];
  for (const v of r.variants) {
    rows.push(
      [
        `  ${v.name.padEnd(16)}`,
        `users ${v.users}`,
        `impressions ${v.impressions}`,
        `clicks ${v.clicks}`,
        `conversions ${v.conversions}`,
      ].join('  '),
      `    ctr ${interval(v.ctr, pct)}   conversion rate ${interval(v.conversionRate, pct)}   ` +
        `revenue/user ${interval(v.revenuePerUser, (x) => x.toFixed(2))}`,
      `    lift vs control: ${v.liftVsControl === null ? '—' : interval(v.liftVsControl, pct)}`,
    );
  }
  for (const s of r.shadow ?? [])
    rows.push(
      `  shadow ${s.variant} (${s.modelVersion ?? '?'}): ${s.compared} of ${s.requests} answers compared, ` +
        `overlap@k ${interval(s.overlap, pct)}, identical ${pct(s.identical)}`,
    );
  return rows.join('\n');
}

export function registerExperiments(program: Command): void {
  const experiments = program
    .command('experiments')
    .description('A/B tests, canaries and shadow runs: list, show, results, create, stop');

  addStoreOptions(
    experiments.command('list').description('experiments, newest first').option('--json', 'JSON output'),
  ).action((opts: ExperimentOptions) =>
    withService(opts, async (service) => {
      const list = await service.list(CTX);
      if (opts.json) json({ experiments: list.map(experimentToWire) });
      else if (list.length === 0) out('no experiments yet: `cairn experiments create --file F`');
      else out(list.map(line).join('\n'));
    }),
  );

  addStoreOptions(
    experiments.command('show <id>').description('one experiment').option('--json', 'JSON output'),
  ).action((id: string, opts: ExperimentOptions) =>
    withService(opts, async (service) => {
      const e = await service.get(CTX, id);
      if (opts.json) json(experimentToWire(e));
      else {
        out(line(e));
        if (e.guard)
          out(
            `  guard: ${e.guard.metric}, margin ${e.guard.margin}, min impressions ${e.guard.minImpressions}`,
          );
        if (e.stopReason) out(`  stopped: ${e.stopReason}`);
      }
    }),
  );

  addStoreOptions(
    experiments
      .command('results <id>')
      .description('per-variant results with 95 % intervals and the sample-ratio-mismatch check')
      .option('--json', 'JSON output (as GET /v1/experiments/{id}/results)'),
  ).action((id: string, opts: ExperimentOptions) =>
    withService(opts, async (service) => {
      const r = await service.results(CTX, id);
      if (opts.json) json(resultsToWire(r));
      else out(resultsText(r));
    }),
  );

  addStoreOptions(
    experiments
      .command('create')
      .description('start an experiment from a JSON file (the body of POST /v1/experiments)')
      .requiredOption(
        '--file <path>',
        'JSON file, e.g. {"id":"exp-1","variants":[{"name":"control","weight":50},…]}',
      )
      .option('--json', 'JSON output'),
  ).action(async (opts: ExperimentOptions) => {
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(opts.file!, 'utf8'));
    } catch (err) {
      throw new CairnError('CAIRN_VALIDATION', `--file ${opts.file}: ${(err as Error).message}`, {
        fields: [{ field: 'file', message: (err as Error).message }],
      });
    }
    const request = parseCreateExperiment(raw);
    await withService(opts, async (service) => {
      const e = await service.create(CTX, request);
      if (opts.json) json(experimentToWire(e));
      else out(`started: ${line(e)}`);
    });
  });

  addStoreOptions(
    experiments
      .command('stop <id>')
      .description('stop an experiment: every user gets the champion again')
      .option('--reason <text>', 'why it was stopped')
      .option('--json', 'JSON output'),
  ).action((id: string, opts: ExperimentOptions) =>
    withService(opts, async (service) => {
      const e = await service.stop(CTX, id, opts.reason);
      if (opts.json) json(experimentToWire(e));
      else out(`stopped: ${line(e)}`);
    }),
  );
}
