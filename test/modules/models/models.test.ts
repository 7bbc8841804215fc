import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { bearer, body, createKey, createTestApp, req, type TestApp, until } from '../../helpers'
import { expectedBackend } from '../../inference/helpers'

let t: TestApp
let key: string
let jobsKey: string
beforeAll(async () => {
  t = await createTestApp({ INFERENCE_WORKERS: '2', INFERENCE_MAX_BATCH: '4' })
  key = await createKey(t, ['inference'])
  jobsKey = await createKey(t, ['inference', 'jobs'])
})
afterAll(() => t.close())

const x = (data = [1, 2, 3, 4]) => ({ name: 'x', shape: [1, 4], datatype: 'FP32', data })
const n = (data: (number | string)[] = [1, 2]) => ({ name: 'n', shape: [1, 2], datatype: 'INT64', data })
const infer = (model: string, json: unknown, headers: Record<string, string> = {}) =>
  t.app.handle(req(`/api/v1/models/${model}/infer`, { method: 'POST', json, headers: { ...bearer(key), ...headers } }))
const h0 = { name: 'h0', shape: [1, 64], datatype: 'FP32', data: Array.from({ length: 64 }, (_, i) => (i % 8) / 8) }
const slow = (iters: number, timeout_ms?: number) => ({
  inputs: [{ name: 'iters', shape: [], datatype: 'INT64', data: [iters] }, h0],
  parameters: timeout_ms ? { timeout_ms } : undefined,
})

describe('worker terminations per API key', () => {
  it('answers 429 with Retry-After to a key whose cancelled runs used up its terminations, and serves another key', async () => {
    const own = await createTestApp({ INFERENCE_TERMINATIONS_PER_KEY_PER_MIN: '1' })
    try {
      const greedy = await createKey(own, ['inference'], 'greedy')
      const polite = await createKey(own, ['inference'], 'polite')
      const post = (secret: string, model: string, json: unknown) =>
        own.app.handle(req(`/api/v1/models/${model}/infer`, { method: 'POST', json, headers: bearer(secret) }))
      expect((await post(greedy, 'slow', slow(100_000_000, 300))).status).toBe(504)
      await until(() => own.deps.registry.pool.stats().terminations === 1)
      const refused = await post(greedy, 'arith', { inputs: [x(), n()] })
      expect(refused.status).toBe(429)
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0)
      expect((await body(refused)).error).toMatchObject({ code: 'RATE_LIMITED', details: { policy: 'inference-terminations' } })
      // The other key is served as soon as the replacement worker is up.
      await until(() => own.deps.registry.pool.stats().workers.every((w) => w.state === 'idle'))
      expect((await post(polite, 'arith', { inputs: [x(), n()] })).status).toBe(200)
    } finally {
      await own.close()
    }
  })
})

describe('GET /api/v1/models', () => {
  it('lists every model with its status, and explains the failed ones', async () => {
    const json = await body(await t.app.handle(req('/api/v1/models', { headers: bearer(key) })))
    const byName = Object.fromEntries(json.data.map((m: { name: string }) => [m.name, m]))
    expect(byName.arith.status).toBe('ready')
    expect(byName.arith.backend).toBe(expectedBackend)
    expect(byName.corrupt.status).toBe('failed')
    expect(byName.corrupt.reason.length).toBeGreaterThan(5)
    expect(byName.badmanifest.status).toBe('failed')
  })

  it('describes one model with inputs and outputs read from the session', async () => {
    const json = await body(await t.app.handle(req('/api/v1/models/arith', { headers: bearer(key) })))
    expect(json.data.inputs).toContainEqual({ name: 'x', datatype: 'FP32', shape: [1, 4] })
    expect(json.data.limits.timeout_ms).toBe(2000)
    expect(json.data).toMatchObject({ backend: expectedBackend, skipped_backends: [], batching: null })
  })

  it("shows a model's dynamic batching as its manifest gives it", async () => {
    const json = await body(await t.app.handle(req('/api/v1/models/dynbatch', { headers: bearer(key) })))
    expect(json.data.batching).toEqual({ max_batch_size: 8, max_delay_ms: 20 })
  })

  it('answers 404 for an unknown model and 400 for a malformed name', async () => {
    expect((await t.app.handle(req('/api/v1/models/nope', { headers: bearer(key) }))).status).toBe(404)
    expect((await t.app.handle(req('/api/v1/models/Not_Valid!', { headers: bearer(key) }))).status).toBe(400)
  })
})

describe('POST /api/v1/models/:name/infer', () => {
  it('computes y = 2x + 1 and m = n + 1 in the Open Inference Protocol shape', async () => {
    const response = await infer('arith', { id: 'req-1', inputs: [x([1, -2, 0.5, 10]), n([5, 9007199254740993n.toString()])] })
    expect(response.status).toBe(200)
    const json = await body(response)
    expect(json.data.model_name).toBe('arith')
    expect(json.data.id).toBe('req-1')
    const outputs = Object.fromEntries(json.data.outputs.map((o: { name: string }) => [o.name, o]))
    expect(outputs.y).toEqual({ name: 'y', shape: [1, 4], datatype: 'FP32', data: [3, -3, 2, 21] })
    expect(outputs.m.data).toEqual(['6', '9007199254740994'])
    expect(json.data.timing.inference_ms).toBeGreaterThanOrEqual(0)
  })

  it('answers outputs that overflowed as "Infinity" strings, which JSON cannot carry as numbers, in one call and in a batch', async () => {
    // 2x overflows float32 at 3e38; so does the batch route, which checks its answer against the same schema.
    const response = await infer('arith', { inputs: [x([3e38, -3e38, 1, 0]), n()] })
    expect(response.status, await response.clone().text()).toBe(200)
    const y = (await body(response)).data.outputs.find((o: { name: string }) => o.name === 'y')
    expect(y.data).toEqual(['Infinity', '-Infinity', 3, 1])
    const batched = await t.app.handle(
      req('/api/v1/models/arith/infer/batch', {
        method: 'POST',
        json: { requests: [{ inputs: [x([3e38, 0, 0, 0]), n()] }] },
        headers: bearer(key),
      }),
    )
    expect(batched.status, await batched.clone().text()).toBe(200)
    const item = (await body(batched)).data.items[0]
    expect(item.result.outputs.find((o: { name: string }) => o.name === 'y').data).toEqual(['Infinity', 1, 1, 1])
  })

  it('points at the failing input', async () => {
    const cases: [unknown, string][] = [
      [{ inputs: [{ ...x(), shape: [1, 3] }, n()] }, '/inputs/0/shape'],
      [{ inputs: [{ ...x(), datatype: 'INT32' }, n()] }, '/inputs/0/datatype'],
      [{ inputs: [x([1, 2, 3]), n()] }, '/inputs/0/data'],
      // 2^53 + 1 cannot travel as a JSON number without losing precision: it must be sent as a string.
      [{ inputs: [x(), n([1, 2 ** 53 + 2])] }, '/inputs/1/data/1'],
      [{ inputs: [x(), { ...n(), name: 'q' }] }, '/inputs/1/name'],
      // Unknown fields are refused at every level, as everywhere else.
      [{ inputs: [{ ...x(), scale: 2 }, n()] }, '/inputs/0'],
      [{ inputs: [x(), n()], parameters: { priority: 1 } }, '/parameters'],
      [{ inputs: [x(), n()], outputs: [{ name: 'y', binary_data: true }] }, '/outputs/0'],
      [JSON.parse(`{"inputs": ${JSON.stringify([x(), n()])}, "__proto__": {"admin": true}}`), '/'],
    ]
    for (const [payload, path] of cases) {
      const response = await infer('arith', payload)
      expect(response.status).toBe(400)
      const json = await body(response)
      expect(json.error.code).toBe('VALIDATION_ERROR')
      expect(json.error.details.map((d: { path: string }) => d.path).some((p: string) => p.startsWith(path))).toBe(true)
    }
  })

  it('answers 503 for a model that failed to load', async () => {
    const response = await infer('corrupt', { inputs: [x()] })
    expect(response.status).toBe(503)
    expect(response.headers.get('retry-after')).not.toBeNull()
  })

  it('answers 504 when the model runs past its timeout, and serves at full strength afterwards', async () => {
    const response = await infer('slow', slow(100_000_000))
    expect(response.status).toBe(504)
    expect((await body(response)).error.code).toBe('TIMEOUT_ERROR')
    const next = await Promise.all([1, 2, 3].map(() => infer('arith', { inputs: [x(), n()] })))
    expect(next.map((r) => r.status)).toEqual([200, 200, 200])
    const workers = () => t.deps.registry.pool.stats().workers
    await until(() => workers().length === 2 && workers().every((w) => w.state === 'idle'))
    expect(workers().filter((w) => w.state !== 'draining')).toHaveLength(2)
  })

  it('keeps the event loop free: liveness answers while a long inference runs', async () => {
    const order: string[] = []
    const long = infer('slow', slow(400_000, 20_000)).then((r) => {
      order.push(`infer ${r.status}`)
    })
    await Bun.sleep(100)
    const live = await t.app.handle(req('/api/v1/health/live'))
    order.push(`live ${live.status}`)
    await long
    expect(order).toEqual(['live 200', 'infer 200'])
  })

  it('turns the call into a job with Prefer: respond-async', async () => {
    t.deps.runner.start()
    const response = await t.app.handle(
      req('/api/v1/models/arith/infer', {
        method: 'POST',
        json: { inputs: [x(), n()] },
        headers: { ...bearer(jobsKey), prefer: 'respond-async' },
      }),
    )
    expect(response.status).toBe(202)
    expect(response.headers.get('preference-applied')).toBe('respond-async')
    const location = response.headers.get('location')!
    expect(location).toMatch(/^\/api\/v1\/jobs\/[0-9a-f-]{36}$/)
    let job = (await body(response)).data
    await until(async () => {
      job = (await body(await t.app.handle(req(location, { headers: bearer(jobsKey) })))).data
      return job.status === 'succeeded' || job.status === 'dead'
    })
    expect(job.status).toBe('succeeded')
    expect(job.result.outputs.find((o: { name: string }) => o.name === 'y').data).toEqual([3, 5, 7, 9])
    const withoutJobs = await infer('arith', { inputs: [x(), n()] }, { prefer: 'respond-async' })
    expect(withoutJobs.status).toBe(403)
  })
})

describe('POST /api/v1/models/:name/infer/batch', () => {
  const batch = (requests: unknown[]) =>
    t.app.handle(req('/api/v1/models/arith/infer/batch', { method: 'POST', json: { requests }, headers: bearer(key) }))

  it('answers a result per item; a bad item never sinks the others', async () => {
    const response = await batch([{ inputs: [x(), n()] }, { inputs: [x([1, 2])] }, 'not a request', { inputs: [x([0, 0, 0, 0]), n()] }])
    expect(response.status).toBe(200)
    const json = await body(response)
    expect(json.message).toBe('2 of 4 requests succeeded')
    expect(json.data.items.map((i: { status: string }) => i.status)).toEqual(['succeeded', 'failed', 'failed', 'succeeded'])
    expect(json.errors.map((e: { index: number; code: string }) => [e.index, e.code])).toEqual([
      [1, 'VALIDATION_ERROR'],
      [2, 'VALIDATION_ERROR'],
    ])
    expect(json.data.items[3].result.outputs.find((o: { name: string }) => o.name === 'y').data).toEqual([1, 1, 1, 1])
  })

  it('refuses more items than INFERENCE_MAX_BATCH', async () => {
    const response = await batch(Array.from({ length: 5 }, () => ({ inputs: [x(), n()] })))
    expect(response.status).toBe(400)
    expect((await body(response)).error.details[0].path).toBe('/requests')
  })
})
