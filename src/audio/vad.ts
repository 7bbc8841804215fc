/**
 * Speech segmentation over per-frame speech probabilities, a port of silero-vad's
 * `get_speech_timestamps` (v5, without the optional "longest pause" split). The model is not
 * involved: anything that yields one probability per frame (Silero, the energy fallback) can
 * be segmented, in one call (`segmentSpeech`) or frame by frame (`VadStream`), with the same result.
 */
import { type ResolvedVadParams, VAD_FRAME_SAMPLES, VAD_SAMPLE_RATE, withVadDefaults } from './params.ts'

export interface SpeechSegment {
  start_s: number
  end_s: number
  /** Mean frame probability over the speech itself (padding excluded). */
  probability: number
}

export type VadEvent = { type: 'speech_start'; t_s: number } | { type: 'speech_end'; t_s: number; segment: SpeechSegment }

export interface SegmentOptions {
  sampleRate?: number
  frameSamples?: number
  /** Length of the audio the probabilities came from; defaults to frames × frameSamples. */
  totalSamples?: number
}

/** A segment in samples, before padding. */
interface RawSegment {
  start: number
  end: number
}

interface Limits {
  frame: number
  threshold: number
  negThreshold: number
  minSpeech: number
  minSilence: number
  maxSpeech: number
  pad: number
}

// silero only splits an over-long segment at a pause longer than this.
const MIN_SILENCE_AT_MAX_SPEECH_MS = 98

function limitsFor(params: ResolvedVadParams, sampleRate: number, frame: number): Limits {
  const pad = (sampleRate * params.speech_pad_ms) / 1000
  return {
    frame,
    threshold: params.threshold,
    negThreshold: params.neg_threshold,
    minSpeech: (sampleRate * params.min_speech_ms) / 1000,
    minSilence: (sampleRate * params.min_silence_ms) / 1000,
    maxSpeech: sampleRate * params.max_speech_s - frame - 2 * pad,
    pad,
  }
}

/**
 * silero's trigger loop, one frame per `step`. Zero means "unset" for tempEnd/prevEnd/nextStart,
 * exactly as in the Python original (they can only be set from frame 1 on, so 0 is never a real value).
 */
class Trigger {
  triggered = false
  start = 0
  tempEnd = 0
  private prevEnd = 0
  private nextStart = 0

  constructor(private readonly limits: Limits) {}

  /** Feeds frame `index`; returns the segment it closed, if any. */
  step(probability: number, index: number): RawSegment | undefined {
    const { frame, threshold, negThreshold, minSpeech, minSilence, maxSpeech } = this.limits
    const at = frame * index
    if (probability >= threshold && this.tempEnd) {
      this.tempEnd = 0
      if (this.nextStart < this.prevEnd) this.nextStart = at
    }
    if (probability >= threshold && !this.triggered) {
      this.triggered = true
      this.start = at
      return undefined
    }
    let closed: RawSegment | undefined
    if (this.triggered && at - this.start > maxSpeech) {
      if (this.prevEnd) {
        closed = { start: this.start, end: this.prevEnd }
        // Still in the pause that ended the previous part: nothing to continue yet.
        if (this.nextStart < this.prevEnd) this.triggered = false
        else this.start = this.nextStart
        this.prevEnd = this.nextStart = this.tempEnd = 0
      } else {
        this.prevEnd = this.nextStart = this.tempEnd = 0
        this.triggered = false
        return { start: this.start, end: at }
      }
    }
    if (probability < negThreshold && this.triggered) {
      if (!this.tempEnd) this.tempEnd = at
      if (at - this.tempEnd > (MIN_SILENCE_AT_MAX_SPEECH_MS * VAD_SAMPLE_RATE) / 1000) this.prevEnd = this.tempEnd
      if (at - this.tempEnd < minSilence) return closed
      const end = this.tempEnd
      const start = this.start
      this.prevEnd = this.nextStart = this.tempEnd = 0
      this.triggered = false
      if (end - start > minSpeech) return { start, end }
    }
    return closed
  }

  /** Closes a segment still open when the audio ends. */
  finish(totalSamples: number): RawSegment | undefined {
    if (!this.triggered || totalSamples - this.start <= this.limits.minSpeech) return undefined
    this.triggered = false
    return { start: this.start, end: totalSamples }
  }
}

function meanProbability(probs: ArrayLike<number>, offset: number, segment: RawSegment, frame: number): number {
  const from = Math.floor(segment.start / frame) - offset
  const to = Math.min(Math.ceil(segment.end / frame) - offset, probs.length)
  let sum = 0
  for (let i = from; i < to; i++) sum += probs[i]!
  return to > from ? sum / (to - from) : 0
}

/** Padded start of a segment that follows one ending at `previousEnd` (undefined for the first segment). */
function paddedStart(start: number, previousEnd: number | undefined, pad: number): number {
  const gap = previousEnd === undefined ? Number.POSITIVE_INFINITY : start - previousEnd
  return Math.floor(Math.max(0, start - (gap < 2 * pad ? Math.floor(gap / 2) : pad)))
}

/** Padded end of a segment followed by one starting at `nextStart` (undefined for the last segment). */
function paddedEnd(end: number, nextStart: number | undefined, pad: number, totalSamples: number): number {
  const gap = nextStart === undefined ? Number.POSITIVE_INFINITY : nextStart - end
  return gap < 2 * pad ? end + Math.floor(gap / 2) : Math.floor(Math.min(totalSamples, end + pad))
}

/**
 * Turns per-frame speech probabilities into padded speech segments (silero's get_speech_timestamps).
 * @example segmentSpeech(probs, { threshold: 0.5 }) // [{ start_s: 0.994, end_s: 2.53, probability: 0.91 }]
 */
export function segmentSpeech(
  probs: ArrayLike<number>,
  params: Partial<ResolvedVadParams> = {},
  options: SegmentOptions = {},
): SpeechSegment[] {
  const { sampleRate = VAD_SAMPLE_RATE, frameSamples = VAD_FRAME_SAMPLES, totalSamples = probs.length * frameSamples } = options
  const limits = limitsFor(withVadDefaults(params), sampleRate, frameSamples)
  const trigger = new Trigger(limits)
  const raw: RawSegment[] = []
  for (let i = 0; i < probs.length; i++) {
    const closed = trigger.step(probs[i]!, i)
    if (closed) raw.push(closed)
  }
  const last = trigger.finish(totalSamples)
  if (last) raw.push(last)
  return raw.map(function pad(segment, k) {
    const start = paddedStart(segment.start, raw[k - 1]?.end, limits.pad)
    const end = paddedEnd(segment.end, raw[k + 1]?.start, limits.pad, totalSamples)
    return { start_s: start / sampleRate, end_s: end / sampleRate, probability: meanProbability(probs, 0, segment, frameSamples) }
  })
}

interface Pending {
  raw: RawSegment
  start: number
  probability: number
}

/**
 * Frame-by-frame segmenter for realtime audio: `push` one probability per frame and get
 * `speech_start` / `speech_end` events as soon as they are certain. Over a whole sequence it
 * yields exactly the segments `segmentSpeech` returns, so an event is never taken back: a start
 * waits until the speech has outlasted min_speech_ms, an end until the padding is settled.
 * @example
 * const vad = new VadStream({ threshold: 0.5 })
 * for (const p of probs) for (const event of vad.push(p)) send(event)
 * for (const event of vad.end()) send(event)
 */
export class VadStream {
  private readonly limits: Limits
  private readonly sampleRate: number
  private readonly trigger: Trigger
  private frames = 0
  /** Probabilities from frame `historyStart` on, kept only while a segment may still need them. */
  private history: number[] = []
  private historyStart = 0
  private confirmed = false
  private previousEnd: number | undefined
  private pending: Pending | undefined
  private ended = false

  constructor(params: Partial<ResolvedVadParams> = {}, options: Omit<SegmentOptions, 'totalSamples'> = {}) {
    const { sampleRate = VAD_SAMPLE_RATE, frameSamples = VAD_FRAME_SAMPLES } = options
    this.sampleRate = sampleRate
    this.limits = limitsFor(withVadDefaults(params), sampleRate, frameSamples)
    this.trigger = new Trigger(this.limits)
  }

  /** Frames seen so far. */
  get frameCount(): number {
    return this.frames
  }

  /** Feeds the next frame's probability. */
  push(probability: number): VadEvent[] {
    if (this.ended) throw new Error('VadStream.push called after end')
    const index = this.frames++
    this.history.push(probability)
    const events: VadEvent[] = []
    const closed = this.trigger.step(probability, index)
    if (closed) this.close(closed, events)
    const { frame, minSpeech, pad } = this.limits
    // The audio lasts at least up to the first sample of the latest frame.
    const knownSamples = index * frame + 1
    if (this.trigger.triggered && !this.confirmed) {
      const earliestEnd = this.trigger.tempEnd || knownSamples
      if (earliestEnd - this.trigger.start > minSpeech) this.open(this.trigger.start, events)
    }
    if (this.pending) {
      const nextStartBound = this.trigger.triggered ? this.trigger.start : (index + 1) * frame
      const settled = nextStartBound - this.pending.raw.end >= 2 * pad && this.pending.raw.end + pad <= knownSamples
      if (settled) this.emitEnd(undefined, knownSamples, events)
    }
    this.trimHistory()
    return events
  }

  /** Ends the stream; `totalSamples` is the audio length when the last frame was partial. */
  end(totalSamples = this.frames * this.limits.frame): VadEvent[] {
    if (this.ended) return []
    this.ended = true
    const events: VadEvent[] = []
    const last = this.trigger.finish(totalSamples)
    if (last) this.close(last, events)
    if (this.pending) this.emitEnd(undefined, totalSamples, events)
    return events
  }

  private open(start: number, events: VadEvent[]): void {
    if (this.pending) this.emitEnd(start, Number.POSITIVE_INFINITY, events)
    this.confirmed = true
    events.push({ type: 'speech_start', t_s: paddedStart(start, this.previousEnd, this.limits.pad) / this.sampleRate })
  }

  private close(raw: RawSegment, events: VadEvent[]): void {
    if (!this.confirmed) this.open(raw.start, events)
    this.confirmed = false
    this.pending = {
      raw,
      start: paddedStart(raw.start, this.previousEnd, this.limits.pad),
      probability: meanProbability(this.history, this.historyStart, raw, this.limits.frame),
    }
    this.previousEnd = raw.end
  }

  private emitEnd(nextStart: number | undefined, totalSamples: number, events: VadEvent[]): void {
    const { raw, start, probability } = this.pending!
    this.pending = undefined
    const end = paddedEnd(raw.end, nextStart, this.limits.pad, totalSamples)
    const segment = { start_s: start / this.sampleRate, end_s: end / this.sampleRate, probability }
    events.push({ type: 'speech_end', t_s: segment.end_s, segment })
  }

  private trimHistory(): void {
    const keepFrom = this.trigger.triggered ? Math.floor(this.trigger.start / this.limits.frame) : this.frames
    if (keepFrom - this.historyStart > 256) {
      this.history = this.history.slice(keepFrom - this.historyStart)
      this.historyStart = keepFrom
    }
  }
}
