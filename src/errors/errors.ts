/**
 * Typed errors with stable codes. Each code maps to exactly one HTTP status here, in one place;
 * nothing in this folder knows about HTTP frameworks. Tests assert codes, never messages.
 */
export const ERROR_CODES = {
  CAIRN_VALIDATION: 400,
  CAIRN_INVALID_JSON: 400,
  /** A request object carries a field Cairn does not know (typo guard; the field is named). */
  CAIRN_UNKNOWN_FIELD: 400,
  /** An event's `type` is not one of `config.events.types`. */
  CAIRN_UNKNOWN_EVENT_TYPE: 422,
  /** A timestamp is well-formed but outside the accepted window (too old or too far in the future). */
  CAIRN_TIMESTAMP_OUT_OF_RANGE: 422,
  CAIRN_BATCH_TOO_LARGE: 413,
  CAIRN_PAYLOAD_TOO_LARGE: 413,
  CAIRN_UNSUPPORTED_MEDIA_TYPE: 415,
  CAIRN_UNAUTHORIZED: 401,
  CAIRN_FORBIDDEN: 403,
  CAIRN_NOT_FOUND: 404,
  CAIRN_USER_NOT_FOUND: 404,
  CAIRN_ITEM_NOT_FOUND: 404,
  CAIRN_MODEL_NOT_FOUND: 404,
  CAIRN_JOB_NOT_FOUND: 404,
  CAIRN_CONFLICT: 409,
  CAIRN_MODEL_NOT_PROMOTABLE: 409,
  CAIRN_NO_PREVIOUS_MODEL: 409,
  CAIRN_TRAINING_IN_PROGRESS: 409,
  CAIRN_NOT_ENOUGH_DATA: 422,
  CAIRN_UNSUPPORTED: 422,
  CAIRN_RATE_LIMITED: 429,
  CAIRN_CONFIG_INVALID: 500,
  CAIRN_INTERNAL: 500,
  CAIRN_UNAVAILABLE: 503,
  /** This process has too much work in flight (or a stalled event loop): retry after `Retry-After`. */
  CAIRN_OVERLOADED: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** One offending field of a request, by JSON path (e.g. `events[3].user_id`). */
export interface FieldIssue {
  field: string;
  message: string;
}

export class CairnError extends Error {
  readonly code: ErrorCode;
  readonly details: unknown;

  constructor(code: ErrorCode, message: string, details?: unknown, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CairnError';
    this.code = code;
    this.details = details;
  }

  get status(): number {
    return ERROR_CODES[this.code];
  }

  /** A client error (4xx): the message and details are safe to show. */
  get isClientError(): boolean {
    return this.status < 500;
  }

  static validation(issues: FieldIssue[], message?: string): CairnError {
    const first = issues[0];
    return new CairnError(
      'CAIRN_VALIDATION',
      message ?? (first ? `${first.field}: ${first.message}` : 'invalid request'),
      { fields: issues },
    );
  }
}

export function isCairnError(e: unknown): e is CairnError {
  return e instanceof CairnError;
}
