import { describe, expect, it } from 'vitest';
import { parseIsoTime, validateItem } from '../ingest/validate.ts';
import { validateOffer } from './validate.ts';

const fields = (raw: unknown) => {
  const r = validateOffer(raw, parseIsoTime);
  return r.ok ? [] : r.issues.map((i) => i.field);
};

describe('validateOffer', () => {
  it('reads a full offer, times in ISO or epoch ms, defaults filled', () => {
    const r = validateOffer(
      {
        value: 12.5,
        lever: 2,
        segments: ['loyal', 'loyal', 'new'],
        channels: ['web'],
        start: '2024-01-01T00:00:00Z',
        end: Date.UTC(2024, 1, 1),
        inventory: 3,
        budget: 100,
        policy: {
          maxImpressions: 2,
          periodDays: 1,
          suppressAfter: 1,
          suppressOutcomes: ['dismiss'],
          suppressDays: 3,
        },
      },
      parseIsoTime,
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.offer).toEqual({
      value: 12.5,
      lever: 2,
      segments: ['loyal', 'new'],
      channels: ['web'],
      start: Date.UTC(2024, 0, 1),
      end: Date.UTC(2024, 1, 1),
      inventory: 3,
      budget: 100,
      policy: {
        maxImpressions: 2,
        periodDays: 1,
        suppressAfter: 1,
        suppressOutcomes: ['dismiss'],
        suppressDays: 3,
      },
    });
    const minimal = validateOffer({ value: 0 }, parseIsoTime);
    expect(minimal.ok && minimal.offer).toMatchObject({
      value: 0,
      lever: 1,
      segments: null,
      channels: null,
      policy: {},
    });
  });

  it('names every offending field at once', () => {
    expect(fields({})).toEqual(['attributes.offer.value']);
    expect(fields({ value: -1 })).toEqual(['attributes.offer.value']);
    expect(fields({ value: 'ten' })).toEqual(['attributes.offer.value']);
    expect(
      fields({
        value: 1,
        lever: -2,
        segments: 'gold',
        channels: ['web', ''],
        start: '2024-13-01',
        end: true,
        inventory: Infinity,
        budget: '5',
        policy: {
          maxImpressions: 1.5,
          periodDays: 0,
          suppressAfter: -1,
          suppressOutcomes: [3],
          suppressDays: -1,
          x: 1,
        },
        colour: 'red',
      }),
    ).toEqual([
      'attributes.offer.colour',
      'attributes.offer.lever',
      'attributes.offer.segments',
      'attributes.offer.channels[1]',
      'attributes.offer.start',
      'attributes.offer.end',
      'attributes.offer.inventory',
      'attributes.offer.budget',
      'attributes.offer.policy.x',
      'attributes.offer.policy.maxImpressions',
      'attributes.offer.policy.periodDays',
      'attributes.offer.policy.suppressAfter',
      'attributes.offer.policy.suppressOutcomes[0]',
      'attributes.offer.policy.suppressDays',
    ]);
    expect(fields({ value: 1, start: '2024-02-01', end: '2024-01-01' })).toEqual(['attributes.offer.end']);
    expect(fields(null)).toEqual(['attributes.offer']);
    expect(fields([1])).toEqual(['attributes.offer']);
    expect(fields({ value: 1, start: '2024-01-01T10:00:00' })).toEqual(['attributes.offer.start']);
  });

  it('is enforced where items are validated (PUT/POST items), with the unknown-field code kept', () => {
    const bad = validateItem({ id: 'o1', attributes: { title: 'x', offer: { value: -3 } } });
    expect(bad.ok).toBe(false);
    if (!bad.ok)
      expect(bad.issues).toEqual([
        expect.objectContaining({ code: 'CAIRN_VALIDATION', field: 'attributes.offer.value' }),
      ]);
    const unknown = validateItem({ id: 'o1', attributes: { offer: { value: 1, levr: 2 } } });
    expect(!unknown.ok && unknown.issues[0]).toMatchObject({
      code: 'CAIRN_UNKNOWN_FIELD',
      field: 'attributes.offer.levr',
    });
    const good = validateItem({ id: 'o1', attributes: { offer: { value: 3, channels: ['web'] } } });
    expect(good.ok && good.value.attributes).toEqual({ offer: { value: 3, channels: ['web'] } });
  });
});
