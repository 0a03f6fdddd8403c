/**
 * Data filters applied before a data set is split, as RecBole applies them: one row per (user, item)
 * pair (the latest), a minimum rating, and the iterative k-core. Pure functions on columnar arrays.
 */

/** Interactions over dense indices, one row per entry (pairs may repeat until `dedupeLatest`). */
export interface Interactions {
  nUsers: number;
  nItems: number;
  users: Int32Array;
  items: Int32Array;
  /** A rating, count or weight; NaN when the source had none. */
  values: Float32Array;
  /** Milliseconds since the epoch; NaN when unknown. */
  times: Float64Array;
}

/** The rows where `keep[r]` is non-zero, in their original order. */
export function selectRows(x: Interactions, keep: Uint8Array): Interactions {
  let n = 0;
  for (let r = 0; r < keep.length; r++) if (keep[r]) n++;
  const users = new Int32Array(n);
  const items = new Int32Array(n);
  const values = new Float32Array(n);
  const times = new Float64Array(n);
  let q = 0;
  for (let r = 0; r < keep.length; r++) {
    if (!keep[r]) continue;
    users[q] = x.users[r];
    items[q] = x.items[r];
    values[q] = x.values[r];
    times[q] = x.times[r];
    q++;
  }
  return { nUsers: x.nUsers, nItems: x.nItems, users, items, values, times };
}

/** `--min-rating R`: keeps rows whose value is ≥ R; rows without a value (NaN) are dropped. */
export function filterMinValue(x: Interactions, min: number): Interactions {
  const keep = new Uint8Array(x.users.length);
  for (let r = 0; r < keep.length; r++) keep[r] = x.values[r] >= min ? 1 : 0;
  return selectRows(x, keep);
}

/**
 * Keeps one row per (user, item) pair: the latest by time; rows without a time, or with equal times,
 * count as later when they come later in the file (files are usually appended in time order).
 * A re-rating thus replaces the earlier rating, like RecBole's `rm_dup_inter: last`.
 */
export function dedupeLatest(x: Interactions): Interactions {
  const n = x.users.length;
  // Group rows by user (counting sort), then per user find each item's winning row with a
  // per-item stamp array: O(rows + items) without hashing pairs.
  const start = new Int32Array(x.nUsers + 1);
  for (let r = 0; r < n; r++) start[x.users[r] + 1]++;
  for (let u = 0; u < x.nUsers; u++) start[u + 1] += start[u];
  const fill = start.slice(0, x.nUsers);
  const byUser = new Int32Array(n);
  for (let r = 0; r < n; r++) byUser[fill[x.users[r]]++] = r;
  const winner = new Int32Array(x.nItems);
  const stamp = new Int32Array(x.nItems).fill(-1);
  const keep = new Uint8Array(n);
  for (let u = 0; u < x.nUsers; u++) {
    for (let p = start[u]; p < start[u + 1]; p++) {
      const r = byUser[p];
      const i = x.items[r];
      if (stamp[i] !== u) {
        stamp[i] = u;
        winner[i] = r;
        continue;
      }
      const w = winner[i];
      // r comes after w in the file (rows were bucketed in order); it wins unless it is older.
      if (!(x.times[r] < x.times[w])) winner[i] = r;
    }
    for (let p = start[u]; p < start[u + 1]; p++) {
      const i = x.items[byUser[p]];
      if (stamp[i] === u) {
        keep[winner[i]] = 1;
        stamp[i] = -2 - u; // each item's winner is marked once per user
      }
    }
  }
  return selectRows(x, keep);
}

/**
 * `--kcore N`: repeatedly drops rows of users and items with fewer than N rows until every remaining
 * user and item has at least N (RecBole's `user_inter_num_interval = item_inter_num_interval = [N,inf)`).
 * Apply after `dedupeLatest` so a count is a number of distinct pairs.
 */
export function kcore(x: Interactions, minCount: number): Interactions {
  const n = x.users.length;
  if (minCount <= 1) return x;
  const alive = new Uint8Array(n).fill(1);
  const userCount = new Int32Array(x.nUsers);
  const itemCount = new Int32Array(x.nItems);
  for (let r = 0; r < n; r++) {
    userCount[x.users[r]]++;
    itemCount[x.items[r]]++;
  }
  // Each pass removes the rows of every currently deficient user and item; removals may create new
  // deficient ones, so repeat until a pass changes nothing.
  for (let changed = true; changed;) {
    changed = false;
    for (let r = 0; r < n; r++) {
      if (!alive[r]) continue;
      const u = x.users[r];
      const i = x.items[r];
      if (userCount[u] < minCount || itemCount[i] < minCount) {
        alive[r] = 0;
        userCount[u]--;
        itemCount[i]--;
        changed = true;
      }
    }
  }
  return selectRows(x, alive);
}

/** Interactions re-indexed densely over the users and items that still have rows. */
export interface Compacted {
  interactions: Interactions;
  /** New user index → index before compaction. */
  userMap: Int32Array;
  /** New item index → index before compaction. */
  itemMap: Int32Array;
}

/** Drops users and items without rows and renumbers the rest in order of their old index. */
export function compact(x: Interactions): Compacted {
  const n = x.users.length;
  const newUser = new Int32Array(x.nUsers).fill(-1);
  const newItem = new Int32Array(x.nItems).fill(-1);
  for (let r = 0; r < n; r++) {
    newUser[x.users[r]] = 0;
    newItem[x.items[r]] = 0;
  }
  const renumber = (map: Int32Array): Int32Array => {
    let next = 0;
    for (let i = 0; i < map.length; i++) if (map[i] === 0) map[i] = next++;
    const back = new Int32Array(next);
    for (let i = 0; i < map.length; i++) if (map[i] >= 0) back[map[i]] = i;
    return back;
  };
  const userMap = renumber(newUser);
  const itemMap = renumber(newItem);
  const users = new Int32Array(n);
  const items = new Int32Array(n);
  for (let r = 0; r < n; r++) {
    users[r] = newUser[x.users[r]];
    items[r] = newItem[x.items[r]];
  }
  return {
    interactions: {
      nUsers: userMap.length,
      nItems: itemMap.length,
      users,
      items,
      values: x.values,
      times: x.times,
    },
    userMap,
    itemMap,
  };
}
