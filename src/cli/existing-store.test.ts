/**
 * Every command that only reads, or only changes what a store already holds, refuses a store that does
 * not exist instead of creating an empty one — a SQLite file or a PostgreSQL schema — and reads one that
 * does. The real commands, registered as main.ts does and run in this process (spawning a process per
 * command costs seconds each; test/integration/cli.test.ts runs the real binary for the output itself).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../config/load.ts';
import { openStore } from '../storage/open.ts';
import { registerExperiments } from './commands/experiments.ts';
import { registerModels } from './commands/models.ts';
import { registerRecommend } from './commands/recommend.ts';
import { registerTrain } from './commands/train.ts';
import { describeCliError, throwingErrors, USER_ERROR_EXIT } from './errors.ts';

const PG_URL = process.env.CAIRN_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Runs `cairn ...args` in this process; resolves to what main.ts would print and the exit status. */
async function cairn(args: string[]): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const program = throwingErrors(new Command('cairn')).configureOutput({ writeErr: () => undefined });
  registerModels(program);
  registerExperiments(program);
  registerRecommend(program);
  registerTrain(program);
  let stdout = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  try {
    await program.parseAsync(args, { from: 'user' });
    return { stdout, stderr: '', exitCode: 0 };
  } catch (err) {
    const failure = describeCliError(err, false);
    return { stdout, stderr: failure.text, exitCode: failure.exitCode };
  } finally {
    spy.mockRestore();
  }
}

/** Commands that must find an existing store (a reading or changing command on a typo'd --data). */
const COMMANDS = [
  ['recommend', 'u1'],
  ['models', 'list'],
  ['models', 'show', 'v1'],
  ['models', 'promote', 'v1'],
  ['models', 'rollback'],
  ['experiments', 'list'],
  ['experiments', 'show', 'exp-1'],
  ['experiments', 'results', 'exp-1'],
  ['experiments', 'stop', 'exp-1'],
  ['experiments', 'create', '--file', 'EXP_FILE'],
  ['train'],
];

let dir: string;
let expFile: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-cli-store-'));
  expFile = join(dir, 'exp.json');
  const experiment = {
    id: 'exp-1',
    variants: [
      { name: 'control', weight: 50 },
      { name: 'b', weight: 50 },
    ],
  };
  await writeFile(expFile, JSON.stringify(experiment));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const withFile = (args: string[]) => args.map((a) => (a === 'EXP_FILE' ? expFile : a));

describe('commands on a SQLite store that does not exist', () => {
  it.each(COMMANDS.map((c) => [c.join(' '), c]))(
    '%s: CAIRN_NOT_FOUND naming the path, exit 2, nothing created',
    async (_name, command) => {
      const missing = join(dir, `missing-${randomBytes(3).toString('hex')}`);
      const r = await cairn([...withFile(command), '--data', missing]);
      expect(r.exitCode).toBe(USER_ERROR_EXIT);
      expect(r.stderr).toBe(
        `error CAIRN_NOT_FOUND: no Cairn store at ${join(missing, 'cairn.db')}: pass --data DIR or --store URL of an existing store\n`,
      );
      expect(existsSync(missing)).toBe(false);
    },
  );
});

describe('commands on a PostgreSQL schema that holds no store', () => {
  const schema = `cairn_cli_${randomBytes(4).toString('hex')}`;
  let admin: pg.Client;

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
  });
  afterEach(async () => {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  });
  afterAll(async () => {
    await admin.end();
  });

  it.each(COMMANDS.map((c) => [c.join(' '), c]))(
    '%s: CAIRN_NOT_FOUND naming the schema, which is not created',
    async (_name, command) => {
      vi.stubEnv('CAIRN_STORE_SCHEMA', schema);
      try {
        const r = await cairn([...withFile(command), '--store', PG_URL]);
        expect(r.exitCode).toBe(USER_ERROR_EXIT);
        expect(r.stderr).toMatch(
          new RegExp(`^error CAIRN_NOT_FOUND: no Cairn store in PostgreSQL schema "${schema}"`),
        );
      } finally {
        vi.unstubAllEnvs();
      }
      const found = await admin.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
      expect(found.rowCount).toBe(0);
    },
  );
});

describe('commands on an existing store', () => {
  it('read it', async () => {
    const data = join(dir, 'existing');
    const store = await openStore(loadConfig({ env: {}, overrides: { dataDir: data } }));
    await store.close();
    const models = await cairn(['models', 'list', '--data', data]);
    expect(models).toEqual({ stdout: 'no models yet: run `cairn train`\n', stderr: '', exitCode: 0 });
    const experiments = await cairn(['experiments', 'list', '--json', '--data', data]);
    expect(experiments.exitCode).toBe(0);
    expect(JSON.parse(experiments.stdout)).toEqual({ experiments: [] });
  });
});
