/**
 * Pseudonyms: a keyed hash that stands for a user id wherever an id must not appear in clear (logs,
 * audit records). The same id always maps to the same pseudonym under one key, so log lines about one
 * user can still be correlated, but without the key nobody can tell whose they are, nor test a guessed
 * id against them (which a plain hash would allow).
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { SettingsStore } from '../storage/ports.ts';

/** Hex characters kept: 64 bits, plenty to tell users apart in logs, too short to be a digest anyone verifies. */
export const PSEUDONYM_LENGTH = 16;

/** The part of the configuration the key comes from. */
type PrivacyConfig = { readonly privacy: { readonly logHashKey: string } };

/** Settings key of the generated log-hash key (when `privacy.logHashKey` is not configured). */
export const LOG_HASH_KEY_SETTING = 'privacy.log_hash_key';

/** HMAC-SHA256 of the id under `key`, hex, truncated to 16 characters. */
export function createPseudonymizer(key: string): (id: string) => string {
  if (key === '') throw new Error('a pseudonymizer needs a non-empty key');
  return (id) => createHmac('sha256', key).update(id, 'utf8').digest('hex').slice(0, PSEUDONYM_LENGTH);
}

/**
 * The key of the log hash: `privacy.logHashKey` when configured, else a random key generated once and
 * kept in the store's settings. The first process to start wins (`putIfAbsent`), so every process of
 * a deployment, and every restart, hashes an id the same way.
 */
export async function logHashKey(
  config: PrivacyConfig,
  settings: Pick<SettingsStore, 'putIfAbsent'>,
): Promise<string> {
  const configured = config.privacy.logHashKey;
  if (configured !== '') return configured;
  return settings.putIfAbsent(LOG_HASH_KEY_SETTING, randomBytes(32).toString('base64url'));
}

/**
 * The deployment's pseudonymizer. Build it once per process from the default tenant's settings, so the
 * request log, the audit records and every tenant hash an id the same way.
 */
export async function pseudonymizerFor(
  config: PrivacyConfig,
  settings: Pick<SettingsStore, 'putIfAbsent'>,
): Promise<(id: string) => string> {
  return createPseudonymizer(await logHashKey(config, settings));
}
