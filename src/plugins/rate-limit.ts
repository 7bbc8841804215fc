import { Elysia } from 'elysia'
import { RateLimitedError } from '../errors'
import type { Logger } from '../logger'
import { type Policy, type RateLimiter, rateLimitHeaders } from '../rate-limit/limiter'
import { requestState } from './request-id'
import { seedOf } from './seed'

/** The limiter this plugin's options take, for the modules that pass it on. */
export type { RateLimiter }

export interface RateLimitPluginOptions {
  limiter: RateLimiter
  logger: Logger
  /** Called on every refusal (metrics). */
  onReject?: (policy: Policy) => void
}

/**
 * Adds the `rateLimit` route option: `{ rateLimit: 'inference' }` counts the request against that policy,
 * keyed by the authenticated key id (set by the auth plugin) or the client IP on public routes.
 * @example app.use(rateLimit({ limiter, logger })).get('/x', handler, { rateLimit: 'public' })
 */
export const rateLimit = (options: RateLimitPluginOptions) =>
  new Elysia({ name: 'vireo.rate-limit', seed: seedOf(options.limiter, options.logger, options.onReject) }).macro({
    rateLimit: (policy: Policy) => ({
      async beforeHandle({ request, set, route }) {
        const state = requestState(request)
        const subject = state?.keyId ? `key:${state.keyId}` : `ip:${state?.ip ?? 'unknown'}`
        const decision = await options.limiter.consume(policy, subject)
        const headers = rateLimitHeaders(decision)
        Object.assign(set.headers, headers)
        if (decision.allowed) return
        options.onReject?.(policy)
        options.logger.warn(
          {
            request_id: state?.id,
            policy,
            route,
            key_id: state?.keyId,
            ip: state?.keyId ? undefined : state?.ip,
            retry_after_s: decision.resetS,
          },
          'rate limit exceeded',
        )
        throw new RateLimitedError(policy, decision.resetS, headers)
      },
    }),
  })
