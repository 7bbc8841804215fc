import { describe, expect, it } from 'bun:test'
import { UnsupportedMediaTypeError, ValidationError } from '../../src/errors.ts'
import { decodeAudio, fixture, mono16k, resample } from './wav-builder.ts'

describe('upload frames at 16 kHz (frames16k)', () => {
  for (const name of ['speech_44k_stereo_s16.wav', 'speech_48k_mono_s16_noise.wav', 'fmt_8k_mono_u8.wav', 'speech_16k_4ch_s16.wav']) {
    it(`streams ${name} to the same 16 kHz samples as decode-then-resample`, async () => {
      const bytes = await fixture(name)
      const decoded = decodeAudio(bytes)
      const { info, samples } = await mono16k(bytes)
      expect(info.sampleRate).toBe(decoded.sampleRate)
      expect(samples).toEqual(resample(decoded.samples, decoded.sampleRate))
    })
  }

  it('keeps the decoder errors', async () => {
    expect(mono16k(new Uint8Array(0))).rejects.toThrow(ValidationError)
    const flac = await fixture('invalid_flac_named.wav')
    expect(mono16k(flac)).rejects.toThrow(UnsupportedMediaTypeError)
    const sevenSeconds = await fixture('speech_16k_mono_s16.wav')
    expect(mono16k(sevenSeconds, 5)).rejects.toThrow('The audio lasts 7.00 s; the limit is 5 s')
  })
})
