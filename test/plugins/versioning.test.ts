import { describe, expect, it } from 'bun:test'
import { req } from '../helpers'
import { expectError, usePluginTestApp } from './helpers'

const t = usePluginTestApp()

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
