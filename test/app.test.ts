import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { t as schema } from 'elysia'
import { ValidationError } from '../src/errors'
import { body, createTestApp, req, type TestApp } from './helpers'

let t: TestApp
beforeAll(async () => {
  t = await createTestApp({ CORS_ORIGINS: 'https://app.example.com', MAX_JSON_BYTES: '1024', MAX_UPLOAD_BYTES: '4096' })
  t.app
    .get('/api/v1/test/boom', function boom() {
      throw new Error('connection string postgres://secret@db leaked')
    })
    .post('/api/v1/test/echo', ({ body }) => ({ success: true, data: body, errors: [] }), { body: schema.Unknown() })
    .post(
      '/api/v1/test/size',
      ({ body }) => {
        const value = body as Record<string, unknown> | Uint8Array
        if (value instanceof Uint8Array) return { success: true, data: { bytes: value.byteLength }, errors: [] }
        const file = value.file as File | undefined
        return { success: true, data: { fields: Object.keys(value).sort(), file_bytes: file?.size ?? null }, errors: [] }
      },
      { body: schema.Unknown() },
    )
    .post('/api/v1/test/typed', ({ body }) => ({ success: true, data: body, errors: [] }), {
      body: schema.Object(
        { name: schema.String({ minLength: 1 }), inputs: schema.Array(schema.Object({ shape: schema.Array(schema.Integer()) })) },
        { additionalProperties: false },
      ),
    })
    .get('/api/v1/test/unavailable', ({ status }) => {
      throw status(503)
    })
    .get('/api/v1/test/invalid', function invalid() {
      throw new ValidationError('bad thing', [{ path: '/x', message: 'must be positive' }])
    })
    .get('/api/v1/test/old', () => ({ success: true, data: 'old', errors: [] }), {
      deprecated: {
        since: new Date('2026-01-01T00:00:00Z'),
        sunset: new Date('2027-01-01T00:00:00Z'),
        link: 'https://docs.example.com/migrate',
      },
    })
})
afterAll(() => t.close())

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'api-version': '1',
}

function expectCommonHeaders(response: Response) {
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) expect(response.headers.get(name)).toBe(value)
  expect(response.headers.get('x-request-id')).toMatch(/^[A-Za-z0-9._-]{1,128}$/)
  expect(response.headers.get('x-powered-by')).toBeNull()
  expect(response.headers.get('strict-transport-security')).toBeNull()
}

async function expectError(response: Response, status: number, code: string) {
  expect(response.status).toBe(status)
  expectCommonHeaders(response)
  expect(response.headers.get('content-type')).toStartWith('application/json')
  const json = await body(response)
  expect(json.success).toBe(false)
  expect(json.error.code).toBe(code)
  expect(typeof json.error.message).toBe('string')
  expect(json.request_id).toBe(response.headers.get('x-request-id'))
  return json
}

describe('envelope', () => {
  it('wraps a success in { success, data, errors } with the security headers', async () => {
    const response = await t.app.handle(req('/'))
    expect(response.status).toBe(200)
    expectCommonHeaders(response)
    expect(response.headers.get('content-security-policy')).toBe("default-src 'none'; frame-ancestors 'none'")
    expect(response.headers.get('cache-control')).toBe('no-store')
    const json = await body(response)
    expect(json).toMatchObject({ success: true, data: { name: 'vireo', api_version: '1' }, errors: [] })
  })

  it('answers an unknown route with 404 NOT_FOUND', async () => {
    await expectError(await t.app.handle(req('/api/v1/nothing-here')), 404, 'NOT_FOUND')
  })

  it('answers a known path with the wrong method with 405 and Allow', async () => {
    const response = await t.app.handle(req('/api/v1/health/live', { method: 'DELETE' }))
    const json = await expectError(response, 405, 'METHOD_NOT_ALLOWED')
    expect(response.headers.get('allow')).toBe('GET')
    expect(json.error.details.allowed).toEqual(['GET'])
  })

  it('answers 405 with Allow on collections, with or without the trailing slash', async () => {
    const collections = { '/api/v1/keys': 'GET, POST', '/api/v1/jobs': 'GET, POST', '/api/v1/models': 'GET' }
    for (const [path, allow] of Object.entries(collections))
      for (const method of ['PUT', 'PATCH', 'DELETE'])
        for (const spelling of [path, `${path}/`]) {
          const response = await t.app.handle(req(spelling, { method }))
          expect(response.status, `${method} ${spelling}`).toBe(405)
          expect(response.headers.get('allow')).toBe(allow)
        }
  })

  it('hides the cause of an unexpected exception behind a generic 500 and logs it with the request id', async () => {
    const response = await t.app.handle(req('/api/v1/test/boom', { headers: { 'x-request-id': 'trace-500.a' } }))
    const json = await expectError(response, 500, 'INTERNAL_ERROR')
    expect(json.error.message).toBe('Internal server error')
    expect(JSON.stringify(json)).not.toContain('postgres://')
    expect(json.request_id).toBe('trace-500.a')
    const line = await t.logs.line((l) => l.request_id === 'trace-500.a' && l.level === 'error' && Boolean(l.err))
    expect(line).toBeDefined()
    expect((line!.err as { stack: string }).stack).toContain('boom')
  })

  it('renders a thrown AppError with its details', async () => {
    const json = await expectError(await t.app.handle(req('/api/v1/test/invalid')), 400, 'VALIDATION_ERROR')
    expect(json.error.details).toEqual([{ path: '/x', message: 'must be positive' }])
  })
})

describe('request bodies', () => {
  it('refuses malformed JSON with 400', async () => {
    const json = await expectError(
      await t.app.handle(req('/api/v1/test/echo', { method: 'POST', body: '{"a":', headers: { 'content-type': 'application/json' } })),
      400,
      'VALIDATION_ERROR',
    )
    expect(json.error.message).toContain('not valid JSON')
  })

  it('refuses an empty JSON body with 400', async () => {
    await expectError(
      await t.app.handle(req('/api/v1/test/echo', { method: 'POST', body: '', headers: { 'content-type': 'application/json' } })),
      400,
      'VALIDATION_ERROR',
    )
  })

  it('refuses deeply nested JSON', async () => {
    const deep = `${'['.repeat(200)}${']'.repeat(200)}`
    const json = await expectError(
      await t.app.handle(req('/api/v1/test/echo', { method: 'POST', body: deep, headers: { 'content-type': 'application/json' } })),
      400,
      'VALIDATION_ERROR',
    )
    expect(json.error.message).toContain('nested deeper')
  })

  it('refuses a Content-Type it does not accept with 415', async () => {
    await expectError(
      await t.app.handle(req('/api/v1/test/echo', { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } })),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    )
  })

  it('answers 413 for a declared Content-Length over the limit', async () => {
    const response = await t.app.handle(
      req('/api/v1/test/echo', {
        method: 'POST',
        body: JSON.stringify({ a: 'x'.repeat(2000) }),
        headers: { 'content-type': 'application/json' },
      }),
    )
    const json = await expectError(response, 413, 'PAYLOAD_TOO_LARGE')
    expect(json.error.details.limit_bytes).toBe(1024)
  })

  it('answers 413 for a chunked body that grows past the limit, without reading it all', async () => {
    let pulled = 0
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++
        if (pulled > 1000) return controller.close()
        controller.enqueue(new TextEncoder().encode(`"${'y'.repeat(254)}",`))
      },
    })
    const request = new Request('http://localhost/api/v1/test/echo', {
      method: 'POST',
      body: stream,
      headers: { 'content-type': 'application/json' },
    })
    expect(request.headers.get('content-length')).toBeNull()
    await expectError(await t.app.handle(request), 413, 'PAYLOAD_TOO_LARGE')
    expect(pulled).toBeLessThan(20)
  })

  it('names each failing field path with 400 VALIDATION_ERROR, not 422', async () => {
    const response = await t.app.handle(
      req('/api/v1/test/typed', { method: 'POST', json: { name: '', inputs: [{ shape: ['x'] }], extra: 1 } }),
    )
    const json = await expectError(response, 400, 'VALIDATION_ERROR')
    const paths = (json.error.details as { path: string; message: string }[]).map((d) => d.path)
    expect(paths).toContain('/name')
    expect(paths).toContain('/inputs/0/shape/0')
    expect(paths).toContain('/extra')
    for (const detail of json.error.details) expect(detail.message.length).toBeGreaterThan(3)
  })

  it('answers 415 when a JSON route receives audio', async () => {
    const response = await t.app.handle(
      req('/api/v1/test/typed', { method: 'POST', body: new Uint8Array(8), headers: { 'content-type': 'audio/wav' } }),
    )
    await expectError(response, 415, 'UNSUPPORTED_MEDIA_TYPE')
  })

  it('maps a bare framework status to its contract code', async () => {
    await expectError(await t.app.handle(req('/api/v1/test/unavailable')), 503, 'SERVICE_UNAVAILABLE')
  })

  it('reads raw audio, multipart and url-encoded bodies under their limits', async () => {
    const raw = await t.app.handle(
      req('/api/v1/test/size', { method: 'POST', body: new Uint8Array(3000), headers: { 'content-type': 'audio/wav' } }),
    )
    expect((await body(raw)).data).toEqual({ bytes: 3000 })
    const form = new FormData()
    form.set('file', new File([new Uint8Array(100)], 'a.wav', { type: 'audio/wav' }))
    form.set('threshold', '0.4')
    const multipart = await t.app.handle(new Request('http://localhost/api/v1/test/size', { method: 'POST', body: form }))
    expect((await body(multipart)).data).toEqual({ fields: ['file', 'threshold'], file_bytes: 100 })
    const urlencoded = await t.app.handle(
      req('/api/v1/test/size', { method: 'POST', body: 'a=1&b=2', headers: { 'content-type': 'application/x-www-form-urlencoded' } }),
    )
    expect((await body(urlencoded)).data).toEqual({ fields: ['a', 'b'], file_bytes: null })
  })

  it('uses the upload limit for audio: 413 past MAX_UPLOAD_BYTES', async () => {
    const response = await t.app.handle(
      req('/api/v1/test/size', { method: 'POST', body: new Uint8Array(5000), headers: { 'content-type': 'audio/wav' } }),
    )
    const json = await expectError(response, 413, 'PAYLOAD_TOO_LARGE')
    expect(json.error.details.limit_bytes).toBe(4096)
  })

  it('refuses a multipart body with a broken boundary', async () => {
    const response = await t.app.handle(
      req('/api/v1/test/size', {
        method: 'POST',
        body: '--nope\r\ngarbage',
        headers: { 'content-type': 'multipart/form-data; boundary=zzz' },
      }),
    )
    await expectError(response, 400, 'VALIDATION_ERROR')
  })

  it('accepts a body within the limit', async () => {
    const response = await t.app.handle(req('/api/v1/test/echo', { method: 'POST', json: { hello: 'world' } }))
    expect(response.status).toBe(200)
    expect((await body(response)).data).toEqual({ hello: 'world' })
  })
})

describe('request id', () => {
  it('keeps a valid incoming id', async () => {
    const response = await t.app.handle(req('/api/v1/health/live', { headers: { 'x-request-id': 'abc-123_x.y' } }))
    expect(response.headers.get('x-request-id')).toBe('abc-123_x.y')
  })

  it('replaces an id that is too long', async () => {
    const long = 'a'.repeat(10_000)
    const response = await t.app.handle(req('/api/v1/health/live', { headers: { 'x-request-id': long } }))
    expect(response.headers.get('x-request-id')).not.toBe(long)
    expect(response.headers.get('x-request-id')!.length).toBeLessThanOrEqual(128)
  })

  it('replaces an id with characters outside the allowed set', async () => {
    for (const bad of ['a b', 'x;y', 'ünï', 'a%0d%0aSet-Cookie:x']) {
      const response = await t.app.handle(req('/api/v1/health/live', { headers: { 'x-request-id': bad } }))
      expect(response.headers.get('x-request-id')).not.toBe(bad)
    }
  })

  it('cannot be used for header injection: a CRLF id is refused by the HTTP layer itself', () => {
    expect(() => new Headers({ 'x-request-id': 'a\r\nSet-Cookie: x=1' })).toThrow()
  })

  it('puts the id on every log line of the request', async () => {
    await t.app.handle(req('/api/v1/nope', { headers: { 'x-request-id': 'every-line-1' } }))
    await t.logs.line((l) => l.request_id === 'every-line-1' && l.msg === 'request')
    const lines = t.logs.lines.filter((l) => l.request_id === 'every-line-1')
    expect(lines.length).toBeGreaterThanOrEqual(2)
    const access = lines.find((l) => l.msg === 'request')!
    expect(access).toMatchObject({ method: 'GET', route: 'unmatched', status: 404 })
    expect(typeof access.duration_ms).toBe('number')
    expect(access.ip).toBeDefined()
  })
})

describe('versioning', () => {
  it('refuses another API version named in API-Version or Accept-Version', async () => {
    await expectError(await t.app.handle(req('/', { headers: { 'api-version': '2' } })), 400, 'UNSUPPORTED_API_VERSION')
    await expectError(
      await t.app.handle(req('/api/v1/health/live', { headers: { 'accept-version': '0' } })),
      400,
      'UNSUPPORTED_API_VERSION',
    )
  })

  it('accepts version 1 named explicitly', async () => {
    expect((await t.app.handle(req('/', { headers: { 'api-version': '1' } }))).status).toBe(200)
  })

  it('announces a deprecated route with Deprecation, Sunset and Link', async () => {
    const response = await t.app.handle(req('/api/v1/test/old'))
    expect(response.status).toBe(200)
    expect(response.headers.get('deprecation')).toBe(`@${Date.parse('2026-01-01T00:00:00Z') / 1000}`)
    expect(response.headers.get('sunset')).toBe('Fri, 01 Jan 2027 00:00:00 GMT')
    expect(response.headers.get('link')).toBe('<https://docs.example.com/migrate>; rel="deprecation"; type="text/html"')
    expect((await t.app.handle(req('/'))).headers.get('deprecation')).toBeNull()
  })
})

describe('cors', () => {
  it('allows a listed origin and exposes vireo headers', async () => {
    const response = await t.app.handle(req('/', { headers: { origin: 'https://app.example.com' } }))
    expect(response.headers.get('access-control-allow-origin')).toBe('https://app.example.com')
    expect(response.headers.get('vary')).toContain('Origin')
    const exposed = response.headers.get('access-control-expose-headers')!
    for (const h of ['X-Request-Id', 'Retry-After', 'RateLimit', 'RateLimit-Policy']) expect(exposed).toContain(h)
  })

  it('gives a disallowed origin no Access-Control-Allow-Origin', async () => {
    for (const origin of ['https://evil.example.com', 'http://app.example.com', 'https://app.example.com.evil.io']) {
      const response = await t.app.handle(req('/', { headers: { origin } }))
      expect(response.headers.get('access-control-allow-origin')).toBeNull()
    }
  })

  it('answers a preflight with the allowed methods and headers', async () => {
    const response = await t.app.handle(
      req('/api/v1/health/live', {
        method: 'OPTIONS',
        headers: {
          origin: 'https://app.example.com',
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization',
        },
      }),
    )
    expect(response.status).toBe(204)
    expect(response.headers.get('access-control-allow-methods')).toBe('GET, POST, DELETE, OPTIONS')
    expect(response.headers.get('access-control-allow-headers')).toContain('Authorization')
  })
})

describe('production headers', () => {
  it('sends HSTS only in production', async () => {
    const prod = await createTestApp({
      NODE_ENV: 'production',
      CORS_ORIGINS: 'https://a.example.com',
      ADMIN_API_KEY: 'q7T_xV2mK9pL4wZr8bN1cY6hJ3fD0sG5eA-uQiWoR',
      HSTS_MAX_AGE_MS: '600000',
    })
    try {
      for (const path of ['/', '/api/v1/missing']) {
        const response = await prod.app.handle(req(path))
        expect(response.headers.get('strict-transport-security')).toBe('max-age=600; includeSubDomains')
      }
    } finally {
      await prod.close()
    }
  })
})
