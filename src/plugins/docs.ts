import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { openapi } from '@elysiajs/openapi'
import { Elysia } from 'elysia'
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

/**
 * Swagger UI at `/api/v1/docs`, its assets served from `swagger-ui-dist` (works offline),
 * and the OpenAPI document at `/api/v1/docs/json`.
 * @example app.use(docs({ version: '0.1.0' }))
 */
export const docs = (options: DocsOptions) =>
  new Elysia({ name: 'vireo.docs' })
    .use(
      openapi({
        path: DOCS_PATH,
        provider: null,
        documentation: {
          info: {
            title: 'vireo',
            version: options.version,
            description:
              'Edge-ready ML inference API. Every JSON answer uses one envelope: `{ success, data, message?, errors }` on success, `{ success: false, error: { code, message, details? }, request_id }` on failure.',
            license: { name: 'MIT', url: 'https://opensource.org/license/mit' },
            contact: { name: 'vireo maintainers', url: 'https://github.com/vireo' },
          },
          servers: [{ url: '/', description: 'this server' }],
          tags: [
            { name: 'meta', description: 'Service information and health' },
            { name: 'models', description: 'Model registry and tensor inference' },
            { name: 'audio', description: 'Voice activity detection' },
            { name: 'keys', description: 'API keys' },
            { name: 'jobs', description: 'Asynchronous jobs with retries' },
          ],
        },
        exclude: { methods: ['options'] },
      }),
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
