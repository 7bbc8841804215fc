/**
 * What the worker pool costs over calling onnxruntime directly, on one Silero VAD frame:
 * latency percentiles of a single call and throughput at concurrency 1, 4 and 16, each printed
 * beside the raw in-process figure and as a ratio.
 *
 *   bun bench/inference.ts [iterations]
 */
import { readFile } from 'node:fs/promises'
import * as ort from 'onnxruntime-web'
import { createPool } from '../src/inference/pool'
import { packVadBatch, SILERO_FRAME, SILERO_STATE } from '../src/inference/vad-batch'

const MODEL = new URL('../models/silero-vad/silero_vad_v5.onnx', import.meta.url).pathname

function frame(): Float32Array {
  return Float32Array.from({ length: SILERO_FRAME }, (_, i) => 0.3 * Math.sin((2 * Math.PI * 220 * i) / 16000))
}

const feeds = () => packVadBatch([{ samples: frame(), state: new Float32Array(SILERO_STATE) }])

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

async function latencies(run: () => Promise<unknown>, n: number): Promise<{ p50: number; p99: number }> {
  for (let i = 0; i < 50; i++) await run()
  const times: number[] = []
  for (let i = 0; i < n; i++) {
    const started = performance.now()
    await run()
    times.push(performance.now() - started)
  }
  times.sort((a, b) => a - b)
  return { p50: percentile(times, 50), p99: percentile(times, 99) }
}

async function throughput(run: () => Promise<unknown>, concurrency: number, n: number): Promise<number> {
  let left = n
  const started = performance.now()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (left-- > 0) await run()
    }),
  )
  return n / ((performance.now() - started) / 1000)
}

export async function benchInference(iterations = 2000, workers = 2): Promise<void> {
  ort.env.wasm.numThreads = 1
  const bytes = new Uint8Array(await readFile(MODEL))
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] })
  const raw = async () => {
    const f = feeds()
    const inputs = Object.fromEntries(Object.entries(f).map(([k, t]) => [k, new ort.Tensor(t.type, t.data, t.dims)]))
    return session.run(inputs)
  }
  const pool = createPool({ size: workers, queueMax: 1024 })
  const report = await pool.load({ name: 'silero-vad', bytes, backends: ['wasm'] })
  if (!report.ok) throw new Error(report.reason)
  const pooled = () => pool.run('silero-vad', feeds(), { timeoutMs: 10000 })

  const fmt = (n: number) => n.toFixed(3)
  const rawLat = await latencies(raw, iterations)
  const poolLat = await latencies(pooled, iterations)
  console.log(`one frame, ${iterations} sequential calls (ms)`)
  console.log(`  raw session.run  p50 ${fmt(rawLat.p50)}  p99 ${fmt(rawLat.p99)}`)
  console.log(
    `  pool.run         p50 ${fmt(poolLat.p50)}  p99 ${fmt(poolLat.p99)}  (x${(poolLat.p50 / rawLat.p50).toFixed(2)} p50, x${(poolLat.p99 / rawLat.p99).toFixed(2)} p99)`,
  )

  const rawRate = await throughput(raw, 1, iterations)
  console.log(`throughput (frames/s), pool of ${workers} workers vs a raw in-process loop at ${rawRate.toFixed(0)}/s`)
  for (const concurrency of [1, 4, 16]) {
    const rate = await throughput(pooled, concurrency, iterations)
    console.log(
      `  concurrency ${String(concurrency).padStart(2)}  ${rate.toFixed(0).padStart(6)}/s  ratio to raw x${(rate / rawRate).toFixed(2)}`,
    )
  }
  await pool.close()
  await session.release()
}

if (import.meta.main) await benchInference(Number(process.argv[2] ?? 2000))
