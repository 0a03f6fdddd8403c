/**
 * Access control contracts: API keys with scopes bound to a tenant, how a request's credentials become
 * its principal, and which scope each route needs. Implemented in src/security; the HTTP layer only
 * calls `Authenticator.authenticate` and reads a route's required scope.
 */
import type { Principal, RequestContext, Scope } from '../domain/context.ts';
import type { ApiKeyRecord } from '../domain/types.ts';

/** A key as shown to operators: the stored record without its secret's hash. */
export type ApiKeyInfo = Omit<ApiKeyRecord, 'secretHash'>;

export interface CreateKeyRequest {
  scopes: Scope[];
  /** Defaults to the caller's tenant. */
  tenant?: string;
  name?: string;
}

/** The one time a secret exists in clear: the token to hand to the client. */
export interface CreatedKey {
  key: ApiKeyInfo;
  /** `Authorization: Bearer <token>`; shown once, stored only as a hash. */
  token: string;
}

/** Key management (`cairn keys …`, `/v1/keys`). Admin only; an admin manages its own tenant's keys. */
export interface KeyService {
  create(ctx: RequestContext, request: CreateKeyRequest): Promise<CreatedKey>;
  list(ctx: RequestContext): Promise<ApiKeyInfo[]>;
  revoke(ctx: RequestContext, id: string): Promise<ApiKeyInfo>;
}

/** Who a request is, from its `Authorization` header. */
export interface Authenticated {
  principal: Principal;
  tenant: string;
}

export interface Authenticator {
  /**
   * Resolves `Bearer <token>` to its principal and tenant; null for a missing, malformed, unknown or
   * revoked token (the caller answers 401 without saying which).
   */
  authenticate(authorization: string | undefined): Promise<Authenticated | null>;
}

/** Scope a route needs, declared in each route's options as `config: { scope }`. */
export interface RouteSecurity {
  /** `public`: no key needed even with auth enabled (only /health/*). */
  scope: Scope | 'public';
}

export function keyInfo(record: ApiKeyRecord): ApiKeyInfo {
  const { secretHash: _hash, ...info } = record;
  return { ...info, scopes: [...record.scopes] };
}
