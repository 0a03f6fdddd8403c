/**
 * Request validation with TypeBox's TypeCompiler instead of Fastify's default Ajv.
 *
 * Why: Fastify's Ajv instance coerces types in *every* part of the request (`{"events": "x"}` would
 * become `["x"]`, `{"user_id": 42}` would become `"42"`). JSON bodies must be taken as sent; only
 * querystrings, where everything is a string, need coercion. TypeCompiler builds a JIT checker per
 * schema (as fast as Ajv) and reports errors by JSON pointer, which become `details.fields` entries
 * (`k`, `requests[3].user_id`, …) of a CAIRN_VALIDATION error.
 */
import { Kind, type TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import type { FastifySchemaCompiler } from 'fastify';
import { CairnError, type FieldIssue } from '../errors/errors.ts';

/** At most this many issues are reported (and computed): bounded work on hostile input. */
const MAX_ISSUES = 20;

type HttpPart = 'body' | 'querystring' | 'params' | 'headers';

/** JSON pointer (`/events/3/user_id`) → field path (`events[3].user_id`); the root is named after the request part. */
export function pointerToField(pointer: string, part: string): string {
  if (pointer === '' || pointer === '/') return part;
  let out = '';
  for (const raw of pointer.slice(1).split('/')) {
    const token = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (/^\d+$/.test(token)) out += `[${token}]`;
    else out += out === '' ? token : `.${token}`;
  }
  return out;
}

/** Lists what is wrong with `value`, one issue per field (the first message wins). */
export function collectIssues(check: TypeCheck<TSchema>, value: unknown, part: string): FieldIssue[] {
  const issues: FieldIssue[] = [];
  const seen = new Set<string>();
  for (const error of check.Errors(value)) {
    const field = pointerToField(error.path, part);
    if (seen.has(field)) continue;
    seen.add(field);
    issues.push({ field, message: error.message });
    if (issues.length >= MAX_ISSUES) break;
  }
  if (issues.length === 0) issues.push({ field: part, message: 'invalid value' });
  return issues;
}

type Coercer = (query: Record<string, unknown>) => void;

/**
 * Querystring coercion, driven by the (flat) object schema: numeric and boolean strings become numbers
 * and booleans, a single value for an array property becomes a one-element array, and defaults fill
 * missing properties. Values that cannot be coerced are left as they are so the check reports them.
 * Works in place on the parsed querystring (a fresh object per request, as Ajv's coercion does): this
 * runs on the recommendation hot path.
 */
function buildQueryCoercer(schema: TSchema): Coercer {
  const properties = (schema as { properties?: Record<string, TSchema> }).properties ?? {};
  const plan = Object.entries(properties).map(([name, prop]) => ({
    name,
    type: prop.type as string | undefined,
    hasDefault: Object.hasOwn(prop, 'default'),
    default: prop.default as unknown,
  }));
  return (query) => {
    for (const p of plan) {
      const v = query[p.name];
      if (v === undefined) {
        if (p.hasDefault) query[p.name] = p.default;
        continue;
      }
      if (typeof v !== 'string') continue;
      if (p.type === 'integer' || p.type === 'number') {
        const n = Number(v);
        if (v.trim() !== '' && Number.isFinite(n)) query[p.name] = n;
      } else if (p.type === 'boolean') {
        if (v === 'true' || v === '1') query[p.name] = true;
        else if (v === 'false' || v === '0') query[p.name] = false;
      } else if (p.type === 'array') {
        query[p.name] = [v];
      }
    }
  };
}

/**
 * Fastify validator compiler: every route schema must be a TypeBox schema. A failing check yields a
 * CAIRN_VALIDATION CairnError (Fastify passes it to the error handler unchanged).
 */
export const typeboxValidatorCompiler: FastifySchemaCompiler<TSchema> = ({
  schema,
  method,
  url,
  httpPart,
}) => {
  if (!(Kind in schema)) {
    throw new Error(`${method} ${url}: ${httpPart} schema is not a TypeBox schema`);
  }
  const check = TypeCompiler.Compile(schema);
  const part = (httpPart ?? 'body') as HttpPart;

  if (part === 'querystring') {
    const coerce = buildQueryCoercer(schema);
    return (data: unknown) => {
      const query = (data ?? {}) as Record<string, unknown>;
      coerce(query);
      return validate(check, query, part);
    };
  }
  return (data: unknown) => validate(check, data, part);
};

/**
 * The check's verdict as Fastify wants it. A value nested deeper than the checker can recurse (TypeBox
 * hashes array items for `uniqueItems`, recursively) is the client's mistake, not a server error.
 */
function validate(
  check: TypeCheck<TSchema>,
  value: unknown,
  part: string,
): { value: unknown } | { error: CairnError } {
  try {
    if (check.Check(value)) return { value };
    return { error: CairnError.validation(collectIssues(check, value, part)) };
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    return { error: CairnError.validation([{ field: part, message: 'nested too deeply' }]) };
  }
}
