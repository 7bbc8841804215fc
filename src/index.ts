import { createApp } from './app'
import { boot, gracefulShutdown } from './boot'

/** Bun entry point: config → deps → app → listen; SIGTERM/SIGINT → graceful shutdown. */
const deps = await boot()
const { config, logger } = deps
const app = createApp(deps)
app.listen({
  hostname: config.HOST,
  port: config.PORT,
  // A safety net above the app's own limits, which answer 413 in the envelope first.
  maxRequestBodySize: Math.max(config.MAX_JSON_BYTES, config.MAX_UPLOAD_BYTES) * 2,
})
const server = app.server!
deps.runner.start()
logger.info({ url: server.url.href, env: config.NODE_ENV }, 'vireo listening')

const shutdown = gracefulShutdown(deps, { drain: () => server.stop(false), force: () => server.stop(true) })
process.on('SIGTERM', () => void shutdown('SIGTERM'))
process.on('SIGINT', () => void shutdown('SIGINT'))
