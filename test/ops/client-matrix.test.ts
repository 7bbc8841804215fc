import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { cpSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLIENTS, type ClientBody } from '../clients'
import { type RunningServer, startServer } from '../helpers'

/**
 * The client matrix (issue 14 §1): every operation below, sent by every client people use against a real vireo
 * process, gets the same documented status and envelope. Each client sends what it sends on its own: Bun's and
 * undici's fetch put `Content-Length: 0` on a bodiless DELETE, curl puts nothing, Python's clients each encode
 * multipart their own way. In CI a missing client fails the run; elsewhere it is skipped with a warning.
 */

const ADMIN = `matrix_admin_${'a'.repeat(32)}`
const JSON_TYPE = { 'content-type': 'application/json' }
const WAV = new URL('../fixtures/audio/speech_16k_mono_s16.wav', import.meta.url).pathname
const ARITH_REQUEST = {
  inputs: [
    { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] },
    { name: 'n', shape: [1, 2], datatype: 'INT64', data: [1, 2] },
  ],
}

let server: RunningServer
let models: string
/** A key with the inference and jobs scopes, for the routes that are not admin's. */
let user: { id: string; key: string }

type Vars = Record<string, string>
/** The fields of an answer the checks look at (all optional: an answer may lack any of them). */
interface Envelope {
  success?: boolean
  errors?: unknown[]
  request_id?: unknown
  error?: { code?: string; details?: { status?: string } }
  data?: {
    id?: string
    key?: unknown
    name?: string
    status?: string
    model?: string
    scopes?: string[]
    revoked_at?: unknown
    mode?: string
    sample_rate?: number
    segments?: unknown[]
    outputs?: { name: string; data: unknown }[]
  }
}
const bearer = (key: string) => ({ authorization: `Bearer ${key}` })
const json = (value: unknown): ClientBody => ({ kind: 'text', text: JSON.stringify(value) })
const none: ClientBody = { kind: 'none' }

/** Setup through Bun's fetch with the admin key; not part of what is tested. */
async function call(method: string, path: string, key: string, value?: unknown) {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: value === undefined ? bearer(key) : { ...bearer(key), ...JSON_TYPE },
    body: value === undefined ? undefined : JSON.stringify(value),
  })
  const answer = (await response.json()) as { data: { id: string; key: string } }
  if (!response.ok) throw new Error(`setup ${method} ${path} answered ${response.status}: ${JSON.stringify(answer)}`)
  return answer.data
}
const newKey = async (): Promise<Vars> => ({
  id: (await call('POST', '/api/v1/keys', ADMIN, { name: 'to revoke', scopes: ['inference'] })).id,
})
const newJob = async (): Promise<Vars> => ({
  id: (await call('POST', '/api/v1/jobs', user.key, { task: 'infer', model: 'arith', request: ARITH_REQUEST })).id,
})
const cancelledJob = async (): Promise<Vars> => {
  const { id } = await newJob()
  await call('DELETE', `/api/v1/jobs/${id}`, user.key)
  return { id: id! }
}

interface Operation {
  name: string
  method: string
  /** `{name}` is filled from what `prepare` returned. */
  path: string
  headers?: () => Record<string, string>
  body?: ClientBody
  /** Things the request needs first (a key to revoke, a job to cancel), made fresh for each client. */
  prepare?: () => Promise<Vars>
  status: number
  /** What of the answer is checked, compared with `expected`. */
  envelope: (body: Envelope, vars: Vars) => unknown
  expected: (vars: Vars) => unknown
}

const errorCode = (body: Envelope) => ({ success: body.success, code: body.error?.code, request_id: typeof body.request_id })
const anError = (code: string) => () => ({ success: false, code, request_id: 'string' })

const OPERATIONS: Operation[] = [
  {
    name: 'GET / (no key)',
    method: 'GET',
    path: '/',
    status: 200,
    envelope: (b) => ({ success: b.success, name: b.data?.name, errors: b.errors }),
    expected: () => ({ success: true, name: 'vireo', errors: [] }),
  },
  {
    name: 'GET /api/v1/health/live',
    method: 'GET',
    path: '/api/v1/health/live',
    status: 200,
    envelope: (b) => ({ success: b.success, status: b.data?.status }),
    expected: () => ({ success: true, status: 'alive' }),
  },
  {
    name: 'GET /api/v1/models with a key',
    method: 'GET',
    path: '/api/v1/models',
    headers: () => bearer(user.key),
    status: 200,
    envelope: (b) => ({
      success: b.success,
      models: (b.data as unknown as { name: string; status: string }[]).map((m) => `${m.name}:${m.status}`).sort(),
    }),
    expected: () => ({ success: true, models: ['arith:ready', 'silero-vad:ready'] }),
  },
  {
    name: 'GET /api/v1/models without a key',
    method: 'GET',
    path: '/api/v1/models',
    status: 401,
    envelope: errorCode,
    expected: anError('UNAUTHORIZED'),
  },
  {
    name: 'POST /api/v1/models/arith/infer (JSON)',
    method: 'POST',
    path: '/api/v1/models/arith/infer',
    headers: () => ({ ...bearer(user.key), ...JSON_TYPE }),
    body: json(ARITH_REQUEST),
    status: 200,
    envelope: (b) => ({ success: b.success, y: b.data?.outputs?.find((o) => o.name === 'y')?.data }),
    expected: () => ({ success: true, y: [3, 5, 7, 9] }),
  },
  {
    name: 'POST /api/v1/keys (admin, JSON)',
    method: 'POST',
    path: '/api/v1/keys',
    headers: () => ({ ...bearer(ADMIN), ...JSON_TYPE }),
    body: json({ name: 'made by a client', scopes: ['inference'] }),
    status: 201,
    envelope: (b) => ({ success: b.success, scopes: b.data?.scopes, secret: typeof b.data?.key }),
    expected: () => ({ success: true, scopes: ['inference'], secret: 'string' }),
  },
  {
    name: 'POST /api/v1/keys with application/json and an empty body',
    method: 'POST',
    path: '/api/v1/keys',
    headers: () => ({ ...bearer(ADMIN), ...JSON_TYPE }),
    body: { kind: 'text', text: '' },
    status: 400,
    envelope: errorCode,
    expected: anError('VALIDATION_ERROR'),
  },
  {
    name: 'POST /api/v1/keys with application/json and no body at all',
    method: 'POST',
    path: '/api/v1/keys',
    headers: () => ({ ...bearer(ADMIN), ...JSON_TYPE }),
    status: 400,
    envelope: errorCode,
    expected: anError('VALIDATION_ERROR'),
  },
  {
    name: 'GET /api/v1/keys/me',
    method: 'GET',
    path: '/api/v1/keys/me',
    headers: () => bearer(user.key),
    status: 200,
    envelope: (b) => ({ success: b.success, id: b.data?.id }),
    expected: () => ({ success: true, id: user.id }),
  },
  {
    name: 'DELETE /api/v1/keys/:id, no body, no Content-Type',
    method: 'DELETE',
    path: '/api/v1/keys/{id}',
    prepare: newKey,
    headers: () => bearer(ADMIN),
    status: 200,
    envelope: (b) => ({ success: b.success, id: b.data?.id, revoked: typeof b.data?.revoked_at }),
    expected: (v) => ({ success: true, id: v.id, revoked: 'string' }),
  },
  {
    name: 'DELETE /api/v1/keys/:id, Content-Type: application/json and no body',
    method: 'DELETE',
    path: '/api/v1/keys/{id}',
    prepare: newKey,
    headers: () => ({ ...bearer(ADMIN), ...JSON_TYPE }),
    status: 200,
    envelope: (b) => ({ success: b.success, id: b.data?.id, revoked: typeof b.data?.revoked_at }),
    expected: (v) => ({ success: true, id: v.id, revoked: 'string' }),
  },
  {
    name: 'DELETE /api/v1/keys/:id with an empty JSON object (the route takes no body)',
    method: 'DELETE',
    path: '/api/v1/keys/{id}',
    prepare: newKey,
    headers: () => ({ ...bearer(ADMIN), ...JSON_TYPE }),
    body: json({}),
    status: 200,
    envelope: (b) => ({ success: b.success, id: b.data?.id, revoked: typeof b.data?.revoked_at }),
    expected: (v) => ({ success: true, id: v.id, revoked: 'string' }),
  },
  {
    name: 'DELETE /api/v1/keys/:id without a key',
    method: 'DELETE',
    path: '/api/v1/keys/{id}',
    prepare: newKey,
    status: 401,
    envelope: errorCode,
    expected: anError('UNAUTHORIZED'),
  },
  {
    name: 'POST /api/v1/jobs (an arith request)',
    method: 'POST',
    path: '/api/v1/jobs',
    headers: () => ({ ...bearer(user.key), ...JSON_TYPE }),
    body: json({ task: 'infer', model: 'arith', request: ARITH_REQUEST }),
    status: 202,
    envelope: (b) => ({ success: b.success, status: b.data?.status, model: b.data?.model }),
    expected: () => ({ success: true, status: 'queued', model: 'arith' }),
  },
  {
    name: 'DELETE /api/v1/jobs/:id (cancel), no body',
    method: 'DELETE',
    path: '/api/v1/jobs/{id}',
    prepare: newJob,
    headers: () => bearer(user.key),
    status: 200,
    envelope: (b) => ({ success: b.success, id: b.data?.id, status: b.data?.status }),
    expected: (v) => ({ success: true, id: v.id, status: 'cancelled' }),
  },
  {
    // Documented: "Requeue a failed or dead job", 409 otherwise.
    name: 'POST /api/v1/jobs/:id/retry of a cancelled job, no body',
    method: 'POST',
    path: '/api/v1/jobs/{id}/retry',
    prepare: cancelledJob,
    headers: () => bearer(user.key),
    status: 409,
    envelope: (b) => ({ ...errorCode(b), job: b.error?.details?.status }),
    expected: () => ({ ...anError('CONFLICT')(), job: 'cancelled' }),
  },
  {
    name: 'POST /api/v1/jobs/:id/retry of a cancelled job, Content-Type: application/json and no body',
    method: 'POST',
    path: '/api/v1/jobs/{id}/retry',
    prepare: cancelledJob,
    headers: () => ({ ...bearer(user.key), ...JSON_TYPE }),
    status: 409,
    envelope: (b) => ({ ...errorCode(b), job: b.error?.details?.status }),
    expected: () => ({ ...anError('CONFLICT')(), job: 'cancelled' }),
  },
  {
    name: 'POST /api/v1/jobs/:id/retry of a queued job with an empty JSON object',
    method: 'POST',
    path: '/api/v1/jobs/{id}/retry',
    prepare: newJob,
    headers: () => ({ ...bearer(user.key), ...JSON_TYPE }),
    body: json({}),
    status: 409,
    envelope: (b) => ({ ...errorCode(b), job: b.error?.details?.status }),
    expected: () => ({ ...anError('CONFLICT')(), job: 'queued' }),
  },
  {
    name: 'POST /api/v1/audio/vad, multipart',
    method: 'POST',
    path: '/api/v1/audio/vad',
    headers: () => bearer(user.key),
    body: { kind: 'multipart', field: 'file', path: WAV, type: 'audio/wav' },
    status: 200,
    envelope: (b) => ({ success: b.success, mode: b.data?.mode, rate: b.data?.sample_rate, speech: (b.data?.segments?.length ?? 0) > 0 }),
    expected: () => ({ success: true, mode: 'model', rate: 16000, speech: true }),
  },
  {
    name: 'POST /api/v1/audio/vad, raw audio/wav',
    method: 'POST',
    path: '/api/v1/audio/vad',
    headers: () => ({ ...bearer(user.key), 'content-type': 'audio/wav' }),
    body: { kind: 'file', path: WAV },
    status: 200,
    envelope: (b) => ({ success: b.success, mode: b.data?.mode, rate: b.data?.sample_rate, speech: (b.data?.segments?.length ?? 0) > 0 }),
    expected: () => ({ success: true, mode: 'model', rate: 16000, speech: true }),
  },
]

beforeAll(async () => {
  // arith for tensors and jobs, Silero for /audio/vad: a models folder holding both.
  models = mkdtempSync(join(tmpdir(), 'vireo-matrix-models-'))
  cpSync('test/fixtures/models/arith', join(models, 'arith'), { recursive: true })
  cpSync('models/silero-vad', join(models, 'silero-vad'), { recursive: true })
  server = await startServer({
    ADMIN_API_KEY: ADMIN,
    MODELS_DIR: models,
    // Jobs stay queued, so cancelling and retrying them has one documented answer.
    JOBS_CONCURRENCY: '0',
    RATE_LIMIT_PUBLIC: '100000/60',
    RATE_LIMIT_INFERENCE: '100000/60',
    RATE_LIMIT_JOBS: '100000/60',
    RATE_LIMIT_ADMIN: '100000/60',
  })
  const created = await call('POST', '/api/v1/keys', ADMIN, { name: 'matrix user', scopes: ['inference', 'jobs'] })
  user = { id: created.id, key: created.key }
})
afterAll(async () => {
  server?.proc.kill('SIGTERM')
  await server?.proc.exited
  if (models) rmSync(models, { recursive: true, force: true })
})

describe('client matrix', () => {
  it('expects only what the OpenAPI document promises for each operation', async () => {
    const spec = (await (await fetch(`${server.url}/api/v1/docs/json`)).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>
    }
    // The document's template for a path: itself where it is one (/keys/me), else the one it fills (/models/{name}/infer).
    const template = (path: string) =>
      spec.paths[path] ? path : Object.keys(spec.paths).find((t) => new RegExp(`^${t.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(path))
    const undocumented = OPERATIONS.filter((op) => !spec.paths[template(op.path) ?? '']?.[op.method.toLowerCase()]?.responses[op.status])
    expect(undocumented.map((op) => `${op.name}: ${op.status}`)).toEqual([])
  })

  for (const client of CLIENTS) {
    if (client.missing) {
      if (process.env.CI)
        it(`${client.name} is installed`, () => {
          throw new Error(`${client.name} is missing in CI: ${client.missing}`)
        })
      else console.warn(`[skip] client matrix: ${client.name}: ${client.missing}`)
      continue
    }
    describe(client.name, () => {
      for (const op of OPERATIONS)
        it(`${op.name} via ${client.name}`, async () => {
          const vars = (await op.prepare?.()) ?? {}
          const path = op.path.replace(/\{(\w+)\}/g, (_, name: string) => vars[name]!)
          const answer = await client.send({
            method: op.method,
            url: `${server.url}${path}`,
            headers: op.headers?.() ?? {},
            body: op.body ?? none,
          })
          let parsed: Envelope
          try {
            parsed = JSON.parse(answer.body)
          } catch {
            parsed = { error: { code: `not JSON: ${answer.body.slice(0, 200)}` } }
          }
          let envelope: unknown
          try {
            envelope = op.envelope(parsed, vars)
          } catch {
            envelope = parsed
          }
          expect({ status: answer.status, envelope }, `${client.name} × ${op.name}`).toEqual({
            status: op.status,
            envelope: op.expected(vars),
          })
        })
    })
  }
})
