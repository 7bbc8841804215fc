import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import Ajv2020 from 'ajv/dist/2020'
import fc from 'fast-check'
import { bearer, createKey, createTestApp, type TestApp } from '../helpers'
import { operations as listOperations } from './helpers'

/**
 * Contract fuzzing: every operation of the served OpenAPI document gets requests generated from its own
 * schemas (valid, and broken on purpose) with a valid and an invalid key. Each answer must be documented
 * for that operation, never a 5xx, JSON where JSON is promised, and match the documented response schema.
 */

type Schema = Record<string, unknown> & {
  type?: string | string[]
  properties?: Record<string, Schema>
  required?: string[]
  items?: Schema
  anyOf?: Schema[]
  enum?: unknown[]
  const?: unknown
}
interface Operation {
  parameters?: { name: string; in: string; required?: boolean; schema: Schema }[]
  requestBody?: { content: Record<string, { schema: Schema }> }
  responses: Record<string, { content?: Record<string, { schema: Schema }> }>
  security?: unknown[]
}

let t: TestApp
let admin: string
let spec: { paths: Record<string, Record<string, Operation>>; components?: { schemas?: Record<string, Schema> } }
const ajv = new Ajv2020({ strict: false, allErrors: false, validateFormats: false })

beforeAll(async () => {
  t = await createTestApp({ METRICS_TOKEN: 'contract-metrics-token-0123456789' })
  admin = await createKey(t, ['admin'])
  spec = await (await t.app.handle(new Request('http://localhost/api/v1/docs/json'))).json()
})
afterAll(() => t.close())

/** Known-good values where a random one would only ever find "not found". */
const PATH_VALUES: Record<string, string[]> = { name: ['arith', 'dynbatch', 'no-such-model'] }

/** A fast-check arbitrary for the values a JSON schema accepts (the subset vireo's documents use). */
function arbitrary(schema: Schema | undefined, depth = 0): fc.Arbitrary<unknown> {
  if (!schema || depth > 6) return fc.constant(null)
  if (schema.const !== undefined) return fc.constant(schema.const)
  if (schema.enum) return fc.constantFrom(...schema.enum)
  if (schema.anyOf) return fc.oneof(...schema.anyOf.map((s) => arbitrary(s, depth + 1)))
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type
  switch (type) {
    case 'string': {
      if (schema.format === 'uuid') return fc.uuid()
      if (schema.format === 'date-time')
        return fc.date({ min: new Date('2031-01-01'), max: new Date('2040-01-01'), noInvalidDate: true }).map((d) => d.toISOString())
      if (schema.format === 'binary') return fc.uint8Array({ maxLength: 64 }).map((b) => new File([b], 'sample.wav', { type: 'audio/wav' }))
      if (typeof schema.pattern === 'string')
        return fc.stringMatching(new RegExp(schema.pattern)).filter((s) => s.length <= Number(schema.maxLength ?? 256))
      return fc.string({ minLength: Number(schema.minLength ?? 0), maxLength: Math.min(Number(schema.maxLength ?? 24), 24) })
    }
    case 'integer':
      return fc.integer({ min: Number(schema.minimum ?? -1000), max: Math.min(Number(schema.maximum ?? 1000), 1_000_000) })
    case 'number':
      return fc.double({ min: Number(schema.minimum ?? -1000), max: Number(schema.maximum ?? 1000), noNaN: true })
    case 'boolean':
      return fc.boolean()
    case 'array':
      return fc.array(arbitrary(schema.items, depth + 1), {
        minLength: Number(schema.minItems ?? 0),
        maxLength: Math.min(Number(schema.maxItems ?? 3), 3),
      })
    case 'object': {
      const properties = schema.properties ?? {}
      const required = new Set(schema.required ?? [])
      const record: Record<string, fc.Arbitrary<unknown>> = {}
      for (const [key, value] of Object.entries(properties)) record[key] = arbitrary(value, depth + 1)
      return fc.record(record, { requiredKeys: Object.keys(properties).filter((k) => required.has(k)) })
    }
    default:
      return fc.oneof(fc.integer(), fc.string(), fc.constant(null))
  }
}

/** Values that break a schema: the wrong type, an unknown property, a required property missing. */
function broken(schema: Schema): fc.Arbitrary<unknown> {
  const options: fc.Arbitrary<unknown>[] = [fc.constant(42), fc.constant('not an object'), fc.constant([])]
  if (schema.type === 'object') {
    options.push(arbitrary(schema).map((v) => ({ ...(v as object), unexpected_field: true })))
    for (const key of schema.required ?? [])
      options.push(arbitrary(schema).map((v) => Object.fromEntries(Object.entries(v as object).filter(([k]) => k !== key))))
  }
  return fc.oneof(...options)
}

interface Sample {
  path: Record<string, string>
  query: Record<string, unknown>
  body?: unknown
}

function sampleArbitrary(op: Operation, mediaType: string | undefined, breakBody: boolean): fc.Arbitrary<Sample> {
  const path: Record<string, fc.Arbitrary<string>> = {}
  const query: Record<string, fc.Arbitrary<unknown>> = {}
  const requiredQuery: string[] = []
  for (const p of op.parameters ?? []) {
    if (p.in === 'path')
      path[p.name] = PATH_VALUES[p.name]
        ? fc.constantFrom(...PATH_VALUES[p.name]!)
        : (arbitrary(p.schema) as fc.Arbitrary<string>).map(String)
    if (p.in === 'query') {
      query[p.name] = arbitrary(p.schema)
      if (p.required) requiredQuery.push(p.name)
    }
  }
  const schema = mediaType ? op.requestBody!.content[mediaType]!.schema : undefined
  return fc.record({
    path: fc.record(path),
    query: fc.record(query, { requiredKeys: requiredQuery }),
    body: schema ? (breakBody ? broken(schema) : arbitrary(schema)) : fc.constant(undefined),
  })
}

function toRequest(
  template: string,
  method: string,
  sample: Sample,
  mediaType: string | undefined,
  headers: Record<string, string>,
): Request {
  let url = template.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(sample.path[name] ?? 'x'))
  const query = new URLSearchParams()
  for (const [k, v] of Object.entries(sample.query)) if (v !== undefined && v !== null) query.set(k, String(v))
  if ([...query].length) url += `?${query}`
  const init: RequestInit = { method: method.toUpperCase(), headers: { ...headers } }
  if (mediaType === 'multipart/form-data' && sample.body && typeof sample.body === 'object') {
    const form = new FormData()
    for (const [k, v] of Object.entries(sample.body)) if (v !== undefined && v !== null) form.set(k, v instanceof File ? v : String(v))
    init.body = form
  } else if (mediaType && sample.body !== undefined) {
    ;(init.headers as Record<string, string>)['content-type'] = mediaType
    init.body = JSON.stringify(sample.body)
  }
  return new Request(`http://localhost${url}`, init)
}

function documented(op: Operation, status: number) {
  return op.responses[String(status)] ?? op.responses[`${String(status)[0]}XX`] ?? op.responses.default
}

async function check(op: Operation, label: string, response: Response) {
  const status = response.status
  expect(status, `${label}: 5xx`).toBeLessThan(500)
  const doc = documented(op, status)
  expect(doc, `${label}: status ${status} is not documented`).toBeDefined()
  const content = doc!.content
  if (!content) return
  const type = response.headers.get('content-type') ?? ''
  const [mediaType, media] = Object.entries(content)[0]!
  if (mediaType === 'application/json') {
    expect(type, `${label}: content-type`).toStartWith('application/json')
    const json = await response.json()
    const validate = ajv.compile({ ...media.schema, $defs: spec.components?.schemas })
    expect(
      validate(json),
      `${label}: body does not match its schema: ${ajv.errorsText(validate.errors)} ${JSON.stringify(json).slice(0, 300)}`,
    ).toBe(true)
  }
}

const operations = () => listOperations(spec)

describe('contract fuzzing', () => {
  it('covers every documented operation', () => {
    expect(operations().length).toBeGreaterThanOrEqual(15)
  })

  it('answers generated valid requests within the documented contract', async () => {
    const statuses: number[] = []
    for (const { path, method, op } of operations()) {
      if (path.endsWith('/stream')) continue
      const mediaType = op.requestBody ? Object.keys(op.requestBody.content)[0] : undefined
      await fc.assert(
        fc.asyncProperty(sampleArbitrary(op, mediaType, false), async (sample) => {
          const request = toRequest(path, method, sample, mediaType, bearer(admin))
          const response = await t.app.handle(request)
          statuses.push(response.status)
          await check(op, `${method.toUpperCase()} ${path} ${JSON.stringify(sample).slice(0, 200)}`, response)
        }),
        { numRuns: 12, seed: 42 },
      )
    }
    // Schema-valid requests must mostly get through: a contract that only ever answers errors would pass the rest.
    expect(statuses.filter((s) => s < 300).length).toBeGreaterThan(statuses.length / 3)
  })

  it('rejects generated invalid bodies with a documented 4xx', async () => {
    for (const { path, method, op } of operations()) {
      const mediaType = op.requestBody ? Object.keys(op.requestBody.content)[0] : undefined
      if (!mediaType || mediaType !== 'application/json') continue
      await fc.assert(
        fc.asyncProperty(sampleArbitrary(op, mediaType, true), async (sample) => {
          const label = `${method.toUpperCase()} ${path} broken ${JSON.stringify(sample.body).slice(0, 200)}`
          const response = await t.app.handle(toRequest(path, method, sample, mediaType, bearer(admin)))
          expect(response.status, label).toBeGreaterThanOrEqual(400)
          await check(op, label, response)
        }),
        { numRuns: 12, seed: 7 },
      )
    }
  })

  it('answers every protected operation 401, as documented, to an invalid key', async () => {
    for (const { path, method, op } of operations()) {
      // The stream answers only WebSocket upgrades; its refusals are tested over a real socket (test/modules/audio/stream.test.ts).
      if (path.endsWith('/stream') || (Array.isArray(op.security) && op.security.length === 0)) continue
      const mediaType = op.requestBody ? Object.keys(op.requestBody.content)[0] : undefined
      const [sample] = fc.sample(sampleArbitrary(op, mediaType, false), { numRuns: 1, seed: 1 })
      const response = await t.app.handle(
        toRequest(path, method, sample!, mediaType, bearer('vk_00000000_not-a-real-key-not-a-real-key-not-a-real-k')),
      )
      expect(response.status, `${method} ${path}`).toBe(401)
      await check(op, `${method} ${path} invalid key`, response)
    }
  })
})
