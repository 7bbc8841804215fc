import { TypeCompiler } from '@sinclair/typebox/compiler'
import { Value } from '@sinclair/typebox/value'
import { t } from 'elysia'
import { type FieldIssue, fieldIssue, ValidationError } from '../errors.ts'

/** Frame size Silero VAD v5 takes at 16 kHz; segment times are multiples of it. */
export const VAD_FRAME_SAMPLES = 512
export const VAD_SAMPLE_RATE = 16000

/**
 * Segmenter parameters as a client sends them (query string, JSON body or WebSocket hello).
 * Names and defaults follow silero-vad's `get_speech_timestamps`.
 */
export const VadParams = t.Object(
  {
    threshold: t.Optional(
      t.Number({ minimum: 0.01, maximum: 0.99, default: 0.5, description: 'Frame probability at or above which speech starts' }),
    ),
    neg_threshold: t.Optional(
      t.Number({
        minimum: 0,
        maximum: 0.98,
        description: 'Frame probability below which speech may end (hysteresis); default max(threshold − 0.15, 0.01), must be < threshold',
      }),
    ),
    min_speech_ms: t.Optional(t.Number({ minimum: 0, maximum: 60000, default: 250, description: 'Shorter speech is dropped' })),
    min_silence_ms: t.Optional(t.Number({ minimum: 0, maximum: 60000, default: 100, description: 'Silence needed before a segment ends' })),
    speech_pad_ms: t.Optional(t.Number({ minimum: 0, maximum: 5000, default: 30, description: 'Added to both ends of each segment' })),
    max_speech_s: t.Optional(
      t.Number({
        minimum: 0.5,
        maximum: 86400,
        description: 'Longer segments are split, at the last pause over 98 ms when there is one; default unlimited',
      }),
    ),
  },
  { additionalProperties: false },
)
export type VadParams = typeof VadParams.static

/** VadParams with every default applied. */
export type ResolvedVadParams = Required<VadParams>

/**
 * Fills in silero's defaults without validating (for trusted, in-process callers).
 * @example withVadDefaults({ threshold: 0.6 }).neg_threshold // 0.45
 */
export function withVadDefaults(given: Partial<ResolvedVadParams> = {}): ResolvedVadParams {
  const threshold = given.threshold ?? 0.5
  return {
    threshold,
    neg_threshold: given.neg_threshold ?? Math.max(threshold - 0.15, 0.01),
    min_speech_ms: given.min_speech_ms ?? 250,
    min_silence_ms: given.min_silence_ms ?? 100,
    speech_pad_ms: given.speech_pad_ms ?? 30,
    max_speech_s: given.max_speech_s ?? Number.POSITIVE_INFINITY,
  }
}

/**
 * Checks the schema and the rules between fields, applies defaults; throws ValidationError listing each bad field.
 * @example const params = resolveVadParams({ threshold: 0.6 }) // neg_threshold 0.45, min_speech_ms 250, …
 */
export function resolveVadParams(input: unknown = {}): ResolvedVadParams {
  const issues = [...Value.Errors(VadParams, input)].map(fieldIssue)
  if (issues.length) throw new ValidationError('Invalid VAD parameters', issues)
  const given = input as VadParams
  const params = withVadDefaults(given)
  if (given.neg_threshold !== undefined && params.neg_threshold >= params.threshold)
    issues.push({ path: '/neg_threshold', message: `Must be below threshold (${params.threshold})` })
  // silero subtracts one frame and both pads from the limit; a limit that leaves nothing would split every frame.
  const minMaxSpeech = (VAD_FRAME_SAMPLES + (2 * params.speech_pad_ms * VAD_SAMPLE_RATE) / 1000) / VAD_SAMPLE_RATE
  if (params.max_speech_s <= minMaxSpeech)
    issues.push({ path: '/max_speech_s', message: `Must exceed ${minMaxSpeech.toFixed(3)} s (one frame plus twice speech_pad_ms)` })
  if (issues.length) throw new ValidationError('Invalid VAD parameters', issues)
  return params
}

/** Parameters of a whole-file detection: the segmenter's, what to return, and what to do when the model cannot answer. */
export const VadOptions = t.Object(
  {
    ...VadParams.properties,
    probabilities: t.Optional(t.Boolean({ default: false, description: 'Include the speech probability of every 32 ms frame' })),
    fallback: t.Optional(
      t.Union([t.Literal('auto'), t.Literal('never')], {
        default: 'auto',
        description:
          '`auto`: when the model is unavailable or times out, answer with the energy detector (`mode: fallback-energy`); `never`: answer 503/504',
      }),
    ),
    timeout_ms: t.Optional(
      t.Integer({ minimum: 1, description: 'Budget for the model over the whole file, at most INFERENCE_MAX_TIMEOUT_MS' }),
    ),
  },
  { additionalProperties: false },
)
export type VadOptions = typeof VadOptions.static

export interface ResolvedVadOptions {
  params: ResolvedVadParams
  probabilities: boolean
  fallback: 'auto' | 'never'
  timeoutMs?: number
}

const checkOptions = TypeCompiler.Compile(VadOptions)

/**
 * Checks VAD options (already typed) and the rules between them; field paths carry `prefix`
 * (`query:` for the query string, nothing for body fields).
 * @example resolveVadOptions({ threshold: 0.6, probabilities: true }).params.neg_threshold // 0.45
 */
export function resolveVadOptions(input: Record<string, unknown>, prefix = ''): ResolvedVadOptions {
  // Every bad field is listed at once: the schema's findings, then the segmenter's rules between fields.
  const issues: FieldIssue[] = checkOptions.Check(input) ? [] : [...checkOptions.Errors(input)].map(fieldIssue)
  const { probabilities = false, fallback = 'auto', timeout_ms, ...segmenter } = input as VadOptions
  let params: ResolvedVadParams | undefined
  try {
    params = resolveVadParams(segmenter)
  } catch (error) {
    for (const issue of ((error as ValidationError).details ?? []) as FieldIssue[])
      if (!issues.some((known) => known.path === issue.path)) issues.push(issue)
  }
  if (issues.length || !params)
    throw new ValidationError(
      'Invalid VAD parameters',
      issues.map((issue) => ({ ...issue, path: `${prefix}${issue.path}` })),
    )
  return { params, probabilities, fallback, timeoutMs: timeout_ms }
}
