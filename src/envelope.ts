import { withHeaders } from '@elysiajs/openapi'
import { type TSchema, t } from 'elysia'
import { ERROR_CODES, type ErrorCode } from './errors'

/** Query fields every list takes: a page size and the opaque cursor of the page before. */
export const PageQuery = {
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 100, default: 20 })),
  cursor: t.Optional(t.String({ maxLength: 200, pattern: '^[A-Za-z0-9_-]+$', description: 'next_cursor of the page before' })),
}

/** One page of a list, newest first: `next_cursor` is null on the last page. */
export const Page = <T extends TSchema>(item: T) => t.Object({ items: t.Array(item), next_cursor: t.Union([t.String(), t.Null()]) })

/** Path parameters of a resource addressed by its UUID. */
export const IdParams = t.Object({ id: t.String({ format: 'uuid' }) })

/** A per-item failure inside a partial success. */
export interface ItemError {
  index?: number
  code: ErrorCode
  message: string
  details?: unknown
}

export interface Envelope<T> {
  success: true
  data: T
  message?: string
  errors: ItemError[]
}

/**
 * The one way to answer successfully.
 * @example return ok({ status: 'ok' })
 * @example return ok(results, { message: '3 of 4 succeeded', errors })
 */
export function ok<T>(data: T, options: { message?: string; errors?: ItemError[] } = {}): Envelope<T> {
  return options.message === undefined
    ? { success: true, data, errors: options.errors ?? [] }
    : { success: true, data, message: options.message, errors: options.errors ?? [] }
}

export interface ErrorBody {
  success: false
  error: { code: ErrorCode; message: string; details?: unknown }
  request_id: string
}

/** Only the error-handler plugin (and the few places that answer before routing) call this. */
export function errorBody(code: ErrorCode, message: string, requestId: string, details?: unknown): ErrorBody {
  return {
    success: false,
    error: details === undefined ? { code, message } : { code, message, details },
    request_id: requestId,
  }
}

const ItemErrorSchema = t.Object({
  index: t.Optional(t.Integer()),
  code: t.String(),
  message: t.String(),
  details: t.Optional(t.Unknown()),
})

/** OpenAPI/response schema of the success envelope around `data`. */
export const EnvelopeSchema = <T extends TSchema>(data: T) =>
  t.Object({
    success: t.Literal(true),
    data,
    message: t.Optional(t.String()),
    errors: t.Array(ItemErrorSchema),
  })

export const ErrorEnvelope = (description?: string) =>
  t.Object(
    {
      success: t.Literal(false),
      error: t.Object({
        code: t.Union(Object.keys(ERROR_CODES).map((c) => t.Literal(c))),
        message: t.String(),
        details: t.Optional(t.Unknown()),
      }),
      request_id: t.String(),
    },
    { description },
  )

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'Invalid request (VALIDATION_ERROR or UNSUPPORTED_API_VERSION)',
  401: 'Missing or invalid API key',
  403: 'The API key lacks the scope for this route',
  404: 'Not found',
  405: 'Method not allowed',
  409: 'Conflict with the resource state',
  413: 'Payload too large',
  415: 'Unsupported media type',
  422: 'Idempotency-Key reused with a different request',
  429: 'Rate limited',
  500: 'Internal or processing error',
  503: 'Service unavailable',
  504: 'Timed out',
}

/** What the rate-limit plugin sends (`src/plugins/rate-limit.ts`), documented on the answers that can carry it. */
const RATE_LIMIT_HEADERS = {
  RateLimit: t.String({
    description: 'Quota left in the policy this request counted against: `"<policy>";r=<remaining>;t=<seconds to reset>`',
    maxLength: 128,
  }),
  'RateLimit-Policy': t.String({ description: 'The policy: `"<policy>";q=<requests>;w=<window seconds>`', maxLength: 128 }),
}
const CORS_HEADERS = {
  'Access-Control-Allow-Origin': t.String({
    description: "The caller's origin, sent only when it is listed in CORS_ORIGINS (`*` outside production)",
    maxLength: 2048,
  }),
}
const RETRY_AFTER = { 'Retry-After': t.Integer({ description: 'Seconds to wait before trying again', minimum: 0, maximum: 86400 }) }

/** Response headers for one status: CORS on all, the limiter's on 2xx/4xx (it answers 429 itself), `Retry-After` where the error sets it. */
export function headersFor(status: number) {
  const limited = (status >= 200 && status < 300) || (status >= 400 && status < 500)
  const retry = status === 429 || status === 503
  return { ...CORS_HEADERS, ...(limited ? RATE_LIMIT_HEADERS : {}), ...(retry ? RETRY_AFTER : {}) }
}

/**
 * Response map for a route: its success schema(s) plus the error envelope for each listed status.
 * Every route can also answer 400 (version header), 429 and 500; they are always included, and so
 * are the headers that come with them.
 * @example response: responses({ 200: EnvelopeSchema(Model) }, 401, 403, 404)
 */
export function responses(success: Record<number, TSchema>, ...errorStatuses: number[]) {
  return responseMap(ErrorEnvelope, success, errorStatuses)
}

const OipError = (description?: string) =>
  t.Object({ error: t.String({ description: 'What went wrong, for a person to act on' }) }, { description })

/**
 * The same map for the Open Inference Protocol routes under `/v2`, whose errors are `{ "error": "<message>" }`.
 * @example response: oipResponses({ 200: OipModel.serverMetadata }, 401)
 */
export function oipResponses(success: Record<number, TSchema>, ...errorStatuses: number[]) {
  return responseMap(OipError, success, errorStatuses)
}

function responseMap(errorBody: (description?: string) => TSchema, success: Record<number, TSchema>, errorStatuses: number[]) {
  const map: Record<number, TSchema> = { ...success }
  for (const status of new Set([400, 429, 500, ...errorStatuses])) map[status] = errorBody(ERROR_DESCRIPTIONS[status])
  for (const [status, schema] of Object.entries(map)) map[Number(status)] = withHeaders(schema as never, headersFor(Number(status)))
  return map
}
