import { Redis } from 'ioredis'
import type { Config } from './config'
import { type Database, openDatabase } from './db/client'
import { createLogger, type Logger } from './logger'
import type { ReadinessCheck } from './modules/health/service'
import { createKeyService, type KeyService } from './modules/keys/service'
import { createRateLimiter, type RateLimiter } from './plugins/rate-limit'

/** Everything the app needs from the outside world, built once per process and passed to `createApp`. */
export interface Deps {
  config: Config
  logger: Logger
  database: Database
  keys: KeyService
  limiter: RateLimiter
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
  const keys = createKeyService({ db: database.db, cacheTtlMs: config.AUTH_CACHE_TTL_MS })
  await bootstrapKeys(config, keys, logger)
  const redis = config.REDIS_URL
    ? new Redis(config.REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2000, lazyConnect: false })
    : undefined
  const limiter = createRateLimiter({ rules: config.RATE_LIMITS, logger, redis })
  return {
    config,
    logger,
    database,
    keys,
    limiter,
    lifecycle: { shuttingDown: false },
    checks: [],
    async close() {
      redis?.disconnect()
      await database.close()
    },
  }
}

/**
 * Make sure someone can get in: the operator's `ADMIN_API_KEY` exists; in development with no
 * keys at all, one admin key is generated and printed once so `bun run start` is usable at once.
 */
async function bootstrapKeys(config: Config, keys: KeyService, logger: Logger) {
  if (config.ADMIN_API_KEY) {
    const outcome = await keys.ensureOperatorKey(config.ADMIN_API_KEY)
    logger.info({ outcome }, 'ADMIN_API_KEY ensured')
  } else if (config.NODE_ENV === 'development' && (await keys.count()) === 0) {
    const created = await keys.create({ name: 'development admin', scopes: ['admin'] })
    console.log(
      `\n  vireo: no API keys existed, so one admin key was created (shown once):\n\n    ${created.key}\n\n  Use it as "Authorization: Bearer <key>".\n`,
    )
  }
}
