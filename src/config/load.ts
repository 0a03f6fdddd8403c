/**
 * Loads the configuration once: schema defaults → optional JSON file → `CAIRN_*` environment →
 * explicit overrides (CLI flags). Every invalid key is reported in one error; the result is frozen.
 */
import { readFileSync } from 'node:fs';
import { Value } from '@sinclair/typebox/value';
import type { TSchema } from '@sinclair/typebox';
import { CairnError, type FieldIssue } from '../errors/errors.ts';
import { ConfigSchema, type Config } from './schema.ts';

export type { Config } from './schema.ts';

export interface LoadConfigOptions {
  /** Path of a JSON config file; defaults to `CAIRN_CONFIG` when set. */
  file?: string;
  env?: Record<string, string | undefined>;
  /** Deep-merged last (e.g. from CLI flags). */
  overrides?: DeepPartial<Config>;
}

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };

export function loadConfig(options: LoadConfigOptions = {}): Readonly<Config> {
  const env = options.env ?? process.env;
  const issues: FieldIssue[] = [];
  let merged: Record<string, unknown> = {};

  const file = options.file ?? env.CAIRN_CONFIG;
  if (file) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
      if (!isPlainObject(parsed))
        issues.push({ field: file, message: 'config file must hold a JSON object' });
      else merged = deepMerge(merged, parsed);
    } catch (e) {
      issues.push({ field: file, message: `cannot read config file: ${(e as Error).message}` });
    }
  }

  merged = deepMerge(merged, envOverrides(env, issues));
  if (options.overrides) merged = deepMerge(merged, options.overrides);

  const withDefaults = Value.Default(ConfigSchema, Value.Clone(merged)) as Record<string, unknown>;
  for (const err of Value.Errors(ConfigSchema, withDefaults)) {
    issues.push({
      field: err.path.replace(/^\//, '').replaceAll('/', '.') || '(root)',
      message: err.message,
    });
  }
  if (issues.length > 0) {
    throw new CairnError(
      'CAIRN_CONFIG_INVALID',
      `invalid configuration:\n${issues.map((i) => `  ${i.field}: ${i.message}`).join('\n')}`,
      { fields: issues },
    );
  }
  return deepFreeze(withDefaults as Config);
}

/** Maps `CAIRN_A_B_C` onto the schema path whose upper-snake-case spelling it is. */
function envOverrides(
  env: Record<string, string | undefined>,
  issues: FieldIssue[],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('CAIRN_') || raw === undefined || name === 'CAIRN_CONFIG') continue;
    const tokens = name.slice('CAIRN_'.length).split('_');
    const found = resolvePath(ConfigSchema, tokens);
    if (!found) continue; // not a config key (other CAIRN_* variables are allowed)
    let value: unknown = raw;
    const type = (found.schema as { type?: string }).type;
    if (type === 'object' || type === 'array') {
      try {
        value = JSON.parse(raw);
      } catch {
        issues.push({ field: name, message: 'must be JSON' });
        continue;
      }
    } else if (type === 'integer' || type === 'number') {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n)) {
        issues.push({ field: name, message: `must be a number, got "${raw}"` });
        continue;
      }
      value = n;
    } else if (type === 'boolean') {
      if (!['true', 'false', '1', '0'].includes(raw)) {
        issues.push({ field: name, message: `must be true or false, got "${raw}"` });
        continue;
      }
      value = raw === 'true' || raw === '1';
    }
    let cursor = out;
    found.path.forEach((key, i) => {
      if (i === found.path.length - 1) cursor[key] = value;
      else cursor = (cursor[key] ??= {}) as Record<string, unknown>;
    });
  }
  return out;
}

function resolvePath(schema: TSchema, tokens: string[]): { path: string[]; schema: TSchema } | null {
  if (tokens.length === 0) return { path: [], schema };
  const props = (schema as { properties?: Record<string, TSchema> }).properties;
  if (!props) return null;
  for (const [key, sub] of Object.entries(props)) {
    const snake = key
      .replace(/[A-Z]/g, (c) => `_${c}`)
      .toUpperCase()
      .split('_');
    if (snake.length <= tokens.length && snake.every((t, i) => t === tokens[i])) {
      const rest = resolvePath(sub, tokens.slice(snake.length));
      if (rest) return { path: [key, ...rest.path], schema: rest.schema };
    }
  }
  return null;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    if (v === undefined) continue;
    out[k] = isPlainObject(v) && isPlainObject(out[k]) ? deepMerge(out[k], v) : v;
  }
  return out;
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
