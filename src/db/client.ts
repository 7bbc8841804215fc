import { mkdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { PGlite } from '@electric-sql/pglite'
import { sql } from 'drizzle-orm'
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core'
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite'
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator'
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js'
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator'
import postgres from 'postgres'
import type { Config } from '../config'
import { ServiceUnavailableError } from '../errors'
import { type CollectionPacer, startCollectionPacer } from './collection-pacer'
import * as schema from './schema'

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0]

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../drizzle', import.meta.url))

export interface Database {
  db: Db
  kind: 'pglite' | 'postgres'
  /** Apply pending migrations from `drizzle/`; a no-op when all are applied. */
  migrate(): Promise<void>
  /** Round trip to the server, failing after `timeoutMs`. */
  ping(timeoutMs: number): Promise<void>
  /** PGlite under Bun: the collections paced for it (`PGLITE_COLLECT_EVERY_MB`; see collection-pacer.ts). */
  pacer?: CollectionPacer
  close(): Promise<void>
}

export type DatabaseOptions = Pick<
  Config,
  | 'DATABASE_URL'
  | 'PGLITE_DIR'
  | 'PGLITE_COLLECT_EVERY_MB'
  | 'DB_POOL_MAX'
  | 'DB_CONNECT_TIMEOUT_MS'
  | 'DB_IDLE_TIMEOUT_MS'
  | 'DB_MAX_LIFETIME_MS'
  | 'DB_STATEMENT_TIMEOUT_MS'
> & {
  /** PGlite only: keep the data in memory (tests). */
  inMemory?: boolean
}

/**
 * PostgreSQL through postgres.js when `DATABASE_URL` is set, embedded PGlite otherwise.
 * @example const database = await openDatabase(config); await database.migrate()
 */
export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.DATABASE_URL) {
    const client = postgres(options.DATABASE_URL, {
      max: options.DB_POOL_MAX,
      connect_timeout: Math.ceil(options.DB_CONNECT_TIMEOUT_MS / 1000),
      idle_timeout: options.DB_IDLE_TIMEOUT_MS / 1000,
      max_lifetime: options.DB_MAX_LIFETIME_MS / 1000,
      onnotice: () => {},
      connection: {
        application_name: 'vireo',
        statement_timeout: options.DB_STATEMENT_TIMEOUT_MS,
        idle_in_transaction_session_timeout: options.DB_STATEMENT_TIMEOUT_MS * 2,
      },
    })
    const db = drizzlePostgres(client, { schema }) as unknown as Db
    return {
      db,
      kind: 'postgres',
      migrate: () => migrateInTurn(options.DATABASE_URL!, () => migratePostgres(db as never, { migrationsFolder: MIGRATIONS_DIR })),
      ping: (timeoutMs) => withTimeout(db.execute(sql`select 1`), timeoutMs),
      close: () => client.end({ timeout: 5 }),
    }
  }
  // PGlite creates its own folder but not the ones above it (the default is .data/pglite in a fresh clone).
  if (!options.inMemory) await mkdir(options.PGLITE_DIR, { recursive: true })
  const client = options.inMemory ? new PGlite() : new PGlite(options.PGLITE_DIR)
  await client.waitReady
  const db = drizzlePglite(client, { schema }) as unknown as Db
  const pacer = startCollectionPacer({ everyBytes: options.PGLITE_COLLECT_EVERY_MB * 2 ** 20 })
  return {
    db,
    kind: 'pglite',
    migrate: () => migratePglite(db as never, { migrationsFolder: MIGRATIONS_DIR }),
    ping: (timeoutMs) => withTimeout(db.execute(sql`select 1`), timeoutMs),
    pacer,
    close: () => {
      pacer?.stop()
      return client.close()
    },
  }
}

/**
 * Replicas started together on a fresh database would each apply the same migrations, and all but one would fail
 * on tables the first had just created. Each migrates holding a session advisory lock, so they take turns and the
 * later ones find nothing left to do. The lock lives on a connection of its own, outside the pool (which may be a
 * single connection, needed by the migration itself) and without its statement timeout (the wait is a turn).
 */
async function migrateInTurn(url: string, migrate: () => Promise<unknown>): Promise<void> {
  const lock = postgres(url, { max: 1, onnotice: () => {}, connection: { application_name: 'vireo-migrate' } })
  try {
    await lock`select pg_advisory_lock(hashtext('vireo.migrate'))`
    await migrate()
  } finally {
    // Ending the session releases the lock, whether the migration succeeded or not.
    await lock.end({ timeout: 5 })
  }
}

/**
 * Run `fn` in one transaction: committed when it resolves, rolled back when it throws
 * (the connection goes back to the pool either way).
 * @example await transaction(db, async (tx) => { await tx.insert(jobs).values(row) })
 */
export function transaction<T>(db: Db, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return db.transaction(fn)
}

async function withTimeout(work: Promise<unknown>, timeoutMs: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ServiceUnavailableError(`database did not answer within ${timeoutMs} ms`)), timeoutMs)
  })
  try {
    await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
}
