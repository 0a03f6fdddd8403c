/**
 * Private Redis and NATS JetStream servers for tests that take a server away under load (chaos tests):
 * each runs as a child of the test on a free port with its own data directory, and can be killed
 * (SIGKILL: a crash, nothing flushed by the server itself) and started again on the SAME port and data
 * directory, so clients reconnect to what they knew.
 *
 * - Redis: `--appendonly yes --save ''`: every write reaches the AOF before it is answered (a killed
 *   process loses nothing the OS already has), no RDB snapshots.
 * - NATS: `-js -sd DIR`: JetStream with file storage.
 *
 * `killPostgres` does the same to a private PostgreSQL cluster (helpers/pg-cluster.ts): SIGKILL of the
 * postmaster and every process under it, as when its machine is lost; `cluster.start()` brings it back
 * (crash recovery from the WAL).
 *
 * The machine's own servers are never touched. `destroy()` kills the server and removes its directory;
 * as a last resort every server still running is killed, and its directory removed, when the test
 * process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as connectNats } from '@nats-io/transport-node';
import pg from 'pg';
import type { PgCluster } from './pg-cluster.ts';
import { freePort, pingRedis, sleep } from './processes.ts';

export type ServerKind = 'redis' | 'nats';

/** Children still alive and data directories not yet removed, cleaned up if the runner exits first. */
const live = new Set<ChildProcess>();
const dirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Synchronous on purpose ('exit' handlers cannot wait): an orphan would keep its port.
  process.once('exit', () => {
    for (const c of live) c.kill('SIGKILL');
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
}

function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  installExitHook();
}

/** Output kept per server (the newest part), shown when a test fails. */
const MAX_OUTPUT_CHARS = 256 * 1024;

export class PrivateServer {
  private child: ChildProcess | null = null;
  private output = '';

  private constructor(
    readonly kind: ServerKind,
    readonly port: number,
    /** Data directory (AOF or JetStream store), kept across restarts, removed by `destroy()`. */
    readonly dir: string,
  ) {}

  /** Starts a new server of `kind` on a free port with a fresh data directory. */
  static async start(kind: ServerKind): Promise<PrivateServer> {
    const dir = await mkdtemp(join(tmpdir(), `cairn-private-${kind}-`));
    dirs.add(dir);
    installExitHook();
    const server = new PrivateServer(kind, await freePort(), dir);
    try {
      await server.start();
    } catch (err) {
      await server.destroy();
      throw err;
    }
    return server;
  }

  get url(): string {
    return `${this.kind}://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number {
    return this.child?.pid ?? -1;
  }

  /** The last `lines` lines the server wrote. */
  tail(lines = 40): string {
    return this.output.split('\n').slice(-lines).join('\n');
  }

  /** Starts the server (again) on its port and data directory; resolves once it serves requests. */
  async start(timeoutMs = 20_000): Promise<void> {
    if (this.running) throw new Error(`${this.kind} on ${this.port} is already running`);
    const child = spawn(this.command(), this.args(), { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    track(child);
    this.child = child;
    for (const stream of [child.stdout, child.stderr]) {
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        this.output = (this.output + chunk).slice(-MAX_OUTPUT_CHARS);
      });
    }
    const spawnError = once(child, 'error').then(([e]) => Promise.reject(e as Error));
    spawnError.catch(() => undefined);
    await Promise.race([this.waitServing(child, timeoutMs), spawnError]);
  }

  /** SIGKILL, and waits until the process is gone (its port is free for `start()` then). */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) throw new Error(`${this.kind} on ${this.port} is not running`);
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }

  /** Kills the server if it runs and removes its data directory. Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.running) await this.kill();
    await rm(this.dir, { recursive: true, force: true });
    dirs.delete(this.dir);
  }

  private command(): string {
    return this.kind === 'redis' ? 'redis-server' : 'nats-server';
  }

  private args(): string[] {
    const port = String(this.port);
    if (this.kind === 'nats') return ['-js', '-a', '127.0.0.1', '-p', port, '-sd', this.dir];
    return ['--port', port, '--bind', '127.0.0.1', '--dir', this.dir, '--save', '', '--appendonly', 'yes'];
  }

  /** Polls until the server answers a real request (Redis PING; NATS with JetStream account info). */
  private async waitServing(child: ChildProcess, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`${this.kind} on ${this.port} exited at start:\n${this.tail()}`);
      try {
        await (this.kind === 'redis' ? pingRedis(this.url, 1000) : pingJetStream(this.url));
        return;
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(50);
    }
    child.kill('SIGKILL');
    throw new Error(
      `${this.kind} on ${this.port} not serving after ${timeoutMs} ms (${last}):\n${this.tail()}`,
    );
  }
}

async function pingJetStream(url: string): Promise<void> {
  const nc = await connectNats({ servers: url, timeout: 1000, maxReconnectAttempts: 0 });
  try {
    await (await jetstreamManager(nc, { timeout: 1000 })).getAccountInfo();
  } finally {
    await nc.close();
  }
}

/**
 * SIGKILLs the cluster's postmaster and every process under it (backends, WAL writer, …) at once, as when
 * the machine running it is lost, and waits until they are gone. Restart with `cluster.start()`.
 */
export async function killPostgres(cluster: PgCluster): Promise<void> {
  const client = new pg.Client({ connectionString: cluster.url, connectionTimeoutMillis: 3000 });
  await client.connect();
  let dataDir: string;
  try {
    dataDir = (await client.query<{ data_directory: string }>('SHOW data_directory')).rows[0].data_directory;
  } finally {
    await client.end();
  }
  const postmaster = Number((await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  if (!Number.isInteger(postmaster) || postmaster <= 1) throw new Error(`bad postmaster pid in ${dataDir}`);
  const children = await childPids(postmaster);
  // The postmaster first: it would otherwise notice its children dying and start a recovery.
  for (const pid of [postmaster, ...children]) signalIfAlive(pid, 'SIGKILL');
  const deadline = Date.now() + 10_000;
  while ([postmaster, ...children].some(alive)) {
    if (Date.now() > deadline) throw new Error(`PostgreSQL processes of ${cluster.name} survived SIGKILL`);
    await sleep(20);
  }
}

async function childPids(pid: number): Promise<number[]> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8');
  return text
    .split(/\s+/)
    .filter((s) => s !== '')
    .map(Number);
}

/** Running or runnable; a zombie (dead, not yet reaped by whoever adopted it) counts as gone. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function signalIfAlive(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone: that is what we want.
  }
}
