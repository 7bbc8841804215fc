import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { bearer, body, createKey, createTestApp, req, type TestApp, until } from '../../helpers'
import { fixture, INVALID, intervalIoU, VALID } from './helpers'

let t: TestApp
let key: string
let jobsKey: string
beforeAll(async () => {
  t = await createTestApp({ MODELS_DIR: 'models', INFERENCE_WORKERS: '2', JOBS_POLL_MS: '50' })
  key = await createKey(t, ['inference'])
  jobsKey = await createKey(t, ['inference', 'jobs'])
  t.deps.runner.start()
})
afterAll(() => t.close())

const post = (bytes: Uint8Array, query = '', headers: Record<string, string> = {}) =>
  t.app.handle(
    req(`/api/v1/audio/vad${query}`, {
      method: 'POST',
      body: bytes as Uint8Array<ArrayBuffer>,
      headers: { ...bearer(key), 'content-type': 'audio/wav', ...headers },
    }),
  )
const postForm = (fields: Record<string, string | Blob>, headers: Record<string, string> = bearer(key)) => {
  const form = new FormData()
  for (const [name, value] of Object.entries(fields)) form.append(name, value)
  return t.app.handle(req('/api/v1/audio/vad', { method: 'POST', body: form, headers }))
}
const blob = (bytes: Uint8Array) => new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'audio/wav' })

describe('POST /api/v1/audio/vad', () => {
  it('answers 200 for every fixture form, and finds the placed speech (IoU >= 0.8)', async () => {
    for (const [name, truth] of Object.entries(VALID)) {
      // The whole-file budget replaces the model's per-chunk timeout, so a busy machine slows the model down
      // without turning this into a test of the fallback; fallback: never makes any model failure visible.
      const response = await postForm({ file: blob(await fixture(name)), timeout_ms: '60000', fallback: 'never' })
      expect(response.status, name).toBe(200)
      const { data } = await body(response)
      expect(data.mode).toBe('model')
      expect(data.model).toEqual({ name: 'silero-vad', version: '5' })
      expect(data.sample_rate).toBe(truth.sample_rate)
      expect(data.channels).toBe(truth.channels)
      expect(data.format).toBe(truth.format)
      expect(data.duration_s).toBeCloseTo(truth.duration_s, 3)
      if (truth.kind === 'speech' || truth.kind === 'clipped') {
        const iou = intervalIoU(data.segments, truth.speech)
        expect(iou, `${name}: IoU ${iou.toFixed(3)}`).toBeGreaterThanOrEqual(0.8)
        expect(data.speech_ratio).toBeCloseTo(data.speech_s / data.duration_s, 3)
      }
      if (truth.kind === 'silence') expect(data.segments).toEqual([])
    }
  })

  it('takes the raw body with parameters in the query, and returns probabilities when asked', async () => {
    const response = await post(await fixture('speech_16k_mono_s16.wav'), '?threshold=0.6&min_silence_ms=200&probabilities=true')
    expect(response.status).toBe(200)
    const json = await body(response)
    expect(json.message).toBeUndefined()
    expect(json.data.segments.length).toBe(2)
    expect(json.data.probabilities.frame_s).toBe(0.032)
    expect(json.data.probabilities.values.length).toBe(Math.ceil(112000 / 512))
    for (const p of json.data.probabilities.values) expect(p).toBeWithin(0, 1.000001)
  })

  it('reads multipart fields as numbers and booleans', async () => {
    const bytes = await fixture('speech_16k_mono_s16.wav')
    const strict = await body(await postForm({ file: blob(bytes), threshold: '0.95', min_speech_ms: '1000', probabilities: 'false' }))
    const loose = await body(await postForm({ file: blob(bytes), threshold: '0.3' }))
    expect(strict.data.probabilities).toBeUndefined()
    expect(strict.data.speech_s).toBeLessThan(loose.data.speech_s)
  })

  it('answers each invalid file with the decoder’s precise code and message', async () => {
    for (const [name, expected] of Object.entries(INVALID)) {
      const response = await postForm({ file: blob(await fixture(name)) })
      const json = await body(response)
      const code = expected.error === 'ValidationError' ? 'VALIDATION_ERROR' : 'UNSUPPORTED_MEDIA_TYPE'
      expect(json.error.code, name).toBe(code)
      expect(response.status).toBe(code === 'VALIDATION_ERROR' ? 400 : 415)
      expect(json.error.message).toContain(expected.message)
      expect(json.request_id).toBeString()
    }
  })

  it('decides the type from the bytes: an MP3 sent as audio/wav is 415', async () => {
    const response = await post(await fixture('invalid_mp3_named.wav'))
    expect(response.status).toBe(415)
    expect((await body(response)).error.message).toContain('MP3 audio is not supported')
  })

  it('refuses an empty raw body and a multipart body without a file', async () => {
    for (const empty of [await post(new Uint8Array(0)), await postForm({ file: blob(new Uint8Array(0)) })]) {
      expect(empty.status).toBe(400)
      expect((await body(empty)).error.message).toContain('empty')
    }
    const noFile = await postForm({ threshold: '0.5' })
    expect(noFile.status).toBe(400)
    expect((await body(noFile)).error.details).toEqual([{ path: '/file', message: 'a file is required' }])
    const textFile = await postForm({ file: 'not a file' })
    expect(textFile.status).toBe(400)
    const json = await t.app.handle(req('/api/v1/audio/vad', { method: 'POST', json: { file: 'x' }, headers: bearer(key) }))
    expect(json.status).toBe(415)
  })

  it('lists every bad parameter with its field path', async () => {
    const bytes = await fixture('speech_16k_mono_s16.wav')
    const query = await body(await post(bytes, '?threshold=2&min_speech_ms=abc'))
    expect(query.error.code).toBe('VALIDATION_ERROR')
    const paths = query.error.details.map((d: { path: string }) => d.path)
    expect(paths).toContain('query:/threshold')
    expect(paths).toContain('query:/min_speech_ms')
    const unknown = await post(bytes, '?bogus=1')
    expect(unknown.status).toBe(400)
    const form = await body(await postForm({ file: blob(bytes), threshold: '0.5', neg_threshold: '0.7', fallback: 'sometimes' }))
    expect(form.error.details.map((d: { path: string }) => d.path).sort()).toEqual(['/fallback', '/neg_threshold'])
    const rule = await body(await postForm({ file: blob(bytes), threshold: '0.5', neg_threshold: '0.7' }))
    expect(rule.error.details).toEqual([{ path: '/neg_threshold', message: 'Must be below threshold (0.5)' }])
    const queryRule = await body(await post(bytes, '?threshold=0.5&neg_threshold=0.7'))
    expect(queryRule.error.details[0].path).toBe('query:/neg_threshold')
    const budget = await body(await post(bytes, '?timeout_ms=999999999'))
    expect(budget.error.details[0].path).toBe('/timeout_ms')
  })

  it('needs a key with the inference scope', async () => {
    const bytes = await fixture('speech_16k_mono_s16.wav')
    expect((await post(bytes, '', { authorization: '' })).status).toBe(401)
    const jobsOnly = await createKey(t, ['jobs'])
    expect((await post(bytes, '', bearer(jobsOnly))).status).toBe(403)
  })

  it('stays up after all of it', async () => {
    expect((await t.app.handle(req('/api/v1/health/live'))).status).toBe(200)
  })
})

describe('POST /api/v1/audio/vad with Prefer: respond-async', () => {
  it('queues a vad job that the runner completes with the same result', async () => {
    const bytes = await fixture('speech_44k_stereo_s16.wav')
    const query = '?min_silence_ms=150&timeout_ms=60000&fallback=never'
    const response = await post(bytes, query, { ...bearer(jobsKey), prefer: 'respond-async' })
    expect(response.status).toBe(202)
    expect(response.headers.get('preference-applied')).toBe('respond-async')
    const location = response.headers.get('location')!
    expect((await body(response)).data.task).toBe('vad')
    let job: { status: string; result?: { segments: unknown[]; mode: string } } = { status: 'queued' }
    await until(async () => {
      job = (await body(await t.app.handle(req(location, { headers: bearer(jobsKey) })))).data
      return job.status !== 'queued' && job.status !== 'running'
    })
    expect(job.status).toBe('succeeded')
    const direct = await body(await post(bytes, query))
    expect(job.result!.segments).toEqual(direct.data.segments)
    expect(job.result!.mode).toBe('model')
  })

  it('refuses bad audio at once and needs the jobs scope', async () => {
    const bad = await post(await fixture('invalid_header_lies.wav'), '', { ...bearer(jobsKey), prefer: 'respond-async' })
    expect(bad.status).toBe(400)
    const noJobs = await post(await fixture('speech_16k_mono_s16.wav'), '', { prefer: 'respond-async' })
    expect(noJobs.status).toBe(403)
  })
})
