import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { readAudioInfo } from '../../../src/audio/decode'
import { detectSpeech, frames16k, sileroFrames } from '../../../src/audio/detect'
import { resolveVadParams } from '../../../src/audio/params'
import { inferVadFrame, RealtimeVad } from '../../../src/audio/stream'
import { ProcessingError, ServiceUnavailableError } from '../../../src/errors'
import type { Feeds } from '../../../src/inference/tensors'
import { packVadBatch, SILERO_INPUT, SILERO_STATE, SileroWindow, unpackVadBatch } from '../../../src/inference/vad-batch'
import { mono16k } from '../../audio/wav-builder'
import { createTestApp, type TestApp } from '../../helpers'
import { fixture } from './helpers'

let t: TestApp
beforeAll(async () => {
  t = await createTestApp({ MODELS_DIR: 'models', INFERENCE_WORKERS: '2' })
})
afterAll(() => t.close())

const run = async (feeds: Feeds) => (await t.deps.registry.runRaw('silero-vad', feeds)).outputs

async function inputsOf(name: string, frames: number): Promise<Float32Array[]> {
  const { samples } = await mono16k(await fixture(name))
  const window = new SileroWindow()
  return Array.from({ length: frames }, (_, k) => window.next(samples.subarray(k * 512, (k + 1) * 512)))
}

describe('realtime VAD frames in the dynamic batcher', () => {
  it('gives every stream the same probabilities and states as unbatched runs (within 1e-6), in shared runs', async () => {
    const names = ['speech_16k_mono_s16.wav', 'speech_44k_stereo_s16.wav', 'speech_48k_mono_s16_noise.wav', 'silence_16k_mono_s16.wav']
    const streams = await Promise.all(names.map((n) => inputsOf(n, 60)))
    const alone: { probs: number[]; state: Float32Array }[] = []
    for (const inputs of streams) {
      let state = new Float32Array(SILERO_STATE) as Float32Array
      const probs: number[] = []
      for (const samples of inputs) {
        const [r] = unpackVadBatch(await run(packVadBatch([{ samples, state }])), 1)
        probs.push(r!.probability)
        state = r!.state
      }
      alone.push({ probs, state })
    }
    const sizes = async () => (await t.deps.metrics.batching.size.get()).values.filter((v) => v.labels.model === 'silero-vad')
    const before = await sizes()
    const together = await Promise.all(
      streams.map(async (inputs) => {
        let state = new Float32Array(SILERO_STATE) as Float32Array
        const probs: number[] = []
        for (const samples of inputs) {
          const r = await inferVadFrame(run, { samples, state })
          probs.push(r.probability)
          state = r.state
        }
        return { probs, state }
      }),
    )
    together.forEach((got, s) => {
      for (const [i, p] of got.probs.entries()) expect(Math.abs(p - alone[s]!.probs[i]!)).toBeLessThan(1e-6)
      for (const [i, v] of got.state.entries()) expect(Math.abs(v - alone[s]!.state[i]!)).toBeLessThan(1e-6)
    })
    // 240 frames went in fewer runs than frames: streams shared runs (2 workers, 4 streams).
    const count = (values: Awaited<ReturnType<typeof sizes>>, name: string) => values.find((v) => v.metricName === name)?.value ?? 0
    const after = await sizes()
    const runs = count(after, 'inference_batch_size_count') - count(before, 'inference_batch_size_count')
    const rows = count(after, 'inference_batch_size_sum') - count(before, 'inference_batch_size_sum')
    expect(rows).toBe(240)
    expect(runs).toBeLessThan(240)
  })

  it("hands a frame's own arrays to the run and takes the next state back without copies", async () => {
    const frame = { samples: new Float32Array(SILERO_INPUT), state: new Float32Array(SILERO_STATE) }
    let sent: Feeds | undefined
    const result = await inferVadFrame(async (feeds) => {
      sent = feeds
      return run(feeds)
    }, frame)
    expect(sent!.input!.data).toBe(frame.samples)
    expect(sent!.state!.data).toBe(frame.state)
    expect(sent!.state!.dims).toEqual([2, 1, SILERO_STATE / 2])
    const stateN = new Float32Array(SILERO_STATE).fill(0.25)
    const [alone] = unpackVadBatch(
      {
        output: { type: 'float32', data: Float32Array.of(0.5), dims: [1, 1] },
        stateN: { type: 'float32', data: stateN, dims: [2, 1, 128] },
      },
      1,
    )
    expect(alone!.state).toBe(stateN)
    expect(result.state).toHaveLength(SILERO_STATE)
  })

  it('refuses a frame of the wrong size and calls a garbled answer a processing error', async () => {
    const frame = () => ({ samples: new Float32Array(SILERO_INPUT), state: new Float32Array(SILERO_STATE) })
    await expect(inferVadFrame(run, { samples: new Float32Array(3), state: new Float32Array(SILERO_STATE) })).rejects.toBeInstanceOf(
      RangeError,
    )
    await expect(inferVadFrame(run, { samples: new Float32Array(SILERO_INPUT), state: new Float32Array(3) })).rejects.toBeInstanceOf(
      RangeError,
    )
    await expect(inferVadFrame(async () => ({}), frame())).rejects.toBeInstanceOf(ProcessingError)
    await expect(inferVadFrame(() => Promise.reject(new ServiceUnavailableError('down')), frame())).rejects.toBeInstanceOf(
      ServiceUnavailableError,
    )
  })
})

describe('RealtimeVad', () => {
  const params = resolveVadParams({})
  it('switches to the energy detector when the model fails mid-stream, and says so', async () => {
    let calls = 0
    const vad = new RealtimeVad({
      sampleRate: 16000,
      encoding: 'pcm_s16le',
      params,
      infer: async () => {
        if (++calls > 3) throw new ServiceUnavailableError('gone')
        return { probability: 0, state: new Float32Array(SILERO_STATE) }
      },
    })
    const events = await vad.push(new Uint8Array(512 * 2 * 5))
    expect(events).toContainEqual({ type: 'mode', mode: 'fallback-energy', message: 'Switched to the energy detector: gone' })
    expect(vad.mode).toBe('fallback-energy')
    expect(vad.seconds).toBeCloseTo(0.16, 6)
    await vad.end()
  })

  it('reads s16 samples at any byte offset, the extremes included', () => {
    const values = [-32768, -1, 0, 1, 32767, 12345, -12345]
    const vad = new RealtimeVad({ sampleRate: 16000, encoding: 'pcm_s16le', params })
    for (const offset of [0, 1]) {
      const bytes = new Uint8Array(offset + values.length * 2).subarray(offset)
      const view = new DataView(bytes.buffer, bytes.byteOffset)
      for (const [i, v] of values.entries()) view.setInt16(i * 2, v, true)
      expect(Array.from(vad.decode(bytes))).toEqual(values.map((v) => v / 32768))
    }
  })

  it('frames 16 kHz messages of any size exactly as the whole signal decoded at once, in both encodings', async () => {
    const samples = 512 * 4 + 100
    const s16 = new Uint8Array(samples * 2)
    const view = new DataView(s16.buffer)
    for (let i = 0; i < samples; i++) view.setInt16(i * 2, Math.round(Math.sin(i / 7) * 20000) - (i % 3), true)
    const f32 = new Uint8Array(Float32Array.from({ length: samples }, (_, i) => Math.sin(i / 5) * 0.7).buffer)
    for (const [encoding, bytes] of [
      ['pcm_s16le', s16],
      ['f32le', f32],
    ] as const) {
      // What Silero hears for frame f: the 64 samples before it (zeros before the first), then its 512.
      const whole = Array.from(new RealtimeVad({ sampleRate: 16000, encoding, params }).decode(bytes))
      const expected = [0, 1, 2, 3].map((f) => [
        ...(f === 0 ? new Array(64).fill(0) : whole.slice(f * 512 - 64, f * 512)),
        ...whole.slice(f * 512, f * 512 + 512),
      ])
      const width = bytes.byteLength / samples
      for (const chunk of [1, 7, 333, 1234]) {
        const heard: number[][] = []
        const vad = new RealtimeVad({
          sampleRate: 16000,
          encoding,
          params,
          infer: async ({ samples: input, state }) => {
            heard.push(Array.from(input))
            return { probability: 0, state }
          },
        })
        for (let at = 0; at < bytes.byteLength; at += chunk * width) await vad.push(bytes.subarray(at, at + chunk * width))
        expect(heard).toEqual(expected)
        expect(vad.seconds).toBeCloseTo(samples / 16000, 9)
      }
    }
  })

  it('lets the error through with fallback never', async () => {
    const vad = new RealtimeVad({
      sampleRate: 16000,
      encoding: 'pcm_s16le',
      params,
      fallback: 'never',
      infer: () => Promise.reject(new ServiceUnavailableError('gone')),
    })
    await expect(vad.push(new Uint8Array(1024))).rejects.toBeInstanceOf(ServiceUnavailableError)
  })
})

/** What /audio/vad did before chunks: one runRaw per frame, the state carried by the caller. */
async function perFrame(bytes: Uint8Array): Promise<number[]> {
  const window = new SileroWindow()
  let state = new Float32Array(SILERO_STATE) as Float32Array
  const probs: number[] = []
  for (const frame of frames16k(bytes, readAudioInfo(bytes))) {
    const [r] = unpackVadBatch(await run(packVadBatch([{ samples: window.next(frame), state }])), 1)
    probs.push(r!.probability)
    state = r!.state
  }
  return probs
}

describe('sileroFrames', () => {
  it('gives the same probabilities in chunks as one run per frame (within 1e-6), whatever the chunk size', async () => {
    // The long file is 938 frames: full chunks of 256 and a partial last one; the other is resampled from 44.1 kHz.
    for (const name of ['speech_16k_mono_s16_long.wav', 'speech_44k_stereo_s16.wav']) {
      const bytes = await fixture(name)
      const expected = await perFrame(bytes)
      for (const chunkFrames of [256, 100, 7, 1]) {
        const { values, totalSamples } = await sileroFrames(t.deps.registry, bytes, readAudioInfo(bytes), { chunkFrames })
        expect(values).toHaveLength(expected.length)
        expect(Math.max(...Array.from(values, (v, i) => Math.abs(v - expected[i]!)))).toBeLessThan(1e-6)
        expect(Math.ceil(totalSamples / 512)).toBe(expected.length)
      }
    }
  })
})

describe('the model timing out', () => {
  it('falls back to energy on a whole-file budget that runs out, or answers 504 with fallback never', async () => {
    const bytes = await fixture('speech_16k_mono_s16_long.wav')
    const outcome = await detectSpeech(t.deps.registry, bytes, { timeoutMs: 1 })
    expect(outcome.data.mode).toBe('fallback-energy')
    // The message names the budget that ran out: the file's 1 ms, or the floor the pool raises a budget below a few
    // typical runs to, which depends on the runs before this one.
    expect(outcome.message).toMatch(/within \d+ ms/)
    await expect(detectSpeech(t.deps.registry, bytes, { timeoutMs: 1, fallback: 'never' })).rejects.toMatchObject({ code: 'TIMEOUT_ERROR' })
    const info = readAudioInfo(bytes)
    await expect(sileroFrames(t.deps.registry, bytes, info, { model: 'nope' })).rejects.toMatchObject({ code: 'NOT_FOUND' })
    expect((await detectSpeech(t.deps.registry, bytes, { model: 'nope' })).data.mode).toBe('fallback-energy')
  })
})
