/**
 * Deterministic assignment of a unit (user or session id) to an experiment's variant: the same unit
 * always lands in the same variant of the same experiment, independently in each experiment (the
 * experiment id salts the hash), on every replica, without storing assignments.
 */
import { createHash } from 'node:crypto';
import type { Experiment, ExperimentVariant } from '../domain/types.ts';

/** A uniform number in [0, 1) from the unit id, salted by the experiment id. */
export function unitHash(experimentId: string, unitId: string): number {
  const digest = createHash('sha256').update(experimentId).update('\u0000').update(unitId).digest();
  // 48 bits are plenty for a uniform draw and stay exact in a double.
  return digest.readUIntBE(0, 6) / 2 ** 48;
}

/**
 * The variant `unitId` belongs to: the variants cut [0, 1) in order, each by its share of the total
 * weight. Null when every weight is zero.
 */
export function assignVariant(
  experiment: Pick<Experiment, 'id' | 'variants'>,
  unitId: string,
): ExperimentVariant | null {
  let total = 0;
  for (const v of experiment.variants) total += v.weight;
  if (!(total > 0)) return null;
  const x = unitHash(experiment.id, unitId) * total;
  let acc = 0;
  for (const v of experiment.variants) {
    acc += v.weight;
    if (x < acc && v.weight > 0) return v;
  }
  // Rounding at the top edge: the last variant with weight.
  for (let i = experiment.variants.length - 1; i >= 0; i--)
    if (experiment.variants[i].weight > 0) return experiment.variants[i];
  return null;
}
