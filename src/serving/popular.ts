/**
 * The popular lists behind the last links of the fallback chain, read from the online state (shared by
 * every replica in production). The head of the ranking is cached in the process for `refreshMs`, so a
 * fallback costs no round trip in the common case; filters (availability, category, seen items) walk
 * it and page deeper only when it runs out. The last head read also answers, with no round trip, while
 * the online state is unreachable (`lastKnown`).
 */
import type { OnlineState, PopularEntry } from '../storage/ports.ts';

export class PopularList {
  private head: PopularEntry[] = [];
  private headAt = -Infinity;
  private headNow = 0;
  /** Bumped by `invalidate()`: a read started under an older generation may predate what prompted it. */
  private generation = 0;
  private refreshing: { generation: number; done: Promise<void> } | null = null;

  constructor(
    private readonly online: Pick<OnlineState, 'popular'>,
    /** Entries kept in the cached head. */
    private readonly headSize = 1000,
    private readonly refreshMs = 1000,
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * The `k` most popular items passing `accept` at `now`, best first. Reads the cached head (refreshed
   * when older than `refreshMs`), then pages deeper up to `maxScan` entries.
   */
  async top(
    k: number,
    now: number,
    accept: (itemId: string) => boolean,
    maxScan = 20_000,
  ): Promise<PopularEntry[]> {
    await this.fresh();
    const out = this.lastKnown(k, accept);
    if (out.length >= k || this.head.length < this.headSize) return out; // enough, or the head held all
    for (let offset = this.head.length; out.length < k && offset < maxScan; offset += this.headSize) {
      const page = await this.online.popular(offset, this.headSize, now);
      for (const e of page) {
        if (out.length >= k) break;
        if (accept(e.itemId)) out.push(e);
      }
      if (page.length < this.headSize) break;
    }
    return out;
  }

  /**
   * The `k` best items passing `accept` in the last head read successfully, with no I/O: what the
   * fallback chain serves while the online state is unreachable (empty if it never answered).
   */
  lastKnown(k: number, accept: (itemId: string) => boolean): PopularEntry[] {
    const out: PopularEntry[] = [];
    for (const e of this.head) {
      if (out.length >= k) break;
      if (accept(e.itemId)) out.push(e);
    }
    return out;
  }

  /** Drops the cached head (e.g. after this process applied new events and wants them at once). */
  invalidate(): void {
    this.headAt = -Infinity;
    this.generation++;
  }

  /** Reference time of the cached scores. */
  get scoredAt(): number {
    return this.headNow;
  }

  private async fresh(): Promise<void> {
    const t = this.clock();
    if (t - this.headAt < this.refreshMs) return;
    // A read already in flight but started before the last invalidate() may miss what prompted it:
    // let it land, then read again rather than share it.
    while (this.refreshing !== null && this.refreshing.generation !== this.generation) {
      await this.refreshing.done;
    }
    this.refreshing ??= this.refresh();
    await this.refreshing.done;
  }

  private refresh(): { generation: number; done: Promise<void> } {
    const generation = this.generation;
    const done = (async () => {
      try {
        const now = this.clock();
        this.head = await this.online.popular(0, this.headSize, now);
        this.headNow = now;
        // Invalidated meanwhile: the head is still the newest there is, but the next call reads again.
        this.headAt = generation === this.generation ? now : -Infinity;
      } finally {
        this.refreshing = null;
      }
    })();
    return { generation, done };
  }
}
