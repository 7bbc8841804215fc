/**
 * The raw baseline for the throughput benchmarks: one session on one thread, set up like
 * src/inference/worker.ts (onnxruntime-node for `cpu`, onnxruntime-web for `wasm`), running Silero
 * frames back to back with no pool around it.
 * Messages: first { type: 'up' } once it listens; { type: 'load', bytes, backend? } → { type: 'ready' };
 * { type: 'run', n } → { type: 'done', ms }.
 */
import * as ort from 'onnxruntime-web'
import { packVadBatch, SILERO_FRAME, SILERO_STATE } from '../src/inference/vad-batch'
import { tone } from '../test/audio/wav-builder'

ort.env.wasm.numThreads = 1
ort.env.logLevel = 'error'
try {
  const entry = import.meta.resolve('onnxruntime-web')
  if (entry.startsWith('file:')) ort.env.wasm.wasmPaths = new URL('./', entry).href
} catch {
  // Let onnxruntime find its .wasm files itself.
}

interface Scope {
  onmessage:
    | ((event: MessageEvent<{ type: 'load'; bytes: Uint8Array; backend?: 'cpu' | 'wasm' } | { type: 'run'; n: number }>) => void)
    | null
  postMessage(message: unknown): void
}
const scope = globalThis as unknown as Scope

const samples = tone(220, 16000, SILERO_FRAME / 16000, 0.3)
const feeds = packVadBatch([{ samples, state: new Float32Array(SILERO_STATE) }])
let session: ort.InferenceSession | undefined
/** Tensors given to a session come from the library that made it. */
let Tensor: typeof ort.Tensor = ort.Tensor

scope.onmessage = async function onRawMessage(event) {
  const message = event.data
  if (message.type === 'load') {
    if (message.backend === 'cpu') {
      const native = (await import('onnxruntime-node')) as unknown as typeof ort
      Tensor = native.Tensor
      session = await native.InferenceSession.create(message.bytes, {
        executionProviders: ['cpu'],
        graphOptimizationLevel: 'all',
        intraOpNumThreads: 1,
        interOpNumThreads: 1,
        executionMode: 'sequential',
      })
    } else session = await ort.InferenceSession.create(message.bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' })
    scope.postMessage({ type: 'ready' })
    return
  }
  const started = performance.now()
  for (let i = 0; i < message.n; i++) {
    const inputs: Record<string, ort.Tensor> = {}
    for (const [name, t] of Object.entries(feeds)) inputs[name] = new Tensor(t.type, t.data, t.dims)
    const outputs = await session!.run(inputs)
    for (const tensor of Object.values(outputs)) tensor.dispose()
  }
  scope.postMessage({ type: 'done', ms: performance.now() - started })
}
// Bun drops a message that reaches a worker before its module has set `onmessage` (onnxruntime-web takes a while to
// import): the parent waits for this before it sends anything, as the pool waits for its workers' `ready`.
scope.postMessage({ type: 'up' })
