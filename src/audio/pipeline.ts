/**
 * Upload bytes → validated 16 kHz mono Float32, streaming the decoder into the resampler so
 * the only full-length signal ever allocated is the 16 kHz result (a 10-minute 48 kHz stereo
 * upload costs its bytes plus 38 MB, not a further 115 MB of decoded 48 kHz mono).
 */
import { type DecodeOptions, readAudioInfo, type WavInfo, wavMonoChunks } from './decode.ts'
import { Resampler, TARGET_SAMPLE_RATE } from './resample.ts'

export interface Mono16k {
  info: WavInfo
  /** 16 kHz mono, full scale ±1. */
  samples: Float32Array
}

/**
 * Sniffs, validates, downmixes and resamples an upload to 16 kHz mono in one pass.
 * @example const { samples, info } = decodeToMono16k(bytes, { maxSeconds: config.MAX_AUDIO_SECONDS })
 */
export function decodeToMono16k(bytes: Uint8Array, options: DecodeOptions = {}): Mono16k {
  const info = readAudioInfo(bytes, options)
  const resampler = new Resampler({ from: info.sampleRate, to: TARGET_SAMPLE_RATE })
  const samples = new Float32Array(Math.ceil((info.frames * TARGET_SAMPLE_RATE) / info.sampleRate))
  let at = 0
  const write = (part: Float32Array) => {
    samples.set(part, at)
    at += part.length
  }
  for (const chunk of wavMonoChunks(bytes, info, 16384, options.field)) write(resampler.push(chunk))
  write(resampler.flush())
  return { info, samples }
}
