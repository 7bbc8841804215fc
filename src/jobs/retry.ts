import { AppError, type ErrorCode } from '../errors'

/**
 * Retry rules of the job queue: backoff, leases, and what a failure means ("policy" names rate-limit
 * buckets only). No I/O; time and chance are passed in so tests are exact.
 */

export interface BackoffOptions {
  baseMs: number
  maxMs: number
}

/** Exponential backoff with full jitter: a random delay in [0, min(max, base * 2^(attempt-1))). */
export function backoffMs(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(options.maxMs, options.baseMs * 2 ** Math.max(0, attempt - 1))
  return Math.floor(random() * ceiling)
}

export function leaseExpiresAt(now: number, leaseMs: number): Date {
  return new Date(now + leaseMs)
}

/** A running job whose lease has run out belongs to an instance that died or stalled; it may be claimed again. */
export function leaseExpired(job: { status: string; leaseExpiresAt: Date | null }, now: number): boolean {
  return job.status === 'running' && job.leaseExpiresAt !== null && job.leaseExpiresAt.getTime() < now
}

/** Codes that mean "the request itself is wrong": retrying cannot help. */
const PERMANENT: ErrorCode[] = [
  'VALIDATION_ERROR',
  'NOT_FOUND',
  'UNSUPPORTED_MEDIA_TYPE',
  'PAYLOAD_TOO_LARGE',
  'FORBIDDEN',
  'UNAUTHORIZED',
  'CONFLICT',
]

export interface Failure {
  code: string
  message: string
  transient: boolean
}

/** Timeouts, inference worker crashes, overload, model and database errors pass; invalid input and unknown models do not. */
export function classifyFailure(error: unknown): Failure {
  if (error instanceof AppError) return { code: error.code, message: error.message, transient: !PERMANENT.includes(error.code) }
  return { code: 'INTERNAL_ERROR', message: error instanceof Error ? error.message : String(error), transient: true }
}

export type FailureOutcome = { status: 'queued'; runAt: Date } | { status: 'failed' | 'dead'; runAt?: undefined }

/** Where a job goes after a failed attempt. */
export function afterFailure(
  attempt: number,
  maxAttempts: number,
  failure: Failure,
  now: number,
  backoff: BackoffOptions,
  random: () => number = Math.random,
): FailureOutcome {
  if (!failure.transient) return { status: 'failed' }
  if (attempt >= maxAttempts) return { status: 'dead' }
  return { status: 'queued', runAt: new Date(now + backoffMs(attempt, backoff, random)) }
}
