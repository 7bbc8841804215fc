/**
 * A server for the benchmarks, run as a child process so it never shares a thread with the load
 * generator: `bun bench/server.ts <variant>`, configured by the environment like `bun run start`.
 * Prints `listening <url>` once ready.
 *
 *   bare               Bun.serve answering BENCH_BODY with the app's constant headers, nothing else
 *   app                the real createApp(deps)
 *   full               the plugins of src/app.ts composed here with a models route, all on
 *   no-<plugin>        the same with one plugin left out (names in PLUGINS)
 *   no-response-check  the same with the route's `response` schema left out (Elysia checks none)
 *   encode-response    the same with Elysia's default `encodeSchema: true` (TypeBox Encode of every answer)
 *   route-only         the same route with every plugin left out
 *   ws-bare            a Bun.serve WebSocket at the stream's path answering like it (ready, one probability event per
 *                      512-sample s16 frame) and doing nothing else: the floor of the realtime stream figures
 */
import { Elysia } from 'elysia'
import { createApp } from '../src/app'
import { loadConfig } from '../src/config'
import { createDeps, type Deps } from '../src/deps'
import { EnvelopeSchema, ok, responses } from '../src/envelope'
import { ModelInfoSchema } from '../src/inference/registry'
import { createLogger, logDestination } from '../src/logger'
import { ModelsModel } from '../src/modules/models/model'
import { auth } from '../src/plugins/auth'
import { bodyParser } from '../src/plugins/body-parser'
import { corsPolicy } from '../src/plugins/cors'
import { errorHandler } from '../src/plugins/error-handler'
import { rateLimit } from '../src/plugins/rate-limit'
import { requestId } from '../src/plugins/request-id'
import { securityHeaders } from '../src/plugins/security-headers'
import { API_PREFIX, versioning } from '../src/plugins/versioning'
import { PLUGINS, type PluginName } from './lib'

/** `GET /api/v1/models/:name` as src/modules/models serves it, its guards switchable. */
function modelsRoute(deps: Deps, guarded: { auth: boolean; rateLimit: boolean; responseCheck: boolean }) {
  const { registry, keys, limiter, logger } = deps
  // Registering a macro costs nothing per request; only the route options below switch the guards on.
  return new Elysia({ name: 'bench.models', prefix: `${API_PREFIX}/models`, normalize: false })
    .use(auth({ keys, limiter }))
    .use(rateLimit({ limiter, logger }))
    .get('/:name', ({ params }) => ok(registry.get(params.name)), {
      ...(guarded.auth ? { auth: 'inference' as const } : {}),
      ...(guarded.rateLimit ? { rateLimit: 'inference' as const } : {}),
      params: ModelsModel.params,
      ...(guarded.responseCheck ? { response: responses({ 200: EnvelopeSchema(ModelInfoSchema) }, 401, 403, 404) } : {}),
    })
}

/** src/app.ts's plugin chain, in its order, less the plugins in `off`. */
function composeApp(deps: Deps, off: PluginName[], route = { responseCheck: true, encodeSchema: false }) {
  const { config, logger } = deps
  const on = (name: PluginName) => !off.includes(name)
  const none = (name: string) => new Elysia({ name: `bench.without-${name}` })
  const app: Elysia = new Elysia({ name: 'vireo', normalize: false, encodeSchema: route.encodeSchema })
  return (
    app
      // As in src/app.ts, the request-id plugin's after-response hook writes the access line and feeds the metrics.
      .use(
        on('requestId')
          ? requestId({
              logger,
              trustProxy: config.TRUST_PROXY,
              onResponse: deps.metrics.observeRequest,
              peer: (request) => app.server?.requestIP(request)?.address,
            })
          : none('requestId'),
      )
      .use(
        on('securityHeaders')
          ? securityHeaders({ hstsMaxAgeMs: config.HSTS_MAX_AGE_MS, production: config.NODE_ENV === 'production' })
          : none('securityHeaders'),
      )
      .use(on('corsPolicy') ? corsPolicy(config.CORS_ORIGINS) : none('corsPolicy'))
      .use(on('errorHandler') ? errorHandler({ logger, routes: () => app.routes }) : none('errorHandler'))
      .use(on('versioning') ? versioning() : none('versioning'))
      .use(
        on('bodyParser')
          ? bodyParser({ maxJsonBytes: config.MAX_JSON_BYTES, maxUploadBytes: config.MAX_UPLOAD_BYTES })
          : none('bodyParser'),
      )
      .use(modelsRoute(deps, { auth: on('auth'), rateLimit: on('rateLimit'), responseCheck: route.responseCheck }))
  )
}

const variant = process.argv[2] ?? 'app'

if (variant === 'bare') {
  const body = process.env.BENCH_BODY ?? '{}'
  // The app's answer headers (security, version, rate limit, content type), with a fresh request id as the app sends.
  const headers: Record<string, string> = JSON.parse(process.env.BENCH_HEADERS ?? '{"content-type":"application/json"}')
  const server = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    async fetch(request) {
      // A request body is read in full, as any server must before answering.
      if (request.body) await request.arrayBuffer()
      return new Response(body, { headers: { ...headers, 'x-request-id': crypto.randomUUID() } })
    },
  })
  console.log(`listening ${server.url.href}`)
} else if (variant === 'ws-bare') {
  const frames = new WeakMap<object, number>()
  const server = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    fetch: (request, bun) => (bun.upgrade(request, { data: undefined }) ? undefined : new Response('upgrade', { status: 426 })),
    websocket: {
      message(ws, message) {
        if (typeof message === 'string') return void ws.send('{"type":"ready","mode":"model"}')
        const first = frames.get(ws) ?? 0
        const count = Math.floor(message.byteLength / 1024)
        frames.set(ws, first + count)
        for (let k = first; k < first + count; k++)
          ws.send(JSON.stringify({ type: 'probability', t_s: (k * 512) / 16000, probability: 0.5 }))
      },
    },
  })
  console.log(`listening ${server.url.href}`)
} else {
  const routeVariants = ['no-response-check', 'encode-response']
  const without = variant.startsWith('no-') && !routeVariants.includes(variant) ? (variant.slice(3) as PluginName) : undefined
  if (!['app', 'full', 'route-only', ...routeVariants].includes(variant) && !(without && PLUGINS.includes(without)))
    throw new Error(
      `unknown variant "${variant}"; use bare, app, full, route-only, ${routeVariants.join(', ')} or no-<${PLUGINS.join('|')}>`,
    )
  const config = loadConfig()
  // A real sink, written the way production writes stdout (logDestination: buffered, async).
  const logger = createLogger(config, { destination: logDestination('/dev/null') })
  const deps = await createDeps(config, { logger, inMemory: true })
  const route = { responseCheck: variant !== 'no-response-check', encodeSchema: variant === 'encode-response' }
  const app =
    variant === 'app' ? createApp(deps) : composeApp(deps, variant === 'route-only' ? [...PLUGINS] : without ? [without] : [], route)
  app.listen({ hostname: config.HOST, port: config.PORT })
  process.on('SIGTERM', async () => {
    await app.stop()
    await deps.close()
    process.exit(0)
  })
  console.log(`listening ${app.server!.url.href}`)
}
