/**
 * `cairn import` of a public data set (ratings only, no catalog file) through the real binary: the data
 * set's items become catalog items, so the popular fallback — which counts catalog items only — answers
 * a new user with them instead of nothing.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { childEnv, runCairn } from './helpers/processes.ts';

const RATINGS = fileURLToPath(new URL('../fixtures/datasets/movietweetings/ratings.dat', import.meta.url));
let dir: string;
const run = (args: string[]) =>
  runCairn(args, { env: childEnv({ CAIRN_LOGGING_LEVEL: 'warn' }), cwd: dir, timeoutMs: 60_000 });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-import-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

it('registers a data set’s items in the catalog, so a new user gets popular items', async () => {
  const imported = await run(['import', RATINGS, '--format', 'movietweetings', '--data', 'data']);
  expect(imported.code, imported.stderr).toBe(0);
  expect(imported.stdout).toMatch(/imported 150 events \(0 duplicates, 0 rejected\)/);
  const recs = await run(['recommend', 'someone-new', '--k', '3', '--data', 'data']);
  expect(recs.code, recs.stderr).toBe(0);
  const items = recs.stdout.split('\n').filter((line) => /^\s+\d+\.\s/.test(line));
  expect(items, recs.stdout).toHaveLength(3);
  expect(recs.stdout).toMatch(/fallback/);
}, 120_000);
