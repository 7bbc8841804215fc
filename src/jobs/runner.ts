import { randomUUID } from 'node:crypto'
import type { Logger } from '../logger'
import type { Job, Queue } from './queue'
import { classifyFailure } from './retry'

/** Does a job's work; must stop promptly when `signal` aborts. */
export type Executor = (job: Job, signal: AbortSignal) => Promise<unknown>

export interface RunnerOptions {
  queue: Queue
  execute: Executor
  logger: Logger
  concurrency: number
  pollMs: number
  leaseMs: number
  retentionMs: number
  /** Identifies this runner in `lease_owner`; defaults to a fresh id. */
  owner?: string
  /** Called when a job leaves the runner, with its new status (metrics, tests). */
  onSettled?: (job: Job, status: string) => void
}

const PURGE_EVERY_MS = 3_600_000

/**
 * Claims and runs jobs until stopped. In-process by default; `bun run runner` runs the same code alone.
 * @example const runner = createRunner({ queue, execute, logger, concurrency: 2, pollMs: 500, leaseMs: 30000, retentionMs: 604_800_000 }); runner.start()
 */
export function createRunner(options: RunnerOptions) {
  const { queue, execute, logger, concurrency, pollMs, leaseMs, retentionMs, onSettled } = options
  const owner = options.owner ?? `runner-${randomUUID()}`
  const active = new Map<string, { controller: AbortController; done: Promise<void> }>()
  let stopping = false
  let loopDone: Promise<void> | undefined
  let wake: (() => void) | undefined
  let lastPurge = 0

  function sleep(ms: number) {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms)
      wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }

  async function settle(job: Job, status: string | null) {
    if (status) onSettled?.(job, status)
  }

  async function run(job: Job, controller: AbortController) {
    const log = logger.child({ job_id: job.id, attempt: job.attempts })
    const renewal = setInterval(
      () => {
        queue
          .renew(job.id, owner)
          .then((ours) => {
            if (!ours) controller.abort(new Error('job cancelled or lease lost'))
          })
          .catch((error) => log.warn({ err: error }, 'lease renewal failed; will retry'))
      },
      Math.max(100, leaseMs / 3),
    )
    try {
      if (job.attempts > job.maxAttempts) throw new Error('lease expired on every attempt (the instance running it kept dying)')
      const result = await execute(job, controller.signal)
      if (controller.signal.aborted) throw controller.signal.reason
      await settle(job, (await queue.complete(job.id, owner, result)) ? 'succeeded' : null)
    } catch (error) {
      if (stopping && controller.signal.aborted) {
        await queue.release(job.id, owner).catch((e) => log.error({ err: e }, 'could not hand the job back; its lease will expire'))
        return
      }
      if (controller.signal.aborted) {
        await settle(job, (await queue.status(job.id).catch(() => null)) ?? null)
        return
      }
      const failure = classifyFailure(error)
      const status = await queue.fail(job, owner, failure).catch((e) => {
        log.error({ err: e }, 'could not record the failure; the job will be reclaimed when its lease expires')
        return null
      })
      log.warn({ code: failure.code, transient: failure.transient, status }, 'job attempt failed')
      await settle(job, status)
    } finally {
      clearInterval(renewal)
      active.delete(job.id)
      wake?.()
    }
  }

  async function loop() {
    while (!stopping) {
      if (Date.now() - lastPurge > PURGE_EVERY_MS) {
        lastPurge = Date.now()
        queue
          .purge(retentionMs)
          .then((n) => n && logger.info({ purged: n }, 'purged finished jobs past retention'))
          .catch((error) => logger.warn({ err: error }, 'job purge failed'))
      }
      const free = concurrency - active.size
      let claimed: Job[] = []
      if (free > 0) {
        try {
          claimed = await queue.claim(owner, free)
        } catch (error) {
          logger.warn({ err: error }, 'job claim failed; retrying after the poll interval')
        }
      }
      if (stopping) {
        // Claimed while stop() was called: give them straight back.
        await Promise.all(claimed.map((job) => queue.release(job.id, owner).catch(() => {})))
        break
      }
      for (const job of claimed) {
        const entry = { controller: new AbortController(), done: Promise.resolve() }
        active.set(job.id, entry)
        entry.done = run(job, entry.controller)
      }
      if (claimed.length === 0 || active.size >= concurrency) await sleep(pollMs)
    }
  }

  return {
    owner,
    get active() {
      return active.size
    },
    start() {
      if (concurrency > 0 && !loopDone) loopDone = loop()
    },
    /** Look for work now instead of at the next poll (a job was just submitted here). */
    kick() {
      wake?.()
    },
    /** Stop a job this runner is running (it was cancelled); other instances notice at their next lease renewal. */
    abort(id: string) {
      active.get(id)?.controller.abort(new Error('job cancelled'))
    },
    /** Stop claiming, hand running jobs back to the queue, and wait for them to settle. */
    async stop() {
      stopping = true
      wake?.()
      for (const { controller } of active.values()) controller.abort(new Error('runner stopping'))
      await loopDone
      await Promise.all([...active.values()].map((a) => a.done))
    },
  }
}

export type Runner = ReturnType<typeof createRunner>
