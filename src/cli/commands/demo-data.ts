/**
 * `cairn demo-data`: writes a synthetic shop (see src/ingest/demo-data.ts) as a directory of JSONL
 * files in the HTTP wire format: items.jsonl, users.jsonl, events.jsonl. Files are streamed with
 * backpressure, so memory stays flat however many events are asked for; `cairn import DIR` loads
 * the directory back.
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import type { Command } from 'commander';
import { generateDemoData } from '../../ingest/demo-data.ts';
import { parseIntOption } from '../common.ts';
import { progressBar, type Progress } from '../progress.ts';

interface DemoDataCliOptions {
  users: number;
  items: number;
  events: number;
  seed: number;
  categories?: number;
  out: string;
}

/** What `writeDemoData` wrote. */
export interface DemoDataSummary {
  dir: string;
  users: number;
  items: number;
  events: number;
  startTime: number;
  endTime: number;
  seconds: number;
}

/** Lines are gathered into chunks of about this many characters before a write: fewer syscalls. */
const CHUNK_CHARS = 1 << 16;

/**
 * Writes `lines` to `path`, one per line, waiting for 'drain' whenever the stream's buffer is full
 * so a slow disk throttles generation instead of filling memory.
 */
async function writeLines(
  path: string,
  lines: Iterable<string>,
  onLine?: (n: number) => void,
): Promise<number> {
  const out = createWriteStream(path, { encoding: 'utf8' });
  let chunk = '';
  let n = 0;
  try {
    for (const line of lines) {
      chunk += line + '\n';
      n++;
      if (chunk.length >= CHUNK_CHARS) {
        if (!out.write(chunk)) await once(out, 'drain');
        chunk = '';
        onLine?.(n);
      }
    }
    out.end(chunk);
    await finished(out);
  } catch (err) {
    out.destroy();
    throw err;
  }
  onLine?.(n);
  return n;
}

function* jsonLines<T>(rows: Iterable<T>): Generator<string> {
  for (const row of rows) yield JSON.stringify(row);
}

/**
 * Generates demo data and writes it under `dir` (created if missing; existing files are replaced).
 * `onProgress` gets the fraction of events written.
 */
export async function writeDemoData(
  dir: string,
  options: { users: number; items: number; events: number; seed: number; categories?: number },
  onProgress?: (fraction: number) => void,
): Promise<DemoDataSummary> {
  const started = performance.now();
  const data = generateDemoData(options);
  await mkdir(dir, { recursive: true });
  await writeLines(join(dir, 'items.jsonl'), jsonLines(data.items));
  await writeLines(join(dir, 'users.jsonl'), jsonLines(data.users));
  const total = Math.max(1, options.events);
  const events = await writeLines(join(dir, 'events.jsonl'), jsonLines(data.events()), (n) =>
    onProgress?.(n / total),
  );
  return {
    dir,
    users: data.users.length,
    items: data.items.length,
    events,
    startTime: data.startTime,
    endTime: data.endTime,
    seconds: (performance.now() - started) / 1000,
  };
}

/** Registers `cairn demo-data` on the program. */
export function registerDemoData(program: Command): void {
  program
    .command('demo-data')
    .description('generate a synthetic shop (items, users, sessions of events) as JSONL files in a directory')
    .option('--users <n>', 'number of users', parseIntOption('users', 1), 2000)
    .option('--items <n>', 'number of items', parseIntOption('items', 1), 1000)
    .option('--events <n>', 'number of events (exact)', parseIntOption('events', 0), 100_000)
    .option(
      '--seed <n>',
      'random seed: the same seed gives the same files',
      parseIntOption('seed', -(2 ** 31)),
      42,
    )
    .option('--categories <n>', 'number of item categories (default 20)', parseIntOption('categories', 1))
    .option('--out <dir>', 'output directory (items.jsonl, users.jsonl, events.jsonl)', './data/demo')
    .action(async (opts: DemoDataCliOptions) => {
      const bar: Progress | null = process.stderr.isTTY ? progressBar('demo-data') : null;
      let summary: DemoDataSummary;
      try {
        summary = await writeDemoData(
          opts.out,
          {
            users: opts.users,
            items: opts.items,
            events: opts.events,
            seed: opts.seed,
            categories: opts.categories,
          },
          bar ? (f) => bar.update(f, 'events') : undefined,
        );
      } finally {
        bar?.stop();
      }
      const day = (t: number) => new Date(t).toISOString().slice(0, 10);
      process.stderr.write(
        `demo-data: ${summary.users} users, ${summary.items} items, ${summary.events} events ` +
          `(${day(summary.startTime)} → ${day(summary.endTime)}, seed ${opts.seed}) written to ${opts.out} ` +
          `in ${summary.seconds.toFixed(1)} s\n`,
      );
    });
}
