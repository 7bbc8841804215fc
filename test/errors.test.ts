import { describe, expect, it } from 'bun:test'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { t } from 'elysia'
import {
  AppError,
  ConflictError,
  ERROR_CODES,
  ForbiddenError,
  IdempotencyKeyReusedError,
  issueMessage,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  ProcessingError,
  RateLimitedError,
  ServiceUnavailableError,
  TimeoutError,
  UnauthorizedError,
  UnsupportedApiVersionError,
  UnsupportedMediaTypeError,
  ValidationError,
} from '../src/errors'

describe('error classes', () => {
  const cases: [AppError, string, number][] = [
    [new ValidationError('x'), 'VALIDATION_ERROR', 400],
    [new UnsupportedApiVersionError('2', '1'), 'UNSUPPORTED_API_VERSION', 400],
    [new UnauthorizedError(), 'UNAUTHORIZED', 401],
    [new ForbiddenError('admin'), 'FORBIDDEN', 403],
    [new NotFoundError(), 'NOT_FOUND', 404],
    [new MethodNotAllowedError('PUT', ['GET', 'POST']), 'METHOD_NOT_ALLOWED', 405],
    [new ConflictError('done'), 'CONFLICT', 409],
    [new PayloadTooLargeError(10), 'PAYLOAD_TOO_LARGE', 413],
    [new UnsupportedMediaTypeError('no'), 'UNSUPPORTED_MEDIA_TYPE', 415],
    [new IdempotencyKeyReusedError(), 'IDEMPOTENCY_KEY_REUSED', 422],
    [new RateLimitedError('inference', 7), 'RATE_LIMITED', 429],
    [new ProcessingError('model failed'), 'PROCESSING_ERROR', 500],
    [new AppError('INTERNAL_ERROR', 'bug'), 'INTERNAL_ERROR', 500],
    [new ServiceUnavailableError('busy', 3), 'SERVICE_UNAVAILABLE', 503],
    [new TimeoutError('slow'), 'TIMEOUT_ERROR', 504],
  ]

  it('covers every code in the table exactly as the contract maps them', () => {
    expect(new Set(cases.map(([, code]) => code))).toEqual(new Set(Object.keys(ERROR_CODES)))
    for (const [error, code, status] of cases) {
      expect(error.code).toBe(code as never)
      expect(error.status).toBe(status)
      expect(error).toBeInstanceOf(AppError)
      expect(error.name).toBe(error.constructor.name)
    }
  })

  it('carries the headers a client needs to react', () => {
    expect(new MethodNotAllowedError('PUT', ['GET', 'POST']).headers.Allow).toBe('GET, POST')
    expect(new RateLimitedError('inference', 7).headers['Retry-After']).toBe('7')
    expect(new ServiceUnavailableError('busy', 3).headers['Retry-After']).toBe('3')
    expect(new UnauthorizedError().headers['WWW-Authenticate']).toContain('Bearer')
  })

  it('leaves details out of a validation error without issues', () => {
    expect(new ValidationError('x').details).toBeUndefined()
    expect(new ValidationError('x', [{ path: '/a', message: 'm' }]).details).toEqual([{ path: '/a', message: 'm' }])
  })
})

describe('issueMessage', () => {
  const first = (schema: Parameters<typeof TypeCompiler.Compile>[0], value: unknown) => [...TypeCompiler.Compile(schema).Errors(value)][0]!

  it("says what is wrong with a number out of an Elysia integer's bounds, not the union's types", () => {
    const limits = t.Object({ n: t.Integer({ minimum: 1, maximum: 100 }) })
    expect(first(limits, { n: 0 }).message).toBe('Expected union value')
    expect(issueMessage(first(limits, { n: 0 }))).toBe('Expected integer to be greater or equal to 1')
    expect(issueMessage(first(limits, { n: 101 }))).toBe('Expected integer to be less or equal to 100')
    expect(issueMessage(first(limits, { n: 'many' }))).toBe('Expected integer')
  })

  it("keeps any other issue's own message, and Elysia's summary where there is one", () => {
    expect(issueMessage(first(t.Object({ s: t.String() }), { s: 1 }))).toBe('Expected string')
    const either = t.Object({ u: t.Union([t.String(), t.Boolean()]) })
    expect(issueMessage(first(either, { u: 1 }))).toBe('Expected union value')
    expect(issueMessage({ message: 'Expected union value', summary: "Property 'u' should be one of: 'string', 'boolean'" })).toBe(
      "Property 'u' should be one of: 'string', 'boolean'",
    )
  })
})
