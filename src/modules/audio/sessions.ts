import { TypeCompiler } from '@sinclair/typebox/compiler'
import { VAD_MODEL } from '../../audio/detect'
import { resolveVadParams } from '../../audio/params'
import { inferVadFrame, RealtimeVad, type StreamEvent } from '../../audio/stream'
import type { Config } from '../../config'
import { AppError, fieldIssue, toAppError, UnsupportedMediaTypeError, ValidationError } from '../../errors'
import type { Registry } from '../../inference/registry'
import type { Feeds } from '../../inference/tensors'
import type { Logger } from '../../logger'
import { AudioModel } from './model'

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

/** What a session needs of its WebSocket, whichever runtime holds it (Bun's `ServerWebSocket`, Deno's `WebSocket`). */
export interface StreamSocket {
  send(text: string): void
  close(code: number, reason: string): void
}

/** What the runtime tells a session about its socket. */
export interface StreamSession {
  /** A message as it arrived: binary as bytes, text as the text itself. */
  message(data: Uint8Array | string): void
  /** The socket is closed, by either side. */
  closed(): void
}

/** Who opened a stream: the key it counts against and the logger of its upgrade request. */
export interface StreamOwner {
  keyId: string
  log: Logger
}

/**
 * Upgrades an admitted request to a WebSocket where Elysia cannot (its `.ws()` needs Bun's server): the Deno entry
 * point implements it with `Deno.upgradeWebSocket`. `headers` go on the 101 answer, `sec-websocket-protocol` among
 * them; `open` runs once the socket is open. Like Bun's `server.upgrade`, false means the request is no valid upgrade.
 */
export type UpgradeWebSocket = (
  request: Request,
  options: { headers: Record<string, string | number>; open(socket: StreamSocket): StreamSession },
) => boolean

export type StreamConfig = Pick<
  Config,
  | 'VAD_STREAM_MAX_PER_KEY'
  | 'VAD_STREAM_IDLE_MS'
  | 'VAD_STREAM_MAX_DURATION_MS'
  | 'VAD_STREAM_MAX_MESSAGE_BYTES'
  | 'VAD_STREAM_BATCH_DELAY_MS'
>

export interface StreamSessionsOptions {
  registry: Registry
  config: StreamConfig
}

export interface StreamSessions {
  /** Starts a session on a socket that has just opened; the runtime feeds it with the returned callbacks. */
  open(socket: StreamSocket, owner: StreamOwner): StreamSession
}

const checkStreamConfig = TypeCompiler.Compile(AudioModel.streamConfig)

interface SessionState {
  vad?: RealtimeVad
  chain: Promise<void>
  idle?: ReturnType<typeof setTimeout>
  /** When the stream last showed life (a message arrived or one was handled). */
  activeAt: number
  /** Messages received and not yet handled, the one being handled included. */
  backlog: number
  limit?: ReturnType<typeof setTimeout>
  closed: boolean
  keyId: string
  /** Closes the socket; with an error, an error event goes first (browsers do not reliably show close reasons). */
  close(code: number, error?: AppError): void
}

/**
 * The realtime VAD sessions of this process: per-key stream limits, idle and total time limits, message size,
 * in-order handling of a stream's messages and the events they produce. Runtime-neutral: Bun's `.ws()` route and
 * Deno's `Deno.upgradeWebSocket` drive the very same sessions through `StreamSocket` and `StreamSession`.
 * @example const session = sessions.open({ send: (t) => ws.send(t), close: (c, r) => ws.close(c, r) }, { keyId, log })
 */
export function createStreamSessions({ registry, config }: StreamSessionsOptions): StreamSessions {
  // Frames from concurrent streams share runs through the model's dynamic batcher, behind runRaw; each may wait a
  // few ms for the others' frames, since they arrive spread over the 32 ms between two frames of one stream. A
  // stream that has fallen behind (messages waiting behind this one) never waits: its frames go one per run, in
  // order, and each round of waiting would keep it behind.
  const patient = { maxDelayMs: config.VAD_STREAM_BATCH_DELAY_MS }
  const hasty = { maxDelayMs: 0 }
  const runVad = (state: SessionState) => async (feeds: Feeds) =>
    (await registry.runRaw(VAD_MODEL, feeds, state.backlog > 1 ? hasty : patient)).outputs
  const openPerKey = new Map<string, number>()

  const send = (socket: StreamSocket, event: StreamEvent | { type: string; [k: string]: unknown }) => socket.send(JSON.stringify(event))

  /** Frees the stream's slot and timers once (whoever closed it). */
  function release(state: SessionState) {
    if (state.closed) return
    state.closed = true
    clearTimeout(state.idle)
    clearTimeout(state.limit)
    const left = (openPerKey.get(state.keyId) ?? 1) - 1
    if (left > 0) openPerKey.set(state.keyId, left)
    else openPerKey.delete(state.keyId)
  }

  /**
   * One timer per stream that checks, when it fires, whether the stream was active since: a busy stream only moves a
   * timestamp per message, instead of clearing and arming a timer twice for each one.
   */
  function watchIdle(state: SessionState, delayMs: number) {
    state.idle = setTimeout(function idleCheck() {
      const quietMs = performance.now() - state.activeAt
      if (quietMs < config.VAD_STREAM_IDLE_MS) return watchIdle(state, config.VAD_STREAM_IDLE_MS - quietMs)
      state.close(CLOSE.idle, new AppError('TIMEOUT_ERROR', `No message for ${config.VAD_STREAM_IDLE_MS / 1000} s; the stream is closed`))
    }, delayMs)
  }

  /** The events one message produces; the first message configures the stream. */
  async function react(state: SessionState, message: unknown, binary: boolean): Promise<StreamEvent[] | [{ type: 'ready' }]> {
    if (!state.vad) {
      if (binary) throw new UnsupportedMediaTypeError('Send the configuration as a JSON text message before any audio')
      return [configure(state, message)]
    }
    if (binary) return state.vad.push(message as Uint8Array)
    if (isEnd(message)) return state.vad.end()
    throw new UnsupportedMediaTypeError('After the configuration only binary audio and { "type": "end" } are accepted')
  }

  function configure(state: SessionState, message: unknown): { type: 'ready' } & Record<string, unknown> {
    if (!message || typeof message !== 'object' || Array.isArray(message))
      throw new ValidationError('The first message must be a JSON object: { "sample_rate": 16000, "encoding": "pcm_s16le" }')
    if (!checkStreamConfig.Check(message))
      throw new ValidationError('Invalid stream configuration', [...checkStreamConfig.Errors(message)].map(fieldIssue))
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
    const run = runVad(state)
    state.vad = new RealtimeVad({
      sampleRate: sample_rate,
      encoding,
      params,
      probabilities,
      fallback,
      infer: ready ? (frame) => inferVadFrame(run, frame) : undefined,
    })
    return { type: 'ready', mode: state.vad.mode }
  }

  return {
    open(socket, { keyId, log }) {
      const state: SessionState = {
        chain: Promise.resolve(),
        activeAt: performance.now(),
        backlog: 0,
        closed: false,
        keyId,
        close(code, error) {
          if (state.closed) return
          if (error) {
            const internal = code === CLOSE.internal
            if (internal) log.error({ err: error.cause ?? error }, 'vad stream failed')
            // The field issues of a bad configuration, as the HTTP envelope carries them: which field, and why.
            const details = internal || error.details === undefined ? {} : { details: error.details }
            send(socket, { type: 'error', code: error.code, message: error.message, ...details })
          }
          socket.close(code, error?.code ?? 'end')
          release(state)
        },
      }
      const open = openPerKey.get(keyId) ?? 0
      openPerKey.set(keyId, open + 1)
      if (open >= config.VAD_STREAM_MAX_PER_KEY)
        state.close(
          CLOSE.policy,
          new AppError('RATE_LIMITED', `This API key already has ${open} open streams; the limit is ${config.VAD_STREAM_MAX_PER_KEY}`),
        )
      else {
        state.limit = setTimeout(function streamLimit() {
          state.close(
            CLOSE.policy,
            new AppError('TIMEOUT_ERROR', `The stream reached its limit of ${config.VAD_STREAM_MAX_DURATION_MS / 1000} s; open a new one`),
          )
        }, config.VAD_STREAM_MAX_DURATION_MS)
        watchIdle(state, config.VAD_STREAM_IDLE_MS)
      }
      return {
        message(data) {
          if (state.closed) return
          state.activeAt = performance.now()
          const binary = typeof data !== 'string'
          const size = binary ? data.byteLength : new TextEncoder().encode(data).byteLength
          if (size > config.VAD_STREAM_MAX_MESSAGE_BYTES)
            return state.close(
              CLOSE.tooBig,
              new AppError('PAYLOAD_TOO_LARGE', `A message may hold at most ${config.VAD_STREAM_MAX_MESSAGE_BYTES} bytes; got ${size}`),
            )
          const message = binary ? data : parseText(data)
          state.backlog++
          // Messages are handled strictly in order: a stream's frames depend on each other's state.
          state.chain = state.chain.then(async function handleMessage() {
            if (state.closed) return
            try {
              const ending = !binary && state.vad !== undefined && isEnd(message)
              for (const event of await react(state, message, binary)) if (!state.closed) send(socket, event)
              // A backlog being worked through is not idleness.
              state.activeAt = performance.now()
              if (ending && !state.closed) {
                send(socket, { type: 'end' })
                state.close(CLOSE.normal)
              }
            } catch (error) {
              const known = toAppError(error)
              state.close(closeCodeFor(known), known)
            } finally {
              state.backlog--
            }
          })
        },
        closed() {
          release(state)
        },
      }
    },
  }
}

/** A text message is JSON; text that is not stays a string, which no step accepts. */
function parseText(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return text
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
