import { setInterval } from 'node:timers'
import pino, { type DestinationStream, type Logger } from 'pino'
import pretty from 'pino-pretty'
import type { Config } from './config'

export type { Logger }

/** Header names and fields whose values never reach a log line. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'req.headers["sec-websocket-protocol"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers["x-api-key"]',
  'headers.cookie',
  'key',
  '*.key',
  'secret',
  '*.secret',
  'token',
  '*.token',
  'api_key',
  '*.api_key',
  'ADMIN_API_KEY',
  'METRICS_TOKEN',
  'DATABASE_URL',
  'REDIS_URL',
]

export interface LoggerOptions {
  /** Where lines go; defaults to `logDestination(1)`, stdout (pretty in development). */
  destination?: DestinationStream
}

const BATCH_CHARS = 4096
const FLUSH_EVERY_MS = 100

/**
 * Lines gathered in memory and handed to sonic-boom (pino's own async file writer) in one string of at least 4 KiB,
 * or every 100 ms by a timer that never keeps the process up. sonic-boom's own buffering measures the whole pending
 * buffer (`Buffer.byteLength`) on every line, up to 16 KiB of it: the access line was the largest item of a request's
 * own work in the profile. Here a line costs an array push; sonic-boom sees one write per batch.
 */
class LineBatch implements DestinationStream {
  private lines: string[] = []
  private chars = 0
  /** Lines went to the writer since the timer last flushed it (sonic-boom may hold them below its minimum). */
  private handed = false

  constructor(private readonly sink: ReturnType<typeof pino.destination>) {
    setInterval(() => this.tick(), FLUSH_EVERY_MS).unref()
  }

  write(line: string): void {
    this.lines.push(line)
    this.chars += line.length
    if (this.chars >= BATCH_CHARS) this.drain()
  }

  /** Every line so far on its way to the file; `done` once written (pino's `logger.flush` lands here). */
  flush(done: (error?: Error) => void): void {
    this.drain()
    this.sink.flush(done)
  }

  private drain(): void {
    if (this.chars === 0) return
    this.sink.write(this.lines.length === 1 ? this.lines[0]! : this.lines.join(''))
    this.lines = []
    this.chars = 0
    this.handed = true
  }

  /** The periodic flush: an idle service writes nothing at all. */
  private tick(): void {
    this.drain()
    if (!this.handed) return
    this.handed = false
    this.sink.flush()
  }
}

/**
 * Production's sink: lines go out in one write once 4 KiB are waiting, or every 100 ms (`LineBatch`). One write
 * per line cost a system call per request. Lines still waiting at exit are written by `flushLogger`.
 * @example const destination = logDestination('/dev/null')
 */
export function logDestination(dest: number | string): DestinationStream {
  return new LineBatch(pino.destination({ dest, sync: false, minLength: BATCH_CHARS }))
}

/**
 * The one logger. JSON everywhere except development, where lines are pretty-printed
 * in the main thread (no transport worker); production writes through a buffered async destination (`logDestination`).
 * @example const logger = createLogger(config)
 */
export function createLogger(config: Pick<Config, 'LOG_LEVEL' | 'NODE_ENV'>, options: LoggerOptions = {}): Logger {
  const destination =
    options.destination ?? (config.NODE_ENV === 'development' ? pretty({ colorize: true, sync: false }) : logDestination(1))
  return pino(
    {
      level: config.LOG_LEVEL,
      base: { service: 'vireo' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  )
}

/** The fields of a line `flatInfoWriter` writes: keys that need no escaping, strings and numbers (undefined is left out). */
export type FlatFields = Record<string, string | number | undefined>

/**
 * A writer of `info` lines with flat fields for `logger`, byte for byte as `logger.info(fields, msg)` writes them:
 * the level, time and bindings come from the logger's own pre-serialized strings (`pino.symbols`) and the line goes to
 * its stream, but the fields are serialized here. pino runs `JSON.stringify` on every key and string value of every
 * line under Bun (which reports Node ≥ 25); for the access line, one per request, that was ≈ 3 µs of server CPU per
 * request side by side (README, "Request pipeline"). For loggers without mixin, log formatter, nested key, message
 * prefix or stream-write hook, as `createLogger` makes them; `test/logging.test.ts` holds the lines equal to pino's.
 * @example const writeAccess = flatInfoWriter(logger); writeAccess({ request_id: id, status: 200 }, 'request')
 */
export function flatInfoWriter(logger: Logger): (fields: FlatFields, msg: string) => void {
  const own = logger as unknown as Record<symbol, unknown>
  const { lsCacheSym, timeSym, chindingsSym, streamSym, endSym, messageKeySym } = pino.symbols
  const msgKey = JSON.stringify(own[messageKeySym])
  return function writeInfo(fields, msg) {
    if (!logger.isLevelEnabled('info')) return
    let line = `${(own[lsCacheSym] as Record<number, string>)[30]}${(own[timeSym] as () => string)()}${own[chindingsSym]}`
    for (const key in fields) {
      const value = fields[key]
      if (value === undefined) continue
      line += typeof value === 'number' ? `,"${key}":${Number.isFinite(value) ? value : null}` : `,"${key}":${JSON.stringify(value)}`
    }
    ;(own[streamSym] as DestinationStream).write(`${line},${msgKey}:${JSON.stringify(msg)}${own[endSym]}`)
  }
}

/** Wait until every line has reached stdout (async destination) before exit; `process.exit` would drop the rest. */
export function flushLogger(logger: Logger, timeoutMs = 2000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs)
    logger.flush(() => {
      clearTimeout(timer)
      resolve()
    })
  })
}
