import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { bearer, type RunningServer, type Runtime, startServer, until } from '../helpers'
import {
  configuredStream,
  fixture,
  fixturePcm,
  intervalIoU,
  openStream,
  type StreamClient,
  type StreamOptions,
  VALID,
} from '../modules/audio/helpers'

/**
 * The main flows of vireo, run against a real server process of one runtime: Bun by default, Deno with
 * `TEST_RUNTIME=deno` (what `bun run smoke:deno` runs in CI). Keys, inference, batches, file VAD, jobs, the errors
 * and the realtime stream each get the same documented answer on both; a Deno that is not installed fails the run.
 */

const RUNTIME = (process.env.TEST_RUNTIME ?? 'bun') as Runtime
const ADMIN = `flows_admin_${'f'.repeat(32)}`
const MAX_JSON_BYTES = 65536
const MAX_MESSAGE_BYTES = 65536
const SPEECH = 'speech_16k_mono_s16.wav'
const SETTINGS = {
  ADMIN_API_KEY: ADMIN,
  MODELS_DIR: 'models',
  JOBS_CONCURRENCY: '1',
  JOBS_POLL_MS: '50',
  MAX_JSON_BYTES: String(MAX_JSON_BYTES),
  VAD_STREAM_MAX_PER_KEY: '2',
  VAD_STREAM_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES),
  RATE_LIMIT_PUBLIC: '100000/60',
  RATE_LIMIT_INFERENCE: '100000/60',
  RATE_LIMIT_JOBS: '100000/60',
  RATE_LIMIT_ADMIN: '100000/60',
  RATE_LIMIT_AUTH_FAILURES: '100000/60',
  SHUTDOWN_GRACE_MS: '2000',
}
/** One Silero frame of silence. */
const FRAME = {
  inputs: [
    { name: 'input', shape: [1, 512], datatype: 'FP32', data: new Array(512).fill(0) },
    { name: 'state', shape: [2, 1, 128], datatype: 'FP32', data: new Array(256).fill(0) },
    { name: 'sr', shape: [], datatype: 'INT64', data: [16000] },
  ],
}

interface Answer {
  status: number
  headers: Headers
  // biome-ignore lint/suspicious/noExplicitAny: answers are checked field by field
  body: any
}

let server: RunningServer
/** A key with the inference and jobs scopes. */
let user: string

async function call(
  method: string,
  path: string,
  init: { key?: string; json?: unknown; headers?: Record<string, string>; body?: BodyInit } = {},
) {
  const headers: Record<string, string> = { ...(init.key ? bearer(init.key) : {}), ...init.headers }
  if (init.json !== undefined) headers['content-type'] = 'application/json'
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers,
    body: init.json === undefined ? init.body : JSON.stringify(init.json),
  })
  const text = await response.text()
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    body = text
  }
  return { status: response.status, headers: response.headers, body } as Answer
}

/** The error envelope with that code, its request id in the header too, and the headers every answer carries. */
function expectError(answer: Answer, status: number, code: string) {
  expect({ status: answer.status, success: answer.body.success, code: answer.body.error?.code }).toEqual({ status, success: false, code })
  expect(typeof answer.body.error.message).toBe('string')
  expect(answer.body.request_id).toBe(answer.headers.get('x-request-id'))
  expect(answer.headers.get('api-version')).toBe('1')
  expect(answer.headers.get('x-content-type-options')).toBe('nosniff')
}

function expectSuccess(answer: Answer, status = 200) {
  expect({ status: answer.status, success: answer.body.success, errors: Array.isArray(answer.body.errors) }).toEqual({
    status,
    success: true,
    errors: true,
  })
  expect(answer.headers.get('x-request-id')).toBeTruthy()
}

/** Polls a job until it has finished, and returns it. */
async function finished(id: string, key = user) {
  let job: Answer['body']
  await until(async () => {
    job = (await call('GET', `/api/v1/jobs/${id}`, { key })).body.data
    return ['succeeded', 'failed', 'dead', 'cancelled'].includes(job.status)
  })
  return job
}

beforeAll(async () => {
  server = await startServer(SETTINGS, RUNTIME)
  const created = await call('POST', '/api/v1/keys', { key: ADMIN, json: { name: 'flows user', scopes: ['inference', 'jobs'] } })
  user = created.body.data.key
})
afterAll(async () => {
  server?.proc.kill('SIGTERM')
  await server?.proc.exited
})

describe(`main flows on ${RUNTIME}`, () => {
  it('creates, lists, reads and revokes a key; the revoked key is refused', async () => {
    const created = await call('POST', '/api/v1/keys', { key: ADMIN, json: { name: 'flows', scopes: ['inference'] } })
    expectSuccess(created, 201)
    const { id, key, prefix } = created.body.data
    expect(key).toContain(prefix)
    const listed = await call('GET', '/api/v1/keys?limit=100', { key: ADMIN })
    expectSuccess(listed)
    expect(listed.body.data.items.map((k: { id: string }) => k.id)).toContain(id)
    expect(JSON.stringify(listed.body)).not.toContain(key)
    expect((await call('GET', '/api/v1/keys/me', { key })).body.data.id).toBe(id)
    const revoked = await call('DELETE', `/api/v1/keys/${id}`, { key: ADMIN })
    expectSuccess(revoked)
    expect(typeof revoked.body.data.revoked_at).toBe('string')
    expectError(await call('GET', '/api/v1/keys/me', { key }), 401, 'UNAUTHORIZED')
  })

  it('runs one inference and a batch with a failing item', async () => {
    const one = await call('POST', '/api/v1/models/silero-vad/infer', { key: user, json: FRAME })
    expectSuccess(one)
    const probability = one.body.data.outputs.find((o: { name: string }) => o.name === 'output').data[0]
    expect(probability).toBeGreaterThanOrEqual(0)
    expect(probability).toBeLessThan(0.5)
    const batch = await call('POST', '/api/v1/models/silero-vad/infer/batch', { key: user, json: { requests: [FRAME, { inputs: [] }] } })
    expectSuccess(batch)
    expect(batch.body.data.items.map((item: { status: string }) => item.status)).toEqual(['succeeded', 'failed'])
    expect(batch.body.data.items[0].result.outputs.find((o: { name: string }) => o.name === 'output').data[0]).toBeCloseTo(probability, 5)
    expect(batch.body.errors.map((e: { index: number; code: string }) => [e.index, e.code])).toEqual([[1, 'VALIDATION_ERROR']])
  })

  it("finds the speech of a WAV file, as the fixture's ground truth places it", async () => {
    const answer = await call('POST', '/api/v1/audio/vad', {
      key: user,
      headers: { 'content-type': 'audio/wav' },
      body: await fixture(SPEECH),
    })
    expectSuccess(answer)
    expect(answer.body.data.mode).toBe('model')
    expect(intervalIoU(answer.body.data.segments, VALID[SPEECH]!.speech)).toBeGreaterThanOrEqual(0.8)
    const multipart = new FormData()
    multipart.append('file', new Blob([await fixture(SPEECH)], { type: 'audio/wav' }), SPEECH)
    const posted = await call('POST', '/api/v1/audio/vad', { key: user, body: multipart })
    expect(posted.body.data.segments).toEqual(answer.body.data.segments)
  })

  it('runs an inference job and a VAD job to the end', async () => {
    const submitted = await call('POST', '/api/v1/jobs', { key: user, json: { task: 'infer', model: 'silero-vad', request: FRAME } })
    expectSuccess(submitted, 202)
    const job = await finished(submitted.body.data.id)
    expect(job.status).toBe('succeeded')
    expect(job.result.outputs.map((o: { name: string }) => o.name).sort()).toEqual(['output', 'stateN'])

    const accepted = await call('POST', '/api/v1/audio/vad', {
      key: user,
      headers: { 'content-type': 'audio/wav', prefer: 'respond-async' },
      body: await fixture(SPEECH),
    })
    expectSuccess(accepted, 202)
    expect(accepted.headers.get('location')).toBe(`/api/v1/jobs/${accepted.body.data.id}`)
    const vad = await finished(accepted.body.data.id)
    expect(vad.status).toBe('succeeded')
    expect(intervalIoU(vad.result.segments, VALID[SPEECH]!.speech)).toBeGreaterThanOrEqual(0.8)
  })

  it('routes on the path whatever the Host: a service reached by a short name such as `ml`', async () => {
    // Elysia's default router skips 11 characters of the URL ("http://a.bc") before looking for the path; Deno builds
    // the URL from the Host header, so a host of three characters or fewer was routed on the wrong path.
    for (const host of ['ml', 'api', 'x:80']) {
      const live = await call('GET', '/api/v1/health/live', { headers: { host } })
      expect(live.status, host).toBe(200)
      expect(live.body.data.status).toBe('alive')
      const inferred = await call('POST', '/api/v1/models/silero-vad/infer', { key: user, json: FRAME, headers: { host } })
      expect(inferred.status, host).toBe(200)
      expect(inferred.body.data.outputs.map((o: { name: string }) => o.name).sort()).toEqual(['output', 'stateN'])
      expectError(await call('GET', '/api/v1/no-such-route', { headers: { host } }), 404, 'NOT_FOUND')
    }
  })

  it('answers 401, 404, 405, 400, 413 and 415 in the error envelope', async () => {
    expectError(await call('GET', '/api/v1/models'), 401, 'UNAUTHORIZED')
    expectError(await call('GET', '/api/v1/no-such-route'), 404, 'NOT_FOUND')
    expectError(await call('GET', '/api/v1/models/no-such-model', { key: user }), 404, 'NOT_FOUND')
    const wrongMethod = await call('PUT', '/api/v1/keys', { key: ADMIN })
    expectError(wrongMethod, 405, 'METHOD_NOT_ALLOWED')
    expect(wrongMethod.headers.get('allow')).toContain('POST')
    const invalid = await call('POST', '/api/v1/keys', { key: ADMIN, json: { name: 42, scopes: ['root'] } })
    expectError(invalid, 400, 'VALIDATION_ERROR')
    expect(invalid.body.error.details.map((d: { path: string }) => d.path).sort()).toEqual(['/name', '/scopes/0'])
    expectError(
      await call('POST', '/api/v1/models/silero-vad/infer', {
        key: user,
        headers: { 'content-type': 'application/json' },
        body: '{"inputs": [',
      }),
      400,
      'VALIDATION_ERROR',
    )
    const oversized = JSON.stringify({
      inputs: [{ name: 'input', shape: [1], datatype: 'FP32', data: [0] }],
      pad: 'x'.repeat(MAX_JSON_BYTES),
    })
    expectError(
      await call('POST', '/api/v1/models/silero-vad/infer', {
        key: user,
        headers: { 'content-type': 'application/json' },
        body: oversized,
      }),
      413,
      'PAYLOAD_TOO_LARGE',
    )
    // Streamed without a Content-Length, the body is counted as it arrives.
    const streamed = new Blob([oversized]).stream()
    expectError(
      await call('POST', '/api/v1/models/silero-vad/infer', { key: user, headers: { 'content-type': 'application/json' }, body: streamed }),
      413,
      'PAYLOAD_TOO_LARGE',
    )
    expectError(
      await call('POST', '/api/v1/audio/vad', {
        key: user,
        headers: { 'content-type': 'audio/wav' },
        body: await fixture('invalid_flac_named.wav'),
      }),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    )
  })
})

describe(`realtime stream on ${RUNTIME}`, () => {
  const url = () => `${server.url.replace(/^http/, 'ws')}/api/v1/audio/vad/stream`
  const connect = (options: StreamOptions = { headers: bearer(user) }) => openStream(url(), options)
  /** An upgrade asked for by hand, so the HTTP answer of a refusal can be read. */
  const upgrade = (headers: Record<string, string>) =>
    fetch(url().replace(/^ws/, 'http'), {
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        ...headers,
      },
    })

  it('streams a speech fixture in uneven chunks: its segments are those of POST /audio/vad and of the ground truth', async () => {
    const client = await configuredStream(connect())
    const data = await fixturePcm(SPEECH)
    for (let at = 0; at < data.length; at += 2 * 1234) client.ws.send(data.subarray(at, Math.min(data.length, at + 2 * 1234)))
    client.ws.send(JSON.stringify({ type: 'end' }))
    await client.next('end')
    expect((await client.closed).code).toBe(1000)
    const streamed = client.events.filter((e) => e.type === 'speech_end').map((e) => e.segment!)
    const posted = await call('POST', '/api/v1/audio/vad', {
      key: user,
      headers: { 'content-type': 'audio/wav' },
      body: await fixture(SPEECH),
    })
    expect(streamed.length).toBe(posted.body.data.segments.length)
    streamed.forEach((segment, i) => {
      expect(segment.start_s).toBeCloseTo(posted.body.data.segments[i].start_s, 3)
      expect(segment.end_s).toBeCloseTo(posted.body.data.segments[i].end_s, 3)
    })
    expect(intervalIoU(streamed, VALID[SPEECH]!.speech)).toBeGreaterThanOrEqual(0.8)
  })

  it('takes the key as a subprotocol, answers with the keyless one, and refuses a bad key before the upgrade', async () => {
    const browser = connect({ protocols: ['vireo.vad.v1', `vireo.key.${user}`] })
    expect(await browser.opened).toBe(true)
    expect(browser.ws.protocol).toBe('vireo.vad.v1')
    browser.ws.close()
    await browser.closed
    expect(await connect({}).opened).toBe(false)
    const anonymous = await upgrade({})
    expect(anonymous.status).toBe(401)
    expect((await anonymous.json()).error.code).toBe('UNAUTHORIZED')
    const keyOnly = await upgrade({ 'sec-websocket-protocol': `vireo.key.${user}` })
    expect(keyOnly.status).toBe(400)
    expect(keyOnly.headers.get('sec-websocket-protocol')).toBeNull()
    expect(JSON.stringify([...keyOnly.headers, await keyOnly.text()])).not.toContain(user)
  })

  it('refuses a malformed upgrade (no Sec-WebSocket-Key) with 400 in the envelope', async () => {
    const answer = await fetch(url().replace(/^ws/, 'http'), { headers: { ...bearer(user), connection: 'Upgrade', upgrade: 'websocket' } })
    const body = await answer.json()
    expect({ status: answer.status, code: body.error.code, request_id: body.request_id }).toEqual({
      status: 400,
      code: 'VALIDATION_ERROR',
      request_id: answer.headers.get('x-request-id'),
    })
  })

  const failures: [string, (c: StreamClient) => void, string, number][] = [
    ['malformed config', (c) => c.ws.send('hello'), 'VALIDATION_ERROR', 1008],
    ['binary before config', (c) => c.ws.send(new Uint8Array(64)), 'UNSUPPORTED_MEDIA_TYPE', 1003],
    ['a message over VAD_STREAM_MAX_MESSAGE_BYTES', (c) => c.ws.send(new Uint8Array(MAX_MESSAGE_BYTES + 1)), 'PAYLOAD_TOO_LARGE', 1009],
  ]
  for (const [what, act, code, close] of failures)
    it(`sends an error event and closes ${close} for ${what}`, async () => {
      const client = connect()
      expect(await client.opened).toBe(true)
      act(client)
      expect((await client.next('error')).code).toBe(code)
      expect((await client.closed).code).toBe(close)
    })

  it('closes 1003 for an odd byte count after the config', async () => {
    const client = await configuredStream(connect())
    client.ws.send(new Uint8Array(1001))
    expect((await client.next('error')).code).toBe('UNSUPPORTED_MEDIA_TYPE')
    expect((await client.closed).code).toBe(1003)
  })

  // What each runtime does itself with a message over its own cap, before vireo sees it (VAD_STREAM_MAX_MESSAGE_BYTES
  // is capped at Bun's 16 MiB, so below that vireo answers on both).
  const cap = { bun: { mib: 16, close: 1009 }, deno: { mib: 64, close: 1006 } }[RUNTIME]
  it(`closes a stream with ${cap.close} for a message over ${RUNTIME}'s own cap of ${cap.mib} MiB, and keeps serving`, async () => {
    const client = await configuredStream(connect())
    client.ws.send(new Uint8Array(cap.mib * 1024 * 1024 + 2))
    expect((await client.closed).code).toBe(cap.close)
    expect(client.events.map((e) => e.type)).toEqual(['ready'])
    const next = await configuredStream(connect())
    next.ws.close()
    await next.closed
  })

  it('limits open streams per key, and frees the slot when a stream closes', async () => {
    const key = (await call('POST', '/api/v1/keys', { key: ADMIN, json: { name: 'streams', scopes: ['inference'] } })).body.data.key
    const open = [connect({ headers: bearer(key) }), connect({ headers: bearer(key) })]
    for (const client of open) await configuredStream(client)
    const third = connect({ headers: bearer(key) })
    expect((await third.next('error')).code).toBe('RATE_LIMITED')
    expect((await third.closed).code).toBe(1008)
    open[0]!.ws.close()
    await open[0]!.closed
    let fourth: StreamClient | undefined
    // The server learns of the close a moment after the client does.
    await until(async () => {
      fourth = connect({ headers: bearer(key) })
      const answer = await Promise.race([fourth.next('error').then(() => false), configuredStream(fourth).then(() => true)])
      if (!answer) fourth.ws.close()
      return answer
    })
    open[1]!.ws.close()
    fourth!.ws.close()
  })
})

describe(`stream limits on ${RUNTIME}`, () => {
  /** Upgrades count against the inference quota. */
  const QUOTA = 6
  let limited: RunningServer
  beforeAll(async () => {
    limited = await startServer(
      { ...SETTINGS, VAD_STREAM_IDLE_MS: '1000', VAD_STREAM_MAX_DURATION_MS: '3000', RATE_LIMIT_INFERENCE: `${QUOTA}/600` },
      RUNTIME,
    )
  })
  afterAll(async () => {
    limited?.proc.kill('SIGTERM')
    await limited?.proc.exited
  })
  const connectLimited = () => openStream(`${limited.url.replace(/^http/, 'ws')}/api/v1/audio/vad/stream`, { headers: bearer(ADMIN) })

  it('closes 4008 after VAD_STREAM_IDLE_MS without a message', async () => {
    const client = await configuredStream(connectLimited())
    expect((await client.next('error')).code).toBe('TIMEOUT_ERROR')
    expect((await client.closed).code).toBe(4008)
  })

  it('closes 1008 at VAD_STREAM_MAX_DURATION_MS however busy the stream is', async () => {
    const client = await configuredStream(connectLimited())
    const feeder = setInterval(() => client.ws.readyState === WebSocket.OPEN && client.ws.send(new Uint8Array(3200)), 200)
    const error = await client.next('error')
    clearInterval(feeder)
    expect(error.code).toBe('TIMEOUT_ERROR')
    expect((await client.closed).code).toBe(1008)
  })

  it('counts each upgrade against the inference quota, and refuses the upgrade with 429 once it is spent', async () => {
    let refused = false
    for (let i = 0; i <= QUOTA && !refused; i++) {
      const client = connectLimited()
      refused = !(await client.opened)
      client.ws.close()
      await client.closed
    }
    expect(refused).toBe(true)
    const answer = await fetch(`${limited.url}/api/v1/audio/vad/stream`, {
      headers: {
        ...bearer(ADMIN),
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      },
    })
    expect(answer.status).toBe(429)
    expect((await answer.json()).error.code).toBe('RATE_LIMITED')
    expect(Number(answer.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(answer.headers.get('ratelimit-policy')).toBe(`"inference";q=${QUOTA};w=600`)
  })
})

describe(`shutdown on ${RUNTIME}`, () => {
  // Bun lets a stream run on through SHUTDOWN_GRACE_MS and then closes it; Deno's server.shutdown() closes it at once.
  // An upload still arriving is cut by server.stop(true) once the grace period is over on Bun; on Deno 2.9 shutdown()
  // makes its body unreadable at once (denoland/deno#36809), so it is answered 400 then.
  it('closes an open stream with 1001 on SIGTERM, ends an upload that never finishes, and exits 0', async () => {
    const client = await configuredStream(
      openStream(`${server.url.replace(/^http/, 'ws')}/api/v1/audio/vad/stream`, { headers: bearer(user) }),
    )
    // An upload that starts and never ends, with a key of its own: its first use (checked before the body is read)
    // shows as last_used_at, so the signal comes once the server is reading the body.
    const created = (await call('POST', '/api/v1/keys', { key: ADMIN, json: { name: 'uploader', scopes: ['inference'] } })).body.data
    const stalled = fetch(`${server.url}/api/v1/audio/vad`, {
      method: 'POST',
      headers: { ...bearer(created.key), 'content-type': 'audio/wav' },
      body: new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new Uint8Array(1024))
        },
      }),
      duplex: 'half',
    } as RequestInit).then(
      (response) => response.status,
      () => 'cut',
    )
    await until(
      async () =>
        (await call('GET', '/api/v1/keys?limit=100', { key: ADMIN })).body.data.items.find((k: { id: string }) => k.id === created.id)
          ?.last_used_at !== null,
    )
    server.proc.kill('SIGTERM')
    expect((await client.closed).code).toBe(1001)
    expect(await server.proc.exited).toBe(0)
    expect(await stalled).toBe({ bun: 'cut' as const, deno: 400 }[RUNTIME])
    const logs = await server.output()
    if (RUNTIME === 'bun') expect(logs).toContain('"msg":"grace period over; closing remaining connections"')
    expect(logs).toContain('"msg":"shutdown complete"')
  })
})
