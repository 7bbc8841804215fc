import { describe, expect, it } from 'bun:test'
import { readWavInfo, wavMonoChunks } from '../../src/audio/decode.ts'
import { Resampler } from '../../src/audio/resample.ts'
import { concat, decodeWav, fixture, resample, tone } from './wav-builder.ts'

function rms(x: Float32Array): number {
  let sum = 0
  for (const v of x) sum += v * v
  return Math.sqrt(sum / x.length)
}

/** Magnitude of one DFT bin, normalised so a unit sine reads 0.5. */
function dftMagnitude(x: Float32Array, hz: number, rate: number): number {
  let re = 0
  let im = 0
  for (let i = 0; i < x.length; i++) {
    re += x[i]! * Math.cos((2 * Math.PI * hz * i) / rate)
    im -= x[i]! * Math.sin((2 * Math.PI * hz * i) / rate)
  }
  return Math.hypot(re, im) / x.length
}

/** Edges are where the zero-history start and end live; measure the steady middle. */
const middle = (x: Float32Array) => x.subarray(1600, x.length - 1600)

describe('resample to 16 kHz', () => {
  for (const rate of [8000, 11025, 22050, 44100, 48000, 96000]) {
    it(`keeps a 1 kHz tone at 1 kHz and unit amplitude from ${rate} Hz`, () => {
      const out = resample(tone(1000, rate, 1), rate)
      expect(out.length).toBe(16000)
      const body = middle(out)
      expect(dftMagnitude(body, 1000, 16000)).toBeCloseTo(0.5, 2)
      expect(rms(body)).toBeCloseTo(Math.SQRT1_2, 3)
      let crossings = 0
      for (let i = 1; i < body.length; i++) if (body[i - 1]! < 0 !== body[i]! < 0) crossings++
      expect(crossings / 2 / (body.length / 16000)).toBeCloseTo(1000, -1)
    })
  }

  it('attenuates a 10 kHz tone at 44.1 kHz instead of aliasing it to 6 kHz', () => {
    const input = tone(10000, 44100, 1)
    const out = middle(resample(input, 44100))
    expect(rms(out)).toBeLessThan(0.05 * rms(input))
    expect(rms(out)).toBeLessThan(0.001)
    expect(dftMagnitude(out, 6000, 16000)).toBeLessThan(0.001)
  })

  it('attenuates everything between 8 kHz and the input Nyquist at 48 kHz', () => {
    for (const hz of [8000, 9000, 12000, 20000, 23000]) expect(rms(middle(resample(tone(hz, 48000, 0.5), 48000)))).toBeLessThan(0.01)
  })

  it('passes speech-band tones (300 Hz – 6 kHz) within 0.1 dB', () => {
    for (const hz of [300, 3000, 6000]) {
      const gain = rms(middle(resample(tone(hz, 44100, 0.5), 44100))) / Math.SQRT1_2
      expect(Math.abs(20 * Math.log10(gain))).toBeLessThan(0.1)
    }
  })

  it('passes 16 kHz input through untouched (the same array)', () => {
    const input = tone(440, 16000, 0.1)
    expect(resample(input, 16000)).toBe(input)
    const stream = new Resampler({ from: 16000 })
    expect(stream.push(input)).toBe(input)
    expect(stream.flush().length).toBe(0)
  })

  it('keeps silence silent and DC at unit gain', () => {
    expect(resample(new Float32Array(4410), 44100).every((v) => v === 0)).toBe(true)
    const dc = middle(resample(new Float32Array(44100).fill(0.5), 44100))
    for (const v of dc) expect(v).toBeCloseTo(0.5, 5)
  })

  it('handles rates whose ratio needs more than 4096 filter phases', () => {
    const out = resample(tone(1000, 8001, 1), 8001)
    expect(out.length).toBe(Math.ceil((8001 * 16000) / 8001))
    expect(dftMagnitude(middle(out), 1000, 16000)).toBeCloseTo(0.5, 2)
  })

  it('refuses rates that are not positive integers', () => {
    expect(() => new Resampler({ from: 0 })).toThrow(RangeError)
    expect(() => new Resampler({ from: 44100.5 })).toThrow(RangeError)
  })
})

describe('Resampler streaming', () => {
  for (const rate of [8000, 22050, 44100, 48000]) {
    it(`gives exactly the one-shot output from ${rate} Hz whatever the chunk sizes`, () => {
      const input = tone(1234, rate, 0.37, 0.8)
      const oneShot = resample(input, rate)
      const resampler = new Resampler({ from: rate })
      const sizes = [1, 7, 100, 3, 512, 4096, 13]
      const parts: Float32Array[] = []
      for (let at = 0, k = 0; at < input.length; k++) {
        const size = sizes[k % sizes.length]!
        parts.push(resampler.push(input.subarray(at, at + size)))
        at += size
      }
      parts.push(resampler.flush())
      expect(concat(parts)).toEqual(oneShot)
    })
  }

  it('refuses input after flush and flushes only once', () => {
    const resampler = new Resampler({ from: 8000 })
    const head = resampler.push(new Float32Array(100)).length
    expect(head + resampler.flush().length).toBe(200)
    expect(resampler.flush().length).toBe(0)
    expect(() => resampler.push(new Float32Array(1))).toThrow('after flush')
  })

  it('turns a 48 kHz file into 16 kHz from decoder chunks, matching decode-then-resample', async () => {
    const bytes = await fixture('speech_48k_mono_s16_noise.wav')
    const info = readWavInfo(bytes)
    const resampler = new Resampler({ from: info.sampleRate })
    const parts = [...wavMonoChunks(bytes, info, 3000)].map((chunk) => resampler.push(chunk))
    parts.push(resampler.flush())
    const streamed = concat(parts)
    expect(streamed.length).toBe(Math.ceil(info.frames / 3))
    expect(streamed).toEqual(resample(decodeWav(bytes).samples, 48000))
  })
})
