import { t } from 'elysia'
import { InferRequestSchema, InferResultSchema } from '../../inference/tensors'
import { ModelName } from '../jobs/model'

export namespace ModelsModel {
  export const params = t.Object({ name: ModelName })
  export const inferRequest = InferRequestSchema
  export const inferResult = InferResultSchema

  export const batchRequest = t.Object(
    {
      requests: t.Array(t.Unknown({ description: 'An infer request, as POST /infer takes; each is checked and run on its own' }), {
        minItems: 1,
        maxItems: 10_000,
      }),
    },
    { additionalProperties: false },
  )
  export type batchRequest = typeof batchRequest.static

  const ItemError = t.Object({ code: t.String(), message: t.String(), details: t.Optional(t.Unknown()) })
  export const batchItem = t.Union([
    t.Object({ index: t.Integer(), status: t.Literal('succeeded'), result: InferResultSchema }),
    t.Object({ index: t.Integer(), status: t.Literal('failed'), error: ItemError }),
  ])
  export const batchResult = t.Object({ succeeded: t.Integer(), failed: t.Integer(), items: t.Array(batchItem) })
}
