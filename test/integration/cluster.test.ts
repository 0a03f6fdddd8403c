/**
 * The `api` role as several processes (`server.processes`, src/main/cluster.ts): a real
 * `cairn serve --role api --processes 2` on the machine's PostgreSQL, Redis and NATS JetStream (own
 * schema, key prefix and stream prefix). The supervisor forks two processes that share the port; every
 * request is answered; a scrape of `/metrics` (which reaches one of them) counts the requests of both;
 * a process killed with SIGKILL is replaced and the port keeps answering; SIGTERM stops them all.
 * Other roles refuse to run as several processes.
 */
import { execFileSync } from 'node:child_process';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  assertServicesUp,
  pollUntil,
  runCairn,
  TestDeployment,
  type CairnProcess,
} from './helpers/processes.ts';

/** The pids of `pid`'s children. */
function children(pid: number): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .map((l) => Number(l.trim()))
      .filter((n) => n > 0);
  } catch {
    return []; // ps exits 1 when there is none
  }
}

/** One GET on a fresh connection (closed after the answer), so the supervisor hands each to a process. */
function getOnce(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { connection: 'close' }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The role's count of answered `GET /v1/popular` requests, from one scrape. */
async function popularCount(url: string, tail: () => string): Promise<number> {
  const res = await getOnce(`${url}/metrics`);
  expect(res.status, `${res.body}\n${tail()}`).toBe(200);
  let total = 0;
  for (const line of res.body.split('\n'))
    if (line.startsWith('cairn_http_request_duration_seconds_count{') && line.includes('route="/v1/popular"'))
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
  return total;
}

describe('the api role over two processes', () => {
  let d: TestDeployment | undefined;
  let api: CairnProcess;

  beforeAll(async () => {
    await assertServicesUp(['postgres', 'redis', 'nats']);
    d = await TestDeployment.create({ name: 'cluster', redis: true, nats: true });
    api = await d.serve('api', 'api', { CAIRN_SERVER_PROCESSES: '2' });
  }, 180_000);

  afterAll(async () => {
    await d?.cleanup();
  }, 120_000);

  it('shares the port between two processes, counts both in /metrics, replaces a killed one, and stops on SIGTERM', async () => {
    const first = await pollUntil(
      'two api processes',
      () => {
        const pids = children(api.pid);
        return Promise.resolve(pids.length === 2 ? pids : null);
      },
      {
        timeoutMs: 60_000,
        intervalMs: 100,
        describe: () => `children ${JSON.stringify(children(api.pid))}; output: ${api.tail(20)}`,
      },
    );
    // Both are ready behind the one port (readiness answered by whichever gets the connection).
    await pollUntil(
      'both processes to answer',
      async () => {
        const answers = await Promise.all(
          Array.from({ length: 8 }, () => getOnce(`${api.url}/health/ready`)),
        );
        return answers.every((a) => a.status === 200);
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );

    const before = await popularCount(api.url, () => api.tail(30));
    const n = 40;
    for (let i = 0; i < n; i++) expect((await getOnce(`${api.url}/v1/popular?k=3`)).status).toBe(200);
    // Connections go to the processes in turn: one process alone would count about half of them.
    expect((await popularCount(api.url, () => api.tail(30))) - before).toBe(n);

    // A process dies: the supervisor starts another, and the port keeps answering meanwhile.
    process.kill(first[0], 'SIGKILL');
    const replaced = await pollUntil(
      'the killed process to be replaced',
      () => {
        const pids = children(api.pid);
        return Promise.resolve(pids.length === 2 && !pids.includes(first[0]) ? pids : null);
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    expect(replaced).toContain(first[1]);
    await pollUntil(
      'the new process to answer',
      async () => {
        const answers = await Promise.all(
          Array.from({ length: 8 }, () => getOnce(`${api.url}/v1/popular?k=3`)),
        );
        return answers.every((a) => a.status === 200);
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );

    const exit = await api.stop();
    expect(exit).toMatchObject({ code: 0, forced: false });
    expect(children(api.pid)).toEqual([]);
    for (const pid of replaced) expect(() => process.kill(pid, 0)).toThrow();
  }, 240_000);

  it('is refused for the other roles, naming server.processes', async () => {
    const res = await runCairn(['serve', '--role', 'worker', '--processes', '2'], {
      env: d!.env({ CAIRN_DATA_DIR: d!.dir }),
      cwd: d!.dir,
    });
    expect(res.code).not.toBe(0);
    expect(res.stdout + res.stderr).toMatch(/server\.processes/);
  });
});
