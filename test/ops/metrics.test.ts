import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { createMetrics } from '../../src/metrics/service'
import { bearer, body, createTestApp, req, type TestApp } from '../helpers'
import { expectedBackend } from '../inference/helpers'

const TOKEN = 'metrics-token-0123456789abcdef'

let t: TestApp & { metrics: TestApp['deps']['metrics'] }
let admin: string
let adminId: string
let inference: string

beforeAll(async () => {
  const app = await createTestApp({ RATE_LIMIT_PUBLIC: '3/60', METRICS_TOKEN: TOKEN })
  t = { ...app, metrics: app.deps.metrics }
  const created = await t.deps.keys.create({ name: 'ops admin', scopes: ['admin'] })
  admin = created.key
  adminId = created.id
  inference = (await t.deps.keys.create({ name: 'ops inference', scopes: ['inference'] })).key
})
afterAll(() => t.close())

/** Elysia runs after-response hooks (which feed the HTTP metrics) once the response has left: let them run. */
const afterResponses = () => new Promise((resolve) => setTimeout(resolve, 20))

async function scrape(headers: Record<string, string> = bearer(admin)): Promise<string> {
  await afterResponses()
  const response = await t.app.handle(req('/metrics', { headers }))
  expect(response.status).toBe(200)
  return response.text()
}

/** The value of one series in the exposition text, e.g. `series(text, 'jobs', { status: 'queued' })`. */
function series(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`)
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!match || match[1] !== name) continue
    const have = match[2]?.split(/,(?=\w+=")/) ?? []
    if (wanted.every((w) => have.includes(w))) return Number(match[3])
  }
  return undefined
}

describe('metrics endpoint', () => {
  it('answers 401 in the error envelope without credentials', async () => {
    const response = await t.app.handle(req('/metrics'))
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toContain('Bearer')
    const json = await body(response)
    expect(json.success).toBe(false)
    expect(json.error.code).toBe('UNAUTHORIZED')
    expect(json.request_id).toBe(response.headers.get('x-request-id'))
  })

  it('answers 401 to a wrong token and to the token sent as X-API-Key', async () => {
    for (const headers of [bearer(`${TOKEN}x`), bearer('x'.repeat(40)), { 'x-api-key': TOKEN }]) {
      const response = await t.app.handle(req('/metrics', { headers }))
      expect(response.status).toBe(401)
      expect((await body(response)).error.code).toBe('UNAUTHORIZED')
    }
  })

  it('answers 403 to a key without the admin scope', async () => {
    const response = await t.app.handle(req('/metrics', { headers: bearer(inference) }))
    expect(response.status).toBe(403)
    expect((await body(response)).error).toMatchObject({ code: 'FORBIDDEN', details: { required_scope: 'admin' } })
  })

  it('refuses a key in the query string', async () => {
    const response = await t.app.handle(req(`/metrics?token=${TOKEN}`))
    expect(response.status).toBe(400)
    expect((await body(response)).error.code).toBe('VALIDATION_ERROR')
  })

  it('serves Prometheus text to an admin key (Authorization or X-API-Key) and to METRICS_TOKEN', async () => {
    for (const headers of [bearer(admin), { 'x-api-key': admin }, bearer(TOKEN)]) {
      const response = await t.app.handle(req('/metrics', { headers }))
      expect(response.status).toBe(200)
      expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8')
      expect(response.headers.get('x-content-type-options')).toBe('nosniff')
      const text = await response.text()
      expect(text).toContain('# TYPE http_requests_total counter')
    }
  })
})

describe('metrics content', () => {
  it('labels requests by route pattern, method and status', async () => {
    await t.app.handle(req('/api/v1/health/live'))
    await t.app.handle(req('/api/v1/docs/assets/init.js'))
    await t.app.handle(req('/api/v1/keys/me', { headers: bearer(inference) }))
    const text = await scrape()
    expect(series(text, 'http_requests_total', { method: 'GET', route: '/api/v1/health/live', status: '200' })).toBeGreaterThanOrEqual(1)
    expect(series(text, 'http_requests_total', { route: '/api/v1/docs/assets/:file', status: '200' })).toBeGreaterThanOrEqual(1)
    expect(series(text, 'http_request_duration_seconds_count', { route: '/api/v1/health/live' })).toBeGreaterThanOrEqual(1)
    expect(series(text, 'http_requests_total', { route: '/metrics', status: '401' })).toBeGreaterThanOrEqual(1)
  })

  it('keeps one route label for 1 000 distinct unknown paths', async () => {
    await afterResponses()
    const before = new Set((await t.metrics.http.requests.get()).values.map((v) => v.labels.route))
    for (let i = 0; i < 1000; i++) {
      const response = await t.app.handle(req(`/no/such/path/${i}-${crypto.randomUUID()}`))
      expect(response.status).toBe(404)
    }
    await afterResponses()
    const values = (await t.metrics.http.requests.get()).values
    const after = new Set(values.map((v) => v.labels.route))
    expect([...after].filter((route) => !before.has(route))).toEqual(before.has('unmatched') ? [] : ['unmatched'])
    expect([...after].some((route) => String(route).startsWith('/no/'))).toBe(false)
    const unmatched = values.find((v) => v.labels.route === 'unmatched' && v.labels.status === '404' && v.labels.method === 'GET')
    expect(unmatched?.value).toBeGreaterThanOrEqual(1000)
  })

  it('reads live values from the registry, the pool and inference runs at scrape time', async () => {
    const x = { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }
    const n = { name: 'n', shape: [1, 2], datatype: 'INT64', data: [1, 2] }
    const run = await t.app.handle(req('/api/v1/models/arith/infer', { method: 'POST', json: { inputs: [x, n] }, headers: bearer(admin) }))
    expect(run.status).toBe(200)
    const text = await scrape()
    expect(series(text, 'inference_queue_depth')).toBe(0)
    expect(series(text, 'inference_workers', { state: 'idle' })).toBe(1)
    const worker = t.deps.registry.pool.stats().workers[0]!
    expect(series(text, 'inference_worker_heap_bytes', { worker: String(worker.id) })).toBeGreaterThan(1_000_000)
    expect(series(text, 'model_status', { model: 'arith', status: 'ready' })).toBe(1)
    expect(series(text, 'model_status', { model: 'arith', status: 'failed' })).toBe(0)
    expect(series(text, 'model_status', { model: 'corrupt', status: 'failed' })).toBe(1)
    expect(series(text, 'model_backend_info', { model: 'arith', backend: expectedBackend })).toBe(1)
    expect(series(text, 'model_backend_info', { model: 'corrupt' })).toBeUndefined()
    expect(series(text, 'inference_workers_abandoned')).toBe(0)
    expect(series(text, 'inference_worker_terminations_total')).toBe(0)
    expect(series(text, 'inference_runs_discarded_total')).toBe(0)
    // The run above went through the shared slot; health probes may add runs after the scrape, never remove them.
    const handoffs = t.deps.registry.pool.stats().handoffs
    expect(series(text, 'inference_handoffs_total', { path: 'shared' })).toBeGreaterThanOrEqual(1)
    expect(series(text, 'inference_handoffs_total', { path: 'shared' })).toBeLessThanOrEqual(handoffs.shared)
    expect(series(text, 'inference_handoffs_total', { path: 'posted' })).toBeLessThanOrEqual(handoffs.posted)
    expect(series(text, 'inference_duration_seconds_count', { model: 'arith' })).toBeGreaterThanOrEqual(1)
    expect(series(text, 'inference_queue_wait_seconds_count', { model: 'arith' })).toBeGreaterThanOrEqual(1)
  })

  it('counts jobs by status from the queue', async () => {
    // Relative: on the shared PostgreSQL of CI, other test files may have left jobs behind.
    const before = series(await scrape(), 'jobs', { status: 'queued' }) ?? 0
    await t.deps.queue.submit({ ownerKeyId: adminId, task: 'infer', model: 'silero-vad', input: {}, parameters: {}, maxAttempts: 1 })
    expect(series(await scrape(), 'jobs', { status: 'queued' })).toBe(before + 1)
  })

  it('counts rate-limit refusals by policy', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 5; i++) statuses.push((await t.app.handle(req('/'))).status)
    const refused = statuses.filter((s) => s === 429).length
    expect(refused).toBeGreaterThanOrEqual(2)
    const text = await scrape()
    expect(series(text, 'rate_limit_rejections_total', { policy: 'public' })).toBe(refused)
    expect(series(text, 'http_requests_total', { route: '/', status: '429' })).toBe(refused)
  })

  it('exposes process memory and a real event-loop lag measurement', async () => {
    await scrape()
    // Block the loop for 60 ms: the lag histogram (perf_hooks monitorEventLoopDelay, which Bun implements) must see it.
    const until = performance.now() + 60
    while (performance.now() < until) {}
    const text = await scrape()
    expect(series(text, 'process_resident_memory_bytes')).toBeGreaterThan(1_000_000)
    expect(series(text, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(0)
    expect(series(text, 'nodejs_eventloop_lag_seconds')).toBeGreaterThanOrEqual(0)
    expect(series(text, 'nodejs_eventloop_lag_max_seconds')).toBeGreaterThan(0.04)
  })

  it('counts the collections paced for an embedded PGlite, and shows none on PostgreSQL', async () => {
    const pacer = t.deps.database.pacer
    const before = pacer?.collections
    const text = await scrape()
    if (t.deps.database.kind === 'postgres') {
      expect(pacer).toBeUndefined()
      expect(series(text, 'gc_paced_collections_total')).toBeUndefined()
      return
    }
    expect(series(text, 'gc_paced_collections_total')).toBeGreaterThanOrEqual(before!)
    expect(series(text, 'gc_paced_collections_total')).toBeLessThanOrEqual(pacer!.collections)
  })
})

describe('createMetrics', () => {
  it('records inference time and queue wait per model, skipping what did not happen', async () => {
    const metrics = createMetrics({ defaultMetrics: false })
    metrics.observeRun({ model: 'm', outcome: 'ok', queueMs: 2, inferenceMs: 0.4 })
    metrics.observeRun({ model: 'm', outcome: 'timeout', queueMs: 5, inferenceMs: 0 })
    metrics.observeRun({ model: 'm', outcome: 'rejected', queueMs: 0, inferenceMs: 0 })
    const text = await metrics.promRegistry.metrics()
    expect(series(text, 'inference_duration_seconds_count', { model: 'm' })).toBe(1)
    expect(series(text, 'inference_duration_seconds_sum', { model: 'm' })).toBeCloseTo(0.0004, 6)
    expect(series(text, 'inference_queue_wait_seconds_count', { model: 'm' })).toBe(2)
    expect(series(text, 'inference_runs_total', { model: 'm', outcome: 'rejected' })).toBe(1)
    expect(series(text, 'inference_duration_seconds_bucket', { model: 'm', le: '0.0005' })).toBe(1)
  })

  it('folds unknown HTTP methods into "other" and an empty route into "unmatched"', async () => {
    const metrics = createMetrics({ defaultMetrics: false })
    metrics.observeRequest({ method: 'BREW', route: '', status: 404, durationS: 0.001 })
    const text = await metrics.promRegistry.metrics()
    expect(series(text, 'http_requests_total', { method: 'other', route: 'unmatched', status: '404' })).toBe(1)
    expect(text).not.toContain('BREW')
  })

  it('uses its own prom-client registry, so two instances never clash', async () => {
    const a = createMetrics({ defaultMetrics: false })
    const b = createMetrics({ defaultMetrics: false })
    a.observeRequest({ method: 'GET', route: '/x', status: 200, durationS: 0.01 })
    expect(series(await a.promRegistry.metrics(), 'http_requests_total', { route: '/x' })).toBe(1)
    expect(series(await b.promRegistry.metrics(), 'http_requests_total', { route: '/x' })).toBeUndefined()
  })

  it('keeps scraping when a collector throws, leaving its gauge empty and counting the failure', async () => {
    let fail = true
    const metrics = createMetrics({
      defaultMetrics: false,
      collect: {
        jobs: async () => {
          if (fail) throw new Error('database down')
          return { queued: 4 }
        },
        queueDepth: () => 1,
      },
    })
    let text = await metrics.promRegistry.metrics()
    expect(series(text, 'jobs', { status: 'queued' })).toBeUndefined()
    expect(series(text, 'inference_queue_depth')).toBe(1)
    fail = false
    text = await metrics.promRegistry.metrics()
    expect(series(text, 'jobs', { status: 'queued' })).toBe(4)
    // Collectors run concurrently within a scrape, so the failure shows from the next scrape on.
    expect(series(text, 'metrics_collect_errors_total', { collector: 'jobs' })).toBe(1)
  })

  it('drops workers that are gone instead of reporting their last heap forever', async () => {
    let workers = [
      { id: 1, state: 'idle', heapBytes: 10 },
      { id: 2, state: 'draining', heapBytes: 20 },
    ]
    const metrics = createMetrics({ defaultMetrics: false, collect: { workers: () => workers } })
    expect(series(await metrics.promRegistry.metrics(), 'inference_worker_heap_bytes', { worker: '2' })).toBe(20)
    workers = [{ id: 3, state: 'starting', heapBytes: 0 }]
    const text = await metrics.promRegistry.metrics()
    expect(series(text, 'inference_worker_heap_bytes', { worker: '2' })).toBeUndefined()
    expect(series(text, 'inference_workers', { state: 'draining' })).toBeUndefined()
    expect(series(text, 'inference_workers', { state: 'starting' })).toBe(1)
  })

  it('leaves labelled gauges without a collector empty', async () => {
    const text = await createMetrics({ defaultMetrics: false }).promRegistry.metrics()
    expect(text).toContain('# TYPE jobs gauge')
    expect(series(text, 'jobs')).toBeUndefined()
    expect(series(text, 'model_status')).toBeUndefined()
    expect(series(text, 'inference_workers')).toBeUndefined()
  })
})
