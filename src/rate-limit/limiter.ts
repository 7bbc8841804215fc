import type { Redis } from 'ioredis'
import { type RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible'
import type { Config, RateLimitRule } from '../config'
import type { Logger } from '../logger'

export type Policy = keyof Config['RATE_LIMITS']

export interface Decision {
  policy: Policy
  allowed: boolean
  limit: number
  windowS: number
  remaining: number
  /** Seconds until the window resets (and, when refused, until a request is allowed again). */
  resetS: number
}

/** `RateLimit-Policy` and `RateLimit` (IETF httpapi draft, structured-field form) for one decision. */
export function rateLimitHeaders(d: Decision): Record<string, string> {
  return {
    'ratelimit-policy': `"${d.policy}";q=${d.limit};w=${d.windowS}`,
    ratelimit: `"${d.policy}";r=${d.remaining};t=${d.resetS}`,
  }
}

/** Turn the limiter's answer into a decision; pure, so the arithmetic is tested without a store. */
export function decide(policy: Policy, rule: RateLimitRule, res: RateLimiterRes, allowed: boolean): Decision {
  return {
    policy,
    allowed,
    limit: rule.points,
    windowS: rule.durationS,
    remaining: Math.max(0, res.remainingPoints),
    resetS: Math.max(1, Math.ceil(res.msBeforeNext / 1000)),
  }
}

export interface RateLimiterOptions {
  rules: Config['RATE_LIMITS']
  logger: Logger
  /** When set, counters live in Redis and are shared by every instance; an in-memory limiter insures against outages. */
  redis?: Redis
}

export interface RateLimiter {
  consume(policy: Policy, subject: string): Promise<Decision>
  /** The subject's standing without spending a point; refused when its points are spent. */
  peek(policy: Policy, subject: string): Promise<Decision>
}

/**
 * Per-policy limiters built on rate-limiter-flexible. With Redis, each has an in-memory insurance
 * limiter: if Redis fails, limits still hold (per instance) and the failure is logged — never unlimited.
 * @example const limiter = createRateLimiter({ rules: config.RATE_LIMITS, logger, redis })
 */
export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const { rules, logger, redis } = options
  const limiters = new Map<Policy, RateLimiterAbstract>()
  for (const policy of Object.keys(rules) as Policy[]) {
    const { points, durationS } = rules[policy]
    const keyPrefix = `vireo:rl:${policy}`
    const memory = new RateLimiterMemory({ points, duration: durationS, keyPrefix })
    limiters.set(
      policy,
      redis
        ? new RateLimiterRedis({
            storeClient: redis,
            points,
            duration: durationS,
            keyPrefix,
            insuranceLimiter: memory,
            rejectIfRedisNotReady: true,
          })
        : memory,
    )
  }
  if (redis) {
    let healthy = true
    redis.on('error', function redisFailed(error: Error) {
      if (!healthy) return
      healthy = false
      logger.error({ err: error }, 'redis unavailable: rate limits now enforced per instance by the in-memory insurance limiter')
    })
    redis.on('ready', function redisBack() {
      if (healthy) return
      healthy = true
      logger.info('redis reachable again: rate limits shared across instances')
    })
  }
  return {
    async consume(policy, subject) {
      const limiter = limiters.get(policy)!
      try {
        return decide(policy, rules[policy], await limiter.consume(subject), true)
      } catch (result) {
        if (result instanceof RateLimiterRes) return decide(policy, rules[policy], result, false)
        throw result
      }
    },
    async peek(policy, subject) {
      const rule = rules[policy]
      const res =
        (await limiters
          .get(policy)!
          .get(subject)
          .catch(() => null)) ?? new RateLimiterRes(rule.points, 0, 0)
      return decide(policy, rule, res, res.consumedPoints < rule.points)
    },
  }
}
