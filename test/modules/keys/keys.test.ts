import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { decodeCursor } from '../../../src/db/cursor'
import { generateKey, hashKey, KEY_FORMAT, sanitizeName } from '../../../src/keys/service'
import { bearer, body, createKey, createTestApp, req, type TestApp } from '../../helpers'

let t: TestApp
let admin: string
let inference: string
let jobs: string
beforeAll(async () => {
  t = await createTestApp()
  admin = await createKey(t, ['admin'])
  inference = await createKey(t, ['inference'])
  jobs = await createKey(t, ['jobs'])
})
afterAll(() => t.close())

const post = (key: string, json: unknown) => req('/api/v1/keys', { method: 'POST', json, headers: bearer(key) })

describe('key format', () => {
  it('is vk_<prefix>_<secret> with 32 random bytes, and only its hash is stored', async () => {
    const { key, prefix } = generateKey()
    expect(key).toMatch(KEY_FORMAT)
    expect(Buffer.from(key.split('_').slice(2).join('_'), 'base64url').length).toBe(32)
    expect(key.startsWith(`vk_${prefix}_`)).toBe(true)
    const created = await t.deps.keys.create({ name: 'hash check', scopes: ['jobs'] })
    const rows = await t.deps.database.db.execute(`select * from api_keys where id = '${created.id}'` as never)
    const text = JSON.stringify(rows)
    expect(text).not.toContain(created.key)
    expect(text).toContain(hashKey(created.key))
  })

  it('sanitises names: trimmed, NFC, no control characters, length-limited', () => {
    expect(sanitizeName('  Cafe\u0301 \u0007bot\u200b ')).toBe('Café bot')
    expect(() => sanitizeName(' \u0000\u0001 ')).toThrow('Invalid key name')
    expect(() => sanitizeName('x'.repeat(101))).toThrow()
  })

  it('refuses a tampered cursor with 400, not a database error', async () => {
    expect(() => decodeCursor('bm9wZQ')).toThrow('Invalid cursor')
    const forged = Buffer.from(`2026-01-01T00:00:00.000Z|${'-'.repeat(36)}`).toString('base64url')
    const response = await t.app.handle(req(`/api/v1/keys?cursor=${forged}`, { headers: bearer(admin) }))
    expect(response.status).toBe(400)
    expect((await body(response)).error.code).toBe('VALIDATION_ERROR')
  })
})

describe('POST /api/v1/keys', () => {
  it('creates a key (201) and shows the secret once', async () => {
    const response = await t.app.handle(post(admin, { name: '  ci runner ', scopes: ['inference', 'jobs'] }))
    expect(response.status).toBe(201)
    const json = await body(response)
    expect(json.data).toMatchObject({ name: 'ci runner', scopes: ['inference', 'jobs'] })
    expect(json.data.key).toMatch(KEY_FORMAT)
    expect(response.headers.get('location')).toBe(`/api/v1/keys/${json.data.id}`)
    const me = await body(await t.app.handle(req('/api/v1/keys/me', { headers: bearer(json.data.key) })))
    expect(me.data.id).toBe(json.data.id)
    expect(JSON.stringify(me)).not.toContain(json.data.key)
    expect(me.data.key).toBeUndefined()
  })

  it('refuses unknown properties (no mass assignment) and bad scopes', async () => {
    for (const payload of [
      { name: 'x', scopes: ['inference'], id: '00000000-0000-0000-0000-000000000000' },
      { name: 'x', scopes: ['inference'], key_hash: 'abc' },
      { name: 'x', scopes: ['root'] },
      { name: 'x', scopes: [] },
      { name: '', scopes: ['jobs'] },
      { name: 'x', scopes: ['jobs'], expires_at: 'tomorrow' },
    ]) {
      const response = await t.app.handle(post(admin, payload))
      expect(response.status).toBe(400)
      expect((await body(response)).error.code).toBe('VALIDATION_ERROR')
    }
  })

  it('refuses an expiry in the past', async () => {
    const response = await t.app.handle(post(admin, { name: 'x', scopes: ['jobs'], expires_at: '2001-01-01T00:00:00Z' }))
    expect((await body(response)).error.details).toEqual([{ path: '/expires_at', message: 'must be in the future' }])
  })
})

describe('authentication', () => {
  const unauthorizedBodies = async (headers: Record<string, string>) => {
    const response = await t.app.handle(req('/api/v1/keys/me', { headers }))
    expect(response.status).toBe(401)
    const json = await body(response)
    delete json.request_id
    return JSON.stringify(json)
  }

  it('gives missing, malformed, unknown, revoked and expired keys the same 401 body', async () => {
    const revoked = await t.deps.keys.create({ name: 'to revoke', scopes: ['jobs'] })
    await t.app.handle(req(`/api/v1/keys/${revoked.id}`, { method: 'DELETE', headers: bearer(admin) }))
    const expiring = await t.deps.keys.create({ name: 'short', scopes: ['jobs'], expires_at: new Date(Date.now() + 300).toISOString() })
    await Bun.sleep(400)
    const bodies = await Promise.all([
      unauthorizedBodies({}),
      unauthorizedBodies({ authorization: 'Basic abc' }),
      unauthorizedBodies({ authorization: 'Bearer' }),
      unauthorizedBodies({ 'x-api-key': 'short' }),
      unauthorizedBodies(bearer(generateKey().key)),
      unauthorizedBodies(bearer(revoked.key)),
      unauthorizedBodies({ 'x-api-key': expiring.key }),
    ])
    expect(new Set(bodies).size).toBe(1)
  })

  it('accepts the key in X-API-Key as well as Authorization', async () => {
    const response = await t.app.handle(req('/api/v1/keys/me', { headers: { 'x-api-key': inference } }))
    expect(response.status).toBe(200)
  })

  it('refuses a key in the query string, without logging it', async () => {
    const response = await t.app.handle(
      req(`/api/v1/keys/me?api_key=${inference}`, { headers: { ...bearer(inference), 'x-request-id': 'key-in-url' } }),
    )
    expect(response.status).toBe(400)
    expect((await body(response)).error.message).toContain('not accepted in the URL')
    await t.logs.line((l) => l.request_id === 'key-in-url' && l.msg === 'request')
    expect(t.logs.text).not.toContain(inference)
  })

  it('revocation takes effect at once on the instance that revoked', async () => {
    const victim = await t.deps.keys.create({ name: 'victim', scopes: ['admin'] })
    expect((await t.app.handle(req('/api/v1/keys/me', { headers: bearer(victim.key) }))).status).toBe(200)
    const revoke = await t.app.handle(req(`/api/v1/keys/${victim.id}`, { method: 'DELETE', headers: bearer(admin) }))
    expect(revoke.status).toBe(200)
    const first = (await body(revoke)).data.revoked_at
    expect(first).not.toBeNull()
    expect((await t.app.handle(req('/api/v1/keys/me', { headers: bearer(victim.key) }))).status).toBe(401)
    const again = await t.app.handle(req(`/api/v1/keys/${victim.id}`, { method: 'DELETE', headers: bearer(admin) }))
    expect(again.status).toBe(200)
    expect((await body(again)).data.revoked_at).toBe(first)
  })

  it('answers 404 for revoking a key that does not exist, 400 for a malformed id', async () => {
    expect(
      (await t.app.handle(req('/api/v1/keys/00000000-0000-4000-8000-000000000000', { method: 'DELETE', headers: bearer(admin) }))).status,
    ).toBe(404)
    expect((await t.app.handle(req('/api/v1/keys/nope', { method: 'DELETE', headers: bearer(admin) }))).status).toBe(400)
  })
})

describe('scopes', () => {
  const matrix: [string, string, string, Record<string, number>][] = [
    ['POST', '/api/v1/keys', 'admin', {}],
    ['GET', '/api/v1/keys', 'admin', {}],
    ['GET', '/api/v1/keys/me', 'any', {}],
    ['DELETE', '/api/v1/keys/00000000-0000-4000-8000-000000000000', 'admin', { admin: 404 }],
  ]
  for (const [method, path, scope] of matrix) {
    it(`${method} ${path} needs ${scope}`, async () => {
      const keys: Record<string, string> = { admin, inference, jobs }
      for (const [holder, key] of Object.entries(keys)) {
        const init =
          method === 'POST' ? { method, json: { name: 'm', scopes: ['jobs'] }, headers: bearer(key) } : { method, headers: bearer(key) }
        const response = await t.app.handle(req(path, init))
        const allowed = scope === 'any' || holder === 'admin' || holder === scope
        if (allowed) expect(response.status).toBeLessThan(500)
        if (allowed) expect([200, 201, 404]).toContain(response.status)
        else {
          expect(response.status).toBe(403)
          expect((await body(response)).error.code).toBe('FORBIDDEN')
        }
      }
      expect((await t.app.handle(req(path, { method }))).status).toBe(401)
      expect((await t.app.handle(req(path, { method, headers: bearer('vk_00000000_bad') }))).status).toBe(401)
    })
  }

  it('a non-admin key sees only itself and cannot list or revoke others', async () => {
    const me = await body(await t.app.handle(req('/api/v1/keys/me', { headers: bearer(jobs) })))
    expect(me.data.scopes).toEqual(['jobs'])
    const list = await t.app.handle(req('/api/v1/keys', { headers: bearer(jobs) }))
    expect(list.status).toBe(403)
    const other = await body(await t.app.handle(req('/api/v1/keys/me', { headers: bearer(inference) })))
    expect((await t.app.handle(req(`/api/v1/keys/${other.data.id}`, { method: 'DELETE', headers: bearer(jobs) }))).status).toBe(403)
    expect((await t.app.handle(req('/api/v1/keys/me', { headers: bearer(inference) }))).status).toBe(200)
  })
})

describe('GET /api/v1/keys', () => {
  it('pages newest first with a cursor that stays stable while keys are added, never showing secrets or hashes', async () => {
    for (let i = 0; i < 5; i++) await createKey(t, ['jobs'], `page ${i}`)
    const seen: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const path: string = `/api/v1/keys?limit=3${cursor ? `&cursor=${cursor}` : ''}`
      const json = await body(await t.app.handle(req(path, { headers: bearer(admin) })))
      expect(json.data.items.length).toBeLessThanOrEqual(3)
      for (const item of json.data.items) {
        expect(item.key).toBeUndefined()
        expect(item.key_hash).toBeUndefined()
        expect(JSON.stringify(item)).not.toMatch(/[0-9a-f]{64}/)
        seen.push(item.id)
      }
      if (pages === 0) await createKey(t, ['jobs'], 'added while paging')
      cursor = json.data.next_cursor
      pages++
    } while (cursor)
    expect(new Set(seen).size).toBe(seen.length)
    const total = await t.deps.keys.count()
    expect(seen.length).toBe(total - 1)
  })

  it('validates limit, naming the parameter in every refusal', async () => {
    const low = 'Expected integer to be greater or equal to 1'
    const says = { '0': low, '-1': low, '101': 'Expected integer to be less or equal to 100', x: 'Expected integer' }
    for (const [limit, message] of Object.entries(says)) {
      const response = await t.app.handle(req(`/api/v1/keys?cursor=abc&limit=${limit}`, { headers: bearer(admin) }))
      expect(response.status).toBe(400)
      const { error } = await body(response)
      expect(
        error.details.map((d: { path: string }) => d.path),
        limit,
      ).toEqual(['query:/limit'])
      expect(error.details[0].message, limit).toBe(message)
      expect(error.message).not.toContain('property')
    }
  })
})

describe('bootstrap', () => {
  it('ensures ADMIN_API_KEY at start-up, once', async () => {
    const operator = 'operator_chosen_key_0123456789_abcdef'
    // A database of its own (in-memory PGlite), so the key count is this test's alone.
    const app = await createTestApp({ ADMIN_API_KEY: operator, DATABASE_URL: '' })
    try {
      const me = await body(await app.app.handle(req('/api/v1/keys/me', { headers: bearer(operator) })))
      expect(me.data).toMatchObject({ name: 'ADMIN_API_KEY', scopes: ['admin'] })
      expect(await app.deps.keys.ensureOperatorKey(operator)).toBe('present')
      expect(await app.deps.keys.count()).toBe(1)
    } finally {
      await app.close()
    }
  })
})
