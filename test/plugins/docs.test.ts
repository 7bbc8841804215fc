import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { DOCS_CSP } from '../../src/plugins/docs'
import { body, createTestApp, req, type TestApp } from '../helpers'

let t: TestApp
beforeAll(async () => {
  t = await createTestApp()
})
afterAll(() => t.close())

describe('docs', () => {
  it('serves the Swagger UI page with its own CSP and only local assets', async () => {
    const response = await t.app.handle(req('/api/v1/docs'))
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toStartWith('text/html')
    expect(response.headers.get('content-security-policy')).toBe(DOCS_CSP)
    expect(DOCS_CSP).not.toMatch(/https?:/)
    const html = await response.text()
    const sources = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!)
    expect(sources.length).toBe(3)
    for (const source of sources) {
      expect(source).toStartWith('/api/v1/docs/assets/')
      const asset = await t.app.handle(req(source))
      expect(asset.status).toBe(200)
      expect((await asset.text()).length).toBeGreaterThan(50)
    }
  })

  it('answers an unknown asset with the 404 envelope', async () => {
    const response = await t.app.handle(req('/api/v1/docs/assets/../../package.json'))
    expect(response.status).toBe(404)
    expect((await body(response)).success).toBe(false)
  })

  it('documents every route with its envelope and error responses', async () => {
    const spec = await body(await t.app.handle(req('/api/v1/docs/json')))
    expect(spec.openapi).toStartWith('3.')
    expect(spec.info.title).toBe('vireo')
    for (const path of ['/', '/api/v1/health/live', '/api/v1/health/ready']) {
      const get = spec.paths[path]?.get
      expect(get).toBeDefined()
      const ok = get.responses['200'].content['application/json'].schema
      expect(ok.properties.success).toBeDefined()
      expect(ok.properties.errors).toBeDefined()
      const error = get.responses['500'].content['application/json'].schema
      expect(error.properties.request_id).toBeDefined()
    }
    expect(spec.paths['/api/v1/docs']).toBeUndefined()
  })
})
