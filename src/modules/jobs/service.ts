import type { Job, NewJob, Queue } from '../../jobs/queue'
import type { Runner } from '../../jobs/runner'
import type { Principal } from '../../keys/service'
import type { JobModel } from './model'

const iso = (d: Date | null) => (d ? d.toISOString() : null)

/** The public view of a job: never the input bytes, lease details or idempotency hash. */
export function toJobView(job: Job): JobModel.job {
  const view: JobModel.job = {
    id: job.id,
    task: job.task,
    status: job.status,
    model: job.model,
    attempts: job.attempts,
    max_attempts: job.maxAttempts,
    run_at: job.runAt.toISOString(),
    created_at: job.createdAt.toISOString(),
    started_at: iso(job.startedAt),
    finished_at: iso(job.finishedAt),
  }
  if (job.result !== null && job.result !== undefined) view.result = job.result
  if (job.error) view.error = job.error
  return view
}

export interface JobServiceOptions {
  queue: Queue
  /** The in-process runner, if any: woken on submit, told to stop a cancelled job at once. */
  runner?: Runner
  defaultMaxAttempts: number
}

/** Job operations as the routes need them, with ownership applied: admins see every job, others their own. */
export function createJobService({ queue, runner, defaultMaxAttempts }: JobServiceOptions) {
  const ownerFilter = (principal: Principal) => (principal.scopes.includes('admin') ? undefined : principal.id)
  return {
    async submit(
      principal: Principal,
      job: Omit<NewJob, 'ownerKeyId' | 'maxAttempts'> & { maxAttempts?: number },
      idempotencyKey?: string,
    ) {
      const outcome = await queue.submit(
        { ...job, ownerKeyId: principal.id, maxAttempts: job.maxAttempts ?? defaultMaxAttempts },
        idempotencyKey,
      )
      if (outcome.created) runner?.kick()
      return { job: toJobView(outcome.job), created: outcome.created }
    },
    get: async (principal: Principal, id: string) => toJobView(await queue.get(id, ownerFilter(principal))),
    async list(principal: Principal, query: JobModel.listQuery) {
      const page = await queue.list({
        ownerKeyId: ownerFilter(principal),
        status: query.status,
        model: query.model,
        limit: query.limit ?? 20,
        cursor: query.cursor,
      })
      return { items: page.items.map(toJobView), next_cursor: page.nextCursor }
    },
    async cancel(principal: Principal, id: string) {
      const job = await queue.cancel(id, ownerFilter(principal))
      runner?.abort(id)
      return toJobView(job)
    },
    async retry(principal: Principal, id: string) {
      const job = toJobView(await queue.retry(id, ownerFilter(principal)))
      runner?.kick()
      return job
    },
  }
}

export type JobService = ReturnType<typeof createJobService>
