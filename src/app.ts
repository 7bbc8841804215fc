import { Elysia } from 'elysia'
import pkg from '../package.json' with { type: 'json' }
import type { Deps } from './deps'
import { audioModule } from './modules/audio'
import type { UpgradeWebSocket } from './modules/audio/sessions'
import { healthModule } from './modules/health'
import { jobsModule } from './modules/jobs'
import { keysModule } from './modules/keys'
import { metaModule } from './modules/meta'
import { modelsModule } from './modules/models'
import { oipModule } from './modules/oip'
import { repositoryModule } from './modules/repository'
import { authBeforeBody } from './plugins/auth'
import { bodyParser } from './plugins/body-parser'
import { corsPolicy } from './plugins/cors'
import { docs } from './plugins/docs'
import { errorHandler } from './plugins/error-handler'
import { metricsRoute } from './plugins/metrics-route'
import { requestId } from './plugins/request-id'
import { routeLookup } from './plugins/route-lookup'
import { securityHeaders } from './plugins/security-headers'
import { versioning } from './plugins/versioning'

export interface AppOptions {
  /** What upgrades the realtime stream where Elysia's `.ws()` cannot (the Deno entry point passes it). */
  upgradeWebSocket?: UpgradeWebSocket
}

/**
 * Compose vireo from its plugins (cross-cutting, in order) and feature modules.
 * @example const app = createApp(deps); const res = await app.handle(new Request('http://x/api/v1/health/live'))
 */
export function createApp(deps: Deps, options: AppOptions = {}) {
  const { config, logger, limiter } = deps
  // normalize: false makes `additionalProperties: false` reject unknown fields instead of silently dropping them.
  // encodeSchema: false checks each answer against its response schema with the compiled validator; vireo's response
  // schemas hold no transform worth encoding, only Elysia's t.Integer (string-or-integer), whose TypeBox Encode
  // walked every answer uncompiled: a quarter of the server's time on GET /models/:name (bench/stack.ts).
  // standardHostname: false finds the path after any host. Elysia's default skips 11 characters first ("http://a.bc"),
  // so a URL whose host is shorter ("http://ml/…": a Kubernetes service named `ml`, as Deno.serve builds it from the
  // Host header) was routed on the wrong path and every route answered 404 or 405.
  const app: Elysia = new Elysia({ name: 'vireo', normalize: false, encodeSchema: false, handler: { standardHostname: false } })
  const findRoute = routeLookup(() => app.routes)
  return (
    app
      .use(
        requestId({
          logger,
          trustProxy: config.TRUST_PROXY,
          onResponse: deps.metrics.observeRequest,
          peer: (request) => app.server?.requestIP(request)?.address,
        }),
      )
      .use(securityHeaders({ hstsMaxAgeMs: config.HSTS_MAX_AGE_MS, production: config.NODE_ENV === 'production' }))
      .use(corsPolicy(config.CORS_ORIGINS))
      .use(errorHandler({ logger, routes: () => app.routes }))
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
      .use(
        audioModule({
          registry: deps.registry,
          jobs: deps.jobs,
          keys: deps.keys,
          limiter,
          logger,
          config,
          upgradeWebSocket: options.upgradeWebSocket,
        }),
      )
      .use(jobsModule({ jobs: deps.jobs, keys: deps.keys, limiter, logger, validateInfer: deps.registry.check }))
      .use(
        oipModule({
          registry: deps.registry,
          statistics: deps.statistics,
          keys: deps.keys,
          limiter,
          logger,
          health: { database: deps.database, dbTimeoutMs: config.HEALTH_DB_TIMEOUT_MS, lifecycle: deps.lifecycle, checks: deps.checks },
          maxUploadBytes: config.MAX_UPLOAD_BYTES,
        }),
      )
      .use(repositoryModule({ registry: deps.registry, keys: deps.keys, limiter, logger }))
  )
}

export type App = ReturnType<typeof createApp>
