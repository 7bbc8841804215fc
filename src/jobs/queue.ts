import { createHash } from 'node:crypto'
import { and, desc, eq, inArray, isNotNull, lt, or, sql } from 'drizzle-orm'
import type { Db } from '../db/client'
import { decodeCursor, encodeCursor } from '../db/cursor'
import { type JobError, type JobStatus, jobs } from '../db/schema'
import { ConflictError, IdempotencyKeyReusedError, NotFoundError } from '../errors'
import { afterFailure, type BackoffOptions, type Failure, leaseExpiresAt } from './retry'

export type Job = typeof jobs.$inferSelect
export type NewJob = Pick<typeof jobs.$inferInsert, 'ownerKeyId' | 'task' | 'model' | 'input' | 'inputBytes' | 'parameters' | 'maxAttempts'>

export const FINISHED: JobStatus[] = ['succeeded', 'failed', 'dead', 'cancelled']

/** A stable hash of what was asked, to tell a replay from a different request under the same Idempotency-Key. */
export function requestHash(job: NewJob): string {
  const hash = createHash('sha256')
  hash.update(JSON.stringify([job.task, job.model, job.input ?? null, job.parameters ?? {}, job.maxAttempts]))
  if (job.inputBytes) hash.update(job.inputBytes)
  return hash.digest('hex')
}

export interface QueueOptions {
  db: Db
  leaseMs: number
  backoff: BackoffOptions
  idempotencyTtlMs: number
  now?: () => number
  random?: () => number
}

/**
 * The PostgreSQL job queue: submit (idempotent), claim with `FOR UPDATE SKIP LOCKED`, renew leases,
 * complete, fail with backoff, cancel, retry, list, purge.
 * @example const queue = createQueue({ db, leaseMs: 30000, backoff: { baseMs: 1000, maxMs: 300000 }, idempotencyTtlMs: 86_400_000 })
 */
export function createQueue(options: QueueOptions) {
  const { db, leaseMs, backoff, idempotencyTtlMs, now = Date.now, random = Math.random } = options

  async function find(id: string): Promise<Job | undefined> {
    const [row] = await db.select().from(jobs).where(eq(jobs.id, id)).limit(1)
    return row
  }

  return {
    /** Insert a job; with an Idempotency-Key, the same key and body return the first job (`created: false`). */
    async submit(job: NewJob, idempotencyKey?: string): Promise<{ job: Job; created: boolean }> {
      if (!idempotencyKey) {
        const [row] = await db.insert(jobs).values(job).returning()
        return { job: row!, created: true }
      }
      const hash = requestHash(job)
      // Keys older than the TTL are forgotten, so the same key may start a new job.
      await db
        .update(jobs)
        .set({ idempotencyKey: null })
        .where(
          and(
            eq(jobs.ownerKeyId, job.ownerKeyId),
            eq(jobs.idempotencyKey, idempotencyKey),
            lt(jobs.createdAt, new Date(now() - idempotencyTtlMs)),
          ),
        )
      const [row] = await db
        .insert(jobs)
        .values({ ...job, idempotencyKey, requestHash: hash })
        .onConflictDoNothing({ target: [jobs.ownerKeyId, jobs.idempotencyKey], where: sql`${jobs.idempotencyKey} is not null` })
        .returning()
      if (row) return { job: row, created: true }
      const [existing] = await db
        .select()
        .from(jobs)
        .where(and(eq(jobs.ownerKeyId, job.ownerKeyId), eq(jobs.idempotencyKey, idempotencyKey)))
        .limit(1)
      if (!existing) throw new ConflictError('The Idempotency-Key is being used by a concurrent request; retry')
      if (existing.requestHash !== hash) throw new IdempotencyKeyReusedError()
      return { job: existing, created: false }
    },

    /**
     * Claim up to `limit` jobs in one statement: due queued jobs and running jobs whose lease
     * expired (their instance died), each attempt counted. SKIP LOCKED lets instances claim side by side.
     */
    async claim(owner: string, limit: number): Promise<Job[]> {
      const at = new Date(now())
      const cutoff = sql`${at.toISOString()}::timestamptz`
      const result = await db.execute(sql`
        with due as (
          select id, run_at as t from ${jobs} where status = 'queued' and run_at <= ${cutoff}
          order by run_at limit ${limit} for update skip locked
        ), expired as (
          select id, lease_expires_at as t from ${jobs} where status = 'running' and lease_expires_at < ${cutoff}
          order by lease_expires_at limit ${limit} for update skip locked
        )
        update ${jobs} set
          status = 'running',
          attempts = ${jobs.attempts} + 1,
          lease_owner = ${owner},
          lease_expires_at = ${leaseExpiresAt(at.getTime(), leaseMs).toISOString()}::timestamptz,
          started_at = coalesce(${jobs.startedAt}, ${cutoff})
        where ${jobs.id} in (select id from (select id, t from due union all select id, t from expired) c order by t limit ${limit})
        returning id`)
      const ids = rowsOf<{ id: string }>(result).map((r) => r.id)
      if (!ids.length) return []
      return db.select().from(jobs).where(inArray(jobs.id, ids))
    },

    /** Extend a lease; false when the job is no longer ours (cancelled, or reclaimed after we stalled). */
    async renew(id: string, owner: string): Promise<boolean> {
      const rows = await db
        .update(jobs)
        .set({ leaseExpiresAt: leaseExpiresAt(now(), leaseMs) })
        .where(and(eq(jobs.id, id), eq(jobs.leaseOwner, owner), eq(jobs.status, 'running')))
        .returning({ id: jobs.id })
      return rows.length === 1
    },

    async complete(id: string, owner: string, result: unknown): Promise<boolean> {
      const rows = await db
        .update(jobs)
        .set({ status: 'succeeded', result, finishedAt: new Date(now()), leaseOwner: null, leaseExpiresAt: null, inputBytes: null })
        .where(and(eq(jobs.id, id), eq(jobs.leaseOwner, owner), eq(jobs.status, 'running')))
        .returning({ id: jobs.id })
      return rows.length === 1
    },

    /** Record a failed attempt: back to the queue with backoff, or `failed` / `dead`. */
    async fail(job: Job, owner: string, failure: Failure): Promise<JobStatus | null> {
      const at = now()
      const outcome = afterFailure(job.attempts, job.maxAttempts, failure, at, backoff, random)
      const history = [
        ...(job.error?.history ?? []),
        { attempt: job.attempts, code: failure.code, message: failure.message, at: new Date(at).toISOString() },
      ]
      const error: JobError = { code: failure.code, message: failure.message, history }
      const finished = outcome.status !== 'queued'
      const rows = await db
        .update(jobs)
        .set({
          status: outcome.status,
          error,
          runAt: outcome.runAt ?? job.runAt,
          leaseOwner: null,
          leaseExpiresAt: null,
          finishedAt: finished ? new Date(at) : null,
        })
        .where(and(eq(jobs.id, job.id), eq(jobs.leaseOwner, owner), eq(jobs.status, 'running')))
        .returning({ id: jobs.id })
      return rows.length === 1 ? outcome.status : null
    },

    /** Give a running job back untouched (shutdown): it runs again soon, and this attempt does not count. */
    async release(id: string, owner: string): Promise<void> {
      await db
        .update(jobs)
        .set({
          status: 'queued',
          attempts: sql`greatest(${jobs.attempts} - 1, 0)`,
          leaseOwner: null,
          leaseExpiresAt: null,
          runAt: new Date(now()),
        })
        .where(and(eq(jobs.id, id), eq(jobs.leaseOwner, owner), eq(jobs.status, 'running')))
    },

    async get(id: string, ownerKeyId?: string): Promise<Job> {
      const job = await find(id)
      // Another key's job is answered exactly like a missing one.
      if (!job || (ownerKeyId && job.ownerKeyId !== ownerKeyId)) throw new NotFoundError(`No job with id ${id}`)
      return job
    },

    /** Status of a job, for the runner to notice a cancellation. */
    async status(id: string): Promise<JobStatus | undefined> {
      const [row] = await db.select({ status: jobs.status }).from(jobs).where(eq(jobs.id, id)).limit(1)
      return row?.status
    },

    async cancel(id: string, ownerKeyId?: string): Promise<Job> {
      const job = await this.get(id, ownerKeyId)
      const [row] = await db
        .update(jobs)
        .set({ status: 'cancelled', finishedAt: new Date(now()), leaseOwner: null, leaseExpiresAt: null })
        .where(and(eq(jobs.id, job.id), inArray(jobs.status, ['queued', 'running'])))
        .returning()
      if (!row) throw new ConflictError(`Job ${id} is ${job.status}; only queued or running jobs can be cancelled`, { status: job.status })
      return row
    },

    async retry(id: string, ownerKeyId?: string): Promise<Job> {
      const job = await this.get(id, ownerKeyId)
      const [row] = await db
        .update(jobs)
        .set({ status: 'queued', attempts: 0, runAt: new Date(now()), finishedAt: null })
        .where(and(eq(jobs.id, job.id), inArray(jobs.status, ['failed', 'dead'])))
        .returning()
      if (!row) throw new ConflictError(`Job ${id} is ${job.status}; only failed or dead jobs can be retried`, { status: job.status })
      return row
    },

    /** Newest first; the cursor is (created_at, id) of the last row, so pages stay stable while jobs are added. */
    async list(filter: { ownerKeyId?: string; status?: JobStatus; model?: string; limit: number; cursor?: string }) {
      const after = filter.cursor ? decodeCursor(filter.cursor) : undefined
      const rows = await db
        .select()
        .from(jobs)
        .where(
          and(
            filter.ownerKeyId ? eq(jobs.ownerKeyId, filter.ownerKeyId) : undefined,
            filter.status ? eq(jobs.status, filter.status) : undefined,
            filter.model ? eq(jobs.model, filter.model) : undefined,
            after ? or(lt(jobs.createdAt, after.createdAt), and(eq(jobs.createdAt, after.createdAt), lt(jobs.id, after.id))) : undefined,
          ),
        )
        .orderBy(desc(jobs.createdAt), desc(jobs.id))
        .limit(filter.limit + 1)
      const page = rows.slice(0, filter.limit)
      const last = page.at(-1)
      return { items: page, nextCursor: rows.length > filter.limit && last ? encodeCursor(last.createdAt, last.id) : null }
    },

    /** Delete finished jobs older than the retention period; returns how many. */
    async purge(retentionMs: number): Promise<number> {
      const rows = await db
        .delete(jobs)
        .where(and(isNotNull(jobs.finishedAt), lt(jobs.finishedAt, new Date(now() - retentionMs)), inArray(jobs.status, FINISHED)))
        .returning({ id: jobs.id })
      return rows.length
    },

    /** Jobs per status, for metrics. */
    async counts(): Promise<Record<string, number>> {
      const rows = await db.select({ status: jobs.status, n: sql<number>`count(*)::int` }).from(jobs).groupBy(jobs.status)
      return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]))
    },
  }
}

export type Queue = ReturnType<typeof createQueue>

/** Rows of a raw `db.execute`, whichever driver answered (postgres.js gives an array, PGlite `{ rows }`). */
export function rowsOf<T>(result: unknown): T[] {
  return Array.isArray(result) ? (result as T[]) : ((result as { rows: T[] }).rows ?? [])
}
