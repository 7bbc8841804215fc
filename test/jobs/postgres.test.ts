import { afterAll, beforeAll, beforeEach, expect, it } from 'bun:test'
import { existsSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql } from 'drizzle-orm'
import { type Database, openDatabase } from '../../src/db/client'
import { apiKeys, jobs } from '../../src/db/schema'
import { createQueue, rowsOf } from '../../src/jobs/queue'
import { testConfig, until } from '../helpers'
import { describePostgres, type FreshDatabase, freshDatabase } from '../pg'

describePostgres('jobs on the real PostgreSQL', () => {
  let fresh: FreshDatabase
  let database: Database
  let owner: string
  beforeAll(async () => {
    fresh = await freshDatabase()
    database = await openDatabase({ ...testConfig(), DATABASE_URL: fresh.url })
    await database.migrate()
    const [key] = await database.db
      .insert(apiKeys)
      .values({ name: 'jobs', prefix: 'jobspref', keyHash: 'h'.repeat(64), scopes: ['jobs'] })
      .returning()
    owner = key!.id
  })
  beforeEach(async () => {
    await database.db.delete(jobs)
  })
  afterAll(async () => {
    await database.close()
    await fresh.drop()
  })

  const queue = () => createQueue({ db: database.db, leaseMs: 2000, backoff: { baseMs: 50, maxMs: 500 }, idempotencyTtlMs: 86_400_000 })
  const statuses = async () =>
    Object.fromEntries(
      rowsOf<{ status: string; n: number }>(await database.db.execute(sql`select status, count(*)::int n from jobs group by 1`)).map(
        (r) => [r.status, r.n],
      ),
    )

  function spawnRunner(log: string, env: Record<string, string> = {}) {
    return Bun.spawn(['bun', 'test/jobs/runner-process.ts'], {
      env: {
        PATH: process.env.PATH ?? '',
        NODE_ENV: 'test',
        DATABASE_URL: fresh.url,
        RUNNER_LOG: log,
        JOBS_CONCURRENCY: '4',
        JOBS_LEASE_MS: '2000',
        ...env,
      },
      stdout: 'ignore',
      stderr: 'inherit',
    })
  }

  it('uses its indexes for the claim and the listing queries', async () => {
    // 50 owners, so one owner's listing is selective, as in production.
    await database.db.execute(sql`
      insert into api_keys (name, prefix, key_hash, scopes)
      select 'k' || i, 'p' || i, 'hash' || i, '{jobs}' from generate_series(1, 49) i`)
    await database.db.execute(sql`
      insert into jobs (owner_key_id, task, model, status, max_attempts, run_at, created_at, finished_at)
      select (select id from api_keys order by name offset (i % 50) limit 1), 'infer', 'm' || (i % 7), (array['succeeded','succeeded','succeeded','failed','dead','queued'])[1 + i % 6],
             5, now() - (i || ' seconds')::interval, now() - (i || ' seconds')::interval,
             case when i % 6 < 5 then now() else null end
      from generate_series(1, 5000) i`)
    await database.db.execute(sql`analyze jobs`)
    const plan = async (query: ReturnType<typeof sql>) =>
      rowsOf<{ 'QUERY PLAN': string }>(await database.db.execute(sql`explain ${query}`))
        .map((r) => r['QUERY PLAN'])
        .join('\n')
    const claim = await plan(
      sql`select id from jobs where status = 'queued' and run_at <= now() order by run_at limit 4 for update skip locked`,
    )
    expect(claim).toContain('jobs_queue_idx')
    const lease = await plan(
      sql`select id from jobs where status = 'running' and lease_expires_at < now() order by lease_expires_at limit 4 for update skip locked`,
    )
    expect(lease).toContain('jobs_lease_idx')
    const listing = await plan(
      sql`select * from jobs where owner_key_id = ${owner} and created_at < now() order by created_at desc, id desc limit 21`,
    )
    expect(listing).toContain('jobs_owner_created_idx')
    const idempotency = await plan(sql`select * from jobs where owner_key_id = ${owner} and idempotency_key = 'x'`)
    expect(idempotency).toContain('jobs_idempotency_idx')
  })

  it('two runner processes run 500 jobs, each exactly once', async () => {
    const q = queue()
    const ids = new Set<string>()
    for (let i = 0; i < 500; i++)
      ids.add((await q.submit({ ownerKeyId: owner, task: 'infer', model: 'tiny', input: { i }, parameters: {}, maxAttempts: 3 })).job.id)
    const dir = mkdtempSync(join(tmpdir(), 'vireo-runners-'))
    const runners = [spawnRunner(join(dir, 'a.log')), spawnRunner(join(dir, 'b.log'))]
    try {
      await until(async () => (await statuses()).succeeded === 500)
    } finally {
      for (const r of runners) r.kill('SIGTERM')
      await Promise.all(runners.map((r) => r.exited))
    }
    const lines = ['a.log', 'b.log'].flatMap((f) =>
      existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8').split('\n').filter(Boolean) : [],
    )
    expect(lines).toHaveLength(500)
    expect(new Set(lines)).toEqual(ids)
    for (const f of ['a.log', 'b.log']) expect(readFileSync(join(dir, f), 'utf8').length).toBeGreaterThan(0)
  })

  it('reclaims the job of a runner killed with SIGKILL after its lease, and completes it', async () => {
    const { job } = await queue().submit({
      ownerKeyId: owner,
      task: 'infer',
      model: 'tiny',
      input: {},
      parameters: { hang: true },
      maxAttempts: 3,
    })
    const dir = mkdtempSync(join(tmpdir(), 'vireo-kill-'))
    const victim = spawnRunner(join(dir, 'victim.log'))
    await until(async () => existsSync(join(dir, 'victim.log.started')))
    victim.kill('SIGKILL')
    await victim.exited
    const rescuer = spawnRunner(join(dir, 'rescuer.log'), { RUNNER_NO_HANG: '1' })
    try {
      await until(async () => (await queue().get(job.id)).status === 'succeeded')
    } finally {
      rescuer.kill('SIGTERM')
      await rescuer.exited
    }
    const done = await queue().get(job.id)
    expect(done.attempts).toBe(2)
    expect(readFileSync(join(dir, 'rescuer.log'), 'utf8').trim()).toBe(job.id)
  })

  it('loses no job when the database drops every connection mid-run', async () => {
    const q = queue()
    for (let i = 0; i < 200; i++)
      await q.submit({ ownerKeyId: owner, task: 'infer', model: 'tiny', input: { i }, parameters: {}, maxAttempts: 5 })
    const dir = mkdtempSync(join(tmpdir(), 'vireo-restart-'))
    const runner = spawnRunner(join(dir, 'r.log'))
    try {
      await until(async () => ((await statuses()).succeeded ?? 0) > 20)
      const name = new URL(fresh.url).pathname.slice(1)
      await fresh.admin`select pg_terminate_backend(pid) from pg_stat_activity where datname = ${name} and application_name = 'vireo' and pid <> pg_backend_pid()`
      await until(async () => (await statuses()).succeeded === 200)
    } finally {
      runner.kill('SIGTERM')
      await runner.exited
    }
    const done = readFileSync(join(dir, 'r.log'), 'utf8').split('\n').filter(Boolean)
    expect(new Set(done).size).toBe(200)
  })
})
