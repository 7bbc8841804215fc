import { t } from 'elysia'
import { MAX_SAMPLE_RATE, MIN_SAMPLE_RATE } from '../../audio/decode'
import { VadParams } from '../../audio/params'

export namespace AudioModel {
  const options = {
    ...VadParams.properties,
    probabilities: t.Optional(t.Boolean({ default: false, description: 'Include the speech probability of every 32 ms frame' })),
    fallback: t.Optional(
      t.Union([t.Literal('auto'), t.Literal('never')], {
        default: 'auto',
        description:
          '`auto`: when the model is unavailable or times out, answer with the energy detector (`mode: fallback-energy`); `never`: answer 503/504',
      }),
    ),
  }

  /** Parameters of POST /audio/vad: in the query string for a raw body, as multipart fields beside `file` (fields win). */
  export const vadOptions = t.Object(
    {
      ...options,
      timeout_ms: t.Optional(
        t.Integer({ minimum: 1, description: 'Budget for the model over the whole file, at most INFERENCE_MAX_TIMEOUT_MS' }),
      ),
    },
    { additionalProperties: false },
  )
  export type vadOptions = typeof vadOptions.static

  const Segment = t.Object({
    start_s: t.Number(),
    end_s: t.Number(),
    probability: t.Number({ description: 'Mean frame probability over the speech (padding excluded)' }),
  })

  export const vadResult = t.Object({
    model: t.Object({ name: t.String(), version: t.Union([t.String(), t.Null()]) }),
    duration_s: t.Number(),
    sample_rate: t.Integer({ description: 'Of the upload; the model hears it resampled to 16 kHz' }),
    channels: t.Integer(),
    format: t.String({ description: 'ffmpeg-style sample format, e.g. pcm_s16le' }),
    segments: t.Array(Segment),
    speech_s: t.Number(),
    speech_ratio: t.Number({ minimum: 0, maximum: 1 }),
    mode: t.Union([t.Literal('model'), t.Literal('fallback-energy')]),
    probabilities: t.Optional(t.Object({ frame_s: t.Number({ description: 'Seconds per frame (0.032)' }), values: t.Array(t.Number()) })),
  })
  export type vadResult = typeof vadResult.static

  /** The first (text) message of a realtime stream. */
  export const streamConfig = t.Object(
    {
      type: t.Optional(t.Literal('config')),
      sample_rate: t.Integer({ minimum: MIN_SAMPLE_RATE, maximum: MAX_SAMPLE_RATE }),
      encoding: t.Union([t.Literal('pcm_s16le'), t.Literal('f32le')]),
      ...options,
    },
    { additionalProperties: false },
  )
  export type streamConfig = typeof streamConfig.static

  export const asyncHeaders = t.Object({
    prefer: t.Optional(
      t.String({
        maxLength: 256,
        description: '`respond-async` turns the call into a job with task `vad` (RFC 7240); needs the jobs scope',
      }),
    ),
    'idempotency-key': t.Optional(t.String({ minLength: 1, maxLength: 255, pattern: '^[\\x21-\\x7e]+$' })),
    'content-type': t.Optional(t.String({ maxLength: 256 })),
  })
}
