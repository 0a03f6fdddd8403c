/**
 * `cairn keys create|list|revoke`: API keys from the command line, as the `cli` principal (which manages
 * every tenant's keys). Keys live in the store the configuration names (the default tenant's), whatever
 * tenant each is bound to. `--json` prints what GET /v1/keys answers.
 */
import type { Command } from 'commander';
import { keyToWire } from '../../api/key-schemas.ts';
import type { Scope } from '../../domain/context.ts';
import { openStore } from '../../main/adapters.ts';
import { tenantNames } from '../../main/tenancy.ts';
import type { ApiKeyInfo, KeyService } from '../../security/contracts.ts';
import { createKeyService } from '../../security/keys.ts';
import { addStoreOptions, configFrom, CTX, requireStore, type StoreOptions } from '../common.ts';

interface KeysOptions extends StoreOptions {
  scopes?: string;
  tenant?: string;
  name?: string;
  json?: boolean;
}

/** Opens the store (never creating one for `readOnly` commands) and the key service on it. */
async function withKeys<T>(
  opts: StoreOptions,
  readOnly: boolean,
  fn: (keys: KeyService) => Promise<T>,
): Promise<T> {
  const config = configFrom({ logLevel: 'warn', ...opts });
  if (readOnly) await requireStore(config);
  const store = await openStore(config);
  try {
    return await fn(createKeyService({ store, tenants: tenantNames(config) }));
  } finally {
    await store.close();
  }
}

const out = (text: string) => process.stdout.write(`${text}\n`);

/** `read, ingest` → ['read', 'ingest'] (the service validates the names). */
const parseScopes = (list: string): Scope[] =>
  list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '') as Scope[];

function line(k: ApiKeyInfo): string {
  return [
    k.id.padEnd(16),
    k.tenant.padEnd(12),
    k.scopes.join(',').padEnd(18),
    (k.revokedAt === null ? 'active' : `revoked ${new Date(k.revokedAt).toISOString()}`).padEnd(32),
    new Date(k.createdAt).toISOString(),
    k.name,
  ].join(' ');
}

export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('API keys: create, list, revoke');

  addStoreOptions(
    keys
      .command('create')
      .description('create an API key; prints its token (shown only once) alone on the last line')
      .requiredOption('--scopes <list>', 'comma-separated: read, ingest, admin (admin implies the others)')
      .option('--tenant <name>', 'tenant the key acts on (default: default)')
      .option('--name <label>', 'label for operators, e.g. checkout-service'),
  ).action((opts: KeysOptions) =>
    withKeys(opts, false, async (service) => {
      const { key, token } = await service.create(CTX, {
        scopes: parseScopes(opts.scopes ?? ''),
        tenant: opts.tenant,
        name: opts.name,
      });
      out(`created ${key.id} for tenant ${key.tenant} with scopes ${key.scopes.join(', ')}`);
      out(
        'the token below is shown only this once (Cairn keeps its hash); send it as Authorization: Bearer <token>',
      );
      out(token);
    }),
  );

  addStoreOptions(
    keys
      .command('list')
      .description('API keys, newest first, revoked ones included')
      .option('--json', 'JSON output'),
  ).action((opts: KeysOptions) =>
    withKeys(opts, true, async (service) => {
      const list = await service.list(CTX);
      if (opts.json) out(JSON.stringify({ keys: list.map(keyToWire) }, null, 2));
      else if (list.length === 0) out('no API keys yet: `cairn keys create --scopes read`');
      else out(list.map(line).join('\n'));
    }),
  );

  addStoreOptions(keys.command('revoke <id>').description('revoke an API key (again: no change)')).action(
    (id: string, opts: KeysOptions) =>
      withKeys(opts, true, async (service) => {
        out(line(await service.revoke(CTX, id)));
      }),
  );
}
