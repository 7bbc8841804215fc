import { type DecodeOptions, readAudioInfo, readWavInfo, type WavInfo, wavMonoChunks } from '../../src/audio/decode.ts'
import { frames16k } from '../../src/audio/detect.ts'
import { Resampler, TARGET_SAMPLE_RATE } from '../../src/audio/resample.ts'
/** Builds WAV bytes sample by sample, so decoder tests know every value exactly. */
export interface WavSpec {
  /** 1 = PCM, 3 = IEEE float; `extensible` wraps it in WAVE_FORMAT_EXTENSIBLE. */
  tag: 1 | 3
  bits: 8 | 16 | 24 | 32 | 64
  channels: number
  sampleRate: number
  /** Interleaved raw values: integers as stored (u8 0..255, signed otherwise) or floats. */
  values: number[]
  extensible?: boolean
  bigEndian?: boolean
}

export function buildWav(spec: WavSpec): Uint8Array {
  const { tag, bits, channels, sampleRate, values, extensible = false, bigEndian = false } = spec
  const le = !bigEndian
  const width = bits / 8
  const fmtSize = extensible ? 40 : 16
  const dataSize = values.length * width
  const bytes = new Uint8Array(12 + 8 + fmtSize + 8 + dataSize + (dataSize % 2))
  const view = new DataView(bytes.buffer)
  const text = (at: number, s: string) => {
    for (let i = 0; i < s.length; i++) bytes[at + i] = s.charCodeAt(i)
  }
  text(0, bigEndian ? 'RIFX' : 'RIFF')
  view.setUint32(4, bytes.length - 8, le)
  text(8, 'WAVEfmt ')
  view.setUint32(16, fmtSize, le)
  view.setUint16(20, extensible ? 0xfffe : tag, le)
  view.setUint16(22, channels, le)
  view.setUint32(24, sampleRate, le)
  view.setUint32(28, sampleRate * channels * width, le)
  view.setUint16(32, channels * width, le)
  view.setUint16(34, bits, le)
  if (extensible) {
    view.setUint16(36, 22, le)
    view.setUint16(38, bits, le)
    view.setUint32(40, 0, le)
    view.setUint16(44, tag, le)
    bytes.set([0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71], 46)
  }
  const data = 20 + fmtSize
  text(data, 'data')
  view.setUint32(data + 4, dataSize, le)
  values.forEach((v, i) => {
    const at = data + 8 + i * width
    if (tag === 3 && bits === 32) view.setFloat32(at, v, le)
    else if (tag === 3) view.setFloat64(at, v, le)
    else if (bits === 8) view.setUint8(at, v)
    else if (bits === 16) view.setInt16(at, v, le)
    else if (bits === 32) view.setInt32(at, v, le)
    else {
      const u = v & 0xffffff
      const b = [u & 0xff, (u >> 8) & 0xff, (u >> 16) & 0xff]
      bytes.set(le ? b : b.reverse(), at)
    }
  })
  return bytes
}

/** Overwrites a little-endian field of a built header. */
export function patch(bytes: Uint8Array, offset: number, value: number, size: 2 | 4): Uint8Array {
  const copy = bytes.slice()
  const view = new DataView(copy.buffer)
  if (size === 2) view.setUint16(offset, value, true)
  else view.setUint32(offset, value, true)
  return copy
}

/** The audio fixtures: the one loader of test/fixtures/audio/ for the audio, API and ops tests. */
export const FIXTURES = new URL('../fixtures/audio/', import.meta.url).pathname

export const fixture = (name: string) => Bun.file(`${FIXTURES}${name}`).bytes()

/** What test/fixtures/audio/ground-truth.json says of each file: format and speech for the valid, the error for the invalid. */
export const groundTruth = await Bun.file(`${FIXTURES}ground-truth.json`).json()

/**
 * A sine of `hz` at `rate` for `seconds`: the test signal of the resampler and energy tests and the frames the
 * benchmarks send.
 */
export function tone(hz: number, rate: number, seconds: number, amplitude = 1): Float32Array {
  return Float32Array.from({ length: Math.round(rate * seconds) }, (_, i) => amplitude * Math.sin((2 * Math.PI * hz * i) / rate))
}

export function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const part of parts) {
    out.set(part, at)
    at += part.length
  }
  return out
}

/** An upload as the VAD service hears it: 16 kHz mono, gathered from its frames (the last one's padding cut off). */
export async function mono16k(
  bytes: Uint8Array,
  maxSeconds?: number,
): Promise<{ info: ReturnType<typeof readAudioInfo>; samples: Float32Array }> {
  const info = readAudioInfo(bytes, { maxSeconds })
  const parts: Float32Array[] = []
  const frames = frames16k(bytes, info)
  let step = frames.next()
  while (!step.done) {
    parts.push(step.value.slice())
    step = frames.next()
  }
  const samples = new Float32Array(parts.length * 512)
  for (const [i, part] of parts.entries()) samples.set(part, i * 512)
  return { info, samples: samples.subarray(0, step.value) }
}

/**
 * A whole WAV file as one mono Float32Array, gathered from the streaming decoder the service uses (vireo itself
 * never holds a whole decoded file).
 */
export function decodeWav(bytes: Uint8Array, options: DecodeOptions = {}): WavInfo & { samples: Float32Array } {
  const info = readWavInfo(bytes, options)
  return { ...info, samples: concat([...wavMonoChunks(bytes, info, 65536, options.field)]) }
}

/** `decodeWav` behind the service's container check (415 for anything but WAV). */
export function decodeAudio(bytes: Uint8Array, options: DecodeOptions = {}): WavInfo & { samples: Float32Array } {
  const info = readAudioInfo(bytes, options)
  return { ...info, samples: concat([...wavMonoChunks(bytes, info, 65536, options.field)]) }
}

/** A whole signal through the streaming Resampler in one push; `samples` itself when the rates match. */
export function resample(samples: Float32Array, from: number, to = TARGET_SAMPLE_RATE): Float32Array {
  if (from === to) return samples
  const resampler = new Resampler({ from, to })
  return concat([resampler.push(samples), resampler.flush()])
}
