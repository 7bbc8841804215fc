/**
 * Whole-file voice activity detection: an uploaded WAV decoded and resampled a chunk at a time, Silero run over
 * its frames in the worker pool (or the energy detector when the model cannot answer), then segmented.
 * Used by POST /audio/vad and by vad jobs.
 */
import { t } from 'elysia'
import { AppError, NotFoundError, ServiceUnavailableError, TimeoutError, ValidationError } from '../errors'
import type { Registry } from '../inference/registry'
import { SILERO_INPUT, SILERO_STATE, SileroWindow } from '../inference/vad-batch'
import { readAudioInfo, type WavInfo, wavMonoChunks } from './decode'
import { EnergyDetector } from './energy'
import { type ResolvedVadOptions, resolveVadParams, VAD_FRAME_SAMPLES, VAD_SAMPLE_RATE } from './params'
import { Resampler } from './resample'
import { isModelUnavailable } from './stream'
import { segmentSpeech } from './vad'

const Segment = t.Object({
  start_s: t.Number(),
  end_s: t.Number(),
  probability: t.Number({ description: 'Mean frame probability over the speech (padding excluded)' }),
})

/** Speech found in a whole file. */
export const VadResult = t.Object({
  model: t.Object({ name: t.String(), version: t.Union([t.String(), t.Null()]) }),
  duration_s: t.Number(),
  sample_rate: t.Integer({ description: 'Of the upload; the model hears it resampled to 16 kHz' }),
  channels: t.Integer(),
  format: t.String({ description: 'ffmpeg-style sample format, e.g. pcm_s16le' }),
  segments: t.Array(Segment),
  speech_s: t.Number(),
  speech_ratio: t.Number({ minimum: 0, maximum: 1 }),
  mode: t.Union([t.Literal('model'), t.Literal('fallback-energy')]),
  probabilities: t.Optional(t.Object({ frame_s: t.Number({ description: 'Seconds per frame (0.032)' }), values: t.Array(t.Number()) })),
})
export type VadResult = typeof VadResult.static

/** The model /audio/vad and the realtime stream run. */
export const VAD_MODEL = 'silero-vad'
/**
 * Frames of an upload sent to a worker per call (8 s of audio, 590 KB of input): large enough that the
 * round trip no longer shows next to 256 session runs, small enough that memory and a lost chunk stay small.
 */
export const VAD_CHUNK_FRAMES = 256

/**
 * The upload's samples as consecutive 16 kHz frames of 512 (the last one zero-padded), decoded and resampled
 * a chunk at a time, so no full-length copy of the signal exists. The frame buffer is reused; returns the sample count.
 */
export function* frames16k(bytes: Uint8Array, info: WavInfo, field = '/file'): Generator<Float32Array, number> {
  const resampler = new Resampler({ from: info.sampleRate, to: VAD_SAMPLE_RATE })
  const frame = new Float32Array(VAD_FRAME_SAMPLES)
  let filled = 0
  let total = 0
  function* cut(part: Float32Array): Generator<Float32Array> {
    let at = 0
    while (at < part.length) {
      const take = Math.min(VAD_FRAME_SAMPLES - filled, part.length - at)
      frame.set(part.subarray(at, at + take), filled)
      filled += take
      at += take
      total += take
      if (filled === VAD_FRAME_SAMPLES) {
        filled = 0
        yield frame
      }
    }
  }
  for (const chunk of wavMonoChunks(bytes, info, 16384, field)) yield* cut(resampler.push(chunk))
  yield* cut(resampler.flush())
  if (filled > 0) {
    frame.fill(0, filled)
    yield frame
  }
  return total
}

interface Probabilities {
  values: Float32Array
  totalSamples: number
}

function collect(bytes: Uint8Array, info: WavInfo, probe: (frame: Float32Array) => number): Probabilities {
  const values: number[] = []
  const frames = frames16k(bytes, info)
  for (let next = frames.next(); ; next = frames.next()) {
    if (next.done) return { values: Float32Array.from(values), totalSamples: next.value }
    values.push(probe(next.value))
  }
}

/** Energy pseudo-probabilities for every frame (the fallback). */
export function energyFrames(bytes: Uint8Array, info: WavInfo): Probabilities {
  const detector = new EnergyDetector()
  return collect(bytes, info, (frame) => detector.push(frame))
}

export interface SileroOptions {
  signal?: AbortSignal
  /** The API key asking (see CallOptions.owner). */
  owner?: string
  /** Budget for the whole file; without it each chunk of frames gets the model's own timeout. */
  timeoutMs?: number
  model?: string
  /** Frames per worker call. */
  chunkFrames?: number
}

/**
 * Silero probabilities for every frame, the state carried from frame to frame. Frames of one file are
 * sequential by nature, so they go to a worker a chunk at a time, which runs them in order; concurrent
 * files spread over the workers. One chunk of input is held at a time (each is handed over to its worker).
 */
export async function sileroFrames(
  registry: Registry,
  bytes: Uint8Array,
  info: WavInfo,
  options: SileroOptions = {},
): Promise<Probabilities> {
  const { signal, owner, timeoutMs, model = VAD_MODEL, chunkFrames = VAD_CHUNK_FRAMES } = options
  const deadline = timeoutMs === undefined ? undefined : performance.now() + timeoutMs
  const values: number[] = []
  let state: Float32Array = new Float32Array(SILERO_STATE)
  const window = new SileroWindow()
  let chunk: Float32Array | undefined
  let filled = 0
  async function send(buffer: Float32Array): Promise<void> {
    const left = deadline === undefined ? undefined : Math.ceil(deadline - performance.now())
    if (left !== undefined && left <= 0) throw new TimeoutError(`The VAD model did not finish the file within ${timeoutMs} ms`)
    const inputs = filled === chunkFrames ? buffer : buffer.subarray(0, filled * SILERO_INPUT)
    const result = await registry.runVadSequence(model, inputs, state, { signal, owner, timeoutMs: left })
    state = result.state
    for (const p of result.probabilities) values.push(p)
  }
  const frames = frames16k(bytes, info)
  for (let next = frames.next(); ; next = frames.next()) {
    if (next.done) {
      if (chunk) await send(chunk)
      return { values: Float32Array.from(values), totalSamples: next.value }
    }
    // A fresh buffer per chunk: the last one was handed over to its worker.
    chunk ??= new Float32Array(chunkFrames * SILERO_INPUT)
    chunk.set(window.next(next.value), filled * SILERO_INPUT)
    if (++filled === chunkFrames) {
      await send(chunk)
      chunk = undefined
      filled = 0
    }
  }
}

export interface DetectOptions extends Partial<ResolvedVadOptions> {
  signal?: AbortSignal
  /** The API key asking (see CallOptions.owner). */
  owner?: string
  /** Longest audio accepted; checked from the header before any sample is read. */
  maxSeconds?: number
  model?: string
}

export interface DetectOutcome {
  data: VadResult
  /** Set when the fallback answered. */
  message?: string
}

const round = (value: number, places = 6) => Math.round(value * 10 ** places) / 10 ** places

/** The model's metadata, or a 503 when it is not installed at all (which the fallback may absorb). */
function modelInfo(registry: Registry, name: string) {
  try {
    return registry.get(name)
  } catch (error) {
    if (error instanceof NotFoundError) throw new ServiceUnavailableError(`Model "${name}" is not installed`, 60)
    throw error
  }
}

/**
 * Speech segments of an uploaded WAV: Silero over 16 kHz frames, or the energy detector when the model is
 * unavailable, failing or too slow (unless `fallback: 'never'`).
 * @example const { data } = await detectSpeech(registry, bytes, { maxSeconds: 3600 })
 */
export async function detectSpeech(registry: Registry, bytes: Uint8Array, options: DetectOptions = {}): Promise<DetectOutcome> {
  const {
    params = resolveVadParams({}),
    probabilities = false,
    fallback = 'auto',
    timeoutMs,
    signal,
    owner,
    maxSeconds,
    model = VAD_MODEL,
  } = options
  const info = readAudioInfo(bytes, { maxSeconds })
  let mode: VadResult['mode'] = 'model'
  let message: string | undefined
  let used: VadResult['model']
  let probs: Probabilities
  try {
    const meta = modelInfo(registry, model)
    if (timeoutMs !== undefined && timeoutMs > meta.limits.max_timeout_ms)
      throw new ValidationError('The timeout is out of range', [
        { path: '/timeout_ms', message: `timeout_ms must be at most ${meta.limits.max_timeout_ms}` },
      ])
    used = { name: model, version: meta.version }
    probs = await sileroFrames(registry, bytes, info, { signal, owner, timeoutMs, model })
  } catch (error) {
    if (fallback === 'never' || !isModelUnavailable(error) || signal?.aborted) throw error
    mode = 'fallback-energy'
    used = { name: 'energy', version: null }
    const reason = error instanceof AppError ? error.message : 'it failed'
    message = `The VAD model could not be used (${reason}); speech was found with the energy detector, which is less accurate`
    probs = energyFrames(bytes, info)
  }
  const segments = segmentSpeech(probs.values, params, { totalSamples: probs.totalSamples }).map((s) => ({
    start_s: round(s.start_s),
    end_s: round(s.end_s),
    probability: round(s.probability, 4),
  }))
  const speech = segments.reduce((sum, s) => sum + (s.end_s - s.start_s), 0)
  const data: VadResult = {
    model: used,
    duration_s: round(info.durationS),
    sample_rate: info.sampleRate,
    channels: info.channels,
    format: info.format,
    segments,
    speech_s: round(speech),
    speech_ratio: round(Math.min(1, speech / info.durationS), 4),
    mode,
  }
  if (probabilities)
    data.probabilities = { frame_s: VAD_FRAME_SAMPLES / VAD_SAMPLE_RATE, values: Array.from(probs.values, (p) => round(p, 4)) }
  return message === undefined ? { data } : { data, message }
}
