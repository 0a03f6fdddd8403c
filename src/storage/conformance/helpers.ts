/** Helpers the conformance suites (and adapter-specific tests beside them) share. */
import type { CairnEvent, JsonObject } from '../../domain/types.ts';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `cond` every 10 ms until it holds; fails after `timeoutMs` naming `what`. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** Resolves with `p`, or fails after `timeoutMs` naming `what` (a hung promise must fail, not time out the test). */
export async function within<T>(p: Promise<T>, what: string, timeoutMs = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** A view event of `userId` on `item-<eventId>` (log tests). */
export function logEvent(eventId: string, userId = 'u1', extra: Partial<CairnEvent> = {}): CairnEvent {
  return {
    eventId,
    userId,
    itemId: `item-${eventId}`,
    type: 'view',
    value: null,
    timestamp: 1_700_000_000_000,
    context: null,
    ...extra,
  };
}

/** JSON that stresses encoders: nesting, arrays, unicode (BMP, astral, RTL, combining), escapes, numbers. */
export const RICH_JSON: JsonObject = {
  title: 'Crème brûlée — 東京 🍮',
  rtl: 'שלום עולם',
  combining: 'e\u0301',
  escapes: 'quote " backslash \\ newline \n tab \t slash /',
  emoji: { '🔑 key': ['🍣', '𝄞', { deep: { deeper: [null, true, false] } }] },
  numbers: { int: 42, negative: -7, zero: 0, fraction: 0.1, third: 1 / 3, tiny: 1e-7, big: 9007199254740991 },
  empty: { object: {}, array: [], string: '' },
  list: [1, 'two', { three: 3 }, [4, [5]]],
};
