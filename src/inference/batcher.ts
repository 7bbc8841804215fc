import { RateLimitedError, ServiceUnavailableError, TimeoutError } from '../errors'
import type { RunOptions, RunResult } from './pool'
import type { Feeds, RawTensor, TypedArray } from './tensors'

/**
 * Dynamic batching, as Triton's dynamic batcher does it: concurrent requests to one model whose tensors differ
 * only along their batch axis are stacked into one run, and the outputs are split back. The manifest says how
 * (`batching`): the most rows a run may hold, how long a request may wait for company while a worker is free, and
 * the batch axis of every tensor where it is not 0 (`null`: not batched, and equal in every request of a batch,
 * like Silero's `sr`). While every worker is busy, requests gather on their own; so with `max_delay_ms` 0 a lone
 * request never waits, and a loaded model still runs in batches.
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

export interface Batcher {
  run(feeds: Feeds, options: RunOptions): Promise<RunResult>
  /** Requests waiting for a batch. */
  readonly pending: number
}

interface Item {
  feeds: Feeds
  options: RunOptions
  rows: number
  key: string
  enqueuedAt: number
  deadline: number
  settled: boolean
  /** Told when the request settles while its batch runs. */
  onGone?: () => void
  timer: ReturnType<typeof setTimeout>
  resolve(result: RunResult): void
  fail(error: unknown): void
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
  let at = 0
  for (let o = 0; o < outer; o++) {
    for (const part of parts) {
      const n = part.dims[axis]! * inner
      data.set(part.data.subarray(o * n, (o + 1) * n) as never, at)
      at += n
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
  const data = new (tensor.data.constructor as ArrayMaker)(product(dims))
  for (let o = 0; o < outer; o++) {
    const from = (o * total + start) * inner
    data.set(tensor.data.subarray(from, from + rows * inner) as never, o * rows * inner)
  }
  return { type: tensor.type, data, dims }
}

const axisOf = (axes: BatchingSpec['axes'], name: string) => (axes && Object.hasOwn(axes, name) ? axes[name]! : 0)

/**
 * The rows a request brings and the key of the requests it may share a run with (same names, types, outputs, and
 * dimensions but the batch axis; equal shared tensors), or undefined when it cannot be stacked at all.
 */
export function batchKey(feeds: Feeds, axes: BatchingSpec['axes'], outputs?: string[]): { rows: number; key: string } | undefined {
  let rows: number | undefined
  const parts: string[] = [outputs?.join(',') ?? '*']
  for (const name of Object.keys(feeds).sort()) {
    const { type, dims, data } = feeds[name]!
    const axis = axisOf(axes, name)
    if (axis === null) {
      // Shared tensors are small (a sample rate, a flag): their values are part of the key.
      parts.push(`${name}:${type}:${dims.join('x')}=${Array.from(data as ArrayLike<unknown>, String).join(',')}`)
      continue
    }
    if (axis >= dims.length) return undefined
    if (rows === undefined) rows = dims[axis]!
    else if (rows !== dims[axis]) return undefined
    parts.push(`${name}:${type}:${dims.map((d, i) => (i === axis ? '*' : d)).join('x')}`)
  }
  if (!rows) return undefined
  return { rows, key: parts.join('|') }
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
  const waiting: Item[] = []
  let inFlight = 0
  let delay: ReturnType<typeof setTimeout> | undefined

  function schedule(): void {
    if (!waiting.length || inFlight >= maxInFlight) return
    const rows = waiting.reduce((n, item) => n + item.rows, 0)
    const waited = performance.now() - waiting[0]!.enqueuedAt
    if (rows >= maxBatchSize || waited >= maxDelayMs) {
      clearTimeout(delay)
      delay = undefined
      dispatch()
      schedule()
    } else delay ??= setTimeout(onDelayOver, maxDelayMs - waited)
  }

  function onDelayOver() {
    delay = undefined
    schedule()
  }

  /** The head's compatible requests, in order, up to a full batch. */
  function take(): Item[] {
    const head = waiting[0]!
    const batch: Item[] = []
    let rows = 0
    for (let i = 0; i < waiting.length && rows < maxBatchSize; ) {
      const item = waiting[i]!
      if (item.key === head.key && rows + item.rows <= maxBatchSize) {
        batch.push(item)
        rows += item.rows
        waiting.splice(i, 1)
      } else i++
    }
    return batch
  }

  function remaining(item: Item): number {
    return Math.max(1, Math.ceil(item.deadline - performance.now()))
  }

  function dispatch(): void {
    const batch = take()
    const now = performance.now()
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
    const leave = () => {
      if (batch.every((item) => item.settled)) controller.abort(new DOMException('every request in the batch has gone', 'AbortError'))
    }
    for (const item of batch) item.onGone = leave
    const owners = new Set(batch.map((item) => item.options.owner))
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
          owner: owners.size === 1 ? batch[0]!.options.owner : undefined,
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

  function submit(feeds: Feeds, runOptions: RunOptions): Promise<RunResult> {
    const { signal } = runOptions
    const timeoutMs = budget(runOptions.timeoutMs)
    if (signal?.aborted) return Promise.reject(abortReason(signal))
    const stackable = batchKey(feeds, axes, runOptions.outputs)
    if (!stackable || stackable.rows > maxBatchSize) return run(feeds, runOptions)
    if (waiting.length >= queueMax)
      return Promise.reject(
        new ServiceUnavailableError(`${waiting.length} requests to model "${model}" are waiting for a batch; retry shortly`, 1, {
          queue_max: queueMax,
        }),
      )
    return new Promise<RunResult>((resolve, reject) => {
      const enqueuedAt = performance.now()
      const settle = () => {
        item.settled = true
        clearTimeout(item.timer)
        signal?.removeEventListener('abort', onAbort)
        const at = waiting.indexOf(item)
        if (at >= 0) waiting.splice(at, 1)
        item.onGone?.()
      }
      const item: Item = {
        feeds,
        options: runOptions,
        ...stackable,
        enqueuedAt,
        deadline: enqueuedAt + timeoutMs,
        settled: false,
        timer: setTimeout(function onTimeout() {
          const stage = waiting.includes(item) ? 'queued' : 'running'
          item.fail(new TimeoutError(`Model "${model}" did not answer within ${timeoutMs} ms`, { timeout_ms: timeoutMs, stage }))
        }, timeoutMs),
        resolve(result) {
          if (item.settled) return
          settle()
          resolve(result)
        },
        fail(error) {
          if (item.settled) return
          settle()
          reject(error)
        },
      }
      function onAbort() {
        item.fail(abortReason(signal!))
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      waiting.push(item)
      schedule()
    })
  }

  return {
    run: submit,
    get pending() {
      return waiting.length
    },
  }
}
