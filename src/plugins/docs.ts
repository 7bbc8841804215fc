import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { toOpenAPISchema } from '@elysiajs/openapi'
import { type AnyElysia, Elysia, type InternalRoute } from 'elysia'
import { NotFoundError } from '../errors'
import { API_PREFIX } from './versioning'

const DOCS_PATH = `${API_PREFIX}/docs`

/** The docs page loads only its own scripts and styles, from vireo itself. */
export const DOCS_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vireo API</title>
<link rel="stylesheet" href="${DOCS_PATH}/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="${DOCS_PATH}/assets/swagger-ui-bundle.js"></script>
<script src="${DOCS_PATH}/assets/init.js"></script>
</body>
</html>
`

const INIT = `window.ui = SwaggerUIBundle({ url: '${DOCS_PATH}/json', dom_id: '#swagger-ui', deepLinking: true })\n`

const assetDir = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'))
const cache = new Map<string, Promise<string>>()

export interface DocsOptions {
  version: string
}

const OPENAPI_VERSION = '3.1.2'
const EXCLUDE = { methods: ['options'] }

/** Everything in the document that is not generated from the routes. */
const documentation = (version: string) => ({
  info: {
    title: 'vireo',
    version,
    description:
      'Edge-ready ML inference API. Every JSON answer uses one envelope: `{ success, data, message?, errors }` on success, `{ success: false, error: { code, message, details? }, request_id }` on failure.',
    license: { name: 'MIT', url: 'https://opensource.org/license/mit' },
    contact: { name: 'vireo maintainers', url: 'https://github.com/vireo' },
  },
  servers: [{ url: '/', description: 'The vireo instance serving this document (local, staging or production)', 'x-internal': false }],
  tags: [
    { name: 'meta', description: 'Service information, health and metrics' },
    { name: 'models', description: 'Model registry and tensor inference' },
    { name: 'audio', description: 'Voice activity detection' },
    { name: 'keys', description: 'API keys' },
    { name: 'jobs', description: 'Asynchronous jobs with retries' },
    { name: 'oip', description: 'Open Inference Protocol (KServe v2) and its Triton extensions: bare OIP JSON, errors as { error }' },
  ],
  // Protected unless a route says otherwise: public routes declare `security: []`, the auth macro sets both schemes.
  security: [{ bearer: [] }, { apiKey: [] }],
  components: {
    securitySchemes: {
      bearer: { type: 'http', scheme: 'bearer', description: 'An API key sent as `Authorization: Bearer <key>`' },
      apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'The same API key sent as `X-API-Key: <key>`' },
    },
  },
})

/**
 * vireo parses bodies with one global function (the body-parser plugin), which Elysia's generator cannot see
 * through, so it would document every body with no media type. Name the parser it implies instead: multipart
 * when the body carries a file, JSON otherwise.
 */
function withBodyMediaType(route: InternalRoute): InternalRoute {
  const body = (route.hooks as { body?: unknown }).body
  if (!body) return route
  const carriesFile = JSON.stringify(body).includes('"format":"binary"')
  return { ...route, hooks: { ...route.hooks, parse: [{ fn: carriesFile ? 'formdata' : 'json' }] } } as InternalRoute
}

/** `t.Integer`/`t.Numeric`/`t.BooleanString` also accept their string form; the wire contract is the plain type. */
const CODED_STRING_FORMATS = new Set(['integer', 'numeric', 'number', 'boolean'])

/**
 * Collapse Elysia's coercing unions (`anyOf: [{ type: 'string', format: 'integer', default: 0 }, { type: 'integer' }]`)
 * to the type they stand for. Their string branch carries a number as `default`, which makes the document invalid.
 * @example finishSchemas({ anyOf: [{ type: 'string', format: 'integer' }, { type: 'integer', minimum: 1 }] }) // { type: 'integer', minimum: 1 }
 */
export function finishSchemas(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(finishSchemas)
  if (node === null || typeof node !== 'object') return node
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(node)) out[key] = finishSchemas(value)
  const anyOf = out.anyOf as Record<string, unknown>[] | undefined
  if (Array.isArray(anyOf) && anyOf.length === 2) {
    const coded = anyOf.find((s) => s.type === 'string' && CODED_STRING_FORMATS.has(String(s.format)))
    const plain = anyOf.find((s) => s !== coded && ['integer', 'number', 'boolean'].includes(String(s.type)))
    if (coded && plain) {
      const { anyOf: _, ...rest } = out
      return { ...rest, ...plain }
    }
  }
  return out
}

/** Headers of an HTTP answer that refuses an upgrade, as on every other route. */
const REFUSAL_HEADERS = {
  RateLimit: { schema: { type: 'string', maxLength: 128 }, description: 'Quota left once the request was counted' },
  'RateLimit-Policy': { schema: { type: 'string', maxLength: 128 }, description: 'The policy the request counts against' },
  'Access-Control-Allow-Origin': { schema: { type: 'string', maxLength: 2048 }, description: 'Sent when the origin is allowed' },
}

/**
 * OpenAPI has no `ws` method: a WebSocket route is the GET that asks for the upgrade, and what it answers
 * before upgrading is all an HTTP contract can say about it.
 */
export function websocketsAsGet<T extends Record<string, unknown>>(paths: Record<string, T>): Record<string, T> {
  const out: Record<string, T> = {}
  for (const [path, item] of Object.entries(paths)) {
    const { ws, ...rest } = item as Record<string, Record<string, unknown> | undefined>
    out[path] = (
      ws
        ? {
            ...rest,
            get: {
              ...ws,
              responses: {
                101: { description: 'Switching Protocols: the stream is open; events follow as JSON text frames' },
                400: { description: 'Unsupported API version (answered before the upgrade)', headers: REFUSAL_HEADERS },
                401: { description: 'Missing or invalid API key (answered before the upgrade)', headers: REFUSAL_HEADERS },
                403: { description: 'The API key lacks the inference scope', headers: REFUSAL_HEADERS },
              },
            },
          }
        : item
    ) as T
  }
  return out
}

/**
 * A module's root route (`.get('/')` under a prefix) is generated as `/api/v1/keys/`; Elysia answers it
 * with or without the slash, and the slash-less form is the one to document.
 */
export function withoutTrailingSlashes<T>(paths: Record<string, T>): Record<string, T> {
  const out: Record<string, T> = {}
  for (const [path, item] of Object.entries(paths)) {
    const key = path.length > 1 ? path.replace(/\/+$/, '') : path
    out[key] = { ...out[key], ...item }
  }
  return out
}

/**
 * Swagger UI at `/api/v1/docs`, its assets served from `swagger-ui-dist` (works offline),
 * and the OpenAPI document at `/api/v1/docs/json`, generated from the routes' schemas.
 * @example app.use(docs({ version: '0.1.0' }))
 */
export const docs = (options: DocsOptions) => {
  const plugin = new Elysia({ name: 'vireo.docs' })
  // The same protected accessors @elysiajs/openapi reads: every route of the app this plugin is mounted in.
  const mounted = plugin as unknown as { getGlobalRoutes(): InternalRoute[]; getGlobalDefinitions(): unknown }
  const fixed = documentation(options.version)
  let cached: { routes: number; document: unknown } | undefined
  return plugin
    .get(
      `${DOCS_PATH}/json`,
      function openApiDocument() {
        const routes = mounted.getGlobalRoutes()
        if (cached?.routes !== routes.length) {
          const source = {
            getGlobalRoutes: () => routes.map(withBodyMediaType),
            getGlobalDefinitions: () => mounted.getGlobalDefinitions(),
          }
          const { paths, components } = toOpenAPISchema(source as unknown as AnyElysia, EXCLUDE, undefined, undefined, OPENAPI_VERSION)
          const document = {
            openapi: OPENAPI_VERSION,
            ...fixed,
            paths: finishSchemas(websocketsAsGet(withoutTrailingSlashes(paths as Record<string, Record<string, unknown>>))),
            components: { ...fixed.components, schemas: finishSchemas(components.schemas) },
          }
          cached = { routes: routes.length, document }
        }
        return cached.document
      },
      { detail: { hide: true } },
    )
    .get(
      DOCS_PATH,
      function docsPage({ set }) {
        set.headers['content-security-policy'] = DOCS_CSP
        set.headers['content-type'] = 'text/html; charset=utf-8'
        set.headers['cache-control'] = 'no-cache'
        return PAGE
      },
      { detail: { hide: true } },
    )
    .get(
      `${DOCS_PATH}/assets/:file`,
      async function docsAsset({ params, set }) {
        set.headers['cache-control'] = 'public, max-age=86400'
        if (params.file === 'init.js') {
          set.headers['content-type'] = 'text/javascript; charset=utf-8'
          return INIT
        }
        const type = ASSETS[params.file]
        if (!type) throw new NotFoundError(`No docs asset named ${params.file}`)
        let text = cache.get(params.file)
        if (!text) {
          text = readFile(join(assetDir, params.file), 'utf8')
          cache.set(params.file, text)
        }
        set.headers['content-type'] = type
        return await text
      },
      { detail: { hide: true } },
    )
}
