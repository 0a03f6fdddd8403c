/**
 * Ingestion throughput of the production path: `POST /v1/events` with 10,000-event batches (the API's
 * default maximum) to `cairn serve --role api` replicas, acknowledged once durable in NATS JetStream, and
 * written to PostgreSQL by the `--role worker`'s store writer. All spawned as processes on a schema, Redis
 * key prefix and stream prefix of their own, removed afterwards (test/integration/helpers/processes.ts).
 *
 * Prints the API-acknowledged rate (all batches answered) and the end-to-end rate (until PostgreSQL holds
 * every event), and the CPU seconds each process spent, since the machine may be shared. Never asserts.
 * One batch is sent and stored first as a warm-up (connections, JIT) and not counted.
 *
 *   npm run bench:ingest-nats -- [--batches 30] [--apis 2] [--in-flight 2]
 *
 * Servers: CAIRN_TEST_POSTGRES_URL, CAIRN_TEST_REDIS_URL, CAIRN_TEST_NATS_URL (default: this machine's).
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import {
  assertServicesUp,
  pollUntil,
  TestDeployment,
  type CairnProcess,
} from '../test/integration/helpers/processes.ts';

const { values } = parseArgs({
  options: {
    batches: { type: 'string', default: '30' },
    apis: { type: 'string', default: '2' },
    'in-flight': { type: 'string', default: '2' },
  },
});
const BATCH = 10_000;
const batches = Number(values.batches);
const apis = Number(values.apis);
const inFlight = Number(values['in-flight']);
const TYPES = ['view', 'view', 'view', 'click', 'add_to_cart', 'purchase', 'rating'];

const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

/** A request body of fresh events with random ids (the unique index is hit at random places, as live). */
function batchBody(b: number): string {
  const now = Date.now();
  const events = Array.from({ length: BATCH }, (_, i) => {
    const type = TYPES[i % TYPES.length];
    return {
      event_id: randomUUID(),
      user_id: `user-${(i * 7919 + b) % 50_000}`,
      item_id: `item-${(i * 104_729) % 20_000}`,
      type,
      ...(type === 'rating' ? { value: (i % 5) + 1 } : {}),
      timestamp: now - 60_000 + (i % 60_000),
      ...(i % 4 === 0 ? { context: { page: 'home', position: i % 20, device: 'mobile' } } : {}),
    };
  });
  return JSON.stringify({ events });
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name (which may contain spaces): utime is the 14th field.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
}

const SERVERS = ['nats-server', 'postgres', 'redis-server'] as const;

/**
 * CPU seconds used so far by every process of each server (PostgreSQL runs one per connection; a
 * process that exits between two readings drops out, so the figure is a lower bound). These servers are
 * the machine's, so the figure includes whatever other jobs made them do meanwhile.
 */
function serverCpuSeconds(): Map<string, number> {
  const totals = new Map<string, number>(SERVERS.map((name) => [name, 0]));
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const name = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      if (totals.has(name)) totals.set(name, totals.get(name)! + cpuSeconds(Number(entry)));
    } catch {
      // the process exited meanwhile
    }
  }
  return totals;
}

async function post(url: string, body: string): Promise<void> {
  const res = await fetch(`${url}/v1/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    signal: AbortSignal.timeout(120_000),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${text.slice(0, 300)}`);
  const accepted = (JSON.parse(text) as { accepted: number }).accepted;
  if (accepted !== BATCH) throw new Error(`${accepted} of ${BATCH} events accepted: ${text.slice(0, 300)}`);
}

async function stored(d: TestDeployment): Promise<number> {
  const [{ n }] = await d.sql<{ n: number }>('SELECT count(*)::int AS n FROM $schema.events');
  return n;
}

async function main(): Promise<void> {
  console.log(
    `node ${process.version}, ${availableParallelism()} cores, load average ${load()}; ${batches} batches of ` +
      `${BATCH.toLocaleString('en-US')} events to ${apis} api replica(s), ${inFlight} request(s) in flight`,
  );
  await assertServicesUp(['postgres', 'redis', 'nats']);
  const d = await TestDeployment.create({ name: 'benchingest', redis: true, nats: true });
  const stop = () => void d.cleanup().finally(() => process.exit(130));
  process.once('SIGINT', stop);
  try {
    const env = { CAIRN_LOGGING_LEVEL: 'warn' };
    const started = await Promise.allSettled([
      d.serve('worker', 'worker', env),
      ...Array.from({ length: apis }, (_, i) => d.serve(`api-${i + 1}`, 'api', env)),
    ]);
    const [worker, ...replicas] = started.map((s) => {
      if (s.status === 'rejected') throw s.reason;
      return s.value;
    });

    const bodies = Array.from({ length: batches + 1 }, (_, b) => batchBody(b));
    await post(replicas[0].url, bodies[0]); // warm-up, not counted
    await pollUntil('the warm-up batch in PostgreSQL', async () => (await stored(d)) >= BATCH, {
      timeoutMs: 120_000,
      intervalMs: 100,
    });

    const procs: CairnProcess[] = [worker, ...replicas];
    const cpu0 = procs.map((p) => cpuSeconds(p.pid));
    const servers0 = serverCpuSeconds();
    const times: number[] = [];
    let next = 1;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: inFlight }, async (_, w) => {
        for (let b = next++; b <= batches; b = next++) {
          const s = performance.now();
          await post(replicas[w % replicas.length].url, bodies[b]);
          times.push(performance.now() - s);
        }
      }),
    );
    const acked = performance.now();
    const total = batches * BATCH;
    await pollUntil('every event in PostgreSQL', async () => (await stored(d)) >= total + BATCH, {
      timeoutMs: 600_000,
      intervalMs: 200,
    });
    const done = performance.now();
    const cpu = procs.map((p, i) => cpuSeconds(p.pid) - cpu0[i]);
    const servers1 = serverCpuSeconds();

    times.sort((a, b) => a - b);
    const rate = (ms: number) => Math.round(total / (ms / 1000)).toLocaleString('en-US');
    console.log(`load average afterwards ${load()}`);
    console.log(
      `API-acknowledged (durable in JetStream): ${rate(acked - t0).padStart(8)} events/s` +
        `  (${total.toLocaleString('en-US')} events in ${((acked - t0) / 1000).toFixed(1)} s; per batch ` +
        `median ${times[Math.floor(times.length / 2)].toFixed(0)} ms, max ${times[times.length - 1].toFixed(0)} ms)`,
    );
    console.log(
      `end to end (all in PostgreSQL):          ${rate(done - t0).padStart(8)} events/s` +
        `  (${((done - t0) / 1000).toFixed(1)} s; the store writer finished ${((done - acked) / 1000).toFixed(1)} s after the last 200)`,
    );
    const cairnCpu = cpu.reduce((a, b) => a + b, 0);
    console.log(
      `CPU seconds over that time: ${procs.map((p, i) => `${p.name} ${cpu[i].toFixed(1)}`).join(', ')}` +
        ` → ${Math.round(total / cairnCpu).toLocaleString('en-US')} events per CPU-second of the Cairn processes`,
    );
    console.log(
      `servers (shared with other jobs on this machine): ` +
        SERVERS.map((name) => `${name} ${(servers1.get(name)! - servers0.get(name)!).toFixed(1)}`).join(', '),
    );
  } catch (err) {
    console.error(d.logs(30));
    throw err;
  } finally {
    process.removeListener('SIGINT', stop);
    await d.cleanup();
  }
}

await main();
