import { Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { describe, expect, it } from 'vitest';
import { CairnError } from '../errors/errors.ts';
import { collectIssues, pointerToField, typeboxValidatorCompiler } from './validation.ts';

type Validator = (data: unknown) => { value?: unknown; error?: unknown };

function compile(schema: ReturnType<typeof Type.Object>, httpPart: string): Validator {
  return typeboxValidatorCompiler({ schema, method: 'GET', url: '/t', httpPart }) as Validator;
}

function fieldsOf(result: { error?: unknown }): string[] {
  expect(result.error).toBeInstanceOf(CairnError);
  const error = result.error as CairnError;
  expect(error.code).toBe('CAIRN_VALIDATION');
  return (error.details as { fields: { field: string }[] }).fields.map((f) => f.field);
}

describe('pointerToField', () => {
  it('turns JSON pointers into dotted paths with [index] for array positions', () => {
    expect(pointerToField('/k', 'querystring')).toBe('k');
    expect(pointerToField('/events/3/user_id', 'body')).toBe('events[3].user_id');
    expect(pointerToField('/requests/0/exclude/12', 'body')).toBe('requests[0].exclude[12]');
    expect(pointerToField('/params/a~1b/c~0d', 'body')).toBe('params.a/b.c~d');
    expect(pointerToField('', 'body')).toBe('body');
  });
});

describe('typeboxValidatorCompiler', () => {
  const Query = Type.Object({
    k: Type.Optional(Type.Integer({ minimum: 1, maximum: 10, default: 5 })),
    ratio: Type.Optional(Type.Number()),
    explain: Type.Optional(Type.Boolean()),
    ids: Type.Optional(Type.Array(Type.String())),
    name: Type.Optional(Type.String()),
  });

  it('coerces querystring strings by the schema and fills defaults', () => {
    const validate = compile(Query, 'querystring');
    expect(validate({ k: '3', ratio: '0.5', explain: 'false', ids: 'a', name: '007' })).toEqual({
      value: { k: 3, ratio: 0.5, explain: false, ids: ['a'], name: '007' },
    });
    expect(validate({ explain: '1', ids: ['a', 'b'] })).toEqual({
      value: { k: 5, explain: true, ids: ['a', 'b'] },
    });
    expect(validate({})).toEqual({ value: { k: 5 } });
  });

  it('leaves uncoercible query values to fail the check, naming each field once', () => {
    const validate = compile(Query, 'querystring');
    expect(fieldsOf(validate({ k: 'x' }))).toEqual(['k']);
    expect(fieldsOf(validate({ k: ' ' }))).toEqual(['k']);
    expect(fieldsOf(validate({ k: '11' }))).toEqual(['k']);
    expect(fieldsOf(validate({ k: '1.5', explain: 'yes' }))).toEqual(['k', 'explain']);
    expect(fieldsOf(validate({ k: ['1', '2'] }))).toEqual(['k']);
  });

  it('never coerces bodies', () => {
    const Body = Type.Object(
      {
        user_id: Type.String(),
        k: Type.Optional(Type.Integer()),
        tags: Type.Optional(Type.Array(Type.String())),
      },
      { additionalProperties: false },
    );
    const validate = compile(Body, 'body');
    const good = { user_id: 'u', k: 2, tags: ['x'] };
    expect(validate(good)).toEqual({ value: good });
    expect(fieldsOf(validate({ user_id: 42 }))).toEqual(['user_id']);
    expect(fieldsOf(validate({ user_id: 'u', k: '2' }))).toEqual(['k']);
    expect(fieldsOf(validate({ user_id: 'u', tags: 'x' }))).toEqual(['tags']);
    expect(fieldsOf(validate({ user_id: 'u', extra: 1 }))).toEqual(['extra']);
    expect(fieldsOf(validate(null))).toEqual(['body']);
    expect(fieldsOf(validate([good]))).toEqual(['body']);
  });

  it('reports nested paths and bounds the number of issues', () => {
    const Body = Type.Object({ rows: Type.Array(Type.Object({ id: Type.String() })) });
    const check = TypeCompiler.Compile(Body);
    const rows = Array.from({ length: 100 }, () => ({ id: 1 }));
    const issues = collectIssues(check, { rows }, 'body');
    expect(issues).toHaveLength(20);
    expect(issues[0]).toEqual({ field: 'rows[0].id', message: expect.any(String) });
    expect(issues[19].field).toBe('rows[19].id');
  });

  it('rejects a value nested too deeply to check as a client error, not a crash', () => {
    // uniqueItems makes TypeBox hash every item, recursively (found by test/integration/fuzz.test.ts).
    const validate = compile(
      Type.Object({ tags: Type.Array(Type.Unknown(), { uniqueItems: true }) }),
      'body',
    );
    let deep: unknown = [];
    for (let i = 0; i < 20_000; i++) deep = [deep];
    expect(fieldsOf(validate({ tags: [deep, 1] }))).toEqual(['body']);
    expect(validate({ tags: [[[1]], 1] })).toEqual({ value: { tags: [[[1]], 1] } });
  });

  it('refuses non-TypeBox schemas at startup', () => {
    expect(() =>
      typeboxValidatorCompiler({
        schema: { type: 'object' } as never,
        method: 'GET',
        url: '/x',
        httpPart: 'body',
      }),
    ).toThrow(/not a TypeBox schema/);
  });
});
