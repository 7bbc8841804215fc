import { describe, expect, it } from 'bun:test'
import { req } from '../helpers'
import { usePluginTestApp } from './helpers'

const t = usePluginTestApp()

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
