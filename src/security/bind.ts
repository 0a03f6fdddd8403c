/**
 * Refuses to listen on a network address while anyone who reaches it could read and change every
 * tenant's data: binding beyond loopback needs API keys (`auth.enabled`), or an explicit override for
 * deployments that authenticate in front of Cairn (`auth.allowInsecureBind`).
 */
import { BlockList, isIP } from 'node:net';
import type { Config } from '../config/load.ts';
import { CairnError } from '../errors/errors.ts';

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** Whether `host` only ever reaches this machine: 127.0.0.0/8, ::1 (also IPv4-mapped) or `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.trim().replace(/^\[(.*)\]$/, '$1');
  if (bare.toLowerCase() === 'localhost') return true;
  const family = isIP(bare);
  // BlockList matches IPv4-mapped IPv6 addresses (::ffff:127.0.0.1) against the IPv4 subnet.
  return family !== 0 && LOOPBACK.check(bare, family === 4 ? 'ipv4' : 'ipv6');
}

/** Throws CAIRN_CONFIG_INVALID naming `server.host` for a non-loopback bind without auth. */
export function checkBind(config: Readonly<Pick<Config, 'server' | 'auth'>>): void {
  const host = config.server.host;
  if (isLoopbackHost(host) || config.auth.enabled || config.auth.allowInsecureBind) return;
  const message =
    `server.host ${JSON.stringify(host)} is not a loopback address and API keys are off, so anyone who ` +
    'can reach it could read and change all data. Enable keys (auth.enabled / CAIRN_AUTH_ENABLED=true, ' +
    'then `cairn keys create --scopes admin`), listen on 127.0.0.1, or, when a proxy in front of Cairn ' +
    'authenticates every request, set auth.allowInsecureBind (CAIRN_AUTH_ALLOW_INSECURE_BIND=true).';
  throw new CairnError('CAIRN_CONFIG_INVALID', message, {
    fields: [{ field: 'server.host', message: 'non-loopback address needs auth.enabled' }],
  });
}
