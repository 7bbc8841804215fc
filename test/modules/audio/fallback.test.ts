import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { rm } from 'node:fs/promises'
import { bearer, body, createKey, createTestApp, req, type TestApp } from '../../helpers'
import { corruptModelsDir, fixture } from './helpers'

// One app whose Silero copy is corrupt (it fails to load for real), with small audio and upload limits.
let t: TestApp
let key: string
let modelsDir: string
beforeAll(async () => {
  modelsDir = await corruptModelsDir()
  t = await createTestApp({ MODELS_DIR: modelsDir, MAX_AUDIO_MS: '5000', MAX_UPLOAD_BYTES: '600000' })
  key = await createKey(t, ['inference'])
})
afterAll(async () => {
  await t.close()
  await rm(modelsDir, { recursive: true, force: true })
})

const post = async (name: string, query = '') =>
  t.app.handle(
    req(`/api/v1/audio/vad${query}`, {
      method: 'POST',
      body: (await fixture(name)) as Uint8Array<ArrayBuffer>,
      headers: { ...bearer(key), 'content-type': 'application/octet-stream' },
    }),
  )

describe('POST /api/v1/audio/vad when the model cannot be used', () => {
  it('answers with the energy detector and says so', async () => {
    const response = await post('speech_44k_stereo_s16.wav', '?probabilities=true')
    expect(response.status).toBe(200)
    const json = await body(response)
    expect(json.data.mode).toBe('fallback-energy')
    expect(json.data.model).toEqual({ name: 'energy', version: null })
    expect(json.message).toContain('energy detector')
    expect(json.data.segments.length).toBeGreaterThan(0)
    expect(json.data.probabilities.values.length).toBe(Math.ceil(48000 / 512))
  })

  it('keeps the 503 with fallback=never', async () => {
    const response = await post('speech_44k_stereo_s16.wav', '?fallback=never')
    expect(response.status).toBe(503)
    const json = await body(response)
    expect(json.error.code).toBe('SERVICE_UNAVAILABLE')
    expect(response.headers.get('retry-after')).toBeString()
  })

  it('refuses audio over MAX_AUDIO_MS from its header (400) and bodies over MAX_UPLOAD_BYTES (413)', async () => {
    const long = await post('speech_16k_mono_s16.wav')
    expect(long.status).toBe(400)
    const json = await body(long)
    expect(json.error.message).toBe('The audio lasts 7.00 s; the limit is 5 s')
    expect(json.error.details).toEqual([{ path: '/file', message: json.error.message }])
    const big = await post('speech_16k_mono_s16_long.wav')
    expect(big.status).toBe(413)
    expect((await body(big)).error.code).toBe('PAYLOAD_TOO_LARGE')
    expect((await t.app.handle(req('/api/v1/health/live'))).status).toBe(200)
  })
})
