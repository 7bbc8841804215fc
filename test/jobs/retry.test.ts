import { describe, expect, it } from 'bun:test'
import { AppError, NotFoundError, ServiceUnavailableError, TimeoutError, ValidationError } from '../../src/errors'
import { afterFailure, backoffMs, classifyFailure, leaseExpired, leaseExpiresAt } from '../../src/jobs/retry'

const backoff = { baseMs: 1000, maxMs: 30_000 }

describe('backoff', () => {
  it('grows exponentially under a cap, with full jitter', () => {
    const top = (attempt: number) => backoffMs(attempt, backoff, () => 0.999999)
    expect([1, 2, 3, 4, 5, 6, 7].map(top)).toEqual([999, 1999, 3999, 7999, 15999, 29999, 29999])
    expect(backoffMs(3, backoff, () => 0)).toBe(0)
    expect(backoffMs(3, backoff, () => 0.5)).toBe(2000)
  })
})

describe('leases', () => {
  it('expire after the lease period, only for running jobs', () => {
    const now = Date.parse('2030-01-01T00:00:00Z')
    const expires = leaseExpiresAt(now, 30000)
    expect(expires.getTime() - now).toBe(30_000)
    expect(leaseExpired({ status: 'running', leaseExpiresAt: expires }, now + 29_999)).toBe(false)
    expect(leaseExpired({ status: 'running', leaseExpiresAt: expires }, now + 30_001)).toBe(true)
    expect(leaseExpired({ status: 'queued', leaseExpiresAt: expires }, now + 60_000)).toBe(false)
    expect(leaseExpired({ status: 'running', leaseExpiresAt: null }, now)).toBe(false)
  })
})

describe('failures', () => {
  it('treats timeouts, overload, processing and unknown errors as transient; bad input and unknown models as permanent', () => {
    expect(classifyFailure(new TimeoutError('slow')).transient).toBe(true)
    expect(classifyFailure(new ServiceUnavailableError('busy')).transient).toBe(true)
    expect(classifyFailure(new AppError('PROCESSING_ERROR', 'model failed')).transient).toBe(true)
    expect(classifyFailure(new Error('connection reset')).transient).toBe(true)
    expect(classifyFailure('weird').message).toBe('weird')
    expect(classifyFailure(new ValidationError('bad')).transient).toBe(false)
    expect(classifyFailure(new NotFoundError('no model')).transient).toBe(false)
  })

  it('requeues with backoff until the last attempt, then dead; permanent failures fail at once', () => {
    const now = 1_000_000
    const transient = { code: 'TIMEOUT_ERROR', message: 'slow', transient: true }
    expect(afterFailure(1, 3, transient, now, backoff, () => 0.5)).toEqual({ status: 'queued', runAt: new Date(now + 500) })
    expect(afterFailure(2, 3, transient, now, backoff, () => 0.5)).toEqual({ status: 'queued', runAt: new Date(now + 1000) })
    expect(afterFailure(3, 3, transient, now, backoff)).toEqual({ status: 'dead' })
    expect(afterFailure(1, 3, { ...transient, transient: false }, now, backoff)).toEqual({ status: 'failed' })
  })
})
