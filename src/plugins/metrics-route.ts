import { createHash, timingSafeEqual } from 'node:crypto'
import { Elysia, t } from 'elysia'
import { responses } from '../envelope'
import type { KeyService } from '../keys/service'
import type { Logger } from '../logger'
import type { Metrics } from '../metrics/service'
import { authenticate, presentedKey, refuseKeyInQuery } from './auth'
import { type RateLimiter, rateLimit } from './rate-limit'
import { seedOf } from './seed'

const digest = (value: string) => createHash('sha256').update(value).digest()

/** Equal-length digests make the comparison take the same time whatever is presented. */
function sameSecret(presented: string, expected: string): boolean {
  return timingSafeEqual(digest(presented), digest(expected))
}

export interface MetricsRouteOptions {
  metrics: Metrics
  keys: KeyService
  /** `METRICS_TOKEN`: a bearer token that may scrape without an API key. */
  token?: string
  limiter: RateLimiter
  logger: Logger
}

/**
 * `GET /metrics` in the Prometheus text format, for an admin API key or `Authorization: Bearer <METRICS_TOKEN>`,
 * counted against the `admin` rate limit. Not enveloped (Prometheus fixes the format); failures still are.
 * @example app.use(metricsRoute({ metrics, keys, token: config.METRICS_TOKEN, limiter, logger }))
 */
export const metricsRoute = (options: MetricsRouteOptions) => {
  const { metrics, keys, token, limiter, logger } = options
  return new Elysia({ name: 'vireo.metrics', seed: seedOf(metrics, keys, limiter, logger, token === undefined) })
    .use(rateLimit({ limiter, logger }))
    .get(
      '/metrics',
      async function scrapeMetrics({ set }) {
        set.headers['content-type'] = metrics.promRegistry.contentType
        return await metrics.promRegistry.metrics()
      },
      {
        // Like the auth macro: credentials are settled before anything else, so the limiter counts per key.
        async transform({ request }) {
          refuseKeyInQuery(request)
          const presented = presentedKey(request)
          if (token !== undefined && presented !== undefined && request.headers.has('authorization') && sameSecret(presented, token)) return
          await authenticate({ keys, limiter }, request, 'admin')
        },
        rateLimit: 'admin',
        detail: {
          tags: ['meta'],
          summary: 'Prometheus metrics (admin key or METRICS_TOKEN)',
          description: 'The Prometheus text exposition format 0.0.4, not the JSON envelope. Errors are enveloped.',
          security: [{ bearer: [] }, { apiKey: [] }],
        },
        response: responses({ 200: t.String({ description: 'Prometheus text format 0.0.4', maxLength: 16_777_216 }) }, 401, 403),
      },
    )
}
