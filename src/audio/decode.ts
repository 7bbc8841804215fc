/**
 * Container sniffing and WAV decoding, pure (bytes in, samples out).
 *
 * The WAV reader is hand-written rather than `wavefile` because `wavefile` copies the
 * whole data chunk and then widens it to one Float64Array per channel: a 10-minute 48 kHz
 * stereo upload would sit in memory four or five times over. Here the header is
 * validated once and samples are read straight from the caller's bytes into mono
 * Float32 chunks, so the only full-length copy that ever exists is the one the caller asks for.
 */
import { UnsupportedMediaTypeError, ValidationError } from '../errors.ts'

export type AudioContainer = 'wav' | 'flac' | 'ogg' | 'mp3' | 'aac' | 'webm' | 'mp4' | 'unknown'

/** ffmpeg-style names of the sample encodings the WAV reader understands. */
export type WavSampleFormat =
  | 'pcm_u8'
  | 'pcm_s16le'
  | 'pcm_s24le'
  | 'pcm_s32le'
  | 'pcm_f32le'
  | 'pcm_f64le'
  | 'pcm_s16be'
  | 'pcm_s24be'
  | 'pcm_s32be'
  | 'pcm_f32be'
  | 'pcm_f64be'

export interface WavInfo {
  container: 'wav'
  format: WavSampleFormat
  /** True when the fmt chunk is WAVE_FORMAT_EXTENSIBLE (0xFFFE). */
  extensible: boolean
  sampleRate: number
  channels: number
  bitsPerSample: number
  blockAlign: number
  /** Samples per channel. */
  frames: number
  durationS: number
  /** Where the sample bytes start and how many whole frames' worth there are. */
  dataOffset: number
  dataBytes: number
}

export interface DecodeOptions {
  /** Longest accepted audio; longer files fail before any sample is read. */
  maxSeconds?: number
  /** JSON pointer used in error issues, i.e. the request field that carried the file. */
  field?: string
}

export const MIN_SAMPLE_RATE = 8000
export const MAX_SAMPLE_RATE = 192000
export const ACCEPTED_FORMATS_MESSAGE =
  'vireo accepts WAV (RIFF or RIFX) with PCM 8/16/24/32-bit integer or 32/64-bit float samples, including WAVE_FORMAT_EXTENSIBLE'

const FORMAT_PCM = 0x0001
const FORMAT_FLOAT = 0x0003
const FORMAT_EXTENSIBLE = 0xfffe
// Bytes 2..15 shared by the KSDATAFORMAT_SUBTYPE_PCM and _IEEE_FLOAT GUIDs; bytes 0..1 carry the format tag.
const GUID_TAIL = [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71]
// Streaming writers that cannot seek back leave the data size at this sentinel.
const UNKNOWN_SIZE = 0xffffffff

const CODEC_NAMES: Record<number, string> = {
  2: 'Microsoft ADPCM',
  6: 'A-law',
  7: 'µ-law',
  17: 'IMA ADPCM',
  49: 'GSM 6.10',
  80: 'MPEG audio',
  85: 'MP3',
}

function ascii(bytes: Uint8Array, offset: number, length: number): string {
  let text = ''
  for (let i = offset; i < offset + length && i < bytes.length; i++) text += String.fromCharCode(bytes[i]!)
  return text
}

function isMp3FrameHeader(bytes: Uint8Array): boolean {
  if (bytes.length < 4 || bytes[0] !== 0xff || (bytes[1]! & 0xe0) !== 0xe0) return false
  const version = (bytes[1]! >> 3) & 0x03
  const layer = (bytes[1]! >> 1) & 0x03
  const bitrate = (bytes[2]! >> 4) & 0x0f
  const rate = (bytes[2]! >> 2) & 0x03
  return version !== 0x01 && layer !== 0x00 && bitrate !== 0x0f && rate !== 0x03
}

function isAdtsHeader(bytes: Uint8Array): boolean {
  return bytes.length >= 7 && bytes[0] === 0xff && (bytes[1]! & 0xf6) === 0xf0
}

/**
 * Names the container from its magic bytes only (file names and declared types lie).
 * @example sniffAudio(await Bun.file('a.wav').bytes()) // 'wav'
 */
export function sniffAudio(bytes: Uint8Array): AudioContainer {
  const riff = ascii(bytes, 0, 4)
  if ((riff === 'RIFF' || riff === 'RIFX') && ascii(bytes, 8, 4) === 'WAVE') return 'wav'
  if (riff === 'fLaC') return 'flac'
  if (riff === 'OggS') return 'ogg'
  if (ascii(bytes, 0, 3) === 'ID3' || isMp3FrameHeader(bytes)) return 'mp3'
  if (isAdtsHeader(bytes)) return 'aac'
  if (bytes[0] === 0x1a && bytes[1] === 0x45 && bytes[2] === 0xdf && bytes[3] === 0xa3) return 'webm'
  if (ascii(bytes, 4, 4) === 'ftyp') return 'mp4'
  return 'unknown'
}

interface Chunk {
  id: string
  offset: number
  size: number
}

function formatName(float: boolean, bits: number, littleEndian: boolean): WavSampleFormat | undefined {
  const suffix = littleEndian ? 'le' : 'be'
  if (float) return bits === 32 || bits === 64 ? (`pcm_f${bits}${suffix}` as WavSampleFormat) : undefined
  if (bits === 8) return 'pcm_u8'
  return bits === 16 || bits === 24 || bits === 32 ? (`pcm_s${bits}${suffix}` as WavSampleFormat) : undefined
}

/**
 * Validates a WAV header and locates its samples without reading them.
 * @example const info = readWavInfo(bytes, { maxSeconds: 600 }) // { format: 'pcm_s16le', sampleRate: 16000, … }
 */
export function readWavInfo(bytes: Uint8Array, options: DecodeOptions = {}): WavInfo {
  const { maxSeconds = Number.POSITIVE_INFINITY, field = '/file' } = options
  const fail = (message: string): never => {
    throw new ValidationError(message, [{ path: field, message }])
  }

  if (bytes.length === 0) fail('The audio file is empty')
  if (bytes.length < 12) fail(`The WAV header is truncated: the file is ${bytes.length} bytes, a RIFF header alone needs 12`)
  const magic = ascii(bytes, 0, 4)
  if ((magic !== 'RIFF' && magic !== 'RIFX') || ascii(bytes, 8, 4) !== 'WAVE') fail('The file is not a RIFF/WAVE file')
  const littleEndian = magic === 'RIFF'
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)

  let fmt: Chunk | undefined
  let data: Chunk | undefined
  let offset = 12
  while (offset + 8 <= bytes.length && !(fmt && data)) {
    const id = ascii(bytes, offset, 4)
    const size = view.getUint32(offset + 4, littleEndian)
    const body = offset + 8
    const remaining = bytes.length - body
    if (id === 'data') {
      if (size === UNKNOWN_SIZE) data = { id, offset: body, size: remaining }
      else if (size > remaining)
        fail(`The data chunk declares ${size} bytes but only ${remaining} follow it: the file is truncated or its header is wrong`)
      else data = { id, offset: body, size }
    } else {
      if (size > remaining) fail(`The WAV header is truncated: the "${id}" chunk declares ${size} bytes but only ${remaining} follow it`)
      if (id === 'fmt ' && !fmt) fmt = { id, offset: body, size }
    }
    // Chunks are word-aligned: an odd size is followed by one pad byte.
    offset = body + size + (size % 2)
  }
  if (!fmt) fail(bytes.length < 36 ? `The WAV header is truncated: the file is ${bytes.length} bytes` : 'The WAV file has no fmt chunk')
  if (!data) fail('The WAV file has no data chunk')
  const f = fmt as Chunk
  const d = data as Chunk
  if (f.size < 16) fail(`The fmt chunk is ${f.size} bytes; at least 16 are required`)

  let tag = view.getUint16(f.offset, littleEndian)
  const channels = view.getUint16(f.offset + 2, littleEndian)
  const sampleRate = view.getUint32(f.offset + 4, littleEndian)
  const blockAlign = view.getUint16(f.offset + 12, littleEndian)
  const bitsPerSample = view.getUint16(f.offset + 14, littleEndian)
  const extensible = tag === FORMAT_EXTENSIBLE

  if (extensible) {
    if (f.size < 40 || view.getUint16(f.offset + 16, littleEndian) < 22)
      fail(`The WAVE_FORMAT_EXTENSIBLE fmt chunk is ${f.size} bytes; it needs 40 with a 22-byte extension`)
    const guid = f.offset + 24
    const known = GUID_TAIL.every((byte, i) => bytes[guid + 2 + i] === byte)
    tag = view.getUint16(guid, littleEndian)
    if (!known || (tag !== FORMAT_PCM && tag !== FORMAT_FLOAT))
      throw new UnsupportedMediaTypeError(
        `The WAVE_FORMAT_EXTENSIBLE sub-format is neither PCM nor IEEE float; ${ACCEPTED_FORMATS_MESSAGE}`,
      )
  }
  if (tag !== FORMAT_PCM && tag !== FORMAT_FLOAT) {
    const codec = CODEC_NAMES[tag] ?? `format tag 0x${tag.toString(16).padStart(4, '0')}`
    throw new UnsupportedMediaTypeError(`The WAV file holds ${codec} audio; ${ACCEPTED_FORMATS_MESSAGE}`, { format_tag: tag })
  }
  if (channels === 0) fail('The WAV header declares 0 channels')
  if (sampleRate < MIN_SAMPLE_RATE || sampleRate > MAX_SAMPLE_RATE)
    fail(`The sample rate ${sampleRate} Hz is outside the supported ${MIN_SAMPLE_RATE}–${MAX_SAMPLE_RATE} Hz`)
  const float = tag === FORMAT_FLOAT
  const format = formatName(float, bitsPerSample, littleEndian)
  if (!format) fail(`${bitsPerSample}-bit ${float ? 'float' : 'integer PCM'} samples are not supported; ${ACCEPTED_FORMATS_MESSAGE}`)
  const expectedAlign = channels * (bitsPerSample / 8)
  if (blockAlign !== expectedAlign)
    fail(`The block align is ${blockAlign} bytes but ${channels} channel(s) of ${bitsPerSample}-bit samples need ${expectedAlign}`)

  // A trailing partial frame is dropped: it cannot be split into channels.
  const frames = Math.floor(d.size / blockAlign)
  if (frames === 0) fail('The data chunk holds no audio samples')
  const durationS = frames / sampleRate
  if (durationS > maxSeconds) fail(`The audio lasts ${durationS.toFixed(2)} s; the limit is ${maxSeconds} s`)

  return {
    container: 'wav',
    format: format as WavSampleFormat,
    extensible,
    sampleRate,
    channels,
    bitsPerSample,
    blockAlign,
    frames,
    durationS,
    dataOffset: d.offset,
    dataBytes: frames * blockAlign,
  }
}

type SampleReader = (view: DataView, offset: number) => number

function sampleReader(format: WavSampleFormat): SampleReader {
  const le = format.endsWith('le')
  switch (format) {
    case 'pcm_u8':
      return function u8(view, offset) {
        return (view.getUint8(offset) - 128) / 128
      }
    case 'pcm_s16le':
    case 'pcm_s16be':
      return function s16(view, offset) {
        return view.getInt16(offset, le) / 32768
      }
    case 'pcm_s24le':
      return function s24le(view, offset) {
        return ((view.getInt8(offset + 2) << 16) | view.getUint16(offset, true)) / 8388608
      }
    case 'pcm_s24be':
      return function s24be(view, offset) {
        return ((view.getInt8(offset) << 16) | view.getUint16(offset + 1, false)) / 8388608
      }
    case 'pcm_s32le':
    case 'pcm_s32be':
      return function s32(view, offset) {
        return view.getInt32(offset, le) / 2147483648
      }
    case 'pcm_f32le':
    case 'pcm_f32be':
      return function f32(view, offset) {
        return view.getFloat32(offset, le)
      }
    case 'pcm_f64le':
    case 'pcm_f64be':
      return function f64(view, offset) {
        return view.getFloat64(offset, le)
      }
  }
}

/**
 * Reads the mono downmix (mean of the channels) in chunks of `chunkFrames`, straight from `bytes`.
 * Throws ValidationError on a NaN or infinite float sample, which would poison every later stage.
 * @example for (const chunk of wavMonoChunks(bytes, readWavInfo(bytes))) resampler.push(chunk)
 */
export function* wavMonoChunks(bytes: Uint8Array, info: WavInfo, chunkFrames = 8192, field = '/file'): Generator<Float32Array> {
  const { channels, blockAlign, frames, dataOffset } = info
  const width = blockAlign / channels
  const read = sampleReader(info.format)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const scale = 1 / channels
  for (let first = 0; first < frames; first += chunkFrames) {
    const count = Math.min(chunkFrames, frames - first)
    const out = new Float32Array(count)
    let offset = dataOffset + first * blockAlign
    for (let i = 0; i < count; i++) {
      let sum = 0
      for (let c = 0; c < channels; c++, offset += width) sum += read(view, offset)
      if (!Number.isFinite(sum)) {
        const message = `Sample frame ${first + i} is not a finite number`
        throw new ValidationError(message, [{ path: field, message }])
      }
      out[i] = sum * scale
    }
    yield out
  }
}

/**
 * Rejects anything that is not WAV with a 415 naming what is accepted, then validates the WAV header.
 * @example const info = readAudioInfo(bytes, { maxSeconds: 600 })
 */
export function readAudioInfo(bytes: Uint8Array, options: DecodeOptions = {}): WavInfo {
  const container = sniffAudio(bytes)
  // Empty and truncated files are the client's mistake about a WAV, not a media type question.
  if (container === 'wav' || bytes.length < 12) return readWavInfo(bytes, options)
  const what =
    container === 'unknown' ? 'The file is not a recognised audio container' : `${container.toUpperCase()} audio is not supported`
  throw new UnsupportedMediaTypeError(`${what}; ${ACCEPTED_FORMATS_MESSAGE}`, { detected: container, accepted: ['audio/wav'] })
}
