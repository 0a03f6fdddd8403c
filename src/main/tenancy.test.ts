import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load.ts';
import { createContext, type RequestContext } from '../domain/context.ts';
import { CairnError } from '../errors/errors.ts';
import { dispatchByTenant, tenantConfig, tenantNames } from './tenancy.ts';

const anyone = { id: 'k', kind: 'key' as const, scopes: ['read' as const] };
const ctxFor = (tenant: string): RequestContext => createContext({ principal: anyone, tenant });

describe('tenantConfig', () => {
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir: '/srv/cairn',
      tenants: ['acme'],
      store: { schema: 'shop' },
      redis: { keyPrefix: 'c:' },
      nats: { streamPrefix: 'CAIRN' },
    },
  });

  it('keeps the default tenant exactly as configured', () => {
    expect(tenantConfig(config, 'default')).toBe(config);
    expect(tenantNames(config)).toEqual(['default', 'acme']);
  });

  it('moves every backend of another tenant into its own namespace', () => {
    const acme = tenantConfig(config, 'acme');
    expect(acme.dataDir).toBe('/srv/cairn/tenants/acme');
    expect(acme.store.schema).toBe('shop_t_acme');
    expect(acme.redis.keyPrefix).toBe('c:t:acme:');
    expect(acme.nats.streamPrefix).toBe('CAIRN_T_ACME');
    expect(acme.tenants).toEqual([]);
    // Everything else is the deployment's.
    expect(acme.training).toBe(config.training);
  });

  it('moves explicit SQLite and artifact locations too, but not an in-memory store', () => {
    const explicit = loadConfig({
      env: {},
      overrides: {
        tenants: ['acme'],
        store: { url: 'sqlite:///var/db/cairn.db' },
        artifacts: { url: 'file:///var/art/' },
      },
    });
    const acme = tenantConfig(explicit, 'acme');
    expect(acme.store.url).toBe('sqlite:///var/db/tenants/acme/cairn.db');
    expect(acme.artifacts.url).toBe('file:///var/art/tenants/acme');
    const memory = loadConfig({
      env: {},
      overrides: { tenants: ['acme'], store: { url: 'sqlite://:memory:' } },
    });
    expect(tenantConfig(memory, 'acme').store.url).toBe('sqlite://:memory:');
  });

  it('refuses a tenant the deployment does not serve', () => {
    expect(() => tenantConfig(config, 'globex')).toThrow(CairnError);
  });

  it('rejects tenant names that could escape their namespace', () => {
    for (const bad of ['../etc', 'Acme', 'a b', 'a/b', '']) {
      expect(() => loadConfig({ env: {}, overrides: { tenants: [bad] } }), bad).toThrow(/tenants/);
    }
  });
});

describe('dispatchByTenant', () => {
  interface Echo {
    whoami(ctx: RequestContext, suffix: string): Promise<string>;
  }
  const echo = (name: string): Echo => ({ whoami: (_ctx, suffix) => Promise.resolve(name + suffix) });

  it('calls the instance of the caller’s tenant with the same arguments', async () => {
    const service = dispatchByTenant(
      new Map([
        ['default', echo('d')],
        ['acme', echo('a')],
      ]),
    );
    expect(await service.whoami(ctxFor('default'), '!')).toBe('d!');
    expect(await service.whoami(ctxFor('acme'), '?')).toBe('a?');
  });

  it('answers a tenant it does not serve with CAIRN_FORBIDDEN, never another tenant’s data', () => {
    const service = dispatchByTenant(
      new Map([
        ['default', echo('d')],
        ['acme', echo('a')],
      ]),
    );
    expect(() => service.whoami(ctxFor('globex'), '')).toThrow(
      expect.objectContaining({ code: 'CAIRN_FORBIDDEN' }),
    );
  });

  it('is the instance itself when only the default tenant exists', () => {
    const only = echo('d');
    expect(dispatchByTenant(new Map([['default', only]]))).toBe(only);
  });
});
