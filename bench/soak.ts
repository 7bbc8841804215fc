/**
 * Memory under sustained inference: SOAK_N (100 000) Silero frames through the registry's pool
 * (`registry.runRaw`, as the VAD does), SOAK_CONCURRENCY (4) streams each carrying its recurrent
 * state, default production settings (so worker recycling at INFERENCE_WORKER_RECYCLE_AFTER is in force).
 * Prints process RSS — the inference workers are threads of this process, so it covers them —
 * the main JS heap and the workers' WASM heaps from pool.stats(), at the start, every tenth, and
 * the end; memory must level off, so end / middle should be close to 1.
 *
 *   INFERENCE_BACKENDS=cpu bun bench/index.ts soak     (or =wasm; SOAK_N=100000 SOAK_CONCURRENCY=4)
 */
import pino from 'pino'
import { loadConfig } from '../src/config'
import { configuredBackendOrder, createRegistry } from '../src/inference/registry'
import { packVadBatch, SILERO_FRAME, SILERO_STATE, unpackVadBatch } from '../src/inference/vad-batch'
import { createLogger } from '../src/logger'
import { tone } from '../test/audio/wav-builder'
import { benchKey, col, envInt, mib, productionEnv } from './lib'

interface Checkpoint {
  done: number
  seconds: number
  rss: number
  jsHeap: number
  workerHeap: number
  workers: string
}

export async function benchSoak(): Promise<void> {
  const total = envInt('SOAK_N', 100_000)
  const concurrency = envInt('SOAK_CONCURRENCY', 4)
  // INFERENCE_BACKENDS=cpu|wasm forces the backend as it does for the server; unset, the manifest's order (cpu first).
  const config = loadConfig(productionEnv(benchKey(), { MODELS_DIR: 'models', INFERENCE_BACKENDS: process.env.INFERENCE_BACKENDS ?? '' }))
  const logger = createLogger(config, { destination: pino.destination({ dest: '/dev/null', sync: false }) })
  const registry = createRegistry({ config, logger, backendOrder: configuredBackendOrder(config.INFERENCE_BACKENDS) })
  await registry.start()
  try {
    if (registry.get('silero-vad').status !== 'ready') throw new Error('silero-vad did not load')

    const checkpoint = (done: number, started: number): Checkpoint => {
      // Retained memory, not garbage that happens not to be collected yet.
      Bun.gc(true)
      const stats = registry.pool.stats()
      return {
        done,
        seconds: (performance.now() - started) / 1000,
        rss: process.memoryUsage().rss,
        jsHeap: process.memoryUsage().heapUsed,
        workerHeap: stats.workers.reduce((n, w) => n + w.heapBytes, 0),
        workers: stats.workers.map((w) => `#${w.id}:${w.runs}`).join(' '),
      }
    }

    let issued = 0
    let done = 0
    const every = Math.max(1, Math.floor(total / 10))
    const points: Checkpoint[] = []
    let started = performance.now()
    const stream = async (index: number, frames: number) => {
      let state: Float32Array = new Float32Array(SILERO_STATE)
      // Each stream hears a different tone, so its state evolves like a real one.
      const samples = tone(200 + 50 * index, 16000, SILERO_FRAME / 16000, 0.3)
      while (issued < frames) {
        issued++
        const result = await registry.runRaw('silero-vad', packVadBatch([{ samples, state }]))
        state = unpackVadBatch(result.outputs, 1)[0]!.state
        done++
        if (frames === total && done % every === 0) points.push(checkpoint(done, started))
      }
    }
    const runStreams = (frames: number) => Promise.all(Array.from({ length: concurrency }, (_, i) => stream(i, frames)))

    // Warm-up, so the start figure is the steady footprint and not the empty process.
    await runStreams(2000)
    issued = 0
    done = 0
    started = performance.now()
    const start = checkpoint(0, started)
    await runStreams(total)
    const seconds = (performance.now() - started) / 1000
    const end = points.at(-1) ?? checkpoint(done, started)
    const middle = points[Math.floor(points.length / 2) - 1] ?? start

    console.log(
      `soak: ${total} Silero frames through registry.runRaw on ${registry.get('silero-vad').backend}, ${concurrency} streams, ${registry.pool.stats().size} workers`,
    )
    console.log('  RSS is the whole process: the inference workers are threads in it')
    console.log(`  ${col('frames', 8)}${col('s', 7)}${col('RSS', 12)}${col('main heap', 12)}${col('worker heaps', 14)}   worker #id:runs`)
    for (const p of [start, ...points]) {
      console.log(
        `  ${col(p.done, 8)}${col(p.seconds, 7, 1)}${col(mib(p.rss), 12)}${col(mib(p.jsHeap), 12)}${col(mib(p.workerHeap), 14)}   ${p.workers}`,
      )
    }
    console.log(`  ${total} frames in ${seconds.toFixed(1)} s (${(total / seconds).toFixed(0)} frames/s)`)
    console.log(
      `  end / middle (frames ${middle.done} -> ${end.done}): RSS ${(end.rss / middle.rss).toFixed(3)}, worker heaps ${(end.workerHeap / middle.workerHeap).toFixed(3)}, main heap ${(end.jsHeap / middle.jsHeap).toFixed(3)}; end / start RSS ${(end.rss / start.rss).toFixed(3)}`,
    )
    console.log(
      `  worker recycling: INFERENCE_WORKER_RECYCLE_AFTER=${config.INFERENCE_WORKER_RECYCLE_AFTER} runs, INFERENCE_WORKER_MAX_HEAP_MB=${config.INFERENCE_WORKER_MAX_HEAP_MB}`,
    )
  } finally {
    await registry.stop()
  }
}
