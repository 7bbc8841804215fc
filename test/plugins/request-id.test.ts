import { describe, expect, it } from 'bun:test'
import { createTestApp, req } from '../helpers'
import { usePluginTestApp } from './helpers'

const t = usePluginTestApp()

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

  it('logs the address of the socket a request came on, asked of the listening server', async () => {
    const own = await createTestApp()
    try {
      own.app.listen({ hostname: '127.0.0.1', port: 0 })
      await fetch(new URL('/api/v1/health/live', own.app.server!.url), { headers: { 'x-request-id': 'peer-1' } })
      const access = await own.logs.line((l) => l.request_id === 'peer-1' && l.msg === 'request')
      expect(access.ip).toBe('127.0.0.1')
    } finally {
      await own.app.stop()
      await own.close()
    }
  })
})
