/**
 * Erasing users from fitted models. Every artifact keeps the ids of the users it was trained on
 * (`userIds`); factor models (ALS, BPR) also keep one row per user (`userFactors`). Forgetting a user
 * removes both: their id and their row. What remains (item factors, item-item weights, popularity) are
 * item-level aggregates over all users, which no longer name anyone; the next training drops the user's
 * contribution to those too.
 */
import type { ModelArtifact } from '../algorithms/types.ts';
import { CairnError } from '../errors/errors.ts';
import type { StoredModel } from './artifacts.ts';

/** Artifact arrays that hold one row per training user, in `userIds` order. */
export const USER_ROW_ARRAYS: readonly string[] = ['userFactors'];

type NumericArray = ModelArtifact['arrays'][string];

/** Width of one user's row in `array` (CAIRN_INTERNAL when the array is not whole rows). */
function rowWidth(name: string, array: NumericArray, users: number): number {
  const width = users === 0 ? 0 : array.length / users;
  if (!Number.isInteger(width)) {
    throw new CairnError(
      'CAIRN_INTERNAL',
      `artifact array ${name} has ${array.length} values, not a row per each of ${users} users`,
    );
  }
  return width;
}

/** The user-row arrays of an artifact with their row widths, for `users` training users. */
export function userRows(
  artifact: Pick<ModelArtifact, 'arrays'>,
  users: number,
): { name: string; array: NumericArray; width: number }[] {
  return USER_ROW_ARRAYS.filter((name) => artifact.arrays[name] !== undefined).map((name) => {
    const array = artifact.arrays[name];
    return { name, array, width: rowWidth(name, array, users) };
  });
}

/** `array` without the rows whose index is in `drop` (a fresh, compact array of the same type). */
function withoutRows(
  array: NumericArray,
  width: number,
  drop: ReadonlySet<number>,
  users: number,
): NumericArray {
  const Ctor = array.constructor as new (length: number) => NumericArray;
  const out = new Ctor((users - drop.size) * width);
  let at = 0;
  for (let u = 0; u < users; u++) {
    if (drop.has(u)) continue;
    out.set(array.subarray(u * width, (u + 1) * width), at);
    at += width;
  }
  return out;
}

/**
 * The model without the given users: their ids leave `userIds`, their rows every user-row array, and
 * `meta.users` counts the users left. Null when none of them is in the model (nothing to rewrite).
 * Remaining users keep their rows, in their order, so they score exactly as before.
 */
export function withoutUsers(model: StoredModel, erased: ReadonlySet<string>): StoredModel | null {
  const drop = new Set<number>();
  model.userIds.forEach((id, u) => {
    if (erased.has(id)) drop.add(u);
  });
  if (drop.size === 0) return null;
  const users = model.userIds.length;
  const arrays = { ...model.artifact.arrays };
  for (const { name, array, width } of userRows(model.artifact, users)) {
    arrays[name] = withoutRows(array, width, drop, users);
  }
  const meta = { ...model.artifact.meta };
  if (meta.users === users) meta.users = users - drop.size;
  return {
    ...model,
    artifact: { ...model.artifact, meta, arrays },
    userIds: model.userIds.filter((_, u) => !drop.has(u)),
  };
}
