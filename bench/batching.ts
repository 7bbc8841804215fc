/**
 * Dynamic batching on Silero VAD v5, one frame per request (input [1,512] as bench/raw-worker.ts runs it, state
 * [2,1,128], sr): throughput at concurrency 1, 4 and 16, unbatched (`pool.run` on a pool of the same size with
 * the model loaded, as a model without `batching` runs) and batched (`registry.runRaw`, which goes through the
 * model's dynamic batcher as every client request does), both against raw sessions looping back to back in as
 * many worker threads as the concurrency keeps busy (bench/raw-worker.ts). Rounds alternate raw, unbatched, batched,
 * and each figure is the best of BATCH_ROUNDS (the machine is shared: other load only ever slows a round down).
 * Also prints the mean batch the batcher formed.
 *
 *   bun bench/index.ts batching     (BATCH_BACKEND=cpu|wasm BATCH_N=2000 BATCH_ROUNDS=5)
 */
import { availableParallelism } from 'node:os'
import pino from 'pino'
import { loadConfig } from '../src/config'
import type { BatchEvent } from '../src/inference/batcher'
import { createPool } from '../src/inference/pool'
import { configuredBackendOrder, createRegistry } from '../src/inference/registry'
import { packVadBatch, SILERO_FRAME, SILERO_STATE } from '../src/inference/vad-batch'
import { tone } from '../test/audio/wav-builder'
import { rawWorkers, throughput } from './inference'
import { col, envInt, goal, ROOT } from './lib'

const MODEL = 'silero-vad'
const samples = tone(220, 16000, SILERO_FRAME / 16000, 0.3)
const feeds = () => packVadBatch([{ samples, state: new Float32Array(SILERO_STATE) }])

export async function benchBatching(): Promise<void> {
  const backend = process.env.BATCH_BACKEND === 'wasm' ? 'wasm' : 'cpu'
  const n = envInt('BATCH_N', 2000)
  const rounds = envInt('BATCH_ROUNDS', 5)
  const workers = availableParallelism()
  const config = loadConfig({ MODELS_DIR: `${ROOT}models`, INFERENCE_WORKERS: String(workers), INFERENCE_QUEUE_MAX: '1024' })
  const batches: BatchEvent[] = []
  const registry = createRegistry({
    config,
    logger: pino({ level: 'silent' }),
    backendOrder: configuredBackendOrder([backend]),
    onBatch: (event) => batches.push(event),
  })
  await registry.start()
  const info = registry.get(MODEL)
  if (info.status !== 'ready') throw new Error(`${MODEL} is ${info.status}: ${info.reason}`)
  const bytes = new Uint8Array(await Bun.file(`${ROOT}models/silero-vad/silero_vad_v5.onnx`).arrayBuffer())
  const raw = await rawWorkers(workers, bytes, backend)
  // The registry's pool knows the model by its load's key; a pool of its own keeps the unbatched path plain.
  const plain = createPool({ size: workers, queueMax: 1024 })
  try {
    const loaded = await plain.load({ name: MODEL, bytes, backends: [info.backend!] })
    if (!loaded.ok) throw new Error(loaded.reason)
    const unbatched = () => plain.run(MODEL, feeds(), { timeoutMs: 10_000 })
    const batched = () => registry.runRaw(MODEL, feeds(), { timeoutMs: 10_000 })
    // Warm every thread's code paths before measuring: a native session in a fresh worker thread runs a frame in
    // ≈ 1 ms for its first thousand or so runs and ≈ 0.25 ms after 3000 (measured here).
    await raw.rate(workers, 5000 * workers)
    await throughput(unbatched, workers, 5000 * workers)
    await throughput(batched, 16, 2000 * workers)
    console.log(
      `batching: Silero frames/s on ${info.backend}, ${workers} workers; best of ${rounds} alternating rounds of ${n} frames; raw = sessions looping in min(conc, ${workers}) threads`,
    )
    console.log(
      `  ${'conc'.padEnd(6)}${col('raw', 12)}${col('unbatched', 11)}${col('÷raw', 7)}${col('batched', 10)}${col('÷raw', 7)}${col('batched÷unbatched', 19)}${col('mean batch', 12)}`,
    )
    const figures: Record<number, { unbatched: number; batched: number; raw: number }> = {}
    for (const concurrency of [1, 4, 16]) {
      const threads = Math.min(concurrency, workers)
      const rates = { raw: [] as number[], unbatched: [] as number[], batched: [] as number[] }
      batches.length = 0
      for (let round = 0; round < rounds; round++) {
        rates.raw.push(await raw.rate(threads, n))
        rates.unbatched.push(await throughput(unbatched, concurrency, n))
        rates.batched.push(await throughput(batched, concurrency, n))
      }
      const f = { raw: Math.max(...rates.raw), unbatched: Math.max(...rates.unbatched), batched: Math.max(...rates.batched) }
      figures[concurrency] = f
      const meanBatch = batches.reduce((s, b) => s + b.rows, 0) / Math.max(1, batches.length)
      console.log(
        `  ${String(concurrency).padEnd(6)}${col(f.raw, 12)}${col(f.unbatched, 11)}${col(f.unbatched / f.raw, 7, 2)}${col(f.batched, 10)}${col(f.batched / f.raw, 7, 2)}${col(f.batched / f.unbatched, 19, 2)}${col(meanBatch, 12, 1)}`,
      )
    }
    console.log(`  ${goal('unbatched ÷ raw at concurrency 1', figures[1]!.unbatched / figures[1]!.raw, '>=', 0.8)}`)
    console.log(`  ${goal('batched at concurrency 16 ÷ unbatched at 16', figures[16]!.batched / figures[16]!.unbatched, '>=', 2)}`)
  } finally {
    raw.close()
    await plain.close()
    await registry.stop()
  }
}
