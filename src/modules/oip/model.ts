import { t } from 'elysia'
import { ModelName } from '../jobs/model'

/**
 * The Open Inference Protocol's JSON objects (KServe `required_api.md`, Triton's binary-data and statistics
 * extensions), field for field. Requests refuse unknown fields, as everywhere in vireo; `parameters` are the
 * protocol's open key/value bags and take any name (the service refuses the ones vireo would silently violate).
 */
export namespace OipModel {
  const Parameter = t.Union([t.String({ maxLength: 1024, pattern: '^[^\\u0000-\\u001f]*$' }), t.Number(), t.Boolean()])
  export const parameters = t.Record(t.String(), Parameter, { maxProperties: 32, description: 'name → string, number or boolean' })
  export type parameters = typeof parameters.static

  const TensorName = t.String({ minLength: 1, maxLength: 256, pattern: '^[^\\u0000-\\u001f]+$' })
  const Version = t.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._-]+$' })

  export const params = t.Object({ name: ModelName })
  export const versionParams = t.Object({ name: ModelName, version: Version })

  export const inferInput = t.Object(
    {
      name: TensorName,
      shape: t.Array(t.Integer({ minimum: 0, maximum: 2 ** 31 - 1 }), { maxItems: 16 }),
      datatype: t.String({
        maxLength: 16,
        pattern: '^[A-Z0-9]+$',
        description: 'FP32, FP64, INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32 or BOOL',
      }),
      parameters: t.Optional(parameters),
      data: t.Optional(
        t.Array(t.Unknown(), {
          maxItems: 16_777_216,
          description: 'row-major, flat or nested as the shape; absent when the tensor is sent as binary data (binary_data_size)',
        }),
      ),
    },
    { additionalProperties: false },
  )
  export type inferInput = typeof inferInput.static

  export const inferRequest = t.Object(
    {
      id: t.Optional(t.String({ maxLength: 256, pattern: '^[^\\u0000-\\u001f]*$', description: 'echoed in the response' })),
      model_name: t.Optional(
        t.String({ maxLength: 64, pattern: '^[a-z0-9][a-z0-9._-]{0,63}$', description: 'if given, the model of the URL' }),
      ),
      parameters: t.Optional(parameters),
      inputs: t.Array(inferInput, { minItems: 1, maxItems: 64 }),
      outputs: t.Optional(
        t.Array(t.Object({ name: TensorName, parameters: t.Optional(parameters) }, { additionalProperties: false }), { maxItems: 64 }),
      ),
    },
    { additionalProperties: false },
  )
  export type inferRequest = typeof inferRequest.static

  const TensorMetadata = t.Object({ name: t.String(), datatype: t.String(), shape: t.Array(t.Integer({ description: '-1: dynamic' })) })

  export const inferOutput = t.Object({
    name: t.String(),
    shape: t.Array(t.Integer()),
    datatype: t.String(),
    parameters: t.Optional(parameters),
    data: t.Optional(t.Array(t.Union([t.Number(), t.String(), t.Boolean()]), { description: 'absent when sent as binary data' })),
  })
  export type inferOutput = typeof inferOutput.static

  export const inferResponse = t.Object({
    model_name: t.String(),
    model_version: t.String(),
    id: t.String({ description: "the request's id, or the X-Request-Id when it gave none" }),
    parameters: t.Optional(parameters),
    outputs: t.Array(inferOutput),
  })
  export type inferResponse = typeof inferResponse.static

  export const serverMetadata = t.Object({ name: t.String(), version: t.String(), extensions: t.Array(t.String()) })
  export const live = t.Object({ live: t.Literal(true) })
  export const ready = t.Object({ ready: t.Literal(true) })
  export const modelReady = t.Object({ name: t.String(), ready: t.Literal(true) })
  export const modelMetadata = t.Object({
    name: t.String(),
    versions: t.Array(t.String()),
    platform: t.String(),
    inputs: t.Array(TensorMetadata),
    outputs: t.Array(TensorMetadata),
  })
  export type modelMetadata = typeof modelMetadata.static

  const Duration = t.Object({ count: t.Integer(), ns: t.Integer() })
  const ModelStat = t.Object({
    name: t.String(),
    version: t.String(),
    last_inference: t.Integer({ description: 'ms since the epoch; 0 before the first request' }),
    inference_count: t.Integer(),
    execution_count: t.Integer(),
    inference_stats: t.Object({
      success: Duration,
      fail: Duration,
      queue: Duration,
      compute_input: Duration,
      compute_infer: Duration,
      compute_output: Duration,
      cache_hit: Duration,
      cache_miss: Duration,
    }),
    response_stats: t.Record(t.String(), t.Unknown()),
    batch_stats: t.Array(t.Object({ batch_size: t.Integer(), compute_input: Duration, compute_infer: Duration, compute_output: Duration })),
    memory_usage: t.Array(t.Unknown()),
  })
  export const stats = t.Object({ model_stats: t.Array(ModelStat) })
}
