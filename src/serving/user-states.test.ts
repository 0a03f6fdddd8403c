import { describe, expect, it } from 'vitest';
import type { StoredEvent } from '../domain/types.ts';
import { buildUserProfile } from '../features/interactions.ts';
import { UserStates, type UserState } from './user-states.ts';

const event = (userId: string, n: number): StoredEvent => ({
  seq: n,
  eventId: `e${n}`,
  userId,
  itemId: `i${n}`,
  type: 'view',
  value: null,
  timestamp: n,
  context: null,
});

/** A state of `events` events (each entry costs its events plus one). */
function state(version: string, events: number): UserState {
  const history = Array.from({ length: events }, (_, n) => event('u', n + 1));
  return { version, history, profile: buildUserProfile({ view: { weight: 1 } }, history), models: new Map() };
}

describe('UserStates', () => {
  it('finds a state only under the cache version it was stored with', () => {
    const states = new UserStates({ maxEvents: 100, maxAgeMs: 60_000 });
    const s = state('1.1', 3);
    expect(states.set('u1', s)).toBe(s);
    expect(states.get('u1', '1.1')).toBe(s);
    expect(states.get('u1', '1.2')).toBeNull();
    // A newer version dropped it: not found under the old one either.
    expect(states.get('u1', '1.1')).toBeNull();
    expect(states.size).toBe(0);
  });

  it('holds at most maxEvents events, the least recently used out first', () => {
    const states = new UserStates({ maxEvents: 12, maxAgeMs: 60_000 });
    states.set('a', state('v', 3)); // 4
    states.set('b', state('v', 3)); // 8
    expect(states.get('a', 'v')).not.toBeNull(); // a used after b
    states.set('c', state('v', 3)); // 12: fits
    expect(states.size).toBe(3);
    states.set('d', state('v', 1)); // 14 > 12: b (least recently used) goes
    expect(states.get('b', 'v')).toBeNull();
    expect(states.get('a', 'v')).not.toBeNull();
    expect(states.get('c', 'v')).not.toBeNull();
    expect(states.get('d', 'v')).not.toBeNull();
    // Storing again replaces, it does not count twice.
    states.set('d', state('w', 1));
    expect(states.size).toBe(3);
    // A state larger than the whole budget is not kept; 0 keeps nothing.
    expect(states.set('e', state('v', 12))).toBeNull();
    expect(new UserStates({ maxEvents: 0, maxAgeMs: 60_000 }).set('u', state('v', 0))).toBeNull();
  });

  it('forgets a state one lifetime after it was last stored, on use, on store and on sweep', () => {
    let now = 0;
    const states = new UserStates({ maxEvents: 100, maxAgeMs: 1000, now: () => now });
    states.set('a', state('v', 1));
    states.set('b', state('v', 1));
    now = 900;
    states.set('b', state('v', 1)); // renewed
    now = 1500;
    expect(states.get('a', 'v')).toBeNull();
    expect(states.get('b', 'v')).not.toBeNull();
    states.set('c', state('v', 1));
    now = 2000;
    states.sweep();
    expect(states.size).toBe(1); // b is past its lifetime, c is not
    expect(states.get('c', 'v')).not.toBeNull();
  });

  it('keeps a memo per model version, at most two, the oldest replaced', () => {
    const s = state('v', 2);
    const m1 = UserStates.memo(s, 'm1');
    m1.vector = new Float64Array([1, 2]);
    expect(UserStates.memo(s, 'm1')).toBe(m1);
    const m2 = UserStates.memo(s, 'm2');
    expect(m2).not.toBe(m1);
    expect(m2.vector).toBeUndefined();
    UserStates.memo(s, 'm3');
    expect([...s.models.keys()]).toEqual(['m2', 'm3']);
  });
});
