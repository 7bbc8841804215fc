import { type Config, ConfigError, loadConfig } from './config'
import { createDeps, type Deps } from './deps'
import { flushLogger } from './logger'

/**
 * What every entry point (Bun server, Deno server, job worker) does first: read the configuration
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
  await deps.close()
  deps.logger.info('shutdown complete')
  await flushLogger(deps.logger)
  process.exit(0)
}
