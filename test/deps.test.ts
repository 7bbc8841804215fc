import { afterAll, describe, expect, it, spyOn } from 'bun:test'
import { createDeps } from '../src/deps'
import { createLogger } from '../src/logger'
import { bearer, createTestApp, LogCapture, req, testConfig } from './helpers'

describe('createDeps', () => {
  it('refuses to start when a model named in MODELS_REQUIRED fails, naming it', async () => {
    const config = testConfig({ MODELS_REQUIRED: 'arith,corrupt' })
    const error = await createDeps(config, { logger: createLogger(config, { destination: new LogCapture() }), inMemory: true }).catch(
      (e) => e,
    )
    expect(error).toBeInstanceOf(Error)
    expect(error.message).toContain('corrupt')
  })

  it('prints one admin key in development when no key exists, and only then', async () => {
    const log = spyOn(console, 'log').mockImplementation(() => {})
    // A database of its own (in-memory PGlite): "no key exists" must hold even on the shared CI server.
    const config = testConfig({ NODE_ENV: 'development', MODELS_DIR: 'test/fixtures/no-models', DATABASE_URL: '' })
    const logger = createLogger(config, { destination: new LogCapture() })
    const deps = await createDeps(config, { logger, inMemory: true })
    try {
      const printed = log.mock.calls.map((c) => String(c[0])).join('\n')
      const key = /(vk_[0-9a-f]{8}_[A-Za-z0-9_-]{43})/.exec(printed)?.[1]
      expect(key).toBeDefined()
      expect((await deps.keys.authenticate(key))?.scopes).toEqual(['admin'])
      expect(await deps.keys.count()).toBe(1)
    } finally {
      log.mockRestore()
      await deps.close()
    }
  })

  it('starts with an unreachable Redis, logs it, and still limits requests', async () => {
    const t = await createTestApp({ REDIS_URL: 'redis://127.0.0.1:1', RATE_LIMIT_ADMIN: '2/60' })
    afterAll(() => t.close())
    expect(t.logs.text).toContain('redis not reachable at start-up')
    const key = (await t.deps.keys.create({ name: 'r', scopes: ['jobs'] })).key
    const statuses = []
    for (let i = 0; i < 3; i++) statuses.push((await t.app.handle(req('/api/v1/keys/me', { headers: bearer(key) }))).status)
    expect(statuses).toEqual([200, 200, 429])
  })
})
