/**
 * Start-up time of `cairn serve`: from spawning the process to the first 200 from /health/ready, for
 * the development entry (`node bin/cairn.js serve`, tsx compiling the TypeScript sources on load) and
 * the production one (`node dist/src/cli/main.js serve`, the output of `npm run build`). Every run
 * serves the same SQLite data directory with a trained champion, prepared once with the CLI
 * (`demo-data`, `import`, `train`). tsx keeps a transform cache on disk, so it is measured twice:
 * with that cache (a developer's second start) and without it (TSX_DISABLE_CACHE=1, what a fresh
 * container would pay). Variants alternate run by run so that machine noise falls on all of them.
 * Prints min/median/max per variant of the wall time and, where /proc exists, of the CPU time the
 * server used until it was ready (user + system, all threads): the latter moves far less than wall
 * time when other work shares the machine.
 *
 *   npm run bench:startup -- [--runs 10] [--users 1000] [--items 500] [--events 50000]
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    users: { type: 'string', default: '1000' },
    items: { type: 'string', default: '500' },
    events: { type: 'string', default: '50000' },
  },
});
const runs = Number(values.runs);

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DEV_ENTRY = join(ROOT, 'bin/cairn.js');
const COMPILED_ENTRY = join(ROOT, 'dist/src/cli/main.js');
/** A server that is not ready this long after spawning counts as failed start-up. */
const READY_TIMEOUT_MS = 120_000;

interface Variant {
  label: string;
  entry: string;
  env: Record<string, string>;
}

const variants: Variant[] = [
  { label: 'tsx, transform cache warm (node bin/cairn.js)', entry: DEV_ENTRY, env: {} },
  {
    label: 'tsx, no transform cache (TSX_DISABLE_CACHE=1)',
    entry: DEV_ENTRY,
    env: { TSX_DISABLE_CACHE: '1' },
  },
  { label: 'compiled (node dist/src/cli/main.js)', entry: COMPILED_ENTRY, env: {} },
];

if (!existsSync(COMPILED_ENTRY)) {
  console.error(`${COMPILED_ENTRY} does not exist: run \`npm run build\` first`);
  process.exit(1);
}

/** The child's environment: this one without CAIRN_* settings, which would change what is measured. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('CAIRN_') && !k.startsWith('TSX_')) env[k] = v;
  return { ...env, ...extra };
}

function cli(args: string[]): void {
  const r = spawnSync(process.execPath, [DEV_ENTRY, ...args], {
    cwd: ROOT,
    env: childEnv({}),
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`cairn ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
}

/** A port nobody listens on right now (the OS picks it; the server binds it a moment later). */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return address.port;
}

/** Clock ticks per second of /proc's CPU times (USER_HZ: 100 on every mainstream Linux build). */
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

/** CPU time (user + system, every thread) a live process has used so far, in ms; null without /proc. */
function cpuMs(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    // Fields after the parenthesised command name (which may contain spaces): utime and stime are 14 and 15.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

interface Sample {
  wallMs: number;
  cpuMs: number | null;
}

/** Wall and CPU time from spawn to the first 200 of /health/ready; the server is stopped afterwards. */
async function startOnce(variant: Variant, dataDir: string): Promise<Sample> {
  const port = await freePort();
  const t0 = performance.now();
  const child = spawn(
    process.execPath,
    [variant.entry, 'serve', '--data', dataDir, '--port', String(port), '--log-level', 'warn'],
    { cwd: ROOT, env: childEnv(variant.env), stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  let exited: number | null | undefined;
  child.once('exit', (code) => (exited = code));
  try {
    const url = `http://127.0.0.1:${port}/health/ready`;
    for (;;) {
      if (exited !== undefined)
        throw new Error(`server exited with ${exited} before it was ready:\n${stderr}`);
      if (performance.now() - t0 > READY_TIMEOUT_MS)
        throw new Error(`not ready after ${READY_TIMEOUT_MS} ms:\n${stderr}`);
      try {
        const res = await fetch(url);
        await res.arrayBuffer();
        if (res.status === 200) return { wallMs: performance.now() - t0, cpuMs: cpuMs(child.pid) };
      } catch {
        // not listening yet
      }
      await sleep(5);
    }
  } finally {
    if (exited === undefined) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  }
}

const dir = await mkdtemp(join(tmpdir(), 'cairn-bench-startup-'));
try {
  const dataDir = join(dir, 'data');
  const t0 = performance.now();
  cli([
    'demo-data',
    '--users',
    values.users,
    '--items',
    values.items,
    '--events',
    values.events,
    '--seed',
    '42',
    '--out',
    join(dir, 'demo'),
  ]);
  cli(['import', join(dir, 'demo'), '--data', dataDir, '--log-level', 'warn']);
  cli(['train', '--data', dataDir, '--log-level', 'warn']);
  console.log(
    `prepared ${values.events} events and a trained champion in ${((performance.now() - t0) / 1000).toFixed(1)} s (${dataDir})`,
  );

  // One unmeasured start each: the page cache and tsx's transform cache start warm for everyone.
  for (const v of variants) await startOnce(v, dataDir);

  // Start-up is mostly CPU-bound module loading: figures only compare on an otherwise idle machine.
  const loadBefore = loadavg()[0];
  const samples = new Map<Variant, Sample[]>(variants.map((v) => [v, []]));
  for (let i = 0; i < runs; i++) for (const v of variants) samples.get(v)!.push(await startOnce(v, dataDir));

  console.log(
    `spawn → first 200 from /health/ready, ${runs} runs each (node ${process.version}; 1-min load average ${loadBefore.toFixed(1)} before, ${loadavg()[0].toFixed(1)} after)`,
  );
  const summary = (values: number[]): string => {
    const t = [...values].sort((a, b) => a - b);
    const median = t.length % 2 ? t[(t.length - 1) / 2] : (t[t.length / 2 - 1] + t[t.length / 2]) / 2;
    return `min=${t[0].toFixed(0)} median=${median.toFixed(0)} max=${t[t.length - 1].toFixed(0)} ms`;
  };
  for (const v of variants) {
    const s = samples.get(v)!;
    const cpu = s.map((x) => x.cpuMs).filter((x): x is number => x !== null);
    console.log(
      `${v.label.padEnd(48)} wall ${summary(s.map((x) => x.wallMs))}${cpu.length === s.length ? `   cpu ${summary(cpu)}` : ''}`,
    );
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
