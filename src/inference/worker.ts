/**
 * One inference worker: holds a session per loaded model, made by onnxruntime-node (backend
 * `cpu`, native) or onnxruntime-web (`webgpu`, `wasm`), and runs them on one thread each. It
 * speaks only the messages below (standard Worker API, so the same file runs under Bun and
 * Deno); scheduling, timeouts and recycling are the pool's business.
 */
import type * as OrtNode from 'onnxruntime-node'
import type * as Ort from 'onnxruntime-web'
import { fromPacket, type SharedAnswer, SharedSlot, type SharedWork, TO_POOL, TO_WORKER } from './shared-slot'
import type { Feeds, RawTensor } from './tensors'
import { SILERO_INPUT, SILERO_STATE } from './vad-batch'
import type { BackendAttempt, FromWorker, ToWorker, WireTensorInfo } from './worker-messages'

interface WorkerScope {
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null
  postMessage(message: FromWorker, transfer?: Transferable[]): void
  navigator?: { gpu?: unknown }
}

const scope = globalThis as unknown as WorkerScope

// onnxruntime's WASM heap is the memory worth watching (it only grows), and ort does not expose
// it: remember every WebAssembly.Memory created in this worker. Must happen before ort loads.
// A native (`cpu`) session allocates outside both the WASM and the JS heap, so this misses it.
const memories: WebAssembly.Memory[] = []
WebAssembly.Memory = new Proxy(WebAssembly.Memory, {
  construct(target, args) {
    const memory = Reflect.construct(target, args) as WebAssembly.Memory
    memories.push(memory)
    return memory
  },
})

const ort: typeof Ort = await import('onnxruntime-web')
ort.env.wasm.numThreads = 1
ort.env.logLevel = 'error'
/** Fatal only: a run's errors come back as its exception, which vireo logs once, with the model and worker. */
const QUIET = { logSeverityLevel: 4 } as const
const wasmDir = wasmDirectory()
if (wasmDir) ort.env.wasm.wasmPaths = wasmDir

/** Where onnxruntime-web's .wasm files sit, as a file: URL, so it finds them whatever the bundler or runtime guesses. */
function wasmDirectory(): string | undefined {
  try {
    const entry = import.meta.resolve('onnxruntime-web')
    return entry.startsWith('file:') ? new URL('./', entry).href : undefined
  } catch {
    return undefined
  }
}

/**
 * Read at most every HEAP_READ_MS: process.memoryUsage() costs 8–15 µs here, a tenth of a native Silero run, and
 * the pool only compares the figure against INFERENCE_WORKER_MAX_HEAP_MB, which a heap cannot outgrow in a few runs.
 */
const HEAP_READ_MS = 50
let heapReadAt = Number.NEGATIVE_INFINITY
let heapLast = 0

function heapBytes(): number {
  if (memories.length) return memories.reduce((n, m) => n + m.buffer.byteLength, 0)
  const now = performance.now()
  if (now - heapReadAt < HEAP_READ_MS) return heapLast
  heapReadAt = now
  const proc = (globalThis as { process?: { memoryUsage?: () => { heapUsed: number } } }).process
  heapLast = proc?.memoryUsage?.().heapUsed ?? 0
  return heapLast
}

/**
 * A loaded model as this worker runs it, whichever library made it: tensors in, every output (or the ones named)
 * out, as plain tensors.
 */
interface Loaded {
  inputs: WireTensorInfo[]
  outputs: WireTensorInfo[]
  run(feeds: Feeds, wanted?: string[]): Feeds | Promise<Feeds>
  release(): void | Promise<void>
}

const sessions = new Map<string, Loaded>()

/**
 * onnxruntime-node's own session object (`onnxruntime-node/dist/binding.js`), one level below its public
 * `InferenceSession`: its `run` is synchronous and takes and gives plain tensors. The public `run` wraps this same
 * call in a `setImmediate`, checks the feeds again and wraps every tensor in and out (a Silero frame: 89 µs this way
 * against 122, `bun bench/index.ts backends`; `/audio/vad` ≈ 20 % faster). vireo has checked the feeds against the
 * model's metadata before they reach a worker (tensors.ts). Typed here, not with the package's `Binding` types:
 * those declare `run` with the public Tensor class, and `loadModel` with an ArrayBuffer only.
 */
interface NativeSession {
  loadModel(buffer: ArrayBufferLike, byteOffset: number, byteLength: number, options: object): void
  readonly inputMetadata: NativeValueInfo[]
  readonly outputMetadata: NativeValueInfo[]
  run(feeds: Record<string, RawTensor & { location: 'cpu' }>, fetches: Record<string, null>, options: object): Record<string, RawTensor>
  dispose(): void
}

interface NativeValueInfo {
  name: string
  isTensor: boolean
  /** ONNX's element type number (TensorProto.DataType). */
  type: number
  /** -1 where a dimension is dynamic; its name is then in `symbolicDimensions`. */
  shape: number[]
  symbolicDimensions: string[]
}

interface NativeBinding {
  binding: { InferenceSession: new () => NativeSession }
  initOrt(): void
}

/** ONNX element type numbers as onnxruntime names them; a model with any other type does not load on `cpu`. */
const ONNX_TYPES: Record<number, string> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
  21: 'uint4',
  22: 'int4',
}

function nativeMetadata(list: NativeValueInfo[]): WireTensorInfo[] {
  return list.map(({ name, isTensor, type, shape, symbolicDimensions }) => {
    if (!isTensor) return { name, type: 'non-tensor', shape: null }
    const named = ONNX_TYPES[type]
    if (!named) throw new Error(`Unsupported data type: ${type}`)
    return { name, type: named, shape: shape.map((dim, i) => (dim === -1 ? symbolicDimensions[i]! : dim)) }
  })
}

let native: Promise<NativeBinding> | undefined

/**
 * onnxruntime-node, imported on first use only: where its binding cannot load (Deno without
 * FFI permission, edge hosts, a platform it has no binary for) the failure becomes a recorded
 * attempt and the next backend is tried, and hosts that never ask for `cpu` never pay for it.
 */
function nativeLibrary(): Promise<NativeBinding> {
  native ??= import('onnxruntime-node').then(async (lib: typeof OrtNode) => {
    // initOrt reads its log level from the package's `env`, once: set it there before the binding starts.
    lib.env.logLevel = 'error'
    const loaded = (await import('onnxruntime-node/dist/binding.js')) as unknown as NativeBinding
    loaded.initOrt()
    return loaded
  })
  return native
}

async function nativeSession(bytes: Uint8Array): Promise<Loaded> {
  const { binding } = await nativeLibrary()
  const session = new binding.InferenceSession()
  // One thread per session, as for wasm: parallelism comes from the pool's workers.
  session.loadModel(bytes.buffer, bytes.byteOffset, bytes.byteLength, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    logSeverityLevel: QUIET.logSeverityLevel,
  })
  const outputs = nativeMetadata(session.outputMetadata)
  const every = Object.fromEntries(outputs.map((o) => [o.name, null]))
  return {
    inputs: nativeMetadata(session.inputMetadata),
    outputs,
    run(feeds, wanted) {
      const inputs: Record<string, RawTensor & { location: 'cpu' }> = {}
      for (const name in feeds) inputs[name] = { ...feeds[name]!, location: 'cpu' }
      const fetches = wanted?.length ? Object.fromEntries(wanted.map((name) => [name, null])) : every
      const results = session.run(inputs, fetches, QUIET)
      const answer: Feeds = {}
      for (const name in results) {
        const { type, data, dims } = results[name]!
        answer[name] = { type, data, dims: [...dims] }
      }
      return answer
    },
    release: () => session.dispose(),
  }
}

/** A session of onnxruntime-web (`wasm`, `webgpu`), through its public API. */
async function webSession(backend: string, bytes: Uint8Array): Promise<Loaded> {
  if (backend === 'webgpu' && !scope.navigator?.gpu) throw new Error('navigator.gpu is not available in this runtime')
  // One provider per attempt: given a list, onnxruntime silently drops the ones it lacks.
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: [backend as 'wasm'],
    graphOptimizationLevel: 'all',
    logSeverityLevel: QUIET.logSeverityLevel,
  })
  return {
    inputs: metadata(session.inputMetadata, session.inputNames),
    outputs: metadata(session.outputMetadata, session.outputNames),
    async run(feeds, wanted) {
      const inputs: Record<string, Ort.Tensor> = {}
      for (const [name, t] of Object.entries(feeds)) inputs[name] = new ort.Tensor(t.type, t.data, t.dims)
      const results = wanted?.length ? await session.run(inputs, wanted, QUIET) : await session.run(inputs, QUIET)
      const outputs: Feeds = {}
      for (const [name, tensor] of Object.entries(results)) {
        const data = (await tensor.getData()) as RawTensor['data']
        tensor.dispose()
        outputs[name] = { type: tensor.type as RawTensor['type'], data, dims: [...tensor.dims] }
      }
      return outputs
    },
    release: () => session.release(),
  }
}

const createSession = (backend: string, bytes: Uint8Array): Promise<Loaded> =>
  backend === 'cpu' ? nativeSession(bytes) : webSession(backend, bytes)

function metadata(list: readonly Ort.InferenceSession.ValueMetadata[] | undefined, names: readonly string[]): WireTensorInfo[] {
  return names.map((name) => {
    const meta = list?.find((m) => m.name === name)
    if (!meta?.isTensor) return { name, type: meta ? 'non-tensor' : 'unknown', shape: null }
    return { name, type: meta.type, shape: [...meta.shape] }
  })
}

async function load(name: string, bytes: Uint8Array, backends: string[]): Promise<FromWorker> {
  const attempts: BackendAttempt[] = []
  const started = performance.now()
  for (const backend of backends) {
    try {
      const loaded = await createSession(backend, bytes)
      await sessions.get(name)?.release()
      sessions.set(name, loaded)
      return {
        type: 'loaded',
        name,
        ok: true,
        backend,
        attempts,
        inputs: loaded.inputs,
        outputs: loaded.outputs,
        loadMs: performance.now() - started,
      }
    } catch (error) {
      attempts.push({ backend, error: error instanceof Error ? error.message : String(error) })
    }
  }
  return { type: 'loaded', name, ok: false, reason: attempts.map((a) => `${a.backend}: ${a.error}`).join('; '), attempts }
}

/**
 * A typed array that owns its whole buffer, so the answer can transfer it. wasm's getData() already copies
 * out of the heap; a native output is copied only when its array is a view into a larger buffer.
 */
function plain(data: RawTensor['data']): RawTensor['data'] {
  const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer
  return whole ? data : (data.slice() as RawTensor['data'])
}

async function runOwned(loaded: Loaded, feeds: Feeds, wanted?: string[]): Promise<Feeds> {
  const outputs = await loaded.run(feeds, wanted)
  for (const name in outputs) outputs[name]!.data = plain(outputs[name]!.data)
  return outputs
}

async function vadSequence(loaded: Loaded, inputs: Float32Array, state: Float32Array, sampleRate: number): Promise<Feeds> {
  const frames = inputs.length / SILERO_INPUT
  if (!Number.isInteger(frames) || state.length !== SILERO_STATE)
    throw new RangeError(`a VAD sequence needs n × ${SILERO_INPUT} samples and ${SILERO_STATE} floats of state`)
  const probabilities = new Float32Array(frames)
  const sr: RawTensor = { type: 'int64', data: BigInt64Array.of(BigInt(sampleRate)), dims: [] }
  let carried: RawTensor = { type: 'float32', data: state, dims: [2, 1, SILERO_STATE / 2] }
  for (let k = 0; k < frames; k++) {
    const input: RawTensor = { type: 'float32', data: inputs.subarray(k * SILERO_INPUT, (k + 1) * SILERO_INPUT), dims: [1, SILERO_INPUT] }
    const { output, stateN } = await loaded.run({ input, state: carried, sr })
    if (!output || !stateN) throw new Error('the model did not answer "output" and "stateN"; is it Silero VAD?')
    probabilities[k] = (output.data as Float32Array)[0]!
    carried = stateN
  }
  return {
    output: { type: 'float32', data: probabilities, dims: [frames, 1] },
    // Copied so the buffer handed back holds the state alone.
    stateN: { type: 'float32', data: Float32Array.from(carried.data as Float32Array), dims: [2, 1, SILERO_STATE / 2] },
  }
}

type Reply = (answer: Extract<FromWorker, { id: number }>, transfer?: Transferable[]) => void

const postReply: Reply = (answer, transfer = []) => scope.postMessage(answer, transfer)

async function work(message: Extract<ToWorker, { id: number }>, reply: Reply): Promise<void> {
  const { id, model } = message
  const loaded = sessions.get(model)
  if (!loaded) {
    reply({
      type: 'failed',
      id,
      message: `model "${model}" is not loaded in this worker`,
      heapBytes: heapBytes(),
      rejected: false,
    })
    return
  }
  try {
    const started = performance.now()
    const outputs =
      message.type === 'run'
        ? await runOwned(loaded, message.feeds, message.outputs)
        : await vadSequence(loaded, message.inputs, message.state, message.sampleRate)
    const inferenceMs = performance.now() - started
    const transfer = new Set(Object.values(outputs).map((t) => t.data.buffer as ArrayBuffer))
    reply({ type: 'result', id, outputs, inferenceMs, heapBytes: heapBytes() }, [...transfer])
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    // Tensors of a 'run' come from the client; a VAD sequence is built by vireo itself, so its failure is vireo's.
    reply({ type: 'failed', id, message: reason, heapBytes: heapBytes(), rejected: message.type === 'run' })
  }
}

/**
 * Serve the pool's shared slot: one run at a time comes in on one bell, its answer goes back on the other. An answer
 * too large for the slot goes by postMessage, and the bell says so, so the pool never waits for it there.
 */
async function serveSlot(slot: SharedSlot): Promise<void> {
  const reply: Reply = (answer, transfer) => {
    const { outputs, ...meta } = answer.type === 'result' ? answer : { ...answer, outputs: undefined }
    if (slot.send(TO_POOL, meta, outputs) !== undefined) return
    postReply(answer, transfer)
    slot.send(TO_POOL, { type: 'posted' } satisfies SharedAnswer)
  }
  let seen = slot.rung(TO_WORKER)
  for (;;) {
    await slot.wait(TO_WORKER, seen)
    seen = slot.rung(TO_WORKER)
    await work(fromPacket(slot.read<SharedWork>()), reply)
  }
}

// Loads go one at a time: concurrent session creation in one WASM instance garbles ort's error messages.
let loading = Promise.resolve()

scope.onmessage = function onWorkerMessage(event) {
  const message = event.data
  if (message.type === 'run' || message.type === 'vad-sequence') void work(message, postReply)
  else if (message.type === 'attach') {
    void serveSlot(new SharedSlot(message.buffer))
    scope.postMessage({ type: 'attached' })
  } else if (message.type === 'load') {
    loading = loading.then(async () => scope.postMessage(await load(message.name, message.bytes, message.backends)))
  } else if (message.type === 'unload') {
    void sessions.get(message.name)?.release()
    sessions.delete(message.name)
  }
}

// Messages posted before this line may be lost while the module was still loading: the pool waits for it.
scope.postMessage({ type: 'ready' })
