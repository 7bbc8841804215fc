import { t } from 'elysia'
import { ok } from '../envelope'
import { ForbiddenError } from '../errors'
import { hasScope, type Principal } from '../keys/service'
import { API_PREFIX } from '../plugins/versioning'

/**
 * "Answer as a job", in one place for every route that can: the `Prefer: respond-async` and `Idempotency-Key`
 * headers, the jobs-scope check, and the 202 with the job's Location.
 */

export const IdempotencyKey = t.String({
  minLength: 1,
  maxLength: 255,
  pattern: '^[\\x21-\\x7e]+$',
  description: 'Visible ASCII; replays return the first job; scoped per API key',
})

/** Headers of a route that can answer as a job; `task` names what the job does, for the docs. */
export const asyncHeaders = (task: string) =>
  t.Object({
    prefer: t.Optional(
      t.String({
        maxLength: 256,
        description: `\`respond-async\` turns the call into a job with task \`${task}\` (RFC 7240); needs the jobs scope`,
      }),
    ),
    'idempotency-key': t.Optional(IdempotencyKey),
    'content-type': t.Optional(t.String({ maxLength: 256 })),
  })

/** RFC 7240: does the client prefer an asynchronous answer? */
export const prefersAsync = (prefer: string | undefined) =>
  (prefer ?? '').split(/[,;]/).some((p) => p.trim().toLowerCase() === 'respond-async')

/** Work turned into a job can only be read back through /jobs, so the key needs that scope too. */
export function requireJobsScope(principal: Principal) {
  if (!hasScope(principal, 'jobs')) throw new ForbiddenError('jobs')
}

export interface AsyncAnswer<Job extends { id: string }> {
  job: Job
  created: boolean
}

/**
 * Answers 202 for a job: its Location, and `Preference-Applied` when the client asked for an asynchronous answer.
 * @example return acceptedAsJob(set, await jobs.submit(principal, work, headers['idempotency-key']), { preferred: true })
 */
export function acceptedAsJob<Job extends { id: string }>(
  set: { status?: number | string; headers: Record<string, string | number> },
  answer: AsyncAnswer<Job>,
  { preferred = true } = {},
) {
  set.status = 202
  set.headers.location = `${API_PREFIX}/jobs/${answer.job.id}`
  if (preferred) set.headers['preference-applied'] = 'respond-async'
  return ok(answer.job, {
    message: answer.created
      ? 'Accepted as a job; poll its Location for the result'
      : 'Idempotent replay: this job was created by an earlier request with the same Idempotency-Key',
  })
}
