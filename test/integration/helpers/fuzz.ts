/**
 * Pieces of the HTTP fuzz test (test/integration/fuzz.test.ts): a seeded PRNG, the operations of an
 * OpenAPI 3.0 document, a checker for the JSON-schema subset @fastify/swagger writes for responses, a
 * generator of schema-valid values, and a catalogue of hostile values and raw bodies.
 */

/** mulberry32: small, fast, and the same sequence for the same seed on every machine. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)];
  }
}

/* ------------------------------------------------------------------ OpenAPI */

/** The JSON-schema keywords the document uses (request and response schemas). */
export interface Schema {
  type?: string | string[];
  nullable?: boolean;
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  items?: Schema;
  enum?: unknown[];
  anyOf?: Schema[];
  oneOf?: Schema[];
  allOf?: Schema[];
  format?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number | boolean;
  exclusiveMaximum?: number | boolean;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  pattern?: string;
  default?: unknown;
}

export interface Parameter {
  in: 'path' | 'query' | 'header' | 'cookie';
  name: string;
  required: boolean;
  schema: Schema;
}

export interface Operation {
  method: string;
  /** OpenAPI path template, e.g. `/v1/items/{id}`. */
  path: string;
  operationId: string;
  parameters: Parameter[];
  /** The JSON request body, if the operation takes one. */
  body: { schema: Schema; required: boolean } | null;
  /** Declared responses by status (`200`, `4XX`): the JSON schema, or the content type when not JSON. */
  responses: Record<string, { schema: Schema | null; contentType: string | null }>;
}

interface OpenApiDoc {
  paths: Record<string, Record<string, Record<string, unknown>>>;
}

/** Every operation of the document. */
export function operationsOf(doc: unknown): Operation[] {
  const out: Operation[] = [];
  for (const [path, methods] of Object.entries((doc as OpenApiDoc).paths)) {
    for (const [method, raw] of Object.entries(methods)) {
      const op = raw as {
        operationId?: string;
        parameters?: Parameter[];
        requestBody?: { required?: boolean; content?: Record<string, { schema?: Schema }> };
        responses?: Record<string, { content?: Record<string, { schema?: Schema }> }>;
      };
      const responses: Operation['responses'] = {};
      for (const [status, r] of Object.entries(op.responses ?? {})) {
        const [contentType, content] = Object.entries(r.content ?? {})[0] ?? [null, null];
        responses[status] = {
          schema: contentType === 'application/json' ? (content?.schema ?? null) : null,
          contentType,
        };
      }
      const jsonBody = op.requestBody?.content?.['application/json']?.schema;
      out.push({
        method: method.toUpperCase(),
        path,
        operationId: op.operationId ?? `${method} ${path}`,
        parameters: op.parameters ?? [],
        body: jsonBody ? { schema: jsonBody, required: op.requestBody?.required !== false } : null,
        responses,
      });
    }
  }
  return out;
}

/** The declared response for `status`: the exact code, else its class (`4XX`), else `default`. */
export function declaredResponse(op: Operation, status: number): Operation['responses'][string] | null {
  return (
    op.responses[String(status)] ?? op.responses[`${String(status)[0]}XX`] ?? op.responses.default ?? null
  );
}

/* ------------------------------------------------------------------ checking */

const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const MAX_PROBLEMS = 10;

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

function hasType(schema: Schema, value: unknown): boolean {
  const declared = schema.type === undefined ? [] : ([] as string[]).concat(schema.type);
  if (declared.length === 0) return true;
  if (value === null && (schema.nullable === true || declared.includes('null'))) return true;
  const actual = typeOf(value);
  return declared.some((t) =>
    t === 'integer' ? Number.isInteger(value) : t === 'number' ? typeof value === 'number' : t === actual,
  );
}

/**
 * What is wrong with `value` under `schema` (empty: it conforms), at most a few problems, each with its
 * JSON path. Covers the keywords of `Schema`; `format` only for `date-time`.
 */
export function schemaProblems(schema: Schema, value: unknown, path = '$'): string[] {
  const problems: string[] = [];
  check(schema, value, path, problems);
  return problems;
}

function check(schema: Schema, value: unknown, path: string, problems: string[]): void {
  if (problems.length >= MAX_PROBLEMS) return;
  const fail = (message: string): void => {
    problems.push(`${path}: ${message} (got ${JSON.stringify(value)?.slice(0, 80)})`);
  };
  if (schema.anyOf || schema.oneOf) {
    const branches = (schema.anyOf ?? schema.oneOf)!;
    if (!branches.some((b) => schemaProblems(b, value, path).length === 0))
      fail('matches no branch of anyOf/oneOf');
    return;
  }
  for (const sub of schema.allOf ?? []) check(sub, value, path, problems);
  if (!hasType(schema, value)) return fail(`expected type ${JSON.stringify(schema.type)}`);
  if (value === null) return;
  if (schema.enum && !schema.enum.includes(value))
    return fail(`expected one of ${JSON.stringify(schema.enum)}`);
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) fail(`below minimum ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) fail(`above maximum ${schema.maximum}`);
  }
  if (typeof value === 'string') {
    if (schema.format === 'date-time' && !(ISO_DATE_TIME.test(value) && Number.isFinite(Date.parse(value))))
      fail('not an ISO-8601 date-time');
    if (schema.minLength !== undefined && value.length < schema.minLength) fail('too short');
    if (schema.maxLength !== undefined && value.length > schema.maxLength) fail('too long');
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) fail('too few items');
    if (schema.maxItems !== undefined && value.length > schema.maxItems) fail('too many items');
    if (schema.items) value.forEach((v, i) => check(schema.items!, v, `${path}[${i}]`, problems));
  }
  if (typeOf(value) === 'object') {
    const obj = value as Record<string, unknown>;
    for (const name of schema.required ?? []) if (!(name in obj)) fail(`missing required property ${name}`);
    for (const [name, v] of Object.entries(obj)) {
      const sub = schema.properties?.[name];
      if (sub) check(sub, v, `${path}.${name}`, problems);
      else if (schema.additionalProperties === false) fail(`unexpected property ${name}`);
      else if (typeof schema.additionalProperties === 'object')
        check(schema.additionalProperties, v, `${path}.${name}`, problems);
    }
  }
}

/* ------------------------------------------------------------------ generating */

/**
 * Values for a property or parameter by name (`user_id` → a known user, …), so that valid requests reach
 * past validation to the services. Returns undefined to fall back to the schema.
 */
export type Hint = (name: string, schema: Schema) => unknown;

/** A value that conforms to `schema` (best effort for `pattern`), guided by `hint` per property name. */
export function validValue(rng: Rng, schema: Schema, hint: Hint, name = '', depth = 0): unknown {
  const hinted = hint(name, schema);
  if (hinted !== undefined) return hinted;
  if (schema.enum) return rng.pick(schema.enum);
  const branches = schema.anyOf ?? schema.oneOf;
  if (branches) return validValue(rng, rng.pick(branches), hint, name, depth);
  const type = ([] as string[]).concat(schema.type ?? 'object').filter((t) => t !== 'null')[0] ?? 'string';
  switch (type) {
    case 'integer':
    case 'number': {
      const lo =
        schema.minimum ?? (typeof schema.exclusiveMinimum === 'number' ? schema.exclusiveMinimum + 1 : 0);
      const hi = Math.min(schema.maximum ?? lo + 100, lo + 1000);
      const n = rng.int(Math.ceil(lo), Math.floor(hi));
      return type === 'number' && rng.chance(0.3) ? Math.min(hi, n + rng.next()) : n;
    }
    case 'boolean':
      return rng.chance(0.5);
    case 'string': {
      if (schema.format === 'date-time') return new Date(Date.now() - rng.int(0, 86_400_000)).toISOString();
      const length = Math.max(schema.minLength ?? 1, Math.min(schema.maxLength ?? 12, rng.int(1, 12)));
      return Array.from({ length }, () => rng.pick(ALPHABET)).join('');
    }
    case 'array': {
      if (depth > 4) return [];
      const count = Math.min(schema.maxItems ?? 4, Math.max(schema.minItems ?? 0, rng.int(0, 4)));
      return Array.from({ length: count }, () => validValue(rng, schema.items ?? {}, hint, name, depth + 1));
    }
    default: {
      if (depth > 4) return {};
      const out: Record<string, unknown> = {};
      for (const [prop, sub] of Object.entries(schema.properties ?? {})) {
        if ((schema.required ?? []).includes(prop) || rng.chance(0.5))
          out[prop] = validValue(rng, sub, hint, prop, depth + 1);
      }
      return out;
    }
  }
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789-_'.split('');

/* ------------------------------------------------------------------ hostile input */

/** Strings that have broken services elsewhere: traversal, injection, encodings, control characters. */
export const HOSTILE_STRINGS: readonly string[] = [
  '',
  ' ',
  '../../../../etc/passwd',
  '..\\..\\..\\windows\\win.ini',
  '%2e%2e%2f%2e%2e%2fetc%2fpasswd',
  '/absolute/path',
  '.',
  '..',
  'models/../../escape.cairn',
  "'; DROP TABLE events; --",
  '" OR 1=1 --',
  '${process.exit()}',
  '{{7*7}}',
  '%s%s%s%n',
  '\u0000',
  'nul\u0000byte',
  '\u202eRTL override',
  '\ud800', // lone surrogate
  '\ufeffBOM',
  'ｆｕｌｌｗｉｄｔｈ',
  'e\u0301\u0301\u0301', // combining marks
  '🧨💥🔥',
  '漢字かなカナ한국어',
  '\n\r\t',
  'NaN',
  'Infinity',
  '-0',
  '1e308',
  'null',
  'true',
  '[]',
  '{}',
  '__proto__',
  'constructor',
  'x'.repeat(513),
  'y'.repeat(70_000),
];

/** Numbers at and past every boundary the API has. */
export const HOSTILE_NUMBERS: readonly number[] = [
  0,
  -0,
  -1,
  1.5,
  -1e308,
  1e308,
  Number.MAX_SAFE_INTEGER + 2,
  Number.MIN_SAFE_INTEGER - 2,
  2 ** 31,
  -(2 ** 31) - 1,
  5e-324,
  1e21,
];

/** Any JSON value a field should not hold. */
export function hostileValue(rng: Rng, depth = 0): unknown {
  switch (rng.int(0, 7)) {
    case 0:
      return rng.pick(HOSTILE_STRINGS);
    case 1:
      return rng.pick(HOSTILE_NUMBERS);
    case 2:
      return rng.pick([null, true, false]);
    case 3:
      return depth > 3 ? [] : Array.from({ length: rng.int(0, 3) }, () => hostileValue(rng, depth + 1));
    case 4:
      return depth > 3
        ? {}
        : { [rng.pick(HOSTILE_STRINGS).slice(0, 40) || 'k']: hostileValue(rng, depth + 1) };
    case 5:
      return nested(rng.int(20, 200));
    case 6:
      // Own properties named like the prototype chain (an object literal would set the prototype instead).
      return JSON.parse(
        '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}',
      ) as unknown;
    default:
      return Array.from({ length: rng.int(1001, 1100) }, (_, i) => `v${i}`);
  }
}

/** `[[[…]]]`, `depth` levels. */
export function nested(depth: number): unknown {
  let v: unknown = [];
  for (let i = 0; i < depth; i++) v = i % 2 === 0 ? [v] : { a: v };
  return v;
}

/** Raw bodies that are not the JSON a route expects, or not JSON at all. */
export function hostileRawBody(rng: Rng): string {
  const depth = rng.pick([1_000, 10_000, 100_000]);
  return rng.pick([
    '',
    ' ',
    '{',
    '{"a":',
    "{'single': 'quotes'}",
    '{"a":1,}',
    'undefined',
    'NaN',
    '1e309',
    '-',
    '"just a string"',
    '12345',
    'null',
    'true',
    '[]',
    '[{}]',
    '\ufeff{}',
    '\u0000',
    '{"__proto__":{"polluted":true}}',
    '{"constructor":{"prototype":{"polluted":true}}}',
    '{"a":1,"a":{"b":2}}',
    '{"events":[1,2,3],"events":"x"}',
    `${'['.repeat(depth)}${']'.repeat(depth)}`,
    `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`,
    '<?xml version="1.0"?><a/>',
    'a=1&b=2',
  ]);
}

/** Content types a client might send instead of `application/json` (undefined: no header). */
export const CONTENT_TYPES: readonly (string | undefined)[] = [
  'application/json',
  'application/json; charset=utf-8',
  'APPLICATION/JSON',
  'application/json; charset=latin1',
  'text/plain',
  'text/json',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=xyz',
  'application/merge-patch+json',
  'application/octet-stream',
  '',
  ';;;',
  undefined,
];
