/**
 * The two CPU backends side by side on Silero VAD v5, raw (no pool): session load time, and
 * `session.run` per 512-sample frame in batches of 1, 8 and 16, on `cpu` (onnxruntime-node, native)
 * and `wasm` (onnxruntime-web), both on one thread as src/inference/worker.ts sets them up.
 * Beside them, `cpu` called as src/inference/worker.ts calls it: onnxruntime-node's session object
 * (`onnxruntime-node/dist/binding.js`) run synchronously with plain tensors, below the public `session.run`.
 * Calls alternate between the backends in chunks, so a noisy moment on the machine hits both. The last line is the
 * most a dynamic batcher can gain on each backend: a frame's cost in the largest batch against its cost alone.
 *
 *   bun bench/index.ts backends     (BACKENDS_N=3000 BACKENDS_ROUNDS=5 BACKENDS_BATCHES=1,8,16)
 */
import * as ortNode from 'onnxruntime-node'
import { binding, initOrt } from 'onnxruntime-node/dist/binding.js'
import * as ortWeb from 'onnxruntime-web'
import { packVadBatch, SILERO_FRAME, SILERO_STATE } from '../src/inference/vad-batch'
import { tone } from '../test/audio/wav-builder'
import { col, envInt, median, ROOT } from './lib'

const MODEL = `${ROOT}models/silero-vad/silero_vad_v5.onnx`
const BACKENDS = ['cpu', 'wasm'] as const
type Backend = (typeof BACKENDS)[number]

/** Both libraries share onnxruntime-common's API; each session is fed tensors of its own library. */
type Library = Pick<typeof ortWeb, 'InferenceSession' | 'Tensor'>
const libraries: Record<Backend, Library> = { cpu: ortNode as unknown as Library, wasm: ortWeb }

ortWeb.env.wasm.numThreads = 1
ortWeb.env.logLevel = 'error'
ortNode.env.logLevel = 'error'

/** One thread per session on `cpu`, as src/inference/worker.ts loads it. */
const NATIVE_THREADS = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: 'sequential',
} as const

async function open(backend: Backend, bytes: Uint8Array): Promise<{ session: ortWeb.InferenceSession; loadMs: number }> {
  const started = performance.now()
  const options = backend === 'cpu' ? NATIVE_THREADS : {}
  const session = await libraries[backend].InferenceSession.create(bytes, {
    executionProviders: [backend],
    graphOptimizationLevel: 'all',
    ...options,
  })
  return { session, loadMs: performance.now() - started }
}

/** A session of onnxruntime-node's binding, made and fed as the worker does it. */
function openNative(bytes: Uint8Array) {
  initOrt()
  const session = new binding.InferenceSession()
  session.loadModel(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    ...NATIVE_THREADS,
  })
  return session
}

function frames(batch: number) {
  return Array.from({ length: batch }, (_, b) => ({
    samples: tone(180 + 20 * b, 16000, SILERO_FRAME / 16000, 0.3),
    state: new Float32Array(SILERO_STATE),
  }))
}

export async function benchBackends(): Promise<void> {
  const n = envInt('BACKENDS_N', 3000)
  const rounds = envInt('BACKENDS_ROUNDS', 5)
  const batches = (process.env.BACKENDS_BATCHES ?? '1,8,16').split(',').map(Number)
  if (!batches.every((b) => Number.isInteger(b) && b > 0)) throw new Error('BACKENDS_BATCHES: batch sizes, e.g. 1,8,16')
  const bytes = new Uint8Array(await Bun.file(MODEL).arrayBuffer())
  // wasm first: its first session also compiles onnxruntime-web, which is part of what a worker pays.
  const wasm = await open('wasm', bytes)
  const cpu = await open('cpu', bytes)
  const sessions = { cpu: cpu.session, wasm: wasm.session }
  const native = openNative(bytes)
  console.log(`backends: Silero v5 raw session.run per frame, one thread each; median of ${rounds} alternating rounds of ${n} calls`)
  console.log(
    `  session load: cpu ${cpu.loadMs.toFixed(0)} ms, wasm ${wasm.loadMs.toFixed(0)} ms (wasm/cpu ${(wasm.loadMs / cpu.loadMs).toFixed(1)})`,
  )
  console.log(
    `  ${'batch'.padEnd(8)}${col('cpu µs/frame', 14)}${col('wasm µs/frame', 15)}${col('wasm/cpu', 10)}${col('cpu binding', 13)}${col('binding/cpu', 13)}`,
  )
  const costs: { batch: number; cpu: number; wasm: number; binding: number }[] = []
  for (const batch of batches) {
    const feeds = packVadBatch(frames(batch))
    const call = async (backend: Backend) => {
      const { Tensor } = libraries[backend]
      const inputs = Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, new Tensor(t.type, t.data, t.dims)]))
      const outputs = await sessions[backend].run(inputs)
      for (const tensor of Object.values(outputs)) tensor.dispose()
    }
    const plain = Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, { ...t, location: 'cpu' }]))
    const fetches = { output: null, stateN: null }
    const paths = { cpu: () => call('cpu'), wasm: () => call('wasm'), binding: async () => native.run(plain as never, fetches, {}) }
    // WASM code tiers up over the first thousand or so runs; measure after that, all alike.
    for (const run of Object.values(paths)) for (let i = 0; i < 1000; i++) await run()
    const perFrame: Record<keyof typeof paths, number[]> = { cpu: [], wasm: [], binding: [] }
    for (let round = 0; round < rounds; round++) {
      for (const [path, run] of Object.entries(paths) as [keyof typeof paths, () => Promise<unknown>][]) {
        const started = performance.now()
        for (let i = 0; i < n; i++) await run()
        perFrame[path].push(((performance.now() - started) * 1000) / (n * batch))
      }
    }
    const [c, w, b] = [median(perFrame.cpu), median(perFrame.wasm), median(perFrame.binding)]
    costs.push({ batch, cpu: c, wasm: w, binding: b })
    console.log(`  ${String(batch).padEnd(8)}${col(c, 14, 1)}${col(w, 15, 1)}${col(w / c, 10, 2)}${col(b, 13, 1)}${col(b / c, 13, 2)}`)
  }
  const alone = costs.find((c) => c.batch === 1)
  const largest = costs.reduce((a, b) => (b.batch > a.batch ? b : a))
  if (alone && largest.batch > 1) {
    const gain = (path: 'cpu' | 'wasm' | 'binding') => (alone[path] / largest[path]).toFixed(2)
    console.log(
      `  most a batcher can gain (a frame alone ÷ a frame in a batch of ${largest.batch}): cpu ${gain('cpu')}×, binding ${gain('binding')}×, wasm ${gain('wasm')}×`,
    )
  }
  await Promise.all(Object.values(sessions).map((s) => s.release()))
  native.dispose()
}
