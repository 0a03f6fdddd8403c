/**
 * Readers for hyper-parameters. Values may arrive as numbers, booleans or strings (from
 * `--param ease.lambda=500` or a config file), so numbers and booleans are also accepted in their
 * string form. A bad value throws CAIRN_VALIDATION naming the field as `algorithm.param`.
 */
import { CairnError } from '../errors/errors.ts';
import type { Params, ParamValue } from './types.ts';

function invalid(algo: string, name: string, message: string): CairnError {
  return CairnError.validation([{ field: `${algo}.${name}`, message }]);
}

/** Coerces a raw value to a finite number, or returns undefined when it is not one. */
export function asNumber(raw: ParamValue): number | undefined {
  const v = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** Coerces a raw value to a boolean (`true`/`false`, also as strings, or 1/0), else undefined. */
export function asBoolean(raw: ParamValue): boolean | undefined {
  if (typeof raw === 'boolean') return raw;
  if (raw === 'true' || raw === '1' || raw === 1) return true;
  if (raw === 'false' || raw === '0' || raw === 0) return false;
  return undefined;
}

/** A numeric parameter within `[min, max]` (integer when asked), or `fallback` when absent. */
export function readNumber(
  params: Params,
  algo: string,
  name: string,
  fallback: number,
  range: { min: number; max: number; integer?: boolean; exclusiveMin?: boolean },
): number {
  const raw = params[name];
  if (raw === undefined) return fallback;
  const v = asNumber(raw);
  const { min, max, integer = false, exclusiveMin = false } = range;
  if (
    v === undefined ||
    v > max ||
    (exclusiveMin ? v <= min : v < min) ||
    (integer && !Number.isInteger(v))
  ) {
    const lo = exclusiveMin ? `(${min}` : `[${min}`;
    throw invalid(algo, name, `must be ${integer ? 'an integer' : 'a number'} in ${lo}, ${max}]`);
  }
  return v;
}

/** A boolean parameter, or `fallback` when absent. */
export function readBoolean(params: Params, algo: string, name: string, fallback: boolean): boolean {
  const raw = params[name];
  if (raw === undefined) return fallback;
  const v = asBoolean(raw);
  if (v === undefined) throw invalid(algo, name, 'must be true or false');
  return v;
}

/** One of a fixed set of strings, or `fallback` when absent. */
export function readChoice<T extends string>(
  params: Params,
  algo: string,
  name: string,
  fallback: T,
  values: readonly T[],
): T {
  const raw = params[name];
  if (raw === undefined) return fallback;
  if (typeof raw !== 'string' || !(values as readonly string[]).includes(raw)) {
    throw invalid(algo, name, `must be one of ${values.map((v) => `"${v}"`).join(', ')}`);
  }
  return raw as T;
}
