/**
 * Cooperative scheduling for long synchronous work on the one event loop (bulk recommendations, large
 * event batches): the work stops every few milliseconds and lets timers, I/O and other requests run, so
 * a health probe or a single recommendation is never stuck behind a 1,000-user bulk request.
 *
 * `CAIRN_BENCH_NO_YIELD=1` turns the yields off; it exists only so `npm run bench:bulk` can measure the
 * loop with and without them in one process (read per batch, never cached).
 */

/** Whether yielding is switched off (benchmark comparison only, see the module comment). */
function yieldingDisabled(): boolean {
  return process.env.CAIRN_BENCH_NO_YIELD === '1';
}

/** Resolves after one turn of the event loop (setImmediate: after the I/O callbacks that are due). */
export function yieldToLoop(): Promise<void> {
  if (yieldingDisabled()) return Promise.resolve();
  return new Promise<void>((resolve) => setImmediate(resolve));
}

/** How long one slice of synchronous work may run before the loop gets a turn. */
export const DEFAULT_SLICE_MS = 2;

/**
 * Hands out time slices to concurrent workers that await `turn()` before each unit of work. A worker
 * whose slice has time left goes on at once; otherwise it queues, and each loop turn starts one new slice
 * for the first worker in the queue. So at most one slice of units runs per loop turn, however many
 * workers there are: a per-worker `setImmediate` would let N workers resumed in the same loop phase run
 * N units back to back. The first slice also starts on a loop turn, so workers started together queue
 * rather than all running their first unit at once.
 *
 * What this cannot bound: a worker that awaits real I/O inside a unit resumes from the I/O callback and
 * finishes that unit there, whatever the slice says (several such completions in one poll phase add up).
 */
export class TimeSlicer {
  private sliceStart = -Infinity;
  private readonly waiting: (() => void)[] = [];
  private scheduled = false;
  private readonly disabled = yieldingDisabled();

  constructor(
    private readonly sliceMs = DEFAULT_SLICE_MS,
    // Read through the global at call time (not a captured import), so tests can drive the clock.
    private readonly clock: () => number = () => performance.now(),
    /**
     * 0 (default): the next slice starts on the next loop turn. Above 0: no sooner than this long after
     * the slice before it ended (a timer; with several workers queued, after it started), so one worker
     * takes at most sliceMs / (sliceMs + restMs) of the loop however many requests keep it busy — for
     * background work that must not crowd requests out.
     */
    private readonly restMs = 0,
  ) {}

  turn(): Promise<void> {
    if (this.disabled || this.clock() - this.sliceStart < this.sliceMs) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.waiting.push(resolve);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    const start = () => {
      this.scheduled = false;
      this.sliceStart = this.clock();
      this.waiting.shift()?.();
      if (this.waiting.length > 0) this.schedule();
    };
    if (this.restMs > 0) setTimeout(start, this.restMs);
    else setImmediate(start);
  }
}

/**
 * Long synchronous computations are written once, as generators that `yield` between units of work
 * (every few hundred rows or events); `runSteps` runs one to its end in one go, `runStepsSliced` gives
 * the loop a turn whenever the slicer's slice is used up. Same code, same result, either way.
 */
export type Steps<T> = Generator<void, T, void>;

export function runSteps<T>(steps: Steps<T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

export async function runStepsSliced<T>(steps: Steps<T>, slicer = new TimeSlicer()): Promise<T> {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    await slicer.turn();
  }
}
