import { ProcessingError, RateLimitedError, ServiceUnavailableError, TimeoutError, ValidationError } from '../errors'
import type { Logger } from '../logger'
import { RunTimes, TerminationBudget, terminationGraceMs, timeoutFloorMs } from './overrun'
import { type SharedAnswer, SharedSlot, sharedSlotsSupported, TO_POOL, TO_WORKER, toPacket } from './shared-slot'
import type { Feeds } from './tensors'
import type { BackendAttempt, FromWorker, ToWorker, WireTensorInfo, Work } from './worker-messages'

/**
 * A fixed number of inference workers, each running one request at a time. Requests beyond the free
 * workers wait in a bounded FIFO queue. When a caller gives up (timeout or abort), a queued request is
 * dropped; a running one answers the caller at once but its run may finish within a grace derived from the
 * model's measured run times, keeping the worker. Only a run past that grace is stopped, by terminating its
 * worker (a native run, which terminate() cannot stop, is abandoned to finish instead), and each API key may
 * cause only so many such stops a minute. The pool keeps itself at full strength: workers that are stopped,
 * crash, run too often or grow too large are replaced and reload every model.
 */

export type WorkerState = 'starting' | 'idle' | 'busy' | 'draining'

export interface ModelSpec {
  name: string
  /** The model as callers know it, in messages and run events; `name` by default (a registry may load one model under several names, one per version). */
  label?: string
  /** The ONNX file; kept so replacement workers can load it again. */
  bytes: Uint8Array
  /** Backends to try in order, e.g. ['cpu', 'webgpu', 'wasm']. */
  backends: string[]
}

export type LoadReport =
  | { ok: true; backend: string; attempts: BackendAttempt[]; inputs: WireTensorInfo[]; outputs: WireTensorInfo[]; loadMs: number }
  | { ok: false; reason: string; attempts: BackendAttempt[] }

export interface RunOptions {
  /** Whole budget, queue wait included; raised to the model's floor (see timeoutFloorMs). */
  timeoutMs: number
  signal?: AbortSignal
  /** Who asked (an API key id): worker terminations their cancelled runs cause are charged to them. */
  owner?: string
  /** Output names to compute; all when absent. */
  outputs?: string[]
}

export interface SequenceOptions {
  /** Whole budget, queue wait included; raised to the model's floor (see timeoutFloorMs). */
  timeoutMs: number
  signal?: AbortSignal
  owner?: string
  sampleRate?: number
}

export interface RunResult {
  outputs: Feeds
  queueMs: number
  inferenceMs: number
  workerId: number
}

export type RunOutcome = 'ok' | 'error' | 'timeout' | 'aborted' | 'crashed' | 'rejected'

export interface RunEvent {
  model: string
  outcome: RunOutcome
  queueMs: number
  /** Time inside session.run; 0 when the run did not finish. */
  inferenceMs: number
}

export interface WorkerStats {
  id: number
  state: WorkerState
  runs: number
  inflight: number
  /** The worker's WASM heap (or its JS heap where that cannot be seen), as of its last answer. */
  heapBytes: number
}

export interface PoolStats {
  size: number
  workers: WorkerStats[]
  /** Workers taken out of service mid-run on a backend that cannot be interrupted, still finishing that run (each keeps a core busy). */
  abandoned: number
  /** Runs whose caller had gone that finished within their grace: the result was dropped, the worker kept. */
  discarded: number
  /** Runs handed over through shared memory (see shared-slot.ts), and by postMessage (too large, or no shared memory). */
  handoffs: { shared: number; posted: number }
  /** Workers terminated (on cpu: abandoned) because a run whose caller had gone outlived its grace. */
  terminations: number
  queueDepth: number
  queueMax: number
}

export interface PoolOptions {
  size: number
  /** Requests that may wait for a worker; more are refused with 503. */
  queueMax: number
  /** Replace a worker after this many runs; 0 never. */
  recycleAfter?: number
  /** Replace a worker once its heap passes this many MiB; 0 never. */
  maxHeapMb?: number
  /** Least grace a run whose caller has gone gets before its worker is stopped. */
  terminationGraceMinMs?: number
  /** Worker terminations each owner may cause per minute; past it their requests answer 429. 0: no limit. */
  terminationsPerKeyPerMin?: number
  logger?: Logger
  /** Worker script; tests substitute one that misbehaves. */
  workerUrl?: URL
  /** Hand runs over through shared memory where the runtime can (default); false: always by postMessage. */
  sharedSlots?: boolean
  /** Called once per finished request, for metrics. */
  onRun?: (event: RunEvent) => void
}

export interface Pool {
  load(spec: ModelSpec): Promise<LoadReport>
  unload(name: string): void
  run(model: string, feeds: Feeds, options: RunOptions): Promise<RunResult>
  /**
   * Consecutive Silero frames of one stream (`inputs`: n × SILERO_INPUT, windowed) in one worker call, the state
   * carried there; `outputs.output` holds the n probabilities, `outputs.stateN` the state after the last frame.
   * Queued, timed and counted as one run. The buffers of `inputs` and `state` are transferred.
   */
  runVadSequence(model: string, inputs: Float32Array, state: Float32Array, options: SequenceOptions): Promise<RunResult>
  /** `timeoutMs` raised to the model's timeout floor, as every run's budget is (see timeoutFloorMs). */
  budget(model: string, timeoutMs: number): number
  stats(): PoolStats
  close(): Promise<void>
}

interface Job {
  id: number
  model: string
  /** The spec's label: what messages and run events call the model. */
  label: string
  /** Dropped once posted: its buffers then belong to the worker. */
  work?: Work
  /** run or vad-sequence: their run times are measured apart. */
  kind: Work['type']
  owner?: string
  timeoutMs: number
  /** The caller has been answered (timeout or abort) while the run goes on; its result will be dropped. */
  orphaned: boolean
  graceTimer?: ReturnType<typeof setTimeout>
  enqueuedAt: number
  startedAt?: number
  slot?: Slot
  resolve(result: RunResult): void
  fail(error: unknown, outcome: RunOutcome): void
}

interface Slot {
  id: number
  worker: Worker
  state: WorkerState
  dead: boolean
  /** Due for recycling: serves on until `successor` is up, then drains. */
  retiring: boolean
  /** The worker this one replaces once it is up (recycling keeps the pool at strength meanwhile). */
  succeeds?: Slot
  runs: number
  /** When its last run ended (performance.now()); 0 before its first. */
  doneAt: number
  heapBytes: number
  inflight: Map<number, Job>
  /** Settled once the worker says it is up, or once it is gone (then every load waiting on it fails at once). */
  ready: Promise<void>
  markReady: () => void
  loads: Map<string, Promise<LoadReport>>
  /** Models whose session is up in this worker; only these may be run here. */
  loaded: Set<string>
  /** The backend each loaded model got in this worker. */
  backends: Map<string, string>
  /** Its current run is on a backend that terminate() cannot stop (see UNINTERRUPTIBLE_BACKENDS). */
  uninterruptible: boolean
  loadWaiters: Map<string, (report: LoadReport) => void>
  /** Its shared slot (see shared-slot.ts), when runs go through shared memory. */
  shared?: SharedSlot
}

const DEFAULT_WORKER_URL = new URL('./worker.ts', import.meta.url)
/**
 * The Web Worker constructor, taken before anything can replace it: onnxruntime-web's WASM
 * glue, once initialised in a thread, sets `global.Worker` to node:worker_threads' Worker
 * (an EventEmitter, no addEventListener) under Node-compatible runtimes.
 */
const WebWorker = globalThis.Worker
const MAX_RESTART_DELAY_MS = 10_000

/**
 * Backends whose runs Worker.terminate() cannot stop. Measured under Bun 1.4.4 with onnxruntime-node 1.30:
 * session.run blocks the worker thread inside native code, terminate() returns at once but the thread runs
 * on to the end of the run (a core stays busy), and when the run then returns into the terminated thread
 * the binding throws a C++ Napi::Error that aborts the whole process. So a worker busy on such a backend is
 * never terminated mid-run: it is abandoned (out of service, replaced at once, unref'd so it cannot hold the
 * process open) and terminated when its run comes back to JavaScript, where terminate() is safe.
 */
const UNINTERRUPTIBLE_BACKENDS = new Set(['cpu'])

function abortReason(signal: AbortSignal): unknown {
  return signal.reason instanceof Error ? signal.reason : new DOMException('The operation was aborted', 'AbortError')
}

type Data = Feeds[string]['data']

/** The array itself when it owns its buffer; a copy when it views part of a larger one, so unrelated memory is not moved. */
function owned<T extends Data>(data: T): T {
  if (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength || !(data.buffer instanceof ArrayBuffer)) return data.slice() as T
  return data
}

/** The buffers to transfer with a job's work (made transferable first). */
function transferList(work: Work): Transferable[] {
  const buffers = new Set<ArrayBuffer>()
  if (work.type === 'run') {
    for (const tensor of Object.values(work.feeds)) {
      tensor.data = owned(tensor.data)
      buffers.add(tensor.data.buffer as ArrayBuffer)
    }
  } else {
    work.inputs = owned(work.inputs)
    work.state = owned(work.state)
    buffers.add(work.inputs.buffer as ArrayBuffer).add(work.state.buffer as ArrayBuffer)
  }
  return [...buffers]
}

/**
 * Start `size` inference workers with a bounded wait queue.
 * @example
 * const pool = createPool({ size: 4, queueMax: 256 })
 * await pool.load({ name: 'silero-vad', bytes, backends: ['cpu', 'wasm'] })
 * const { outputs } = await pool.run('silero-vad', feeds, { timeoutMs: 1000 })
 */
export function createPool(options: PoolOptions): Pool {
  const {
    size,
    queueMax,
    recycleAfter = 0,
    maxHeapMb = 0,
    terminationGraceMinMs = 50,
    terminationsPerKeyPerMin = 0,
    logger,
    workerUrl = DEFAULT_WORKER_URL,
    sharedSlots = true,
    onRun,
  } = options
  const slots: Slot[] = []
  const queue: Job[] = []
  const specs = new Map<string, ModelSpec>()
  const abandoned = new Set<Slot>()
  const runTimes = new Map<string, RunTimes>()
  const budget = terminationsPerKeyPerMin > 0 ? new TerminationBudget(terminationsPerKeyPerMin) : undefined
  let discarded = 0
  let terminations = 0
  const handoffs = { shared: 0, posted: 0 }
  let nextSlotId = 1
  let nextJobId = 1
  let crashStreak = 0
  let closed = false

  function spawn(delayMs = 0, succeeds?: Slot): void {
    const worker = new WebWorker(workerUrl, { type: 'module' })
    let markReady = () => {}
    const slot: Slot = {
      id: nextSlotId++,
      worker,
      state: 'starting',
      dead: false,
      retiring: false,
      succeeds,
      runs: 0,
      doneAt: 0,
      heapBytes: 0,
      inflight: new Map(),
      ready: new Promise((resolve) => {
        markReady = resolve
      }),
      markReady: () => markReady(),
      loads: new Map(),
      loaded: new Set(),
      backends: new Map(),
      uninterruptible: false,
      loadWaiters: new Map(),
    }
    // Offered once the worker is up, used once it says it serves it: a worker that does not (a test's stand-in) gets postMessage.
    const offered = sharedSlots && sharedSlotsSupported ? SharedSlot.create() : undefined
    slots.push(slot)
    worker.addEventListener('message', function onMessage(event: MessageEvent<FromWorker>) {
      const message = event.data
      if (message.type === 'ready') {
        if (offered) post(slot, { type: 'attach', buffer: offered.buffer })
        markReady()
      } else if (message.type === 'attached') slot.shared = offered
      else if (message.type === 'loaded') {
        const { type: _type, name, ...report } = message
        if (report.ok && slot.loads.has(name)) {
          slot.loaded.add(name)
          slot.backends.set(name, report.backend)
        }
        slot.loadWaiters.get(name)?.(report)
        slot.loadWaiters.delete(name)
      } else answered(slot, message)
    })
    worker.addEventListener('error', function onError(event: ErrorEvent) {
      event.preventDefault()
      crashed(slot, event.message || 'uncaught error')
    })
    worker.addEventListener('messageerror', function onMessageError() {
      crashed(slot, 'a message could not be deserialised')
    })
    // Not part of the Web Worker standard; Bun and Node fire it when a worker exits on its own.
    worker.addEventListener('close', function onClose() {
      // An abandoned worker whose thread ends some other way than by answering is gone all the same.
      if (abandoned.delete(slot)) slot.shared?.wake(TO_POOL)
      crashed(slot, 'the worker exited')
    })
    void bringUp(slot, delayMs)
  }

  async function bringUp(slot: Slot, delayMs: number): Promise<void> {
    if (delayMs) await new Promise((resolve) => setTimeout(resolve, delayMs))
    await slot.ready
    await Promise.all([...specs.values()].map((spec) => loadInto(slot, spec)))
    if (slot.dead || slot.state !== 'starting') return
    slot.state = 'idle'
    logger?.debug({ worker: slot.id }, 'inference worker ready')
    const old = slot.succeeds
    slot.succeeds = undefined
    if (old && !old.dead) {
      old.state = 'draining'
      if (old.inflight.size === 0) retire(old)
    }
    pump()
  }

  function loadInto(slot: Slot, spec: ModelSpec): Promise<LoadReport> {
    const existing = slot.loads.get(spec.name)
    if (existing) return existing
    const promise = slot.ready.then(
      () =>
        new Promise<LoadReport>((resolve) => {
          if (slot.dead) return resolve({ ok: false, reason: 'the worker stopped while loading', attempts: [] })
          slot.loadWaiters.set(spec.name, resolve)
          post(slot, { type: 'load', name: spec.name, bytes: spec.bytes, backends: spec.backends })
        }),
    )
    slot.loads.set(spec.name, promise)
    return promise
  }

  function post(slot: Slot, message: ToWorker, transfer: Transferable[] = []): void {
    slot.worker.postMessage(message, transfer)
  }

  function retire(slot: Slot): void {
    slot.dead = true
    for (const job of slot.inflight.values()) clearTimeout(job.graceTimer)
    if (slot.uninterruptible) abandon(slot)
    else {
      slot.worker.terminate()
      // A run waiting for its answer in the shared slot stops waiting (see answeredShared).
      slot.shared?.wake(TO_POOL)
    }
    slots.splice(slots.indexOf(slot), 1)
    // A worker that died before saying it was up (its script failed to load) must not leave loads waiting for ever.
    slot.markReady()
    for (const resolve of slot.loadWaiters.values()) resolve({ ok: false, reason: 'the worker stopped while loading', attempts: [] })
    slot.loadWaiters.clear()
  }

  function abandon(slot: Slot): void {
    abandoned.add(slot)
    // Not part of the Web Worker standard; Bun and Node have it.
    ;(slot.worker as { unref?: () => void }).unref?.()
    logger?.warn(
      { worker: slot.id, abandoned: abandoned.size },
      'a native run cannot be interrupted: its worker is out of service and will be terminated when the run returns',
    )
  }

  /** Replace a worker that must go now; whatever else it was running fails as transient. */
  function replace(slot: Slot, why: string): void {
    if (slot.dead) return
    retire(slot)
    for (const job of slot.inflight.values())
      job.fail(new ServiceUnavailableError(`The inference worker stopped (${why}); retry the request`, 1), 'crashed')
    slot.inflight.clear()
    if (!closed && !slot.retiring) spawn(0, slot.succeeds)
  }

  function crashed(slot: Slot, why: string): void {
    if (slot.dead) return
    // Its thread is gone, whatever it was running.
    slot.uninterruptible = false
    logger?.error({ worker: slot.id, reason: why }, 'inference worker crashed; replacing it')
    retire(slot)
    for (const job of slot.inflight.values())
      job.fail(new ServiceUnavailableError('An inference worker stopped unexpectedly; retry the request', 1), 'crashed')
    slot.inflight.clear()
    crashStreak++
    // Back off so a model that kills its worker on load cannot make the pool spin.
    if (!closed && !slot.retiring) spawn(Math.min(100 * 2 ** (crashStreak - 1), MAX_RESTART_DELAY_MS), slot.succeeds)
  }

  /** Run times of one model and kind of work (a VAD sequence is many frames, a run usually one). */
  function budgetOf(model: string, kind: Work['type'], timeoutMs: number): number {
    return Math.max(timeoutMs, timeoutFloorMs(timesOf(model, kind)))
  }

  function timesOf(model: string, kind: Work['type']): RunTimes | undefined {
    return runTimes.get(`${kind}:${model}`)
  }

  function record(job: Job, inferenceMs: number): void {
    let times = timesOf(job.model, job.kind)
    if (!times) {
      times = new RunTimes()
      runTimes.set(`${job.kind}:${job.model}`, times)
    }
    times.record(inferenceMs)
  }

  /** A worker's answer to a run, however it came. An abandoned worker has finished the run it was left with: it goes. */
  function answered(slot: Slot, message: Extract<FromWorker, { type: 'result' | 'failed' }>): void {
    if (abandoned.delete(slot)) slot.worker.terminate()
    else finish(slot, message)
  }

  /** The shared slot's bell rang: an answer is there, unless it went by postMessage or the worker is gone. */
  function answeredShared(slot: Slot): void {
    if (slot.dead && !abandoned.has(slot)) return
    const { meta, tensors } = slot.shared!.read<SharedAnswer>()
    if (meta.type === 'posted') return
    answered(slot, meta.type === 'result' ? { ...meta, outputs: tensors } : meta)
  }

  function finish(slot: Slot, message: Extract<FromWorker, { type: 'result' | 'failed' }>): void {
    const job = slot.inflight.get(message.id)
    slot.heapBytes = message.heapBytes
    if (!job) return
    slot.inflight.delete(message.id)
    slot.uninterruptible = false
    slot.runs++
    slot.doneAt = performance.now()
    crashStreak = 0
    // Overrun runs count too: the grace they are measured for exists to let such runs finish.
    if (message.type === 'result') record(job, message.inferenceMs)
    if (job.orphaned) {
      clearTimeout(job.graceTimer)
      discarded++
      logger?.debug({ worker: slot.id, model: job.model }, 'a run finished within its grace after its caller gave up; worker kept')
    } else if (message.type === 'result') {
      const queueMs = job.startedAt! - job.enqueuedAt
      job.resolve({ outputs: message.outputs, queueMs, inferenceMs: message.inferenceMs, workerId: slot.id })
      onRun?.({ model: job.label, outcome: 'ok', queueMs, inferenceMs: message.inferenceMs })
    } else if (message.rejected) {
      // The session ran the warm-up and other requests; it refused these inputs. The runtime's own words stay
      // in the log: they name graph nodes and build flags, nothing a client can act on.
      logger?.warn({ model: job.model, worker: slot.id, reason: message.message }, 'the model rejected its inputs')
      job.fail(
        new ValidationError(
          `Model "${job.label}" could not run on these inputs; check their shapes and values against GET /api/v1/models/${job.label}`,
          [{ path: '/inputs', message: 'rejected by the model' }],
        ),
        'error',
      )
    } else {
      job.fail(new ProcessingError(`Model "${job.label}" failed to run: ${message.message}`), 'error')
    }
    afterRun(slot)
  }

  function afterRun(slot: Slot): void {
    const tooMany = recycleAfter > 0 && slot.runs >= recycleAfter
    const tooBig = maxHeapMb > 0 && slot.heapBytes > maxHeapMb * 1024 * 1024
    if (!slot.retiring && (tooMany || tooBig)) {
      logger?.info({ worker: slot.id, runs: slot.runs, heap_bytes: slot.heapBytes }, 'recycling inference worker')
      slot.retiring = true
      if (!closed) spawn(0, slot)
    }
    if (slot.state === 'draining') {
      if (slot.inflight.size === 0) retire(slot)
    } else slot.state = slot.inflight.size ? 'busy' : 'idle'
    pump()
  }

  /**
   * The free worker that finished last: its thread is still awake. Handing each run to the worker idle the longest
   * (round robin) cost about 70 µs per call at concurrency 1 here, waking a thread whose core had gone to sleep.
   */
  function pick(model: string): Slot | undefined {
    let best: Slot | undefined
    for (const slot of slots) {
      if ((slot.state !== 'idle' && slot.state !== 'busy') || slot.inflight.size > 0) continue
      if (!slot.loaded.has(model)) continue
      if (!best || slot.doneAt > best.doneAt) best = slot
    }
    return best
  }

  function start(job: Job, slot: Slot): void {
    job.slot = slot
    job.startedAt = performance.now()
    slot.inflight.set(job.id, job)
    slot.state = 'busy'
    slot.uninterruptible = UNINTERRUPTIBLE_BACKENDS.has(slot.backends.get(job.model) ?? '')
    const work = job.work!
    job.work = undefined
    const { shared } = slot
    if (shared) {
      const seen = shared.rung(TO_POOL)
      const packet = toPacket({ ...work, id: job.id, model: job.model })
      if (shared.send(TO_WORKER, packet.meta, packet.tensors) !== undefined) {
        handoffs.shared++
        void shared.wait(TO_POOL, seen).then(() => answeredShared(slot))
        return
      }
    }
    handoffs.posted++
    // Before the message is posted: it may swap views for arrays of their own.
    const transfer = transferList(work)
    post(slot, { ...work, id: job.id, model: job.model }, transfer)
  }

  function pump(): void {
    while (queue.length) {
      const slot = pick(queue[0]!.model)
      if (!slot) return
      start(queue.shift()!, slot)
    }
  }

  function run(model: string, feeds: Feeds, runOptions: RunOptions): Promise<RunResult> {
    const { outputs, ...rest } = runOptions
    return submit(model, { type: 'run', feeds, outputs }, rest)
  }

  function runVadSequence(model: string, inputs: Float32Array, state: Float32Array, sequenceOptions: SequenceOptions): Promise<RunResult> {
    const { sampleRate = 16000, ...rest } = sequenceOptions
    return submit(model, { type: 'vad-sequence', inputs, state, sampleRate }, rest)
  }

  /** Stop the worker of a run whose caller has gone and whose grace ran out, charging whoever asked for it. */
  function stopOverrun(slot: Slot, job: Job, graceMs: number): void {
    if (slot.dead || slot.inflight.get(job.id) !== job) return
    terminations++
    if (job.owner) budget?.charge(job.owner, performance.now())
    logger?.warn(
      { worker: slot.id, model: job.model, owner: job.owner, grace_ms: graceMs },
      'a run outlived its grace after its caller gave up; replacing its worker',
    )
    replace(slot, 'a cancelled run outlived its grace')
  }

  /** Refuse an owner who has spent their budget of worker terminations (see TerminationBudget). */
  function overBudget(owner: string | undefined): RateLimitedError | undefined {
    if (!owner || !budget) return undefined
    const waitMs = budget.retryAfterMs(owner, performance.now())
    if (waitMs <= 0) return undefined
    return new RateLimitedError(
      'inference-terminations',
      Math.ceil(waitMs / 1000),
      {},
      `This API key's cancelled or timed-out requests made the server terminate ${terminationsPerKeyPerMin} inference workers within a minute; ` +
        'give runs a timeout they can meet and retry later',
    )
  }

  /** Every kind of work shares one queue, worker choice, timeout, abort, grace and recycling. */
  function submit(model: string, work: Work, callOptions: Omit<RunOptions, 'outputs'>): Promise<RunResult> {
    const { signal, owner } = callOptions
    if (closed) return Promise.reject(new ServiceUnavailableError('The inference pool is shutting down', 5))
    if (signal?.aborted) return Promise.reject(abortReason(signal))
    if (!specs.has(model)) return Promise.reject(new ServiceUnavailableError(`Model "${model}" is not loaded`, 5))
    const label = specs.get(model)!.label ?? model
    const refused = overBudget(owner)
    if (refused) return Promise.reject(refused)
    // A budget shorter than a few typical runs can only time out, and every such timeout would cost a grace.
    const timeoutMs = budgetOf(model, work.type, callOptions.timeoutMs)
    const raised = timeoutMs > callOptions.timeoutMs ? { requested_timeout_ms: callOptions.timeoutMs } : {}
    return new Promise<RunResult>((resolve, reject) => {
      const enqueuedAt = performance.now()
      let timer: ReturnType<typeof setTimeout> | undefined
      let settled = false
      const settle = () => {
        settled = true
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
      }
      const job: Job = {
        id: nextJobId++,
        model,
        label,
        work,
        kind: work.type,
        owner,
        timeoutMs,
        orphaned: false,
        enqueuedAt,
        resolve(result) {
          if (settled) return
          settle()
          resolve(result)
        },
        fail(error, outcome) {
          if (settled) return
          settle()
          const queueMs = (job.startedAt ?? performance.now()) - enqueuedAt
          onRun?.({ model: label, outcome, queueMs, inferenceMs: 0 })
          reject(error)
        },
      }
      const stop = (error: unknown, outcome: RunOutcome) => {
        const queued = queue.indexOf(job)
        if (queued >= 0) {
          queue.splice(queued, 1)
          job.fail(error, outcome)
          return
        }
        const slot = job.slot
        if (!slot?.inflight.has(job.id) || job.orphaned) return
        // The caller hears now; the worker is only stopped if the run is still going once its grace is over.
        job.fail(error, outcome)
        job.orphaned = true
        const graceMs = terminationGraceMs(timesOf(model, job.kind), terminationGraceMinMs)
        job.graceTimer = setTimeout(function onGraceOver() {
          stopOverrun(slot, job, graceMs)
        }, graceMs)
      }
      function onAbort() {
        stop(abortReason(signal!), 'aborted')
      }
      timer = setTimeout(function onTimeout() {
        const stage = job.slot ? 'running' : 'queued'
        stop(
          new TimeoutError(`Model "${label}" did not answer within ${timeoutMs} ms`, { timeout_ms: timeoutMs, stage, ...raised }),
          'timeout',
        )
      }, timeoutMs)
      signal?.addEventListener('abort', onAbort, { once: true })

      const slot = queue.length ? undefined : pick(model)
      if (slot) return start(job, slot)
      if (queue.length >= queueMax) {
        job.fail(
          new ServiceUnavailableError(`All inference workers are busy and ${queue.length} requests are waiting; retry shortly`, 1, {
            queue_max: queueMax,
          }),
          'rejected',
        )
        return
      }
      queue.push(job)
    })
  }

  async function load(spec: ModelSpec): Promise<LoadReport> {
    specs.set(spec.name, spec)
    let targets = [...slots]
    let answers = await Promise.all(targets.map((slot) => loadInto(slot, spec)))
    // A worker replaced while loading says nothing about the model: its successor loads every spec before it serves.
    // When every one was replaced (runs whose callers left, overrunning their grace), ask their successors once.
    if (targets.every((slot) => slot.dead) && !closed && slots.length) {
      targets = [...slots]
      answers = await Promise.all(targets.map((slot) => loadInto(slot, spec)))
    }
    const reports = answers.filter((_, i) => !targets[i]!.dead)
    const failed = reports.find((r) => !r.ok)
    const report = failed ?? reports[0] ?? answers[0] ?? { ok: false, reason: 'the pool has no workers', attempts: [] }
    if (!report.ok) unload(spec.name)
    pump()
    return report
  }

  function unload(name: string): void {
    specs.delete(name)
    for (const slot of slots) {
      slot.loaded.delete(name)
      slot.backends.delete(name)
      if (!slot.loads.delete(name)) continue
      void slot.ready.then(() => !slot.dead && post(slot, { type: 'unload', name }))
    }
  }

  function stats(): PoolStats {
    return {
      size,
      abandoned: abandoned.size,
      discarded,
      terminations,
      handoffs: { ...handoffs },
      queueDepth: queue.length,
      queueMax,
      workers: slots.map((s) => ({ id: s.id, state: s.state, runs: s.runs, inflight: s.inflight.size, heapBytes: s.heapBytes })),
    }
  }

  async function close(): Promise<void> {
    closed = true
    const error = new ServiceUnavailableError('The inference pool is shutting down', 5)
    for (const job of queue.splice(0)) job.fail(error, 'rejected')
    for (const slot of [...slots]) {
      retire(slot)
      for (const job of slot.inflight.values()) job.fail(error, 'rejected')
      slot.inflight.clear()
    }
  }

  for (let i = 0; i < size; i++) spawn()
  return { load, unload, run, runVadSequence, budget: (model, timeoutMs) => budgetOf(model, 'run', timeoutMs), stats, close }
}
