import { describe, expect, it } from 'bun:test'
import fc from 'fast-check'
import {
  GRACE_P99_RUNS,
  RUN_TIME_WINDOW,
  RunTimes,
  TERMINATION_BUDGET_WINDOW_MS,
  TerminationBudget,
  terminationGraceMs,
  timeoutFloorMs,
} from '../../src/inference/overrun'

const times = (values: number[]) => {
  const recent = new RunTimes()
  for (const v of values) recent.record(v)
  return recent
}

describe('run times of a model', () => {
  it('reads nearest-rank percentiles of the recent window only', () => {
    const recent = times([5, 1, 4, 2, 3])
    expect(recent.percentile(50)).toBe(3)
    expect(recent.percentile(99)).toBe(5)
    for (let i = 0; i < RUN_TIME_WINDOW; i++) recent.record(1)
    expect(recent.percentile(99)).toBe(1)
    expect(new RunTimes().percentile(99)).toBe(0)
  })

  it('reads the same percentiles as sorting the last window of runs, for any sequence of runs', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 1e4, noNaN: true }), { maxLength: 3 * RUN_TIME_WINDOW }),
        fc.integer({ min: 1, max: 100 }),
        (values, p) => {
          const window = values.slice(-RUN_TIME_WINDOW).sort((a, b) => a - b)
          const expected = window.length ? window[Math.min(window.length - 1, Math.ceil((p / 100) * window.length) - 1)] : 0
          expect(times(values).percentile(p)).toBe(expected!)
        },
      ),
    )
  })

  it('raises a timeout shorter than four typical runs to that floor', () => {
    expect(timeoutFloorMs(times([6, 6, 7, 900]))).toBe(24)
    expect(timeoutFloorMs(times([0.1]))).toBe(1)
    expect(timeoutFloorMs(undefined)).toBe(0)
  })

  it('gives a cancelled run a grace of four recent p99s, never less than the minimum', () => {
    expect(terminationGraceMs(times([2, 3, 100]), 50)).toBe(GRACE_P99_RUNS * 100)
    expect(terminationGraceMs(times([2, 3, 4]), 50)).toBe(50)
    expect(terminationGraceMs(undefined, 50)).toBe(50)
  })
})

describe('termination budget per key', () => {
  it('refuses a key once it has caused N terminations within a minute, until the oldest leaves the window', () => {
    const budget = new TerminationBudget(2)
    budget.charge('a', 1_000)
    expect(budget.retryAfterMs('a', 1_000)).toBe(0)
    budget.charge('a', 11_000)
    expect(budget.retryAfterMs('a', 11_000)).toBe(TERMINATION_BUDGET_WINDOW_MS - 10_000)
    expect(budget.retryAfterMs('b', 11_000)).toBe(0)
    expect(budget.retryAfterMs('a', 1_000 + TERMINATION_BUDGET_WINDOW_MS)).toBe(0)
  })

  it('counts terminations charged past the budget too, so Retry-After covers them', () => {
    const budget = new TerminationBudget(1)
    budget.charge('a', 0)
    budget.charge('a', 30_000)
    expect(budget.retryAfterMs('a', 30_000)).toBe(TERMINATION_BUDGET_WINDOW_MS)
    expect(budget.retryAfterMs('a', 59_999)).toBe(30_001)
  })
})
