/**
 * The one place where errors become HTTP answers: `{"error":{"code","message","details"}}`.
 * CairnErrors keep their code and status; Fastify's own client errors (bad JSON, body too large,
 * unsupported media type, malformed URL) get Cairn codes; anything else is a 500 whose message never
 * leaves the process (it is logged with the request id instead).
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ERROR_CODES, isCairnError, type ErrorCode } from '../errors/errors.ts';
import type { ErrorBodyWire } from './schemas.ts';

export interface ErrorAnswer {
  status: number;
  body: ErrorBodyWire;
  /** Server-side failure: log it at error level with the cause. */
  internal: boolean;
}

function answer(status: number, code: string, message: string, details: unknown = null): ErrorAnswer {
  return { status, body: { error: { code, message, details } }, internal: status >= 500 };
}

/** Generic messages for server errors: the real cause goes to the log, never to the client. */
function serverError(status: number, code: string, requestId: string): ErrorAnswer {
  const message =
    status === 503
      ? 'service temporarily unavailable, retry later'
      : 'internal error; quote the request id when reporting it';
  return answer(status, code, message, { request_id: requestId });
}

/** Fastify framework errors a client can cause, by Fastify code. */
const FRAMEWORK_ERRORS: Record<string, { status: number; code: ErrorCode; message?: string }> = {
  FST_ERR_CTP_INVALID_JSON_BODY: {
    status: 400,
    code: 'CAIRN_INVALID_JSON',
    message: 'request body is not valid JSON',
  },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'CAIRN_INVALID_JSON', message: 'request body is empty' },
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'CAIRN_PAYLOAD_TOO_LARGE' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    status: 415,
    code: 'CAIRN_UNSUPPORTED_MEDIA_TYPE',
    message: 'unsupported content type; send application/json',
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'CAIRN_VALIDATION' },
  FST_ERR_BAD_URL: { status: 400, code: 'CAIRN_VALIDATION', message: 'malformed URL' },
  FST_ERR_MAX_PARAM_LENGTH: {
    status: 400,
    code: 'CAIRN_VALIDATION',
    message: 'a path parameter is too long',
  },
};

/** The Cairn code for a Fastify client error that has no entry above, by status. */
function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 401:
      return 'CAIRN_UNAUTHORIZED';
    case 403:
      return 'CAIRN_FORBIDDEN';
    case 404:
      return 'CAIRN_NOT_FOUND';
    case 413:
      return 'CAIRN_PAYLOAD_TOO_LARGE';
    case 415:
      return 'CAIRN_UNSUPPORTED_MEDIA_TYPE';
    case 429:
      return 'CAIRN_RATE_LIMITED';
    default:
      return 'CAIRN_VALIDATION';
  }
}

/** Maps any thrown value to the status and body sent to the client. Pure; exported for tests. */
export function toErrorAnswer(
  error: unknown,
  requestId: string,
  options: { bodyLimitBytes?: number } = {},
): ErrorAnswer {
  if (isCairnError(error)) {
    if (!error.isClientError) return serverError(error.status, error.code, requestId);
    return answer(error.status, error.code, error.message, error.details ?? null);
  }
  const fst = error as Partial<FastifyError> | null;
  if (fst && typeof fst.code === 'string' && fst.code.startsWith('FST_')) {
    const known = FRAMEWORK_ERRORS[fst.code];
    if (known) {
      const details =
        known.code === 'CAIRN_PAYLOAD_TOO_LARGE' && options.bodyLimitBytes !== undefined
          ? { limit_bytes: options.bodyLimitBytes }
          : null;
      return answer(known.status, known.code, known.message ?? fst.message ?? known.code, details);
    }
    const status = fst.statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return answer(status, codeForStatus(status), fst.message ?? 'bad request');
    }
  }
  return serverError(500, 'CAIRN_INTERNAL', requestId);
}

/** Body of a 404 for a URL no route matches. */
export function notFoundAnswer(method: string, url: string): ErrorAnswer {
  const path = url.split('?', 1)[0].slice(0, 200);
  return answer(ERROR_CODES.CAIRN_NOT_FOUND, 'CAIRN_NOT_FOUND', `no route ${method} ${path}`);
}

/** Builds Fastify's error handler (also used for `frameworkErrors`, which bypass the hooks). */
export function buildErrorHandler(options: { bodyLimitBytes: number }) {
  return function errorHandler(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
    const result = toErrorAnswer(error, request.id, options);
    if (result.internal) {
      request.log.error({ err: error, code: result.body.error.code }, 'request failed');
    } else {
      request.log.debug({ code: result.body.error.code, status: result.status }, 'request rejected');
    }
    // Set here too: framework errors (bad URL) are answered before the onRequest hook runs.
    reply.header('x-request-id', request.id);
    return reply.code(result.status).send(result.body);
  };
}
