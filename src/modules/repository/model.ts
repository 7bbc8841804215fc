import { type TSchema, t } from 'elysia'
import { ModelName } from '../jobs/model'

/** Bodies of Triton's model repository extension (docs/protocol/extension_model_repository.md); each may be empty. */
export namespace RepositoryModel {
  export const params = t.Object({ name: ModelName })

  /** Null stands for an empty body, which Triton's clients send. */
  const orEmpty = <T extends TSchema>(schema: T) => t.Union([schema, t.Null()])

  export const indexRequest = orEmpty(
    t.Object({ ready: t.Optional(t.Boolean({ description: 'only the versions ready for inference' })) }, { additionalProperties: false }),
  )

  /** Triton's `config` and `file:<version>/<name>` overrides are not taken: vireo loads what MODELS_DIR holds. */
  export const loadRequest = t.Optional(
    t.Object({ parameters: t.Optional(t.Object({}, { additionalProperties: false })) }, { additionalProperties: false }),
  )

  export const unloadRequest = orEmpty(
    t.Object(
      {
        parameters: t.Optional(
          t.Object(
            { unload_dependents: t.Optional(t.Boolean({ description: 'accepted for tritonclient; vireo has no dependent models' })) },
            { additionalProperties: false },
          ),
        ),
      },
      { additionalProperties: false },
    ),
  )

  /** A load or unload that succeeded answers an empty object. */
  export const done = t.Object({}, { additionalProperties: false })
}
