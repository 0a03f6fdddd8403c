import { describe, expect, it } from 'vitest';
import type { Item } from '../domain/types.ts';
import { OfferBook } from './book.ts';

const item = (id: string, attributes: Record<string, unknown>, available = true): Item => ({
  id,
  categories: ['c'],
  attributes,
  available,
  createdAt: 0,
  updatedAt: 0,
});

describe('OfferBook', () => {
  it('holds the items with a valid offer, follows changes, and skips invalid stored offers', () => {
    const warnings: unknown[] = [];
    const book = new OfferBook({ warn: (o: unknown) => warnings.push(o) });
    const pages = [
      [item('b', { offer: { value: 2 } }), item('a', { offer: { value: 1 }, title: 'A' })],
      [item('c', { title: 'plain' })],
    ];
    for (const page of pages) book.upsert(page);
    expect(book.all().map((e) => e.itemId)).toEqual(['a', 'b']);
    expect(book.get('a')).toMatchObject({
      title: 'A',
      categories: ['c'],
      available: true,
      offer: { value: 1, lever: 1 },
    });

    // An offer withdrawn (attribute gone), one made unavailable, one stored invalid before validation existed.
    book.upsert([
      item('a', { title: 'A' }),
      item('b', { offer: { value: 2 } }, false),
      item('c', { offer: { value: -5 } }),
    ]);
    expect(book.all().map((e) => e.itemId)).toEqual(['b']);
    expect(book.get('b')!.available).toBe(false);
    expect(book.has('c')).toBe(false);
    expect(warnings).toEqual([expect.objectContaining({ item_id: 'c', field: 'attributes.offer.value' })]);
  });
});
