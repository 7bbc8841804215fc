import type { Config } from './config'
import { type Database, openDatabase } from './db/client'
import { createLogger, type Logger } from './logger'
import type { ReadinessCheck } from './modules/health/service'

/** Everything the app needs from the outside world, built once per process and passed to `createApp`. */
export interface Deps {
  config: Config
  logger: Logger
  database: Database
  lifecycle: { shuttingDown: boolean }
  checks: ReadinessCheck[]
  /** Releases what `createDeps` opened, in reverse order. */
  close(): Promise<void>
}

export interface CreateDepsOptions {
  logger?: Logger
  /** PGlite only: keep data in memory (tests). */
  inMemory?: boolean
}

/**
 * Open the database (migrations applied) and the other long-lived services.
 * @example const deps = await createDeps(loadConfig())
 */
export async function createDeps(config: Config, options: CreateDepsOptions = {}): Promise<Deps> {
  const logger = options.logger ?? createLogger(config)
  const database = await openDatabase({ ...config, inMemory: options.inMemory })
  try {
    await database.migrate()
  } catch (error) {
    await database.close()
    throw error
  }
  logger.info({ database: database.kind }, 'database ready')
  return {
    config,
    logger,
    database,
    lifecycle: { shuttingDown: false },
    checks: [],
    async close() {
      await database.close()
    },
  }
}
