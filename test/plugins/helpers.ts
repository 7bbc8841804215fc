import { afterAll, beforeAll, expect } from 'bun:test'
import { t as schema } from 'elysia'
import { ValidationError } from '../../src/errors'
import { body, createTestApp, type TestApp } from '../helpers'

/** The app with routes that make each plugin speak: a crash, an echo, sized and typed bodies, a 503, a deprecated route. */
async function pluginTestApp(): Promise<TestApp> {
  const t = await createTestApp({ CORS_ORIGINS: 'https://app.example.com', MAX_JSON_BYTES: '1024', MAX_UPLOAD_BYTES: '4096' })
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
  return t
}

/**
 * The plugin test app for the calling test file: built before its tests, closed after them. The fields read the app
 * of the moment, so a file can hold `t` at top level.
 */
export function usePluginTestApp(): TestApp {
  let current: TestApp | undefined
  beforeAll(async () => {
    current = await pluginTestApp()
  })
  afterAll(() => current?.close())
  const started = () => {
    if (!current) throw new Error('the plugin test app is used outside a test')
    return current
  }
  return {
    get app() {
      return started().app
    },
    get deps() {
      return started().deps
    },
    get logs() {
      return started().logs
    },
    close: () => started().close(),
  }
}

export const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'api-version': '1',
}

export function expectCommonHeaders(response: Response) {
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) expect(response.headers.get(name)).toBe(value)
  expect(response.headers.get('x-request-id')).toMatch(/^[A-Za-z0-9._-]{1,128}$/)
  expect(response.headers.get('x-powered-by')).toBeNull()
  expect(response.headers.get('strict-transport-security')).toBeNull()
}

export async function expectError(response: Response, status: number, code: string) {
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
