/**
 * `cairn serve` refuses to listen beyond loopback while API keys are off, before it opens anything
 * (no data directory is created), and says how to enable keys or override; a port already taken ends it
 * with CAIRN_CONFLICT instead of leaving a process that listens nowhere.
 */
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { childEnv, runCairn } from './helpers/processes.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-bind-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

it('cairn serve --host 0.0.0.0 without auth fails with CAIRN_CONFIG_INVALID naming server.host', async () => {
  const data = join(dir, 'data');
  const run = await runCairn(['serve', '--host', '0.0.0.0', '--port', '0', '--data', data], {
    env: childEnv(),
    cwd: dir,
    // Without the check the server would start and listen: the deadline ends (and fails) the test.
    timeoutMs: 30_000,
  });
  expect(run.code, run.stdout + run.stderr).not.toBe(0);
  expect(run.stderr).toContain('CAIRN_CONFIG_INVALID');
  expect(run.stderr).toContain('server.host');
  expect(run.stderr).toContain('CAIRN_AUTH_ENABLED');
  expect(existsSync(data)).toBe(false);
});

it('cairn serve on a port already taken exits with CAIRN_CONFLICT (what it opened is closed)', async () => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const port = (taken.address() as { port: number }).port;
  try {
    const run = await runCairn(['serve', '--port', String(port), '--data', join(dir, 'taken')], {
      env: childEnv(),
      cwd: dir,
      // Before the fix the process stayed alive with its store open: the deadline ends (and fails) the test.
      timeoutMs: 30_000,
    });
    expect(run.code, run.stdout + run.stderr).not.toBe(0);
    expect(run.signal).toBeNull();
    expect(run.stderr).toContain('CAIRN_CONFLICT');
  } finally {
    await new Promise((resolve) => taken.close(resolve));
  }
});
