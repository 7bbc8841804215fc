import { t } from 'elysia'
import { MAX_SAMPLE_RATE, MIN_SAMPLE_RATE } from '../../audio/decode'
import { VadResult } from '../../audio/detect'
import { VadOptions } from '../../audio/params'

export namespace AudioModel {
  /** Parameters of POST /audio/vad: in the query string for a raw body, as multipart fields beside `file` (fields win). */
  export const vadOptions = VadOptions
  export const vadResult = VadResult
  const { timeout_ms: _budget, ...streamOptions } = VadOptions.properties

  /** The first (text) message of a realtime stream. */
  export const streamConfig = t.Object(
    {
      type: t.Optional(t.Literal('config')),
      sample_rate: t.Integer({ minimum: MIN_SAMPLE_RATE, maximum: MAX_SAMPLE_RATE }),
      encoding: t.Union([t.Literal('pcm_s16le'), t.Literal('f32le')]),
      ...streamOptions,
    },
    { additionalProperties: false },
  )
  export type streamConfig = typeof streamConfig.static
}
