/**
 * Band-limited sample-rate conversion (Kaiser-windowed sinc, polyphase table), streaming.
 *
 * Silero VAD wants 16 kHz. Dropping samples or interpolating linearly folds everything
 * above 8 kHz back into the speech band (a 10 kHz hiss at 44.1 kHz lands at 6 kHz), so the
 * low-pass stops at the lower of the two Nyquist frequencies.
 */

export const TARGET_SAMPLE_RATE = 16000

export interface ResamplerOptions {
  /** Input rate in Hz. */
  from: number
  /** Output rate in Hz. */
  to?: number
}

// 70 dB keeps aliases below 16-bit speech noise floors; more only buys taps (cost grows with the input rate).
const STOPBAND_DB = 70
const KAISER_BETA = 0.1102 * (STOPBAND_DB - 8.7)
// The pass band ends 15 % below the lower Nyquist (6.8 kHz for 16 kHz output), far above what speech needs.
const TRANSITION = 0.15
// Rate pairs whose reduced ratio needs more phases than this share a finer, quantised table (phase error < 1/8192 sample).
const MAX_PHASES = 4096

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b]
  return a
}

function besselI0(x: number): number {
  let sum = 1
  let term = 1
  for (let k = 1; k < 50; k++) {
    term *= (x / (2 * k)) ** 2
    sum += term
    if (term < sum * 1e-12) break
  }
  return sum
}

interface Kernel {
  /** Taps per phase on each side of the output instant. */
  half: number
  phases: number
  /** (phases + 1) rows of 2·half taps; row k is the filter for an output k/phases of a sample after x[i]. */
  table: Float64Array
}

function designKernel(from: number, to: number, phases: number): Kernel {
  const nyquist = Math.min(from, to) / 2
  const cutoff = nyquist * (1 - TRANSITION / 2)
  const width = (nyquist * TRANSITION) / from
  const taps = Math.ceil((STOPBAND_DB - 8) / (2.285 * 2 * Math.PI * width))
  // 2·half is kept a multiple of 4 for the unrolled dot product.
  const half = Math.max(2, Math.ceil(taps / 4) * 2)
  const band = (2 * cutoff) / from
  const norm = besselI0(KAISER_BETA)
  const table = new Float64Array((phases + 1) * 2 * half)
  const row = new Float64Array(2 * half)
  for (let k = 0; k <= phases; k++) {
    const fraction = k / phases
    let sum = 0
    for (let j = -half + 1; j <= half; j++) {
      const tau = fraction - j
      const x = band * tau
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x)
      const r = tau / half
      const window = r * r >= 1 ? 0 : besselI0(KAISER_BETA * Math.sqrt(1 - r * r)) / norm
      const value = band * sinc * window
      row[j + half - 1] = value
      sum += value
    }
    // Each phase sums to exactly 1 so DC and slow signals pass at unit gain whatever the phase.
    for (let t = 0; t < row.length; t++) table[k * 2 * half + t] = row[t]! / sum
  }
  return { half, phases, table }
}

/**
 * Stateful resampler: feed chunks of any size with `push`, then `flush` once; the concatenated
 * output does not depend on how the input was chunked.
 * @example
 * const r = new Resampler({ from: 48000 })
 * const parts = [...chunks].map((c) => r.push(c)).concat(r.flush())
 */
export class Resampler {
  readonly from: number
  readonly to: number
  private readonly up: number
  private readonly down: number
  private readonly kernel: Kernel | undefined
  private buffer: Float32Array
  private length: number
  /** Absolute input index of buffer[0]; negative while the leading zero history is still held. */
  private start: number
  private produced = 0
  private consumed = 0
  private flushed = false

  constructor(options: ResamplerOptions) {
    const { from, to = TARGET_SAMPLE_RATE } = options
    if (!Number.isInteger(from) || !Number.isInteger(to) || from <= 0 || to <= 0)
      throw new RangeError(`Sample rates must be positive integers, got ${from} → ${to}`)
    this.from = from
    this.to = to
    const divisor = gcd(from, to)
    this.up = to / divisor
    this.down = from / divisor
    this.kernel = from === to ? undefined : designKernel(from, to, Math.min(this.up, MAX_PHASES))
    const history = this.kernel ? this.kernel.half - 1 : 0
    this.buffer = new Float32Array(Math.max(1024, history * 4))
    this.length = history
    this.start = -history
  }

  /** Resamples the next chunk; returns what can be computed so far (the filter needs `half` samples of look-ahead). */
  push(chunk: Float32Array): Float32Array {
    if (this.flushed) throw new Error('Resampler.push called after flush')
    this.consumed += chunk.length
    if (!this.kernel) return chunk
    this.append(chunk)
    return this.drain(Number.POSITIVE_INFINITY)
  }

  /** Ends the signal (zeros after the last sample) and returns the remaining output. */
  flush(): Float32Array {
    if (this.flushed) return new Float32Array(0)
    this.flushed = true
    if (!this.kernel) return new Float32Array(0)
    this.append(new Float32Array(this.kernel.half))
    return this.drain(Math.ceil((this.consumed * this.up) / this.down))
  }

  private append(chunk: Float32Array): void {
    const needed = this.length + chunk.length
    if (needed > this.buffer.length) {
      const grown = new Float32Array(Math.max(needed, this.buffer.length * 2))
      grown.set(this.buffer.subarray(0, this.length))
      this.buffer = grown
    }
    this.buffer.set(chunk, this.length)
    this.length += chunk.length
  }

  private drain(limit: number): Float32Array {
    const { half, phases, table } = this.kernel!
    const { up, down, buffer } = this
    const taps = 2 * half
    const end = this.start + this.length
    // Output n sits at input time n·down/up; it needs x[i − half + 1 … i + half] with i = ⌊n·down/up⌋.
    const last = Math.min(limit, Math.ceil(((end - half) * up) / down))
    const count = Math.max(0, last - this.produced)
    const out = new Float32Array(count)
    const exact = phases === up
    for (let k = 0; k < count; k++) {
      const position = (this.produced + k) * down
      const i = Math.floor(position / up)
      const remainder = position - i * up
      const row = (exact ? remainder : Math.round((remainder * phases) / up)) * taps
      const base = i - half + 1 - this.start
      // Four independent sums let the JIT overlap the multiply-adds (about 2× faster than one chain).
      let a0 = 0
      let a1 = 0
      let a2 = 0
      let a3 = 0
      for (let t = 0; t < taps; t += 4) {
        a0 += buffer[base + t]! * table[row + t]!
        a1 += buffer[base + t + 1]! * table[row + t + 1]!
        a2 += buffer[base + t + 2]! * table[row + t + 2]!
        a3 += buffer[base + t + 3]! * table[row + t + 3]!
      }
      out[k] = a0 + a1 + a2 + a3
    }
    this.produced += count
    // Keep only the history the next output still needs.
    const nextI = Math.floor((this.produced * down) / up)
    const keepFrom = Math.min(nextI - half + 1, end) - this.start
    if (keepFrom > 0) {
      buffer.copyWithin(0, keepFrom, this.length)
      this.length -= keepFrom
      this.start += keepFrom
    }
    return out
  }
}
