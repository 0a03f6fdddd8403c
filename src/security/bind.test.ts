import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config/load.ts';
import { checkBind, isLoopbackHost } from './bind.ts';

const config = (host: string, auth: { enabled?: boolean; allowInsecureBind?: boolean } = {}) =>
  loadConfig({ env: {}, overrides: { server: { host }, auth } });

describe('isLoopbackHost', () => {
  it('accepts 127.0.0.0/8, ::1 (bracketed, expanded, IPv4-mapped) and localhost', () => {
    for (const host of [
      '127.0.0.1',
      '127.1.2.3',
      '127.255.255.255',
      '::1',
      '[::1]',
      '0:0:0:0:0:0:0:1',
      '::ffff:127.0.0.1',
      'localhost',
      'LOCALHOST',
    ]) {
      expect([host, isLoopbackHost(host)]).toEqual([host, true]);
    }
  });

  it('refuses every other address and name', () => {
    for (const host of [
      '0.0.0.0',
      '::',
      '',
      '128.0.0.1',
      '126.255.255.255',
      '10.0.0.1',
      '192.168.1.10',
      '::2',
      '::ffff:10.0.0.1',
      'localhost.evil.example',
      'example.com',
      '127.0.0.1.nip.io',
    ]) {
      expect([host, isLoopbackHost(host)]).toEqual([host, false]);
    }
  });
});

describe('checkBind', () => {
  it('refuses a non-loopback bind without auth, naming server.host and how to fix it', () => {
    let caught: unknown;
    try {
      checkBind(config('0.0.0.0'));
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({
      code: 'CAIRN_CONFIG_INVALID',
      details: { fields: [{ field: 'server.host' }] },
    });
    const message = (caught as Error).message;
    expect(message).toContain('auth.enabled');
    expect(message).toContain('auth.allowInsecureBind');
  });

  it('allows loopback always, and any address with auth enabled or the explicit override', () => {
    expect(() => checkBind(config('127.0.0.1'))).not.toThrow();
    expect(() => checkBind(config('::1'))).not.toThrow();
    expect(() => checkBind(config('0.0.0.0', { enabled: true }))).not.toThrow();
    expect(() => checkBind(config('0.0.0.0', { allowInsecureBind: true }))).not.toThrow();
  });
});
