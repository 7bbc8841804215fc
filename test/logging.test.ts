import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLogger, flatInfoWriter, flushLogger, logDestination } from '../src/logger'
import { createTestApp, LogCapture, req, type TestApp, testConfig, until } from './helpers'

const SECRET = 'vk_abcdef12_Zm9vYmFyYmF6cXV4cXV1eHh5enp5eHdhYmNkZWZnaGlqa2xt'

let t: TestApp
beforeAll(async () => {
  t = await createTestApp()
  t.app.get('/api/v1/test/explode', () => {
    throw new Error('kaboom')
  })
})
afterAll(() => t.close())

describe('logging', () => {
  it('never writes a secret sent in a header, on success, 404 or 500', async () => {
    const headers = {
      authorization: `Bearer ${SECRET}`,
      'x-api-key': SECRET,
      cookie: `session=${SECRET}`,
      'sec-websocket-protocol': SECRET,
    }
    const paths = ['/api/v1/health/live', '/api/v1/missing', '/api/v1/test/explode']
    for (const [i, path] of paths.entries()) await t.app.handle(req(path, { headers: { ...headers, 'x-request-id': `secret-${i}` } }))
    for (const i of paths.keys()) await t.logs.line((l) => l.request_id === `secret-${i}` && 'status' in l)
    expect(t.logs.lines.length).toBeGreaterThan(3)
    expect(t.logs.text).not.toContain(SECRET)
    expect(t.logs.text).not.toContain('Zm9vYmFy')
  })

  it('redacts key material even when code logs it by mistake', () => {
    const capture = new LogCapture()
    const logger = createLogger(testConfig({ LOG_LEVEL: 'info' }), { destination: capture })
    logger.info(
      {
        req: { headers: { authorization: SECRET, 'x-api-key': SECRET, cookie: SECRET } },
        key: SECRET,
        token: SECRET,
        created: { key: SECRET },
      },
      'oops',
    )
    expect(capture.text).not.toContain(SECRET)
    expect(capture.text).toContain('[redacted]')
  })

  it('writes one access line per request with the route pattern, status and duration', async () => {
    await t.app.handle(req('/api/v1/health/live', { headers: { 'x-request-id': 'access-line' } }))
    await t.logs.line((l) => l.request_id === 'access-line' && l.msg === 'request')
    const lines = t.logs.lines.filter((l) => l.request_id === 'access-line' && l.msg === 'request')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({ level: 'info', method: 'GET', route: '/api/v1/health/live', status: 200 })
  })

  it('logs a 500 at error level with the stack', async () => {
    await t.app.handle(req('/api/v1/test/explode', { headers: { 'x-request-id': 'err-line' } }))
    const errorLine = await t.logs.line((l) => l.request_id === 'err-line' && Boolean(l.err))
    expect(errorLine?.level).toBe('error')
    expect(JSON.stringify(errorLine)).toContain('kaboom')
  })

  it('builds a pretty logger in development and an async JSON one in production, both flushable', async () => {
    const envs: Record<string, string>[] = [
      { NODE_ENV: 'development' },
      {
        NODE_ENV: 'production',
        CORS_ORIGINS: 'https://a.example.com',
        ADMIN_API_KEY: 'q7T_xV2mK9pL4wZr8bN1cY6hJ3fD0sG5eA-uQiWoR',
        LOG_LEVEL: 'silent',
      },
    ]
    for (const env of envs) {
      const logger = createLogger(testConfig(env))
      expect(logger.level).toBe(env.NODE_ENV === 'development' ? 'debug' : 'silent')
      await flushLogger(logger)
    }
  })

  it('buffers production lines, yet writes a few within the periodic flush and every one at flushLogger', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vireo-log-'))
    const path = join(dir, 'out.log')
    try {
      const logger = createLogger(testConfig({ LOG_LEVEL: 'info' }), { destination: logDestination(path) })
      const lines = async () => (await readFile(path, 'utf8').catch(() => '')).split('\n').filter(Boolean)
      for (let i = 0; i < 3; i++) logger.info({ i }, 'few')
      // Far below the 4 KiB a write waits for: only the periodic flush can bring them out.
      await until(async () => (await lines()).length === 3, 5000)
      for (let i = 0; i < 500; i++) logger.info({ i }, 'many')
      await flushLogger(logger)
      const written = await lines()
      expect(written.length).toBe(503)
      expect(JSON.parse(written.at(-1)!)).toMatchObject({ msg: 'many', i: 499 })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('writes flat info lines byte for byte as pino does (the access line), and none below the level', () => {
    const capture = new LogCapture()
    const logger = createLogger(testConfig({ LOG_LEVEL: 'info' }), { destination: capture })
    const access = logger.child({}, { redact: [] })
    const fields = {
      request_id: 'r-1',
      method: 'GET',
      route: '/api/v1/models/:name',
      status: 200,
      duration_ms: 0.12,
      ip: '::ffff:127.0.0.1',
      key_id: undefined,
      odd: 'quote " backslash \\ newline \n tab \t nul \u0000 lone \ud800 é 😀',
      big: 1e21,
      infinite: Number.POSITIVE_INFINITY,
    }
    access.info(fields, 'request')
    flatInfoWriter(access)(fields, 'request "quoted"')
    access.info(fields, 'request "quoted"')
    const [, ours, theirs] = capture.raw
    const timeless = (line: string) => line.replace(/"time":"[^"]*"/, '"time":"…"')
    expect(timeless(ours!)).toBe(timeless(theirs!))
    expect(JSON.parse(ours!)).toMatchObject({ level: 'info', service: 'vireo', status: 200, infinite: null, msg: 'request "quoted"' })
    flatInfoWriter(createLogger(testConfig({ LOG_LEVEL: 'warn' }), { destination: capture }))(fields, 'request')
    expect(capture.raw).toHaveLength(3)
  })

  it('respects LOG_LEVEL', () => {
    const capture = new LogCapture()
    const logger = createLogger(testConfig({ LOG_LEVEL: 'warn' }), { destination: capture })
    logger.info('hidden')
    logger.warn('shown')
    expect(capture.lines.map((l) => l.msg)).toEqual(['shown'])
  })
})
