import { Elysia } from 'elysia'
import type { Logger } from '../logger'

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

  /** A logger whose lines carry this request's id (and key id); made on first use, as most requests never need it. */
  get log(): Logger {
    this.child ??= this.base.child(this.keyId ? { request_id: this.id, key_id: this.keyId } : { request_id: this.id })
    return this.child
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
  trustProxy: boolean
}

/** Client address: the first `X-Forwarded-For` hop only behind a trusted proxy, else the socket peer. */
export function clientIp(request: Request, socketIp: string | undefined, trustProxy: boolean): string {
  if (trustProxy) {
    const forwarded = request.headers.get('x-forwarded-for')?.split(',')[0]?.trim()
    if (forwarded) return forwarded
  }
  return socketIp ?? 'unknown'
}

/**
 * Assigns every request an id (kept from a valid `X-Request-Id`), a child logger carrying it, and the client IP.
 * @example app.use(requestId({ logger, trustProxy: false }))
 */
export const requestId = (options: RequestIdOptions) =>
  new Elysia({ name: 'vireo.request-id' }).onRequest(function assignRequestId({ request, set, server }) {
    const id = pickRequestId(request.headers.get('x-request-id'))
    const ip = clientIp(request, server?.requestIP(request)?.address, options.trustProxy)
    states.set(request, new RequestState(id, performance.now(), ip, options.logger))
    set.headers['x-request-id'] = id
  })
