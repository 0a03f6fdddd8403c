/**
 * Validation of wire-format input (snake_case JSON from HTTP bodies or JSONL files) into domain objects.
 *
 * Every rule reports a stable code and the offending field, and every problem of an object is reported
 * at once (a client fixing one field at a time is a bad loop). The `validate*` functions return the
 * issues; the `parse*` variants throw `CairnError.validation(issues)` instead.
 *
 * This sits on the ingestion hot path (10,000-event batches), so: every regex is compiled once at module
 * load, the event-type table is turned into a Map once per validator, the clock is read once per batch
 * by the caller, and a `context` object is only serialised when a cheap size bound cannot decide.
 */
import { Buffer } from 'node:buffer';
import { hash, randomUUID } from 'node:crypto';
import type { CairnEvent, EventTypeSpec, JsonObject } from '../domain/types.ts';
import { CairnError, type ErrorCode, type FieldIssue } from '../errors/errors.ts';
import type { ItemPatch, UserPatch } from '../storage/ports.ts';
import { validateOffer } from '../offers/validate.ts';

/** One problem with an input object: stable code, field path (e.g. `categories[2]`) and a human message. */
export interface ValidationIssue extends FieldIssue {
  code: ErrorCode;
}

export type Validated<T> = { ok: true; value: T } | { ok: false; issues: ValidationIssue[] };

/** 2000-01-01T00:00:00Z: older event times are almost always seconds sent as milliseconds, or garbage. */
export const MIN_EVENT_TIMESTAMP = Date.UTC(2000, 0, 1);
/**
 * Largest magnitude of an event `value`, whatever its type: no real rating, quantity or price comes near,
 * and anything beyond is an attempt to outweigh every other event (a value of 1e308 would overflow sums).
 */
export const MAX_EVENT_VALUE = 1e9;
/** Largest serialised `context` of an event, in UTF-8 bytes of its JSON. */
export const MAX_CONTEXT_BYTES = 8 * 1024;
/** Largest serialised `attributes` of an item or user, in UTF-8 bytes of its JSON. */
export const MAX_ATTRIBUTES_BYTES = 64 * 1024;
export const MAX_ID_LENGTH = 256;
export const MAX_EVENT_ID_LENGTH = 128;
export const MAX_CATEGORIES = 32;
export const MAX_SEGMENTS = 64;
export const MAX_LABEL_LENGTH = 128;
/** Nesting limit for free JSON (context, attributes); also keeps the size walk's recursion shallow. */
export const MAX_JSON_DEPTH = 32;
/** Past this many unknown fields in one object, the rest are summarised in one issue. */
const MAX_UNKNOWN_FIELD_ISSUES = 10;
/** Largest time a JavaScript Date can hold (±8.64e15 ms); item times beyond it are nonsense. */
const MAX_DATE_MS = 8.64e15;

// Control characters (C0, DEL, C1) and unpaired UTF-16 surrogates: the latter cannot be encoded as UTF-8,
// so a driver would silently turn them into U+FFFD and two different ids would become one.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const BAD_TEXT = /[\u0000-\u001f\u007f-\u009f]|\p{Cs}/u;
/**
 * What free JSON (context, attributes) must not hold: NUL, which PostgreSQL cannot store in text or jsonb,
 * and unpaired surrogates, which no UTF-8 store can. Accepted, such an event would stop the production
 * store writer at it (found by fuzzing the API on PostgreSQL).
 */
// eslint-disable-next-line no-control-regex -- NUL is what is matched
const UNSTORABLE_TEXT = /\u0000|\p{Cs}/u;
const UNSTORABLE_MESSAGE = 'must not contain NUL characters or unpaired surrogates';
/** Event ids: visible ASCII only, so they survive logs, URLs and every store byte-for-byte. */
const EVENT_ID = /^[\x21-\x7e]+$/;
const ISO_TIME =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?([Zz]|[+-]\d{2}(?::?\d{2})?)?)?$/;

const EVENT_FIELDS = new Set([
  'event_id',
  'user_id',
  'item_id',
  'type',
  'value',
  'timestamp',
  'context',
  'request_id',
]);
const ITEM_FIELDS = new Set(['id', 'categories', 'attributes', 'available', 'created_at']);
const USER_FIELDS = new Set(['id', 'attributes', 'segments', 'opt_out']);

// ---------------------------------------------------------------------------------------------------
// Events

export interface EventValidatorOptions {
  /** The configured event types (`config.events.types`). */
  types: Readonly<Record<string, EventTypeSpec>>;
  /** Events further than this in the future of the server clock are rejected. */
  maxFutureSkewSeconds: number;
  /**
   * Earliest accepted event time in epoch ms (default 2000-01-01). Importers of older public data sets
   * (e.g. MovieLens 100k, 1997–98) pass a lower bound.
   */
  minTimestamp?: number;
}

export type EventValidation =
  | { ok: true; event: CairnEvent }
  /** `eventId` is the client's id when it was itself valid, so a rejection can still be correlated. */
  | { ok: false; eventId: string | null; issues: ValidationIssue[] };

export interface EventValidator {
  /** Validates one wire-format event; `now` is the server clock in epoch ms (read once per batch). */
  validate(raw: unknown, now?: number): EventValidation;
  /** As `validate`, but throws `CairnError` CAIRN_VALIDATION listing every issue. */
  parse(raw: unknown, now?: number): CairnEvent;
}

/**
 * Builds an event validator for a configuration. Build it once and reuse it: it precomputes the
 * event-type table so each event costs a Map lookup.
 *
 * Event ids: a client-supplied `event_id` is kept. Without one, and when the client supplied a
 * `timestamp`, the id is DERIVED from a hash of (user_id, item_id, type, timestamp, value): a client
 * that retries the same event after a timeout then sends the same id, and the store's idempotency
 * turns the retry into a `duplicate` instead of a double count. Without a timestamp the event time is
 * the server's clock, which differs between retries, so a derived id would not help; a random UUID is
 * used and such events are only deduplicated by the client's own `event_id`. The cost of derivation:
 * two genuinely distinct events with identical fields in the same millisecond collapse into one (and
 * `context` is not part of the id) — clients that can emit those must send their own `event_id`.
 */
export function createEventValidator(options: EventValidatorOptions): EventValidator {
  const types = new Map<string, EventTypeSpec>(Object.entries(options.types));
  const typeList = [...types.keys()].join(', ');
  const minTimestamp = options.minTimestamp ?? MIN_EVENT_TIMESTAMP;
  const skewMs = options.maxFutureSkewSeconds * 1000;

  const validate = (raw: unknown, now: number = Date.now()): EventValidation => {
    const issues: ValidationIssue[] = [];
    if (!isPlainObject(raw)) {
      issues.push(invalid('(root)', `an event must be a JSON object, got ${describe(raw)}`));
      return { ok: false, eventId: null, issues };
    }
    checkUnknownFields(raw, EVENT_FIELDS, issues);

    let eventId: string | null = null;
    const rawId = raw.event_id;
    if (rawId !== undefined && rawId !== null) {
      if (typeof rawId === 'number' && Number.isSafeInteger(rawId)) eventId = String(rawId);
      else if (typeof rawId !== 'string')
        issues.push(invalid('event_id', `must be a string or an integer, got ${describe(rawId)}`));
      else if (rawId.length === 0 || rawId.length > MAX_EVENT_ID_LENGTH || !EVENT_ID.test(rawId))
        issues.push(
          invalid('event_id', `must be 1 to ${MAX_EVENT_ID_LENGTH} visible ASCII characters without spaces`),
        );
      else eventId = rawId;
    }

    const userId = readId(raw.user_id, 'user_id', issues);
    const itemId = readId(raw.item_id, 'item_id', issues);

    let type: string | null = null;
    let spec: EventTypeSpec | undefined;
    const rawType = raw.type;
    if (rawType === undefined || rawType === null) issues.push(invalid('type', 'is required'));
    else if (typeof rawType !== 'string')
      issues.push(invalid('type', `must be a string, got ${describe(rawType)}`));
    else if ((spec = types.get(rawType)) === undefined)
      issues.push({
        code: 'CAIRN_UNKNOWN_EVENT_TYPE',
        field: 'type',
        message: `unknown event type "${truncate(rawType)}"; configured types: ${typeList}`,
      });
    else type = rawType;

    let value: number | null = null;
    const rawValue = raw.value;
    if (rawValue !== undefined && rawValue !== null) {
      if (typeof rawValue !== 'number' || !(Math.abs(rawValue) <= MAX_EVENT_VALUE))
        issues.push(
          invalid(
            'value',
            `must be a number from -${MAX_EVENT_VALUE} to ${MAX_EVENT_VALUE}, got ${describe(rawValue)}`,
          ),
        );
      else if (spec && !inRange(rawValue, spec))
        issues.push(invalid('value', `must be ${rangeText(spec)} for "${type}" events, got ${rawValue}`));
      else value = rawValue;
    } else if (spec?.useValue) {
      issues.push(invalid('value', `is required for "${type}" events`));
    }

    let timestamp = now;
    const hasTimestamp = raw.timestamp !== undefined && raw.timestamp !== null;
    if (hasTimestamp) {
      const t = readTime(raw.timestamp, 'timestamp', minTimestamp, now + skewMs, issues);
      if (t !== null) timestamp = t;
    }

    let context: JsonObject | null = null;
    if (raw.context !== undefined && raw.context !== null) {
      context = readJsonObject(raw.context, 'context', MAX_CONTEXT_BYTES, issues);
    }

    // The `request_id` of the recommendation this event is an outcome of (a click on a recommended
    // item): kept in `context.request_id`, where the feedback projector finds it to attribute the event.
    const rawRequestId = raw.request_id;
    if (rawRequestId !== undefined && rawRequestId !== null) {
      if (
        typeof rawRequestId !== 'string' ||
        rawRequestId.length === 0 ||
        rawRequestId.length > MAX_EVENT_ID_LENGTH ||
        !EVENT_ID.test(rawRequestId)
      )
        issues.push(
          invalid(
            'request_id',
            `must be the recommendation's request_id: 1 to ${MAX_EVENT_ID_LENGTH} visible ASCII characters`,
          ),
        );
      else if (context !== null && context.request_id !== undefined && context.request_id !== rawRequestId)
        issues.push(invalid('request_id', 'differs from context.request_id; send one of them'));
      else context = { ...(context ?? {}), request_id: rawRequestId };
    }

    if (issues.length > 0) return { ok: false, eventId, issues };
    // Non-null below: each is null only when an issue was recorded.
    if (eventId === null) {
      eventId = hasTimestamp ? deriveEventId(userId!, itemId!, type!, timestamp, value) : randomUUID();
    }
    return {
      ok: true,
      event: { eventId, userId: userId!, itemId: itemId!, type: type!, value, timestamp, context },
    };
  };

  return {
    validate,
    parse(raw, now) {
      const result = validate(raw, now);
      if (!result.ok) throw CairnError.validation(result.issues);
      return result.event;
    },
  };
}

/**
 * The deterministic id of an event that came without one: a name-based UUID (RFC 9562 version 8) over
 * a versioned, NUL-separated encoding of the fields (ids cannot contain NUL, so the encoding is
 * unambiguous). ISO and epoch-ms spellings of one instant give the same id, as do `42` and `"42"`.
 */
export function deriveEventId(
  userId: string,
  itemId: string,
  type: string,
  timestamp: number,
  value: number | null,
): string {
  const h = hash(
    'sha256',
    `cairn:event:v1\u0000${userId}\u0000${itemId}\u0000${type}\u0000${timestamp}\u0000${value ?? ''}`,
    'hex',
  );
  const variant = ((parseInt(h[16], 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

// ---------------------------------------------------------------------------------------------------
// Items and users

/**
 * Validates an item body. With `pathId` (PUT /v1/items/{id}) the id comes from the path and a body
 * `id`, if present, must equal it; without it (batch entries) the body must carry `id`. Only fields
 * present in the body are set (partial upsert); `null` is refused rather than guessed at.
 */
export function validateItem(raw: unknown, pathId?: string): Validated<ItemPatch> {
  const issues: ValidationIssue[] = [];
  if (!isPlainObject(raw))
    return { ok: false, issues: [invalid('(root)', `an item must be a JSON object, got ${describe(raw)}`)] };
  checkUnknownFields(raw, ITEM_FIELDS, issues);
  const id = readEntityId(raw, pathId, issues);
  const patch: ItemPatch = { id: id ?? '' };

  if (raw.categories !== undefined) {
    const categories = readLabels(raw.categories, 'categories', MAX_CATEGORIES, issues);
    if (categories) patch.categories = categories;
  }
  if (raw.attributes !== undefined) {
    const attributes = readAttributes(raw.attributes, issues);
    if (attributes) {
      const price = attributes.price;
      // An item whose attributes carry `offer` is an offer (src/offers): its rules are checked here.
      const offer = attributes.offer === undefined ? null : validateOffer(attributes.offer, parseIsoTime);
      if (price !== undefined && !(typeof price === 'number' && Number.isFinite(price) && price >= 0))
        issues.push(invalid('attributes.price', `must be a finite number ≥ 0, got ${describe(price)}`));
      else if (offer && !offer.ok) issues.push(...offer.issues);
      else patch.attributes = attributes;
    }
  }
  if (raw.available !== undefined) {
    if (typeof raw.available === 'boolean') patch.available = raw.available;
    else issues.push(invalid('available', booleanMessage(raw.available)));
  }
  if (raw.created_at !== undefined) {
    if (raw.created_at === null) issues.push(invalid('created_at', nullMessage('a time')));
    else {
      const t = readTime(raw.created_at, 'created_at', 0, MAX_DATE_MS, issues);
      if (t !== null) patch.createdAt = t;
    }
  }
  return issues.length > 0 || id === null ? { ok: false, issues } : { ok: true, value: patch };
}

/** As `validateItem`, but throws `CairnError` CAIRN_VALIDATION listing every issue. */
export function parseItem(raw: unknown, pathId?: string): ItemPatch {
  return unwrap(validateItem(raw, pathId));
}

/** Validates a user body (PUT /v1/users/{id}): `attributes`, `segments`, `opt_out`; partial upsert. */
export function validateUser(raw: unknown, pathId?: string): Validated<UserPatch> {
  const issues: ValidationIssue[] = [];
  if (!isPlainObject(raw))
    return { ok: false, issues: [invalid('(root)', `a user must be a JSON object, got ${describe(raw)}`)] };
  checkUnknownFields(raw, USER_FIELDS, issues);
  const id = readEntityId(raw, pathId, issues);
  const patch: UserPatch = { id: id ?? '' };

  if (raw.attributes !== undefined) {
    const attributes = readAttributes(raw.attributes, issues);
    if (attributes) patch.attributes = attributes;
  }
  if (raw.segments !== undefined) {
    const segments = readLabels(raw.segments, 'segments', MAX_SEGMENTS, issues);
    if (segments) patch.segments = segments;
  }
  if (raw.opt_out !== undefined) {
    if (typeof raw.opt_out === 'boolean') patch.optOut = raw.opt_out;
    else issues.push(invalid('opt_out', booleanMessage(raw.opt_out)));
  }
  return issues.length > 0 || id === null ? { ok: false, issues } : { ok: true, value: patch };
}

/** As `validateUser`, but throws `CairnError` CAIRN_VALIDATION listing every issue. */
export function parseUser(raw: unknown, pathId?: string): UserPatch {
  return unwrap(validateUser(raw, pathId));
}

/**
 * Validates a user or item identifier: a non-blank string of at most 256 characters without control
 * characters, or a safe integer (converted to its decimal string, so `42` and `"42"` are one id).
 * Returns the issues for use by routes checking path parameters.
 */
export function validateId(value: unknown, field = 'id'): Validated<string> {
  const issues: ValidationIssue[] = [];
  const id = readId(value, field, issues);
  return id === null ? { ok: false, issues } : { ok: true, value: id };
}

// ---------------------------------------------------------------------------------------------------
// Field readers. Each pushes its issues and returns null (or the parsed value).

function readId(v: unknown, field: string, issues: ValidationIssue[]): string | null {
  if (typeof v === 'string') {
    if (v.length === 0) issues.push(invalid(field, 'must not be empty'));
    else if (v.length > MAX_ID_LENGTH)
      issues.push(invalid(field, `must be at most ${MAX_ID_LENGTH} characters, got ${v.length}`));
    else if (BAD_TEXT.test(v))
      issues.push(invalid(field, 'must not contain control characters or unpaired surrogates'));
    else if (isBlank(v)) issues.push(invalid(field, 'must not be blank'));
    else return v;
    return null;
  }
  if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
  if (v === undefined || v === null) issues.push(invalid(field, 'is required'));
  else issues.push(invalid(field, `must be a string or an integer, got ${describe(v)}`));
  return null;
}

function readEntityId(
  raw: Record<string, unknown>,
  pathId: string | undefined,
  issues: ValidationIssue[],
): string | null {
  if (pathId === undefined) return readId(raw.id, 'id', issues);
  const id = readId(pathId, 'id', issues);
  if (id !== null && raw.id !== undefined) {
    const bodyId = typeof raw.id === 'number' && Number.isSafeInteger(raw.id) ? String(raw.id) : raw.id;
    if (bodyId !== id)
      issues.push(
        invalid('id', `the body id ${describe(raw.id)} does not match the path id "${truncate(id)}"`),
      );
  }
  return id;
}

/**
 * Epoch milliseconds (a JSON number; fractions are truncated) or an ISO-8601 / RFC 3339 string. A
 * date-time string must carry its offset (`Z` or `±hh:mm`): a zone-less time would be read in the
 * server's zone, so the same input would mean different instants (and different derived event ids) on
 * different machines. A bare date means midnight UTC.
 */
function readTime(
  v: unknown,
  field: string,
  min: number,
  max: number,
  issues: ValidationIssue[],
): number | null {
  let t: number;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) {
      issues.push(invalid(field, 'must be a finite number of milliseconds since the epoch'));
      return null;
    }
    t = Math.floor(v);
  } else if (typeof v === 'string') {
    const parsed = parseIsoTime(v);
    if (typeof parsed === 'string') {
      issues.push(invalid(field, parsed));
      return null;
    }
    t = parsed;
  } else {
    issues.push(invalid(field, `must be epoch milliseconds or an ISO-8601 string, got ${describe(v)}`));
    return null;
  }
  if (t < min) {
    const hint =
      typeof v === 'number' && t * 1000 >= min && t * 1000 <= max
        ? ' (this looks like seconds; send milliseconds)'
        : '';
    issues.push(outOfRange(field, `${isoOf(t)} is before the earliest accepted time ${isoOf(min)}${hint}`));
    return null;
  }
  if (t > max) {
    issues.push(outOfRange(field, `${isoOf(t)} is later than the latest accepted time ${isoOf(max)}`));
    return null;
  }
  return t;
}

/** Parses an ISO-8601 date or date-time; returns epoch ms, or a message saying what is wrong. */
export function parseIsoTime(s: string): number | string {
  const fast = parseCanonicalUtc(s);
  if (fast >= 0) return fast;
  const m = ISO_TIME.exec(s);
  if (!m)
    return `"${truncate(s)}" is not an ISO-8601 date-time (e.g. 2024-05-01T12:30:00Z) nor epoch milliseconds`;
  const [, ys, mos, ds, hs, mis, ss, frac, zone] = m;
  const year = Number(ys);
  const month = Number(mos);
  const day = Number(ds);
  if (hs !== undefined && zone === undefined)
    return `"${truncate(s)}" has no time zone offset; append Z or ±hh:mm`;
  const hour = hs === undefined ? 0 : Number(hs);
  const minute = mis === undefined ? 0 : Number(mis);
  // RFC 3339 allows a leap second (:60); it rolls over to the next second like everywhere else in JS.
  const second = ss === undefined ? 0 : Number(ss);
  const ms = frac === undefined ? 0 : Number(frac.slice(0, 3).padEnd(3, '0'));
  if (
    month < 1 ||
    month > 12 ||
    day < 1 ||
    day > daysInMonth(year, month) ||
    hour > 23 ||
    minute > 59 ||
    second > 60
  )
    return `"${truncate(s)}" is not a valid calendar date-time`;
  let offsetMs = 0;
  if (zone !== undefined && zone !== 'Z' && zone !== 'z') {
    const digits = zone.slice(1).replace(':', '');
    const oh = Number(digits.slice(0, 2));
    const om = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
    if (oh > 23 || om > 59) return `"${truncate(s)}" has an invalid time zone offset`;
    offsetMs = (zone[0] === '-' ? -1 : 1) * (oh * 60 + om) * 60_000;
  }
  if (year >= 100) return Date.UTC(year, month - 1, day, hour, minute, second, ms) - offsetMs;
  // Date.UTC maps years 0–99 to 1900–1999; setUTCFullYear does not.
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second, ms);
  return d.getTime() - offsetMs;
}

/**
 * Fast path for the shape nearly every client sends, `Date.prototype.toISOString()`'s
 * `YYYY-MM-DDTHH:MM:SS[.sss]Z`, read by character codes (no regex groups, no substrings). Returns -1
 * for anything else, including out-of-range fields, so the general parser decides and explains.
 */
function parseCanonicalUtc(s: string): number {
  const n = s.length;
  if (n !== 20 && n !== 24) return -1;
  if (s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45 || s.charCodeAt(10) !== 84) return -1; // - - T
  if (s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58 || s.charCodeAt(n - 1) !== 90) return -1; // : : Z
  if (n === 24 && s.charCodeAt(19) !== 46) return -1; // .
  const year = digits(s, 0, 4);
  const month = digits(s, 5, 2);
  const day = digits(s, 8, 2);
  const hour = digits(s, 11, 2);
  const minute = digits(s, 14, 2);
  const second = digits(s, 17, 2);
  const ms = n === 24 ? digits(s, 20, 3) : 0;
  if (year < 100 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return -1;
  if (hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59 || ms < 0) return -1;
  return Date.UTC(year, month - 1, day, hour, minute, second, ms);
}

/** The decimal number in `s[at, at + len)`, or a large negative number when a character is not a digit. */
function digits(s: string, at: number, len: number): number {
  let v = 0;
  for (let i = at; i < at + len; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1e9;
    v = v * 10 + d;
  }
  return v;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/** A list of short labels (categories, segments): ≤ `max` non-blank strings; duplicates are collapsed. */
function readLabels(v: unknown, field: string, max: number, issues: ValidationIssue[]): string[] | null {
  if (!Array.isArray(v)) {
    issues.push(
      invalid(
        field,
        v === null ? nullMessage('an array of strings') : `must be an array of strings, got ${describe(v)}`,
      ),
    );
    return null;
  }
  if (v.length > max) {
    issues.push(invalid(field, `must hold at most ${max} entries, got ${v.length}`));
    return null;
  }
  const before = issues.length;
  const seen = new Set<string>();
  for (let i = 0; i < v.length; i++) {
    const label: unknown = v[i];
    const f = `${field}[${i}]`;
    if (typeof label !== 'string') issues.push(invalid(f, `must be a string, got ${describe(label)}`));
    else if (label.length === 0 || isBlank(label)) issues.push(invalid(f, 'must not be empty'));
    else if (label.length > MAX_LABEL_LENGTH)
      issues.push(invalid(f, `must be at most ${MAX_LABEL_LENGTH} characters`));
    else if (BAD_TEXT.test(label))
      issues.push(invalid(f, 'must not contain control characters or unpaired surrogates'));
    else seen.add(label);
  }
  return issues.length > before ? null : [...seen];
}

function readAttributes(v: unknown, issues: ValidationIssue[]): JsonObject | null {
  if (v === null) {
    issues.push(invalid('attributes', nullMessage('an object')));
    return null;
  }
  return readJsonObject(v, 'attributes', MAX_ATTRIBUTES_BYTES, issues);
}

interface JsonWalk {
  /** Lower and upper bounds of the UTF-8 size of the JSON serialisation seen so far. */
  lo: number;
  hi: number;
  limit: number;
  error: string | null;
  /** Path of the offending value, built while unwinding. */
  path: string[];
}

/**
 * A plain JSON object whose serialisation is at most `limit` UTF-8 bytes. Rather than serialising every
 * object, one walk checks that it is real JSON (finite numbers, no undefined/functions/class instances,
 * bounded depth) and bounds its size from below and above: each UTF-16 unit of a string costs 1 to 6
 * bytes (`\uXXXX` escapes), a number 1 to 25. Small objects are accepted on the upper bound, huge ones
 * rejected on the lower bound (the walk stops there, so a 10 MB context costs ~8 KB of work); only the
 * ambiguous middle is serialised to measure exactly.
 */
function readJsonObject(
  v: unknown,
  field: string,
  limit: number,
  issues: ValidationIssue[],
): JsonObject | null {
  if (!isPlainObject(v)) {
    issues.push(invalid(field, `must be a JSON object, got ${describe(v)}`));
    return null;
  }
  const walk: JsonWalk = { lo: 0, hi: 0, limit, error: null, path: [] };
  walkJson(v, 0, walk);
  if (walk.error !== null) {
    issues.push(invalid(field + walk.path.join(''), walk.error));
    return null;
  }
  const tooLarge = walk.lo > limit || (walk.hi > limit && Buffer.byteLength(JSON.stringify(v)) > limit);
  if (tooLarge) {
    issues.push(invalid(field, `must serialise to at most ${limit} bytes of JSON`));
    return null;
  }
  return v;
}

/** Returns false to stop the walk (invalid value, or already provably too large). */
function walkJson(v: unknown, depth: number, w: JsonWalk): boolean {
  switch (typeof v) {
    case 'string':
      w.lo += v.length + 2;
      w.hi += v.length * 6 + 2;
      if (w.lo <= w.limit && UNSTORABLE_TEXT.test(v)) {
        w.error = UNSTORABLE_MESSAGE;
        return false;
      }
      break;
    case 'number':
      if (!Number.isFinite(v)) {
        w.error = 'numbers must be finite';
        return false;
      }
      w.lo += 1;
      w.hi += 25;
      break;
    case 'boolean':
      w.lo += 4;
      w.hi += 5;
      break;
    case 'object': {
      if (v === null) {
        w.lo += 4;
        w.hi += 4;
        break;
      }
      if (depth >= MAX_JSON_DEPTH) {
        w.error = `must not nest deeper than ${MAX_JSON_DEPTH} levels`;
        return false;
      }
      if (Array.isArray(v)) {
        const sep = 2 + Math.max(0, v.length - 1);
        w.lo += sep;
        w.hi += sep;
        for (let i = 0; i < v.length; i++) {
          if (!walkJson(v[i], depth + 1, w)) {
            if (w.error !== null) w.path.unshift(`[${i}]`);
            return false;
          }
        }
        break;
      }
      if (!isPlainObject(v)) {
        w.error = 'must hold only JSON values';
        return false;
      }
      const keys = Object.keys(v);
      const sep = 2 + Math.max(0, keys.length - 1);
      w.lo += sep;
      w.hi += sep;
      for (const key of keys) {
        w.lo += key.length + 3;
        w.hi += key.length * 6 + 3;
        if (UNSTORABLE_TEXT.test(key)) {
          w.error = `keys ${UNSTORABLE_MESSAGE}`;
          return false;
        }
        if (!walkJson(v[key], depth + 1, w)) {
          if (w.error !== null) w.path.unshift(`.${key}`);
          return false;
        }
      }
      break;
    }
    default:
      w.error = `must hold only JSON values, got ${typeof v}`;
      return false;
  }
  return w.lo <= w.limit;
}

function checkUnknownFields(
  raw: Record<string, unknown>,
  known: ReadonlySet<string>,
  issues: ValidationIssue[],
): void {
  let unknown = 0;
  for (const key in raw) {
    if (known.has(key) || !Object.hasOwn(raw, key)) continue;
    unknown++;
    if (unknown <= MAX_UNKNOWN_FIELD_ISSUES) {
      issues.push({
        code: 'CAIRN_UNKNOWN_FIELD',
        field: key,
        message: `unknown field; expected one of ${[...known].join(', ')}`,
      });
    }
  }
  if (unknown > MAX_UNKNOWN_FIELD_ISSUES) {
    issues.push({
      code: 'CAIRN_UNKNOWN_FIELD',
      field: '(root)',
      message: `${unknown - MAX_UNKNOWN_FIELD_ISSUES} more unknown fields`,
    });
  }
}

// ---------------------------------------------------------------------------------------------------
// Small helpers

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function isBlank(s: string): boolean {
  // Cheap pre-check: most ids neither start nor end with whitespace, so trim() is rarely paid for.
  const first = s.charCodeAt(0);
  const last = s.charCodeAt(s.length - 1);
  if (first > 32 && first < 128 && last > 32 && last < 128) return false;
  return s.trim().length === 0;
}

/** Whether `value` lies in the type's configured range (`minValue`/`maxValue`, either may be absent). */
function inRange(value: number, spec: EventTypeSpec): boolean {
  return !(value < (spec.minValue ?? -Infinity) || value > (spec.maxValue ?? Infinity));
}

function rangeText(spec: EventTypeSpec): string {
  if (spec.minValue !== undefined && spec.maxValue !== undefined)
    return `from ${spec.minValue} to ${spec.maxValue}`;
  return spec.minValue !== undefined ? `at least ${spec.minValue}` : `at most ${spec.maxValue}`;
}

function invalid(field: string, message: string): ValidationIssue {
  return { code: 'CAIRN_VALIDATION', field, message };
}

function outOfRange(field: string, message: string): ValidationIssue {
  return { code: 'CAIRN_TIMESTAMP_OUT_OF_RANGE', field, message };
}

function nullMessage(what: string): string {
  return `must be ${what}, not null (omit the field to keep the stored value)`;
}

function booleanMessage(v: unknown): string {
  return v === null ? nullMessage('true or false') : `must be true or false, got ${describe(v)}`;
}

/** ISO form of an epoch-ms time for messages; times outside the Date range are printed as numbers. */
function isoOf(t: number): string {
  return Math.abs(t) <= MAX_DATE_MS ? new Date(t).toISOString() : `${t} ms`;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string "${truncate(v)}"`;
  if (typeof v === 'number') return Number.isFinite(v) ? `the number ${v}` : String(v);
  if (typeof v === 'object') return 'an object';
  return typeof v;
}

function truncate(s: string, max = 40): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

function unwrap<T>(result: Validated<T>): T {
  if (!result.ok) throw CairnError.validation(result.issues);
  return result.value;
}
