/**
 * A job runner in its own process, for the multi-instance tests. It records each job it completes
 * by appending the job id to RUNNER_LOG, so the test can prove every job ran exactly once.
 */
import { appendFileSync } from 'node:fs'
import { loadConfig } from '../../src/config'
import { openDatabase } from '../../src/db/client'
import { createQueue } from '../../src/jobs/queue'
import { createRunner } from '../../src/jobs/runner'
import { createLogger } from '../../src/logger'

const config = loadConfig()
const database = await openDatabase(config)
const logger = createLogger({ ...config, LOG_LEVEL: 'warn' })
const queue = createQueue({
  db: database.db,
  leaseMs: config.JOBS_LEASE_MS,
  backoff: { baseMs: 50, maxMs: 500 },
  idempotencyTtlMs: 86_400_000,
})
const log = process.env.RUNNER_LOG!
const runner = createRunner({
  queue,
  logger,
  concurrency: config.JOBS_CONCURRENCY,
  pollMs: 20,
  leaseMs: config.JOBS_LEASE_MS,
  retentionMs: 604_800_000,
  async execute(job, signal) {
    if ((job.parameters as { hang?: boolean }).hang && !process.env.RUNNER_NO_HANG) {
      appendFileSync(`${log}.started`, `${job.id}\n`)
      await new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
    }
    await Bun.sleep(1)
    appendFileSync(log, `${job.id}\n`)
    return { by: process.pid }
  },
})
runner.start()
console.log('runner ready')
process.on('SIGTERM', async () => {
  await runner.stop()
  await database.close()
  process.exit(0)
})
