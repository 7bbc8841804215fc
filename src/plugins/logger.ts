import { Elysia } from 'elysia'
import type { Logger } from '../logger'
import { requestState } from './request-id'

export interface RequestLoggerOptions {
  logger: Logger
  /** Called once per finished request, e.g. by metrics. */
  onResponse?: (entry: { method: string; route: string; status: number; durationS: number }) => void
}

/**
 * One structured line per request: request_id, method, route pattern, status, duration_ms, client ip.
 * Headers are never logged, so keys and cookies cannot leak through this line.
 * @example app.use(requestLogger({ logger }))
 */
export const requestLogger = (options: RequestLoggerOptions) =>
  new Elysia({ name: 'vireo.logger' }).onAfterResponse({ as: 'global' }, function logRequest({ request, route, set }) {
    const state = requestState(request)
    if (!state) return
    const durationMs = performance.now() - state.startedAt
    const status = typeof set.status === 'number' ? set.status : 200
    const pattern = route || 'unmatched'
    options.onResponse?.({ method: request.method, route: pattern, status, durationS: durationMs / 1000 })
    // The base logger with the id as a field: the same line state.log would write, without a child logger per request.
    const line = {
      request_id: state.id,
      method: request.method,
      route: pattern,
      status,
      duration_ms: Math.round(durationMs * 100) / 100,
      ip: state.ip,
      key_id: state.keyId,
    }
    if (status >= 500) options.logger.error(line, 'request failed')
    else options.logger.info(line, 'request')
  })
