/**
 * The `cairn` command. Each sub-command lives in commands/ and registers itself on the program;
 * errors are printed once, with their code, and set a non-zero exit status.
 */
import { Command, CommanderError } from 'commander';
import { isCairnError } from '../errors/errors.ts';
import { registerDemoData } from './commands/demo-data.ts';
import { registerEval } from './commands/eval.ts';
import { registerExperiments } from './commands/experiments.ts';
import { registerImport } from './commands/import.ts';
import { registerModels } from './commands/models.ts';
import { registerRecommend } from './commands/recommend.ts';
import { registerServe } from './commands/serve.ts';
import { registerTrain } from './commands/train.ts';
import { registerTune } from './commands/tune.ts';

export function buildProgram(): Command {
  const program = new Command('cairn')
    .description('Cairn: a self-hosted, real-time recommendation and next-best-offer engine')
    .version('0.1.0')
    .showHelpAfterError();
  registerServe(program);
  registerImport(program);
  registerDemoData(program);
  registerTrain(program);
  registerModels(program);
  registerExperiments(program);
  registerRecommend(program);
  registerEval(program);
  registerTune(program);
  return program;
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exitCode = err.exitCode;
  else if (isCairnError(err)) {
    process.stderr.write(`error ${err.code}: ${err.message}\n`);
    process.exitCode = err.isClientError ? 2 : 1;
  } else {
    process.stderr.write(`error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  }
}
