import { describe } from 'bun:test'
import postgres from 'postgres'

/**
 * Tests that need a real PostgreSQL server. CI sets TEST_POSTGRES_ADMIN_URL (and CI=true): there the
 * tests run and fail when the server is unreachable. Outside CI without the variable they are skipped
 * with a warning, so a laptop without PostgreSQL can still run the rest.
 */
export const POSTGRES_ADMIN_URL =
  process.env.TEST_POSTGRES_ADMIN_URL ?? (process.env.CI ? 'postgres://postgres@127.0.0.1:5432/postgres' : undefined)

export const describePostgres: typeof describe = ((name: string, fn: () => void) => {
  if (POSTGRES_ADMIN_URL) return describe(name, fn)
  console.warn(`[skip] "${name}" needs PostgreSQL: set TEST_POSTGRES_ADMIN_URL (CI always does)`)
  return describe.skip(name, fn)
}) as typeof describe

export interface FreshDatabase {
  url: string
  /** A connection to the admin database, for inspecting pg_stat_activity and the like. */
  admin: postgres.Sql
  drop(): Promise<void>
}

/** A new, empty database on the real server, dropped by `drop()`. */
export async function freshDatabase(): Promise<FreshDatabase> {
  if (!POSTGRES_ADMIN_URL) throw new Error('TEST_POSTGRES_ADMIN_URL is not set')
  const admin = postgres(POSTGRES_ADMIN_URL, { max: 2, onnotice: () => {} })
  const name = `vireo_t_${Date.now()}_${Math.floor(Math.random() * 1e6)}`
  await admin.unsafe(`CREATE DATABASE ${name}`)
  const url = new URL(POSTGRES_ADMIN_URL)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    admin,
    async drop() {
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      await admin.end()
    },
  }
}
