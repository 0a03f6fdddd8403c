/**
 * GDPR erasure leaves nothing behind: the real embedded service (createEmbedded), a user with a
 * distinctive id, attributes and events, a trained and promoted model that holds them, recommendations
 * served to them (served log) and feedback; then `DELETE /v1/users/{id}`, and every byte Cairn keeps is
 * searched for the id and the attribute values until none is left (polling, within the erasure sweeper's
 * bound): on SQLite every file under the data directory (database, WAL, model artifacts, online-state
 * snapshot) and the captured logs; on PostgreSQL every row of every table of the schema (artifacts and
 * snapshot live there too); with the logs in NATS JetStream (a private server, so its files can be read)
 * also every file of its store directory.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../../src/config/load.ts';
import { seedDemo, waitForJob } from '../../src/main/demo.ts';
import { createEmbedded, type Embedded } from '../../src/main/embedded.ts';
import { createLogger } from '../../src/monitoring/logger.ts';
import { pseudonymizerFor } from '../../src/security/pseudonym.ts';
import { userToken } from '../../src/storage/nats/shared.ts';
import { PrivateServer } from './helpers/private-servers.ts';

const PG_URL = process.env.CAIRN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const POLL_TIMEOUT_MS = 30_000;

type Backend = 'sqlite' | 'postgres' | 'nats';

/** Polls `residue` until it answers nothing; returns what was left at the end (empty: success). */
async function eventuallyNone(residue: () => Promise<string[]>): Promise<string[]> {
  const deadline = Date.now() + POLL_TIMEOUT_MS;
  let left = await residue();
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    left = await residue();
  }
  return left;
}

/** Every file under `dir`, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(path)));
    else if (entry.isFile()) out.push(path);
  }
  return out;
}

/** `file: needle` for every needle found in the bytes of a file under `dir`. */
async function fileHits(dir: string, needles: string[]): Promise<string[]> {
  const hits: string[] = [];
  for (const file of await filesUnder(dir)) {
    const bytes = await readFile(file).catch(() => Buffer.alloc(0)); // a temp file may vanish meanwhile
    for (const n of needles) if (bytes.includes(Buffer.from(n, 'utf8'))) hits.push(`${file}: ${n}`);
  }
  return hits;
}

/** `schema.table.column: needle` for every needle found in any row of the schema. */
async function rowHits(schema: string, needles: string[]): Promise<string[]> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    const columns = await client.query<{ table_name: string; column_name: string; data_type: string }>(
      `SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c
       JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
       WHERE c.table_schema = $1 AND t.table_type = 'BASE TABLE'`,
      [schema],
    );
    expect(columns.rows.length).toBeGreaterThan(20);
    const hits: string[] = [];
    for (const { table_name: table, column_name: column, data_type: type } of columns.rows) {
      const col = `"${column}"`;
      for (const n of needles) {
        const found =
          type === 'bytea'
            ? `position(convert_to($1, 'UTF8') in ${col}) > 0`
            : `strpos(${col}::text, $1) > 0`;
        const res = await client.query<{ n: string }>(
          `SELECT count(*) AS n FROM "${schema}"."${table}" WHERE ${found}`,
          [n],
        );
        if (Number(res.rows[0].n) > 0) hits.push(`${schema}.${table}.${column}: ${n}`);
      }
    }
    return hits;
  } finally {
    await client.end();
  }
}

for (const backend of ['sqlite', 'postgres', 'nats'] as const satisfies readonly Backend[]) {
  describe(`erasure leaves nothing behind (${backend})`, () => {
    const tag = randomBytes(4).toString('hex');
    const schema = `cairn_erasure_${process.pid}_${tag}`;
    // Distinctive, so that any hit is this user's and nobody else's.
    const victim = `victim-Qz${tag}-erasure`;
    const email = `qz${tag}.private@example.invalid`;
    const city = `Vrelnikograd${tag}`;
    const segment = `zq-segment-${tag}`;
    const needles = [victim, email, city, segment, userToken(victim)];

    const logs: string[] = [];
    let dir: string;
    let nats: PrivateServer | null = null;
    let config: Readonly<Config>;
    let cairn: Embedded;

    const call = async (method: 'GET' | 'PUT' | 'POST' | 'DELETE', url: string, payload?: unknown) => {
      const res = await cairn.app.inject({
        method,
        url,
        headers: { 'content-type': 'application/json' },
        ...(payload === undefined ? {} : { payload: payload as object }),
      });
      return {
        status: res.statusCode,
        body: res.body === '' ? null : res.json<Record<string, unknown>>(),
      };
    };
    const logHits = () =>
      needles.filter((n) => logs.some((line) => line.includes(n))).map((n) => `log: ${n}`);
    const everything = async (): Promise<string[]> => [
      ...(await fileHits(dir, needles)),
      ...(backend === 'postgres' ? await rowHits(schema, needles) : []),
      ...(nats ? await fileHits(nats.dir, needles) : []),
      ...logHits(),
    ];

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'cairn-erasure-'));
      if (backend === 'nats') nats = await PrivateServer.start('nats');
      config = loadConfig({
        env: {},
        overrides: {
          dataDir: dir,
          store: backend === 'postgres' ? { url: PG_URL, schema } : { url: '' },
          nats: nats ? { url: nats.url, streamPrefix: `ERASURE_${tag}` } : {},
          training: { threads: 1, algorithm: 'als' },
          // A short grace time: the test polls for the bound instead of waiting a minute.
          privacy: { eraseGraceSeconds: 0.2, eraseSweepSeconds: 0.1 },
        },
      });
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          logs.push(chunk.toString('utf8'));
          done();
        },
      });
      cairn = await createEmbedded(config, {
        logger: createLogger('trace', { destination: sink }),
        snapshotEveryMs: 100,
      });
      const seeded = await seedDemo(cairn, { users: 120, items: 60, events: 4000, seed: 11 });
      expect(seeded.seeded).toBe(true);
    }, 180_000);

    afterAll(async () => {
      await cairn?.close();
      await nats?.destroy();
      await rm(dir, { recursive: true, force: true });
      if (backend === 'postgres') {
        const client = new pg.Client({ connectionString: PG_URL });
        await client.connect();
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        await client.end();
      }
    });

    it('finds the user everywhere before the erase, and nowhere after it', async () => {
      // The user, their behaviour, a model that knows them, answers served to them and their feedback.
      const put = await call('PUT', `/v1/users/${victim}`, {
        attributes: { email, city },
        segments: [segment],
      });
      expect(put.status).toBe(200);
      const items = (await cairn.store.items.list({ limit: 20 })).map((i) => i.id);
      const now = Date.now();
      const events = items.map((item, k) => ({
        event_id: `ev-${tag}-${k}`,
        user_id: victim,
        item_id: item,
        type: k % 3 === 0 ? 'purchase' : 'view',
        timestamp: now - (items.length - k) * 1000,
      }));
      expect((await call('POST', '/v1/events', { events })).body).toMatchObject({ accepted: events.length });
      // Through the store (the store writer consumes the NATS log) before training reads it.
      await waitFor(async () => (await cairn.store.events.forUser(victim, 100)).length === events.length);

      const trained = await call('POST', '/v1/models/train', {});
      expect(trained.status).toBe(202);
      const job = await waitForJob(cairn.jobs, String(trained.body!.job_id));
      expect(job.status).toBe('succeeded');
      const newest = (await cairn.registry.list(1))[0];
      if (newest.status !== 'champion') {
        const promoted = await call('POST', `/v1/models/${newest.version}/promote`, {
          force: true,
          reason: 'erasure test',
        });
        expect(promoted.status).toBe(200);
      }
      await waitFor(() => Promise.resolve(cairn.champion.get()?.version.version === newest.version));
      const row = cairn.champion.get()!.userIndex.get(victim)!;
      expect(row).toBeGreaterThanOrEqual(0);
      const factors = () => {
        const { arrays, meta } = cairn.champion.get()!.model.toArtifact();
        const k = Number(meta.factors);
        return [...arrays.userFactors.subarray(row * k, (row + 1) * k)];
      };
      expect(factors().some((x) => x !== 0)).toBe(true);

      const rec = await call('GET', `/v1/users/${victim}/recommendations?k=5`);
      expect(rec.status).toBe(200);
      expect(rec.body!.source).toBe('personalized');
      const requestId = String(rec.body!.request_id);
      const firstItem = (rec.body!.items as { item_id: string }[])[0].item_id;
      const feedback = await call('POST', '/v1/feedback', {
        request_id: requestId,
        item_id: firstItem,
        type: 'click',
      });
      expect(feedback.status).toBe(202);
      await waitFor(async () => (await cairn.store.served.get(requestId))?.userId === victim);

      // The test can fail: the id and the attributes are in the database, the model artifact and the
      // online-state snapshot (files, or PostgreSQL's artifact tables), and NATS's files.
      const holds = (h: string, where: string) => h.includes(where) && h.endsWith(`: ${victim}`);
      const snapshot = backend === 'postgres' ? '.artifact_chunks.' : 'snapshots';
      await waitFor(async () => (await everything()).some((h) => holds(h, snapshot)));
      const before = await everything();
      expect(before.some((h) => h.endsWith(`: ${email}`))).toBe(true);
      expect(before.some((h) => h.endsWith(`: ${city}`))).toBe(true);
      if (backend === 'postgres') {
        expect(before.some((h) => holds(h, '.users.'))).toBe(true);
        expect(before.some((h) => holds(h, '.served.'))).toBe(true);
      } else {
        expect(before.some((h) => holds(h, join(dir, 'models')))).toBe(true);
      }
      if (nats) expect(before.some((h) => h.startsWith(nats!.dir))).toBe(true);
      // Request logs carry the pseudonym, never the id.
      expect(logHits()).toEqual([]);
      // The deployment's key is in the store's settings: the same pseudonym everywhere.
      const pseudonym = (await pseudonymizerFor(config, cairn.store.settings))(victim);
      expect(
        logs.some((l) => l.includes(`"user":"${pseudonym}"`)),
        'request log lines name the user by pseudonym (buildApp gets `pseudonymize`)',
      ).toBe(true);

      // The erase.
      const erased = await call('DELETE', `/v1/users/${victim}`);
      expect(erased.status).toBe(204);

      const left = await eventuallyNone(everything);
      expect(left).toEqual([]);

      // Audited under the pseudonym, by the principal, with what was erased.
      const [audit] = await cairn.store.audit.list({ action: 'user_erased', limit: 1 });
      expect(audit, 'an audit record (the catalog service gets the erasure follow-up)').toBeDefined();
      expect(audit).toMatchObject({
        action: 'user_erased',
        principal: 'anonymous',
        subject: pseudonym,
        details: { events: events.length },
      });
      expect(audit.details.artifacts).toBeGreaterThanOrEqual(1);
      expect(JSON.stringify(audit)).not.toContain(victim);

      // Serving forgot them: no history, no opt-out flag, not in the model in memory. (Asking for their
      // recommendations now would be new activity under that id: a new served record.)
      expect(await cairn.online.recentEvents(victim, 100)).toEqual([]);
      expect(cairn.champion.get()!.userIndex.has(victim)).toBe(false);
      expect(cairn.champion.get()!.userIds).not.toContain(victim);
      expect(factors().every((x) => x === 0)).toBe(true); // their factor row, zeroed in memory
      // Erasing again is a 404 (nothing stored), and leaves nothing behind either.
      expect((await call('DELETE', `/v1/users/${victim}`)).status).toBe(404);
      expect(await eventuallyNone(everything)).toEqual([]);
      expect(await cairn.store.audit.list({ action: 'user_erased' })).toHaveLength(1);
    }, 120_000);
  });
}

async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + POLL_TIMEOUT_MS;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
