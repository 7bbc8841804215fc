import { Elysia } from 'elysia'
import { oipResponses } from '../../envelope'
import { ValidationError } from '../../errors'
import { type Registry, RepositoryIndexSchema } from '../../inference/registry'
import type { KeyService } from '../../keys/service'
import type { Logger } from '../../logger'
import { auth } from '../../plugins/auth'
import { type RateLimiter, rateLimit } from '../../plugins/rate-limit'
import { RepositoryModel } from './model'

export interface RepositoryModuleOptions {
  registry: Registry
  keys: KeyService
  limiter: RateLimiter
  logger: Logger
}

/** Elysia's compiled check lets arrays and numbers through an object schema whose fields are all optional; these bodies are objects. */
function refuseNonObject({ body }: { body: unknown }): void {
  if (body !== null && body !== undefined && (typeof body !== 'object' || Array.isArray(body)))
    throw new ValidationError('Invalid request body', [{ path: '/', message: 'Expected an object, or no body' }])
}

/**
 * `/v2/repository`: Triton's model repository extension (admin): the index of every model version, and load /
 * unload of a model. Bare OIP JSON, as Triton and KServe clients read it.
 * @example app.use(repositoryModule({ registry, keys, limiter, logger }))
 */
export const repositoryModule = ({ registry, keys, limiter, logger }: RepositoryModuleOptions) =>
  new Elysia({ name: 'vireo.module.repository', prefix: '/v2/repository', normalize: false, detail: { tags: ['oip'] } })
    .use(auth({ keys, limiter }))
    .use(rateLimit({ limiter, logger }))
    .post(
      '/index',
      function repositoryIndex({ body }) {
        const index = registry.index()
        return body?.ready ? index.filter((row) => row.state === 'READY') : index
      },
      {
        auth: 'admin',
        rateLimit: 'admin',
        body: RepositoryModel.indexRequest,
        beforeHandle: refuseNonObject,
        detail: { summary: 'Every version of every model, with its state (READY, UNAVAILABLE, LOADING, UNLOADING) and why' },
        response: oipResponses({ 200: RepositoryIndexSchema }, 401, 403, 415),
      },
    )
    .post(
      '/models/:name/load',
      async function loadModel({ params }) {
        await registry.load(params.name)
        return {}
      },
      {
        auth: 'admin',
        rateLimit: 'admin',
        params: RepositoryModel.params,
        body: RepositoryModel.loadRequest,
        beforeHandle: refuseNonObject,
        detail: {
          summary:
            'Read the model from MODELS_DIR again, warm every version up, then switch to them at once; answers when they serve. What served before serves until then, and on if the load fails (400)',
        },
        response: oipResponses({ 200: RepositoryModel.done }, 401, 403, 404, 415),
      },
    )
    .post(
      '/models/:name/unload',
      async function unloadModel({ params }) {
        await registry.unload(params.name)
        return {}
      },
      {
        auth: 'admin',
        rateLimit: 'admin',
        params: RepositoryModel.params,
        body: RepositoryModel.unloadRequest,
        beforeHandle: refuseNonObject,
        detail: { summary: 'Refuse new requests to the model, let those under way finish, then free it; answers once it is freed' },
        response: oipResponses({ 200: RepositoryModel.done }, 401, 403, 404, 415),
      },
    )
