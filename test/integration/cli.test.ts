/**
 * The real `cairn` command (`node bin/cairn.js`, one process per call) on user errors: one line
 * `error CAIRN_X: message` (plus field lines), a non-zero exit status, no stack trace unless asked for
 * (`--debug`, `CAIRN_DEBUG=1`); a command that must find a store creates none.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { childEnv, runCairn, type CommandResult } from './helpers/processes.ts';

/** A stack frame line, as Node prints them. */
const STACK_FRAME = /^\s+at /m;

let dir: string;
const run = (args: string[], env: Record<string, string> = {}) =>
  runCairn(args, { env: childEnv({ CAIRN_LOGGING_LEVEL: 'warn', ...env }), cwd: dir });

/** Runs every call, two processes at a time (the machine has two cores). */
async function runAll(calls: string[][]): Promise<CommandResult[]> {
  const results: CommandResult[] = new Array<CommandResult>(calls.length);
  let next = 0;
  const worker = async () => {
    while (next < calls.length) {
      const i = next++;
      results[i] = await run(calls[i]);
    }
  };
  await Promise.all([worker(), worker()]);
  return results;
}

/** The call failed as a user error: exit 2, exactly one stderr line with `code`, no stack. */
function expectOneLineError(r: CommandResult, code: string, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(2);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0].startsWith(`error ${code}: `), r.stderr).toBe(true);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(STACK_FRAME);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-cli-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('cairn on a store that does not exist', () => {
  // Every such command is covered in-process by src/cli/existing-store.test.ts; here the real binary.
  it('refuses to read it: one line, exit 2, nothing created', async () => {
    const missing = join(dir, 'missing');
    const r = await run(['recommend', 'u1', '--data', missing]);
    expectOneLineError(r, 'CAIRN_NOT_FOUND', /no Cairn store at .*missing/);
    expect(existsSync(missing)).toBe(false);
  });

  it('rejects a missing import path before opening (and so creating) the store', async () => {
    const target = join(dir, 'import-target');
    const r = await run(['import', 'no-such-dir', '--data', target]);
    expectOneLineError(r, 'CAIRN_VALIDATION', /path: no-such-dir does not exist/);
    expect(existsSync(target)).toBe(false);
  });
});

describe('cairn on a corrupt store', () => {
  it('reports the unexpected failure on one line, exit 1, with the stack only when asked', async () => {
    const data = join(dir, 'corrupt');
    await mkdir(data);
    await writeFile(
      join(data, 'cairn.db'),
      'this is not a SQLite database, but long enough to be read as one.',
    );
    const [quiet, loud] = await runAll([
      ['models', 'list', '--data', data],
      ['models', 'list', '--data', data, '--debug'],
    ]);
    expect(quiet.code).toBe(1);
    expect(quiet.stderr).toMatch(
      /^error CAIRN_INTERNAL: .*\(run with --debug or CAIRN_DEBUG=1 for the stack trace\)\n$/,
    );
    expect(loud.code).toBe(1);
    expect(loud.stderr).toMatch(STACK_FRAME);
  });
});

describe('cairn with bad flags or configuration', () => {
  it('names the flag or the option on one line, exit 2', async () => {
    const [k, unknown] = await runAll([
      ['recommend', 'u1', '--k', 'abc'],
      ['models', 'list', '--verbose'],
    ]);
    expectOneLineError(
      k,
      'CAIRN_VALIDATION',
      /^error CAIRN_VALIDATION: k: must be an integer ≥ 1, got "abc"$/,
    );
    expectOneLineError(unknown, 'CAIRN_VALIDATION', /unknown option '--verbose'/);
  });

  it('lists every offending configuration key under the headline', async () => {
    const r = await run(['recommend', 'u1'], { CAIRN_SERVER_PORT: 'abc', CAIRN_SERVING_MAX_K: 'x' });
    expect(r.code).toBe(2);
    expect(r.stderr.trimEnd().split('\n')).toEqual([
      'error CAIRN_CONFIG_INVALID: invalid configuration:',
      expect.stringMatching(/^ {2}CAIRN_SERVER_PORT: must be a number/),
      expect.stringMatching(/^ {2}CAIRN_SERVING_MAX_K: must be a number/),
    ]);
  });

  it('prints the stack of a user error with CAIRN_DEBUG=1', async () => {
    const r = await run(['recommend', 'u1', '--k', '0'], { CAIRN_DEBUG: '1' });
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe('error CAIRN_VALIDATION: k: must be an integer ≥ 1, got "0"');
    expect(r.stderr).toMatch(STACK_FRAME);
  });
});
