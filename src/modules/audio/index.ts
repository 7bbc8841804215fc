import { Elysia, t } from 'elysia'
import { readAudioInfo } from '../../audio/decode'
import { detectSpeech, VAD_MODEL } from '../../audio/detect'
import { resolveVadOptions } from '../../audio/params'
import type { Config } from '../../config'
import { EnvelopeSchema, ok, responses } from '../../envelope'
import { UnsupportedMediaTypeError, ValidationError } from '../../errors'
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
import { createStreamSessions, type StreamConfig, type StreamOwner, type StreamSession, type UpgradeWebSocket } from './sessions'

/** Subprotocol a client may offer beside its key, so the server can accept it without echoing the key back. */
export const VAD_STREAM_PROTOCOL = 'vireo.vad.v1'

export type AudioConfig = Pick<Config, 'MAX_AUDIO_MS' | 'MAX_UPLOAD_BYTES'> & StreamConfig

export interface AudioModuleOptions {
  registry: Registry
  jobs: JobService
  keys: KeyService
  limiter: RateLimiter
  logger: Logger
  config: AudioConfig
  /** Given where Elysia's `.ws()` cannot upgrade (Deno): the stream route then upgrades through it. */
  upgradeWebSocket?: UpgradeWebSocket
}

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

/**
 * `/api/v1/audio`: speech segments of an uploaded WAV (sync or as a job) and the realtime VAD WebSocket.
 * @example app.use(audioModule({ registry, jobs, keys, limiter, logger, config }))
 */
export const audioModule = ({ registry, jobs, keys, limiter, logger, config, upgradeWebSocket }: AudioModuleOptions) => {
  const sessions = createStreamSessions({ registry, config })

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

  /**
   * Refuses a malformed upgrade in the envelope (left to the runtime, Bun's would be a bare text 400). Browsers drop a
   * connection whose answer names no subprotocol when they offered some: name the keyless one.
   */
  function prepareUpgrade({ request, set }: { request: Request; set: { headers: Record<string, string | number> } }) {
    if (!request.headers.get('sec-websocket-key') || request.headers.get('sec-websocket-version') !== '13')
      throw new ValidationError('Expected a WebSocket upgrade', [
        { path: 'header:/sec-websocket-key', message: 'a WebSocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version 13' },
      ])
    if (offeredProtocols(request).length) set.headers['sec-websocket-protocol'] = VAD_STREAM_PROTOCOL
  }

  const wavFile = { type: 'string' as const, format: 'binary', maxLength: config.MAX_UPLOAD_BYTES, description: 'A WAV file' }

  /** The key an admitted upgrade authenticated, and the logger of that request. */
  const ownerOf = (request: Request): StreamOwner => ({
    keyId: (principalOf(request) as Principal).id,
    log: requestState(request)?.log ?? logger,
  })

  const routes = new Elysia({ name: 'vireo.module.audio', prefix: `${API_PREFIX}/audio`, normalize: false, detail: { tags: ['audio'] } })
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
          readAudioInfo(bytes, { maxSeconds: config.MAX_AUDIO_MS / 1000 })
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
          maxSeconds: config.MAX_AUDIO_MS / 1000,
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
            '(PCM 8–32-bit, float 32/64, extensible) is accepted. Audio longer than MAX_AUDIO_MS answers 400.',
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

  // The same admission on every runtime: key (header or subprotocol) and the subprotocol rule, then the rate limit.
  const stream = {
    rateLimit: 'inference',
    detail: {
      summary: 'Realtime VAD over a WebSocket',
      description:
        `Authenticate with Authorization / X-API-Key, or (browsers) the subprotocol \`${WS_KEY_PROTOCOL_PREFIX}<key>\` offered beside ` +
        `\`${VAD_STREAM_PROTOCOL}\`. First text message: { sample_rate, encoding: pcm_s16le | f32le, …segmenter parameters, probabilities? }; ` +
        'answer { type: ready }. Then binary PCM messages of any whole number of samples; events speech_start, speech_end, probability. ' +
        'Send { type: end } to flush the last segment. Errors: { type: error, code, message, details? } then close (details: the fields a bad config got wrong).',
    },
    transform: authenticateStream,
  } as const

  if (upgradeWebSocket)
    return routes.route(
      'WS',
      '/vad/stream',
      function upgradeStream({ request, set }) {
        prepareUpgrade({ request, set })
        const owner = ownerOf(request)
        if (!upgradeWebSocket(request, { headers: set.headers, open: (socket) => sessions.open(socket, owner) }))
          throw new ValidationError('The WebSocket upgrade was refused by the runtime')
      },
      stream,
    )

  /** The session of each Bun socket. */
  const sessionOf = new WeakMap<object, StreamSession>()
  return routes.ws('/vad/stream', {
    ...stream,
    upgrade: prepareUpgrade,
    open(ws) {
      const raw = ws.raw
      const session = sessions.open(
        { send: (text) => raw.send(text), close: (code, reason) => raw.close(code, reason) },
        ownerOf(ws.data.request),
      )
      sessionOf.set(raw, session)
      takeMessages(raw, session)
    },
    // Reached only where `takeMessages` could not take the socket's messages.
    message(ws, message) {
      sessionOf.get(ws.raw)?.message(asReceived(message))
    },
    close(ws) {
      sessionOf.get(ws.raw)?.closed()
    },
  })
}

/**
 * Each message straight from Bun to the session. Elysia's Bun adapter hands every message to the socket's
 * `data.message`, its own handler, which parses it and wraps the socket in a new object with ≈ 15 bound methods
 * before calling the route's `message`; the session reads bytes and text as they arrive, so that work is all it
 * would add: ≈ 3 µs of the main thread's CPU per frame at 450 streams (26.8 → 24.0 µs, bench/vad.ts, builds side by side).
 * Where `data.message` is not there (another Elysia version), the route's `message` serves as before.
 */
function takeMessages(raw: { data: unknown }, session: StreamSession): void {
  const data = raw.data as { message?: unknown } | undefined
  if (typeof data?.message === 'function') data.message = (_ws: unknown, message: Uint8Array | string) => session.message(message)
}

/** Elysia hands a text message over already JSON-parsed (when it parses); the session reads the text itself. */
const asReceived = (message: unknown): Uint8Array | string =>
  message instanceof Uint8Array ? message : typeof message === 'string' ? message : JSON.stringify(message)
