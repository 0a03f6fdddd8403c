/**
 * The request context every service call carries: who asks (principal and scopes), for which tenant,
 * under which request id (the same id in the `x-request-id` header, the body's `request_id` and the
 * logs), and which experiment arm the caller is in. The HTTP layer fills it per request, the CLI once
 * per command, background jobs with the `system` principal.
 */
import { randomUUID } from 'node:crypto';

/** What a principal may do. `admin` implies the others. */
export type Scope = 'read' | 'ingest' | 'admin';

export const ALL_SCOPES: readonly Scope[] = ['read', 'ingest', 'admin'];

export interface Principal {
  /** Stable id: an API key's id, `anonymous` (no auth configured), `cli` or `system`. */
  id: string;
  kind: 'anonymous' | 'key' | 'cli' | 'system';
  scopes: readonly Scope[];
}

export interface ExperimentAssignment {
  experiment: string;
  variant: string;
}

export interface RequestContext {
  readonly requestId: string;
  readonly principal: Principal;
  /** Tenant the call acts on; `default` until tenants are configured. */
  readonly tenant: string;
  readonly experiment: ExperimentAssignment | null;
  /** Epoch ms after which the caller no longer waits for an answer (null: no deadline). */
  readonly deadline: number | null;
}

export const DEFAULT_TENANT = 'default';

export function createContext(fields: Partial<RequestContext> & { principal: Principal }): RequestContext {
  return Object.freeze({
    requestId: fields.requestId ?? randomUUID(),
    principal: fields.principal,
    tenant: fields.tenant ?? DEFAULT_TENANT,
    experiment: fields.experiment ?? null,
    deadline: fields.deadline ?? null,
  });
}

/** Context of work Cairn starts itself (jobs, consumers, demo seeding). */
export function systemContext(requestId?: string): RequestContext {
  return createContext({ requestId, principal: { id: 'system', kind: 'system', scopes: ALL_SCOPES } });
}

/** Context of a `cairn` command run by an operator on the machine. */
export function cliContext(requestId?: string): RequestContext {
  return createContext({ requestId, principal: { id: 'cli', kind: 'cli', scopes: ALL_SCOPES } });
}

export function hasScope(ctx: RequestContext, scope: Scope): boolean {
  return ctx.principal.scopes.includes('admin') || ctx.principal.scopes.includes(scope);
}
