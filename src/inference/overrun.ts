/**
 * The arithmetic behind stopping runs whose caller has gone (timeout or disconnect). Stopping a run costs a
 * whole worker (terminated on wasm and reloaded, abandoned on cpu), so it is reserved for runs that overran
 * by a margin the model's own measured run times call unusual, and each API key may cause only so many.
 * No I/O and no clock of its own: callers pass the time, so tests are exact.
 */

/** Recent run times kept per model: enough for a p99 that follows a change of load within a minute or so. */
export const RUN_TIME_WINDOW = 128
/** A requested timeout below this many typical (median) runs could only ever time out; it is raised to it. */
export const TIMEOUT_FLOOR_RUNS = 4
/** A run whose caller has gone may go on for this many recent p99 run times (at least the configured minimum). */
export const GRACE_P99_RUNS = 4
/** The window of the per-key termination budget. */
export const TERMINATION_BUDGET_WINDOW_MS = 60_000

/** Index of the first element of ascending `values` that is not below `value`. */
function lowerBound(values: number[], value: number): number {
  let lo = 0
  let hi = values.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (values[mid]! < value) lo = mid + 1
    else hi = mid
  }
  return lo
}

/**
 * The last RUN_TIME_WINDOW run times of one model, in ms. Every request reads a percentile (its timeout floor),
 * so the window is also kept sorted as runs are recorded: a read is a lookup, not a sort.
 */
export class RunTimes {
  /** In arrival order, a ring. */
  private readonly recent: number[] = []
  /** The same values, ascending. */
  private readonly sorted: number[] = []
  private next = 0

  record(ms: number): void {
    if (this.recent.length < RUN_TIME_WINDOW) this.recent.push(ms)
    else {
      this.sorted.splice(lowerBound(this.sorted, this.recent[this.next]!), 1)
      this.recent[this.next] = ms
    }
    this.sorted.splice(lowerBound(this.sorted, ms), 0, ms)
    this.next = (this.next + 1) % RUN_TIME_WINDOW
  }

  /** Nearest-rank percentile of the window; 0 before any run. */
  percentile(p: number): number {
    const { sorted } = this
    if (!sorted.length) return 0
    return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
  }
}

/** The least timeout worth running with: TIMEOUT_FLOOR_RUNS median runs, in whole ms (0 before any run). */
export function timeoutFloorMs(times: RunTimes | undefined): number {
  return Math.ceil(TIMEOUT_FLOOR_RUNS * (times?.percentile(50) ?? 0))
}

/** How long a run whose caller has gone may finish before its worker is stopped. */
export function terminationGraceMs(times: RunTimes | undefined, minMs: number): number {
  return Math.max(minMs, Math.ceil(GRACE_P99_RUNS * (times?.percentile(99) ?? 0)))
}

/**
 * Worker terminations charged to each API key over a sliding minute. A sliding log rather than a library limiter
 * (rate-limiter-flexible, as the HTTP quotas use): the pool must answer synchronously when a request is
 * submitted, and it counts terminations that happen later, not the requests themselves.
 */
export class TerminationBudget {
  private readonly terminations = new Map<string, number[]>()

  constructor(private readonly perMinute: number) {}

  private live(owner: string, now: number): number[] {
    const times = (this.terminations.get(owner) ?? []).filter((at) => at > now - TERMINATION_BUDGET_WINDOW_MS)
    if (times.length) this.terminations.set(owner, times)
    else this.terminations.delete(owner)
    return times
  }

  charge(owner: string, now: number): void {
    this.terminations.set(owner, [...this.live(owner, now), now])
  }

  /** 0 while the owner may still cause terminations; otherwise ms until enough of them leave the window. */
  retryAfterMs(owner: string, now: number): number {
    const times = this.live(owner, now)
    if (times.length < this.perMinute) return 0
    return times[times.length - this.perMinute]! + TERMINATION_BUDGET_WINDOW_MS - now
  }
}
