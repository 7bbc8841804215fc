import { isIP } from 'node:net'
import { availableParallelism } from 'node:os'
import { type Static, Type as t } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'

/**
 * Every setting vireo has. Values arrive as strings from the environment, are
 * converted and checked once, and the resulting `Config` is passed to whatever
 * needs it. Nothing else reads `process.env`.
 */
const Int = (def: number, min: number, max = Number.MAX_SAFE_INTEGER, description = '') =>
  t.Integer({ default: def, minimum: min, maximum: max, description })
const Rate = (def: string, description: string) =>
  t.String({ default: def, pattern: '^[1-9][0-9]*/[1-9][0-9]*$', description: `${description} ("<requests>/<window seconds>")` })

export const EnvSchema = t.Object({
  NODE_ENV: t.Union([t.Literal('development'), t.Literal('production'), t.Literal('test')], { default: 'development' }),
  HOST: t.String({ default: '0.0.0.0', minLength: 1 }),
  PORT: Int(3000, 0, 65535),
  LOG_LEVEL: t.Optional(t.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => t.Literal(l)))),
  CORS_ORIGINS: t.Optional(t.String()),
  HSTS_MAX_AGE_MS: Int(31536000000, 0),
  TRUST_PROXY: t.String({
    default: '0',
    description: 'Proxies in front of vireo: their number (hops counted from the right of X-Forwarded-For) or their addresses/CIDRs',
  }),
  MAX_JSON_BYTES: Int(1048576, 1),
  MAX_UPLOAD_BYTES: Int(52428800, 1),
  SHUTDOWN_GRACE_MS: Int(10000, 0),
  DATABASE_URL: t.Optional(t.String({ pattern: '^postgres(ql)?://' })),
  PGLITE_DIR: t.String({ default: '.data/pglite', minLength: 1 }),
  PGLITE_COLLECT_EVERY_MB: Int(64, 0, 65536),
  DB_POOL_MAX: Int(10, 1, 1000),
  DB_CONNECT_TIMEOUT_MS: Int(5000, 1),
  DB_IDLE_TIMEOUT_MS: Int(30000, 0),
  DB_MAX_LIFETIME_MS: Int(1800000, 0),
  DB_STATEMENT_TIMEOUT_MS: Int(15000, 0),
  HEALTH_DB_TIMEOUT_MS: Int(1000, 1),
  MODELS_DIR: t.String({ default: 'models', minLength: 1 }),
  MODELS_REQUIRED: t.String({ default: '' }),
  MODELS_HEALTH_INTERVAL_MS: Int(30000, 0),
  INFERENCE_BACKENDS: t.String({
    default: '',
    pattern: '^ *((cpu|webgpu|wasm) *(, *(cpu|webgpu|wasm) *)*)?$',
    description: "comma list tried in this order for every model; empty = each manifest's order",
  }),
  INFERENCE_WORKERS: Int(0, 0, 256),
  INFERENCE_QUEUE_MAX: Int(256, 0),
  INFERENCE_MAX_TIMEOUT_MS: Int(60000, 1),
  INFERENCE_TERMINATION_GRACE_MIN_MS: Int(
    50,
    0,
    Number.MAX_SAFE_INTEGER,
    "least time a run whose caller gave up may still finish in before its worker is terminated (the grace is 4 x the model's recent p99)",
  ),
  INFERENCE_TERMINATIONS_PER_KEY_PER_MIN: Int(
    10,
    0,
    Number.MAX_SAFE_INTEGER,
    'worker terminations one API key may cause per minute through timeouts and disconnects; past it its requests answer 429; 0: no limit',
  ),
  INFERENCE_MAX_BATCH: Int(64, 1, 10000),
  INFERENCE_MAX_ELEMENTS: Int(1048576, 1),
  INFERENCE_WORKER_RECYCLE_AFTER: Int(100000, 0),
  INFERENCE_WORKER_MAX_HEAP_MB: Int(512, 0),
  MAX_AUDIO_MS: Int(3600000, 1),
  VAD_STREAM_MAX_PER_KEY: Int(16, 1),
  VAD_STREAM_IDLE_MS: Int(30000, 1),
  VAD_STREAM_MAX_DURATION_MS: Int(3600000, 1),
  // At most Bun's own WebSocket message cap (16 MiB; Deno's is 64 MiB), so vireo's own 1009 with its error event is
  // what a client gets for a message over the limit, on either runtime.
  VAD_STREAM_MAX_MESSAGE_BYTES: Int(262144, 64, 16 * 1024 * 1024),
  VAD_STREAM_BATCH_DELAY_MS: Int(
    8,
    0,
    50,
    "how long a realtime frame may wait in Silero's batcher for other streams' frames (added to every event's lag; bigger batches cost less per frame)",
  ),
  ADMIN_API_KEY: t.Optional(t.String({ pattern: '^[A-Za-z0-9_-]{32,256}$' })),
  METRICS_TOKEN: t.Optional(t.String({ minLength: 16 })),
  AUTH_CACHE_TTL_MS: Int(5000, 0, 5000),
  REDIS_URL: t.Optional(t.String({ pattern: '^rediss?://' })),
  RATE_LIMIT_PUBLIC: Rate('120/60', 'public routes, per client IP'),
  RATE_LIMIT_INFERENCE: Rate('600/60', 'inference routes, per API key'),
  RATE_LIMIT_JOBS: Rate('120/60', 'job routes, per API key'),
  RATE_LIMIT_ADMIN: Rate('60/60', 'admin routes, per API key'),
  RATE_LIMIT_AUTH_FAILURES: Rate('30/60', 'failed authentications, per client IP; past it, key checks answer 429 without a lookup'),
  JOBS_CONCURRENCY: Int(2, 0, 256),
  JOBS_MAX_ATTEMPTS: Int(5, 1, 100),
  JOBS_LEASE_MS: Int(30000, 1000),
  JOBS_POLL_MS: Int(500, 10),
  JOBS_BACKOFF_BASE_MS: Int(1000, 1),
  JOBS_BACKOFF_MAX_MS: Int(300000, 1),
  JOBS_IDEMPOTENCY_TTL_MS: Int(86400000, 1),
  JOBS_RETENTION_MS: Int(604800000, 1),
})
export type Env = Static<typeof EnvSchema>

export interface RateLimitRule {
  points: number
  durationS: number
}

export type Config = Omit<
  Env,
  | 'CORS_ORIGINS'
  | 'MODELS_REQUIRED'
  | 'INFERENCE_BACKENDS'
  | 'LOG_LEVEL'
  | 'RATE_LIMIT_PUBLIC'
  | 'RATE_LIMIT_INFERENCE'
  | 'RATE_LIMIT_JOBS'
  | 'RATE_LIMIT_ADMIN'
  | 'RATE_LIMIT_AUTH_FAILURES'
  | 'TRUST_PROXY'
> & {
  /** Which X-Forwarded-For hops are believed: a number of proxies, or the proxies' own addresses. */
  TRUST_PROXY: TrustProxy
  LOG_LEVEL: NonNullable<Env['LOG_LEVEL']>
  /** Exact origins allowed by CORS; `['*']` allows any (refused in production). */
  CORS_ORIGINS: string[]
  MODELS_REQUIRED: string[]
  /** Backends tried in this order for every model; empty: each manifest's own order. */
  INFERENCE_BACKENDS: string[]
  RATE_LIMITS: Record<'public' | 'inference' | 'jobs' | 'admin' | 'auth_failures', RateLimitRule>
}

const list = (value: string | undefined) =>
  (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)

/** `hops`: that many proxies append to X-Forwarded-For (0: ignore it). `proxies`: addresses or CIDRs of trusted proxies. */
export type TrustProxy = { hops: number } | { proxies: string[] }

/** TRUST_PROXY as a number of hops or a list of addresses/CIDRs, or the reason it is neither. */
export function parseTrustProxy(value: string): TrustProxy | string {
  if (value === 'false') return { hops: 0 }
  if (value === 'true')
    return 'true would believe the leftmost X-Forwarded-For hop, which the client writes; give the number of proxies (e.g. 1) or their addresses'
  if (/^\d+$/.test(value)) return Number(value) <= 32 ? { hops: Number(value) } : 'at most 32 proxy hops'
  const proxies = list(value)
  const bad = proxies.filter((p) => {
    const [address = '', bits, extra] = p.split('/')
    const family = isIP(address)
    const max = family === 6 ? 128 : 32
    return !family || extra !== undefined || (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= max))
  })
  return bad.length || !proxies.length ? `not a number of hops nor IP addresses/CIDRs: ${bad.join(', ') || value}` : { proxies }
}

/** Production admin keys must carry at least this much (estimated) randomness. */
const MIN_ADMIN_KEY_BITS = 128

/**
 * Estimated strength of a key: its length times the Shannon entropy of its characters. A repeated character
 * or a short alphabet scores low; 32 random base64url characters score about 150.
 * @example keyStrengthBits('a'.repeat(64)) // 0
 */
export function keyStrengthBits(key: string): number {
  const counts = new Map<string, number>()
  for (const c of key) counts.set(c, (counts.get(c) ?? 0) + 1)
  let perChar = 0
  for (const n of counts.values()) perChar -= (n / key.length) * Math.log2(n / key.length)
  return perChar * key.length
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
  }
}

const rate = (value: string): RateLimitRule => {
  const [points, durationS] = value.split('/').map(Number)
  return { points: points as number, durationS: durationS as number }
}

/**
 * Parse the environment into a `Config`, or throw one `ConfigError` naming every bad variable.
 * @example const config = loadConfig(process.env)
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const known = Object.keys(EnvSchema.properties)
  const raw: Record<string, unknown> = {}
  for (const key of known) {
    const value = env[key]
    if (value !== undefined && value !== '') raw[key] = value
  }
  const converted = Value.Convert(EnvSchema, Value.Default(EnvSchema, { ...raw }))
  const problems: string[] = []
  for (const error of Value.Errors(EnvSchema, converted)) {
    const key = error.path.slice(1)
    const schema = error.schema as { anyOf?: { const: unknown }[] }
    const why = schema.anyOf ? `expected one of ${schema.anyOf.map((s) => s.const).join(', ')}` : error.message
    problems.push(`${key}=${JSON.stringify(raw[key] ?? null)}: ${why}`)
  }
  for (const [key, schema] of Object.entries(EnvSchema.properties)) {
    if (schema.type === 'integer' && typeof raw[key] === 'string' && !/^-?\d+$/.test(raw[key] as string))
      if (!problems.some((p) => p.startsWith(`${key}=`))) problems.push(`${key}=${JSON.stringify(raw[key])}: expected a whole number`)
  }
  const parsed = converted as Env
  const corsOrigins = list(parsed.CORS_ORIGINS)
  for (const origin of corsOrigins) {
    if (origin !== '*' && !/^https?:\/\/[^/\s]+$/.test(origin))
      problems.push(`CORS_ORIGINS: "${origin}" is not an origin like https://app.example.com (scheme and host, no path)`)
  }
  const trustProxy = parseTrustProxy(parsed.TRUST_PROXY)
  if (typeof trustProxy === 'string') problems.push(`TRUST_PROXY=${JSON.stringify(parsed.TRUST_PROXY)}: ${trustProxy}`)
  if (parsed.NODE_ENV === 'production') {
    if (corsOrigins.length === 0 || corsOrigins.includes('*'))
      problems.push('CORS_ORIGINS: production needs an explicit list of allowed origins (unset and "*" are refused)')
    if (!parsed.ADMIN_API_KEY)
      problems.push('ADMIN_API_KEY: production needs an operator-chosen admin key (32-256 characters of A-Z a-z 0-9 _ -)')
    else if (keyStrengthBits(parsed.ADMIN_API_KEY) < MIN_ADMIN_KEY_BITS)
      problems.push(
        `ADMIN_API_KEY: too predictable for production (about ${Math.floor(keyStrengthBits(parsed.ADMIN_API_KEY))} bits; needs ${MIN_ADMIN_KEY_BITS}): generate one, e.g. openssl rand -base64 48 | tr '+/' '-_' | tr -d '='`,
      )
  }
  if (problems.length) throw new ConfigError(problems)

  const defaultLevel = { development: 'debug', production: 'info', test: 'silent' } as const
  return {
    ...parsed,
    LOG_LEVEL: parsed.LOG_LEVEL ?? defaultLevel[parsed.NODE_ENV],
    INFERENCE_WORKERS: parsed.INFERENCE_WORKERS || availableParallelism(),
    CORS_ORIGINS: corsOrigins.length ? corsOrigins : ['*'],
    TRUST_PROXY: trustProxy as TrustProxy,
    MODELS_REQUIRED: list(parsed.MODELS_REQUIRED),
    INFERENCE_BACKENDS: [...new Set(list(parsed.INFERENCE_BACKENDS))],
    RATE_LIMITS: {
      public: rate(parsed.RATE_LIMIT_PUBLIC),
      inference: rate(parsed.RATE_LIMIT_INFERENCE),
      jobs: rate(parsed.RATE_LIMIT_JOBS),
      admin: rate(parsed.RATE_LIMIT_ADMIN),
      auth_failures: rate(parsed.RATE_LIMIT_AUTH_FAILURES),
    },
  }
}
