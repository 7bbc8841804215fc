import { Elysia, t } from 'elysia'
import { EnvelopeSchema, ok, responses } from '../../envelope'
import { ValidationError } from '../../errors'
import { type ModelInfo, ModelInfoSchema, type Registry } from '../../inference/registry'
import type { KeyService } from '../../keys/service'
import type { Logger } from '../../logger'
import { auth } from '../../plugins/auth'
import { type RateLimiter, rateLimit } from '../../plugins/rate-limit'
import { API_PREFIX } from '../../plugins/versioning'
import { acceptedAsJob, asyncHeaders, prefersAsync, requireJobsScope } from '../async-job'
import type { JobService } from '../jobs/service'
import { ModelsModel } from './model'
import { inferBatch } from './service'

export interface ModelsModuleOptions {
  registry: Registry
  jobs: JobService
  keys: KeyService
  limiter: RateLimiter
  logger: Logger
  maxBatch: number
}

/** `/api/v1/models`: the registry, tensor inference, batches of independent requests. */
export const modelsModule = ({ registry, jobs, keys, limiter, logger, maxBatch }: ModelsModuleOptions) =>
  new Elysia({ name: 'vireo.module.models', prefix: `${API_PREFIX}/models`, normalize: false, detail: { tags: ['models'] } })
    .use(auth({ keys, limiter }))
    .use(rateLimit({ limiter, logger }))
    .get('/', () => ok<ModelInfo[]>(registry.list()), {
      auth: 'inference',
      rateLimit: 'inference',
      detail: { summary: 'Every model with its status, backend, inputs, outputs and limits' },
      response: responses({ 200: EnvelopeSchema(t.Array(ModelInfoSchema)) }, 401, 403),
    })
    .get('/:name', ({ params }) => ok(registry.get(params.name)), {
      auth: 'inference',
      rateLimit: 'inference',
      params: ModelsModel.params,
      detail: { summary: 'One model' },
      response: responses({ 200: EnvelopeSchema(ModelInfoSchema) }, 401, 403, 404),
    })
    .post(
      '/:name/infer',
      async function infer({ params, body, headers, principal, request, set }) {
        if (prefersAsync(headers.prefer)) {
          requireJobsScope(principal)
          registry.get(params.name)
          const answer = await jobs.submit(
            principal,
            { task: 'infer', model: params.name, input: body, parameters: {} },
            headers['idempotency-key'],
          )
          return acceptedAsJob(set, answer)
        }
        return ok(await registry.infer(params.name, body, { signal: request.signal, owner: principal.id }))
      },
      {
        auth: 'inference',
        rateLimit: 'inference',
        params: ModelsModel.params,
        body: ModelsModel.inferRequest,
        headers: asyncHeaders('infer'),
        detail: { summary: 'Run the model: tensors in, tensors out (Open Inference Protocol shapes)' },
        response: responses(
          { 200: EnvelopeSchema(ModelsModel.inferResult), 202: EnvelopeSchema(t.Unknown({ description: 'The job (see /jobs)' })) },
          401,
          403,
          404,
          413,
          415,
          503,
          504,
        ),
      },
    )
    .post(
      '/:name/infer/batch',
      async function inferMany({ params, body, principal, request }) {
        registry.get(params.name)
        if (body.requests.length > maxBatch)
          throw new ValidationError(`A batch holds at most ${maxBatch} requests`, [
            { path: '/requests', message: `send ${maxBatch} or fewer` },
          ])
        const outcome = await inferBatch(registry, params.name, body.requests, { signal: request.signal, owner: principal.id })
        return ok(outcome.data, { message: outcome.message, errors: outcome.errors })
      },
      {
        auth: 'inference',
        rateLimit: 'inference',
        params: ModelsModel.params,
        body: ModelsModel.batchRequest,
        detail: { summary: 'Run many independent requests; 200 with a result per item, failures listed in `errors`' },
        response: responses({ 200: EnvelopeSchema(ModelsModel.batchResult) }, 401, 403, 404, 413, 415),
      },
    )
