import { BlockList, isIP } from 'node:net'
import { Elysia } from 'elysia'
import type { TrustProxy } from '../config'
import { flatInfoWriter, type Logger } from '../logger'
import type { RequestObservation } from '../metrics/service'
import { seedOf } from './seed'

/** What vireo knows about one request from its first hook to its log line. */
export class RequestState {
  /** Key id once authenticated, for logs and rate limits. */
  keyId?: string
  private child?: Logger

  constructor(
    readonly id: string,
    readonly startedAt: number,
    /** Client IP as decided by TRUST_PROXY. */
    readonly ip: string,
    private readonly base: Logger,
  ) {}

  /**
   * A logger whose lines carry this request's id (and key id), made on first use: for a long-lived WebSocket
   * stream. Per-request lines go through the base logger with `fields()` instead, so no request makes a child.
   */
  get log(): Logger {
    this.child ??= this.base.child(this.fields())
    return this.child
  }

  /** The fields that tie a log line to this request. */
  fields(): { request_id: string; key_id?: string } {
    return this.keyId ? { request_id: this.id, key_id: this.keyId } : { request_id: this.id }
  }
}

const states = new WeakMap<Request, RequestState>()

/** The state of a request, available in every hook after `onRequest` (including error and after-response hooks). */
export function requestState(request: Request): RequestState | undefined {
  return states.get(request)
}

const VALID_ID = /^[A-Za-z0-9._-]{1,128}$/

/** Keep a well-formed incoming id so traces join up across services; replace anything else. */
export function pickRequestId(incoming: string | null): string {
  return incoming && VALID_ID.test(incoming) ? incoming : crypto.randomUUID()
}

export interface RequestIdOptions {
  logger: Logger
  trustProxy: TrustProxy
  /** Called once per finished request, after its access line (metrics). */
  onResponse?: (entry: RequestObservation) => void
  /**
   * The address of the socket a request came on (`app.server?.requestIP`); undefined logs and limits the client as
   * "unknown". Required, so an app composed without it cannot put every anonymous client in one rate-limit bucket
   * unnoticed. Passed in rather than read from the hook's `server`: a hook that names `server` makes Elysia define
   * that getter on every request's context, on every route.
   */
  peer: (request: Request) => string | undefined
}

/** Whether an address belongs to a trusted proxy, from TRUST_PROXY's addresses and CIDRs. */
function proxyMatcher(proxies: string[]): (address: string) => boolean {
  const trusted = new BlockList()
  for (const proxy of proxies) {
    const [address = '', bits] = proxy.split('/')
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4'
    if (bits === undefined) trusted.addAddress(address, family)
    else trusted.addSubnet(address, Number(bits), family)
  }
  return (address) => {
    const family = isIP(address)
    return family !== 0 && trusted.check(address, family === 6 ? 'ipv6' : 'ipv4')
  }
}

/**
 * Client address. Each proxy appends the peer it saw to X-Forwarded-For, so the chain is read from the right:
 * past `hops` proxies, or past every trusted proxy address. The leftmost entries are the client's to write and
 * are never believed on their own. `peer` is asked only when the answer needs it: Bun looks the socket's address up
 * with a system call (getpeername) each time, ≈ 5 µs a request on the development VM, and a chain past N hops
 * never needs it.
 * @example clientIp(request, () => '10.0.0.5', { hops: 1 }) // the address the one proxy saw
 */
export function clientIp(
  request: Request,
  peer: (request: Request) => string | undefined,
  trust: TrustProxy,
  isProxy?: (address: string) => boolean,
): string {
  const socket = () => peer(request) ?? 'unknown'
  const header = request.headers.get('x-forwarded-for')
  if (!header || ('hops' in trust && trust.hops === 0)) return socket()
  const forwarded = header
    .split(',')
    .map((hop) => hop.trim())
    .filter(Boolean)
  // Past one hop or more the answer is in the header itself: the peer would be the chain's last entry.
  if ('hops' in trust) return forwarded.length ? forwarded[Math.max(0, forwarded.length - trust.hops)]! : socket()
  const chain = [...forwarded, socket()]
  const trusted = isProxy ?? proxyMatcher(trust.proxies)
  let at = chain.length - 1
  while (at > 0 && trusted(chain[at]!)) at--
  return chain[at]!
}

/**
 * The request's whole life in one pair of hooks. `onRequest`: an id (kept from a valid `X-Request-Id`), the client
 * IP and the start time. `onAfterResponse`: one access line (request_id, method, route pattern, status, duration_ms,
 * ip, key_id) and the metrics. Headers are never logged, so keys and cookies cannot leak through this line.
 * @example app.use(requestId({ logger, trustProxy: false, onResponse: metrics.observeRequest, peer: (r) => app.server?.requestIP(r)?.address }))
 */
export const requestId = (options: RequestIdOptions) => {
  const { logger, trustProxy, onResponse, peer } = options
  const isProxy = 'proxies' in trustProxy ? proxyMatcher(trustProxy.proxies) : undefined
  // The access line has a fixed shape with no secret in it: a logger without the redaction paths, made once, spares
  // every request pino's per-field redaction walk (the largest cost of a log line in the profile), and the usual
  // line skips pino's per-field serializing too (flatInfoWriter).
  const access = logger.child({}, { redact: [] })
  const writeAccess = flatInfoWriter(access)
  return new Elysia({ name: 'vireo.request-id', seed: seedOf(logger, trustProxy, onResponse, peer) })
    .onRequest(function assignRequestId({ request, set }) {
      const id = pickRequestId(request.headers.get('x-request-id'))
      const ip = clientIp(request, peer, trustProxy, isProxy)
      states.set(request, new RequestState(id, performance.now(), ip, logger))
      set.headers['x-request-id'] = id
    })
    .onAfterResponse({ as: 'global' }, function logRequest({ request, route, set }) {
      const state = states.get(request)
      if (!state) return
      const durationMs = performance.now() - state.startedAt
      const status = typeof set.status === 'number' ? set.status : 200
      const pattern = route || 'unmatched'
      const line = {
        request_id: state.id,
        method: request.method,
        route: pattern,
        status,
        duration_ms: Math.round(durationMs * 100) / 100,
        ip: state.ip,
        key_id: state.keyId,
      }
      if (status >= 500) access.error(line, 'request failed')
      else writeAccess(line, 'request')
      onResponse?.({ method: line.method, route: pattern, status, durationS: durationMs / 1000 })
    })
}
