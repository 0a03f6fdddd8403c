/** `cairn train`: trains a model from the stored events now, with a progress bar, and registers it. */
import { pseudonymizerFor } from '../../security/pseudonym.ts';
import type { Command } from 'commander';
import type { TrainRequest } from '../../domain/types.ts';
import { runTrainingJob } from '../../training/pipeline.ts';
import { validateTrainRequest } from '../../training/service.ts';
import { addStoreOptions, configFrom, CTX, openForCommand, type StoreOptions } from '../common.ts';
import { progressBar } from '../progress.ts';
import { collect, parseAlgorithms, parseParamOverrides } from './eval-data.ts';

interface TrainOptions extends StoreOptions {
  algorithm?: string;
  param: string[];
  promote: boolean;
  json?: boolean;
}

export function registerTrain(program: Command): void {
  addStoreOptions(
    program
      .command('train')
      .description('train a model from the stored events and register it (promoted when it passes the gates)')
      .option(
        '--algorithm <name>',
        'als | bpr | itemknn | ease | rp3beta | pop (default: config training.algorithm)',
      )
      .option(
        '--param <ALG.NAME=VALUE>',
        'hyper-parameter override, e.g. als.factors=64 (repeatable)',
        collect,
        [],
      )
      .option('--no-promote', 'register without promoting')
      .option('--json', 'print the result as JSON'),
  ).action(async (opts: TrainOptions) => {
    const config = configFrom({ logLevel: 'warn', ...opts });
    const spec = parseAlgorithms(opts.algorithm ?? config.training.algorithm)[0];
    const params = parseParamOverrides(opts.param, [spec]).get(spec.name);
    const request: TrainRequest = {
      algorithm: spec.name,
      params,
      promote: opts.promote,
      trigger: { kind: 'cli', key: null },
      requested_by: CTX.principal.id,
    };
    validateTrainRequest(config, request);
    // Training needs stored events: a mistyped --data must not leave an empty store (and a failed model) behind.
    const cairn = await openForCommand(config, { existingStore: true });
    const logger = cairn.logger.child({ request_id: CTX.requestId });
    const bar = progressBar('training');
    try {
      const result = await runTrainingJob(
        {
          store: cairn.store,
          config,
          registry: cairn.registry,
          metrics: cairn.metrics,
          logger,
          pseudonymize: await pseudonymizerFor(config, cairn.store.settings),
        },
        request,
        {
          jobId: CTX.requestId,
          // The command runs once, never retried: its attempt is the last, so a failure is recorded.
          attempt: config.jobs.maxAttempts,
          progress: (f) => bar.update(f),
          signal: new AbortController().signal,
          logger,
        },
      );
      bar.stop();
      if (opts.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      else {
        const m = result.metrics as Record<string, number>;
        process.stdout.write(
          `model ${String(result.version)} (${String(result.algorithm)}) trained in ${Number(result.train_seconds).toFixed(2)} s on ${String(
            result.interactions,
          )} interactions\nholdout: ${Object.entries(m)
            .map(([k, v]) => `${k}=${v.toFixed(4)}`)
            .join(
              ' ',
            )}\n${result.promoted ? 'promoted to champion' : `not promoted: ${String(result.gate_reason)}`}\n`,
        );
      }
    } finally {
      bar.stop();
      await cairn.close();
    }
  });
}
