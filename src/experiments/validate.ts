/**
 * Wire-format input of experiments and feedback (snake_case JSON from HTTP bodies or `cairn experiments
 * create --file`) into the service's request types. Shapes and types are checked here, every problem
 * at once with its field path; the rules about what makes a valid experiment (counts, weights, model
 * versions) live in the service, so every caller meets them.
 */
import type { FeedbackType } from '../domain/types.ts';
import { CairnError, type ErrorCode } from '../errors/errors.ts';
import { MIN_EVENT_TIMESTAMP, parseIsoTime, validateId } from '../ingest/validate.ts';
import type { CreateExperimentRequest, FeedbackInput, VariantRequest } from './contracts.ts';

export interface Issue {
  code: ErrorCode;
  field: string;
  message: string;
}

const EXPERIMENT_FIELDS = new Set(['id', 'kind', 'unit', 'variants', 'guard']);
const VARIANT_FIELDS = new Set(['name', 'weight', 'model_version', 'algorithm', 'ranker']);
const GUARD_FIELDS = new Set(['metric', 'margin', 'min_impressions']);
const FEEDBACK_FIELDS = new Set(['request_id', 'item_id', 'type', 'value', 'timestamp']);
export const FEEDBACK_TYPES: readonly FeedbackType[] = ['impression', 'click', 'conversion'];

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const describe = (v: unknown): string =>
  v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'string' ? 'a string' : typeof v;

function unknownFields(raw: Record<string, unknown>, known: Set<string>, prefix: string, issues: Issue[]) {
  for (const key of Object.keys(raw))
    if (!known.has(key))
      issues.push({
        code: 'CAIRN_UNKNOWN_FIELD',
        field: `${prefix}${key}`,
        message: `unknown field; expected one of ${[...known].join(', ')}`,
      });
}

function invalid(issues: Issue[], field: string, message: string): void {
  issues.push({ code: 'CAIRN_VALIDATION', field, message });
}

function optionalString(raw: Record<string, unknown>, key: string, field: string, issues: Issue[]) {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  invalid(issues, field, `must be a string, got ${describe(v)}`);
  return undefined;
}

/**
 * Parses a create-experiment body: `{"id", "kind"?, "unit"?, "variants": [{"name", "weight",
 * "model_version"?, "algorithm"?, "ranker"?}], "guard"?: {"metric"?, "margin"?, "min_impressions"?}}`.
 * Throws CAIRN_VALIDATION listing every issue.
 */
export function parseCreateExperiment(raw: unknown): CreateExperimentRequest {
  const issues: Issue[] = [];
  if (!isObject(raw)) throw CairnError.validation([{ field: 'body', message: 'must be a JSON object' }]);
  unknownFields(raw, EXPERIMENT_FIELDS, '', issues);
  const id = typeof raw.id === 'string' ? raw.id : '';
  if (typeof raw.id !== 'string')
    invalid(issues, 'id', raw.id === undefined ? 'is required' : 'must be a string');
  const request: CreateExperimentRequest = { id, variants: [] };
  const kind = optionalString(raw, 'kind', 'kind', issues);
  if (kind !== undefined) request.kind = kind as CreateExperimentRequest['kind'];
  const unit = optionalString(raw, 'unit', 'unit', issues);
  if (unit !== undefined) request.unit = unit as CreateExperimentRequest['unit'];

  if (!Array.isArray(raw.variants)) {
    invalid(issues, 'variants', raw.variants === undefined ? 'is required' : 'must be an array');
  } else {
    raw.variants.forEach((v: unknown, i) => {
      const at = `variants[${i}]`;
      if (!isObject(v)) {
        invalid(issues, at, `must be an object, got ${describe(v)}`);
        return;
      }
      unknownFields(v, VARIANT_FIELDS, `${at}.`, issues);
      const variant: VariantRequest = { name: '', weight: Number.NaN };
      if (typeof v.name === 'string') variant.name = v.name;
      else invalid(issues, `${at}.name`, v.name === undefined ? 'is required' : 'must be a string');
      if (typeof v.weight === 'number') variant.weight = v.weight;
      else invalid(issues, `${at}.weight`, v.weight === undefined ? 'is required' : 'must be a number');
      const modelVersion = optionalString(v, 'model_version', `${at}.model_version`, issues);
      if (modelVersion !== undefined) variant.modelVersion = modelVersion;
      const algorithm = optionalString(v, 'algorithm', `${at}.algorithm`, issues);
      if (algorithm !== undefined) variant.algorithm = algorithm;
      if (v.ranker !== undefined && v.ranker !== null) {
        if (typeof v.ranker === 'boolean') variant.ranker = v.ranker;
        else invalid(issues, `${at}.ranker`, 'must be a boolean');
      }
      request.variants.push(variant);
    });
  }

  if (raw.guard !== undefined && raw.guard !== null) {
    if (!isObject(raw.guard)) invalid(issues, 'guard', 'must be an object');
    else {
      const g = raw.guard;
      unknownFields(g, GUARD_FIELDS, 'guard.', issues);
      const guard: NonNullable<CreateExperimentRequest['guard']> = {};
      const metric = optionalString(g, 'metric', 'guard.metric', issues);
      if (metric !== undefined) guard.metric = metric as 'ctr';
      if (g.margin !== undefined) {
        if (typeof g.margin === 'number') guard.margin = g.margin;
        else invalid(issues, 'guard.margin', 'must be a number');
      }
      if (g.min_impressions !== undefined) {
        if (typeof g.min_impressions === 'number') guard.minImpressions = g.min_impressions;
        else invalid(issues, 'guard.min_impressions', 'must be a number');
      }
      request.guard = guard;
    }
  }
  if (issues.length > 0) throw CairnError.validation(issues);
  return request;
}

export type FeedbackValidation = { ok: true; value: FeedbackInput } | { ok: false; issues: Issue[] };

/**
 * Validates one feedback entry: `request_id` and `item_id` (ids as for events), `type`
 * (impression | click | conversion), `value` (finite, ≥ 0), `timestamp` (epoch ms or ISO-8601, not
 * before 2000 nor later than `maxTime`).
 */
export function validateFeedback(raw: unknown, maxTime: number): FeedbackValidation {
  const issues: Issue[] = [];
  if (!isObject(raw))
    return {
      ok: false,
      issues: [
        {
          code: 'CAIRN_VALIDATION',
          field: '(root)',
          message: `feedback must be a JSON object, got ${describe(raw)}`,
        },
      ],
    };
  unknownFields(raw, FEEDBACK_FIELDS, '', issues);
  const requestId = validateId(raw.request_id, 'request_id');
  if (!requestId.ok) issues.push(...requestId.issues);
  const itemId = validateId(raw.item_id, 'item_id');
  if (!itemId.ok) issues.push(...itemId.issues);
  const type = raw.type;
  if (typeof type !== 'string' || !(FEEDBACK_TYPES as readonly string[]).includes(type))
    invalid(issues, 'type', `must be one of ${FEEDBACK_TYPES.join(', ')}`);
  let value: number | undefined;
  if (raw.value !== undefined && raw.value !== null) {
    if (typeof raw.value === 'number' && Number.isFinite(raw.value) && raw.value >= 0) value = raw.value;
    else invalid(issues, 'value', 'must be a finite number ≥ 0');
  }
  let timestamp: number | undefined;
  if (raw.timestamp !== undefined && raw.timestamp !== null) {
    const t =
      typeof raw.timestamp === 'number'
        ? Number.isFinite(raw.timestamp)
          ? Math.floor(raw.timestamp)
          : 'must be a finite number of milliseconds since the epoch'
        : typeof raw.timestamp === 'string'
          ? parseIsoTime(raw.timestamp)
          : 'must be epoch milliseconds or an ISO-8601 string';
    if (typeof t === 'string') invalid(issues, 'timestamp', t);
    else if (t < MIN_EVENT_TIMESTAMP || t > maxTime)
      issues.push({
        code: 'CAIRN_TIMESTAMP_OUT_OF_RANGE',
        field: 'timestamp',
        message: `must lie between ${new Date(MIN_EVENT_TIMESTAMP).toISOString()} and ${new Date(maxTime).toISOString()}`,
      });
    else timestamp = t;
  }
  if (issues.length > 0 || !requestId.ok || !itemId.ok) return { ok: false, issues };
  const value_: FeedbackInput = {
    requestId: requestId.value,
    itemId: itemId.value,
    type: type as FeedbackType,
  };
  if (value !== undefined) value_.value = value;
  if (timestamp !== undefined) value_.timestamp = timestamp;
  return { ok: true, value: value_ };
}
