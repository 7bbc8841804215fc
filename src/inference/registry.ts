import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { t } from 'elysia'
import type { Config } from '../config'
import { NotFoundError, ServiceUnavailableError, TimeoutError, ValidationError } from '../errors'
import type { Logger } from '../logger'
import { type Batcher, type BatcherOptions, type BatchRunOptions, createBatcher } from './batcher'
import { BatchingSchema, type Manifest } from './manifest'
import { createPool, type Pool, type PoolOptions, type RunResult } from './pool'
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
import { compareVersions, type FoundModel, type FoundVersion, scanModel, scanModels } from './versions'
import type { WireTensorInfo } from './worker-messages'

/**
 * The models this process serves: found in MODELS_DIR, loaded into every pool worker, warmed
 * up before they count as ready, and probed periodically. Create one per process (in the
 * app's dependency wiring) and share it; routes, jobs and the VAD stream all go through it.
 * Each version of a model is a load of its own in the pool; `load()` replaces a model's loads
 * with fresh ones once they are warm, and `unload()` frees them once their calls are done.
 */

const TensorMetaSchema = t.Object({
  name: t.String(),
  datatype: t.String({ description: 'OIP datatype, or the ONNX type when this server cannot carry it' }),
  shape: t.Union([t.Array(t.Integer({ description: '-1 for a dynamic dimension' })), t.Null()]),
})

const ModelStatusSchema = t.Union([
  t.Literal('loading'),
  t.Literal('ready'),
  t.Literal('failed'),
  t.Literal('unhealthy'),
  t.Literal('unloading'),
  t.Literal('unloaded'),
])
const BackendSchema = t.Union([t.String(), t.Null()], {
  description: 'cpu, webgpu or wasm: the first backend in order that loaded the model',
})

export const ModelInfoSchema = t.Object({
  name: t.String(),
  version: t.Union([t.String(), t.Null()], { description: 'the version described here: the one a request that names none runs on' }),
  task: t.Union([t.Literal('vad'), t.Literal('tensor'), t.Null()]),
  status: ModelStatusSchema,
  reason: t.Union([t.String(), t.Null()]),
  backend: BackendSchema,
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
  batching: t.Union([BatchingSchema, t.Null()], {
    description: "the manifest's dynamic batching; null when requests run one by one",
  }),
  versions: t.Array(
    t.Object({
      version: t.Union([t.String(), t.Null()]),
      status: ModelStatusSchema,
      reason: t.Union([t.String(), t.Null()]),
      backend: BackendSchema,
      load_ms: t.Union([t.Number(), t.Null()]),
    }),
    { description: 'every version of the model, oldest first (a flat model folder has one)' },
  ),
})
export type ModelInfo = typeof ModelInfoSchema.static
export type ModelStatus = ModelInfo['status']
/** One version of a model: a ModelInfo without the list of versions. */
type VersionInfo = Omit<ModelInfo, 'versions'>

/** The states of Triton's model repository extension. */
export const REPOSITORY_STATES = ['READY', 'UNAVAILABLE', 'LOADING', 'UNLOADING'] as const
export const RepositoryIndexSchema = t.Array(
  t.Object({
    name: t.String(),
    version: t.Optional(t.String({ description: 'absent when a flat folder cannot say which version it holds' })),
    state: t.Union(REPOSITORY_STATES.map((s) => t.Literal(s))),
    reason: t.String({ description: 'why the version is in this state; empty when there is nothing to say' }),
  }),
)
export type RepositoryIndex = typeof RepositoryIndexSchema.static

export type RegistryConfig = Pick<
  Config,
  | 'MODELS_DIR'
  | 'MODELS_REQUIRED'
  | 'MODELS_HEALTH_INTERVAL_MS'
  | 'INFERENCE_WORKERS'
  | 'INFERENCE_QUEUE_MAX'
  | 'INFERENCE_MAX_TIMEOUT_MS'
  | 'INFERENCE_TERMINATION_GRACE_MIN_MS'
  | 'INFERENCE_TERMINATIONS_PER_KEY_PER_MIN'
  | 'INFERENCE_MAX_ELEMENTS'
  | 'INFERENCE_WORKER_RECYCLE_AFTER'
  | 'INFERENCE_WORKER_MAX_HEAP_MB'
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
  /** The version to run; by default the model's `default_version`, else its highest ready version. */
  version?: string
  /** How long the run may wait in the model's dynamic batcher for company (the manifest's `max_delay_ms` when absent). */
  maxDelayMs?: number
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
  /** One entry per model, describing the version a request that names none runs on. */
  list(): ModelInfo[]
  /** @throws NotFoundError (no such model, or no such version) */
  get(name: string, version?: string): ModelInfo
  /**
   * Checks a request against the model's inputs, outputs and limits without running it (jobs, at submit time).
   * A model that has never loaded has no metadata yet: then only its existence is checked.
   * @throws NotFoundError, ValidationError
   */
  check(name: string, request: InferRequest, version?: string): void
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
  /** Every version of every model, in the shape of Triton's repository index. */
  index(): RepositoryIndex
  /**
   * Read the model's folder again, load and warm up every version in it, then switch to them all at once; the
   * loads they replace serve until then and are freed once their calls finish. Nothing changes when a version
   * fails: the failure is recorded on it and thrown (400, as Triton answers a failed load). Loads and unloads
   * of one model run one after the other.
   * @throws NotFoundError (no such folder), ValidationError (the load failed)
   */
  load(name: string): Promise<void>
  /** Refuse new calls to every version of the model, wait for the calls under way, then free it. @throws NotFoundError */
  unload(name: string): Promise<void>
  readonly pool: Pool
}

/** One load of one version of a model. */
interface Entry {
  info: VersionInfo
  manifest?: Manifest
  inputs: TensorInfo[]
  outputs: TensorInfo[]
  /** Present when the manifest asks for dynamic batching: clients' runs go through it. */
  batcher?: Batcher
  /** The pool's name for this load: a reload gets a new one, so the old and the new can run side by side. */
  key: string
  /** Calls running on this load (requests, probes); it is freed only after the last one. */
  inflight: number
  /** Settles once `inflight` is back to 0, for whoever is waiting to free the load. */
  idle?: { promise: Promise<void>; resolve(): void }
  /** When its load began; load_ms runs from here to the end of its warm-up. */
  since: number
}

interface Model {
  /** Version ('' when unknown) → the load that serves it, or failed to. */
  versions: Map<string, Entry>
  defaultVersion?: string
  /** Loads under way that serve nothing yet; a version that has none in `versions` shows as loading. */
  pending: Entry[]
}

const versionKey = (version: string | null) => version ?? ''

/** Highest version first; a version nobody could read comes last. */
function newestFirst(a: { info: VersionInfo }, b: { info: VersionInfo }): number {
  if (a.info.version === null || b.info.version === null) return a.info.version === null ? 1 : b.info.version === null ? -1 : 0
  return compareVersions(b.info.version, a.info.version)
}

/**
 * The load a call runs on: the version asked for; else the model's default version; else its highest ready
 * version, or when none is ready its highest version (whose state then explains why it cannot serve).
 */
function choose<T extends { info: VersionInfo }>(loads: T[], defaultVersion: string | undefined, version?: string): T | undefined {
  const wanted = version ?? defaultVersion
  if (wanted !== undefined) return loads.find((l) => l.info.version === wanted)
  const ordered = [...loads].sort(newestFirst)
  return ordered.find((l) => l.info.status === 'ready') ?? ordered[0]
}

function repositoryState(status: ModelStatus): RepositoryIndex[number]['state'] {
  if (status === 'ready') return 'READY'
  if (status === 'loading') return 'LOADING'
  if (status === 'unloading') return 'UNLOADING'
  return 'UNAVAILABLE'
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
      recycleAfter: config.INFERENCE_WORKER_RECYCLE_AFTER,
      maxHeapMb: config.INFERENCE_WORKER_MAX_HEAP_MB,
      terminationGraceMinMs: config.INFERENCE_TERMINATION_GRACE_MIN_MS,
      terminationsPerKeyPerMin: config.INFERENCE_TERMINATIONS_PER_KEY_PER_MIN,
      logger,
      onRun,
    })
  const models = new Map<string, Model>()
  /** Each model's last load or unload, which the next one waits for. */
  const turns = new Map<string, Promise<unknown>>()
  let loads = 0
  let timer: ReturnType<typeof setInterval> | undefined
  let probing: Promise<void> | undefined

  function timeoutFor(manifest: Manifest, requested?: number): number {
    return Math.min(requested ?? manifest.timeout_ms, config.INFERENCE_MAX_TIMEOUT_MS)
  }

  function blank(name: string, version: string | null): Entry {
    return {
      key: `${name}@${versionKey(version)}#${++loads}`,
      inflight: 0,
      since: performance.now(),
      inputs: [],
      outputs: [],
      info: {
        name,
        version,
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
        batching: null,
      },
    }
  }

  function fail(entry: Entry, reason: string): void {
    entry.info.status = 'failed'
    entry.info.reason = reason
    logger.warn({ model: entry.info.name, version: entry.info.version, reason }, 'model failed to load; it answers 503 until fixed')
  }

  /** Run a call on one load, which is then not freed before the call is over. */
  async function tracked<T>(entry: Entry, call: () => Promise<T>): Promise<T> {
    entry.inflight++
    try {
      return await call()
    } finally {
      if (--entry.inflight === 0) entry.idle?.resolve()
    }
  }

  /** Settles once no call runs on the load. */
  function drained(entry: Entry): Promise<void> {
    if (entry.inflight === 0) return Promise.resolve()
    if (!entry.idle) {
      let resolve = () => {}
      const promise = new Promise<void>((r) => {
        resolve = r
      }).then(() => {
        entry.idle = undefined
      })
      entry.idle = { promise, resolve }
    }
    return entry.idle.promise
  }

  /** Free a load nothing resolves to any more, once the calls already on it are over. */
  async function release(entry: Entry): Promise<void> {
    await drained(entry)
    pool.unload(entry.key)
  }

  /** The warm-up through the real path: same checks and pool as a client's request. */
  async function warmup(entry: Entry): Promise<void> {
    const manifest = entry.manifest!
    if (!manifest.warmup) return
    const feeds = validateInferRequest(
      { inputs: manifest.warmup },
      { model: manifest.name, inputs: entry.inputs, outputs: entry.outputs, maxElements: Number.POSITIVE_INFINITY },
    )
    const { outputs } = await pool.run(entry.key, feeds, { timeoutMs: timeoutFor(manifest) })
    for (const [name, tensor] of Object.entries(outputs)) {
      if (tensor.data instanceof Float32Array || tensor.data instanceof Float64Array) {
        if (!tensor.data.every(Number.isFinite)) throw new Error(`output "${name}" holds non-finite values`)
      }
    }
  }

  /** Loads a version into the pool; it stays `loading` until `warmUpOne` has run it. */
  async function loadOne({ dir, manifest }: FoundVersion, entry: Entry): Promise<void> {
    if (typeof manifest === 'string') return fail(entry, manifest)
    if (manifest.name !== entry.info.name)
      return fail(entry, `manifest.json names the model "${manifest.name}" but its folder is "${entry.info.name}"; they must match`)
    entry.manifest = manifest
    Object.assign(entry.info, {
      task: manifest.task,
      license: manifest.license,
      source: manifest.source,
      batching: manifest.batching ?? null,
      limits: { ...entry.info.limits, timeout_ms: timeoutFor(manifest) },
    })
    let bytes: Uint8Array
    try {
      bytes = new Uint8Array(await readFile(join(dir, manifest.file)))
    } catch {
      return fail(entry, `${manifest.file} cannot be read from ${dir}`)
    }
    const report = await pool.load({ name: entry.key, label: manifest.name, bytes, backends: backendOrder(manifest) })
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
        run: (feeds, runOptions) => pool.run(entry.key, feeds, runOptions),
        maxInFlight: pool.stats().size,
        // At least a full batch for every worker may wait: a cap below that would refuse requests (realtime frames
        // of hundreds of streams) that the next round of runs takes anyway.
        queueMax: Math.max(config.INFERENCE_QUEUE_MAX, max_batch_size * pool.stats().size),
        budget: (timeoutMs) => pool.budget(entry.key, timeoutMs),
        onBatch,
      })
    }
  }

  async function warmUpOne(entry: Entry): Promise<void> {
    const manifest = entry.manifest!
    try {
      await warmup(entry)
    } catch (error) {
      pool.unload(entry.key)
      const details = error instanceof ValidationError ? ` ${JSON.stringify(error.details)}` : ''
      return fail(entry, `warm-up failed: ${message(error)}${details}`)
    }
    entry.info.load_ms = round(performance.now() - entry.since)
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

  /** A load per version found, or one failed entry saying why the folder as a whole cannot be used. */
  function prepare(found: FoundModel): [FoundVersion | undefined, Entry][] {
    if ('versions' in found) return found.versions.map((v) => [v, blank(found.name, v.version)])
    const entry = blank(found.name, null)
    fail(entry, found.problem)
    return [[undefined, entry]]
  }

  /** Load, then warm up: warm-ups start once every load is in, as a worker still creating another session would eat their timeout. */
  async function loadAll(pairs: [FoundVersion | undefined, Entry][]): Promise<void> {
    await Promise.all(pairs.map(([found, entry]) => found && loadOne(found, entry)))
    // A first WASM session compiles onnxruntime-web: seconds on a busy host.
    await Promise.all(pairs.filter(([, e]) => e.info.status === 'loading' && e.info.backend).map(([, e]) => warmUpOne(e)))
  }

  async function start(): Promise<void> {
    const found = await scanModels(config.MODELS_DIR)
    if (!found) logger.warn({ dir: config.MODELS_DIR }, 'MODELS_DIR cannot be read; no models will be served')
    const pairs = (found ?? []).flatMap((model) => {
      const prepared = prepare(model)
      const defaultVersion = 'versions' in model ? model.defaultVersion : undefined
      models.set(model.name, { versions: new Map(prepared.map(([, e]) => [versionKey(e.info.version), e])), defaultVersion, pending: [] })
      return prepared
    })
    await loadAll(pairs)

    const problems = config.MODELS_REQUIRED.flatMap((name) => {
      const model = models.get(name)
      const entry = model && choose([...model.versions.values()], model.defaultVersion)
      if (!entry) return [`"${name}" is not in MODELS_DIR (${config.MODELS_DIR})`]
      return entry.info.status === 'ready' ? [] : [`"${name}" did not load: ${entry.info.reason}`]
    })
    if (problems.length) {
      await stop()
      throw new Error(`Required models are not available (MODELS_REQUIRED): ${problems.join('; ')}`)
    }
    if (config.MODELS_HEALTH_INTERVAL_MS > 0) {
      timer = setInterval(function probeModels() {
        void checkHealth()
      }, config.MODELS_HEALTH_INTERVAL_MS)
    }
  }

  async function probe(entry: Entry): Promise<void> {
    const { name } = entry.info
    try {
      await tracked(entry, () => healthProbe(name, () => warmup(entry)))
    } catch (error) {
      // A full queue, or a worker replaced under the probe, says the service is busy, not that the model is broken.
      if (error instanceof ServiceUnavailableError) return
      // So does a probe that never reached a worker: they may all be finishing, or replacing, runs whose callers
      // gave up. Only a probe that ran and overran speaks about the model.
      if (error instanceof TimeoutError && (error.details as { stage?: string } | undefined)?.stage === 'queued') return
      // An unload that began meanwhile has the last word.
      if (entry.info.status !== 'ready' && entry.info.status !== 'unhealthy') return
      if (entry.info.status !== 'unhealthy') logger.warn({ model: name, reason: message(error) }, 'model health probe failed')
      entry.info.status = 'unhealthy'
      entry.info.reason = `health probe failed: ${message(error)}`
      return
    } finally {
      entry.info.last_health_check = now().toISOString()
    }
    // Only a model that was unhealthy changes: a ready one keeps its reason (a reload that failed), an unloading one its state.
    if (entry.info.status !== 'unhealthy') return
    logger.info({ model: name }, 'model healthy again')
    entry.info.status = 'ready'
    entry.info.reason = null
  }

  function checkHealth(): Promise<void> {
    // Never stack probes: a slow round finishes before the next begins.
    probing ??= Promise.all(
      [...models.values()]
        .flatMap((m) => [...m.versions.values()])
        .filter((e) => e.info.status === 'ready' || e.info.status === 'unhealthy')
        .map(probe),
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

  /** Run one load or unload of a model at a time, in the order they were asked for. */
  function inTurn<T>(name: string, work: () => Promise<T>): Promise<T> {
    const turn = (turns.get(name) ?? Promise.resolve()).then(work)
    const settled = turn.catch(() => {})
    turns.set(name, settled)
    void settled.then(() => {
      if (turns.get(name) === settled) turns.delete(name)
    })
    return turn
  }

  function modelNamed(name: string): Model {
    const model = models.get(name)
    if (!model) throw new NotFoundError(`Model "${name}" does not exist; GET /api/v1/models lists the models`)
    return model
  }

  /** The load a call on this model (and version) runs on; see `choose`. */
  function find(name: string, version?: string): Entry {
    const model = modelNamed(name)
    const entry = choose([...model.versions.values()], model.defaultVersion, version)
    if (entry) return entry
    if (model.pending.some((p) => version === undefined || p.info.version === version))
      throw new ServiceUnavailableError(`Model "${name}" is still loading`, 2, { status: 'loading' })
    throw new NotFoundError(`Model "${name}" has no version "${version}"; GET /api/v1/models/${name} lists its versions`)
  }

  function serving(name: string, version?: string): Entry & { manifest: Manifest } {
    const entry = find(name, version)
    const { status, reason } = entry.info
    if (status === 'ready') return entry as Entry & { manifest: Manifest }
    const what = version === undefined ? `Model "${name}"` : `Version "${version}" of model "${name}"`
    if (status === 'loading') throw new ServiceUnavailableError(`${what} is still loading`, 2, { status })
    if (status === 'unhealthy') throw new ServiceUnavailableError(`${what} is unhealthy: ${reason}`, 10, { status, reason })
    if (status === 'unloading' || status === 'unloaded')
      throw new ServiceUnavailableError(`${what} is ${status}; an admin can load it again (POST /v2/repository/models/${name}/load)`, 60, {
        status,
      })
    throw new ServiceUnavailableError(`${what} failed to load: ${reason}`, 60, { status, reason })
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

  function check(name: string, request: InferRequest, version?: string): void {
    const entry = find(name, version)
    if (!entry.manifest || entry.inputs.length === 0) return
    budget(entry.manifest, request.parameters?.timeout_ms, '/parameters/timeout_ms')
    feedsOf(name, entry, request)
  }

  /** A client's run on one load: through the model's dynamic batcher when it has one. */
  function runOn(entry: Entry & { manifest: Manifest }, feeds: Feeds, runOptions: BatchRunOptions): Promise<RunResult> {
    return entry.batcher ? entry.batcher.run(feeds, runOptions) : pool.run(entry.key, feeds, runOptions)
  }

  async function infer(name: string, request: InferRequest | DecodedRequest, callOptions: CallOptions = {}): Promise<InferResult> {
    const entry = serving(name, callOptions.version)
    const timeoutMs = budget(entry.manifest, callOptions.timeoutMs ?? request.parameters?.timeout_ms, '/parameters/timeout_ms')
    const feeds = feedsOf(name, entry, request)
    const wanted = request.outputs?.map((o) => o.name)
    const result = await tracked(entry, () =>
      runOn(entry, feeds, { timeoutMs, signal: callOptions.signal, owner: callOptions.owner, outputs: wanted }),
    )
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
    const entry = serving(name, callOptions.version)
    const timeoutMs = budget(entry.manifest, callOptions.timeoutMs, '/timeout_ms')
    return tracked(entry, () =>
      runOn(entry, feeds, { timeoutMs, signal: callOptions.signal, owner: callOptions.owner, maxDelayMs: callOptions.maxDelayMs }),
    )
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
    const entry = serving(name, callOptions.version)
    const timeoutMs = budget(entry.manifest, callOptions.timeoutMs, '/timeout_ms')
    const { outputs, queueMs, inferenceMs } = await tracked(entry, () =>
      pool.runVadSequence(entry.key, inputs, state, { timeoutMs, signal: callOptions.signal, owner: callOptions.owner }),
    )
    return { probabilities: outputs.output!.data as Float32Array, state: outputs.stateN!.data as Float32Array, queueMs, inferenceMs }
  }

  /**
   * What a model shows, oldest version first: snapshots (the registry updates status fields in place; load-time
   * fields never change) of its versions, and of the versions a load is adding, which serve nothing yet.
   */
  function shown(model: Model): { info: VersionInfo }[] {
    const infos = new Map([...model.versions].map(([version, e]) => [version, { ...e.info }]))
    for (const p of model.pending) {
      const version = versionKey(p.info.version)
      if (!infos.has(version)) infos.set(version, { ...p.info, status: 'loading', reason: null })
    }
    return [...infos.values()].map((info) => ({ info })).sort((a, b) => newestFirst(b, a))
  }

  function describe(model: Model, version?: string): ModelInfo | undefined {
    // Most models have one version and no load under way: one copy of it, no map and no sort (the hot path of
    // GET /models/:name).
    if (model.pending.length === 0 && model.versions.size === 1) {
      for (const { info } of model.versions.values()) {
        if ((version ?? model.defaultVersion ?? info.version) !== info.version) break
        const { status, reason, backend, load_ms } = info
        return { ...info, versions: [{ version: info.version, status, reason, backend, load_ms }] }
      }
    }
    const versions = shown(model)
    const chosen = choose(versions, model.defaultVersion, version)
    if (!chosen) return undefined
    return {
      ...chosen.info,
      versions: versions.map(({ info: { version, status, reason, backend, load_ms } }) => ({ version, status, reason, backend, load_ms })),
    }
  }

  function list(): ModelInfo[] {
    return [...models.keys()].sort().flatMap((name) => describe(models.get(name)!) ?? [])
  }

  function get(name: string, version?: string): ModelInfo {
    const info = describe(modelNamed(name), version)
    if (!info) throw new NotFoundError(`Model "${name}" has no version "${version}"; GET /api/v1/models/${name} lists its versions`)
    return info
  }

  function index(): RepositoryIndex {
    return [...models.keys()].sort().flatMap((name) =>
      shown(models.get(name)!).map(({ info: { version, status, reason } }) => ({
        name,
        ...(version === null ? {} : { version }),
        state: repositoryState(status),
        reason: reason ?? '',
      })),
    )
  }

  function load(name: string): Promise<void> {
    return inTurn(name, async function loadModel() {
      const found = await scanModel(config.MODELS_DIR, name)
      if (!found) throw new NotFoundError(`There is no folder "${name}" in the model repository (MODELS_DIR)`)
      let model = models.get(name)
      if (!model) {
        model = { versions: new Map(), pending: [] }
        models.set(name, model)
      }
      const pairs = prepare(found)
      model.pending = pairs.map(([, e]) => e)
      try {
        await loadAll(pairs)
      } finally {
        model.pending = []
      }
      const failed = pairs.map(([, e]) => e).filter((e) => e.info.status !== 'ready')
      if (failed.length) {
        for (const [, e] of pairs) if (e.info.status === 'ready') void release(e)
        for (const e of failed) {
          const before = model.versions.get(versionKey(e.info.version))
          if (before && (before.info.status === 'ready' || before.info.status === 'unhealthy'))
            before.info.reason = `the last load failed and this version serves on as loaded before: ${e.info.reason}`
          else model.versions.set(versionKey(e.info.version), e)
        }
        const reasons = failed.map((e) => (e.info.version === null ? e.info.reason : `version ${e.info.version}: ${e.info.reason}`))
        throw new ValidationError(`Model "${name}" was not loaded, and what served before serves on: ${reasons.join('; ')}`)
      }
      // The switch: from here every call resolves to the new loads; calls already on the old ones finish there.
      const replaced = [...model.versions.values()]
      model.versions = new Map(pairs.map(([, e]) => [versionKey(e.info.version), e]))
      model.defaultVersion = 'versions' in found ? found.defaultVersion : undefined
      for (const e of replaced) void release(e)
      logger.info({ model: name, versions: pairs.map(([, e]) => e.info.version), default_version: model.defaultVersion }, 'model loaded')
    })
  }

  function unload(name: string): Promise<void> {
    return inTurn(name, async function unloadModel() {
      const entries = [...modelNamed(name).versions.values()].filter((e) => e.info.status !== 'unloaded')
      for (const e of entries) {
        e.info.status = 'unloading'
        e.info.reason = null
      }
      await Promise.all(entries.map(release))
      for (const e of entries) {
        e.info.status = 'unloaded'
        e.info.reason = 'unloaded'
      }
      logger.info({ model: name }, 'model unloaded')
    })
  }

  return {
    start,
    stop,
    list,
    get,
    check,
    infer,
    runRaw,
    runVadSequence,
    checkHealth,
    index,
    load,
    unload,
    pool,
  }
}
