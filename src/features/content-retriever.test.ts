import { describe, expect, it } from 'vitest';
import { ContentIndex, contentTokens, topOf } from './content-retriever.ts';

const item = (categories: string[], attributes: Record<string, unknown> = {}) => ({ categories, attributes });

describe('content retriever', () => {
  it('tokenizes categories and short string attributes, not titles, numbers or free text', () => {
    expect(
      contentTokens(
        item(['Jazz', 'jazz'], {
          brand: 'Acme',
          title: 'Blue in Green',
          price: 12,
          notes: 'x'.repeat(65),
          tags: ['a'],
        }),
      ),
    ).toEqual(['a:brand=acme', 'c:jazz']);
  });

  it('scores items sharing rarer tokens higher, weights recent items by position, never the item itself', () => {
    const index = new ContentIndex(
      [
        ['jazz-acme-1', item(['jazz'], { brand: 'acme' })],
        ['jazz-acme-2', item(['jazz'], { brand: 'acme' })],
        ['jazz-zeta', item(['jazz'], { brand: 'zeta' })],
        ['rock-acme', item(['rock'], { brand: 'acme' })],
        ['rock-zeta', item(['rock'], { brand: 'zeta' })],
        ['pop-1', item(['pop'])],
        ['pop-2', item(['pop'])],
        ['pop-3', item(['pop'])],
        ['pop-4', item(['pop'])],
        ['new-jazz', item(['jazz'], { brand: 'acme' })],
      ].map(([id, it]) => ({ id: id as string, tokens: contentTokens(it as ReturnType<typeof item>) })),
    );
    const s = index.scores(['jazz-acme-1']);
    expect(s.has('jazz-acme-1')).toBe(false);
    // Same category and brand (an item nobody touched included) above one shared token.
    expect(s.get('jazz-acme-2')).toBeCloseTo(s.get('new-jazz')!, 12);
    expect(s.get('jazz-acme-2')!).toBeGreaterThan(s.get('jazz-zeta')!);
    expect(s.get('jazz-acme-2')!).toBeGreaterThan(s.get('rock-acme')!);
    expect(s.has('pop-1')).toBe(false);
    expect(s.has('rock-zeta')).toBe(false);
    // The second recent item counts half.
    const both = index.scores(['jazz-acme-1', 'pop-1']);
    expect(both.get('pop-2')).toBeCloseTo(index.scores(['pop-1']).get('pop-2')! / 2, 12);
    // Unknown recent items are ignored.
    expect(index.scores(['nope']).size).toBe(0);
    const top = topOf(s, 2, (id) => id !== 'new-jazz');
    expect(top.items).toEqual(['jazz-acme-2', expect.any(String)]);
    expect(top.scores[0]).toBeGreaterThanOrEqual(top.scores[1]);
    expect(top.items).not.toContain('new-jazz');
  });
});
