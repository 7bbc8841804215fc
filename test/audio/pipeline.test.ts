import { describe, expect, it } from 'bun:test'
import { decodeAudio } from '../../src/audio/decode.ts'
import { decodeToMono16k } from '../../src/audio/pipeline.ts'
import { resample } from '../../src/audio/resample.ts'
import { UnsupportedMediaTypeError, ValidationError } from '../../src/errors.ts'
import { fixture } from './wav-builder.ts'

describe('decodeToMono16k', () => {
  for (const name of ['speech_44k_stereo_s16.wav', 'speech_48k_mono_s16_noise.wav', 'fmt_8k_mono_u8.wav', 'speech_16k_4ch_s16.wav']) {
    it(`streams ${name} to the same 16 kHz samples as decode-then-resample`, async () => {
      const bytes = await fixture(name)
      const decoded = decodeAudio(bytes)
      const { info, samples } = decodeToMono16k(bytes)
      expect(info.sampleRate).toBe(decoded.sampleRate)
      expect(samples).toEqual(resample(decoded.samples, decoded.sampleRate))
    })
  }

  it('keeps the decoder errors', async () => {
    expect(() => decodeToMono16k(new Uint8Array(0))).toThrow(ValidationError)
    const flac = await fixture('invalid_flac_named.wav')
    expect(() => decodeToMono16k(flac)).toThrow(UnsupportedMediaTypeError)
    const sevenSeconds = await fixture('speech_16k_mono_s16.wav')
    expect(() => decodeToMono16k(sevenSeconds, { maxSeconds: 5 })).toThrow('The audio lasts 7.00 s; the limit is 5 s')
  })
})
