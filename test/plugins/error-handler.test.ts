import { describe, expect, it } from 'bun:test'
import { body, req } from '../helpers'
import { expectCommonHeaders, expectError, usePluginTestApp } from './helpers'

const t = usePluginTestApp()

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
