import { Redis } from 'ioredis'
import type { Config } from './config'
import { type Database, openDatabase } from './db/client'
import { configuredBackendOrder, createRegistry, type Registry } from './inference/registry'
import { createInferenceStatistics, type InferenceStatistics, withStatistics } from './inference/statistics'
import { executeJob } from './jobs/execute'
import { createQueue, type Queue } from './jobs/queue'
import { createRunner, type Executor, type Runner } from './jobs/runner'
import { createKeyService, type KeyService } from './keys/service'
import { createLogger, type Logger } from './logger'
import { createMetrics, type Metrics } from './metrics/service'
import { modelsCheck, type ReadinessCheck } from './modules/health/service'
import { createJobService, type JobService } from './modules/jobs/service'
import { createRateLimiter, type RateLimiter } from './rate-limit/limiter'

/** Everything the app needs from the outside world, built once per process and passed to `createApp`. */
export interface Deps {
  config: Config
  logger: Logger
  database: Database
  /** Prometheus metrics of this process (served at /metrics). */
  metrics: Metrics
  /** The one model registry of this process (and its worker pool). */
  registry: Registry
  /** Per-model inference counts and durations of this process (the OIP statistics extension). */
  statistics: InferenceStatistics
  keys: KeyService
  limiter: RateLimiter
  queue: Queue
  /** The in-process job runner (started by the entry point; idle when JOBS_CONCURRENCY is 0). */
  runner: Runner
  jobs: JobService
  lifecycle: { shuttingDown: boolean }
  checks: ReadinessCheck[]
  /** Releases what `createDeps` opened, in reverse order. */
  close(): Promise<void>
}

export interface CreateDepsOptions {
  logger?: Logger
  /** PGlite only: keep data in memory (tests). */
  inMemory?: boolean
  /** What runs a job; the default dispatches to the inference engine. */
  execute?: Executor
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
  // Collectors read live values at scrape time, so they may name what is created just below.
  const metrics = createMetrics({
    collect: {
      queueDepth: () => registry.pool.stats().queueDepth,
      workers: () => registry.pool.stats().workers,
      abandonedWorkers: () => registry.pool.stats().abandoned,
      overruns: () => registry.pool.stats(),
      handoffs: () => registry.pool.stats().handoffs,
      ...(database.pacer ? { pacedCollections: () => database.pacer!.collections } : {}),
      models: () => registry.list(),
      jobs: () => queue.counts(),
    },
  })
  const statistics = createInferenceStatistics()
  const registry = withStatistics(
    createRegistry({
      config,
      logger: logger.child({ component: 'inference' }),
      onRun: metrics.observeRun,
      onBatch: metrics.observeBatch,
      backendOrder: configuredBackendOrder(config.INFERENCE_BACKENDS),
    }),
    statistics,
  )
  try {
    await registry.start()
  } catch (error) {
    await registry.stop()
    await database.close()
    throw error
  }
  const keys = createKeyService({ db: database.db, cacheTtlMs: config.AUTH_CACHE_TTL_MS })
  await bootstrapKeys(config, keys, logger)
  const redis = config.REDIS_URL ? await connectRedis(config.REDIS_URL, logger) : undefined
  const limiter = metrics.countRejections(createRateLimiter({ rules: config.RATE_LIMITS, logger, redis }))
  const queue = createQueue({
    db: database.db,
    leaseMs: config.JOBS_LEASE_MS,
    backoff: { baseMs: config.JOBS_BACKOFF_BASE_MS, maxMs: config.JOBS_BACKOFF_MAX_MS },
    idempotencyTtlMs: config.JOBS_IDEMPOTENCY_TTL_MS,
  })
  const runner = createRunner({
    queue,
    execute: options.execute ?? ((job, signal) => executeJob(registry, job, signal)),
    logger: logger.child({ component: 'jobs' }),
    concurrency: config.JOBS_CONCURRENCY,
    pollMs: config.JOBS_POLL_MS,
    leaseMs: config.JOBS_LEASE_MS,
    retentionMs: config.JOBS_RETENTION_MS,
  })
  const jobs = createJobService({ queue, runner, defaultMaxAttempts: config.JOBS_MAX_ATTEMPTS })
  return {
    config,
    logger,
    database,
    metrics,
    registry,
    statistics,
    keys,
    limiter,
    queue,
    runner,
    jobs,
    lifecycle: { shuttingDown: false },
    checks: [() => modelsCheck(registry, config.MODELS_REQUIRED)],
    async close() {
      await runner.stop()
      await registry.stop()
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

/**
 * Connect before serving, so the first requests already share counters; if Redis is unreachable the
 * limiter's in-memory insurance takes over (and the failure is logged) until it comes back.
 */
async function connectRedis(url: string, logger: Logger): Promise<Redis> {
  const redis = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2000 })
  const ready = new Promise<boolean>((resolve) => {
    redis.once('ready', () => resolve(true))
    setTimeout(resolve, 2000, false)
  })
  if (!(await ready)) logger.error('redis not reachable at start-up; rate limits are per instance until it is')
  return redis
}
