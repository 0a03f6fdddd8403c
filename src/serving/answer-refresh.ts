/**
 * Answers computed again in the background (stale-while-revalidate): a cached answer past its time to
 * live is still served while a task computes and stores it anew. The tasks run one at a time, each
 * started from its own event-loop turn (setImmediate), so requests that arrive meanwhile are read and
 * answered between two of them instead of queueing behind a burst; a key already waiting or running is
 * not queued twice, and past `maxPending` waiting tasks a request is dropped (its answer expires and the
 * next request computes it). `share` bounds the tasks' part of the process's time: after a task that took
 * t ms the next starts no sooner than t × (1 / share − 1) ms later, so when many answers expire together
 * their recomputations spread out instead of taking the event loop from the requests.
 */
export interface AnswerRefreshOptions {
  /** Tasks that may wait at once; more are dropped. */
  maxPending: number;
  /** A task that failed (the answer stays as it was). */
  onError: (err: unknown) => void;
  /** What became of each request: queued, dropped (full or closed), duplicate (already waiting or running). */
  onRequest?: (outcome: 'queued' | 'dropped' | 'duplicate') => void;
  /** Part of the wall time the tasks may take, in (0, 1] (default 1: the next task on the next turn). */
  share?: number;
}

export class AnswerRefresh {
  private readonly pending = new Map<string, () => Promise<void>>();
  /** The key of the task that runs now, and its end. */
  private active: { key: string; done: Promise<void> } | null = null;
  private scheduled = false;
  /** The pause before the next task (see `share`), while it lasts. */
  private pause: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly options: AnswerRefreshOptions) {
    const share = options.share ?? 1;
    if (!(share > 0 && share <= 1)) throw new RangeError(`share must be in (0, 1], not ${share}`);
  }

  /** Tasks waiting (not counting the one running). */
  get size(): number {
    return this.pending.size;
  }

  /** Queues `task` under `key`; returns whether it was queued. */
  request(key: string, task: () => Promise<void>): boolean {
    let outcome: 'queued' | 'dropped' | 'duplicate';
    if (this.pending.has(key) || this.active?.key === key) outcome = 'duplicate';
    else if (this.closed || this.pending.size >= this.options.maxPending) outcome = 'dropped';
    else {
      this.pending.set(key, task);
      outcome = 'queued';
      this.schedule();
    }
    this.options.onRequest?.(outcome);
    return outcome === 'queued';
  }

  /** Drops what waits and resolves once the running task (if any) has ended. */
  async close(): Promise<void> {
    this.closed = true;
    this.pending.clear();
    if (this.pause) clearTimeout(this.pause);
    await this.active?.done;
  }

  /** Starts the next task after `pauseMs` (at least the next event-loop turn). */
  private schedule(pauseMs = 0): void {
    if (this.scheduled || this.active !== null || this.closed || this.pending.size === 0) return;
    this.scheduled = true;
    const go = () => {
      this.scheduled = false;
      this.pause = null;
      this.runNext();
    };
    if (pauseMs >= 1) this.pause = setTimeout(go, pauseMs);
    else setImmediate(go);
  }

  private runNext(): void {
    if (this.closed) return;
    const next = this.pending.entries().next();
    if (next.done) return;
    const [key, task] = next.value;
    this.pending.delete(key);
    const started = performance.now();
    const done = (async () => {
      try {
        await task();
      } catch (err) {
        this.options.onError(err);
      }
    })().finally(() => {
      this.active = null;
      this.schedule((performance.now() - started) * (1 / (this.options.share ?? 1) - 1));
    });
    this.active = { key, done };
  }
}
