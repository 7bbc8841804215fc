import { TypeCompiler } from '@sinclair/typebox/compiler'
import { Elysia, t } from 'elysia'
import { readAudioInfo } from '../../audio/decode'
import { detectSpeech, VAD_MODEL } from '../../audio/detect'
import { resolveVadOptions, resolveVadParams } from '../../audio/params'
import { RealtimeVad, type StreamEvent, VadBatcher } from '../../audio/stream'
import type { Config } from '../../config'
import { EnvelopeSchema, ok, responses } from '../../envelope'
import { AppError, toAppError, UnsupportedMediaTypeError, ValidationError } from '../../errors'
import type { Registry } from '../../inference/registry'
import type { KeyService, Principal } from '../../keys/service'
import type { Logger } from '../../logger'
import { auth, authenticate, principalOf, WS_KEY_PROTOCOL_PREFIX } from '../../plugins/auth'
import { bodyKind } from '../../plugins/body-parser'
import { type RateLimiter, rateLimit } from '../../plugins/rate-limit'
import { requestState } from '../../plugins/request-id'
import { API_PREFIX } from '../../plugins/versioning'
import { acceptedAsJob, asyncHeaders, prefersAsync, requireJobsScope } from '../async-job'
import type { JobService } from '../jobs/service'
import { AudioModel } from './model'
import { coerceFields } from './service'

/** Subprotocol a client may offer beside its key, so the server can accept it without echoing the key back. */
export const VAD_STREAM_PROTOCOL = 'vireo.vad.v1'

/** WebSocket close codes (RFC 6455 §7.4.1; 4000–4999 are the application's own). */
export const CLOSE = {
  normal: 1000,
  unsupportedData: 1003,
  invalidData: 1007,
  policy: 1008,
  tooBig: 1009,
  internal: 1011,
  tryAgainLater: 1013,
  idle: 4008,
} as const

export type AudioConfig = Pick<
  Config,
  | 'MAX_AUDIO_SECONDS'
  | 'MAX_UPLOAD_BYTES'
  | 'VAD_STREAM_MAX_PER_KEY'
  | 'VAD_STREAM_IDLE_S'
  | 'VAD_STREAM_MAX_S'
  | 'VAD_STREAM_MAX_MESSAGE_BYTES'
  | 'VAD_BATCH_WINDOW_MS'
>

export interface AudioModuleOptions {
  registry: Registry
  jobs: JobService
  keys: KeyService
  limiter: RateLimiter
  logger: Logger
  config: AudioConfig
}

const checkStreamConfig = TypeCompiler.Compile(AudioModel.streamConfig)

/** Audio bytes and the raw (text) parameters of a POST /audio/vad, from either body form. */
async function readUpload(body: unknown, contentType: string | null): Promise<{ bytes: Uint8Array; fields: Record<string, unknown> }> {
  const kind = bodyKind(contentType)
  const empty = () => new ValidationError('The uploaded file is empty; send a WAV file', [{ path: '/file', message: 'is empty' }])
  if (kind === 'binary') {
    if (!(body instanceof Uint8Array) || body.byteLength === 0) throw empty()
    return { bytes: body, fields: {} }
  }
  if (kind === 'multipart' && body && typeof body === 'object') {
    const { file, ...fields } = body as Record<string, unknown>
    if (!(file instanceof Blob))
      throw new ValidationError('Send the audio as the multipart field "file"', [{ path: '/file', message: 'a file is required' }])
    if (file.size === 0) throw empty()
    return { bytes: new Uint8Array(await file.arrayBuffer()), fields }
  }
  if (kind === 'json' || kind === 'form')
    throw new UnsupportedMediaTypeError(
      `Content-Type "${contentType}" is not accepted here; send multipart/form-data with a "file" field, or the audio itself as audio/wav or application/octet-stream`,
    )
  throw new ValidationError('Send a WAV file: multipart/form-data with a "file" field, or the raw audio as audio/wav', [
    { path: '/file', message: 'a file is required' },
  ])
}

interface StreamState {
  vad?: RealtimeVad
  chain: Promise<void>
  idle?: ReturnType<typeof setTimeout>
  limit?: ReturnType<typeof setTimeout>
  closed: boolean
  keyId: string
  /** Closes the socket; with an error, an error event goes first (browsers do not reliably show close reasons). */
  close(code: number, error?: AppError): void
}

/**
 * `/api/v1/audio`: speech segments of an uploaded WAV (sync or as a job) and the realtime VAD WebSocket.
 * @example app.use(audioModule({ registry, jobs, keys, limiter, logger, config }))
 */
export const audioModule = ({ registry, jobs, keys, limiter, logger, config }: AudioModuleOptions) => {
  const batcher = new VadBatcher({
    run: async (feeds) => (await registry.runRaw(VAD_MODEL, feeds)).outputs,
    windowMs: config.VAD_BATCH_WINDOW_MS,
    maxInFlight: registry.pool.stats().size,
  })
  const openPerKey = new Map<string, number>()
  const streams = new WeakMap<object, StreamState>()

  const offeredProtocols = (request: Request) =>
    (request.headers.get('sec-websocket-protocol') ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean)

  /**
   * Browsers cannot set headers on a WebSocket, so the key may also come as a `vireo.key.<key>` subprotocol.
   * A client that offers subprotocols must offer `vireo.vad.v1` too: the answer names the one selected, and a
   * key-bearing one is never selected, so the key is never echoed.
   */
  async function authenticateStream({ request }: { request: Request }) {
    await authenticate({ keys, limiter }, request, 'inference', true)
    const offered = offeredProtocols(request)
    if (offered.length && !offered.includes(VAD_STREAM_PROTOCOL))
      throw new ValidationError(`Offer the subprotocol ${VAD_STREAM_PROTOCOL} (beside vireo.key.<key> if the key travels that way)`, [
        { path: 'header:/sec-websocket-protocol', message: `must include ${VAD_STREAM_PROTOCOL}` },
      ])
  }

  /** Browsers drop a connection whose answer names no subprotocol when they offered some: name the keyless one. */
  function chooseProtocol({ request, set }: { request: Request; set: { headers: Record<string, string | number> } }) {
    if (offeredProtocols(request).length) set.headers['sec-websocket-protocol'] = VAD_STREAM_PROTOCOL
  }

  const wavFile = { type: 'string' as const, format: 'binary', maxLength: config.MAX_UPLOAD_BYTES, description: 'A WAV file' }

  const send = (ws: { send(data: string): unknown }, event: StreamEvent | { type: string; [k: string]: unknown }) =>
    ws.send(JSON.stringify(event))

  return new Elysia({ name: 'vireo.module.audio', prefix: `${API_PREFIX}/audio`, normalize: false, detail: { tags: ['audio'] } })
    .use(auth({ keys, limiter }))
    .use(rateLimit({ limiter, logger }))
    .post(
      '/vad',
      async function detect({ body, query, headers, principal, request, set }) {
        const { bytes, fields } = await readUpload(body, request.headers.get('content-type'))
        // Validated here rather than by a route schema, so every bad field is listed, not just the first.
        const fromQuery = coerceFields(query)
        const parameters = { ...fromQuery, ...coerceFields(fields) }
        const options = Object.keys(fields).length ? resolveVadOptions(parameters) : resolveVadOptions(fromQuery, 'query:')
        if (prefersAsync(headers.prefer)) {
          requireJobsScope(principal)
          // Bad audio is the caller's mistake now, not a failed job later.
          readAudioInfo(bytes, { maxSeconds: config.MAX_AUDIO_SECONDS })
          const answer = await jobs.submit(
            principal,
            { task: 'vad', model: VAD_MODEL, input: null, inputBytes: bytes, parameters },
            headers['idempotency-key'],
          )
          return acceptedAsJob(set, answer)
        }
        const outcome = await detectSpeech(registry, bytes, {
          ...options,
          signal: request.signal,
          owner: principal.id,
          maxSeconds: config.MAX_AUDIO_SECONDS,
        })
        return ok(outcome.data, { message: outcome.message })
      },
      {
        auth: 'inference',
        rateLimit: 'inference',
        headers: asyncHeaders('vad'),
        detail: {
          parameters: Object.entries(AudioModel.vadOptions.properties).map(([name, schema]) => ({
            name,
            in: 'query',
            required: false,
            schema: schema as never,
          })),
          requestBody: {
            required: true,
            content: {
              'multipart/form-data': { schema: { type: 'object', required: ['file'], properties: { file: wavFile } } },
              'audio/wav': { schema: wavFile },
              'application/octet-stream': { schema: wavFile },
            },
          },
          summary: 'Speech segments of a WAV file',
          description:
            'Send the WAV as multipart/form-data field `file` (other fields are parameters) or as the raw body with an audio/* or ' +
            'application/octet-stream Content-Type (parameters in the query string). The type is decided from the bytes; only WAV ' +
            '(PCM 8–32-bit, float 32/64, extensible) is accepted. Audio longer than MAX_AUDIO_SECONDS answers 400.',
        },
        response: responses(
          { 200: EnvelopeSchema(AudioModel.vadResult), 202: EnvelopeSchema(t.Unknown({ description: 'The job (see /jobs)' })) },
          401,
          403,
          413,
          415,
          503,
          504,
        ),
      },
    )
    .ws('/vad/stream', {
      rateLimit: 'inference',
      detail: {
        summary: 'Realtime VAD over a WebSocket',
        description:
          `Authenticate with Authorization / X-API-Key, or (browsers) the subprotocol \`${WS_KEY_PROTOCOL_PREFIX}<key>\` offered beside ` +
          `\`${VAD_STREAM_PROTOCOL}\`. First text message: { sample_rate, encoding: pcm_s16le | f32le, …segmenter parameters, probabilities? }; ` +
          'answer { type: ready }. Then binary PCM messages of any whole number of samples; events speech_start, speech_end, probability. ' +
          'Send { type: end } to flush the last segment. Errors: { type: error, code, message } then close.',
      },
      transform: authenticateStream,
      upgrade: chooseProtocol,
      open(ws) {
        const principal = principalOf(ws.data.request) as Principal
        const log = requestState(ws.data.request)?.log ?? logger
        const state: StreamState = {
          chain: Promise.resolve(),
          closed: false,
          keyId: principal.id,
          close(code, error) {
            if (state.closed) return
            if (error) {
              if (code === CLOSE.internal) log.error({ err: error.cause ?? error }, 'vad stream failed')
              send(ws, { type: 'error', code: error.code, message: error.message })
            }
            ws.close(code, error?.code ?? 'end')
            release(state)
          },
        }
        streams.set(ws.raw, state)
        const open = openPerKey.get(principal.id) ?? 0
        openPerKey.set(principal.id, open + 1)
        if (open >= config.VAD_STREAM_MAX_PER_KEY)
          return state.close(
            CLOSE.policy,
            new AppError('RATE_LIMITED', `This API key already has ${open} open streams; the limit is ${config.VAD_STREAM_MAX_PER_KEY}`),
          )
        state.limit = setTimeout(function streamLimit() {
          state.close(
            CLOSE.policy,
            new AppError('TIMEOUT_ERROR', `The stream reached its limit of ${config.VAD_STREAM_MAX_S} s; open a new one`),
          )
        }, config.VAD_STREAM_MAX_S * 1000)
        resetIdle(state)
      },
      message(ws, message) {
        const state = streams.get(ws.raw)
        if (!state || state.closed) return
        resetIdle(state)
        const binary = message instanceof Uint8Array
        const size = binary ? message.byteLength : JSON.stringify(message ?? null).length
        if (size > config.VAD_STREAM_MAX_MESSAGE_BYTES)
          return state.close(
            CLOSE.tooBig,
            new AppError('PAYLOAD_TOO_LARGE', `A message may hold at most ${config.VAD_STREAM_MAX_MESSAGE_BYTES} bytes; got ${size}`),
          )
        // Messages are handled strictly in order: a stream's frames depend on each other's state.
        state.chain = state.chain.then(async function handleMessage() {
          if (state.closed) return
          try {
            const ending = !binary && state.vad !== undefined && isEnd(message)
            for (const event of await react(state, message, binary)) if (!state.closed) send(ws, event)
            // A backlog being worked through is not idleness.
            resetIdle(state)
            if (ending && !state.closed) {
              send(ws, { type: 'end' })
              state.close(CLOSE.normal)
            }
          } catch (error) {
            const known = toAppError(error)
            state.close(closeCodeFor(known), known)
          }
        })
      },
      close(ws) {
        const state = streams.get(ws.raw)
        if (state) release(state)
      },
    })

  /** Frees the stream's slot and timers once (whoever closed it). */
  function release(state: StreamState) {
    if (state.closed) return
    state.closed = true
    clearTimeout(state.idle)
    clearTimeout(state.limit)
    const left = (openPerKey.get(state.keyId) ?? 1) - 1
    if (left > 0) openPerKey.set(state.keyId, left)
    else openPerKey.delete(state.keyId)
  }

  function resetIdle(state: StreamState) {
    clearTimeout(state.idle)
    state.idle = setTimeout(function idleTimeout() {
      state.close(CLOSE.idle, new AppError('TIMEOUT_ERROR', `No message for ${config.VAD_STREAM_IDLE_S} s; the stream is closed`))
    }, config.VAD_STREAM_IDLE_S * 1000)
  }

  /** The events one message produces; the first message configures the stream. */
  async function react(state: StreamState, message: unknown, binary: boolean): Promise<StreamEvent[] | [{ type: 'ready' }]> {
    if (!state.vad) {
      if (binary) throw new UnsupportedMediaTypeError('Send the configuration as a JSON text message before any audio')
      return [configure(state, message)]
    }
    if (binary) return state.vad.push(message as Uint8Array)
    if (isEnd(message)) return state.vad.end()
    throw new UnsupportedMediaTypeError('After the configuration only binary audio and { "type": "end" } are accepted')
  }

  function configure(state: StreamState, message: unknown): { type: 'ready' } & Record<string, unknown> {
    if (!message || typeof message !== 'object' || Array.isArray(message))
      throw new ValidationError('The first message must be a JSON object: { "sample_rate": 16000, "encoding": "pcm_s16le" }')
    if (!checkStreamConfig.Check(message))
      throw new ValidationError(
        'Invalid stream configuration',
        [...checkStreamConfig.Errors(message)].map((e) => ({ path: e.path || '/', message: e.message })),
      )
    const {
      sample_rate,
      encoding,
      probabilities = false,
      fallback = 'auto',
      type: _type,
      ...segmenter
    } = message as AudioModel.streamConfig
    const params = resolveVadParams(segmenter)
    const status = registry.list().find((m) => m.name === VAD_MODEL)?.status
    const ready = status === 'ready'
    if (!ready && fallback === 'never')
      throw new AppError('SERVICE_UNAVAILABLE', `Model "${VAD_MODEL}" is ${status ?? 'not installed'}; retry later or allow the fallback`)
    state.vad = new RealtimeVad({
      sampleRate: sample_rate,
      encoding,
      params,
      probabilities,
      fallback,
      infer: ready ? (frame) => batcher.run(frame) : undefined,
    })
    return { type: 'ready', mode: state.vad.mode }
  }
}

const isEnd = (message: unknown) => !!message && typeof message === 'object' && (message as { type?: unknown }).type === 'end'

/** Binary where text is expected (or the reverse) and undecodable audio are RFC 6455's "unsupported data". */
function closeCodeFor(error: AppError): number {
  switch (error.code) {
    case 'UNSUPPORTED_MEDIA_TYPE':
      return CLOSE.unsupportedData
    case 'VALIDATION_ERROR':
      return CLOSE.policy
    case 'PAYLOAD_TOO_LARGE':
      return CLOSE.tooBig
    case 'SERVICE_UNAVAILABLE':
    case 'TIMEOUT_ERROR':
      return CLOSE.tryAgainLater
    default:
      return CLOSE.internal
  }
}
