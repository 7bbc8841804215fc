import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { t } from 'elysia'
import type { Config } from '../config'
import { NotFoundError, ServiceUnavailableError, TimeoutError, ValidationError } from '../errors'
import type { Logger } from '../logger'
import { type Batcher, type BatcherOptions, createBatcher } from './batcher'
import { loadManifest, type Manifest } from './manifest'
import { createPool, type Pool, type PoolOptions, type RunOptions, type RunResult } from './pool'
import {
  type DecodedRequest,
  datatypeOf,
  type Feeds,
  type InferRequest,
  type InferResult,
  normaliseShape,
  type TensorInfo,
  toOutput,
  validateInferRequest,
} from './tensors'
import { SILERO_INPUT, SILERO_STATE } from './vad-batch'
import type { WireTensorInfo } from './worker'

/**
 * The models this process serves: found in MODELS_DIR, loaded into every pool worker, warmed
 * up before they count as ready, and probed periodically. Create one per process (in the
 * app's dependency wiring) and share it; routes, jobs and the VAD stream all go through it.
 */

const TensorMetaSchema = t.Object({
  name: t.String(),
  datatype: t.String({ description: 'OIP datatype, or the ONNX type when this server cannot carry it' }),
  shape: t.Union([t.Array(t.Integer({ description: '-1 for a dynamic dimension' })), t.Null()]),
})

export const ModelInfoSchema = t.Object({
  name: t.String(),
  version: t.Union([t.String(), t.Null()]),
  task: t.Union([t.Literal('vad'), t.Literal('tensor'), t.Null()]),
  status: t.Union([t.Literal('loading'), t.Literal('ready'), t.Literal('failed'), t.Literal('unhealthy')]),
  reason: t.Union([t.String(), t.Null()]),
  backend: t.Union([t.String(), t.Null()], { description: 'cpu, webgpu or wasm: the first backend in order that loaded the model' }),
  skipped_backends: t.Array(t.Object({ backend: t.String(), error: t.String() }), {
    description: 'backends tried before `backend` (all of them when the model failed to load), with why each was skipped',
  }),
  load_ms: t.Union([t.Number(), t.Null()]),
  last_health_check: t.Union([t.String({ format: 'date-time' }), t.Null()]),
  inputs: t.Array(TensorMetaSchema),
  outputs: t.Array(TensorMetaSchema),
  limits: t.Object({ timeout_ms: t.Integer(), max_timeout_ms: t.Integer(), max_elements: t.Integer() }),
  license: t.Union([t.String(), t.Null()]),
  source: t.Union([t.String(), t.Null()]),
})
export type ModelInfo = typeof ModelInfoSchema.static
export type ModelStatus = ModelInfo['status']

export type RegistryConfig = Pick<
  Config,
  | 'MODELS_DIR'
  | 'MODELS_REQUIRED'
  | 'MODEL_HEALTH_INTERVAL_S'
  | 'INFERENCE_WORKERS'
  | 'INFERENCE_QUEUE_MAX'
  | 'INFERENCE_MAX_TIMEOUT_MS'
  | 'INFERENCE_TERMINATION_GRACE_MIN_MS'
  | 'INFERENCE_TERMINATIONS_PER_KEY_PER_MIN'
  | 'INFERENCE_MAX_ELEMENTS'
  | 'WORKER_RECYCLE_AFTER'
  | 'WORKER_MAX_HEAP_MB'
>

export interface RegistryOptions {
  config: RegistryConfig
  logger: Logger
  /** A pool to run on; by default one is created from the config. */
  pool?: Pool
  /** Passed to the default pool (metrics hook). */
  onRun?: PoolOptions['onRun']
  /** Called once per batch a model's dynamic batcher sends (metrics hook). */
  onBatch?: BatcherOptions['onBatch']
  /** Backend order for a model; defaults to its manifest's. An override for operators and tests. */
  backendOrder?: (manifest: Manifest) => string[]
  /** The health check for one model; defaults to running its warm-up. Throwing marks it unhealthy. */
  healthProbe?: (name: string, warmup: () => Promise<void>) => Promise<void>
  now?: () => Date
}

export interface CallOptions {
  signal?: AbortSignal
  /**
   * Budget in ms (queue wait included); defaults to the manifest's, capped at INFERENCE_MAX_TIMEOUT_MS. The pool
   * raises one below 4 typical runs of the model to that floor.
   */
  timeoutMs?: number
  /** The API key asking: worker terminations its cancelled runs cause count against its budget. */
  owner?: string
}

export interface VadSequenceResult {
  /** One per frame, in order. */
  probabilities: Float32Array
  /** The state after the last frame, to feed the next sequence. */
  state: Float32Array
  queueMs: number
  inferenceMs: number
}

export interface Registry {
  /** Scan, load and warm up every model. Rejects only when a MODELS_REQUIRED model is not ready. */
  start(): Promise<void>
  stop(): Promise<void>
  list(): ModelInfo[]
  /** @throws NotFoundError */
  get(name: string): ModelInfo
  /**
   * Checks a request against the model's inputs, outputs and limits without running it (jobs, at submit time).
   * A model that has never loaded has no metadata yet: then only its existence is checked.
   * @throws NotFoundError, ValidationError
   */
  check(name: string, request: InferRequest): void
  /** Validated Open Inference Protocol request → response. */
  infer(name: string, request: InferRequest | DecodedRequest, options?: CallOptions): Promise<InferResult>
  /** Typed arrays in, typed arrays out, no JSON checks: for trusted callers such as the realtime VAD (batched like any request). */
  runRaw(name: string, feeds: Feeds, options?: CallOptions): Promise<RunResult>
  /**
   * Consecutive Silero frames of one stream in one worker call (`inputs`: n × SILERO_INPUT, windowed), the state
   * carried from frame to frame inside the worker. Same budget rules as `runRaw`; `inputs` and `state` are transferred.
   */
  runVadSequence(name: string, inputs: Float32Array, state: Float32Array, options?: CallOptions): Promise<VadSequenceResult>
  /** Probe every loaded model now (the timer calls this too). */
  checkHealth(): Promise<void>
  readonly pool: Pool
}

interface Entry {
  info: ModelInfo
  manifest?: Manifest
  inputs: TensorInfo[]
  outputs: TensorInfo[]
  /** Present when the manifest asks for dynamic batching: clients' runs go through it. */
  batcher?: Batcher
}

/**
 * The backend order for every model: `forced` (INFERENCE_BACKENDS) when it names any, else each manifest's own.
 * @example createRegistry({ config, logger, backendOrder: configuredBackendOrder(config.INFERENCE_BACKENDS) })
 */
export function configuredBackendOrder(forced: readonly string[]): (manifest: Manifest) => string[] {
  return function backendOrder(manifest) {
    return forced.length ? [...forced] : manifest.backends
  }
}

function tensorInfo(wire: WireTensorInfo): TensorInfo {
  return { name: wire.name, datatype: datatypeOf(wire.type), ortType: wire.type, shape: normaliseShape(wire.shape ?? undefined) }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

const round = (ms: number) => Math.round(ms * 1000) / 1000

/**
 * Create the model registry (one per process).
 * @example
 * const registry = createRegistry({ config, logger })
 * await registry.start()
 * const result = await registry.infer('silero-vad', body, { signal: request.signal })
 */
export function createRegistry(options: RegistryOptions): Registry {
  const {
    config,
    logger,
    onRun,
    onBatch,
    backendOrder = (m: Manifest) => m.backends,
    healthProbe = (_name, warmup) => warmup(),
    now = () => new Date(),
  } = options
  const pool =
    options.pool ??
    createPool({
      size: config.INFERENCE_WORKERS,
      queueMax: config.INFERENCE_QUEUE_MAX,
      recycleAfter: config.WORKER_RECYCLE_AFTER,
      maxHeapMb: config.WORKER_MAX_HEAP_MB,
      terminationGraceMinMs: config.INFERENCE_TERMINATION_GRACE_MIN_MS,
      terminationsPerKeyPerMin: config.INFERENCE_TERMINATIONS_PER_KEY_PER_MIN,
      logger,
      onRun,
    })
  const entries = new Map<string, Entry>()
  let timer: ReturnType<typeof setInterval> | undefined
  let probing: Promise<void> | undefined
  /** When start() began loading; a model's load_ms runs from here to the end of its warm-up. */
  let started = 0

  function timeoutFor(manifest: Manifest, requested?: number): number {
    return Math.min(requested ?? manifest.timeout_ms, config.INFERENCE_MAX_TIMEOUT_MS)
  }

  function blank(name: string): Entry {
    return {
      inputs: [],
      outputs: [],
      info: {
        name,
        version: null,
        task: null,
        status: 'loading',
        reason: null,
        backend: null,
        skipped_backends: [],
        load_ms: null,
        last_health_check: null,
        inputs: [],
        outputs: [],
        limits: {
          timeout_ms: config.INFERENCE_MAX_TIMEOUT_MS,
          max_timeout_ms: config.INFERENCE_MAX_TIMEOUT_MS,
          max_elements: config.INFERENCE_MAX_ELEMENTS,
        },
        license: null,
        source: null,
      },
    }
  }

  function fail(entry: Entry, reason: string): void {
    entry.info.status = 'failed'
    entry.info.reason = reason
    logger.warn({ model: entry.info.name, reason }, 'model failed to load; it answers 503 until fixed')
  }

  /** The warm-up through the real path: same checks and pool as a client's request. */
  async function warmup(entry: Entry): Promise<void> {
    const manifest = entry.manifest!
    if (!manifest.warmup) return
    const feeds = validateInferRequest(
      { inputs: manifest.warmup },
      { model: manifest.name, inputs: entry.inputs, outputs: entry.outputs, maxElements: Number.POSITIVE_INFINITY },
    )
    const { outputs } = await pool.run(manifest.name, feeds, { timeoutMs: timeoutFor(manifest) })
    for (const [name, tensor] of Object.entries(outputs)) {
      if (tensor.data instanceof Float32Array || tensor.data instanceof Float64Array) {
        if (!tensor.data.every(Number.isFinite)) throw new Error(`output "${name}" holds non-finite values`)
      }
    }
  }

  /** Loads a model into the pool; it stays `loading` until `warmUpOne` has run it. */
  async function loadOne(dir: string, entry: Entry): Promise<void> {
    const manifest = await loadManifest(dir)
    if (typeof manifest === 'string') return fail(entry, manifest)
    if (manifest.name !== entry.info.name)
      return fail(entry, `manifest.json names the model "${manifest.name}" but its folder is "${entry.info.name}"; they must match`)
    entry.manifest = manifest
    Object.assign(entry.info, {
      version: manifest.version,
      task: manifest.task,
      license: manifest.license,
      source: manifest.source,
      limits: { ...entry.info.limits, timeout_ms: timeoutFor(manifest) },
    })
    let bytes: Uint8Array
    try {
      bytes = new Uint8Array(await readFile(join(dir, manifest.file)))
    } catch {
      return fail(entry, `${manifest.file} cannot be read from ${dir}`)
    }
    const report = await pool.load({ name: manifest.name, bytes, backends: backendOrder(manifest) })
    entry.info.skipped_backends = report.attempts
    if (!report.ok) return fail(entry, `onnxruntime could not load ${manifest.file}: ${report.reason}`)
    entry.inputs = report.inputs.map(tensorInfo)
    entry.outputs = report.outputs.map(tensorInfo)
    entry.info.inputs = entry.inputs.map(({ name, datatype, ortType, shape }) => ({ name, datatype: datatype ?? ortType, shape }))
    entry.info.outputs = entry.outputs.map(({ name, datatype, ortType, shape }) => ({ name, datatype: datatype ?? ortType, shape }))
    entry.info.backend = report.backend
    if (manifest.batching) {
      const { max_batch_size, max_delay_ms, axes } = manifest.batching
      entry.batcher = createBatcher({
        model: manifest.name,
        batching: { maxBatchSize: max_batch_size, maxDelayMs: max_delay_ms, axes },
        run: (feeds, runOptions) => pool.run(manifest.name, feeds, runOptions),
        maxInFlight: pool.stats().size,
        queueMax: config.INFERENCE_QUEUE_MAX,
        budget: (timeoutMs) => pool.budget(manifest.name, timeoutMs),
        onBatch,
      })
    }
  }

  async function warmUpOne(entry: Entry): Promise<void> {
    const manifest = entry.manifest!
    try {
      await warmup(entry)
    } catch (error) {
      pool.unload(manifest.name)
      const details = error instanceof ValidationError ? ` ${JSON.stringify(error.details)}` : ''
      return fail(entry, `warm-up failed: ${message(error)}${details}`)
    }
    entry.info.load_ms = round(performance.now() - started)
    entry.info.last_health_check = now().toISOString()
    entry.info.status = 'ready'
    logger.info(
      {
        model: manifest.name,
        version: manifest.version,
        backend: entry.info.backend,
        skipped_backends: entry.info.skipped_backends,
        load_ms: entry.info.load_ms,
      },
      'model ready',
    )
  }

  async function start(): Promise<void> {
    let folders: string[] = []
    try {
      folders = (await readdir(config.MODELS_DIR, { withFileTypes: true }))
        .filter((d) => d.isDirectory())
        .map((d) => d.name)
        .sort()
    } catch {
      logger.warn({ dir: config.MODELS_DIR }, 'MODELS_DIR cannot be read; no models will be served')
    }
    for (const folder of folders) entries.set(folder, blank(folder))
    started = performance.now()
    await Promise.all(folders.map((folder) => loadOne(join(config.MODELS_DIR, folder), entries.get(folder)!)))
    // Warm-ups start once every model is loaded: a worker still creating another model's session (a
    // first WASM session compiles onnxruntime-web, seconds on a busy host) would eat their timeout.
    await Promise.all([...entries.values()].filter((e) => e.info.status === 'loading' && e.info.backend).map(warmUpOne))

    const problems = config.MODELS_REQUIRED.flatMap((name) => {
      const entry = entries.get(name)
      if (!entry) return [`"${name}" is not in MODELS_DIR (${config.MODELS_DIR})`]
      return entry.info.status === 'ready' ? [] : [`"${name}" did not load: ${entry.info.reason}`]
    })
    if (problems.length) {
      await stop()
      throw new Error(`Required models are not available (MODELS_REQUIRED): ${problems.join('; ')}`)
    }
    if (config.MODEL_HEALTH_INTERVAL_S > 0) {
      timer = setInterval(function probeModels() {
        void checkHealth()
      }, config.MODEL_HEALTH_INTERVAL_S * 1000)
    }
  }

  async function probe(entry: Entry): Promise<void> {
    const { name } = entry.info
    try {
      await healthProbe(name, () => warmup(entry))
    } catch (error) {
      // A full queue, or a worker replaced under the probe, says the service is busy, not that the model is broken.
      if (error instanceof ServiceUnavailableError) return
      // So does a probe that never reached a worker: they may all be finishing, or replacing, runs whose callers
      // gave up. Only a probe that ran and overran speaks about the model.
      if (error instanceof TimeoutError && (error.details as { stage?: string } | undefined)?.stage === 'queued') return
      if (entry.info.status !== 'unhealthy') logger.warn({ model: name, reason: message(error) }, 'model health probe failed')
      entry.info.status = 'unhealthy'
      entry.info.reason = `health probe failed: ${message(error)}`
      return
    } finally {
      entry.info.last_health_check = now().toISOString()
    }
    if (entry.info.status === 'unhealthy') logger.info({ model: name }, 'model healthy again')
    entry.info.status = 'ready'
    entry.info.reason = null
  }

  function checkHealth(): Promise<void> {
    // Never stack probes: a slow round finishes before the next begins.
    probing ??= Promise.all(
      [...entries.values()].filter((e) => e.info.status === 'ready' || e.info.status === 'unhealthy').map(probe),
    ).then(() => {
      probing = undefined
    })
    return probing
  }

  async function stop(): Promise<void> {
    clearInterval(timer)
    timer = undefined
    await pool.close()
  }

  function find(name: string): Entry {
    const entry = entries.get(name)
    if (!entry) throw new NotFoundError(`Model "${name}" does not exist; GET /api/v1/models lists the models`)
    return entry
  }

  function serving(name: string): Entry & { manifest: Manifest } {
    const entry = find(name)
    const { status, reason } = entry.info
    if (status === 'ready') return entry as Entry & { manifest: Manifest }
    if (status === 'loading') throw new ServiceUnavailableError(`Model "${name}" is still loading`, 2, { status })
    if (status === 'unhealthy') throw new ServiceUnavailableError(`Model "${name}" is unhealthy: ${reason}`, 10, { status, reason })
    throw new ServiceUnavailableError(`Model "${name}" failed to load: ${reason}`, 60, { status, reason })
  }

  function budget(manifest: Manifest, requested: number | undefined, path: string): number {
    if (requested !== undefined && (!Number.isInteger(requested) || requested < 1 || requested > config.INFERENCE_MAX_TIMEOUT_MS)) {
      throw new ValidationError('The timeout is out of range', [
        { path, message: `timeout_ms must be a whole number from 1 to ${config.INFERENCE_MAX_TIMEOUT_MS}` },
      ])
    }
    return timeoutFor(manifest, requested)
  }

  const feedsOf = (name: string, entry: Entry, request: InferRequest | DecodedRequest) =>
    validateInferRequest(request, { model: name, inputs: entry.inputs, outputs: entry.outputs, maxElements: config.INFERENCE_MAX_ELEMENTS })

  function check(name: string, request: InferRequest): void {
    const entry = find(name)
    if (!entry.manifest || entry.inputs.length === 0) return
    budget(entry.manifest, request.parameters?.timeout_ms, '/parameters/timeout_ms')
    feedsOf(name, entry, request)
  }

  /** A client's run: through the model's dynamic batcher when it has one. */
  function runOn(entry: Entry & { manifest: Manifest }, feeds: Feeds, runOptions: RunOptions): Promise<RunResult> {
    return entry.batcher ? entry.batcher.run(feeds, runOptions) : pool.run(entry.manifest.name, feeds, runOptions)
  }

  async function infer(name: string, request: InferRequest | DecodedRequest, callOptions: CallOptions = {}): Promise<InferResult> {
    const entry = serving(name)
    const timeoutMs = budget(entry.manifest, callOptions.timeoutMs ?? request.parameters?.timeout_ms, '/parameters/timeout_ms')
    const feeds = feedsOf(name, entry, request)
    const wanted = request.outputs?.map((o) => o.name)
    const result = await runOn(entry, feeds, { timeoutMs, signal: callOptions.signal, owner: callOptions.owner, outputs: wanted })
    const order = wanted ?? entry.outputs.map((o) => o.name)
    return {
      model_name: name,
      model_version: entry.manifest.version,
      ...(request.id === undefined ? {} : { id: request.id }),
      outputs: order.filter((o) => result.outputs[o]).map((o) => toOutput(o, result.outputs[o]!)),
      timing: { queue_ms: round(result.queueMs), inference_ms: round(result.inferenceMs) },
    }
  }

  async function runRaw(name: string, feeds: Feeds, callOptions: CallOptions = {}): Promise<RunResult> {
    const entry = serving(name)
    const timeoutMs = budget(entry.manifest, callOptions.timeoutMs, '/timeout_ms')
    return runOn(entry, feeds, { timeoutMs, signal: callOptions.signal, owner: callOptions.owner })
  }

  async function runVadSequence(
    name: string,
    inputs: Float32Array,
    state: Float32Array,
    callOptions: CallOptions = {},
  ): Promise<VadSequenceResult> {
    if (inputs.length === 0 || inputs.length % SILERO_INPUT !== 0)
      throw new RangeError(`a VAD sequence needs a whole number of ${SILERO_INPUT}-sample frames, not ${inputs.length} samples`)
    if (state.length !== SILERO_STATE) throw new RangeError(`Silero needs a state of ${SILERO_STATE} floats, not ${state.length}`)
    const entry = serving(name)
    const timeoutMs = budget(entry.manifest, callOptions.timeoutMs, '/timeout_ms')
    const { outputs, queueMs, inferenceMs } = await pool.runVadSequence(name, inputs, state, {
      timeoutMs,
      signal: callOptions.signal,
      owner: callOptions.owner,
    })
    return { probabilities: outputs.output!.data as Float32Array, state: outputs.stateN!.data as Float32Array, queueMs, inferenceMs }
  }

  return {
    start,
    stop,
    // Snapshots: the registry updates status fields in place; load-time fields (inputs, outputs) never change.
    list: () => [...entries.values()].map((e) => ({ ...e.info })),
    get: (name) => ({ ...find(name).info }),
    check,
    infer,
    runRaw,
    runVadSequence,
    checkHealth,
    pool,
  }
}
