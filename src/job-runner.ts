import { boot, finish } from './boot'

/**
 * `bun run runner`: the job runner alone, without HTTP. Same code and configuration as the
 * in-process runner; run several against one PostgreSQL to scale job throughput.
 */
const deps = await boot((config) =>
  config.JOBS_CONCURRENCY === 0 ? 'JOBS_CONCURRENCY is 0: this job runner would run nothing' : undefined,
)
deps.runner.start()
deps.logger.info({ concurrency: deps.config.JOBS_CONCURRENCY, owner: deps.runner.owner }, 'job runner running')

async function stop(signal: string) {
  deps.logger.info({ signal }, 'job runner stopping; running jobs go back to the queue')
  await finish(deps)
}
process.on('SIGTERM', () => void stop('SIGTERM'))
process.on('SIGINT', () => void stop('SIGINT'))
