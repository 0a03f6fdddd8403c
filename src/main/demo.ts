/**
 * `cairn serve --demo`: on an empty store, generate a synthetic shop (cairn demo-data's generator),
 * ingest it through the same services the HTTP API uses, and train a first model, so a newcomer has
 * real personalized recommendations within a couple of minutes of `npm start`.
 */
import { systemContext } from '../domain/context.ts';
import type { Job } from '../domain/types.ts';
import { generateDemoData, type DemoDataOptions } from '../ingest/demo-data.ts';
import type { JobQueue } from '../jobs/contracts.ts';
import type { Embedded } from './embedded.ts';

export const DEMO_DEFAULTS: DemoDataOptions = { users: 2000, items: 1000, events: 100_000, seed: 42 };

export interface DemoSeedResult {
  seeded: boolean;
  events: number;
  items: number;
  users: number;
  /** Items made offers (next-best-offer). */
  offers: number;
  modelVersion: string | null;
}

export async function seedDemo(
  cairn: Embedded,
  options: DemoDataOptions = DEMO_DEFAULTS,
): Promise<DemoSeedResult> {
  const { store, logger } = cairn;
  const ctx = systemContext('demo-seed');
  if ((await store.events.count()) > 0) {
    logger.info('store already holds events; demo data not generated');
    return { seeded: false, events: 0, items: 0, users: 0, offers: 0, modelVersion: null };
  }
  const started = Date.now();
  const demo = generateDemoData(options);
  // The generator's window ends at a fixed date (deterministic output); shift it to end now so the
  // time-decayed popularity and "this week" reasons read as they would in a live shop.
  const shift = started - demo.endTime;
  const batch = cairn.config.server.maxBatchItems;
  const offers = demoOffers(demo.items, started);
  for (let i = 0; i < demo.items.length; i += batch) {
    const items = demo.items.slice(i, i + batch).map((it) => {
      const offer = offers.get(it.id);
      return {
        ...it,
        created_at: Math.min(it.created_at + shift, started),
        ...(offer ? { attributes: { ...it.attributes, offer } } : {}),
      };
    });
    await rejectOnFailure(cairn.catalog.putItems(ctx, items), 'item');
  }
  for (const u of demo.users)
    await cairn.catalog.putUser(ctx, u.id, { attributes: u.attributes, segments: u.segments });

  let events = 0;
  let pending: unknown[] = [];
  const flush = async () => {
    const outcomes = await cairn.ingest.ingestEvents(ctx, pending);
    const rejected = outcomes.filter((o) => o.status === 'rejected');
    if (rejected.length > 0) throw new Error(`demo event rejected: ${JSON.stringify(rejected[0])}`);
    events += pending.length;
    pending = [];
  };
  for (const e of demo.events()) {
    pending.push({ ...e, timestamp: e.timestamp + shift });
    if (pending.length >= cairn.config.server.maxBatchEvents) await flush();
  }
  if (pending.length > 0) await flush();
  logger.info(
    { events, items: demo.items.length, users: demo.users.length, ms: Date.now() - started },
    'demo data ingested',
  );

  const job = await cairn.models.train(ctx, { trigger: { kind: 'demo', key: null } });
  const done = await waitForJob(cairn.jobs, job.id);
  if (done.status !== 'succeeded') throw new Error(`demo training failed: ${done.error ?? done.status}`);
  // The promotion reaches serving through the change log; make sure this process serves it already.
  await cairn.champion.refresh();
  const version = cairn.champion.get()?.version.version ?? null;
  logger.info({ version, offers: offers.size, ms: Date.now() - started }, 'demo ready');
  return {
    seeded: true,
    events,
    items: demo.items.length,
    users: demo.users.length,
    offers: offers.size,
    modelVersion: version,
  };
}

/**
 * Demo offers (src/offers): ten available items spread over the catalog, each with a value (a 30 %
 * margin on its price) and one kind of rule, so `GET /v1/users/{id}/next-best-offer?explain=true` shows
 * the decision and its exclusions on the first start. Open offers are the majority, so every user
 * gets one; the generator's segments (loyal, big_spender…) and an email-only offer show targeting.
 */
export function demoOffers(
  items: readonly { id: string; available: boolean; attributes: { price: number } }[],
  now: number,
): Map<string, Record<string, unknown>> {
  const DAY = 86_400_000;
  const rules: Record<string, unknown>[] = [
    {},
    { segments: ['loyal'], lever: 1.5 },
    { channels: ['email'] },
    { segments: ['big_spender'] },
    { end: new Date(now + 14 * DAY).toISOString() },
    { inventory: 50, budget: 2000 },
    { policy: { maxImpressions: 1, periodDays: 1 } },
    { policy: { suppressAfter: 1, suppressOutcomes: ['dismiss', 'purchase'], suppressDays: 7 } },
    {},
    { lever: 0.5 },
  ];
  const available = items.filter((it) => it.available);
  const offers = new Map<string, Record<string, unknown>>();
  if (available.length === 0) return offers;
  const step = Math.max(1, Math.floor(available.length / rules.length));
  for (let r = 0; r < rules.length && r * step < available.length; r++) {
    const it = available[r * step];
    offers.set(it.id, { value: Math.round(it.attributes.price * 30) / 100, ...rules[r] });
  }
  return offers;
}

/** Polls a job until it finished (whichever process runs it). */
export async function waitForJob(jobs: Pick<JobQueue, 'get'>, id: string, pollMs = 100): Promise<Job> {
  for (;;) {
    const job = await jobs.get(id);
    if (!job) throw new Error(`job ${id} disappeared`);
    if (job.status === 'succeeded' || job.status === 'failed') return job;
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

async function rejectOnFailure(
  p: Promise<{ status: string; error?: unknown }[]>,
  what: string,
): Promise<void> {
  const rejected = (await p).filter((o) => o.status === 'rejected');
  if (rejected.length > 0) throw new Error(`demo ${what} rejected: ${JSON.stringify(rejected[0])}`);
}
