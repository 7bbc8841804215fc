/**
 * Energy-based fallback for when no VAD model is ready: one pseudo-probability per 512-sample
 * frame, from the frame's level above an adaptive noise floor, so the same segmenter applies.
 *
 * It hears "loud compared with what came before", not speech: a steady hum or tone present from
 * the start becomes the floor and reads as silence, but a tone, music or door slam that starts
 * later reads as speech until the floor catches up (a few seconds), and speech in the very first
 * frames is missed until the floor has seen a quieter frame.
 */
import { VAD_FRAME_SAMPLES, VAD_SAMPLE_RATE } from './params.ts'

export interface EnergyOptions {
  frameSamples?: number
  sampleRate?: number
  /** Frames quieter than this (dBFS) are silence whatever the floor: digital silence and dither. */
  gateDb?: number
  /** Level above the floor that maps to probability 0.5. */
  snrDb?: number
  /** dB per logistic unit: smaller makes the mapping steeper. */
  slopeDb?: number
  /** Time constant with which the floor rises towards louder frames (it falls at once). */
  riseS?: number
}

/**
 * Streaming energy detector: `push` one frame, get its pseudo-probability.
 * @example
 * const energy = new EnergyDetector()
 * const p = energy.push(frame) // 0..1
 */
export class EnergyDetector {
  private readonly gateDb: number
  private readonly snrDb: number
  private readonly slopeDb: number
  private readonly rise: number
  private floorDb: number | undefined

  constructor(options: EnergyOptions = {}) {
    const { frameSamples = VAD_FRAME_SAMPLES, sampleRate = VAD_SAMPLE_RATE, gateDb = -55, snrDb = 9, slopeDb = 2, riseS = 3 } = options
    this.gateDb = gateDb
    this.snrDb = snrDb
    this.slopeDb = slopeDb
    this.rise = 1 - Math.exp(-frameSamples / sampleRate / riseS)
  }

  /** Pseudo-probability that `frame` is speech. */
  push(frame: Float32Array): number {
    let power = 0
    for (let i = 0; i < frame.length; i++) power += frame[i]! * frame[i]!
    const db = 10 * Math.log10(power / Math.max(1, frame.length) + 1e-12)
    // Falls at once (the quietest recent frame is the best noise estimate), rises slowly (speech must not lift it).
    this.floorDb = this.floorDb === undefined || db < this.floorDb ? db : this.floorDb + (db - this.floorDb) * this.rise
    if (db < this.gateDb) return 0
    return 1 / (1 + Math.exp(-(db - this.floorDb - this.snrDb) / this.slopeDb))
  }
}

/**
 * Pseudo-probabilities for every whole or partial frame of a (16 kHz mono) signal.
 * @example segmentSpeech(energyProbabilities(samples), {}, { totalSamples: samples.length })
 */
export function energyProbabilities(samples: Float32Array, options: EnergyOptions = {}): Float32Array {
  const { frameSamples = VAD_FRAME_SAMPLES } = options
  const detector = new EnergyDetector(options)
  const probs = new Float32Array(Math.ceil(samples.length / frameSamples))
  for (let k = 0; k < probs.length; k++) probs[k] = detector.push(samples.subarray(k * frameSamples, (k + 1) * frameSamples))
  return probs
}
