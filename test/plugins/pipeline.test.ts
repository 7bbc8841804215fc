import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { t as schema } from 'elysia'
import { AppError, toAppError, ValidationError } from '../../src/errors'
import { jsonDepth } from '../../src/plugins/body-parser'
import { seedOf } from '../../src/plugins/seed'
import { bearer, body, createKey, createTestApp, req, type TestApp } from '../helpers'

let t: TestApp
let key: string
beforeAll(async () => {
  t = await createTestApp()
  key = await createKey(t, ['inference'])
  // A handler that breaks its declared schema, as a bug would (the type system is told otherwise on purpose).
  const broken = () => ({ success: true, data: { n: 'not a number' as unknown as number }, errors: [] })
  t.app.get('/api/v1/test/broken-answer', broken, {
    response: {
      200: schema.Object({
        success: schema.Boolean(),
        data: schema.Object({ n: schema.Number() }),
        errors: schema.Array(schema.Unknown()),
      }),
    },
  })
})
afterAll(() => t.close())

describe('request pipeline', () => {
  it('still checks each answer against its response schema (compiled check): a broken answer is a 500 with the cause logged', async () => {
    const res = await t.app.handle(req('/api/v1/test/broken-answer', { headers: { 'x-request-id': 'broken-answer' } }))
    expect(res.status).toBe(500)
    expect((await body(res)).error.code).toBe('INTERNAL_ERROR')
    const line = await t.logs.line((l) => l.request_id === 'broken-answer' && l.msg === 'unhandled error')
    expect(line?.level).toBe('error')
  })

  it('sends the constant headers, computed once, on answers that reach no route and on errors', async () => {
    for (const res of [
      await t.app.handle(req('/api/v1/no-such-route')),
      await t.app.handle(req('/api/v1/models/arith', { headers: bearer('wrong') })),
      await t.app.handle(req('/api/v1/health/live')),
    ]) {
      expect(res.headers.get('x-content-type-options')).toBe('nosniff')
      expect(res.headers.get('content-security-policy')).toBe("default-src 'none'; frame-ancestors 'none'")
      expect(res.headers.get('api-version')).toBe('1')
      expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/)
    }
  })

  it('writes the access line and the request metrics from the same hook pair, with the key id once authenticated', async () => {
    await t.app.handle(req('/api/v1/models/arith', { headers: { ...bearer(key), 'x-request-id': 'pair-line' } }))
    const line = await t.logs.line((l) => l.request_id === 'pair-line' && l.msg === 'request')
    expect(line).toMatchObject({ route: '/api/v1/models/:name', status: 200, method: 'GET' })
    expect(typeof line?.key_id).toBe('string')
    const scraped = await t.deps.metrics.promRegistry.getSingleMetricAsString('http_requests_total')
    expect(scraped).toMatch(/http_requests_total\{method="GET",route="\/api\/v1\/models\/:name",status="200"\} [1-9]/)
  })

  it('takes tensor shapes as JSON integers only: a numeric string is a 400 naming the field', async () => {
    const res = await t.app.handle(
      req('/api/v1/models/arith/infer', {
        method: 'POST',
        headers: bearer(key),
        json: { inputs: [{ name: 'x', shape: ['1', 4], datatype: 'FP32', data: [1, 2, 3, 4] }] },
      }),
    )
    expect(res.status).toBe(400)
    const json = await body(res)
    expect(json.error.code).toBe('VALIDATION_ERROR')
    expect(JSON.stringify(json.error.details)).toContain('/inputs/0/shape/0')
  })
})

describe('jsonDepth', () => {
  it('counts nesting of objects and arrays, not the values in a flat tensor', () => {
    expect(jsonDepth(3)).toBe(0)
    expect(jsonDepth([])).toBe(1)
    expect(jsonDepth({ data: Array.from({ length: 10_000 }, (_, i) => i) })).toBe(2)
    expect(jsonDepth({ inputs: [{ shape: [1, 2], data: [[1], [2]] }] })).toBe(5)
  })

  it('reads an own "__proto__" key as itself', () => {
    expect(jsonDepth(JSON.parse('{"__proto__": [[[1]]]}'))).toBe(4)
  })
})

describe('seedOf', () => {
  it('gives the same services the same seed and different ones different seeds', () => {
    const limiter = {}
    const other = {}
    expect(JSON.stringify(seedOf(limiter, 5, 'a'))).toBe(JSON.stringify(seedOf(limiter, 5, 'a')))
    expect(JSON.stringify(seedOf(limiter))).not.toBe(JSON.stringify(seedOf(other)))
    expect(seedOf(undefined, null, 1)).toEqual([undefined, null, 1])
  })
})

describe('toAppError', () => {
  it('keeps an AppError and turns anything else into the given code, hiding its message and keeping it as cause', () => {
    const known = new ValidationError('bad')
    expect(toAppError(known)).toBe(known)
    const bug = new Error('secret internals')
    const converted = toAppError(bug)
    expect(converted).toBeInstanceOf(AppError)
    expect(converted).toMatchObject({ code: 'INTERNAL_ERROR', status: 500, message: 'Internal server error', cause: bug })
    expect(toAppError('oops', 'PROCESSING_ERROR', 'The model failed')).toMatchObject({
      code: 'PROCESSING_ERROR',
      message: 'The model failed',
    })
  })
})
