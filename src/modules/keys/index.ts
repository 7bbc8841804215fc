import { Elysia } from 'elysia'
import { EnvelopeSchema, ok, responses } from '../../envelope'
import { KeyModel } from '../../keys/model'
import type { KeyService } from '../../keys/service'
import type { Logger } from '../../logger'
import { auth } from '../../plugins/auth'
import { type RateLimiter, rateLimit } from '../../plugins/rate-limit'
import { API_PREFIX } from '../../plugins/versioning'

export interface KeysModuleOptions {
  keys: KeyService
  limiter: RateLimiter
  logger: Logger
}

/** `/api/v1/keys`: create (secret shown once), list, inspect own key, revoke. */
export const keysModule = ({ keys, limiter, logger }: KeysModuleOptions) =>
  new Elysia({ name: 'vireo.module.keys', prefix: `${API_PREFIX}/keys`, normalize: false, detail: { tags: ['keys'] } })
    .use(auth({ keys, limiter }))
    .use(rateLimit({ limiter, logger }))
    .post(
      '/',
      async function createKey({ body, set }) {
        const created = await keys.create(body)
        set.status = 201
        set.headers.location = `${API_PREFIX}/keys/${created.id}`
        return ok(created, { message: 'Store this key now: it is not shown again' })
      },
      {
        auth: 'admin',
        rateLimit: 'admin',
        body: KeyModel.create,
        detail: { summary: 'Create an API key (admin); the secret appears in this response only' },
        response: responses({ 201: EnvelopeSchema(KeyModel.created) }, 401, 403, 413, 415),
      },
    )
    .get('/', async ({ query }) => ok(await keys.list(query.limit ?? 20, query.cursor)), {
      auth: 'admin',
      rateLimit: 'admin',
      query: KeyModel.listQuery,
      detail: { summary: 'List API keys (admin), newest first; never secrets or hashes' },
      response: responses({ 200: EnvelopeSchema(KeyModel.list) }, 401, 403),
    })
    .get('/me', async ({ principal }) => ok(await keys.get(principal.id)), {
      auth: 'any',
      rateLimit: 'admin',
      detail: { summary: 'The key making this request' },
      response: responses({ 200: EnvelopeSchema(KeyModel.key) }, 401),
    })
    .delete('/:id', async ({ params }) => ok(await keys.revoke(params.id)), {
      auth: 'admin',
      rateLimit: 'admin',
      params: KeyModel.idParams,
      detail: { summary: 'Revoke an API key (admin); repeating it is harmless' },
      response: responses({ 200: EnvelopeSchema(KeyModel.key) }, 401, 403, 404),
    })
