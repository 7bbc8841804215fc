import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { readFileSync } from 'node:fs'
import { bearer, body, createKey, createTestApp, req, startServer, type TestApp } from '../helpers'

let t: TestApp
let admin: string
let inference: string
beforeAll(async () => {
  t = await createTestApp({ MAX_JSON_BYTES: '4096' })
  admin = await createKey(t, ['admin'])
  inference = await createKey(t, ['inference'])
})
afterAll(() => t.close())

/** A request body that counts how many chunks the server pulled from it. */
function countedBody(chunks: number) {
  const counter = { pulled: 0 }
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (counter.pulled++ >= chunks) return controller.close()
      controller.enqueue(new TextEncoder().encode(`{"name":"${'x'.repeat(1000)}",`))
    },
  })
  return { stream, counter }
}

describe('authentication before the body', () => {
  const anonymous = [
    ['malformed JSON', { body: '{bad', headers: { 'content-type': 'application/json' } }],
    ['an unaccepted Content-Type', { body: 'hello', headers: { 'content-type': 'text/plain' } }],
    ['a declared length over the limit', { body: 'x', headers: { 'content-type': 'application/json', 'content-length': '999999999' } }],
  ] as const

  for (const [what, init] of anonymous)
    it(`answers 401, not 400/413/415, to an anonymous POST with ${what}`, async () => {
      const response = await t.app.handle(req('/api/v1/keys', { method: 'POST', ...init }))
      expect(response.status).toBe(401)
      expect((await body(response)).error.code).toBe('UNAUTHORIZED')
    })

  it('never pulls an anonymous body, nor one sent with a key lacking the scope', async () => {
    for (const [headers, status] of [
      [{}, 401],
      [bearer(inference), 403],
    ] as const) {
      const { stream, counter } = countedBody(100)
      const request = new Request('http://localhost/api/v1/keys', {
        method: 'POST',
        body: stream,
        headers: { 'content-type': 'application/json', ...headers },
      })
      expect((await t.app.handle(request)).status).toBe(status)
      // A ReadableStream pulls once ahead of any reader to fill its queue; no reader means no further pull.
      expect(counter.pulled).toBeLessThanOrEqual(1)
    }
  })

  it('still reads and checks the body of an authenticated caller', async () => {
    const response = await t.app.handle(
      req('/api/v1/keys', { method: 'POST', body: '{bad', headers: { ...bearer(admin), 'content-type': 'application/json' } }),
    )
    expect(response.status).toBe(400)
    expect((await body(response)).error.code).toBe('VALIDATION_ERROR')
  })
})

describe('bodyless requests', () => {
  it('revokes a key sent with Content-Length: 0 and no Content-Type', async () => {
    const victim = await t.deps.keys.create({ name: 'bodyless', scopes: ['jobs'] })
    const response = await t.app.handle(
      req(`/api/v1/keys/${victim.id}`, { method: 'DELETE', headers: { ...bearer(admin), 'content-length': '0' } }),
    )
    expect(response.status).toBe(200)
    expect((await body(response)).data.revoked_at).not.toBeNull()
  })

  it('ignores the Content-Type and body sent to a route that takes none', async () => {
    const victim = await t.deps.keys.create({ name: 'typed but bodyless', scopes: ['jobs'] })
    const response = await t.app.handle(
      req(`/api/v1/keys/${victim.id}`, { method: 'DELETE', body: 'whatever', headers: { ...bearer(admin), 'content-type': 'text/plain' } }),
    )
    expect(response.status).toBe(200)
  })

  it('still refuses an empty JSON document where a body is required', async () => {
    const response = await t.app.handle(
      req('/api/v1/keys', { method: 'POST', body: '', headers: { ...bearer(admin), 'content-type': 'application/json' } }),
    )
    expect(response.status).toBe(400)
  })
})

/** Resident memory of a process, from /proc (Linux). */
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024

describe('anonymous uploads to a real server', () => {
  it('keeps RSS flat across ten concurrent anonymous 45 MB uploads, each answered 401', async () => {
    const server = await startServer()
    try {
      const size = 45 << 20
      const chunk = new Uint8Array(1 << 16)
      const upload = async () => {
        let sent = 0
        const stream = new ReadableStream<Uint8Array>({
          pull(controller) {
            if (sent >= size) return controller.close()
            sent += chunk.byteLength
            controller.enqueue(chunk)
          },
        })
        // The server may answer and close before the client finishes sending; either way nothing was buffered.
        const response = await fetch(`${server.url}/api/v1/audio/vad`, {
          method: 'POST',
          body: stream,
          headers: { 'content-type': 'audio/wav', 'content-length': String(size) },
          duplex: 'half',
        } as RequestInit).catch((error: Error) => error)
        return response instanceof Response ? response.status : 'closed'
      }
      // Warm the route once so lazily built code is not counted as growth.
      await upload()
      const before = rssMiB(server.proc.pid)
      const outcomes = await Promise.all(Array.from({ length: 10 }, upload))
      const after = rssMiB(server.proc.pid)
      for (const outcome of outcomes) expect([401, 'closed']).toContain(outcome)
      expect(outcomes).toContain(401)
      expect(after - before).toBeLessThan(16)
    } finally {
      server.proc.kill('SIGTERM')
      await server.proc.exited
    }
  })
})

describe('failed authentications', () => {
  it('are limited per client address: 401s carry the limit headers, then 429 with Retry-After, good keys included', async () => {
    const limited = await createTestApp({ RATE_LIMIT_AUTH_FAILURES: '3/60' })
    try {
      const good = await createKey(limited, ['inference'])
      const guess = () => limited.app.handle(req('/api/v1/keys/me', { headers: bearer(`vk_deadbeef_${'x'.repeat(43)}`) }))
      const failures = [await guess(), await guess(), await guess()]
      expect(failures.map((r) => r.status)).toEqual([401, 401, 401])
      expect(failures.map((r) => r.headers.get('ratelimit'))).toEqual([
        '"auth_failures";r=2;t=60',
        '"auth_failures";r=1;t=60',
        '"auth_failures";r=0;t=60',
      ])
      const refused = await guess()
      expect(refused.status).toBe(429)
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0)
      expect((await body(refused)).error.details.policy).toBe('auth_failures')
      // While the address is refused, its key checks are not made at all, a good key's included.
      expect((await limited.app.handle(req('/api/v1/keys/me', { headers: bearer(good) }))).status).toBe(429)
    } finally {
      await limited.close()
    }
  })

  it('cost a good key nothing: an address that never failed is never held up', async () => {
    const limited = await createTestApp({ RATE_LIMIT_AUTH_FAILURES: '1/60' })
    try {
      const good = await createKey(limited, ['inference'])
      for (let i = 0; i < 5; i++) expect((await limited.app.handle(req('/api/v1/keys/me', { headers: bearer(good) }))).status).toBe(200)
    } finally {
      await limited.close()
    }
  })
})
