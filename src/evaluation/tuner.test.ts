import { describe, expect, it } from 'vitest';
import { Rng } from '../algorithms/random.ts';
import type { ParamSpace, Params } from '../algorithms/types.ts';
import { internals, tune } from './tuner.ts';

const space: Record<string, ParamSpace> = {
  factors: { kind: 'int', min: 8, max: 256, log: true },
  reg: { kind: 'float', min: 1e-4, max: 1, log: true },
  alpha: { kind: 'float', min: 0, max: 50 },
  mode: { kind: 'choice', values: ['a', 'b', 'c'] },
};

/** A smooth objective with its optimum at factors 64, reg 0.01, alpha 20, mode b. */
function objective(p: Params): number {
  const f = Math.log2(p.factors as number) - 6;
  const r = Math.log10(p.reg as number) + 2;
  const a = ((p.alpha as number) - 20) / 10;
  return -(f * f) - r * r - a * a - (p.mode === 'b' ? 0 : 0.5);
}

describe('sampling', () => {
  it('random samples stay in the space with the right types', () => {
    const rng = new Rng(1);
    const seen = new Set<string>();
    for (let t = 0; t < 500; t++) {
      const p = internals.sampleRandom(space, Object.keys(space), rng);
      expect(Number.isInteger(p.factors)).toBe(true);
      expect(p.factors).toBeGreaterThanOrEqual(8);
      expect(p.factors).toBeLessThanOrEqual(256);
      expect(p.reg).toBeGreaterThanOrEqual(1e-4);
      expect(p.reg).toBeLessThanOrEqual(1);
      expect(p.alpha).toBeGreaterThanOrEqual(0);
      expect(p.alpha).toBeLessThanOrEqual(50);
      seen.add(p.mode as string);
    }
    expect(seen).toEqual(new Set(['a', 'b', 'c']));
  });

  it('log-scaled ranges are sampled uniformly in log space', () => {
    const rng = new Rng(2);
    let below = 0;
    for (let t = 0; t < 2000; t++)
      if ((internals.sampleRandom(space, ['reg'], rng).reg as number) < 0.01) below++;
    // 1e-4..1e-2 is half of 1e-4..1 in log space.
    expect(below / 2000).toBeGreaterThan(0.45);
    expect(below / 2000).toBeLessThan(0.55);
  });

  it('erf and the Parzen density are accurate', () => {
    expect(internals.erf(0)).toBeCloseTo(0, 6);
    expect(internals.erf(1)).toBeCloseTo(0.8427007929, 6);
    expect(internals.erf(-2)).toBeCloseTo(-0.995322265, 6);
    // The truncated mixture integrates to 1 over its range.
    const p = internals.buildParzen([0.2, 0.25, 0.9], 0, 1);
    let integral = 0;
    const n = 20000;
    for (let i = 0; i < n; i++) integral += Math.exp(internals.parzenLogPdf(p, (i + 0.5) / n)) / n;
    expect(integral).toBeCloseTo(1, 3);
    // ...and is higher near the clustered observations.
    expect(internals.parzenLogPdf(p, 0.22)).toBeGreaterThan(internals.parzenLogPdf(p, 0.6));
  });
});

describe('tune', () => {
  it('evaluates the initial parameters first and is deterministic for a seed', async () => {
    const run = () =>
      tune(space, (p) => Promise.resolve(objective(p)), {
        trials: 15,
        seed: 3,
        initial: [{ factors: 32, reg: 0.1, alpha: 1, mode: 'a' }],
      });
    const a = await run();
    const b = await run();
    expect(a.trials[0].params).toEqual({ factors: 32, reg: 0.1, alpha: 1, mode: 'a' });
    expect(a.trials[0].source).toBe('initial');
    expect(a.trials.map((t) => t.params)).toEqual(b.trials.map((t) => t.params));
    expect(a.best.score).toBe(Math.max(...a.trials.map((t) => t.score)));
  });

  it('TPE finds better parameters than random search with the same budget', async () => {
    const wins: boolean[] = [];
    const gaps: number[] = [];
    for (let seed = 1; seed <= 6; seed++) {
      const tpe = await tune(space, (p) => Promise.resolve(objective(p)), {
        trials: 40,
        seed,
        sampler: 'tpe',
      });
      const rnd = await tune(space, (p) => Promise.resolve(objective(p)), {
        trials: 40,
        seed,
        sampler: 'random',
      });
      wins.push(tpe.best.score > rnd.best.score);
      gaps.push(tpe.best.score - rnd.best.score);
      expect(tpe.trials.some((t) => t.source === 'tpe')).toBe(true);
    }
    expect(wins.filter(Boolean).length).toBeGreaterThanOrEqual(5);
    expect(gaps.reduce((x, y) => x + y, 0)).toBeGreaterThan(0);
  });

  it('stops after `patience` trials without improvement', async () => {
    const r = await tune(space, () => Promise.resolve(1), { trials: 50, seed: 1, patience: 4 });
    expect(r.trials).toHaveLength(5);
    expect(r.stoppedEarly).toBe(true);
    expect(r.best.index).toBe(0);
  });

  it('records failing trials and carries on; fixed params reach every trial', async () => {
    let n = 0;
    const r = await tune(
      { reg: space.reg },
      (p) => {
        expect(p.factors).toBe(16);
        if (n++ === 1) return Promise.reject(new Error('diverged'));
        return Promise.resolve(-(p.reg as number));
      },
      { trials: 6, seed: 1, fixed: { factors: 16 } },
    );
    expect(r.trials).toHaveLength(6);
    expect(r.trials[1].score).toBe(-Infinity);
    expect(r.trials[1].error).toBe('diverged');
    expect(Number.isFinite(r.best.score)).toBe(true);
  });

  it('covers a small finite space without repeats, then stops', async () => {
    const grid: Record<string, ParamSpace> = {
      by: { kind: 'choice', values: ['users', 'weight'] },
      days: { kind: 'choice', values: [0, 7, 30, 90, 365] },
    };
    for (const seed of [1, 2, 3, 7, 17, 19]) {
      const r = await tune(grid, () => Promise.resolve(0), {
        trials: 15,
        seed,
        initial: [{ by: 'users', days: 0 }],
      });
      expect(r.trials).toHaveLength(10);
      expect(new Set(r.trials.map((t) => JSON.stringify(t.params))).size).toBe(10);
      expect(r.stoppedEarly).toBe(true);
    }
  });

  it('does not repeat a configuration while unseen ones remain', async () => {
    const r = await tune({ mode: space.mode }, (p) => Promise.resolve(p.mode === 'c' ? 1 : 0), {
      trials: 3,
      seed: 4,
    });
    expect(new Set(r.trials.map((t) => t.params.mode)).size).toBe(3);
  });
});

describe('time budget', () => {
  it('always runs the first trial, then starts one only while spent + mean trial time fits', async () => {
    // A fake clock: every trial takes exactly one second.
    let now = 0;
    const run = (budgetSeconds: number) =>
      tune(
        space,
        (p) => {
          now += 1;
          return Promise.resolve(objective(p));
        },
        { trials: 10, seed: 1, budgetSeconds, clock: () => now },
      );
    now = 0;
    const none = await run(0);
    expect(none.trials).toHaveLength(1);
    expect(none.stopReason).toBe('budget');
    now = 0;
    // After 3 trials: 3 s spent + 1 s expected = 4 > 3.5, so the fourth does not start.
    const some = await run(3.5);
    expect(some.trials).toHaveLength(3);
    expect(some.stoppedEarly).toBe(true);
    now = 0;
    const all = await run(100);
    expect(all.trials).toHaveLength(10);
    expect(all.stoppedEarly).toBe(false);
    expect(all.stopReason).toBeUndefined();
  });
});
