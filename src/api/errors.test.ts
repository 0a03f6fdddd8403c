import { describe, expect, it } from 'vitest';
import { CairnError } from '../errors/errors.ts';
import { notFoundAnswer, toErrorAnswer } from './errors.ts';

function fastifyError(code: string, statusCode: number, message = 'framework message') {
  return Object.assign(new Error(message), { code, statusCode });
}

describe('toErrorAnswer', () => {
  it('keeps a client CairnError as it is', () => {
    const e = CairnError.validation([{ field: 'k', message: 'too big' }]);
    expect(toErrorAnswer(e, 'r1')).toEqual({
      status: 400,
      internal: false,
      body: {
        error: {
          code: 'CAIRN_VALIDATION',
          message: 'k: too big',
          details: { fields: [{ field: 'k', message: 'too big' }] },
        },
      },
    });
    expect(
      toErrorAnswer(new CairnError('CAIRN_NO_PREVIOUS_MODEL', 'none'), 'r1').body.error.details,
    ).toBeNull();
  });

  it('hides the message and details of server-side errors but keeps their code', () => {
    const unavailable = toErrorAnswer(
      new CairnError('CAIRN_UNAVAILABLE', 'redis 10.1.2.3 refused', { host: 'x' }),
      'r2',
    );
    expect(unavailable.status).toBe(503);
    expect(unavailable.internal).toBe(true);
    expect(unavailable.body.error.code).toBe('CAIRN_UNAVAILABLE');
    expect(JSON.stringify(unavailable.body)).not.toMatch(/10\.1\.2\.3|host/);
    for (const thrown of [
      new Error('secret'),
      new TypeError('x is undefined'),
      'a string',
      null,
      { code: 'EPIPE' },
    ]) {
      const a = toErrorAnswer(thrown, 'r3');
      expect(a).toMatchObject({
        status: 500,
        internal: true,
        body: { error: { code: 'CAIRN_INTERNAL', details: { request_id: 'r3' } } },
      });
      expect(a.body.error.message).not.toContain('secret');
    }
  });

  it('maps Fastify client errors to Cairn codes', () => {
    const cases: [string, number, number, string][] = [
      ['FST_ERR_CTP_INVALID_JSON_BODY', 400, 400, 'CAIRN_INVALID_JSON'],
      ['FST_ERR_CTP_EMPTY_JSON_BODY', 400, 400, 'CAIRN_INVALID_JSON'],
      ['FST_ERR_CTP_BODY_TOO_LARGE', 413, 413, 'CAIRN_PAYLOAD_TOO_LARGE'],
      ['FST_ERR_CTP_INVALID_MEDIA_TYPE', 415, 415, 'CAIRN_UNSUPPORTED_MEDIA_TYPE'],
      ['FST_ERR_BAD_URL', 400, 400, 'CAIRN_VALIDATION'],
      ['FST_ERR_SOMETHING_NEW', 429, 429, 'CAIRN_RATE_LIMITED'],
      ['FST_ERR_OTHER_CLIENT', 400, 400, 'CAIRN_VALIDATION'],
      ['FST_ERR_REP_INVALID_PAYLOAD_TYPE', 500, 500, 'CAIRN_INTERNAL'],
    ];
    for (const [code, statusIn, status, cairnCode] of cases) {
      const a = toErrorAnswer(fastifyError(code, statusIn), 'r', { bodyLimitBytes: 1024 });
      expect([code, a.status, a.body.error.code]).toEqual([code, status, cairnCode]);
    }
    expect(
      toErrorAnswer(fastifyError('FST_ERR_CTP_BODY_TOO_LARGE', 413), 'r', { bodyLimitBytes: 1024 }).body.error
        .details,
    ).toEqual({
      limit_bytes: 1024,
    });
    // a non-Fastify error that merely carries a 4xx statusCode is still an internal error
    expect(toErrorAnswer(Object.assign(new Error('lib'), { statusCode: 400 }), 'r').status).toBe(500);
  });

  it('builds 404 bodies without the querystring and with a bounded path', () => {
    expect(notFoundAnswer('GET', '/v9/x?token=abc').body.error).toEqual({
      code: 'CAIRN_NOT_FOUND',
      message: 'no route GET /v9/x',
      details: null,
    });
    expect(notFoundAnswer('GET', `/${'a'.repeat(1000)}`).body.error.message.length).toBeLessThan(220);
  });
});
