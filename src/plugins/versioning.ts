import { Elysia } from 'elysia'
import { UnsupportedApiVersionError } from '../errors'

export const API_VERSION = '1'
export const API_PREFIX = '/api/v1'
/** The Open Inference Protocol (KServe v2) routes: bare protocol JSON, beside the enveloped /api/v1. */
export const OIP_PREFIX = '/v2'

/** Whether a path is under `/v2`, whose answers, errors included, are shaped by the protocol rather than the envelope. */
export const isOipPath = (pathname: string) => pathname === OIP_PREFIX || pathname.startsWith(`${OIP_PREFIX}/`)

export interface Deprecation {
  /** When the route became deprecated. */
  since: Date
  /** When it stops answering. */
  sunset: Date
  /** Where the replacement or migration notes live. */
  link: string
}

/** Headers that announce a deprecated route (RFC 9745 `Deprecation`, RFC 8594 `Sunset`). */
export function deprecationHeaders(deprecation: Deprecation): Record<string, string> {
  return {
    deprecation: `@${Math.floor(deprecation.since.getTime() / 1000)}`,
    sunset: deprecation.sunset.toUTCString(),
    link: `<${deprecation.link}>; rel="deprecation"; type="text/html"`,
  }
}

/**
 * Pins the API version: answers carry `API-Version: 1`; a request asking for another version
 * through `API-Version` or `Accept-Version` is refused. Adds the `deprecated` route option.
 * @example app.use(versioning()).get('/old', handler, { deprecated: { since, sunset, link } })
 */
export const versioning = () =>
  new Elysia({ name: 'vireo.versioning' })
    .headers({ 'api-version': API_VERSION })
    .onRequest(function checkApiVersion({ request }) {
      for (const header of ['api-version', 'accept-version']) {
        const requested = request.headers.get(header)?.trim()
        if (requested && requested !== API_VERSION && requested !== `v${API_VERSION}`)
          throw new UnsupportedApiVersionError(requested.slice(0, 32), API_VERSION)
      }
    })
    .macro({
      deprecated: (deprecation: Deprecation) => ({
        detail: { deprecated: true },
        beforeHandle: function announceDeprecation({ set }) {
          Object.assign(set.headers, deprecationHeaders(deprecation))
        },
      }),
    })
