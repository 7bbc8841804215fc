import { Elysia, t } from 'elysia'
import pkg from '../../../package.json' with { type: 'json' }
import { EnvelopeSchema, ok, responses } from '../../envelope'
import type { Logger } from '../../logger'
import { type RateLimiter, rateLimit } from '../../plugins/rate-limit'
import { API_PREFIX, API_VERSION } from '../../plugins/versioning'

const Meta = t.Object({ name: t.String(), version: t.String(), api_version: t.String(), links: t.Record(t.String(), t.String()) })

/** `GET /`: what this service is and where to go next. */
export const metaModule = (options: { limiter: RateLimiter; logger: Logger }) =>
  new Elysia({ name: 'vireo.module.meta' }).use(rateLimit(options)).get(
    '/',
    function root() {
      return ok({
        name: 'vireo',
        version: pkg.version,
        api_version: API_VERSION,
        links: {
          docs: `${API_PREFIX}/docs`,
          openapi: `${API_PREFIX}/docs/json`,
          live: `${API_PREFIX}/health/live`,
          ready: `${API_PREFIX}/health/ready`,
          models: `${API_PREFIX}/models`,
        },
      })
    },
    {
      rateLimit: 'public',
      detail: { tags: ['meta'], summary: 'Service name, version and links', security: [] },
      response: responses({ 200: EnvelopeSchema(Meta) }),
    },
  )
