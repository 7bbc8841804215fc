import { Elysia } from 'elysia'

export interface SecurityHeadersOptions {
  /** Seconds for `Strict-Transport-Security`; only sent when `production` is true. */
  hstsMaxAgeMs: number
  production: boolean
}

/** The CSP for JSON answers: nothing may load, nothing may frame. */
export const API_CSP = "default-src 'none'; frame-ancestors 'none'"

/**
 * Security headers on every response, errors included. Routes serving HTML (the docs page)
 * replace `Content-Security-Policy` and `Cache-Control` with their own.
 * @example app.use(securityHeaders({ hstsMaxAgeMs: 31536000000, production: true }))
 */
export const securityHeaders = (options: SecurityHeadersOptions) => {
  const headers: Record<string, string> = {
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'content-security-policy': API_CSP,
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
    'cross-origin-resource-policy': 'same-origin',
  }
  if (options.production) headers['strict-transport-security'] = `max-age=${Math.floor(options.hstsMaxAgeMs / 1000)}; includeSubDomains`
  // Elysia's default headers: computed once here, copied into each request's `set.headers` by the compiled handler
  // (errors and unmatched routes included), with no hook of their own.
  return new Elysia({ name: 'vireo.security-headers', seed: options }).headers(headers)
}
