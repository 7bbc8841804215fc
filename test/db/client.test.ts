import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { cpSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { eq, sql } from 'drizzle-orm'
import { getTableConfig } from 'drizzle-orm/pg-core'
import { createApp } from '../../src/app'
import { type Database, openDatabase, transaction } from '../../src/db/client'
import { apiKeys, jobs } from '../../src/db/schema'
import { createDeps } from '../../src/deps'
import { ValidationError } from '../../src/errors'
import { createLogger } from '../../src/logger'
import { LogCapture, req, testConfig } from '../helpers'
import { describePostgres, type FreshDatabase, freshDatabase } from '../pg'

const base = testConfig()

async function tables(database: Database): Promise<string[]> {
  const result = await database.db.execute(sql`select table_name from information_schema.tables where table_schema = 'public' order by 1`)
  return (
    (result as unknown as { rows?: { table_name: string }[] }).rows?.map((r) => r.table_name) ??
    (result as unknown as { table_name: string }[]).map((r) => r.table_name)
  )
}

async function migrationCount(database: Database): Promise<number> {
  const result = await database.db.execute(sql`select count(*)::int as n from drizzle.__drizzle_migrations`)
  const rows = (result as unknown as { rows?: { n: number }[] }).rows ?? (result as unknown as { n: number }[])
  return rows[0]!.n
}

const journal = (await import('../../drizzle/meta/_journal.json', { with: { type: 'json' } })).default as { entries: unknown[] }

describe('migrations on an empty PGlite', () => {
  it('apply cleanly, and applying twice is a no-op', async () => {
    const database = await openDatabase({ ...base, DATABASE_URL: undefined, inMemory: true })
    try {
      await database.migrate()
      expect(await tables(database)).toContain('api_keys')
      expect(await migrationCount(database)).toBe(journal.entries.length)
      await database.migrate()
      expect(await migrationCount(database)).toBe(journal.entries.length)
    } finally {
      await database.close()
    }
  })
})

describe('PGlite on disk', () => {
  it('creates its data folder and the folders above it, and keeps data across restarts', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'vireo-pgdir-')), 'nested', 'pglite')
    const first = await openDatabase({ ...base, DATABASE_URL: undefined, PGLITE_DIR: dir })
    await first.migrate()
    await first.db.insert(apiKeys).values({ name: 'kept', prefix: 'keptpref', keyHash: 'k'.repeat(64), scopes: ['jobs'] })
    await first.close()
    const second = await openDatabase({ ...base, DATABASE_URL: undefined, PGLITE_DIR: dir })
    try {
      expect((await second.db.select().from(apiKeys)).map((k) => k.name)).toEqual(['kept'])
    } finally {
      await second.close()
    }
  })
})

describe('schema', () => {
  it('declares an index for each query the jobs table serves, and its owner key', () => {
    const config = getTableConfig(jobs)
    expect(config.indexes.map((i) => i.config.name).sort()).toEqual([
      'jobs_created_idx',
      'jobs_finished_idx',
      'jobs_idempotency_idx',
      'jobs_lease_idx',
      'jobs_owner_created_idx',
      'jobs_queue_idx',
    ])
    const [owner] = config.foreignKeys
    expect(getTableConfig(owner!.reference().foreignTable).name).toBe('api_keys')
    expect(config.columns.find((c) => c.name === 'input_bytes')!.getSQLType()).toBe('bytea')
  })
})

describe('schema and migrations agree', () => {
  it('drizzle-kit generate finds no change to migrate', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vireo-drizzle-'))
    cpSync(resolve('drizzle'), join(dir, 'drizzle'), { recursive: true })
    const config = join(dir, 'drizzle.config.ts')
    writeFileSync(config, `export default { dialect: 'postgresql', schema: '${resolve('src/db/schema/index.ts')}', out: './drizzle' }\n`)
    const before = readdirSync(join(dir, 'drizzle')).length
    const run = Bun.spawnSync([resolve('node_modules/.bin/drizzle-kit'), 'generate', '--config=drizzle.config.ts', '--name=probe'], {
      cwd: dir,
      stdout: 'pipe',
      stderr: 'pipe',
    })
    const output = run.stdout.toString() + run.stderr.toString()
    expect(run.exitCode).toBe(0)
    expect(output).toContain('No schema changes')
    expect(readdirSync(join(dir, 'drizzle')).length).toBe(before)
  })

  it('drizzle-kit check passes', () => {
    const run = Bun.spawnSync(['bunx', 'drizzle-kit', 'check'], { stdout: 'pipe', stderr: 'pipe' })
    expect(run.exitCode).toBe(0)
  })
})

describePostgres('migrations and transactions on the real PostgreSQL', () => {
  let fresh: FreshDatabase
  beforeAll(async () => {
    fresh = await freshDatabase()
  })
  afterAll(() => fresh.drop())

  it('apply cleanly to an empty database, and twice is a no-op', async () => {
    const database = await openDatabase({ ...base, DATABASE_URL: fresh.url })
    try {
      expect(await tables(database)).toEqual([])
      await database.migrate()
      expect(await tables(database)).toContain('api_keys')
      await database.migrate()
      expect(await migrationCount(database)).toBe(journal.entries.length)
    } finally {
      await database.close()
    }
  })

  it('migrates once when replicas start together on a fresh database, each with a single-connection pool', async () => {
    const other = await freshDatabase()
    const replicas = await Promise.all([1, 2, 3, 4].map(() => openDatabase({ ...base, DATABASE_URL: other.url, DB_POOL_MAX: 1 })))
    try {
      await Promise.all(replicas.map((r) => r.migrate()))
      expect(await tables(replicas[0]!)).toContain('api_keys')
      expect(await migrationCount(replicas[0]!)).toBe(journal.entries.length)
    } finally {
      await Promise.all(replicas.map((r) => r.close()))
      await other.drop()
    }
  })

  it('rolls back requests that fail inside a transaction and leaves no connection idle in transaction', async () => {
    const config = testConfig({ DATABASE_URL: fresh.url, DB_POOL_MAX: '4' })
    const deps = await createDeps(config, { logger: createLogger(config, { destination: new LogCapture() }) })
    const app = createApp(deps).post('/api/v1/test/tx', async function failingWrite({ query }) {
      await transaction(deps.database.db, async (tx) => {
        await tx.insert(apiKeys).values({ name: 'rollback-me', prefix: `p${query.n}`, keyHash: `h${query.n}`, scopes: ['inference'] })
        throw new ValidationError('refused after the insert')
      })
    })
    try {
      const answers = await Promise.all(Array.from({ length: 20 }, (_, n) => app.handle(req(`/api/v1/test/tx?n=${n}`, { method: 'POST' }))))
      expect(answers.map((r) => r.status)).toEqual(Array(20).fill(400))
      const left = await deps.database.db.select().from(apiKeys).where(eq(apiKeys.name, 'rollback-me'))
      expect(left).toHaveLength(0)
      const sessions =
        await fresh.admin`select state from pg_stat_activity where datname = ${new URL(fresh.url).pathname.slice(1)} and application_name = 'vireo'`
      expect(sessions.length).toBeGreaterThan(0)
      expect(sessions.length).toBeLessThanOrEqual(4)
      expect(sessions.filter((s) => s.state !== 'idle')).toEqual([])
    } finally {
      await deps.close()
    }
  })
})
