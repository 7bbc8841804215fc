import { type Config, ConfigError, loadConfig } from './config'
import { createDeps, type Deps } from './deps'
import { flushLogger } from './logger'

/**
 * What every entry point (Bun server, Deno server, job runner) does first: read the configuration
 * and open the dependencies, or stop the process with a message a person can act on (exit 1).
 * `refuse` lets an entry point turn down a configuration it cannot work with before anything opens.
 * @example const deps = await boot()
 */
export async function boot(refuse?: (config: Config) => string | undefined): Promise<Deps> {
  let config: Config
  try {
    config = loadConfig()
  } catch (error) {
    console.error(error instanceof ConfigError ? error.message : error)
    process.exit(1)
  }
  const reason = refuse?.(config)
  if (reason) {
    console.error(reason)
    process.exit(1)
  }
  return createDeps(config).catch((error: Error) => {
    console.error(`vireo could not start: ${error.message}`)
    process.exit(1)
  })
}

/** Close the dependencies, write out the last log lines and exit 0: the end of every graceful stop. */
export async function finish(deps: Deps): Promise<never> {
  // Once the server and pools are closed nothing may keep the event loop alive, and the runtime would exit
  // (with 0) in the middle of closing, before the last log lines are written: hold it open until we exit.
  setInterval(() => {}, 1000)
  await deps.close()
  deps.logger.info('shutdown complete')
  await flushLogger(deps.logger)
  process.exit(0)
}

export interface ShutdownOptions {
  /** Stop accepting connections; resolves once the requests in flight have finished. */
  drain: () => Promise<unknown>
  /** Close whatever is still open when the grace period is over. */
  force?: () => Promise<unknown>
}

/**
 * The graceful stop both servers share: readiness turns 503, in-flight requests get SHUTDOWN_GRACE_MS,
 * then the dependencies close and the process exits 0. Returns the handler to register for SIGTERM/SIGINT.
 * @example process.on('SIGTERM', gracefulShutdown(deps, { drain: () => server.stop(false) }))
 */
export function gracefulShutdown(deps: Deps, options: ShutdownOptions): (signal: string) => Promise<void> {
  const { config, logger } = deps
  let stopping = false
  return async function shutdown(signal: string) {
    if (stopping) return
    stopping = true
    deps.lifecycle.shuttingDown = true
    logger.info({ signal, grace_ms: config.SHUTDOWN_GRACE_MS }, 'shutting down')
    const grace = new Promise<'timeout'>((resolve) => setTimeout(resolve, config.SHUTDOWN_GRACE_MS, 'timeout'))
    const drained = await Promise.race([options.drain().then(() => 'drained' as const), grace])
    if (drained === 'timeout') {
      logger.warn('grace period over; closing remaining connections')
      await options.force?.()
    }
    await finish(deps)
  }
}
