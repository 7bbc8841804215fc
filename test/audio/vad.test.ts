import { describe, expect, it } from 'bun:test'
import { resolveVadParams, VadParams, withVadDefaults } from '../../src/audio/params.ts'
import { type SpeechSegment, segmentSpeech, type VadEvent, VadStream } from '../../src/audio/vad.ts'
import { ValidationError } from '../../src/errors.ts'

/** Builds a probability sequence from [probability, frames] runs. */
function runs(...parts: [number, number][]): number[] {
  return parts.flatMap(([p, n]) => new Array(n).fill(p))
}

/** Runs the streaming segmenter and returns its segments plus the frame index at which each event appeared. */
function stream(probs: ArrayLike<number>, params: Parameters<typeof segmentSpeech>[1] = {}, totalSamples?: number) {
  const vad = new VadStream(params)
  const events: (VadEvent & { frame: number })[] = []
  for (let i = 0; i < probs.length; i++) for (const e of vad.push(probs[i]!)) events.push({ ...e, frame: i })
  for (const e of vad.end(totalSamples)) events.push({ ...e, frame: probs.length })
  const segments = events.flatMap((e) => (e.type === 'speech_end' ? [e.segment] : []))
  return { events, segments }
}

function seconds(samples: number): number {
  return samples / 16000
}

describe('segmentSpeech', () => {
  it('finds one padded segment with its mean probability', () => {
    const probs = runs([0, 10], [0.9, 20], [0, 10])
    expect(segmentSpeech(probs)).toEqual([{ start_s: seconds(5120 - 480), end_s: seconds(15360 + 480), probability: 0.9 }])
  })

  it('returns nothing for silence, and for probabilities that never reach the threshold', () => {
    expect(segmentSpeech(runs([0, 100]))).toEqual([])
    expect(segmentSpeech(runs([0.49, 100]))).toEqual([])
    expect(segmentSpeech([])).toEqual([])
  })

  it('drops speech not longer than min_speech_ms (250 ms = 4000 samples)', () => {
    expect(segmentSpeech(runs([0, 10], [0.9, 7], [0, 10]))).toEqual([])
    expect(segmentSpeech(runs([0, 10], [0.9, 8], [0, 10]))).toHaveLength(1)
    expect(segmentSpeech(runs([0, 10], [0.9, 7], [0, 10]), { min_speech_ms: 200 })).toHaveLength(1)
  })

  it('bridges pauses shorter than min_silence_ms (100 ms)', () => {
    expect(segmentSpeech(runs([0, 10], [0.9, 10], [0, 4], [0.9, 10], [0, 10]))).toHaveLength(1)
    const split = segmentSpeech(runs([0, 10], [0.9, 10], [0, 5], [0.9, 10], [0, 10]))
    expect(split.map((s) => [s.start_s, s.end_s])).toEqual([
      [seconds(10 * 512 - 480), seconds(20 * 512 + 480)],
      [seconds(25 * 512 - 480), seconds(35 * 512 + 480)],
    ])
  })

  it('keeps speech going while probability stays at or above neg_threshold (hysteresis)', () => {
    const probs = runs([0, 10], [0.9, 10], [0.4, 20], [0, 10])
    const [segment, ...rest] = segmentSpeech(probs)
    expect(rest).toEqual([])
    expect(segment).toMatchObject({ start_s: seconds(5120 - 480), end_s: seconds(40 * 512 + 480) })
    expect(segment!.probability).toBeCloseTo((0.9 * 10 + 0.4 * 20) / 30, 12)
    expect(segmentSpeech(probs, { neg_threshold: 0.45 })[0]!.end_s).toBe(seconds(20 * 512 + 480))
    // 0.4 alone never starts speech: starting needs the threshold itself.
    expect(segmentSpeech(runs([0, 10], [0.4, 20], [0, 10]))).toEqual([])
  })

  it('uses neg_threshold = threshold − 0.15 by default, floored at 0.01', () => {
    const probs = runs([0, 5], [0.8, 10], [0.6, 10], [0, 10])
    expect(segmentSpeech(probs, { threshold: 0.7 })[0]!.end_s).toBe(seconds(25 * 512 + 480))
    expect(segmentSpeech(probs, { threshold: 0.8 })[0]!.end_s).toBe(seconds(15 * 512 + 480))
    expect(withVadDefaults({ threshold: 0.1 }).neg_threshold).toBe(0.01)
  })

  it('pads by speech_pad_ms, clamped to the audio', () => {
    const probs = runs([0.9, 10], [0, 10])
    expect(segmentSpeech(probs)[0]).toMatchObject({ start_s: 0, end_s: seconds(10 * 512 + 480) })
    expect(segmentSpeech(probs, { speech_pad_ms: 500 })[0]).toMatchObject({ start_s: 0, end_s: seconds(20 * 512) })
    expect(segmentSpeech(runs([0, 2], [0.9, 10]), {}, { totalSamples: 11 * 512 + 100 })[0]).toMatchObject({
      end_s: seconds(11 * 512 + 100),
    })
  })

  it('splits the gap between segments closer than twice the padding', () => {
    const segments = segmentSpeech(runs([0, 10], [0.9, 10], [0, 1], [0.9, 10], [0, 10]), { min_silence_ms: 0 })
    expect(segments.map((s) => [s.start_s, s.end_s])).toEqual([
      [seconds(10 * 512 - 480), seconds(20 * 512 + 256)],
      [seconds(21 * 512 - 256), seconds(31 * 512 + 480)],
    ])
  })

  it('splits speech longer than max_speech_s at the last pause over 98 ms', () => {
    const probs = runs([0.9, 15], [0, 5], [0.9, 15], [0, 35])
    const segments = segmentSpeech(probs, { max_speech_s: 1, min_silence_ms: 300 })
    expect(segments.map((s) => [s.start_s, s.end_s])).toEqual([
      [0, seconds(15 * 512 + 480)],
      [seconds(20 * 512 - 480), seconds(35 * 512 + 480)],
    ])
    for (const s of segments) expect(s.probability).toBeCloseTo(0.9, 12)
    expect(segmentSpeech(probs, { min_silence_ms: 300 })).toHaveLength(1)
  })

  it('cuts unbroken speech longer than max_speech_s where the limit falls', () => {
    const segments = segmentSpeech(runs([0.9, 70]), { max_speech_s: 1 })
    // limit = 1 s − one frame − two pads = 14528 samples: the cut comes at frame 29, speech resumes at frame 30.
    expect(segments.map((s) => [s.start_s, s.end_s])).toEqual([
      [0, seconds(29 * 512 + 256)],
      [seconds(30 * 512 - 256), seconds(59 * 512 + 256)],
      [seconds(60 * 512 - 256), seconds(70 * 512)],
    ])
  })

  it('keeps speech still open at the end of the audio when long enough', () => {
    expect(segmentSpeech(runs([0, 10], [0.9, 20]))).toEqual([{ start_s: seconds(5120 - 480), end_s: seconds(30 * 512), probability: 0.9 }])
    expect(segmentSpeech(runs([0, 10], [0.9, 7]))).toEqual([])
  })
})

describe('VadStream', () => {
  it('announces speech_start once speech outlasts min_speech_ms, and speech_end once the padding is settled', () => {
    const { events } = stream(runs([0, 10], [0.9, 20], [0, 10]))
    expect(events).toEqual([
      { type: 'speech_start', t_s: seconds(5120 - 480), frame: 18 },
      {
        type: 'speech_end',
        t_s: seconds(15360 + 480),
        segment: { start_s: seconds(5120 - 480), end_s: seconds(15360 + 480), probability: 0.9 },
        frame: 34,
      },
    ])
  })

  it('never announces speech that turns out too short', () => {
    expect(stream(runs([0, 10], [0.9, 7], [0, 10])).events).toEqual([])
  })

  it('closes open speech at end(), up to the given audio length', () => {
    const { events } = stream(runs([0, 10], [0.9, 20]), {}, 29 * 512 + 7)
    expect(events.at(-1)).toMatchObject({ type: 'speech_end', t_s: seconds(29 * 512 + 7), frame: 30 })
  })

  it('refuses pushes after end and ends only once', () => {
    const vad = new VadStream()
    vad.push(0.9)
    expect(vad.frameCount).toBe(1)
    vad.end()
    expect(vad.end()).toEqual([])
    expect(() => vad.push(0.9)).toThrow('after end')
  })

  const cases: [string, number[], Parameters<typeof segmentSpeech>[1]][] = [
    ['one segment', runs([0, 10], [0.9, 20], [0, 10]), {}],
    ['close segments', runs([0, 10], [0.9, 10], [0, 1], [0.9, 10], [0, 10]), { min_silence_ms: 0 }],
    ['max speech at a pause', runs([0.9, 15], [0, 5], [0.9, 15], [0, 35]), { max_speech_s: 1, min_silence_ms: 300 }],
    ['max speech unbroken', runs([0.9, 70]), { max_speech_s: 1 }],
  ]
  for (const [what, probs, params] of cases) {
    it(`gives the batch segments for ${what}`, () => {
      expect(stream(probs, params).segments).toEqual(segmentSpeech(probs, params))
    })
  }

  it('gives the batch segments on 500 random sequences and parameter sets', () => {
    let seed = 42
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed / 2147483648
    }
    for (let trial = 0; trial < 500; trial++) {
      const probs: number[] = []
      let level = random()
      const length = 20 + Math.floor(random() * 400)
      while (probs.length < length) {
        if (random() < 0.15) level = random() < 0.5 ? random() * 0.3 : 0.5 + random() * 0.5
        probs.push(Math.min(1, Math.max(0, level + (random() - 0.5) * 0.4)))
      }
      const threshold = 0.3 + random() * 0.4
      const params = {
        threshold,
        neg_threshold: threshold - 0.05 - random() * 0.2,
        min_speech_ms: Math.floor(random() * 400),
        min_silence_ms: Math.floor(random() * 300),
        speech_pad_ms: Math.floor(random() * 150),
        max_speech_s: random() < 0.5 ? Number.POSITIVE_INFINITY : 0.2 + random() * 3,
      }
      const totalSamples = probs.length * 512 - Math.floor(random() * 511)
      const { events, segments } = stream(probs, params, totalSamples)
      expect(segments).toEqual(segmentSpeech(probs, params, { totalSamples }) as SpeechSegment[])
      // Events alternate start/end, and times never go backwards.
      expect(events.map((e) => e.type)).toEqual(events.map((_, i) => (i % 2 === 0 ? 'speech_start' : 'speech_end')))
      for (let i = 1; i < events.length; i++) expect(events[i]!.t_s).toBeGreaterThanOrEqual(events[i - 1]!.t_s)
      // Nothing is announced about audio not yet seen (the latest frame holds at least one sample).
      for (const e of events) if (e.frame < probs.length) expect(e.t_s).toBeLessThanOrEqual((e.frame * 512 + 1) / 16000)
    }
  })
})

describe('VadParams', () => {
  it('applies silero defaults', () => {
    expect(resolveVadParams({})).toEqual({
      threshold: 0.5,
      neg_threshold: 0.35,
      min_speech_ms: 250,
      min_silence_ms: 100,
      speech_pad_ms: 30,
      max_speech_s: Number.POSITIVE_INFINITY,
    })
    expect(resolveVadParams(undefined).threshold).toBe(0.5)
  })

  it('rejects neg_threshold at or above threshold at /neg_threshold', () => {
    const error = (() => {
      try {
        resolveVadParams({ threshold: 0.5, neg_threshold: 0.5 })
      } catch (e) {
        return e as ValidationError
      }
    })()
    expect(error).toBeInstanceOf(ValidationError)
    expect(error!.details).toEqual([{ path: '/neg_threshold', message: 'Must be below threshold (0.5)' }])
  })

  it('lists every out-of-range or unknown field with its path', () => {
    try {
      resolveVadParams({ threshold: 1.5, min_speech_ms: -1, bogus: true })
      throw new Error('expected a throw')
    } catch (e) {
      expect(e).toBeInstanceOf(ValidationError)
      const paths = ((e as ValidationError).details as { path: string }[]).map((i) => i.path)
      expect(paths).toContain('/threshold')
      expect(paths).toContain('/min_speech_ms')
      expect(paths).toContain('/bogus')
    }
  })

  it('rejects a max_speech_s too short to hold one frame and both pads', () => {
    expect(() => resolveVadParams({ max_speech_s: 0.5, speech_pad_ms: 300 })).toThrow(ValidationError)
    expect(resolveVadParams({ max_speech_s: 0.5 }).max_speech_s).toBe(0.5)
  })

  it('is a TypeBox object schema with documented bounds', () => {
    expect(VadParams.properties.threshold.minimum).toBe(0.01)
    expect(VadParams.properties.threshold.maximum).toBe(0.99)
  })
})
