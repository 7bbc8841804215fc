/**
 * One error hierarchy for the whole service. Route and service code throws these;
 * the error-handler plugin turns them (and the framework's own errors) into the
 * error envelope. Nothing else builds an error body.
 */
import type { TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'

export const ERROR_CODES = {
  VALIDATION_ERROR: 400,
  UNSUPPORTED_API_VERSION: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  IDEMPOTENCY_KEY_REUSED: 422,
  RATE_LIMITED: 429,
  PROCESSING_ERROR: 500,
  INTERNAL_ERROR: 500,
  SERVICE_UNAVAILABLE: 503,
  TIMEOUT_ERROR: 504,
} as const

export type ErrorCode = keyof typeof ERROR_CODES

/** One failing field: where (`path`, a JSON pointer such as `/inputs/0/shape`) and what to do about it. */
export interface FieldIssue {
  path: string
  message: string
}

/** What a schema check reports about one value (TypeBox's `ValueError`, and the items of Elysia's `error.all`). */
interface SchemaIssue {
  schema?: unknown
  value?: unknown
  message?: string
  summary?: string
}

/**
 * A schema issue's message a person can act on. Elysia's `t.Integer` and `t.Numeric` take a number or its string form
 * (a union of the two), so a number out of bounds fails both and the check names the union's types ("Expected union
 * value", "should be one of: 'integer', 'integer'"); the number branch's own first error says what is wrong:
 * "Expected integer to be greater or equal to 1".
 * @example issueMessage([...check.Errors(value)][0]!) // 'Expected integer to be greater or equal to 1'
 */
export function issueMessage(issue: SchemaIssue): string {
  const branches = (issue.schema as { anyOf?: TSchema[] } | undefined)?.anyOf
  const number = branches?.length === 2 ? branches.find((b) => b.type === 'integer' || b.type === 'number') : undefined
  if (number) {
    const first = Value.Errors(number, issue.value).First()
    if (first) return first.message
  }
  return issue.summary ?? issue.message ?? 'Invalid value'
}

/**
 * A schema check's finding as a field issue: where (`/` for the value as a whole) and `issueMessage`.
 * @example [...check.Errors(body)].map(fieldIssue) // [{ path: '/sample_rate', message: 'Expected integer …' }]
 */
export const fieldIssue = (issue: SchemaIssue & { path: string }): FieldIssue => ({
  path: issue.path || '/',
  message: issueMessage(issue),
})

export interface AppErrorOptions {
  details?: unknown
  /** Extra response headers, e.g. `Retry-After` or `Allow`. */
  headers?: Record<string, string>
  cause?: unknown
}

export class AppError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly details?: unknown
  readonly headers: Record<string, string>

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, { cause: options.cause })
    this.name = new.target.name
    this.code = code
    this.status = ERROR_CODES[code]
    this.details = options.details
    this.headers = options.headers ?? {}
  }
}

/**
 * The one conversion of anything thrown into an AppError: an AppError as it is; anything else (a bug, a library's
 * throw) becomes `code` with a message of ours, the original kept as `cause` for the log and never shown.
 * @example const known = toAppError(error, 'PROCESSING_ERROR', 'The model failed on this item')
 */
export function toAppError(error: unknown, code: ErrorCode = 'INTERNAL_ERROR', message = 'Internal server error'): AppError {
  return error instanceof AppError ? error : new AppError(code, message, { cause: error })
}

export class ValidationError extends AppError {
  constructor(message: string, issues: FieldIssue[] = [], options: Omit<AppErrorOptions, 'details'> = {}) {
    super('VALIDATION_ERROR', message, { ...options, details: issues.length ? issues : undefined })
  }
}

export class UnsupportedApiVersionError extends AppError {
  constructor(requested: string, supported: string) {
    super('UNSUPPORTED_API_VERSION', `API version "${requested}" is not supported; this server speaks version ${supported}`, {
      details: { supported: [supported] },
    })
  }
}

export class UnauthorizedError extends AppError {
  /** `headers`: extra headers, such as the failed-authentication limit's standing. */
  constructor(options: { headers?: Record<string, string> } = {}) {
    super('UNAUTHORIZED', 'A valid API key is required: send it as "Authorization: Bearer <key>" or "X-API-Key: <key>"', {
      headers: { ...options.headers, 'WWW-Authenticate': 'Bearer realm="vireo"' },
    })
  }
}

export class ForbiddenError extends AppError {
  constructor(scope: string) {
    super('FORBIDDEN', `This API key lacks the "${scope}" scope needed for this route`, { details: { required_scope: scope } })
  }
}

export class NotFoundError extends AppError {
  constructor(message = 'No resource at this path') {
    super('NOT_FOUND', message)
  }
}

export class MethodNotAllowedError extends AppError {
  constructor(method: string, allowed: string[]) {
    super('METHOD_NOT_ALLOWED', `${method} is not allowed here; use ${allowed.join(', ')}`, {
      headers: { Allow: allowed.join(', ') },
      details: { allowed },
    })
  }
}

export class ConflictError extends AppError {
  constructor(message: string, details?: unknown) {
    super('CONFLICT', message, { details })
  }
}

export class PayloadTooLargeError extends AppError {
  constructor(limitBytes: number) {
    super('PAYLOAD_TOO_LARGE', `Request body exceeds the limit of ${limitBytes} bytes`, { details: { limit_bytes: limitBytes } })
  }
}

export class UnsupportedMediaTypeError extends AppError {
  constructor(message: string, details?: unknown) {
    super('UNSUPPORTED_MEDIA_TYPE', message, { details })
  }
}

export class IdempotencyKeyReusedError extends AppError {
  constructor() {
    super('IDEMPOTENCY_KEY_REUSED', 'This Idempotency-Key was already used with a different request body; use a new key')
  }
}

export class RateLimitedError extends AppError {
  constructor(policy: string, retryAfterS: number, headers: Record<string, string> = {}, why?: string) {
    super('RATE_LIMITED', `${why ?? `Rate limit "${policy}" exceeded`}; retry in ${retryAfterS} s`, {
      details: { policy, retry_after_s: retryAfterS },
      headers: { ...headers, 'Retry-After': String(retryAfterS) },
    })
  }
}

export class ProcessingError extends AppError {
  constructor(message: string, options: AppErrorOptions = {}) {
    super('PROCESSING_ERROR', message, options)
  }
}

export class ServiceUnavailableError extends AppError {
  constructor(message: string, retryAfterS = 1, details?: unknown) {
    super('SERVICE_UNAVAILABLE', message, { details, headers: { 'Retry-After': String(retryAfterS) } })
  }
}

export class TimeoutError extends AppError {
  constructor(message: string, details?: unknown) {
    super('TIMEOUT_ERROR', message, { details })
  }
}
