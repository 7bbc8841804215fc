import { Elysia } from 'elysia'
import { ForbiddenError, RateLimitedError, UnauthorizedError, ValidationError } from '../errors'
import type { Scope } from '../keys/model'
import { hasScope, type KeyService, type Principal } from '../keys/service'
import { type RateLimiter, rateLimitHeaders } from '../rate-limit/limiter'
import { requestState } from './request-id'
import type { RouteLookup } from './route-lookup'
import { seedOf } from './seed'

/** Query parameters that look like credentials; a key there would end up in logs and browser history. */
const QUERY_KEY_NAMES = ['api_key', 'apikey', 'api-key', 'key', 'token', 'access_token']

/** Subprotocol prefix a browser uses to send its key when opening a WebSocket (browsers cannot set headers). */
export const WS_KEY_PROTOCOL_PREFIX = 'vireo.key.'

/** The key presented by a request: `Authorization: Bearer`, `X-API-Key`, or (WebSocket only) a `vireo.key.<key>` subprotocol. */
export function presentedKey(request: Request, allowSubprotocol = false): string | undefined {
  const authorization = request.headers.get('authorization')
  if (authorization) return /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1] ?? ''
  const header = request.headers.get('x-api-key')
  if (header !== null) return header.trim()
  if (allowSubprotocol) {
    const offered =
      request.headers
        .get('sec-websocket-protocol')
        ?.split(',')
        .map((p) => p.trim()) ?? []
    return offered.find((p) => p.startsWith(WS_KEY_PROTOCOL_PREFIX))?.slice(WS_KEY_PROTOCOL_PREFIX.length)
  }
  return undefined
}

/** Refuse credentials in the URL before anything else looks at them. */
export function refuseKeyInQuery(request: Request): void {
  // Most requests carry no query at all: no URL to parse for them.
  if (!request.url.includes('?')) return
  const query = new URL(request.url).searchParams
  const found = QUERY_KEY_NAMES.find((name) => query.has(name))
  if (found)
    throw new ValidationError('API keys are not accepted in the URL; send the key in the Authorization or X-API-Key header', [
      { path: `query:/${found}`, message: 'remove this parameter' },
    ])
}

const principals = new WeakMap<Request, Principal>()

/** Addresses that failed to authenticate on this instance and are not yet known to be back in good standing. */
const failedLately = new Set<string>()
const FAILED_LATELY_MAX = 100_000

/** OpenAPI extension naming the scope an operation needs; the pre-body check reads it from the route. */
export const SCOPE_EXTENSION = 'x-required-scope'

export interface AuthOptions {
  keys: KeyService
  /** Counts failed authentications per client address (policy `auth_failures`). */
  limiter: RateLimiter
}

/**
 * Adds the `auth` route option: `{ auth: 'inference' }` requires a valid key holding that scope
 * (`admin` holds all), `{ auth: 'any' }` any valid key. The handler receives `principal`.
 * Every way of failing authentication gives the same 401 body.
 * @example app.use(auth({ keys, limiter })).get('/x', ({ principal }) => principal.id, { auth: 'inference' })
 */
export const auth = (options: AuthOptions) =>
  new Elysia({ name: 'vireo.auth', seed: seedOf(options.keys, options.limiter) }).macro({
    auth: (scope: Scope | 'any') => ({
      detail: { security: [{ bearer: [] }, { apiKey: [] }], [SCOPE_EXTENSION]: scope },
      // Routes with a body were authenticated before it was read (authBeforeBody); the rest are here, before validation.
      // A cached key is settled without a promise; only a lookup in the database is waited for.
      transform({ request }) {
        if (principals.has(request)) return
        const settled = authenticate(options, request, scope)
        if (settled instanceof Promise) return settled.then(nothing)
      },
      resolve: ({ request }) => ({ principal: principals.get(request) as Principal }),
    }),
  })

export interface AuthBeforeBodyOptions extends AuthOptions {
  findRoute: RouteLookup
}

/**
 * Authenticates from the headers before a single body byte is read: a global parse hook, registered ahead of
 * the body parser, for every route whose `auth` option asks for a key. Anonymous bodies are never buffered or
 * parsed; the answer is 401 (or 403) and Bun drains or closes the connection.
 * @example app.use(authBeforeBody({ keys, findRoute })).use(bodyParser(limits))
 */
export const authBeforeBody = (options: AuthBeforeBodyOptions) =>
  new Elysia({ name: 'vireo.auth-before-body', seed: seedOf(options.keys, options.limiter, options.findRoute) }).onParse(
    { as: 'global' },
    async function authenticateBeforeBody({ request, route }) {
      const scope = options.findRoute(request.method, route)?.hooks?.detail?.[SCOPE_EXTENSION] as Scope | 'any' | undefined
      if (scope) await authenticate(options, request, scope)
    },
  )

/**
 * Settle who is calling: the presented key must be valid and hold `scope`, else 401 (one body for every
 * way of failing) or 403. Records the key id on the request for logs and rate limits. The auth macro,
 * the WebSocket upgrade (`allowSubprotocol`) and /metrics all go through here. A key the key service has cached is
 * settled synchronously (a returned principal, or a thrown 403); anything that needs the database or the limiter
 * comes back as a promise.
 */
export function authenticate(
  options: AuthOptions,
  request: Request,
  scope: Scope | 'any',
  allowSubprotocol = false,
): Principal | Promise<Principal> {
  refuseKeyInQuery(request)
  const state = requestState(request)
  const address = `ip:${state?.ip ?? 'unknown'}`
  // An address that keeps failing is refused before its guesses cost a key lookup. Only addresses that failed
  // here lately are asked about, so a good key costs no extra limiter round trip (Redis, when shared).
  if (failedLately.has(address))
    return inGoodStanding(options.limiter, address).then(() => identify(options, request, scope, address, allowSubprotocol))
  return identify(options, request, scope, address, allowSubprotocol)
}

/** The presented key's verdict; no closure is made unless the key service has to ask the database. */
function identify(
  { keys, limiter }: AuthOptions,
  request: Request,
  scope: Scope | 'any',
  address: string,
  allowSubprotocol: boolean,
): Principal | Promise<Principal> {
  const found = keys.authenticate(presentedKey(request, allowSubprotocol))
  if (found instanceof Promise)
    return found.then((principal) => (principal ? admitted(request, principal, scope) : refused(limiter, address)))
  return found ? admitted(request, found, scope) : refused(limiter, address)
}

function admitted(request: Request, principal: Principal, scope: Scope | 'any'): Principal {
  principals.set(request, principal)
  const state = requestState(request)
  if (state) state.keyId = principal.id
  if (scope !== 'any' && !hasScope(principal, scope)) throw new ForbiddenError(scope)
  return principal
}

/** Refuses an address that has spent its failed attempts; forgets it once its standing is whole again. */
async function inGoodStanding(limiter: RateLimiter, address: string): Promise<void> {
  const standing = await limiter.peek('auth_failures', address)
  if (!standing.allowed) throw new RateLimitedError('auth_failures', standing.resetS, rateLimitHeaders(standing))
  if (standing.remaining === standing.limit) failedLately.delete(address)
}

/** A failed attempt: counted against the address, then 401 (or 429 once it has spent its attempts). */
async function refused(limiter: RateLimiter, address: string): Promise<never> {
  if (failedLately.size >= FAILED_LATELY_MAX) failedLately.clear()
  failedLately.add(address)
  const failure = await limiter.consume('auth_failures', address)
  const headers = rateLimitHeaders(failure)
  if (!failure.allowed) throw new RateLimitedError('auth_failures', failure.resetS, headers)
  throw new UnauthorizedError({ headers })
}

const nothing = () => undefined

/** The principal `authenticate` settled for this request. */
export const principalOf = (request: Request): Principal | undefined => principals.get(request)
