import { afterEach, describe, expect, it } from 'vitest';
import { countLoopTurns } from '../../test/fixtures/loop-turns.ts';
import { runSteps, runStepsSliced, TimeSlicer, yieldToLoop } from './cooperative.ts';

/**
 * Runs `units` units of synchronous work costing `cost` ms of a fake clock each, on `workers` concurrent
 * workers that await the slicer before each unit; returns the loop turn each unit started in.
 */
async function runSliced(units: number, cost: number, workers: number, sliceMs = 2): Promise<number[]> {
  let now = 0;
  const slicer = new TimeSlicer(sliceMs, () => now);
  const turns = countLoopTurns();
  const startedIn: number[] = [];
  let next = 0;
  const worker = async () => {
    while (next < units) {
      next++;
      await slicer.turn();
      startedIn.push(turns.count);
      now += cost; // the unit's synchronous work
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
  turns.stop();
  return startedIn;
}

afterEach(() => {
  delete process.env.CAIRN_BENCH_NO_YIELD;
});

describe('TimeSlicer', () => {
  it('runs one expensive unit per loop turn, however many workers share it', async () => {
    const startedIn = await runSliced(12, 3, 4);
    expect(startedIn).toHaveLength(12);
    // Strictly increasing: no two units in the same turn.
    for (let i = 1; i < startedIn.length; i++) expect(startedIn[i]).toBeGreaterThan(startedIn[i - 1]);
  });

  it('runs cheap units together until the slice is used up', async () => {
    const startedIn = await runSliced(40, 0.5, 4);
    const perTurn = new Map<number, number>();
    for (const t of startedIn) perTurn.set(t, (perTurn.get(t) ?? 0) + 1);
    // 2 ms slices of 0.5 ms units: four units per turn, never more (the last few, each already claimed
    // by a queued worker, run one per turn).
    expect(Math.max(...perTurn.values())).toBe(4);
    expect([...perTurn.values()].filter((n) => n === 4).length).toBeGreaterThanOrEqual(8);
  });

  it('with restMs, starts each slice no sooner than restMs after the one before it', async () => {
    const slicer = new TimeSlicer(1, () => performance.now(), 15);
    const starts: number[] = [];
    for (let i = 0; i < 5; i++) {
      await slicer.turn();
      starts.push(performance.now());
      const until = performance.now() + 2; // a unit longer than the slice
      while (performance.now() < until);
    }
    // Each unit used its slice up: every next one waited for its rest (a timer, not the next turn).
    for (let i = 1; i < starts.length; i++) expect(starts[i] - starts[i - 1]).toBeGreaterThanOrEqual(16);
  });

  it('does not yield at all when switched off for the benchmark comparison', async () => {
    process.env.CAIRN_BENCH_NO_YIELD = '1';
    const startedIn = await runSliced(12, 3, 4);
    expect(new Set(startedIn).size).toBe(1);
  });
});

describe('yieldToLoop', () => {
  it('lets work queued on the loop run before it resolves', async () => {
    let ran = false;
    setImmediate(() => (ran = true));
    await yieldToLoop();
    expect(ran).toBe(true);
  });

  it('resolves without a loop turn when switched off', async () => {
    process.env.CAIRN_BENCH_NO_YIELD = '1';
    let ran = false;
    setImmediate(() => (ran = true));
    await yieldToLoop();
    expect(ran).toBe(false);
  });
});

describe('runSteps / runStepsSliced', () => {
  /** Five units of 3 ms (fake clock) each, recording the loop turn each started in; returns 42. */
  function* steps(now: { t: number }, turns: { count: number }, startedIn: number[]) {
    for (let i = 0; i < 5; i++) {
      yield;
      startedIn.push(turns.count);
      now.t += 3;
    }
    return 42;
  }

  it('returns the same result, one unit per loop turn when sliced and in one go when not', async () => {
    const now = { t: 0 };
    const turns = countLoopTurns();
    const sliced: number[] = [];
    const direct: number[] = [];
    expect(await runStepsSliced(steps(now, turns, sliced), new TimeSlicer(2, () => now.t))).toBe(42);
    expect(runSteps(steps(now, turns, direct))).toBe(42);
    turns.stop();
    for (let i = 1; i < sliced.length; i++) expect(sliced[i]).toBeGreaterThan(sliced[i - 1]);
    expect(new Set(direct).size).toBe(1);
  });
});
