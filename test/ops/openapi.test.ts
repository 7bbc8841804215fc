import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { finishSchemas, withoutTrailingSlashes } from '../../src/plugins/docs'
import { body, createTestApp, req, type TestApp } from '../helpers'
import { operations as listOperations } from './helpers'

interface Operation {
  security?: Record<string, string[]>[]
  requestBody?: { content: Record<string, { schema: unknown }> }
  responses: Record<string, { headers?: Record<string, unknown>; content?: Record<string, unknown> }>
}

let t: TestApp
let spec: {
  security: unknown
  servers: Record<string, unknown>[]
  components: { securitySchemes: Record<string, Record<string, string>> }
  paths: Record<string, Record<string, Operation>>
}
const operations = () => listOperations(spec)

beforeAll(async () => {
  t = await createTestApp()
  spec = await body(await t.app.handle(req('/api/v1/docs/json')))
})
afterAll(() => t.close())

describe('OpenAPI document', () => {
  it('declares both ways to send a key, protects by default, and leaves public routes open', () => {
    expect(spec.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' })
    expect(spec.components.securitySchemes.apiKey).toMatchObject({ type: 'apiKey', in: 'header', name: 'X-API-Key' })
    expect(spec.security).toEqual([{ bearer: [] }, { apiKey: [] }])
    expect(spec.paths['/api/v1/health/live']?.get?.security).toEqual([])
    expect(spec.paths['/api/v1/keys']?.post?.security).toEqual([{ bearer: [] }, { apiKey: [] }])
  })

  it('says which audience and environment its server is for', () => {
    expect(spec.servers[0]).toMatchObject({ url: '/', 'x-internal': false })
    expect(String(spec.servers[0]?.description)).toMatch(/production/)
  })

  it('documents paths without a trailing slash', () => {
    const paths = Object.keys(spec.paths)
    expect(paths).toContain('/api/v1/keys')
    expect(paths.filter((p) => p !== '/' && p.endsWith('/'))).toEqual([])
  })

  it('gives every request body its media type and schema', () => {
    const withBody = operations().filter(({ op }) => op.requestBody)
    expect(withBody.length).toBeGreaterThan(0)
    for (const { op } of withBody) expect(Object.keys(op.requestBody!.content).length).toBeGreaterThan(0)
    const create = spec.paths['/api/v1/keys']!.post!.requestBody!.content['application/json']!.schema as { properties: object }
    expect(Object.keys(create.properties)).toContain('scopes')
  })

  it('documents the rate-limit headers, and Retry-After on 429', () => {
    for (const { op } of operations()) {
      const too = op.responses['429']
      if (!too) continue
      expect(Object.keys(too.headers ?? {})).toContain('Retry-After')
      for (const [status, response] of Object.entries(op.responses))
        if (/^[24]/.test(status))
          expect(Object.keys(response.headers ?? {})).toEqual(expect.arrayContaining(['RateLimit', 'RateLimit-Policy']))
    }
  })

  it('has no coercing string branches left (their numeric defaults made the document invalid)', () => {
    expect(JSON.stringify(spec)).not.toMatch(/"format":"(integer|numeric|boolean)"/)
    const limit = spec.paths['/api/v1/keys']!.get as unknown as { parameters: { name: string; schema: unknown }[] }
    expect(limit.parameters.find((p) => p.name === 'limit')?.schema).toEqual({ minimum: 1, maximum: 100, default: 20, type: 'integer' })
  })

  it('still validates responses that carry documented headers', async () => {
    const response = await t.app.handle(req('/api/v1/health/live'))
    expect(response.status).toBe(200)
    expect((await body(response)).success).toBe(true)
  })
})

describe('document finishing', () => {
  it('collapses coercing unions to the plain type, keeping the outer bounds', () => {
    const coerced = {
      minimum: 1,
      anyOf: [
        { type: 'string', format: 'integer', default: 0 },
        { type: 'integer', minimum: 1 },
      ],
    }
    expect(finishSchemas({ properties: { n: coerced } })).toEqual({ properties: { n: { minimum: 1, type: 'integer' } } })
    const nullable = { anyOf: [{ type: 'string' }, { type: 'null' }] }
    expect(finishSchemas(nullable)).toEqual(nullable)
  })

  it('merges a slash and a slash-less path into one', () => {
    const paths: Record<string, Record<string, number>> = { '/': { get: 1 }, '/a/': { post: 2 }, '/a': { get: 3 } }
    expect(withoutTrailingSlashes(paths)).toEqual({
      '/': { get: 1 },
      '/a': { post: 2, get: 3 },
    })
  })
})
