import { Elysia } from 'elysia'
import pkg from '../package.json' with { type: 'json' }
import type { Deps } from './deps'
import { audioModule } from './modules/audio'
import { healthModule } from './modules/health'
import { jobsModule } from './modules/jobs'
import { keysModule } from './modules/keys'
import { metaModule } from './modules/meta'
import { modelsModule } from './modules/models'
import { repositoryModule } from './modules/repository'
import { authBeforeBody } from './plugins/auth'
import { bodyParser } from './plugins/body-parser'
import { corsPolicy } from './plugins/cors'
import { docs } from './plugins/docs'
import { errorHandler } from './plugins/error-handler'
import { requestLogger } from './plugins/logger'
import { metricsRoute } from './plugins/metrics'
import { requestId } from './plugins/request-id'
import { routeLookup } from './plugins/route-lookup'
import { securityHeaders } from './plugins/security-headers'
import { versioning } from './plugins/versioning'

/**
 * Compose vireo from its plugins (cross-cutting, in order) and feature modules.
 * @example const app = createApp(deps); const res = await app.handle(new Request('http://x/api/v1/health/live'))
 */
export function createApp(deps: Deps) {
  const { config, logger, limiter } = deps
  // normalize: false makes `additionalProperties: false` reject unknown fields instead of silently dropping them.
  const app: Elysia = new Elysia({ name: 'vireo', normalize: false })
  const findRoute = routeLookup(() => app.routes)
  return (
    app
      .use(requestId({ logger, trustProxy: config.TRUST_PROXY }))
      .use(securityHeaders({ hstsMaxAge: config.HSTS_MAX_AGE, production: config.NODE_ENV === 'production' }))
      .use(corsPolicy(config.CORS_ORIGINS))
      .use(errorHandler({ logger, routes: () => app.routes }))
      .use(requestLogger({ logger, onResponse: deps.metrics.observeRequest }))
      .use(versioning())
      // Who is calling is settled from the headers before the body parser reads a byte.
      .use(authBeforeBody({ keys: deps.keys, limiter, findRoute }))
      .use(bodyParser({ maxJsonBytes: config.MAX_JSON_BYTES, maxUploadBytes: config.MAX_UPLOAD_BYTES, findRoute }))
      .use(docs({ version: pkg.version }))
      .use(metaModule({ limiter, logger }))
      .use(metricsRoute({ metrics: deps.metrics, keys: deps.keys, token: config.METRICS_TOKEN, limiter, logger }))
      .use(
        healthModule({
          database: deps.database,
          dbTimeoutMs: config.HEALTH_DB_TIMEOUT_MS,
          lifecycle: deps.lifecycle,
          checks: deps.checks,
          limiter,
          logger,
        }),
      )
      .use(keysModule({ keys: deps.keys, limiter, logger }))
      .use(
        modelsModule({ registry: deps.registry, jobs: deps.jobs, keys: deps.keys, limiter, logger, maxBatch: config.INFERENCE_MAX_BATCH }),
      )
      .use(audioModule({ registry: deps.registry, jobs: deps.jobs, keys: deps.keys, limiter, logger, config }))
      .use(jobsModule({ jobs: deps.jobs, keys: deps.keys, limiter, logger, validateInfer: deps.registry.check }))
      .use(repositoryModule({ registry: deps.registry, keys: deps.keys, limiter, logger }))
  )
}

export type App = ReturnType<typeof createApp>
