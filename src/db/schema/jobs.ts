import { sql } from 'drizzle-orm'
import { customType, index, integer, jsonb, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'
import { apiKeys } from './api-keys'

const bytea = customType<{ data: Uint8Array; driverData: Uint8Array }>({ dataType: () => 'bytea' })
const ts = (name: string) => timestamp(name, { withTimezone: true, precision: 3 })

export const JOB_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'dead', 'cancelled'] as const
export type JobStatus = (typeof JOB_STATUSES)[number]

/** One failed attempt, kept in `error.history`. */
export interface AttemptError {
  attempt: number
  code: string
  message: string
  at: string
}

export interface JobError {
  code: string
  message: string
  history: AttemptError[]
}

/** Work accepted with 202: run once (even with several instances), retried while its failures are transient. */
export const jobs = pgTable(
  'jobs',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    ownerKeyId: uuid('owner_key_id')
      .notNull()
      .references(() => apiKeys.id),
    task: text('task').$type<'infer' | 'vad'>().notNull(),
    model: text('model').notNull(),
    input: jsonb('input').$type<unknown>(),
    inputBytes: bytea('input_bytes'),
    parameters: jsonb('parameters').$type<Record<string, unknown>>().notNull().default({}),
    status: text('status').$type<JobStatus>().notNull().default('queued'),
    attempts: integer('attempts').notNull().default(0),
    maxAttempts: integer('max_attempts').notNull(),
    runAt: ts('run_at').notNull().defaultNow(),
    leaseOwner: text('lease_owner'),
    leaseExpiresAt: ts('lease_expires_at'),
    result: jsonb('result').$type<unknown>(),
    error: jsonb('error').$type<JobError>(),
    idempotencyKey: text('idempotency_key'),
    requestHash: text('request_hash'),
    createdAt: ts('created_at').notNull().defaultNow(),
    startedAt: ts('started_at'),
    finishedAt: ts('finished_at'),
  },
  (table) => [
    // The claim query: queued jobs that are due, oldest first.
    index('jobs_queue_idx').on(table.runAt).where(sql`${table.status} = 'queued'`),
    // Crash recovery: running jobs whose lease ran out.
    index('jobs_lease_idx').on(table.leaseExpiresAt).where(sql`${table.status} = 'running'`),
    // The owner's listing, newest first, paged by (created_at, id).
    index('jobs_owner_created_idx').on(table.ownerKeyId, table.createdAt, table.id),
    // The admin listing across owners.
    index('jobs_created_idx').on(table.createdAt, table.id),
    // Idempotency-Key lookup, scoped per key.
    uniqueIndex('jobs_idempotency_idx').on(table.ownerKeyId, table.idempotencyKey).where(sql`${table.idempotencyKey} is not null`),
    // Retention purge of finished jobs.
    index('jobs_finished_idx').on(table.finishedAt).where(sql`${table.finishedAt} is not null`),
  ],
)
