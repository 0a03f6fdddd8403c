/**
 * A training reads its events before it registers its model; a user erased in between is in the model
 * although the erase already rewrote every artifact it found. After registering (and before promoting),
 * the pipeline looks in the audit log for erasures since it began reading, recognizes their users among
 * its own by their pseudonym (the audit log never holds an id), and erases them from its new version.
 * Together with the erase's own second pass over versions registered during its first (security/
 * erasure.ts), no ordering of the two leaves an erased user in a stored model.
 */
import type { ModelRegistry } from '../registry/registry.ts';
import type { AuditStore } from '../storage/ports.ts';

export interface ErasureRaceDeps {
  audit: Pick<AuditStore, 'list'>;
  registry: Pick<ModelRegistry, 'forgetUsers'>;
  pseudonymize: (id: string) => string;
}

/** Audit records read per check: far more erasures than can happen during one training. */
const AUDIT_WINDOW = 10_000;

/**
 * Erases from the versions registered since `since` the training users erased since then. Returns the
 * users dropped (none in the common case: one audit read, no hashing).
 */
export async function forgetErasedSince(
  deps: ErasureRaceDeps,
  since: number,
  trainingUsers: readonly string[],
): Promise<string[]> {
  const recent = await deps.audit.list({ action: 'user_erased', limit: AUDIT_WINDOW });
  const subjects = new Set(recent.filter((r) => r.at >= since).map((r) => r.subject));
  if (subjects.size === 0) return [];
  const erased = trainingUsers.filter((id) => subjects.has(deps.pseudonymize(id)));
  if (erased.length > 0) await deps.registry.forgetUsers(erased, { createdSince: since });
  return erased;
}
