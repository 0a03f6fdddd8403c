import { Command, CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import { CairnError } from '../errors/errors.ts';
import { debugRequested, describeCliError, throwingErrors, USER_ERROR_EXIT } from './errors.ts';

/** The CommanderError a real program throws for `args` (output silenced, as main.ts configures it). */
function commanderError(args: string[]): CommanderError {
  const program = throwingErrors(new Command('cairn')).configureOutput({
    writeOut: () => undefined,
    writeErr: () => undefined,
  });
  program
    .command('recommend <user>')
    .option('--data <dir>')
    .action(() => undefined);
  try {
    program.parse(args, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) return err;
    throw err;
  }
  throw new Error(`no error for ${args.join(' ')}`);
}

describe('describeCliError', () => {
  it('prints a client CairnError as one line with its code, exit 2, no stack', () => {
    const err = CairnError.validation([{ field: 'k', message: 'must be an integer ≥ 1, got "x"' }]);
    expect(describeCliError(err, false)).toEqual({
      text: 'error CAIRN_VALIDATION: k: must be an integer ≥ 1, got "x"\n',
      exitCode: USER_ERROR_EXIT,
    });
  });

  it('adds one line per offending field the headline does not already say', () => {
    const err = CairnError.validation([
      { field: 'algorithm', message: 'unknown algorithm "x"' },
      { field: 'param', message: 'expected ALG.NAME=VALUE' },
    ]);
    expect(describeCliError(err, false).text).toBe(
      'error CAIRN_VALIDATION: algorithm: unknown algorithm "x"\n  param: expected ALG.NAME=VALUE\n',
    );
  });

  it('turns a multi-line configuration error into a headline and indented fields, exit 2', () => {
    const err = new CairnError(
      'CAIRN_CONFIG_INVALID',
      'invalid configuration:\n  server.port: too large\n  store.url: bad scheme',
      {
        fields: [
          { field: 'server.port', message: 'too large' },
          { field: 'store.url', message: 'bad scheme' },
        ],
      },
    );
    expect(describeCliError(err, false)).toEqual({
      text: 'error CAIRN_CONFIG_INVALID: invalid configuration:\n  server.port: too large\n  store.url: bad scheme\n',
      exitCode: USER_ERROR_EXIT,
    });
  });

  it('exits 1 for a server-side CairnError, still without a stack', () => {
    const failure = describeCliError(new CairnError('CAIRN_UNAVAILABLE', 'database is locked'), false);
    expect(failure).toEqual({ text: 'error CAIRN_UNAVAILABLE: database is locked\n', exitCode: 1 });
  });

  it('maps a missing file to CAIRN_NOT_FOUND', () => {
    const enoent = Object.assign(new Error("ENOENT: no such file or directory, open 'x.csv'"), {
      code: 'ENOENT',
    });
    expect(describeCliError(enoent, false)).toEqual({
      text: "error CAIRN_NOT_FOUND: ENOENT: no such file or directory, open 'x.csv'\n",
      exitCode: USER_ERROR_EXIT,
    });
  });

  it('reports an unexpected error as CAIRN_INTERNAL with a hint, and the stack only with debug', () => {
    const err = new TypeError('cannot read properties of undefined');
    const quiet = describeCliError(err, false);
    expect(quiet.exitCode).toBe(1);
    expect(quiet.text).toBe(
      'error CAIRN_INTERNAL: cannot read properties of undefined (run with --debug or CAIRN_DEBUG=1 for the stack trace)\n',
    );
    const loud = describeCliError(err, true);
    expect(loud.text.split('\n')[0]).toBe('error CAIRN_INTERNAL: cannot read properties of undefined');
    expect(loud.text).toContain(err.stack);
  });

  it('prints the stack of a CairnError with debug', () => {
    const err = new CairnError('CAIRN_NOT_FOUND', 'no Cairn store at /x');
    expect(describeCliError(err, true).text).toBe(
      `error CAIRN_NOT_FOUND: no Cairn store at /x\n${err.stack}\n`,
    );
  });

  it("puts commander's usage errors, suggestion included, on one CAIRN_VALIDATION line, exit 2", () => {
    expect(describeCliError(commanderError(['recommend', 'u1', '--dat', 'x']), false)).toEqual({
      text: "error CAIRN_VALIDATION: unknown option '--dat' (Did you mean --data?) (see --help)\n",
      exitCode: USER_ERROR_EXIT,
    });
    expect(describeCliError(commanderError(['recommend']), false).text).toBe(
      "error CAIRN_VALIDATION: missing required argument 'user' (see --help)\n",
    );
    expect(describeCliError(commanderError(['bogus']), false).exitCode).toBe(USER_ERROR_EXIT);
  });

  it('adds nothing after help, and keeps its exit status', () => {
    expect(describeCliError(commanderError(['--help']), false)).toEqual({ text: '', exitCode: 0 });
    expect(describeCliError(commanderError([]), false)).toEqual({ text: '', exitCode: 1 });
  });
});

describe('debugRequested', () => {
  it('is on with --debug anywhere before --, or CAIRN_DEBUG=1/true', () => {
    expect(debugRequested(['node', 'cairn', 'recommend', 'u1', '--debug'], {})).toBe(true);
    expect(debugRequested(['node', 'cairn', 'recommend', '--', '--debug'], {})).toBe(false);
    expect(debugRequested(['node', 'cairn'], { CAIRN_DEBUG: '1' })).toBe(true);
    expect(debugRequested(['node', 'cairn'], { CAIRN_DEBUG: 'true' })).toBe(true);
    expect(debugRequested(['node', 'cairn'], { CAIRN_DEBUG: '0' })).toBe(false);
    expect(debugRequested(['node', 'cairn'], {})).toBe(false);
  });
});
