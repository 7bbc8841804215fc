import { Elysia } from 'elysia'
import { EnvelopeSchema, ok, responses } from '../../envelope'
import { type FieldIssue, ValidationError } from '../../errors'
import type { InferRequest } from '../../inference/tensors'
import type { KeyService } from '../../keys/service'
import type { Logger } from '../../logger'
import { auth } from '../../plugins/auth'
import { type RateLimiter, rateLimit } from '../../plugins/rate-limit'
import { API_PREFIX } from '../../plugins/versioning'
import { acceptedAsJob } from '../async-job'
import { JobModel } from './model'
import type { JobService } from './service'

export interface JobsModuleOptions {
  jobs: JobService
  keys: KeyService
  limiter: RateLimiter
  logger: Logger
  /** Checks an infer request against its model before it is queued, so invalid work fails at once (400/404). */
  validateInfer?: (model: string, request: InferRequest) => void
}

/** `/api/v1/jobs`: submit (idempotent), read, list, cancel, retry. */
export const jobsModule = ({ jobs, keys, limiter, logger, validateInfer }: JobsModuleOptions) =>
  new Elysia({ name: 'vireo.module.jobs', prefix: `${API_PREFIX}/jobs`, normalize: false, detail: { tags: ['jobs'] } })
    .use(auth({ keys, limiter }))
    .use(rateLimit({ limiter, logger }))
    .post(
      '/',
      async function submitJob({ body, headers, principal, set }) {
        try {
          validateInfer?.(body.model, body.request)
        } catch (error) {
          // The request sits under /request in a job's body: point there.
          if (!(error instanceof ValidationError)) throw error
          const issues = (error.details ?? []) as FieldIssue[]
          throw new ValidationError(
            error.message,
            issues.map((issue) => ({ ...issue, path: `/request${issue.path}` })),
          )
        }
        const answer = await jobs.submit(
          principal,
          { task: body.task, model: body.model, input: body.request, parameters: {}, maxAttempts: body.max_attempts },
          headers['idempotency-key'],
        )
        return acceptedAsJob(set, answer, { preferred: false })
      },
      {
        auth: 'jobs',
        rateLimit: 'jobs',
        body: JobModel.create,
        headers: JobModel.headers,
        detail: { summary: 'Submit an inference job; answers 202 with Location' },
        response: responses({ 202: EnvelopeSchema(JobModel.job) }, 401, 403, 404, 409, 413, 415, 422),
      },
    )
    .get('/', async ({ principal, query }) => ok(await jobs.list(principal, query)), {
      auth: 'jobs',
      rateLimit: 'jobs',
      query: JobModel.listQuery,
      detail: { summary: 'List jobs (own jobs; admin: all), newest first, filtered by status and model' },
      response: responses({ 200: EnvelopeSchema(JobModel.list) }, 401, 403),
    })
    .get('/:id', async ({ principal, params }) => ok(await jobs.get(principal, params.id)), {
      auth: 'jobs',
      rateLimit: 'jobs',
      params: JobModel.idParams,
      detail: { summary: "Read a job; another key's job answers 404 like a missing one" },
      response: responses({ 200: EnvelopeSchema(JobModel.job) }, 401, 403, 404),
    })
    .delete('/:id', async ({ principal, params }) => ok(await jobs.cancel(principal, params.id), { message: 'Job cancelled' }), {
      auth: 'jobs',
      rateLimit: 'jobs',
      params: JobModel.idParams,
      detail: { summary: 'Cancel a queued or running job (a running inference is stopped); 409 once finished' },
      response: responses({ 200: EnvelopeSchema(JobModel.job) }, 401, 403, 404, 409),
    })
    .post('/:id/retry', async ({ principal, params }) => ok(await jobs.retry(principal, params.id), { message: 'Job requeued' }), {
      auth: 'jobs',
      rateLimit: 'jobs',
      params: JobModel.idParams,
      detail: { summary: 'Requeue a failed or dead job' },
      response: responses({ 200: EnvelopeSchema(JobModel.job) }, 401, 403, 404, 409),
    })
