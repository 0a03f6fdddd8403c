/**
 * The `offer` attribute of a catalog item: validated at ingestion (ingest/validate.ts calls
 * `validateOffer` for `attributes.offer`) and parsed again by each replica's offer book, so an item is
 * an offer exactly when its stored attribute passes these rules. Every problem is reported at once,
 * each naming its field (`attributes.offer.value`, `attributes.offer.policy.suppressDays`…).
 *
 * Pure: times are read by the caller's ISO parser (ingest/validate.ts `parseIsoTime`), passed in, so
 * this module imports nothing from ingestion (which imports it).
 */
import type { ErrorCode, FieldIssue } from '../errors/errors.ts';
import type { Offer, OfferPolicy } from './contracts.ts';

export interface OfferIssue extends FieldIssue {
  code: ErrorCode;
}

/** An ISO-8601 parser: epoch ms, or a message saying what is wrong. */
export type TimeParser = (s: string) => number | string;

export const MAX_OFFER_LABELS = 64;
const MAX_LABEL_LENGTH = 128;
const MAX_TIME_MS = 8.64e15;
const OFFER_FIELDS = new Set([
  'value',
  'lever',
  'segments',
  'channels',
  'start',
  'end',
  'inventory',
  'budget',
  'policy',
]);
const POLICY_FIELDS = new Set([
  'maxImpressions',
  'periodDays',
  'suppressAfter',
  'suppressOutcomes',
  'suppressDays',
]);

/**
 * Reads `raw` (the value of `attributes.offer`) into an Offer, or lists every issue. `field` prefixes
 * the issues' fields.
 */
export function validateOffer(
  raw: unknown,
  parseTime: TimeParser,
  field = 'attributes.offer',
): { ok: true; offer: Offer } | { ok: false; issues: OfferIssue[] } {
  const issues: OfferIssue[] = [];
  if (!isPlainObject(raw)) {
    issues.push(invalid(field, `must be an object with at least a value, got ${describe(raw)}`));
    return { ok: false, issues };
  }
  unknownFields(raw, OFFER_FIELDS, field, issues);
  const f = (name: string) => `${field}.${name}`;

  let value = 0;
  if (raw.value === undefined) issues.push(invalid(f('value'), 'is required (margin or revenue, ≥ 0)'));
  else {
    const v = number(raw.value, f('value'), issues, { min: 0 });
    if (v !== null) value = v;
  }
  const lever = raw.lever === undefined ? 1 : number(raw.lever, f('lever'), issues, { min: 0 });
  const segments = raw.segments === undefined ? null : labels(raw.segments, f('segments'), issues);
  const channels = raw.channels === undefined ? null : labels(raw.channels, f('channels'), issues);
  const start = raw.start === undefined ? null : time(raw.start, f('start'), parseTime, issues);
  const end = raw.end === undefined ? null : time(raw.end, f('end'), parseTime, issues);
  if (start !== null && end !== null && end <= start)
    issues.push(invalid(f('end'), 'must be later than start'));
  const inventory = raw.inventory === undefined ? null : number(raw.inventory, f('inventory'), issues);
  const budget = raw.budget === undefined ? null : number(raw.budget, f('budget'), issues);
  const policy = raw.policy === undefined ? {} : readPolicy(raw.policy, f('policy'), issues);

  if (issues.length > 0) return { ok: false, issues };
  return {
    ok: true,
    offer: {
      value,
      lever: lever ?? 1,
      segments,
      channels,
      start,
      end,
      inventory,
      budget,
      policy: policy ?? {},
    },
  };
}

function readPolicy(raw: unknown, field: string, issues: OfferIssue[]): OfferPolicy | null {
  if (!isPlainObject(raw)) {
    issues.push(invalid(field, `must be an object, got ${describe(raw)}`));
    return null;
  }
  unknownFields(raw, POLICY_FIELDS, field, issues);
  const policy: OfferPolicy = {};
  const f = (name: string) => `${field}.${name}`;
  if (raw.maxImpressions !== undefined) {
    const v = number(raw.maxImpressions, f('maxImpressions'), issues, { min: 0, integer: true });
    if (v !== null) policy.maxImpressions = v;
  }
  if (raw.periodDays !== undefined) {
    const v = number(raw.periodDays, f('periodDays'), issues, { above: 0 });
    if (v !== null) policy.periodDays = v;
  }
  if (raw.suppressAfter !== undefined) {
    const v = number(raw.suppressAfter, f('suppressAfter'), issues, { min: 0, integer: true });
    if (v !== null) policy.suppressAfter = v;
  }
  if (raw.suppressOutcomes !== undefined) {
    const v = labels(raw.suppressOutcomes, f('suppressOutcomes'), issues);
    if (v !== null) policy.suppressOutcomes = v;
  }
  if (raw.suppressDays !== undefined) {
    const v = number(raw.suppressDays, f('suppressDays'), issues, { above: 0 });
    if (v !== null) policy.suppressDays = v;
  }
  return policy;
}

function number(
  v: unknown,
  field: string,
  issues: OfferIssue[],
  bounds: { min?: number; above?: number; integer?: boolean } = {},
): number | null {
  const what = bounds.integer ? 'an integer' : 'a finite number';
  const range =
    bounds.min !== undefined ? ` ≥ ${bounds.min}` : bounds.above !== undefined ? ` > ${bounds.above}` : '';
  if (
    typeof v !== 'number' ||
    !Number.isFinite(v) ||
    (bounds.integer && !Number.isInteger(v)) ||
    (bounds.min !== undefined && v < bounds.min) ||
    (bounds.above !== undefined && v <= bounds.above)
  ) {
    issues.push(invalid(field, `must be ${what}${range}, got ${describe(v)}`));
    return null;
  }
  return v;
}

function labels(v: unknown, field: string, issues: OfferIssue[]): string[] | null {
  if (!Array.isArray(v)) {
    issues.push(invalid(field, `must be an array of strings, got ${describe(v)}`));
    return null;
  }
  if (v.length > MAX_OFFER_LABELS) {
    issues.push(invalid(field, `must hold at most ${MAX_OFFER_LABELS} entries, got ${v.length}`));
    return null;
  }
  const before = issues.length;
  const out = new Set<string>();
  for (let i = 0; i < v.length; i++) {
    const s: unknown = v[i];
    if (typeof s !== 'string' || s.trim().length === 0 || s.length > MAX_LABEL_LENGTH)
      issues.push(
        invalid(`${field}[${i}]`, `must be a non-blank string of at most ${MAX_LABEL_LENGTH} characters`),
      );
    else out.add(s);
  }
  return issues.length > before ? null : [...out];
}

function time(v: unknown, field: string, parseTime: TimeParser, issues: OfferIssue[]): number | null {
  let t: number | string;
  if (typeof v === 'number') t = Number.isFinite(v) ? Math.floor(v) : 'must be a finite number';
  else if (typeof v === 'string') t = parseTime(v);
  else t = `must be epoch milliseconds or an ISO-8601 string, got ${describe(v)}`;
  if (typeof t === 'string') {
    issues.push(invalid(field, t));
    return null;
  }
  if (Math.abs(t) > MAX_TIME_MS) {
    issues.push(invalid(field, 'is outside the range of dates'));
    return null;
  }
  return t;
}

function unknownFields(
  raw: Record<string, unknown>,
  known: ReadonlySet<string>,
  field: string,
  issues: OfferIssue[],
): void {
  for (const key of Object.keys(raw)) {
    if (!known.has(key))
      issues.push({
        code: 'CAIRN_UNKNOWN_FIELD',
        field: `${field}.${key}`,
        message: `unknown field; expected one of ${[...known].join(', ')}`,
      });
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalid(field: string, message: string): OfferIssue {
  return { code: 'CAIRN_VALIDATION', field, message };
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string "${v.length > 40 ? `${v.slice(0, 40)}…` : v}"`;
  if (typeof v === 'number') return Number.isFinite(v) ? `the number ${v}` : String(v);
  if (typeof v === 'object') return 'an object';
  return typeof v;
}
