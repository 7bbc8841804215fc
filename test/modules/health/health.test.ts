import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { Elysia } from 'elysia'
import { openDatabase } from '../../../src/db/client'
import { healthModule } from '../../../src/modules/health'
import { errorHandler } from '../../../src/plugins/error-handler'
import { requestId } from '../../../src/plugins/request-id'
import { body, createTestApp, req, type TestApp, testConfig } from '../../helpers'

let t: TestApp
beforeAll(async () => {
  // The shipped models only (Silero), so every check can pass.
  t = await createTestApp({ MODELS_DIR: 'models' })
})
afterAll(() => t.close())

describe('health', () => {
  it('live answers without the database', async () => {
    const response = await t.app.handle(req('/api/v1/health/live'))
    expect(response.status).toBe(200)
    expect((await body(response)).data.status).toBe('alive')
  })

  it('ready reports each check', async () => {
    const response = await t.app.handle(req('/api/v1/health/ready'))
    expect(response.status).toBe(200)
    const json = await body(response)
    expect(json.data.status).toBe('ready')
    expect(json.data.checks).toContainEqual({ name: 'database', status: 'ok' })
    expect(json.data.checks).toContainEqual({
      name: 'models',
      status: 'ok',
      detail: { ready: ['silero-vad'], loading: [], failed: [], unhealthy: [] },
    })
  })

  it('ready says degraded when a model failed to load but others serve', async () => {
    const fixtures = await createTestApp()
    try {
      const json = await body(await fixtures.app.handle(req('/api/v1/health/ready')))
      expect(json.data.status).toBe('degraded')
      const models = json.data.checks.find((c: { name: string }) => c.name === 'models')
      expect(models.detail.failed.sort()).toEqual(['badmanifest', 'corrupt'])
    } finally {
      await fixtures.close()
    }
  })

  it('ready says degraded when a check is degraded, and 503 when one fails', async () => {
    t.deps.checks.push(() => ({ name: 'models', status: 'degraded', detail: { failed: ['x'] } }))
    const degraded = await body(await t.app.handle(req('/api/v1/health/ready')))
    expect(degraded.data.status).toBe('degraded')
    t.deps.checks.push(() => ({ name: 'models-required', status: 'fail' }))
    const failed = await t.app.handle(req('/api/v1/health/ready'))
    expect(failed.status).toBe(503)
    expect(failed.headers.get('retry-after')).toBe('5')
    expect((await body(failed)).error.details.checks).toContainEqual({ name: 'models-required', status: 'fail' })
    t.deps.checks.length = 1
  })

  it('ready answers 503 while shutting down, live still answers', async () => {
    t.deps.lifecycle.shuttingDown = true
    try {
      const response = await t.app.handle(req('/api/v1/health/ready'))
      expect(response.status).toBe(503)
      expect((await body(response)).error.code).toBe('SERVICE_UNAVAILABLE')
      expect((await t.app.handle(req('/api/v1/health/live'))).status).toBe(200)
    } finally {
      t.deps.lifecycle.shuttingDown = false
    }
  })

  it('ready answers 503 with the database check failed when the database is gone', async () => {
    const config = testConfig()
    const database = await openDatabase({ ...config, inMemory: true })
    await database.close()
    const app = new Elysia()
      .use(requestId({ logger: t.deps.logger, trustProxy: { hops: 0 }, peer: () => undefined }))
      .use(errorHandler({ logger: t.deps.logger, routes: () => [] }))
      .use(
        healthModule({
          database,
          dbTimeoutMs: 200,
          lifecycle: { shuttingDown: false },
          checks: [],
          limiter: t.deps.limiter,
          logger: t.deps.logger,
        }),
      )
    const response = await app.handle(req('/api/v1/health/ready'))
    expect(response.status).toBe(503)
    const check = (await body(response)).error.details.checks[0]
    expect(check.name).toBe('database')
    expect(check.status).toBe('fail')
  })
})
