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

/**
 * Production's sink: lines gather in a buffer and go out in one write once 4 KiB are waiting, or every 100 ms
 * (sonic-boom's periodic flush, a timer that never keeps the process up). One write per line cost a system call
 * per request, the largest single item of a request's own work in the profile. Lines still in the buffer at exit
 * are written by `flushLogger`.
 * @example const destination = logDestination('/dev/null')
 */
export function logDestination(dest: number | string): DestinationStream {
  return pino.destination({ dest, sync: false, minLength: 4096, periodicFlush: 100 })
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
