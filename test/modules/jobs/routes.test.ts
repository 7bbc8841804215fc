import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { bearer, body, createKey, createTestApp, req, type TestApp } from '../../helpers'

let t: TestApp
let owner: string
let other: string
let admin: string
let inferenceOnly: string
beforeAll(async () => {
  // No runner: these tests look at the queue through the routes.
  t = await createTestApp({ JOBS_CONCURRENCY: '0' })
  owner = await createKey(t, ['jobs'])
  other = await createKey(t, ['jobs'])
  admin = await createKey(t, ['admin'])
  inferenceOnly = await createKey(t, ['inference'])
})
afterAll(() => t.close())

const submit = (key: string, json: unknown, headers: Record<string, string> = {}) =>
  t.app.handle(req('/api/v1/jobs', { method: 'POST', json, headers: { ...bearer(key), ...headers } }))
/** A request that fits the fixture model (each is checked against its model at submit time); `n` varies the body. */
const job = (model: 'arith' | 'dynbatch' = 'arith', n = 1) => ({
  task: 'infer',
  model,
  request: {
    inputs:
      model === 'arith'
        ? [
            { name: 'x', shape: [1, 4], datatype: 'FP32', data: [n, 0, 0, 0] },
            { name: 'n', shape: [1, 2], datatype: 'INT64', data: [1, 2] },
          ]
        : [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [n, 0, 0] }],
  },
})

describe('POST /api/v1/jobs', () => {
  it('answers 202 with the job and Location', async () => {
    const response = await submit(owner, job())
    expect(response.status).toBe(202)
    const json = await body(response)
    expect(json.data).toMatchObject({ status: 'queued', model: 'arith', attempts: 0, max_attempts: 5, task: 'infer' })
    expect(response.headers.get('location')).toBe(`/api/v1/jobs/${json.data.id}`)
    const read = await body(await t.app.handle(req(`/api/v1/jobs/${json.data.id}`, { headers: bearer(owner) })))
    expect(read.data.id).toBe(json.data.id)
  })

  it('validates the body and refuses keys without the jobs scope', async () => {
    expect((await submit(owner, { task: 'infer', model: 'Bad Name!', request: {} })).status).toBe(400)
    expect((await submit(owner, { ...job(), max_attempts: 0 })).status).toBe(400)
    expect((await submit(owner, { ...job(), owner_key_id: 'x' })).status).toBe(400)
    expect((await submit(inferenceOnly, job())).status).toBe(403)
    // Checked against the model's metadata at submit time, as /infer does, rather than failing later as a job.
    const misfit = { ...job(), request: { inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [1] }] } }
    const refused = await submit(owner, misfit)
    expect(refused.status).toBe(400)
    expect((await body(refused)).error.details.map((d: { path: string }) => d.path).join()).toContain('/request/inputs')
    expect((await submit(owner, job(), { 'idempotency-key': 'k'.repeat(256) })).status).toBe(400)
  })
})

describe('ownership', () => {
  it("answers another key's job with 404 exactly like a missing one; admin sees it", async () => {
    const mine = (await body(await submit(owner, job()))).data.id
    const theirs = await t.app.handle(req(`/api/v1/jobs/${mine}`, { headers: bearer(other) }))
    const missing = await t.app.handle(req('/api/v1/jobs/00000000-0000-4000-8000-000000000000', { headers: bearer(other) }))
    expect(theirs.status).toBe(404)
    expect(missing.status).toBe(404)
    const strip = async (r: Response) => {
      const json = await body(r)
      delete json.request_id
      return JSON.stringify(json).replace(/[0-9a-f-]{36}/g, 'ID')
    }
    expect(await strip(theirs)).toBe(await strip(missing))
    expect((await t.app.handle(req(`/api/v1/jobs/${mine}`, { headers: bearer(admin) }))).status).toBe(200)
    expect((await t.app.handle(req(`/api/v1/jobs/${mine}`, { method: 'DELETE', headers: bearer(other) }))).status).toBe(404)
  })
})

describe('GET /api/v1/jobs', () => {
  it('filters by status and model and pages stably while jobs are added', async () => {
    const key = await createKey(t, ['jobs'])
    for (let i = 0; i < 7; i++) await submit(key, job(i % 2 ? 'arith' : 'dynbatch', i))
    const seen: string[] = []
    let cursor: string | null = null
    let first = true
    do {
      const path: string = `/api/v1/jobs?limit=2&model=arith${cursor ? `&cursor=${cursor}` : ''}`
      const json = await body(await t.app.handle(req(path, { headers: bearer(key) })))
      for (const item of json.data.items) {
        expect(item.model).toBe('arith')
        seen.push(item.id)
      }
      if (first) await submit(key, job('arith', 99))
      first = false
      cursor = json.data.next_cursor
    } while (cursor)
    expect(seen).toHaveLength(3)
    expect(new Set(seen).size).toBe(3)
    const queued = await body(await t.app.handle(req('/api/v1/jobs?status=queued&limit=100', { headers: bearer(key) })))
    expect(queued.data.items).toHaveLength(8)
    expect((await body(await t.app.handle(req('/api/v1/jobs?status=succeeded', { headers: bearer(key) })))).data.items).toHaveLength(0)
    const forged = Buffer.from(`2026-01-01T00:00:00.000Z|${'-'.repeat(36)}`).toString('base64url')
    for (const bad of ['limit=0', 'limit=101', 'status=nope', 'cursor=zzz', `cursor=${forged}`]) {
      expect((await t.app.handle(req(`/api/v1/jobs?${bad}`, { headers: bearer(key) }))).status).toBe(400)
    }
  })
})

describe('cancel and retry', () => {
  it('cancels a queued job, then answers 409 for the finished one', async () => {
    const id = (await body(await submit(owner, job()))).data.id
    const cancelled = await t.app.handle(req(`/api/v1/jobs/${id}`, { method: 'DELETE', headers: bearer(owner) }))
    expect(cancelled.status).toBe(200)
    expect((await body(cancelled)).data.status).toBe('cancelled')
    const again = await t.app.handle(req(`/api/v1/jobs/${id}`, { method: 'DELETE', headers: bearer(owner) }))
    expect(again.status).toBe(409)
    expect((await body(again)).error.code).toBe('CONFLICT')
    expect((await t.app.handle(req(`/api/v1/jobs/${id}/retry`, { method: 'POST', headers: bearer(owner) }))).status).toBe(409)
  })

  it('requeues a dead job with its attempts reset', async () => {
    const id = (await body(await submit(owner, job()))).data.id
    const [claimed] = await t.deps.queue.claim('test-runner', 100).then((jobs) => jobs.filter((j) => j.id === id))
    expect(claimed).toBeDefined()
    await t.deps.queue.fail({ ...claimed!, attempts: claimed!.maxAttempts }, 'test-runner', {
      code: 'TIMEOUT_ERROR',
      message: 'slow',
      transient: true,
    })
    const dead = await body(await t.app.handle(req(`/api/v1/jobs/${id}`, { headers: bearer(owner) })))
    expect(dead.data.status).toBe('dead')
    expect(dead.data.error.history).toHaveLength(1)
    const retried = await body(await t.app.handle(req(`/api/v1/jobs/${id}/retry`, { method: 'POST', headers: bearer(owner) })))
    expect(retried.data).toMatchObject({ status: 'queued', attempts: 0 })
  })
})

describe('Idempotency-Key', () => {
  it('returns the same job for the same key and body, 422 for a different body', async () => {
    const first = await submit(owner, job('arith', 5), { 'idempotency-key': 'order-1' })
    const replay = await submit(owner, job('arith', 5), { 'idempotency-key': 'order-1' })
    expect(first.status).toBe(202)
    expect(replay.status).toBe(202)
    const firstId = (await body(first)).data.id
    const replayed = await body(replay)
    expect(replayed.data.id).toBe(firstId)
    expect(replayed.message).toContain('Idempotent replay')
    const reused = await submit(owner, job('arith', 6), { 'idempotency-key': 'order-1' })
    expect(reused.status).toBe(422)
    expect((await body(reused)).error.code).toBe('IDEMPOTENCY_KEY_REUSED')
    // Scoped per API key: another key may use the same value.
    const elsewhere = await submit(other, job('arith', 6), { 'idempotency-key': 'order-1' })
    expect((await body(elsewhere)).data.id).not.toBe(firstId)
  })

  it('creates one job for concurrent requests with one key', async () => {
    const answers = await Promise.all(Array.from({ length: 12 }, () => submit(owner, job('arith', 7), { 'idempotency-key': 'burst-1' })))
    const ids = new Set<string>()
    for (const answer of answers) {
      expect([202, 409]).toContain(answer.status)
      if (answer.status === 202) ids.add((await body(answer)).data.id)
    }
    expect(ids.size).toBe(1)
    const principal = await t.deps.keys.authenticate(owner)
    const all = await t.deps.queue.list({ ownerKeyId: principal!.id, limit: 100 })
    expect(all.items.filter((j) => j.idempotencyKey === 'burst-1')).toHaveLength(1)
  })
})
