import type { Database } from '../../db/client'
import type { Registry } from '../../inference/registry'

export type CheckStatus = 'ok' | 'degraded' | 'fail'

export interface CheckResult {
  name: string
  status: CheckStatus
  detail?: unknown
}

/** A named readiness probe; the inference registry adds one for the models. */
export type ReadinessCheck = () => Promise<CheckResult> | CheckResult

export interface HealthDeps {
  database: Pick<Database, 'ping'>
  dbTimeoutMs: number
  lifecycle: { shuttingDown: boolean }
  checks: ReadinessCheck[]
}

/** Ready when every check passes, degraded when one is degraded, unavailable when any fails or vireo is stopping. */
export async function readiness(deps: HealthDeps): Promise<{ status: 'ready' | 'degraded' | 'unavailable'; checks: CheckResult[] }> {
  const database = deps.database
    .ping(deps.dbTimeoutMs)
    .then((): CheckResult => ({ name: 'database', status: 'ok' }))
    .catch((error: Error): CheckResult => ({ name: 'database', status: 'fail', detail: error.message }))
  const checks = await Promise.all([database, ...deps.checks.map(async (check) => check())])
  if (deps.lifecycle.shuttingDown) checks.push({ name: 'lifecycle', status: 'fail', detail: 'shutting down' })
  const status = checks.some((c) => c.status === 'fail')
    ? 'unavailable'
    : checks.some((c) => c.status === 'degraded')
      ? 'degraded'
      : 'ready'
  return { status, checks }
}

/** The model slot of readiness: fail when no model is ready or a required one is not; degraded when some are down. */
export function modelsCheck(registry: Pick<Registry, 'list'>, required: string[]): CheckResult {
  const models = registry.list()
  const byStatus = (status: string) => models.filter((m) => m.status === status).map((m) => m.name)
  const detail = { ready: byStatus('ready'), loading: byStatus('loading'), failed: byStatus('failed'), unhealthy: byStatus('unhealthy') }
  const missing = required.filter((name) => !detail.ready.includes(name))
  if (detail.ready.length === 0 || missing.length)
    return { name: 'models', status: 'fail', detail: { ...detail, required_not_ready: missing } }
  return { name: 'models', status: detail.ready.length === models.length ? 'ok' : 'degraded', detail }
}
