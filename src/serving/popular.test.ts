/**
 * PopularList over the real memory online state. The state is wrapped only to count the pages the list
 * asks for (and, in one test, to hold a page read open), which is what the cache and paging rules are
 * about.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { StoredEvent } from '../domain/types.ts';
import { CairnError } from '../errors/errors.ts';
import { MemoryOnlineState } from '../storage/memory/online-state.ts';
import type { OnlineState, PopularEntry } from '../storage/ports.ts';
import { PopularList } from './popular.ts';

const NOW = 1_700_000_000_000;

/** Item ids `i00`…`i24`: item k has 25 − k views, so the ranking is i00, i01, … i24. */
const ITEMS = Array.from({ length: 25 }, (_, k) => `i${String(k).padStart(2, '0')}`);

let seq = 0;
const view = (itemId: string, n = 1): StoredEvent[] =>
  Array.from({ length: n }, () => {
    seq++;
    return {
      seq,
      eventId: `e${seq}`,
      userId: `u${seq}`,
      itemId,
      type: 'view',
      value: null,
      timestamp: NOW,
      context: null,
    };
  });

/** The real state behind a counter of `popular` calls, with an optional gate on the next call. */
class CountingState implements Pick<OnlineState, 'popular'> {
  readonly pages: [number, number][] = [];
  hold: Promise<void> | null = null;
  /** Fails every call as an unreachable Redis does. */
  down = false;

  constructor(private readonly inner: MemoryOnlineState) {}

  async popular(offset: number, count: number, now: number): Promise<PopularEntry[]> {
    this.pages.push([offset, count]);
    if (this.down) throw new CairnError('CAIRN_UNAVAILABLE', 'Redis unavailable: connection lost');
    // Read first, then wait: the answer reflects the state at the time of the call, as over a network.
    const answer = this.inner.popular(offset, count, now);
    const hold = this.hold;
    this.hold = null;
    if (hold) await hold;
    return answer;
  }
}

const ids = (entries: PopularEntry[]) => entries.map((e) => e.itemId);

describe('PopularList', () => {
  let online: MemoryOnlineState;
  let state: CountingState;
  let t: number;
  const clock = () => t;

  beforeEach(async () => {
    seq = 0;
    t = NOW;
    online = new MemoryOnlineState({
      types: { view: { weight: 1 } },
      popularityHalfLifeDays: 7,
      historyLimit: 5,
    });
    await online.applyEvents(ITEMS.flatMap((id, k) => view(id, ITEMS.length - k)));
    state = new CountingState(online);
  });

  it('serves the cached head until refreshMs has passed, and re-reads after invalidate()', async () => {
    const list = new PopularList(state, 10, 1000, clock);
    expect(ids(await list.top(3, NOW, () => true))).toEqual(['i00', 'i01', 'i02']);
    expect(list.scoredAt).toBe(NOW);
    expect(state.pages).toEqual([[0, 10]]);

    await online.applyEvents(view('new', 100));
    t = NOW + 999;
    expect(ids(await list.top(1, NOW, () => true))).toEqual(['i00']); // still the cached head
    expect(state.pages).toHaveLength(1);

    t = NOW + 1000;
    expect(ids(await list.top(1, NOW, () => true))).toEqual(['new']);
    expect(state.pages).toHaveLength(2);
    expect(list.scoredAt).toBe(NOW + 1000);

    await online.applyEvents(view('newer', 200));
    list.invalidate();
    expect(ids(await list.top(1, NOW, () => true))).toEqual(['newer']); // same instant, read again
    expect(state.pages).toHaveLength(3);
  });

  it('shares one read between concurrent callers', async () => {
    const list = new PopularList(state, 10, 1000, clock);
    const [a, b] = await Promise.all([list.top(2, NOW, () => true), list.top(2, NOW, () => true)]);
    expect(ids(a)).toEqual(['i00', 'i01']);
    expect(b).toEqual(a);
    expect(state.pages).toEqual([[0, 10]]);
  });

  it('does not keep a head read before an invalidate() that happened while it was in flight', async () => {
    const list = new PopularList(state, 10, 1000, clock);
    let release!: () => void;
    state.hold = new Promise<void>((r) => (release = r));
    const inFlight = list.top(1, NOW, () => true);
    // New events land and are announced while the first read is still on its way back.
    await online.applyEvents(view('late', 100));
    list.invalidate();
    // A caller arriving now must not share the stale read: it waits for it, then reads again.
    const after = list.top(1, NOW, () => true);
    release();
    expect(ids(await inFlight)).toEqual(['i00']); // asked before the events: the old answer is fine
    expect(ids(await after)).toEqual(['late']);
    expect(state.pages).toHaveLength(2);
    // And the head it read is cached as usual.
    expect(ids(await list.top(1, NOW, () => true))).toEqual(['late']);
    expect(state.pages).toHaveLength(2);
  });

  it('filters walk the head and need no further read when it has enough', async () => {
    const list = new PopularList(state, 10, 1000, clock);
    const odd = (id: string) => Number(id.slice(1)) % 2 === 1;
    expect(ids(await list.top(3, NOW, odd))).toEqual(['i01', 'i03', 'i05']);
    expect(state.pages).toEqual([[0, 10]]);
  });

  it('pages deeper, one head size at a time, only when the head was full', async () => {
    const list = new PopularList(state, 10, 1000, clock);
    const deep = (id: string) => Number(id.slice(1)) >= 12;
    expect(ids(await list.top(3, NOW, deep))).toEqual(['i12', 'i13', 'i14']);
    expect(state.pages).toEqual([
      [0, 10],
      [10, 10],
    ]);

    // Asking for more than exists: pages until a short page says the ranking ended.
    state.pages.length = 0;
    expect(ids(await list.top(10, NOW, (id) => Number(id.slice(1)) >= 22))).toEqual(['i22', 'i23', 'i24']);
    expect(state.pages).toEqual([
      [10, 10],
      [20, 10],
    ]);
  });

  it('never pages when the head already held the whole ranking', async () => {
    const list = new PopularList(state, 50, 1000, clock);
    expect(await list.top(5, NOW, () => false)).toEqual([]);
    expect(state.pages).toEqual([[0, 50]]);
  });

  it('lastKnown() filters the last head read, with no read of its own, also while the state is unreachable', async () => {
    const list = new PopularList(state, 10, 1000, clock);
    expect(list.lastKnown(3, () => true)).toEqual([]); // nothing read yet
    expect(ids(await list.top(3, NOW, () => true))).toEqual(['i00', 'i01', 'i02']);

    state.down = true;
    t = NOW + 1000;
    await expect(list.top(3, NOW, () => true)).rejects.toMatchObject({ code: 'CAIRN_UNAVAILABLE' });
    const odd = (id: string) => Number(id.slice(1)) % 2 === 1;
    expect(ids(list.lastKnown(2, odd))).toEqual(['i01', 'i03']);
    expect(ids(list.lastKnown(20, () => true))).toEqual(ITEMS.slice(0, 10)); // the head, no deeper page
    expect(state.pages).toEqual([
      [0, 10],
      [0, 10], // the failed refresh; lastKnown() read nothing
    ]);

    // Back: the next top() reads again, and lastKnown() follows the new head.
    state.down = false;
    await online.applyEvents(view('new', 100));
    expect(ids(await list.top(1, NOW, () => true))).toEqual(['new']);
    expect(ids(list.lastKnown(1, () => true))).toEqual(['new']);
  });

  it('stops paging at maxScan entries', async () => {
    const list = new PopularList(state, 10, 1000, clock);
    expect(await list.top(5, NOW, (id) => id === 'i24', 20)).toEqual([]);
    expect(state.pages).toEqual([
      [0, 10],
      [10, 10],
    ]);
  });
});
