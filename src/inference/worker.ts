/**
 * One inference worker: holds an onnxruntime-web session per loaded model and runs them on
 * one WASM thread. It speaks only the messages below (standard Worker API, so the same file
 * runs under Bun and Deno); scheduling, timeouts and recycling are the pool's business.
 */
import type * as Ort from 'onnxruntime-web'
import type { Feeds, RawTensor } from './tensors'

export interface WireTensorInfo {
  name: string
  type: string
  shape: (number | string)[] | null
}

export interface BackendAttempt {
  backend: string
  error: string
}

export type ToWorker =
  | { type: 'load'; name: string; bytes: Uint8Array; backends: string[] }
  | { type: 'unload'; name: string }
  | { type: 'run'; id: number; model: string; feeds: Feeds; outputs?: string[] }

export type FromWorker =
  | { type: 'ready' }
  | {
      type: 'loaded'
      name: string
      ok: true
      backend: string
      attempts: BackendAttempt[]
      inputs: WireTensorInfo[]
      outputs: WireTensorInfo[]
      loadMs: number
    }
  | { type: 'loaded'; name: string; ok: false; reason: string; attempts: BackendAttempt[] }
  | { type: 'result'; id: number; outputs: Feeds; inferenceMs: number; heapBytes: number }
  | { type: 'failed'; id: number; message: string; heapBytes: number }

interface WorkerScope {
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null
  postMessage(message: FromWorker, transfer?: Transferable[]): void
  navigator?: { gpu?: unknown }
}

const scope = globalThis as unknown as WorkerScope

// onnxruntime's WASM heap is the memory worth watching (it only grows), and ort does not expose
// it: remember every WebAssembly.Memory created in this worker. Must happen before ort loads.
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

function heapBytes(): number {
  if (memories.length) return memories.reduce((n, m) => n + m.buffer.byteLength, 0)
  const proc = (globalThis as { process?: { memoryUsage?: () => { heapUsed: number } } }).process
  return proc?.memoryUsage?.().heapUsed ?? 0
}

const sessions = new Map<string, Ort.InferenceSession>()

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
    if (backend === 'webgpu' && !scope.navigator?.gpu) {
      attempts.push({ backend, error: 'navigator.gpu is not available in this runtime' })
      continue
    }
    try {
      // One provider per attempt: given a list, onnxruntime silently drops the ones it lacks.
      const session = await ort.InferenceSession.create(bytes, { executionProviders: [backend as 'wasm'], graphOptimizationLevel: 'all' })
      await sessions.get(name)?.release()
      sessions.set(name, session)
      return {
        type: 'loaded',
        name,
        ok: true,
        backend,
        attempts,
        inputs: metadata(session.inputMetadata, session.inputNames),
        outputs: metadata(session.outputMetadata, session.outputNames),
        loadMs: performance.now() - started,
      }
    } catch (error) {
      attempts.push({ backend, error: error instanceof Error ? error.message : String(error) })
    }
  }
  return { type: 'loaded', name, ok: false, reason: attempts.map((a) => `${a.backend}: ${a.error}`).join('; '), attempts }
}

async function run(id: number, model: string, feeds: Feeds, wanted?: string[]): Promise<void> {
  const session = sessions.get(model)
  if (!session) {
    scope.postMessage({ type: 'failed', id, message: `model "${model}" is not loaded in this worker`, heapBytes: heapBytes() })
    return
  }
  try {
    const inputs: Record<string, Ort.Tensor> = {}
    for (const [name, t] of Object.entries(feeds)) inputs[name] = new ort.Tensor(t.type, t.data, t.dims)
    const started = performance.now()
    const results = wanted?.length ? await session.run(inputs, wanted) : await session.run(inputs)
    const inferenceMs = performance.now() - started
    const outputs: Feeds = {}
    const transfer = new Set<ArrayBuffer>()
    for (const [name, tensor] of Object.entries(results)) {
      const data = (await tensor.getData()) as RawTensor['data']
      tensor.dispose()
      outputs[name] = { type: tensor.type as RawTensor['type'], data, dims: [...tensor.dims] }
      transfer.add(data.buffer as ArrayBuffer)
    }
    scope.postMessage({ type: 'result', id, outputs, inferenceMs, heapBytes: heapBytes() }, [...transfer])
  } catch (error) {
    scope.postMessage({ type: 'failed', id, message: error instanceof Error ? error.message : String(error), heapBytes: heapBytes() })
  }
}

// Loads go one at a time: concurrent session creation in one WASM instance garbles ort's error messages.
let loading = Promise.resolve()

scope.onmessage = function onWorkerMessage(event) {
  const message = event.data
  if (message.type === 'run') void run(message.id, message.model, message.feeds, message.outputs)
  else if (message.type === 'load') {
    loading = loading.then(async () => scope.postMessage(await load(message.name, message.bytes, message.backends)))
  } else if (message.type === 'unload') {
    void sessions.get(message.name)?.release()
    sessions.delete(message.name)
  }
}

// Messages posted before this line may be lost while the module was still loading: the pool waits for it.
scope.postMessage({ type: 'ready' })
