import { describe, expect, it } from 'bun:test'
import { readAudioInfo, readWavInfo, sniffAudio, wavMonoChunks } from '../../src/audio/decode.ts'
import { type AppError, UnsupportedMediaTypeError, ValidationError } from '../../src/errors.ts'
import { buildWav, concat, decodeAudio, decodeWav, fixture, groundTruth, patch } from './wav-builder.ts'

const ERRORS: Record<string, abstract new (...args: never[]) => AppError> = { ValidationError, UnsupportedMediaTypeError }

function thrown(fn: () => unknown): AppError {
  try {
    fn()
  } catch (error) {
    return error as AppError
  }
  throw new Error('expected a throw')
}

describe('sniffAudio', () => {
  const bytes = (...values: (number | string)[]) =>
    new Uint8Array(values.flatMap((v) => (typeof v === 'string' ? [...v].map((c) => c.charCodeAt(0)) : [v])))

  it('names each container from its magic bytes', () => {
    expect(sniffAudio(bytes('RIFF', 0, 0, 0, 0, 'WAVE'))).toBe('wav')
    expect(sniffAudio(bytes('RIFX', 0, 0, 0, 0, 'WAVE'))).toBe('wav')
    expect(sniffAudio(bytes('fLaC', 0, 0, 0, 34))).toBe('flac')
    expect(sniffAudio(bytes('OggS', 0, 2))).toBe('ogg')
    expect(sniffAudio(bytes('ID3', 4, 0))).toBe('mp3')
    expect(sniffAudio(bytes(0xff, 0xfb, 0x90, 0x64))).toBe('mp3')
    expect(sniffAudio(bytes(0xff, 0xf1, 0x50, 0x80, 0x02, 0x1f, 0xfc))).toBe('aac')
    expect(sniffAudio(bytes(0x1a, 0x45, 0xdf, 0xa3))).toBe('webm')
    expect(sniffAudio(bytes(0, 0, 0, 0x20, 'ftypM4A '))).toBe('mp4')
  })

  it('calls RIFF that is not WAVE, a bad frame sync and nothing at all unknown', () => {
    expect(sniffAudio(bytes('RIFF', 0, 0, 0, 0, 'AVI '))).toBe('unknown')
    expect(sniffAudio(bytes(0xff, 0xfb, 0xf0, 0x64))).toBe('unknown')
    expect(sniffAudio(new Uint8Array(0))).toBe('unknown')
  })
})

describe('decodeWav on hand-built files', () => {
  it('scales unsigned 8-bit around 128', () => {
    const { samples, format } = decodeWav(buildWav({ tag: 1, bits: 8, channels: 1, sampleRate: 8000, values: [0, 64, 128, 255] }))
    expect(format).toBe('pcm_u8')
    expect([...samples]).toEqual([-1, -0.5, 0, 127 / 128])
  })

  it('reads signed 16, 24 and 32-bit little-endian integers at full scale', () => {
    const s16 = decodeWav(buildWav({ tag: 1, bits: 16, channels: 1, sampleRate: 16000, values: [-32768, -16384, 0, 16384, 32767] }))
    expect(s16.format).toBe('pcm_s16le')
    expect([...s16.samples]).toEqual([-1, -0.5, 0, 0.5, 32767 / 32768].map(Math.fround))
    const s24 = decodeWav(buildWav({ tag: 1, bits: 24, channels: 1, sampleRate: 16000, values: [-8388608, -1, 4194304, 8388607] }))
    expect(s24.format).toBe('pcm_s24le')
    expect([...s24.samples]).toEqual([-1, -1 / 8388608, 0.5, 8388607 / 8388608].map(Math.fround))
    const s32 = decodeWav(buildWav({ tag: 1, bits: 32, channels: 1, sampleRate: 16000, values: [-2147483648, 1073741824, 2147483647] }))
    expect(s32.format).toBe('pcm_s32le')
    expect([...s32.samples]).toEqual([-1, 0.5, 2147483647 / 2147483648].map(Math.fround))
  })

  it('passes 32 and 64-bit floats through, including values beyond ±1', () => {
    const f32 = decodeWav(buildWav({ tag: 3, bits: 32, channels: 1, sampleRate: 48000, values: [0.25, -1.5, 0.1] }))
    expect(f32.format).toBe('pcm_f32le')
    expect([...f32.samples]).toEqual([0.25, -1.5, Math.fround(0.1)])
    const f64 = decodeWav(buildWav({ tag: 3, bits: 64, channels: 1, sampleRate: 48000, values: [0.125, -0.75, 1 / 3] }))
    expect(f64.format).toBe('pcm_f64le')
    expect([...f64.samples]).toEqual([0.125, -0.75, Math.fround(1 / 3)])
  })

  it('reads WAVE_FORMAT_EXTENSIBLE with PCM and IEEE float sub-formats', () => {
    const pcm = decodeWav(buildWav({ tag: 1, bits: 24, channels: 1, sampleRate: 16000, values: [4194304], extensible: true }))
    expect(pcm).toMatchObject({ format: 'pcm_s24le', extensible: true })
    expect([...pcm.samples]).toEqual([0.5])
    const float = decodeWav(buildWav({ tag: 3, bits: 32, channels: 1, sampleRate: 16000, values: [-0.25], extensible: true }))
    expect(float).toMatchObject({ format: 'pcm_f32le', extensible: true })
    expect([...float.samples]).toEqual([-0.25])
  })

  it('reads big-endian RIFX files', () => {
    const s16 = decodeWav(buildWav({ tag: 1, bits: 16, channels: 1, sampleRate: 16000, values: [16384, -32768], bigEndian: true }))
    expect(s16.format).toBe('pcm_s16be')
    expect([...s16.samples]).toEqual([0.5, -1])
    const s24 = decodeWav(buildWav({ tag: 1, bits: 24, channels: 1, sampleRate: 16000, values: [-4194304], bigEndian: true }))
    expect([...s24.samples]).toEqual([-0.5])
    const f64 = decodeWav(buildWav({ tag: 3, bits: 64, channels: 1, sampleRate: 16000, values: [0.75], bigEndian: true }))
    expect(f64.format).toBe('pcm_f64be')
    expect([...f64.samples]).toEqual([0.75])
  })

  it('downmixes any number of channels to their mean', () => {
    const stereo = decodeWav(buildWav({ tag: 1, bits: 16, channels: 2, sampleRate: 16000, values: [16384, 0, -16384, -16384] }))
    expect([...stereo.samples]).toEqual([0.25, -0.5])
    const six = decodeWav(buildWav({ tag: 3, bits: 32, channels: 6, sampleRate: 16000, values: [0.6, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1] }))
    expect(six.channels).toBe(6)
    expect([...six.samples]).toEqual([Math.fround(0.1), 1])
  })

  it('reports rate, channels, frames and duration from the header', () => {
    const info = decodeWav(buildWav({ tag: 1, bits: 16, channels: 2, sampleRate: 8000, values: new Array(16000).fill(0) }))
    expect(info).toMatchObject({
      container: 'wav',
      sampleRate: 8000,
      channels: 2,
      bitsPerSample: 16,
      blockAlign: 4,
      frames: 8000,
      durationS: 1,
    })
  })

  it('skips unknown chunks and honours the pad byte after an odd-sized chunk', () => {
    const plain = buildWav({ tag: 1, bits: 16, channels: 1, sampleRate: 16000, values: [16384] })
    const junk = new Uint8Array([...'JUNK'].map((c) => c.charCodeAt(0)).concat([3, 0, 0, 0, 9, 9, 9, 0]))
    const withJunk = new Uint8Array(plain.length + junk.length)
    withJunk.set(plain.subarray(0, 36))
    withJunk.set(junk, 36)
    withJunk.set(plain.subarray(36), 36 + junk.length)
    expect([...decodeWav(withJunk).samples]).toEqual([0.5])
  })

  it('drops a trailing partial frame', () => {
    const bytes = patch(buildWav({ tag: 1, bits: 16, channels: 2, sampleRate: 16000, values: [0, 0, 16384, 16384] }), 40, 6, 4)
    expect(decodeWav(bytes).frames).toBe(1)
  })

  it('accepts the 0xFFFFFFFF data size streaming writers leave behind', () => {
    const bytes = patch(buildWav({ tag: 1, bits: 16, channels: 1, sampleRate: 16000, values: [1, 2, 3] }), 40, 0xffffffff, 4)
    expect(decodeWav(bytes).frames).toBe(3)
  })
})

/** The same file with its fmt chunk cut to 14 bytes (the bits-per-sample field removed). */
function shortFmt(wav: Uint8Array): Uint8Array {
  const cut = new Uint8Array(wav.length - 2)
  cut.set(wav.subarray(0, 34))
  cut.set(wav.subarray(36), 34)
  return patch(cut, 16, 14, 4)
}

describe('decodeWav rejects', () => {
  const good = buildWav({ tag: 1, bits: 16, channels: 1, sampleRate: 16000, values: [0, 0, 0, 0] })
  const cases: [string, Uint8Array, string][] = [
    ['zero channels', patch(good, 22, 0, 2), 'declares 0 channels'],
    ['a 4 kHz sample rate', patch(good, 24, 4000, 4), 'sample rate 4000 Hz is outside the supported 8000–192000 Hz'],
    ['a 384 kHz sample rate', patch(good, 24, 384000, 4), 'sample rate 384000 Hz'],
    [
      'a block align that does not match the channels',
      patch(good, 32, 4, 2),
      'block align is 4 bytes but 1 channel(s) of 16-bit samples need 2',
    ],
    ['12-bit PCM', patch(patch(good, 34, 12, 2), 32, 2, 2), '12-bit integer PCM samples are not supported'],
    ['16-bit float', patch(good, 20, 3, 2), '16-bit float samples are not supported'],
    ['a fmt chunk shorter than 16 bytes', shortFmt(good), 'fmt chunk is 14 bytes'],
    ['a data chunk larger than the file', patch(good, 40, 1000, 4), 'data chunk declares 1000 bytes but only 8 follow it'],
    ['an empty data chunk', patch(good, 40, 0, 4), 'holds no audio samples'],
    ['a header cut short', good.subarray(0, 10), 'truncated'],
    ['a file with no fmt chunk', patch(good, 12, 0x20746d66 + 1, 4), 'no fmt chunk'],
  ]
  for (const [what, bytes, message] of cases) {
    it(`${what} with a ValidationError`, () => {
      const error = thrown(() => decodeWav(bytes))
      expect(error).toBeInstanceOf(ValidationError)
      expect(error.message).toContain(message)
      expect(error.details).toEqual([{ path: '/file', message: error.message }])
    })
  }

  it('names the request field given in the options', () => {
    const error = thrown(() => decodeWav(new Uint8Array(0), { field: '/audio' }))
    expect(error.details).toEqual([{ path: '/audio', message: 'The audio file is empty' }])
  })

  it('audio longer than maxSeconds, naming the limit, before reading samples', () => {
    const bytes = buildWav({ tag: 1, bits: 16, channels: 1, sampleRate: 8000, values: new Array(16000).fill(0) })
    expect(decodeWav(bytes, { maxSeconds: 2 }).durationS).toBe(2)
    const error = thrown(() => decodeWav(bytes, { maxSeconds: 1.5 }))
    expect(error).toBeInstanceOf(ValidationError)
    expect(error.message).toBe('The audio lasts 2.00 s; the limit is 1.5 s')
  })

  it('NaN and infinite float samples', () => {
    const error = thrown(() => decodeWav(buildWav({ tag: 3, bits: 32, channels: 1, sampleRate: 8000, values: [0, Number.NaN] })))
    expect(error).toBeInstanceOf(ValidationError)
    expect(error.message).toBe('Sample frame 1 is not a finite number')
  })

  it('codecs other than PCM and float with a 415', () => {
    const adpcm = patch(buildWav({ tag: 1, bits: 16, channels: 1, sampleRate: 8000, values: [0] }), 20, 0x11, 2)
    const error = thrown(() => decodeWav(adpcm))
    expect(error).toBeInstanceOf(UnsupportedMediaTypeError)
    expect(error.message).toStartWith('The WAV file holds IMA ADPCM audio; vireo accepts WAV')
  })

  it('an extensible sub-format that is not PCM or float with a 415', () => {
    const ext = buildWav({ tag: 1, bits: 16, channels: 1, sampleRate: 8000, values: [0], extensible: true })
    expect(thrown(() => decodeWav(patch(ext, 44, 6, 2)))).toBeInstanceOf(UnsupportedMediaTypeError)
    const badGuid = ext.slice()
    badGuid[58] = 0
    expect(thrown(() => decodeWav(badGuid))).toBeInstanceOf(UnsupportedMediaTypeError)
    const short = thrown(() => decodeWav(patch(ext, 36, 0, 2)))
    expect(short).toBeInstanceOf(ValidationError)
    expect(short.message).toBe('The WAVE_FORMAT_EXTENSIBLE fmt chunk is 40 bytes; it needs 40 with a 22-byte extension')
  })
})

describe('wavMonoChunks', () => {
  it('yields the same samples as decodeWav, chunk by chunk', () => {
    const values = Array.from({ length: 2001 }, (_, i) => ((i * 37) % 65536) - 32768)
    const bytes = buildWav({ tag: 1, bits: 16, channels: 3, sampleRate: 8000, values: values.concat([0, 0]) })
    const info = readWavInfo(bytes)
    const chunks = [...wavMonoChunks(bytes, info, 100)]
    expect(chunks.map((c) => c.length)).toEqual([...new Array(6).fill(100), 67])
    expect(concat(chunks)).toEqual(decodeWav(bytes).samples)
  })

  it('reads from a view into a larger buffer without copying it first', () => {
    const wav = buildWav({ tag: 1, bits: 16, channels: 1, sampleRate: 8000, values: [16384, -16384] })
    const padded = new Uint8Array(wav.length + 7)
    padded.set(wav, 3)
    expect([...decodeWav(padded.subarray(3, 3 + wav.length)).samples]).toEqual([0.5, -0.5])
  })
})

const reference = decodeWav(await fixture('fmt_8k_mono_s16.wav')).samples

describe('fixtures', () => {
  for (const [name, facts] of Object.entries<Record<string, unknown>>(groundTruth.valid)) {
    it(`decodes ${name} with the facts recorded in ground-truth.json`, async () => {
      const decoded = decodeAudio(await fixture(name))
      expect(decoded).toMatchObject({
        format: facts.format,
        extensible: facts.extensible,
        sampleRate: facts.sample_rate,
        channels: facts.channels,
        frames: facts.frames,
      })
      expect(decoded.durationS).toBeCloseTo(facts.duration_s as number, 5)
      expect(decoded.samples.length).toBe(decoded.frames)
    })
  }

  const lossless = ['fmt_8k_mono_s24.wav', 'fmt_8k_mono_s32.wav', 'fmt_8k_mono_f32.wav', 'fmt_8k_mono_f64.wav']
  for (const name of [...lossless, 'fmt_8k_mono_s24_extensible.wav', 'fmt_8k_mono_s16_rifx.wav']) {
    it(`${name} holds exactly the samples of the s16 original`, async () => {
      expect(decodeWav(await fixture(name)).samples).toEqual(reference)
    })
  }

  it('fmt_8k_mono_u8.wav matches the s16 original within 8-bit quantisation', async () => {
    const u8 = decodeWav(await fixture('fmt_8k_mono_u8.wav')).samples
    let worst = 0
    for (let i = 0; i < u8.length; i++) worst = Math.max(worst, Math.abs(u8[i]! - reference[i]!))
    expect(worst).toBeLessThanOrEqual(1 / 256 + 1e-6)
  })

  it('averages the 4-channel file (channel gains 1, 0.5, 0, 0.25) into one mono signal', async () => {
    const bytes = await fixture('speech_16k_4ch_s16.wav')
    const info = readWavInfo(bytes)
    const view = new DataView(bytes.buffer, bytes.byteOffset)
    const mono = decodeWav(bytes).samples
    let worst = 0
    for (let i = 0; i < info.frames; i++) {
      const first = view.getInt16(info.dataOffset + i * 8, true) / 32768
      worst = Math.max(worst, Math.abs(mono[i]! - (first * 1.75) / 4))
    }
    expect(worst).toBeLessThan(3 / 32768)
  })

  it('decodes the clipped file with samples pinned at full scale', async () => {
    const samples = decodeWav(await fixture('clipped_16k_mono_s16.wav')).samples
    expect(samples.filter((v) => v <= -1 || v >= 32767 / 32768).length).toBeGreaterThan(1000)
  })

  for (const [name, expected] of Object.entries<{ error: string; message: string }>(groundTruth.invalid)) {
    it(`rejects ${name} with ${expected.error}`, async () => {
      const bytes = await fixture(name)
      const error = thrown(() => decodeAudio(bytes))
      expect(error).toBeInstanceOf(ERRORS[expected.error]!)
      expect(error.message).toContain(expected.message)
    })
  }
})

const fixtureBytes: Record<string, Uint8Array> = Object.fromEntries(
  await Promise.all(Object.keys(groundTruth.invalid).map(async (name) => [name, await fixture(name)] as const)),
)

describe('415 message', () => {
  it('says which formats are accepted', () => {
    const error = thrown(() => readAudioInfo(fixtureBytes['invalid_mp3_named.wav']!))
    expect(error.status).toBe(415)
    expect(error.message).toBe(
      'MP3 audio is not supported; vireo accepts WAV (RIFF or RIFX) with PCM 8/16/24/32-bit integer or 32/64-bit float samples, including WAVE_FORMAT_EXTENSIBLE',
    )
    expect(error.details).toEqual({ detected: 'mp3', accepted: ['audio/wav'] })
  })
})
