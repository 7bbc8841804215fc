import { cors } from '@elysiajs/cors'

/** Headers browsers may read from vireo's answers. */
export const EXPOSED_HEADERS = [
  'X-Request-Id',
  'API-Version',
  'Retry-After',
  'RateLimit',
  'RateLimit-Policy',
  'Location',
  'Preference-Applied',
  'Deprecation',
  'Sunset',
  'Link',
  // The Open Inference Protocol's binary answers say where their JSON header ends.
  'Inference-Header-Content-Length',
]

/**
 * CORS from an exact-origin allowlist (`['*']` allows any origin, refused in production by config).
 * A disallowed origin gets no `Access-Control-Allow-Origin`.
 * @example app.use(corsPolicy(['https://app.example.com']))
 */
export const corsPolicy = (origins: string[]) =>
  cors({
    origin: origins,
    // One string, not an array: the plugin joins an array again on every request.
    methods: 'GET, POST, DELETE, OPTIONS',
    allowedHeaders: [
      'Authorization',
      'X-API-Key',
      'Content-Type',
      'X-Request-Id',
      'API-Version',
      'Accept-Version',
      'Idempotency-Key',
      'Prefer',
      'Inference-Header-Content-Length',
    ],
    exposeHeaders: EXPOSED_HEADERS,
    credentials: false,
    maxAge: 600,
  })
