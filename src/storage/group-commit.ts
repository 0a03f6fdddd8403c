/**
 * Group commit (write combining) for the SQL stores' event appends. Appends that arrive while a commit
 * is running wait in a queue and are then committed together in ONE transaction: one lock, one fsync,
 * one multi-row insert, instead of one of each per request. No timer: a group is exactly what queued
 * while the previous commit ran, so a lone caller pays nothing extra.
 *
 * Each caller's items stay contiguous and in its order, and groups start in arrival order. By default
 * one group commits at a time, so seq order (assigned at insert) is commit order; a store whose readers
 * need not rely on that (PostgreSQL's commit horizon) may run `concurrency` groups at once. The commit function sees the
 * concatenation of the group's batches: with "first occurrence wins" deduplication, an id sent by two
 * callers of one group is inserted for the earlier one and a duplicate for the later one, exactly as if
 * they had committed one after the other.
 *
 * Every caller still succeeds or fails as a whole. A group that fails because the backend is unavailable
 * rejects every caller with that error; any other failure may come from one caller's data (a constraint),
 * so the group is retried caller by caller and only the failing batch is rejected.
 */
import { CairnError } from '../errors/errors.ts';

/** The default bound of a group: the API's default maximum batch (`server.maxBatchEvents`). */
export const GROUP_MAX_ITEMS = 10_000;

export interface GroupCommitOptions<T, R> {
  /** Commits all of `items` in one transaction; one result per item, in order. May be synchronous. */
  commit: (items: T[]) => Promise<R[]> | R[];
  /** Most items per group (default GROUP_MAX_ITEMS). A larger caller is committed alone, never split. */
  maxItems?: number;
  /**
   * How a group is started when none is running (default: at once). A synchronous commit (SQLite)
   * never overlaps an arrival, so it passes `setImmediate`: the appends of one event-loop turn (the
   * requests read while the previous commit held the loop) then share a commit.
   */
  start?: (run: () => void) => void;
  /**
   * Groups committing at once (default 1). Above 1, a later group may commit before an earlier one, and
   * groups that share an id may wait for one another in the database: only for a store whose readers and
   * deduplication do not depend on commit order.
   */
  concurrency?: number;
}

interface Waiter<T, R> {
  items: T[];
  resolve: (results: R[]) => void;
  reject: (error: unknown) => void;
}

const runNow = (run: () => void): void => run();

/** A failure every caller would meet alone too: retrying them one by one would only multiply the wait. */
function sharedFailure(error: unknown): boolean {
  return error instanceof CairnError && error.code === 'CAIRN_UNAVAILABLE';
}

/** Combines concurrent `submit` calls into shared commits; see the module comment. */
export class GroupCommit<T, R> {
  private readonly commit: (items: T[]) => Promise<R[]> | R[];
  private readonly maxItems: number;
  private readonly start: (run: () => void) => void;
  private readonly concurrency: number;
  private readonly queue: Waiter<T, R>[] = [];
  /** Groups committing now (at most `concurrency`). */
  private running = 0;

  constructor(options: GroupCommitOptions<T, R>) {
    this.commit = options.commit;
    this.maxItems = Math.max(1, options.maxItems ?? GROUP_MAX_ITEMS);
    this.start = options.start ?? runNow;
    this.concurrency = Math.max(1, Math.floor(options.concurrency ?? 1));
  }

  /** Resolves with `items`' own results once the group holding them committed. */
  submit(items: T[]): Promise<R[]> {
    return new Promise<R[]>((resolve, reject) => {
      this.queue.push({ items, resolve, reject });
      if (this.running >= this.concurrency) return;
      this.running++;
      this.start(() => void this.next());
    });
  }

  /** Commits the next group, then starts the one that queued meanwhile (or goes idle). */
  private async next(): Promise<void> {
    // Another runner may have taken what queued since this one was started.
    if (this.queue.length > 0) await this.commitGroup(this.take());
    if (this.queue.length === 0) this.running--;
    else this.start(() => void this.next());
  }

  /** The longest prefix of the queue within `maxItems` (at least one caller). */
  private take(): Waiter<T, R>[] {
    let n = 1;
    let total = this.queue[0].items.length;
    while (n < this.queue.length && total + this.queue[n].items.length <= this.maxItems) {
      total += this.queue[n].items.length;
      n++;
    }
    return this.queue.splice(0, n);
  }

  /** Commits a group and settles each caller; never rejects. */
  private async commitGroup(group: Waiter<T, R>[]): Promise<void> {
    const items = group.length === 1 ? group[0].items : group.flatMap((w) => w.items);
    let results: R[];
    try {
      results = await this.commit(items);
    } catch (e) {
      if (group.length > 1 && !sharedFailure(e)) {
        for (const w of group) await this.commitGroup([w]);
      } else {
        for (const w of group) w.reject(e);
      }
      return;
    }
    if (results.length !== items.length) {
      // Committed, but nobody can be told which result is theirs: refuse loudly rather than retry.
      const e = new CairnError(
        'CAIRN_INTERNAL',
        `commit answered ${results.length} results for ${items.length} items`,
      );
      for (const w of group) w.reject(e);
      return;
    }
    let at = 0;
    for (const w of group) {
      w.resolve(results.slice(at, at + w.items.length));
      at += w.items.length;
    }
  }
}
