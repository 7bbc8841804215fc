import { withHeaders } from '@elysiajs/openapi'
import { type TSchema, t } from 'elysia'
import { ErrorEnvelope, headersFor } from '../../envelope'
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

  const OipError = (description: string) => t.Object({ error: t.String({ description: 'what went wrong, for a person' }) }, { description })
  const DESCRIPTIONS: Record<number, string> = {
    400: 'Invalid request, or a load that failed (what served before serves on)',
    401: 'Missing or invalid API key',
    403: 'The API key lacks the admin scope',
    404: 'No such model (load: no such folder in MODELS_DIR)',
    415: 'Unsupported media type',
    429: 'Rate limited',
    500: 'Internal error',
  }

  /**
   * Response map in bare OIP JSON: the success schema, and `{ error }` for each listed status (400, 429, 500 always).
   * The error envelope is listed beside `{ error }` while the error handler still answers /v2 in it (issue 11 §1
   * gives /v2 its own error shape); drop it then.
   */
  export function responses(success: TSchema, ...errorStatuses: number[]) {
    const map: Record<number, TSchema> = { 200: withHeaders(success as never, headersFor(200)) }
    for (const status of new Set([400, 429, 500, ...errorStatuses])) {
      const description = DESCRIPTIONS[status] ?? 'Error'
      map[status] = withHeaders(t.Union([OipError(description), ErrorEnvelope(description)], { description }) as never, headersFor(status))
    }
    return map
  }
}
