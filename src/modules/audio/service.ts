const NUMERIC = new Set(['threshold', 'neg_threshold', 'min_speech_ms', 'min_silence_ms', 'speech_pad_ms', 'max_speech_s', 'timeout_ms'])

/** Multipart fields and query values arrive as text: numbers and booleans are read from it, anything else is left for the schema to refuse. */
export function coerceFields(raw: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(raw)) {
    if (typeof value !== 'string') out[name] = value
    else if (NUMERIC.has(name) && value.trim() !== '' && Number.isFinite(Number(value))) out[name] = Number(value)
    else if (name === 'probabilities' && (value === 'true' || value === 'false')) out[name] = value === 'true'
    else out[name] = value
  }
  return out
}
