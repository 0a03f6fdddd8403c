/**
 * Helpers of the multi-process integration tests (test/integration/roles.test.ts): real `cairn` processes
 * (`node bin/cairn.js …`) on the machine's real PostgreSQL, Redis and NATS JetStream.
 *
 * - `CairnProcess` spawns one process, keeps its output (shown when a test fails), waits for
 *   `/health/ready` by polling, and stops it with SIGTERM (SIGKILL after a grace period) or kills it.
 * - `TestDeployment` gives every run its own PostgreSQL schema, Redis key prefix and NATS stream prefix,
 *   starts processes against them, and removes all of it afterwards (its processes, the schema, only the
 *   keys under its prefix, only the streams under its prefix, its temporary directory).
 * - `runCairn` runs a one-shot command; `http` and `pollUntil` talk to the processes with deadlines.
 *
 * Children get a clean environment: no CAIRN_* variable of the test runner leaks into them, so each
 * process is configured only by what the test passes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as connectNats } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import pg from 'pg';

/** This checkout. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/**
 * The checkout whose `bin/cairn.js` the processes run: this one, unless `CAIRN_TEST_CAIRN_ROOT` names
 * another (e.g. an export of an older revision, to show that a reproduction fails there).
 */
export const CAIRN_ROOT = process.env.CAIRN_TEST_CAIRN_ROOT
  ? resolve(process.env.CAIRN_TEST_CAIRN_ROOT)
  : REPO_ROOT;
export const CAIRN_BIN = join(CAIRN_ROOT, 'bin', 'cairn.js');

/** The servers the tests use (the machine's own by default). */
export const SERVICES = {
  postgres: process.env.CAIRN_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
  redis: process.env.CAIRN_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
  nats: process.env.CAIRN_TEST_NATS_URL ?? 'nats://127.0.0.1:4222',
} as const;

export type Service = keyof typeof SERVICES;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------------
// Servers
// ------------------------------------------------------------------------------------------------

/**
 * Throws, naming the server and what to do, when one of `services` cannot be used — so that a missing
 * server fails the suite instead of skipping it. NATS must have JetStream, not just accept connections.
 */
export async function assertServicesUp(services: readonly Service[]): Promise<void> {
  const problems: string[] = [];
  await Promise.all(
    services.map(async (service) => {
      try {
        if (service === 'postgres') {
          const client = new pg.Client({
            connectionString: SERVICES.postgres,
            connectionTimeoutMillis: 5000,
          });
          try {
            await client.connect();
            await client.query('SELECT 1');
          } finally {
            await client.end().catch(() => undefined);
          }
        } else if (service === 'redis') {
          await pingRedis(SERVICES.redis, 5000);
        } else {
          const nc = await connectNats({ servers: SERVICES.nats, timeout: 5000, maxReconnectAttempts: 0 });
          try {
            await (await jetstreamManager(nc, { timeout: 5000 })).getAccountInfo();
          } finally {
            await nc.close();
          }
        }
      } catch (err) {
        problems.push(`${service} at ${SERVICES[service]}: ${errorText(err)}`);
      }
    }),
  );
  if (problems.length > 0) {
    throw new Error(
      `these integration tests need real servers, and some cannot be used:\n  ${problems.join('\n  ')}\n` +
        '(PostgreSQL with a database `test`, Redis, and nats-server started with -js; see .ci/run)',
    );
  }
}

/** A TCP port nobody listens on right now (the OS picks it; a process may still race us for it). */
/** One PING on a fresh connection, no retries: resolves when the server at `url` serves commands. */
export async function pingRedis(url: string, connectTimeoutMs: number): Promise<void> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: connectTimeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    // LOADING (replaying the AOF) is an error reply: not serving yet.
    if ((await client.ping()) !== 'PONG') throw new Error('PING did not answer PONG');
  } finally {
    client.disconnect();
  }
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

// ------------------------------------------------------------------------------------------------
// Environment
// ------------------------------------------------------------------------------------------------

/**
 * The environment of a child: the runner's, minus every CAIRN_* variable, plus `extra`. Defaults keep
 * children light on a shared 2-core machine (one training thread) and their logs useful (info).
 */
export function childEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith('CAIRN_')) env[key] = value;
  }
  return { ...env, CAIRN_LOGGING_LEVEL: 'info', CAIRN_TRAINING_THREADS: '1', ...extra };
}

// ------------------------------------------------------------------------------------------------
// Processes
// ------------------------------------------------------------------------------------------------

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Every child still alive, killed if the test runner exits without stopping them. */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // Synchronous on purpose: 'exit' handlers cannot wait. An orphaned server would keep its port and
    // its connections to the shared servers.
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
}

/** Output kept per process (the newest part): enough for any failure report, bounded for long runs. */
const MAX_OUTPUT_CHARS = 4 * 1024 * 1024;

/** One `node bin/cairn.js …` process with its output. */
export class CairnProcess {
  readonly child: ChildProcess;
  /** Resolves when the process has exited (or could not be spawned). */
  readonly exited: Promise<ExitInfo>;
  private exitInfo: ExitInfo | null = null;
  private readonly chunks: string[] = [];
  private chars = 0;
  /** Whether it logs at `info` or below, so its "Cairn is listening" line shows. */
  private readonly logsListening: boolean;

  constructor(
    /** Name in reports (e.g. `api-A`). */
    readonly name: string,
    readonly args: readonly string[],
    /** The HTTP port it was told to listen on (null for commands without a server). */
    readonly port: number | null,
    env: Record<string, string>,
    cwd: string,
    /** Options for node itself, before the script (e.g. `--cpu-prof`). */
    nodeArgs: readonly string[] = [],
  ) {
    this.logsListening = ['trace', 'debug', 'info'].includes(env.CAIRN_LOGGING_LEVEL ?? 'info');
    this.child = spawn(process.execPath, [...nodeArgs, CAIRN_BIN, ...args], {
      cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(this.child);
    for (const stream of [this.child.stdout!, this.child.stderr!]) {
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => this.append(chunk));
    }
    this.exited = new Promise((resolveExit) => {
      const done = (info: ExitInfo) => {
        this.exitInfo ??= info;
        resolveExit(this.exitInfo);
      };
      this.child.once('exit', (code, signal) => done({ code, signal }));
      // Spawning itself failed (no 'exit' follows).
      this.child.once('error', (err) => {
        this.append(`\n[spawn error] ${err.message}\n`);
        done({ code: null, signal: null });
      });
    });
  }

  get url(): string {
    if (this.port === null) throw new Error(`${this.name} has no HTTP port`);
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** True until the process has exited. */
  get running(): boolean {
    return this.exitInfo === null;
  }

  get exit(): ExitInfo | null {
    return this.exitInfo;
  }

  /** Everything it wrote (stdout and stderr interleaved as received). */
  output(): string {
    return this.chunks.join('');
  }

  /** The last `lines` lines of its output. */
  tail(lines = 60): string {
    return this.output().split('\n').slice(-lines).join('\n');
  }

  /**
   * Polls `GET /health/ready` until it answers 200 and, when it logs at `info` (childEnv's level), the
   * process has logged that it listens: another process may have taken the port meanwhile and answer in
   * its place. Fails early, with the process's output, when the process exits first, and at the deadline
   * with the last readiness answer.
   */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    while (Date.now() < deadline) {
      if (!this.running) {
        throw new Error(
          `${this.name} exited (${describeExit(this.exitInfo!)}) before it was ready:\n${this.tail(40)}`,
        );
      }
      try {
        const res = await fetch(`${this.url}/health/ready`, { signal: AbortSignal.timeout(3000) });
        const text = await res.text();
        const listening = !this.logsListening || this.output().includes('Cairn is listening');
        if (res.status === 200 && listening) return;
        last = `${res.status} ${text}`;
      } catch (err) {
        last = errorText(err);
      }
      await sleep(100);
    }
    throw new Error(`${this.name} not ready after ${timeoutMs} ms (last: ${last}):\n${this.tail(40)}`);
  }

  /** SIGKILL: the process gets no chance to clean up (a crash, an OOM kill, a lost machine). */
  async kill(): Promise<ExitInfo> {
    if (this.running) this.child.kill('SIGKILL');
    return this.exited;
  }

  /**
   * SIGTERM, then SIGKILL if it has not exited after `graceMs`. `forced` says whether SIGKILL was needed.
   */
  async stop(graceMs = 15_000): Promise<ExitInfo & { forced: boolean }> {
    if (!this.running) return { ...this.exitInfo!, forced: false };
    this.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const graceful = await Promise.race([
      this.exited.then(() => true),
      new Promise<false>((r) => (timer = setTimeout(() => r(false), graceMs))),
    ]);
    clearTimeout(timer);
    if (graceful) return { ...(await this.exited), forced: false };
    this.child.kill('SIGKILL');
    return { ...(await this.exited), forced: true };
  }

  private append(chunk: string): void {
    this.chunks.push(chunk);
    this.chars += chunk.length;
    while (this.chars > MAX_OUTPUT_CHARS && this.chunks.length > 1) this.chars -= this.chunks.shift()!.length;
  }
}

export function describeExit(exit: ExitInfo): string {
  return exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
}

/** What a one-shot command did. */
export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time, ms. */
  ms: number;
}

/** Runs `node bin/cairn.js ...args` to completion (SIGKILL and an error after `timeoutMs`). */
export async function runCairn(
  args: readonly string[],
  options: { env: Record<string, string>; cwd: string; timeoutMs?: number },
): Promise<CommandResult> {
  const timeoutMs = options.timeoutMs ?? 90_000;
  const started = performance.now();
  const child = spawn(process.execPath, [CAIRN_BIN, ...args], {
    cwd: options.cwd,
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  try {
    const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
    if (timedOut) {
      throw new Error(`cairn ${args.join(' ')} did not finish within ${timeoutMs} ms:\n${stdout}\n${stderr}`);
    }
    return { code, signal, stdout, stderr, ms: performance.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

// ------------------------------------------------------------------------------------------------
// HTTP and polling
// ------------------------------------------------------------------------------------------------

export interface HttpResult<T> {
  status: number;
  body: T;
}

/**
 * One JSON request with a deadline. Any status is returned (tests assert it); only a transport failure
 * or the deadline throws.
 */
export async function http<T = any>( // eslint-disable-line @typescript-eslint/no-explicit-any
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  url: string,
  body?: unknown,
  timeoutMs = 30_000,
): Promise<HttpResult<T>> {
  const res = await fetch(url, {
    method,
    // Writes declare JSON even without a body: key-less state changes without it are refused (415).
    headers: method === 'GET' ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let parsed: unknown = text;
  if ((res.headers.get('content-type') ?? '').includes('json') && text !== '') parsed = JSON.parse(text);
  return { status: res.status, body: parsed as T };
}

/**
 * Calls `probe` every `intervalMs` until it returns something other than null/undefined/false, and
 * returns that. At the deadline it throws, naming `what` and the last value `describe` made of the
 * probe's answers. Errors thrown by `probe` end the wait at once (they are failures, not "not yet").
 */
export async function pollUntil<T>(
  what: string,
  probe: () => Promise<T | null | undefined | false>,
  options: { timeoutMs: number; intervalMs?: number; describe?: () => string },
): Promise<T> {
  const started = Date.now();
  const interval = options.intervalMs ?? 50;
  for (;;) {
    const value = await probe();
    if (value !== null && value !== undefined && value !== false) return value;
    if (Date.now() - started >= options.timeoutMs) {
      const last = options.describe ? `; last: ${options.describe()}` : '';
      throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${what}${last}`);
    }
    await sleep(interval);
  }
}

// ------------------------------------------------------------------------------------------------
// Deployments
// ------------------------------------------------------------------------------------------------

export interface DeploymentOptions {
  /** Short name, part of the schema / prefixes (lower-case letters and digits). */
  name: string;
  /** Give the processes Redis (online state, BullMQ) under a private key prefix. */
  redis: boolean;
  /** Give the processes NATS JetStream (event and change logs) under a private stream prefix. */
  nats: boolean;
}

/**
 * One Cairn deployment of a test: a PostgreSQL schema, and optionally a Redis key prefix and a NATS stream
 * prefix, all unique to this run, plus the processes started on them. `cleanup()` removes everything.
 */
export class TestDeployment {
  readonly schema: string;
  readonly redisPrefix: string;
  readonly natsPrefix: string;
  readonly processes: CairnProcess[] = [];
  private sqlClient: pg.Client | null = null;

  private constructor(
    readonly options: DeploymentOptions,
    /** Temporary directory: working directory and data directories of the processes. */
    readonly dir: string,
    id: string,
  ) {
    this.schema = `cairn_roles_${options.name}_${id}`;
    this.redisPrefix = `cairn-roles:${options.name}:${id}:`;
    this.natsPrefix = `CRT_${options.name}_${id}`.toUpperCase();
  }

  static async create(options: DeploymentOptions): Promise<TestDeployment> {
    if (!/^[a-z0-9]{1,12}$/.test(options.name)) throw new Error(`bad deployment name ${options.name}`);
    const id = randomBytes(4).toString('hex');
    const dir = await mkdtemp(join(tmpdir(), `cairn-roles-${options.name}-`));
    return new TestDeployment(options, dir, id);
  }

  /** Configuration every process of the deployment shares, as environment variables. */
  env(extra: Record<string, string> = {}): Record<string, string> {
    const env: Record<string, string> = {
      CAIRN_STORE_URL: SERVICES.postgres,
      CAIRN_STORE_SCHEMA: this.schema,
    };
    if (this.options.redis) {
      env.CAIRN_REDIS_URL = SERVICES.redis;
      env.CAIRN_REDIS_KEY_PREFIX = this.redisPrefix;
    }
    if (this.options.nats) {
      env.CAIRN_NATS_URL = SERVICES.nats;
      env.CAIRN_NATS_STREAM_PREFIX = this.natsPrefix;
    }
    return childEnv({ ...env, ...extra });
  }

  /**
   * Starts `cairn serve --role <role>` on a free port with its own data directory and waits until it is
   * ready. A port taken between choosing and binding it is retried with another one.
   */
  async serve(
    name: string,
    role: 'all' | 'api' | 'worker',
    extraEnv: Record<string, string> = {},
    readyTimeoutMs = 120_000,
  ): Promise<CairnProcess> {
    const dataDir = join(this.dir, name);
    await mkdir(dataDir, { recursive: true });
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const env = this.env({ CAIRN_DATA_DIR: dataDir, CAIRN_SERVER_PORT: String(port), ...extraEnv });
      const proc = new CairnProcess(name, ['serve', '--role', role], port, env, this.dir);
      this.processes.push(proc);
      try {
        await proc.waitReady(readyTimeoutMs);
        return proc;
      } catch (err) {
        await proc.kill();
        if (attempt < 3 && proc.output().includes('EADDRINUSE')) continue;
        throw err;
      }
    }
  }

  /** Runs a one-shot `cairn` command in the deployment's directory (environment: `env` as given). */
  cli(args: readonly string[], env: Record<string, string>, timeoutMs?: number): Promise<CommandResult> {
    return runCairn(args, { env, cwd: this.dir, timeoutMs });
  }

  /** Reads the deployment's PostgreSQL schema directly (`$schema` in `text` is replaced by its name). */
  async sql<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
    if (!this.sqlClient) {
      const client = new pg.Client({ connectionString: SERVICES.postgres, connectionTimeoutMillis: 5000 });
      await client.connect();
      this.sqlClient = client;
    }
    const result = await this.sqlClient.query<R>(text.replaceAll('$schema', `"${this.schema}"`), values);
    return result.rows;
  }

  /** The tail of every process's output, for a failure report. */
  logs(lines = 80): string {
    return this.processes
      .map((p) => {
        const state = p.running ? `running, pid ${p.pid}` : describeExit(p.exit!);
        return `----- ${p.name} (${p.args.join(' ')}; ${state}) -----\n${p.tail(lines)}`;
      })
      .join('\n');
  }

  /**
   * Stops every process (SIGTERM, SIGKILL after a grace period), then drops the schema, deletes the keys
   * under the Redis prefix and the streams under the NATS prefix, and removes the directory. Every step
   * runs even when an earlier one failed; failures are reported together at the end.
   */
  async cleanup(): Promise<void> {
    const failures: string[] = [];
    const step = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        failures.push(`${what}: ${errorText(err)}`);
      }
    };
    await step('stopping processes', () => Promise.all(this.processes.map((p) => p.stop(10_000))));
    await step('closing the SQL client', async () => {
      await this.sqlClient?.end();
      this.sqlClient = null;
    });
    await step(`dropping schema ${this.schema}`, () => dropSchema(this.schema));
    if (this.options.redis)
      await step(`deleting Redis keys ${this.redisPrefix}*`, () => deleteRedisKeys(this.redisPrefix));
    if (this.options.nats)
      await step(`deleting NATS streams ${this.natsPrefix}_*`, () => deleteStreams(this.natsPrefix));
    await step(`removing ${this.dir}`, () => rm(this.dir, { recursive: true, force: true }));
    if (failures.length > 0)
      throw new Error(`cleanup of deployment ${this.options.name} failed:\n  ${failures.join('\n  ')}`);
  }
}

async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: SERVICES.postgres, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    // A connection left behind by a killed process must not block the test run forever.
    await client.query("SET lock_timeout = '15s'");
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    // Tenants of the deployment live in schemas `<schema>_t_<tenant>`.
    const tenants = await client.query<{ name: string }>(
      `SELECT nspname AS name FROM pg_namespace WHERE starts_with(nspname, $1)`,
      [`${schema}_t_`],
    );
    for (const { name } of tenants.rows) await client.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`);
  } finally {
    await client.end();
  }
}

/** Deletes the keys under `prefix` only (SCAN MATCH + UNLINK; never FLUSHDB: the server is shared). */
async function deleteRedisKeys(prefix: string): Promise<void> {
  const client = new Redis(SERVICES.redis, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await client.connect();
  try {
    const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await client.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    await client.quit();
  }
}

/** Deletes the JetStream streams named `<prefix>_…` (their consumers go with them). */
async function deleteStreams(prefix: string): Promise<void> {
  const nc = await connectNats({ servers: SERVICES.nats, timeout: 5000, maxReconnectAttempts: 0 });
  try {
    const jsm = await jetstreamManager(nc, { timeout: 10_000 });
    const names: string[] = [];
    for await (const info of jsm.streams.list()) {
      if (info.config.name.startsWith(`${prefix}_`)) names.push(info.config.name);
    }
    for (const name of names) await jsm.streams.delete(name);
  } finally {
    await nc.close();
  }
}

function errorText(err: unknown): string {
  if (err instanceof AggregateError) return err.errors.map(errorText).join('; ');
  return err instanceof Error ? err.message : String(err);
}
