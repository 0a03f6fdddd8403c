/**
 * `cairn import PATH`: loads interactions (and, for a `cairn demo-data` directory, items and users)
 * through the same validating, idempotent services the HTTP API uses. Re-importing a file stores
 * nothing twice: every event gets a deterministic id.
 */
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { CairnError } from '../../errors/errors.ts';
import { DATASET_FORMATS, forEachLine, readDataset, type DatasetFormat } from '../../ingest/formats/index.ts';
import type { CatalogService } from '../../ingest/contracts.ts';
import { createCatalogService, createIngestService } from '../../ingest/service.ts';
import {
  addStoreOptions,
  CTX,
  configFrom,
  openForCommand,
  type CommandBase,
  type StoreOptions,
} from '../common.ts';
import { progressBar } from '../progress.ts';

interface ImportOptions extends StoreOptions {
  format: string;
  type?: string;
}

/** What an import writes through: the event log and the catalog service, as the API does. */
interface Target extends CommandBase {
  catalog: CatalogService;
}

interface Totals {
  accepted: number;
  duplicates: number;
  rejected: number;
  firstRejection: string | null;
}

export function registerImport(program: Command): void {
  addStoreOptions(
    program
      .command('import <path>')
      .description('import interactions from a file (or a `cairn demo-data` directory)')
      .option('--format <format>', `auto | ${DATASET_FORMATS.join(' | ')}`, 'auto')
      .option(
        '--type <event-type>',
        'event type for rows of rating/count files (default: rating when the file has ratings, else view)',
      ),
  ).action(async (path: string, opts: ImportOptions) => {
    if (opts.format !== 'auto' && !DATASET_FORMATS.includes(opts.format as DatasetFormat)) {
      throw CairnError.validation([
        { field: 'format', message: `must be auto or one of ${DATASET_FORMATS.join(', ')}` },
      ]);
    }
    const config = configFrom({ logLevel: 'warn', ...opts });
    // Checked before the store is opened (and perhaps created): a wrong path leaves nothing behind.
    const info = await stat(path).catch(() => null);
    if (!info) throw CairnError.validation([{ field: 'path', message: `${path} does not exist` }]);
    const base = await openForCommand(config);
    const cairn: Target = {
      ...base,
      catalog: createCatalogService({
        store: base.store,
        changeLog: base.changeLog,
        eventLog: base.eventLog,
        config,
        logger: base.logger,
      }),
    };
    const totals: Totals = { accepted: 0, duplicates: 0, rejected: 0, firstRejection: null };
    const started = Date.now();
    try {
      if (info.isDirectory()) await importDirectory(cairn, path, totals);
      else if (opts.format === 'jsonl' || (opts.format === 'auto' && /\.jsonl(\.gz)?$/i.test(path)))
        await importJsonlEvents(cairn, path, totals);
      else await importDataset(cairn, path, opts.format as DatasetFormat | 'auto', opts.type, totals);
    } finally {
      await cairn.close();
    }
    const secs = (Date.now() - started) / 1000;
    process.stdout.write(
      `imported ${totals.accepted} events (${totals.duplicates} duplicates, ${totals.rejected} rejected) in ${secs.toFixed(1)} s\n`,
    );
    if (totals.firstRejection) process.stdout.write(`first rejection: ${totals.firstRejection}\n`);
  });
}

/**
 * Historical data sets predate the API's lower bound on event times (MovieLens 100k is from 1997), so
 * imports use an ingest service without it; everything else (validation, idempotency, the event log)
 * is the API's own.
 */
const importers = new WeakMap<Target, ReturnType<typeof createIngestService>>();
function importer(cairn: Target): ReturnType<typeof createIngestService> {
  let svc = importers.get(cairn);
  if (!svc) {
    svc = createIngestService({
      eventLog: cairn.eventLog,
      config: cairn.config,
      metrics: cairn.metrics,
      logger: cairn.logger,
      minTimestamp: 0,
    });
    importers.set(cairn, svc);
  }
  return svc;
}

async function ingest(cairn: Target, batch: unknown[], totals: Totals): Promise<void> {
  const outcomes = await importer(cairn).ingestEvents(CTX, batch);
  for (const o of outcomes) {
    if (o.status === 'accepted') totals.accepted++;
    else if (o.status === 'duplicate') totals.duplicates++;
    else {
      totals.rejected++;
      totals.firstRejection ??= `event ${o.index}: ${o.error?.code} ${o.error?.field}: ${o.error?.message}`;
    }
  }
}

async function importDirectory(cairn: Target, dir: string, totals: Totals): Promise<void> {
  const exists = async (p: string) => (await stat(p).catch(() => null))?.isFile() ?? false;
  const itemsPath = join(dir, 'items.jsonl');
  if (await exists(itemsPath)) {
    let batch: unknown[] = [];
    const flush = async () => {
      const outcomes = await cairn.catalog.putItems(CTX, batch);
      const bad = outcomes.find((o) => o.status === 'rejected');
      if (bad)
        throw new CairnError(
          'CAIRN_VALIDATION',
          `items.jsonl entry ${bad.index}: ${bad.error?.field}: ${bad.error?.message}`,
        );
      batch = [];
    };
    const rows: unknown[] = [];
    await forEachLine(itemsPath, (line) => void (line.trim() && rows.push(JSON.parse(line))));
    for (const r of rows) {
      batch.push(r);
      if (batch.length >= cairn.config.server.maxBatchItems) await flush();
    }
    if (batch.length > 0) await flush();
  }
  const usersPath = join(dir, 'users.jsonl');
  if (await exists(usersPath)) {
    const rows: { id: string }[] = [];
    await forEachLine(
      usersPath,
      (line) => void (line.trim() && rows.push(JSON.parse(line) as { id: string })),
    );
    for (const { id, ...rest } of rows) await cairn.catalog.putUser(CTX, id, rest);
  }
  const eventsPath = join(dir, 'events.jsonl');
  if (!(await exists(eventsPath)))
    throw CairnError.validation([{ field: 'path', message: `${dir} has no events.jsonl` }]);
  await importJsonlEvents(cairn, eventsPath, totals);
}

async function importJsonlEvents(cairn: Target, path: string, totals: Totals): Promise<void> {
  // Lines are parsed as they stream in; batches are sent in order after the read, a batch at a time,
  // so memory holds one file's parsed lines at most.
  const lines: unknown[] = [];
  await forEachLine(path, (line, n) => {
    if (!line.trim()) return;
    try {
      lines.push(JSON.parse(line));
    } catch {
      throw CairnError.validation([{ field: `line ${n}`, message: 'not valid JSON' }]);
    }
  });
  const bar = progressBar('importing');
  const size = cairn.config.server.maxBatchEvents;
  for (let i = 0; i < lines.length; i += size) {
    await ingest(cairn, lines.slice(i, i + size), totals);
    bar.update(Math.min(1, (i + size) / lines.length));
  }
  bar.stop();
}

async function importDataset(
  cairn: Target,
  path: string,
  format: DatasetFormat | 'auto',
  type: string | undefined,
  totals: Totals,
): Promise<void> {
  const ds = await readDataset(path, format);
  const eventType = type ?? (ds.valueKind === 'rating' ? 'rating' : 'view');
  if (!cairn.config.events.types[eventType]) {
    throw CairnError.validation([
      { field: 'type', message: `event type "${eventType}" is not configured (events.types)` },
    ]);
  }
  await registerItems(cairn, ds.items);
  const bar = progressBar('importing');
  const size = cairn.config.server.maxBatchEvents;
  const n = ds.userIdx.length;
  for (let start = 0; start < n; start += size) {
    const batch: unknown[] = [];
    for (let r = start; r < Math.min(n, start + size); r++) {
      const user = ds.users[ds.userIdx[r]];
      const item = ds.items[ds.itemIdx[r]];
      const value = ds.values[r];
      const ts = ds.timestamps[r];
      const rowType = ds.types?.[r] ?? eventType;
      batch.push({
        // Deterministic: re-importing the same file stores nothing twice.
        event_id: createHash('sha256')
          .update(`${user}\u0000${item}\u0000${rowType}\u0000${ts}\u0000${value}\u0000${r}`)
          .digest('base64url')
          .slice(0, 32),
        user_id: user,
        item_id: item,
        type: rowType,
        ...(Number.isNaN(value) ? {} : { value }),
        ...(Number.isNaN(ts) ? {} : { timestamp: ts }),
      });
    }
    await ingest(cairn, batch, totals);
    bar.update(Math.min(1, (start + size) / n));
  }
  bar.stop();
}

/**
 * A data set's items become catalog items (id only) unless the catalog has them already: popular lists
 * count catalog items only, so events about unknown ids would otherwise leave cold users with nothing.
 */
async function registerItems(cairn: Target, ids: readonly string[]): Promise<void> {
  const size = cairn.config.server.maxBatchItems;
  for (let i = 0; i < ids.length; i += size) {
    const chunk = ids.slice(i, i + size);
    const known = new Set((await cairn.store.items.getMany(chunk)).map((item) => item.id));
    const missing = chunk.filter((id) => !known.has(id)).map((id) => ({ id }));
    if (missing.length > 0) await cairn.catalog.putItems(CTX, missing);
  }
}
