import { Elysia, t } from 'elysia'
import { EnvelopeSchema, ok, responses } from '../../envelope'
import { ServiceUnavailableError } from '../../errors'
import type { Logger } from '../../logger'
import { type RateLimiter, rateLimit } from '../../plugins/rate-limit'
import { API_PREFIX } from '../../plugins/versioning'
import { type HealthDeps, readiness } from './service'

const Check = t.Object({
  name: t.String(),
  status: t.Union([t.Literal('ok'), t.Literal('degraded'), t.Literal('fail')]),
  detail: t.Optional(t.Unknown()),
})
const Ready = t.Object({ status: t.Union([t.Literal('ready'), t.Literal('degraded')]), checks: t.Array(Check) })

/** Liveness (never touches the database) and readiness (database, models, shutdown). */
export const healthModule = (deps: HealthDeps & { limiter: RateLimiter; logger: Logger }) =>
  new Elysia({ name: 'vireo.module.health', prefix: `${API_PREFIX}/health`, detail: { tags: ['meta'] } })
    .use(rateLimit(deps))
    .get(
      '/live',
      function live() {
        return ok({ status: 'alive' as const, uptime_s: Math.round(process.uptime()) })
      },
      {
        rateLimit: 'public',
        detail: { summary: 'Liveness: the process answers', security: [] },
        response: responses({ 200: EnvelopeSchema(t.Object({ status: t.Literal('alive'), uptime_s: t.Integer() })) }),
      },
    )
    .get(
      '/ready',
      async function ready() {
        const report = await readiness(deps)
        if (report.status === 'unavailable') throw new ServiceUnavailableError('vireo is not ready to serve', 5, { checks: report.checks })
        return ok({ status: report.status, checks: report.checks })
      },
      {
        rateLimit: 'public',
        detail: { summary: 'Readiness: database reachable, models loaded, not shutting down', security: [] },
        response: responses({ 200: EnvelopeSchema(Ready) }, 503),
      },
    )
