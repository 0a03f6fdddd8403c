/**
 * TypeBox schemas and the wire mapping of the API-key endpoints (`/v1/keys`), shared with
 * `cairn keys list --json` so both print the same shape. Never carries a key's hash; the token only in
 * the answer that creates it.
 */
import { Type, type Static } from '@sinclair/typebox';
import { ALL_SCOPES } from '../domain/context.ts';
import type { ApiKeyInfo, CreatedKey } from '../security/contracts.ts';
import { MAX_KEY_NAME } from '../security/keys.ts';
import { IsoTime, Nullable, StringEnum } from './schemas.ts';
import { isoTime } from './wire.ts';

export const CreateKeyBody = Type.Object(
  {
    scopes: Type.Array(Type.Union(ALL_SCOPES.map((s) => Type.Literal(s))), {
      minItems: 1,
      uniqueItems: true,
      description: '`read`, `ingest`, `admin` (admin implies the others)',
    }),
    tenant: Type.Optional(
      Type.String({ minLength: 1, maxLength: 64, description: 'Tenant of the key (default: the caller’s)' }),
    ),
    name: Type.Optional(
      Type.String({ maxLength: MAX_KEY_NAME, description: 'Label for operators, e.g. `checkout-service`' }),
    ),
  },
  { additionalProperties: false },
);
export type CreateKeyBodyWire = Static<typeof CreateKeyBody>;

const keyProperties = {
  key_id: Type.String({ description: 'Public id (`ck_…`), the part of the token shown in lists and logs' }),
  tenant: Type.String(),
  scopes: Type.Array(StringEnum(ALL_SCOPES)),
  name: Type.String(),
  created_at: IsoTime,
  created_by: Type.String({ description: 'Principal that created it (`cli` or an admin key id)' }),
  revoked_at: Nullable(IsoTime),
  revoked_by: Nullable(Type.String()),
};

export const KeyResponse = Type.Object(keyProperties);
export type KeyWire = Static<typeof KeyResponse>;

export const CreatedKeyResponse = Type.Object({
  ...keyProperties,
  token: Type.String({
    description: 'Send as `Authorization: Bearer <token>`. Shown only here: Cairn keeps just its hash',
  }),
});
export type CreatedKeyWire = Static<typeof CreatedKeyResponse>;

export const KeysResponse = Type.Object({ keys: Type.Array(KeyResponse) });
export type KeysWire = Static<typeof KeysResponse>;

export function keyToWire(key: ApiKeyInfo): KeyWire {
  return {
    key_id: key.id,
    tenant: key.tenant,
    scopes: [...key.scopes],
    name: key.name,
    created_at: isoTime(key.createdAt),
    created_by: key.createdBy,
    revoked_at: key.revokedAt === null ? null : isoTime(key.revokedAt),
    revoked_by: key.revokedBy,
  };
}

export function createdKeyToWire(created: CreatedKey): CreatedKeyWire {
  return { ...keyToWire(created.key), token: created.token };
}
