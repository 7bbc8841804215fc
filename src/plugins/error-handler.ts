import { Elysia, type ValidationError as ElysiaValidationError } from 'elysia'
import { errorBody } from '../envelope'
import {
  AppError,
  ERROR_CODES,
  type ErrorCode,
  type FieldIssue,
  issueMessage,
  MethodNotAllowedError,
  NotFoundError,
  toAppError,
  UnsupportedMediaTypeError,
  ValidationError,
} from '../errors'
import type { Logger } from '../logger'
import { bodyKind } from './body-parser'
import { requestState } from './request-id'
import { isOipPath } from './versioning'

export interface RouteInfo {
  method: string
  path: string
}

export interface ErrorHandlerOptions {
  logger: Logger
  /** The app's routes, read lazily so a 404 can be told apart from a 405. */
  routes: () => RouteInfo[]
}

/** Turns a route pattern such as `/api/v1/models/:name` into a matcher for concrete paths. */
function patternToRegExp(path: string): RegExp {
  // Collection routes are registered with a trailing slash ('/api/v1/keys/'); both spellings are the same resource.
  const source = path
    .replace(/(.)\/$/, '$1')
    .split('/')
    .map((part) => (part === '*' ? '.*' : part.startsWith(':') ? '[^/]+' : part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')))
    .join('/')
  return new RegExp(`^${source}/?$`)
}

/** Methods registered for `pathname`, ignoring catch-all preflight routes. */
export function allowedMethods(routes: RouteInfo[], pathname: string): string[] {
  const methods = new Set<string>()
  for (const route of routes) {
    if (route.path === '/*' || route.path === '*' || route.method === 'WS') continue
    if (patternToRegExp(route.path).test(pathname)) methods.add(route.method === 'WS' ? 'GET' : route.method)
  }
  return [...methods].sort()
}

/**
 * The query parameter Elysia refused on its own. A query value is coerced (`"-1"` to -1) and checked against its
 * schema alone, and that error (type "property") names no field: the parameter is the one sent with that value.
 */
function refusedQueryParameter(url: string, value: unknown): string | undefined {
  if (!url.includes('?')) return undefined
  const sent = [...new URL(url).searchParams].filter(([, v]) => v === String(value))
  return sent.length === 1 ? sent[0]![0] : undefined
}

/** Elysia's validation error as field issues a person can act on: `/inputs/0/shape: Expected array`. */
export function validationIssues(error: Readonly<ElysiaValidationError>, url = ''): FieldIssue[] {
  const parameter = error.type === 'property' ? refusedQueryParameter(url, error.value) : undefined
  const where = error.type === 'body' ? '' : `${error.type}:`
  return error.all.map((issue) => {
    const { path = '' } = issue as { path?: string }
    return { path: parameter ? `query:/${parameter}${path}` : `${where}${path || '/'}`, message: issueMessage(issue) }
  })
}

/**
 * The Open Inference Protocol's error body, `{ "error": "<message>" }`: one string, so the field issues a v1
 * client finds in `details` are spelled into it.
 */
export function oipErrorBody(error: AppError, internal: boolean): { error: string } {
  const issues = !internal && Array.isArray(error.details) ? (error.details as FieldIssue[]) : []
  const where = issues.map((issue) => `${issue.path}: ${issue.message}`).join('; ')
  return { error: where ? `${error.message}: ${where}` : error.message }
}

function codeForStatus(status: number): ErrorCode {
  const match = (Object.entries(ERROR_CODES) as [ErrorCode, number][]).find(([, s]) => s === status)
  return match?.[0] ?? (status >= 500 ? 'INTERNAL_ERROR' : 'VALIDATION_ERROR')
}

/**
 * Maps every error — vireo's own and the framework's — to the error envelope, with the
 * contract's status, and logs it. 500s show a generic message; the log has the stack.
 * Under `/v2` the same error leaves in the protocol's shape instead (`oipErrorBody`), status and headers unchanged.
 * @example app.use(errorHandler({ logger, routes: () => app.routes }))
 */
export const errorHandler = (options: ErrorHandlerOptions) =>
  new Elysia({ name: 'vireo.error-handler' }).onError({ as: 'global' }, function renderError({ code, error, request, set }) {
    const state = requestState(request)
    // Errors thrown by the body parser reach here wrapped in Elysia's ParseError.
    const cause = (error as { cause?: unknown }).cause
    let appError: AppError
    if (error instanceof AppError) appError = error
    else if (code === 'PARSE' && cause instanceof AppError) appError = cause
    else if (code === 'NOT_FOUND') {
      const pathname = new URL(request.url).pathname
      const allowed = allowedMethods(options.routes(), pathname)
      appError = allowed.length
        ? new MethodNotAllowedError(request.method, allowed)
        : new NotFoundError(`No route for ${request.method} ${pathname}`)
    } else if (code === 'VALIDATION' && error.type === 'response') {
      appError = new AppError('INTERNAL_ERROR', 'Internal server error', { cause: error })
    } else if (code === 'VALIDATION') {
      const kind = bodyKind(request.headers.get('content-type'))
      appError =
        error.type === 'body' && kind && kind !== 'json' && kind !== 'multipart' && kind !== 'form'
          ? new UnsupportedMediaTypeError(`This route takes a JSON body; got Content-Type "${request.headers.get('content-type')}"`)
          : new ValidationError(
              `Invalid request ${error.type === 'property' ? 'parameter' : error.type}`,
              validationIssues(error, request.url),
            )
    } else if (code === 'PARSE') {
      appError = new ValidationError('The request body could not be parsed; check it matches its Content-Type')
    } else if (code === 'INVALID_FILE_TYPE') {
      appError = new UnsupportedMediaTypeError(error.message)
    } else if (typeof code === 'number') {
      appError = new AppError(
        codeForStatus(code),
        code >= 500 ? 'Internal server error' : String((error as { response?: unknown }).response ?? 'Request failed'),
      )
    } else {
      appError = toAppError(error)
    }

    const internal = appError.code === 'INTERNAL_ERROR'
    const context = {
      request_id: state?.id,
      key_id: state?.keyId,
      err: internal ? (appError.cause ?? error) : undefined,
      code: appError.code,
      method: request.method,
      url: new URL(request.url).pathname,
    }
    if (appError.status >= 500) options.logger.error(context, internal ? 'unhandled error' : appError.message)
    else options.logger.debug(context, appError.message)

    set.status = appError.status
    Object.assign(set.headers, appError.headers)
    set.headers['content-type'] = 'application/json'
    if (isOipPath(context.url)) return oipErrorBody(appError, internal)
    return errorBody(appError.code, appError.message, state?.id ?? 'unknown', internal ? undefined : appError.details)
  })
