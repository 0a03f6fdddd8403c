/**
 * What a GDPR erase does after the store, the logs and the served log dropped the user
 * (ingest/service.ts `eraseUser`), so that nothing is left behind:
 *
 * - `createErasureFollowUp` (in the request): every stored model artifact is rewritten without the user
 *   (ModelRegistry.forgetUsers), the erasure is recorded in the audit log under the user's pseudonym
 *   (never the id), and the database files are purged of the deleted rows (Store.purgeErased: SQLite
 *   checkpoints its zeroed pages and truncates the WAL; PostgreSQL vacuums).
 * - `ErasureSweeper` (background, roles that run jobs): the `erase` record on the change log must name the
 *   user until every consumer that may hold state about them applied it; after that it is removed for
 *   good (SQL: row deleted, then the files purged again; NATS: message securely erased). A record goes
 *   once (1) every durable consumer of the change log is past it, (2) every holdback is past it (the
 *   embedded in-memory online state's last written snapshot: a restart replays from there and needs the
 *   record), and then (3) `graceMs` more: time for the private consumers (every API replica's follower
 *   dropping the user from the models in its memory, served-log writers flushing; the user's served
 *   records are deleted once more just before the record goes).
 *   A durable consumer that is down holds the record back, since it still has to forget the user:
 *   the sweeper warns about records held back longer than `warnAfterMs`.
 *
 * Bound: with every consumer running, an erase record is gone within graceMs + intervalMs (70 s by
 * default) of the erase (embedded: plus the snapshot interval, 60 s); the artifacts, store rows, log
 * copies and audit record are done when DELETE answers.
 */
import type { Config } from '../config/load.ts';
import type { RequestContext } from '../domain/context.ts';
import type { Logger } from '../monitoring/logger.ts';
import type { ForgetOutcome } from '../registry/registry.ts';
import type { ChangeLog, ConsumerOffsets, ServedLogStore, Store } from '../storage/ports.ts';

/** Runs `task` at most once at a time; a request during a run makes it run once more afterwards. */
export function coalesced(task: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | null = null;
  let again = false;
  const loop = async (): Promise<void> => {
    do {
      again = false;
      await task();
    } while (again);
  };
  return () => {
    if (running) {
      again = true;
      return running;
    }
    running = loop().finally(() => (running = null));
    return running;
  };
}

export interface ErasureFollowUpDeps {
  registry: {
    forgetUsers(userIds: readonly string[], options?: { createdSince?: number }): Promise<ForgetOutcome>;
  };
  store: Pick<Store, 'audit' | 'purgeErased'>;
  /** Keyed hash standing for the user in the audit record and the logs (security/pseudonym.ts). */
  pseudonymize: (id: string) => string;
  logger: Logger;
  now?: () => number;
}

/** The `ErasureFollowUp` of ingest/service.ts. */
export function createErasureFollowUp(deps: ErasureFollowUpDeps): {
  erased(ctx: RequestContext, userId: string, events: number): Promise<void>;
} {
  const { registry, store, pseudonymize, logger } = deps;
  const now = deps.now ?? Date.now;
  // In the background: a PostgreSQL VACUUM may take a while, and a burst of erasures needs only one.
  const purge = coalesced(() => store.purgeErased());
  return {
    async erased(ctx, userId, events) {
      const subject = pseudonymize(userId);
      const scanStarted = now();
      const { rewritten, failed } = await registry.forgetUsers([userId]);
      if (rewritten === 0 && events === 0) return; // a repeat that found nothing left anywhere
      if (failed.length > 0) {
        logger.error(
          { subject, versions: failed.map((f) => f.version) },
          'model artifacts that could not be read may still hold an erased user',
        );
      }
      await store.audit.append({
        at: now(),
        action: 'user_erased',
        principal: ctx.principal.id,
        subject,
        details: {
          events,
          artifacts: rewritten,
          ...(failed.length > 0 ? { unreadableArtifacts: failed.map((f) => f.version) } : {}),
        },
      });
      logger.info({ request_id: ctx.requestId, subject, events, artifacts: rewritten }, 'erasure audited');
      // A training that read its data before the erase may have registered its model after the scan
      // above began; it checks the audit log after registering (training/erasure-race.ts), and this
      // second pass covers the models registered before the audit record existed.
      const late = await registry.forgetUsers([userId], { createdSince: scanStarted });
      if (late.rewritten > 0) logger.info({ subject, artifacts: late.rewritten }, 'erased from late models');
      void purge().catch((err: unknown) =>
        logger.warn({ err }, 'could not purge erased rows from the database files yet; the sweeper retries'),
      );
    },
  };
}

export interface ErasureSweeperOptions {
  changeLog: Pick<ChangeLog, 'read' | 'head' | 'remove' | 'durableFloor'>;
  /**
   * The served log, swept once more before an erase record goes: an answer served just before the erase
   * may sit in a replica's served-log buffer and reach the store after the erase deleted the rest.
   */
  served?: Pick<ServedLogStore, 'deleteForUser'>;
  /** Where the sweep keeps how far it got (the store's consumer offsets). */
  offsets: ConsumerOffsets;
  /** The store's file purge (`Store.purgeErased`), run after records were removed. */
  purge: () => Promise<void>;
  /**
   * Change-log positions besides the durable consumers that must be past an erase before its record
   * goes: the embedded in-memory online state's last written snapshot (its `watermarks().changes`).
   */
  holdbacks?: readonly (() => Promise<number>)[];
  logger: Logger;
  /** How long a record stays after the sweeper first saw it (ms, default 60 000). */
  graceMs?: number;
  /** Time between sweeps (ms, default 10 000). */
  intervalMs?: number;
  /** Warn when an erase record is held back longer than this (ms, default 1 hour). */
  warnAfterMs?: number;
  now?: () => number;
}

/** Name of the sweep's position in the offsets (not `changes:…`: it is no consumer of the log). */
export const SWEEP_OFFSET = 'erasure-sweep';

/** Records read per page while sweeping. */
const SWEEP_PAGE = 1000;

/** Removes `erase` records from the change log once nobody needs the user id they carry (see above). */
export class ErasureSweeper {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> | null = null;
  /** When this process first saw each pending erase record (seq → ms). */
  private readonly seen = new Map<number, number>();
  /** Records were removed and the files not purged since (a reader may block SQLite's checkpoint). */
  private purgePending = false;
  /** A limit below the head that has not moved, and since when. */
  private stuck: { limit: number; since: number } | null = null;
  private warnedAt = 0;
  private readonly graceMs: number;
  private readonly warnAfterMs: number;
  private readonly now: () => number;

  constructor(private readonly options: ErasureSweeperOptions) {
    this.graceMs = options.graceMs ?? 60_000;
    this.warnAfterMs = options.warnAfterMs ?? 3_600_000;
    this.now = options.now ?? Date.now;
  }

  /** Sweeps every `intervalMs` (the first sweep after one interval). */
  start(): this {
    if (this.timer) return this;
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = this.sweep()
        .catch((err: unknown) => this.options.logger.warn({ err }, 'erasure sweep failed; retrying'))
        .finally(() => (this.running = null));
    }, this.options.intervalMs ?? 10_000);
    this.timer.unref();
    return this;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  /**
   * One pass: removes every erase record that is past all consumers and its grace time; returns how
   * many were removed. Throws when a backend is down (the next pass tries again; nothing is lost, the
   * position only moves past records that are removed or no erase records).
   */
  async sweep(): Promise<number> {
    const { changeLog, offsets } = this.options;
    const done = await offsets.get(SWEEP_OFFSET);
    const head = await changeLog.head();
    const limit = await this.limit(head);
    this.warnIfStuck(limit, head);
    if (limit <= done && !this.purgePending) return 0;
    const removable: number[] = [];
    // Up to the first record still in its grace time; every record up to the limit is looked at (and
    // its grace time started), so a burst of erasures waits one grace time, not one each.
    let position = done;
    let blocked = false;
    for (let after = done; after < limit;) {
      const page = (await changeLog.read(after, SWEEP_PAGE)).filter((r) => r.seq <= limit);
      if (page.length === 0) break;
      for (const { seq, value } of page) {
        if (value.kind === 'erase') {
          if (!this.graceOver(seq)) blocked = true;
          else {
            await this.options.served?.deleteForUser(value.userId);
            removable.push(seq);
          }
        }
        if (!blocked) position = seq;
      }
      after = page[page.length - 1].seq;
    }
    // Without a record in its grace time, everything up to the limit was looked at (gaps included).
    if (!blocked) position = limit;
    if (removable.length > 0) {
      await changeLog.remove(removable);
      for (const seq of removable) this.seen.delete(seq);
      this.options.logger.info({ records: removable.length }, 'erase records removed from the change log');
    }
    await offsets.set(SWEEP_OFFSET, position);
    if (removable.length > 0) this.purgePending = true;
    if (this.purgePending) {
      await this.options.purge();
      this.purgePending = false;
    }
    return removable.length;
  }

  /** The highest seq every consumer that needs erase records has applied (never above the head). */
  private async limit(head: number): Promise<number> {
    const { changeLog, holdbacks = [] } = this.options;
    const positions = [head];
    const floor = await changeLog.durableFloor();
    if (floor !== null) positions.push(floor);
    for (const holdback of holdbacks) positions.push(await holdback());
    return Math.min(...positions);
  }

  private graceOver(seq: number): boolean {
    const now = this.now();
    const first = this.seen.get(seq) ?? now;
    this.seen.set(seq, first);
    return now - first >= this.graceMs;
  }

  /**
   * A consumer that does not advance keeps every later erase record (and the user id in it): after
   * `warnAfterMs` of that, say so, once per `warnAfterMs`.
   */
  private warnIfStuck(limit: number, head: number): void {
    const now = this.now();
    if (limit >= head) {
      this.stuck = null;
      return;
    }
    if (this.stuck?.limit !== limit) {
      this.stuck = { limit, since: now };
      return;
    }
    if (now - this.stuck.since < this.warnAfterMs || now - this.warnedAt < this.warnAfterMs) return;
    this.warnedAt = now;
    this.options.logger.warn(
      { position: limit, head, stuckMs: now - this.stuck.since },
      'a change-log consumer has not advanced for long; erase records after its position keep their user id until it does',
    );
  }
}

/**
 * Starts the sweeper of a process that runs background work (roles `all` and `worker`), timed by
 * `privacy.eraseGraceSeconds` and `privacy.eraseSweepSeconds`. Close it with the process.
 */
export function startErasureSweeper(deps: {
  config: Pick<Readonly<Config>, 'privacy'>;
  store: Pick<Store, 'offsets' | 'purgeErased' | 'served'>;
  changeLog: ErasureSweeperOptions['changeLog'];
  logger: Logger;
  holdbacks?: ErasureSweeperOptions['holdbacks'];
}): ErasureSweeper {
  const { config, store, changeLog, logger, holdbacks } = deps;
  return new ErasureSweeper({
    changeLog,
    served: store.served,
    offsets: store.offsets,
    purge: () => store.purgeErased(),
    holdbacks,
    logger,
    graceMs: config.privacy.eraseGraceSeconds * 1000,
    intervalMs: config.privacy.eraseSweepSeconds * 1000,
  }).start();
}
