import { RateLimitedError, ServiceUnavailableError, TimeoutError } from '../errors'
import type { RunOptions, RunResult } from './pool'
import type { Feeds, RawTensor, TypedArray } from './tensors'

/**
 * Dynamic batching, as Triton's dynamic batcher does it: concurrent requests to one model whose tensors differ
 * only along their batch axis are stacked into one run, and the outputs are split back. The manifest says how
 * (`batching`): the most rows a run may hold, how long a request may wait for company while a worker is free, and
 * the batch axis of every tensor where it is not 0 (`null`: not batched, and equal in every request of a batch,
 * like Silero's `sr`). While every worker is busy, requests gather on their own; so with `max_delay_ms` 0 a lone
 * request never waits, and a loaded model still runs in batches. A trusted caller may give a request a wait of its
 * own (`maxDelayMs`): a batch goes once its earliest-due request is due, or once it is full.
 *
 * Each request keeps its own budget, cancellation and error: it leaves its batch's wait at once, its rows of a
 * batch still running are dropped, and when a batched run fails its requests run again one by one, so one bad
 * request cannot sink the others. Requests that cannot be stacked (no batch axis, more rows than a batch holds)
 * run alone, as they would without batching.
 */

export interface BatchingSpec {
  /** Rows (the sum of the requests' sizes along their batch axis) one run may hold. */
  maxBatchSize: number
  /** How long the first waiting request may wait for company while a worker is free. */
  maxDelayMs: number
  /** Batch axis of each input and output where it is not 0; `null` for a tensor shared by the whole batch. */
  axes?: Record<string, number | null>
}

export interface BatchEvent {
  model: string
  /** Requests in the run. */
  requests: number
  /** Rows in the run, along the batch axis. */
  rows: number
  /** How long each request waited in the batcher before its run was sent to the pool. */
  queueDelaysMs: number[]
}

export interface BatcherOptions {
  model: string
  batching: BatchingSpec
  /** The pool's run (or anything that runs feeds the same way). */
  run: (feeds: Feeds, options: RunOptions) => Promise<RunResult>
  /** Runs sent at once (the pool's worker count): past it, requests gather into bigger batches. */
  maxInFlight: number
  /** Requests that may wait for a batch (INFERENCE_QUEUE_MAX, as the pool's own queue); more are refused with 503. */
  queueMax: number
  /** A request's budget as the pool would raise it (its timeout floor), so waiting in a batch never costs a budget the pool would have given. */
  budget?: (timeoutMs: number) => number
  onBatch?: (event: BatchEvent) => void
}

export interface BatchRunOptions extends RunOptions {
  /** How long this request may wait for company while a worker is free; the model's `max_delay_ms` when absent. */
  maxDelayMs?: number
}

export interface Batcher {
  run(feeds: Feeds, options: BatchRunOptions): Promise<RunResult>
  /** Requests waiting for a batch. */
  readonly pending: number
}

/** A request waiting for (or riding in) a batch; its own abort listener (`handleEvent`), so it needs no closures. */
class Item {
  settled = false
  /** Told when the request settles while its batch runs. */
  onGone?: () => void
  readonly deadline: number
  readonly dueAt: number
  readonly timer: ReturnType<typeof setTimeout>

  constructor(
    readonly queue: Queue,
    readonly feeds: Feeds,
    readonly options: BatchRunOptions,
    readonly rows: number,
    readonly enqueuedAt: number,
    readonly timeoutMs: number,
    maxDelayMs: number,
    private readonly done: (result: RunResult) => void,
    private readonly failed: (error: unknown) => void,
  ) {
    this.deadline = enqueuedAt + timeoutMs
    this.dueAt = enqueuedAt + maxDelayMs
    this.timer = setTimeout(timedOut, timeoutMs, this)
    options.signal?.addEventListener('abort', this, { once: true })
  }

  resolve(result: RunResult): void {
    if (this.settle()) this.done(result)
  }

  fail(error: unknown): void {
    if (this.settle()) this.failed(error)
  }

  handleEvent(): void {
    this.fail(abortReason(this.options.signal!))
  }

  private settle(): boolean {
    if (this.settled) return false
    this.settled = true
    clearTimeout(this.timer)
    this.options.signal?.removeEventListener('abort', this)
    this.queue.leave(this)
    this.onGone?.()
    return true
  }
}

/** What an Item needs from its batcher's queue. */
interface Queue {
  model: string
  waiting: Set<Item>
  leave(item: Item): void
}

function timedOut(item: Item): void {
  const stage = item.queue.waiting.has(item) ? 'queued' : 'running'
  item.fail(
    new TimeoutError(`Model "${item.queue.model}" did not answer within ${item.timeoutMs} ms`, { timeout_ms: item.timeoutMs, stage }),
  )
}

const product = (dims: readonly number[]) => dims.reduce((n, d) => n * d, 1)

type ArrayMaker = new (length: number) => TypedArray

/** `parts` joined along `axis`; every other dimension is the same in all of them. */
export function concatAlong(parts: readonly RawTensor[], axis: number): RawTensor {
  const first = parts[0]!
  const dims = [...first.dims]
  dims[axis] = parts.reduce((n, p) => n + p.dims[axis]!, 0)
  const outer = product(dims.slice(0, axis))
  const inner = product(dims.slice(axis + 1))
  const data = new (first.data.constructor as ArrayMaker)(product(dims))
  // Plain loops: the parts are small (a frame, a state row) and many, where a subarray and a set per part cost more.
  let at = 0
  for (let o = 0; o < outer; o++) {
    for (const part of parts) {
      const n = part.dims[axis]! * inner
      const from = part.data
      for (let i = o * n, end = i + n; i < end; i++) data[at++] = from[i]!
    }
  }
  return { type: first.type, data, dims }
}

/** Rows `start` to `start + rows` of `tensor` along `axis`, in an array of their own. */
export function sliceAlong(tensor: RawTensor, axis: number, start: number, rows: number): RawTensor {
  const total = tensor.dims[axis]!
  const dims = [...tensor.dims]
  dims[axis] = rows
  const outer = product(dims.slice(0, axis))
  const inner = product(dims.slice(axis + 1))
  const data = new (tensor.data.constructor as ArrayMaker)(outer * rows * inner)
  const from = tensor.data
  let at = 0
  for (let o = 0; o < outer; o++) {
    for (let i = (o * total + start) * inner, end = i + rows * inner; i < end; i++) data[at++] = from[i]!
  }
  return { type: tensor.type, data, dims }
}

const axisOf = (axes: BatchingSpec['axes'], name: string) => (axes && Object.hasOwn(axes, name) ? axes[name]! : 0)

/**
 * The rows a request brings along its batch axis, or undefined when it cannot be stacked at all (a tensor without
 * that axis, or inputs that disagree on the number of rows).
 */
export function batchRows(feeds: Feeds, axes: BatchingSpec['axes']): number | undefined {
  let rows: number | undefined
  for (const name of Object.keys(feeds)) {
    const axis = axisOf(axes, name)
    if (axis === null) continue
    const { dims } = feeds[name]!
    if (axis >= dims.length) return undefined
    if (rows === undefined) rows = dims[axis]!
    else if (rows !== dims[axis]) return undefined
  }
  return rows || undefined
}

const sameNames = (a?: readonly string[], b?: readonly string[]) =>
  a === b || (!!a && !!b && a.length === b.length && a.every((name, i) => name === b[i]))

/**
 * Whether two stackable requests may share a run: the same outputs asked for, the same tensors with the same types
 * and dimensions but along the batch axis, and shared tensors (small: a sample rate, a flag) equal value for value.
 * Compared in place, once per request a batch takes: a string key per request cost more than the comparisons.
 */
export function sameBatch(a: Feeds, b: Feeds, axes: BatchingSpec['axes'], outputsA?: string[], outputsB?: string[]): boolean {
  if (!sameNames(outputsA, outputsB)) return false
  const names = Object.keys(a)
  if (names.length !== Object.keys(b).length) return false
  for (const name of names) {
    const x = a[name]!
    const y = Object.hasOwn(b, name) ? b[name]! : undefined
    if (!y || x.type !== y.type || x.dims.length !== y.dims.length) return false
    const axis = axisOf(axes, name)
    for (let d = 0; d < x.dims.length; d++) if (d !== axis && x.dims[d] !== y.dims[d]) return false
    if (axis !== null) continue
    if (x.data.length !== y.data.length) return false
    for (let i = 0; i < x.data.length; i++) if (x.data[i] !== y.data[i]) return false
  }
  return true
}

/** The inputs of `items` stacked into one set of feeds. */
export function stackFeeds(items: readonly Feeds[], axes: BatchingSpec['axes']): Feeds {
  const stacked: Feeds = {}
  for (const name of Object.keys(items[0]!)) {
    const axis = axisOf(axes, name)
    // A shared tensor is copied too: the pool transfers what it sends, and each request may have to run again alone.
    const shared = items[0]![name]!
    stacked[name] =
      axis === null
        ? { ...shared, data: shared.data.slice() as TypedArray }
        : concatAlong(
            items.map((f) => f[name]!),
            axis,
          )
  }
  return stacked
}

/** A batched run's outputs split back into each request's rows; throws when an output does not carry the batch. */
export function splitOutputs(outputs: Feeds, rows: readonly number[], axes: BatchingSpec['axes']): Feeds[] {
  const total = rows.reduce((n, r) => n + r, 0)
  const split: Feeds[] = rows.map(() => ({}))
  for (const [name, tensor] of Object.entries(outputs)) {
    const axis = axisOf(axes, name)
    if (axis === null) {
      for (const feeds of split) feeds[name] = { ...tensor, data: tensor.data.slice() as TypedArray }
      continue
    }
    if (tensor.dims[axis] !== total)
      throw new Error(`output "${name}" has ${tensor.dims[axis]} rows along axis ${axis}, not the batch's ${total}`)
    let start = 0
    rows.forEach((r, i) => {
      split[i]![name] = sliceAlong(tensor, axis, start, r)
      start += r
    })
  }
  return split
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason instanceof Error ? signal.reason : new DOMException('The operation was aborted', 'AbortError')
}

/**
 * A dynamic batcher in front of one model's runs.
 * @example
 * const batcher = createBatcher({ model: 'silero-vad', batching: { maxBatchSize: 64, maxDelayMs: 0, axes: { state: 1 } },
 *   run: (feeds, o) => pool.run('silero-vad', feeds, o), maxInFlight: pool.stats().size, queueMax: 256 })
 * const { outputs } = await batcher.run(feeds, { timeoutMs: 1000 })
 */
export function createBatcher(options: BatcherOptions): Batcher {
  const { model, batching, run, maxInFlight, queueMax, budget = (ms: number) => ms, onBatch } = options
  const { maxBatchSize, maxDelayMs, axes } = batching
  const queue: Queue = { model, waiting: new Set(), leave }
  const { waiting } = queue
  /** Rows waiting, and the earliest moment one of the waiting requests is due to go (NaN: to be worked out again). */
  let rows = 0
  let due = Number.POSITIVE_INFINITY
  let inFlight = 0
  let delay: ReturnType<typeof setTimeout> | undefined
  let delayAt = Number.POSITIVE_INFINITY

  function leave(item: Item): void {
    if (!waiting.delete(item)) return
    rows -= item.rows
    if (item.dueAt <= due) due = Number.NaN
  }

  function earliestDue(): number {
    if (Number.isNaN(due)) {
      due = Number.POSITIVE_INFINITY
      for (const item of waiting) if (item.dueAt < due) due = item.dueAt
    }
    return due
  }

  function schedule(): void {
    while (waiting.size && inFlight < maxInFlight) {
      const now = performance.now()
      const dueAt = earliestDue()
      if (rows < maxBatchSize && now < dueAt) {
        if (dueAt < delayAt) {
          clearTimeout(delay)
          delayAt = dueAt
          delay = setTimeout(onDelayOver, dueAt - now)
        }
        return
      }
      dispatch(now)
    }
  }

  function onDelayOver() {
    delay = undefined
    delayAt = Number.POSITIVE_INFINITY
    schedule()
  }

  /** The oldest request's compatible requests, in order, up to a full batch. */
  function take(): Item[] {
    const batch: Item[] = []
    let taken = 0
    for (const item of waiting) {
      if (taken >= maxBatchSize) break
      const first = batch[0]
      if (
        taken + item.rows > maxBatchSize ||
        (first && !sameBatch(first.feeds, item.feeds, axes, first.options.outputs, item.options.outputs))
      )
        continue
      batch.push(item)
      taken += item.rows
      leave(item)
    }
    return batch
  }

  function remaining(item: Item): number {
    return Math.max(1, Math.ceil(item.deadline - performance.now()))
  }

  function dispatch(now: number): void {
    const batch = take()
    inFlight++
    onBatch?.({
      model,
      requests: batch.length,
      rows: batch.reduce((n, item) => n + item.rows, 0),
      queueDelaysMs: batch.map((item) => now - item.enqueuedAt),
    })
    void runBatch(batch).finally(function onBatchDone() {
      inFlight--
      schedule()
    })
  }

  async function runBatch(batch: Item[]): Promise<void> {
    if (batch.length === 1) return runAlone(batch[0]!)
    const controller = new AbortController()
    // The run is cancelled (and its worker's grace starts) only once every request in it has gone.
    const leaveBatch = () => {
      if (batch.every((item) => item.settled)) controller.abort(new DOMException('every request in the batch has gone', 'AbortError'))
    }
    for (const item of batch) item.onGone = leaveBatch
    const owner = batch[0]!.options.owner
    const startedAt = performance.now()
    try {
      const result = await run(
        stackFeeds(
          batch.map((item) => item.feeds),
          axes,
        ),
        {
          timeoutMs: Math.max(...batch.map(remaining)),
          signal: controller.signal,
          owner: batch.every((item) => item.options.owner === owner) ? owner : undefined,
          outputs: batch[0]!.options.outputs,
        },
      )
      const parts = splitOutputs(
        result.outputs,
        batch.map((item) => item.rows),
        axes,
      )
      for (const [i, item] of batch.entries())
        item.resolve({ ...result, outputs: parts[i]!, queueMs: startedAt - item.enqueuedAt + result.queueMs })
    } catch (error) {
      if (error instanceof RateLimitedError) for (const item of batch) item.fail(error)
      // One bad request must not sink the others: each runs again on its own, with what is left of its budget.
      else await Promise.all(batch.filter((item) => !item.settled).map(runAlone))
    } finally {
      for (const item of batch) item.onGone = undefined
    }
  }

  async function runAlone(item: Item): Promise<void> {
    if (item.settled) return
    const startedAt = performance.now()
    try {
      const result = await run(item.feeds, { ...item.options, timeoutMs: remaining(item) })
      item.resolve({ ...result, queueMs: startedAt - item.enqueuedAt + result.queueMs })
    } catch (error) {
      item.fail(error)
    }
  }

  function submit(feeds: Feeds, runOptions: BatchRunOptions): Promise<RunResult> {
    const { signal } = runOptions
    if (signal?.aborted) return Promise.reject(abortReason(signal))
    const own = batchRows(feeds, axes)
    if (!own || own > maxBatchSize) return run(feeds, runOptions)
    if (waiting.size >= queueMax)
      return Promise.reject(
        new ServiceUnavailableError(`${waiting.size} requests to model "${model}" are waiting for a batch; retry shortly`, 1, {
          queue_max: queueMax,
        }),
      )
    return new Promise<RunResult>((resolve, reject) => {
      const timeoutMs = budget(runOptions.timeoutMs)
      const wait = runOptions.maxDelayMs ?? maxDelayMs
      const item = new Item(queue, feeds, runOptions, own, performance.now(), timeoutMs, wait, resolve, reject)
      waiting.add(item)
      rows += item.rows
      if (item.dueAt < due) due = item.dueAt
      schedule()
    })
  }

  return {
    run: submit,
    get pending() {
      return waiting.size
    },
  }
}
