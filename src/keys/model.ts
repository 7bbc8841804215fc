import { t } from 'elysia'
import { IdParams, Page, PageQuery } from '../envelope'

export const SCOPES = ['inference', 'jobs', 'admin'] as const
export type Scope = (typeof SCOPES)[number]

export namespace KeyModel {
  export const scope = t.Union(
    SCOPES.map((s) => t.Literal(s)),
    { description: '`admin` includes every other scope' },
  )

  export const create = t.Object(
    {
      name: t.String({
        minLength: 1,
        maxLength: 200,
        description: 'Trimmed, NFC-normalised, control characters removed; 1-100 characters remain',
      }),
      scopes: t.Array(scope, { minItems: 1, maxItems: 3, uniqueItems: true }),
      expires_at: t.Optional(t.String({ format: 'date-time', description: 'RFC 3339 time after which the key stops working' })),
    },
    { additionalProperties: false },
  )
  export type create = typeof create.static

  export const key = t.Object({
    id: t.String({ format: 'uuid' }),
    name: t.String(),
    prefix: t.String(),
    scopes: t.Array(scope),
    created_at: t.String({ format: 'date-time' }),
    last_used_at: t.Union([t.String({ format: 'date-time' }), t.Null()]),
    expires_at: t.Union([t.String({ format: 'date-time' }), t.Null()]),
    revoked_at: t.Union([t.String({ format: 'date-time' }), t.Null()]),
  })
  export type key = typeof key.static

  /** The key as created: no use or revocation yet, and the secret, which appears in this response only. */
  export const created = t.Composite([
    t.Omit(key, ['last_used_at', 'revoked_at']),
    t.Object({ key: t.String({ description: 'The secret. Shown in this response only; store it now.' }) }),
  ])

  export const list = Page(key)

  export const listQuery = t.Object(PageQuery, { additionalProperties: false })

  export const idParams = IdParams
}
