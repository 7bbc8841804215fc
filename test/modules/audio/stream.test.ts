import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { bearer, body, createKey, createTestApp, req, type TestApp, until } from '../../helpers'
import { configuredStream, fixture, fixturePcm, openStream, type StreamClient, type StreamOptions } from './helpers'

let t: TestApp
let key: string
let url: string

/** vireo listening on a free port with the real models; resolves to its stream URL. */
async function listening(app: TestApp): Promise<string> {
  app.app.listen({ port: 0, hostname: '127.0.0.1' })
  return `ws://127.0.0.1:${app.app.server!.port}/api/v1/audio/vad/stream`
}
async function stop(app: TestApp) {
  await app.app.stop(true)
  await app.close()
}

// Stream time limits are left at their defaults here, so a slow machine never closes a stream mid-test;
// the limits themselves are tested on an app of their own below.
beforeAll(async () => {
  t = await createTestApp({
    MODELS_DIR: 'models',
    INFERENCE_WORKERS: '2',
    VAD_STREAM_MAX_PER_KEY: '2',
    VAD_STREAM_MAX_MESSAGE_BYTES: '65536',
  })
  key = await createKey(t, ['inference'])
  url = await listening(t)
})
afterAll(() => stop(t))

/** A stream client; by default with the key in the Authorization header, on the shared app. */
const connect = (options: StreamOptions = { headers: bearer(key) }, at = url) => openStream(at, options)
const configured = (config?: Record<string, unknown>, client = connect()) => configuredStream(client, config)
type Client = StreamClient

describe('GET /api/v1/audio/vad/stream', () => {
  it('emits speech_start and speech_end for a fixture streamed in uneven chunks, matching POST /audio/vad', async () => {
    const client = await configured({ sample_rate: 16000, encoding: 'pcm_s16le', probabilities: true })
    const data = await fixturePcm('speech_16k_mono_s16.wav')
    // Odd-sized chunks (in samples) make frames straddle messages.
    for (let at = 0; at < data.length; at += 2 * 1234) client.ws.send(data.subarray(at, Math.min(data.length, at + 2 * 1234)))
    client.ws.send(JSON.stringify({ type: 'end' }))
    await client.next('end')
    expect((await client.closed).code).toBe(1000)
    const ends = client.events.filter((e) => e.type === 'speech_end')
    expect(client.events.filter((e) => e.type === 'speech_start').length).toBe(2)
    expect(client.events.filter((e) => e.type === 'probability').length).toBe(Math.ceil(112000 / 512))
    const posted = await body(
      await t.app.handle(
        req('/api/v1/audio/vad', {
          method: 'POST',
          body: (await fixture('speech_16k_mono_s16.wav')) as Uint8Array<ArrayBuffer>,
          headers: { ...bearer(key), 'content-type': 'audio/wav' },
        }),
      ),
    )
    expect(ends.length).toBe(posted.data.segments.length)
    ends.forEach((e, i) => {
      expect(e.segment!.start_s).toBeCloseTo(posted.data.segments[i].start_s, 3)
      expect(e.segment!.end_s).toBeCloseTo(posted.data.segments[i].end_s, 3)
    })
  })

  it('resamples f32le audio at 44.1 kHz', async () => {
    const client = await configured({ sample_rate: 44100, encoding: 'f32le', min_silence_ms: 150 })
    const seconds = 2
    const samples = new Float32Array(44100 * seconds)
    // A second of voiced-like buzz between silences is enough to check the path end to end, not the model.
    for (let i = 0; i < samples.length; i++) samples[i] = i > 22050 && i < 66150 ? 0.2 * Math.sin((2 * Math.PI * 150 * i) / 44100) : 0
    const bytes = new Uint8Array(samples.buffer)
    for (let at = 0; at < bytes.length; at += 16384) client.ws.send(bytes.subarray(at, at + 16384))
    client.ws.send(JSON.stringify({ type: 'end' }))
    await client.next('end')
    expect(client.events.some((e) => e.type === 'error')).toBe(false)
  })

  it('accepts the key as a subprotocol, answers with the keyless protocol, and never echoes the key', async () => {
    const both = connect({ protocols: ['vireo.vad.v1', `vireo.key.${key}`] })
    expect(await both.opened).toBe(true)
    expect(both.ws.protocol).toBe('vireo.vad.v1')
    both.ws.close()
    await both.closed
    const only = connect({ protocols: [`vireo.key.${key}`] })
    expect(await only.opened).toBe(false)
    const refused = await fetch(url.replace('ws:', 'http:'), {
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        'sec-websocket-protocol': `vireo.key.${key}`,
      },
    })
    expect(refused.status).toBe(400)
    expect(refused.headers.get('sec-websocket-protocol')).toBeNull()
    expect(JSON.stringify([...refused.headers, await refused.text()])).not.toContain(key)
  })

  it('refuses the upgrade without a valid key', async () => {
    const anonymous = connect({})
    expect(await anonymous.opened).toBe(false)
    const wrong = connect({ protocols: ['vireo.key.nope'] })
    expect(await wrong.opened).toBe(false)
  })

  const failures: [string, (c: Client) => void, string, number][] = [
    ['malformed config', (c) => c.ws.send('hello'), 'VALIDATION_ERROR', 1008],
    [
      'an out-of-range sample rate',
      (c) => c.ws.send(JSON.stringify({ sample_rate: 1000, encoding: 'pcm_s16le' })),
      'VALIDATION_ERROR',
      1008,
    ],
    [
      'a bad segmenter rule',
      (c) => c.ws.send(JSON.stringify({ sample_rate: 16000, encoding: 'pcm_s16le', threshold: 0.3, neg_threshold: 0.5 })),
      'VALIDATION_ERROR',
      1008,
    ],
    ['binary before config', (c) => c.ws.send(new Uint8Array(64)), 'UNSUPPORTED_MEDIA_TYPE', 1003],
    ['a message over VAD_STREAM_MAX_MESSAGE_BYTES', (c) => c.ws.send(new Uint8Array(70000)), 'PAYLOAD_TOO_LARGE', 1009],
  ]
  for (const [what, act, code, close] of failures) {
    it(`sends an error event and closes ${close} for ${what}`, async () => {
      const client = connect()
      expect(await client.opened).toBe(true)
      act(client)
      expect((await client.next('error')).code).toBe(code)
      expect((await client.closed).code).toBe(close)
    })
  }

  it("names the configuration's faulty fields in the error event, as the HTTP envelope does", async () => {
    const client = connect()
    expect(await client.opened).toBe(true)
    client.ws.send(JSON.stringify({ sample_rate: 16000, threshold: 2 }))
    const error = await client.next('error')
    expect(error.code).toBe('VALIDATION_ERROR')
    const paths = error.details?.map((d) => d.path)
    expect(paths).toContain('/encoding')
    expect(paths).toContain('/threshold')
    expect((await client.closed).code).toBe(1008)
  })

  it('closes 1003 for an odd byte count in s16 and for text after the config', async () => {
    const odd = await configured()
    odd.ws.send(new Uint8Array(1001))
    expect((await odd.next('error')).code).toBe('UNSUPPORTED_MEDIA_TYPE')
    expect((await odd.closed).code).toBe(1003)
    const text = await configured()
    text.ws.send(JSON.stringify({ sample_rate: 8000, encoding: 'pcm_s16le' }))
    expect((await text.closed).code).toBe(1003)
  })

  it('closes 1008 for non-finite float samples', async () => {
    const client = await configured({ sample_rate: 16000, encoding: 'f32le' })
    client.ws.send(new Uint8Array(Float32Array.of(0, Number.NaN).buffer))
    expect((await client.next('error')).code).toBe('VALIDATION_ERROR')
    expect((await client.closed).code).toBe(1008)
  })

  it('limits open streams per key', async () => {
    const limited = await createKey(t, ['inference'])
    const [a, b] = [connect({ headers: bearer(limited) }), connect({ headers: bearer(limited) })]
    expect(await a.opened).toBe(true)
    expect(await b.opened).toBe(true)
    const c = connect({ headers: bearer(limited) })
    expect((await c.next('error')).code).toBe('RATE_LIMITED')
    expect((await c.closed).code).toBe(1008)
    a.ws.close()
    await a.closed
    await Bun.sleep(20)
    const d = await configured(undefined, connect({ headers: bearer(limited) }))
    expect(d.events.some((e) => e.type === 'error')).toBe(false)
    b.ws.close()
    d.ws.close()
  })
})

describe('stream frames in the batcher', () => {
  let patient: TestApp
  let patientUrl: string
  beforeAll(async () => {
    patient = await createTestApp({ MODELS_DIR: 'models', INFERENCE_WORKERS: '1', VAD_STREAM_BATCH_DELAY_MS: '50' })
    patientUrl = await listening(patient)
  })
  afterAll(() => stop(patient))

  /** Seconds Silero's requests have waited in its batcher so far, all together. */
  const waited = async () =>
    (await patient.deps.metrics.batching.queueDelay.get()).values.find(
      (v) => v.metricName === 'inference_batch_queue_delay_seconds_sum' && v.labels.model === 'silero-vad',
    )?.value ?? 0
  const probabilities = (client: Client) => client.events.filter((e) => e.type === 'probability').length

  it('lets a frame wait VAD_STREAM_BATCH_DELAY_MS for company, but not the frames of a stream that has fallen behind', async () => {
    const client = await configured(
      { sample_rate: 16000, encoding: 'pcm_s16le', probabilities: true },
      connect({ headers: bearer(await createKey(patient, ['inference'])) }, patientUrl),
    )
    const frame = (await fixturePcm('speech_16k_mono_s16.wav')).subarray(0, 1024)
    const start = await waited()
    client.ws.send(frame)
    await until(() => probabilities(client) === 1)
    // Alone, the frame waited the whole delay for other streams' frames.
    expect((await waited()) - start).toBeGreaterThanOrEqual(0.045)
    // Six frames at once: the five with others queued behind them go at once; only the last may wait.
    const before = await waited()
    for (let i = 0; i < 6; i++) client.ws.send(frame)
    await until(() => probabilities(client) === 7)
    expect((await waited()) - before).toBeLessThan(0.2)
    client.ws.close()
  })
})

describe('stream time limits', () => {
  let limited: TestApp
  let limitedUrl: string
  beforeAll(async () => {
    limited = await createTestApp({ MODELS_DIR: 'models', VAD_STREAM_IDLE_MS: '1000', VAD_STREAM_MAX_DURATION_MS: '3000' })
    limitedUrl = await listening(limited)
  })
  afterAll(() => stop(limited))
  const limitedClient = async (key: string) => configured(undefined, connect({ headers: bearer(key) }, limitedUrl))

  it('closes 4008 after VAD_STREAM_IDLE_MS without a message', async () => {
    const client = await limitedClient(await createKey(limited, ['inference']))
    expect((await client.next('error')).code).toBe('TIMEOUT_ERROR')
    expect((await client.closed).code).toBe(4008)
  })

  it('closes 1008 at VAD_STREAM_MAX_DURATION_MS however busy the stream is', async () => {
    const key = await createKey(limited, ['inference'])
    // The server's clock starts at the upgrade, after this one: however slow the set-up, the stream lived 3 s.
    const started = performance.now()
    const client = await limitedClient(key)
    const feeder = setInterval(() => client.ws.readyState === WebSocket.OPEN && client.ws.send(new Uint8Array(3200)), 200)
    const error = await client.next('error')
    clearInterval(feeder)
    expect(error.code).toBe('TIMEOUT_ERROR')
    expect((await client.closed).code).toBe(1008)
    expect(performance.now() - started).toBeGreaterThanOrEqual(2990)
  })
})
