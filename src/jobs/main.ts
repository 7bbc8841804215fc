import { ConfigError, loadConfig } from '../config'
import { createDeps } from '../deps'
import { flushLogger } from '../logger'

/**
 * `bun run worker`: the job runner alone, without HTTP. Same code and configuration as the
 * in-process runner; run several against one PostgreSQL to scale job throughput.
 */
let config: ReturnType<typeof loadConfig>
try {
  config = loadConfig()
} catch (error) {
  console.error(error instanceof ConfigError ? error.message : error)
  process.exit(1)
}
if (config.JOBS_CONCURRENCY === 0) {
  console.error('JOBS_CONCURRENCY is 0: this worker would run nothing')
  process.exit(1)
}
const deps = await createDeps(config).catch((error: Error) => {
  console.error(`vireo worker could not start: ${error.message}`)
  process.exit(1)
})
deps.runner.start()
deps.logger.info({ concurrency: config.JOBS_CONCURRENCY, owner: deps.runner.owner }, 'job worker running')

async function stop(signal: string) {
  deps.logger.info({ signal }, 'job worker stopping; running jobs go back to the queue')
  await deps.close()
  await flushLogger(deps.logger)
  process.exit(0)
}
process.on('SIGTERM', () => void stop('SIGTERM'))
process.on('SIGINT', () => void stop('SIGINT'))
