import { createApp } from './app'
import { boot, finish } from './boot'

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

let stopping = false
async function shutdown(signal: string) {
  if (stopping) return
  stopping = true
  // Readiness answers 503 from here on; in-flight requests get SHUTDOWN_GRACE_MS to finish.
  deps.lifecycle.shuttingDown = true
  logger.info({ signal, grace_ms: config.SHUTDOWN_GRACE_MS }, 'shutting down')
  const grace = new Promise<'timeout'>((resolve) => setTimeout(resolve, config.SHUTDOWN_GRACE_MS, 'timeout'))
  const drained = await Promise.race([server.stop(false).then(() => 'drained' as const), grace])
  if (drained === 'timeout') {
    logger.warn('grace period over; closing remaining connections')
    await server.stop(true)
  }
  await finish(deps)
}
process.on('SIGTERM', () => void shutdown('SIGTERM'))
process.on('SIGINT', () => void shutdown('SIGINT'))
