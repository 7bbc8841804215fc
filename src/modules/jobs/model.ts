import { t } from 'elysia'
import { JOB_STATUSES } from '../../db/schema'
import { IdParams, Page, PageQuery } from '../../envelope'
import { InferRequestSchema } from '../../inference/tensors'
import { IdempotencyKey } from '../async-job'

export const ModelName = t.String({ maxLength: 64, pattern: '^[a-z0-9][a-z0-9._-]{0,63}$', description: 'A model folder name' })

export namespace JobModel {
  export const status = t.Union(JOB_STATUSES.map((s) => t.Literal(s)))

  export const create = t.Object(
    {
      task: t.Literal('infer', { description: 'Tensor inference. Audio jobs are created with `Prefer: respond-async` on /audio/vad.' }),
      model: ModelName,
      request: InferRequestSchema,
      max_attempts: t.Optional(t.Integer({ minimum: 1, maximum: 100 })),
    },
    { additionalProperties: false },
  )
  export type create = typeof create.static

  const AttemptError = t.Object({ attempt: t.Integer(), code: t.String(), message: t.String(), at: t.String({ format: 'date-time' }) })
  const Timestamp = t.Union([t.String({ format: 'date-time' }), t.Null()])

  export const job = t.Object({
    id: t.String({ format: 'uuid' }),
    task: t.Union([t.Literal('infer'), t.Literal('vad')]),
    status,
    model: t.String(),
    attempts: t.Integer(),
    max_attempts: t.Integer(),
    run_at: t.String({ format: 'date-time' }),
    created_at: t.String({ format: 'date-time' }),
    started_at: Timestamp,
    finished_at: Timestamp,
    result: t.Optional(t.Unknown()),
    error: t.Optional(t.Object({ code: t.String(), message: t.String(), history: t.Array(AttemptError) })),
  })
  export type job = typeof job.static

  export const list = Page(job)

  export const listQuery = t.Object(
    { status: t.Optional(status), model: t.Optional(ModelName), ...PageQuery },
    { additionalProperties: false },
  )

  export type listQuery = typeof listQuery.static

  export const idParams = IdParams

  export const headers = t.Object({ 'idempotency-key': t.Optional(IdempotencyKey) })
}
