/**
 * The `cairn` command. Each sub-command lives in commands/ and registers itself on the program;
 * errors are printed once, as one line with their code (errors.ts), and set a non-zero exit status.
 */
import { Command } from 'commander';
import { registerDemoData } from './commands/demo-data.ts';
import { registerEval } from './commands/eval.ts';
import { registerExperiments } from './commands/experiments.ts';
import { registerImport } from './commands/import.ts';
import { registerKeys } from './commands/keys.ts';
import { registerModels } from './commands/models.ts';
import { registerRecommend } from './commands/recommend.ts';
import { registerServe } from './commands/serve.ts';
import { registerTrain } from './commands/train.ts';
import { registerTune } from './commands/tune.ts';
import { debugRequested, describeCliError, throwingErrors } from './errors.ts';

export function buildProgram(): Command {
  const program = throwingErrors(new Command('cairn'))
    .description('Cairn: a self-hosted, real-time recommendation and next-best-offer engine')
    .version('0.1.0')
    .option('--debug', 'print the stack trace of an error (also CAIRN_DEBUG=1)');
  registerServe(program);
  registerImport(program);
  registerDemoData(program);
  registerTrain(program);
  registerModels(program);
  registerExperiments(program);
  registerRecommend(program);
  registerEval(program);
  registerTune(program);
  registerKeys(program);
  return program;
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  const failure = describeCliError(err, debugRequested(process.argv, process.env));
  process.stderr.write(failure.text);
  process.exitCode = failure.exitCode;
}
