import { describe, expect, it } from 'vitest';
import type { ExperimentVariant } from '../domain/types.ts';
import { assignVariant, unitHash } from './assignment.ts';

const variant = (name: string, weight: number): ExperimentVariant => ({
  name,
  weight,
  modelVersion: null,
  algorithm: null,
  ranker: null,
});

describe('assignVariant', () => {
  it('is deterministic and independent between experiments', () => {
    const a = { id: 'exp-a', variants: [variant('control', 50), variant('b', 50)] };
    const b = { id: 'exp-b', variants: a.variants };
    expect(assignVariant(a, 'u1')).toEqual(assignVariant(a, 'u1'));
    let same = 0;
    for (let i = 0; i < 2000; i++) {
      if (assignVariant(a, `u${i}`)?.name === assignVariant(b, `u${i}`)?.name) same++;
    }
    // Independent salts: about half agree, not all.
    expect(same / 2000).toBeGreaterThan(0.45);
    expect(same / 2000).toBeLessThan(0.55);
  });

  it('follows the weights within 2 % over 10,000 users', () => {
    const e = { id: 'exp-1', variants: [variant('control', 70), variant('x', 20), variant('y', 10)] };
    const counts: Record<string, number> = {};
    for (let i = 0; i < 10_000; i++) {
      const v = assignVariant(e, `user-${i}`)!.name;
      counts[v] = (counts[v] ?? 0) + 1;
    }
    expect(Math.abs(counts.control / 10_000 - 0.7)).toBeLessThan(0.02);
    expect(Math.abs(counts.x / 10_000 - 0.2)).toBeLessThan(0.02);
    expect(Math.abs(counts.y / 10_000 - 0.1)).toBeLessThan(0.02);
  });

  it('never assigns a zero-weight variant, and null when all weights are zero', () => {
    const e = { id: 'exp-z', variants: [variant('control', 1), variant('off', 0)] };
    for (let i = 0; i < 500; i++) expect(assignVariant(e, `u${i}`)?.name).toBe('control');
    expect(assignVariant({ id: 'n', variants: [variant('a', 0)] }, 'u')).toBeNull();
  });

  it('hashes uniformly into [0, 1)', () => {
    for (let i = 0; i < 1000; i++) {
      const h = unitHash('e', String(i));
      expect(h).toBeGreaterThanOrEqual(0);
      expect(h).toBeLessThan(1);
    }
  });
});
