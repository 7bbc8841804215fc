import { TypeCompiler } from '@sinclair/typebox/compiler'
import { readAudioInfo, type WavInfo, wavMonoChunks } from '../../audio/decode'
import { EnergyDetector } from '../../audio/energy'
import { type ResolvedVadParams, resolveVadParams, VAD_FRAME_SAMPLES, VAD_SAMPLE_RATE } from '../../audio/params'
import { Resampler } from '../../audio/resample'
import { isModelUnavailable } from '../../audio/stream'
import { segmentSpeech } from '../../audio/vad'
import { AppError, type FieldIssue, NotFoundError, ServiceUnavailableError, TimeoutError, ValidationError } from '../../errors'
import type { Registry } from '../../inference/registry'
import { SILERO_INPUT, SILERO_STATE, SileroWindow } from '../../inference/vad-batch'
import { AudioModel } from './model'

/** The model /audio/vad and the realtime stream run. */
export const VAD_MODEL = 'silero-vad'
/**
 * Frames of an upload sent to a worker per call (8 s of audio, 590 KB of input): large enough that the
 * round trip no longer shows next to 256 session runs, small enough that memory and a lost chunk stay small.
 */
export const VAD_CHUNK_FRAMES = 256

const checkOptions = TypeCompiler.Compile(AudioModel.vadOptions)
const NUMERIC = new Set(['threshold', 'neg_threshold', 'min_speech_ms', 'min_silence_ms', 'speech_pad_ms', 'max_speech_s', 'timeout_ms'])

export interface VadOptions {
  params: ResolvedVadParams
  probabilities: boolean
  fallback: 'auto' | 'never'
  timeoutMs?: number
}

/** Multipart fields and query values arrive as text: numbers and booleans are read from it, anything else is left for the schema to refuse. */
export function coerceFields(raw: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(raw)) {
    if (typeof value !== 'string') out[name] = value
    else if (NUMERIC.has(name) && value.trim() !== '' && Number.isFinite(Number(value))) out[name] = Number(value)
    else if (name === 'probabilities' && (value === 'true' || value === 'false')) out[name] = value === 'true'
    else out[name] = value
  }
  return out
}

/**
 * Checks /audio/vad parameters (already coerced) and the rules between them; field paths carry `prefix`
 * (`query:` for the query string, nothing for multipart fields, which are body fields).
 * @example resolveVadOptions({ threshold: 0.6, probabilities: true }).params.neg_threshold // 0.45
 */
export function resolveVadOptions(input: Record<string, unknown>, prefix = ''): VadOptions {
  const where = (issues: FieldIssue[]) => issues.map((issue) => ({ ...issue, path: `${prefix}${issue.path}` }))
  if (!checkOptions.Check(input))
    throw new ValidationError(
      'Invalid VAD parameters',
      where([...checkOptions.Errors(input)].map((e) => ({ path: e.path || '/', message: e.message }))),
    )
  const { probabilities = false, fallback = 'auto', timeout_ms, ...segmenter } = input as AudioModel.vadOptions
  let params: ResolvedVadParams
  try {
    params = resolveVadParams(segmenter)
  } catch (error) {
    throw new ValidationError('Invalid VAD parameters', where(((error as ValidationError).details ?? []) as FieldIssue[]))
  }
  return { params, probabilities, fallback, timeoutMs: timeout_ms }
}

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
  const { signal, timeoutMs, model = VAD_MODEL, chunkFrames = VAD_CHUNK_FRAMES } = options
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
    const result = await registry.runVadSequence(model, inputs, state, { signal, timeoutMs: left })
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

export interface DetectOptions extends Partial<VadOptions> {
  signal?: AbortSignal
  /** Longest audio accepted; checked from the header before any sample is read. */
  maxSeconds?: number
  model?: string
}

export interface DetectOutcome {
  data: AudioModel.vadResult
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
    maxSeconds,
    model = VAD_MODEL,
  } = options
  const info = readAudioInfo(bytes, { maxSeconds })
  let mode: AudioModel.vadResult['mode'] = 'model'
  let message: string | undefined
  let used: AudioModel.vadResult['model']
  let probs: Probabilities
  try {
    const meta = modelInfo(registry, model)
    if (timeoutMs !== undefined && timeoutMs > meta.limits.max_timeout_ms)
      throw new ValidationError('The timeout is out of range', [
        { path: '/timeout_ms', message: `timeout_ms must be at most ${meta.limits.max_timeout_ms}` },
      ])
    used = { name: model, version: meta.version }
    probs = await sileroFrames(registry, bytes, info, { signal, timeoutMs, model })
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
  const data: AudioModel.vadResult = {
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
