/**
 * The hand-off between the main thread and an inference worker, with no model in the way: one Silero frame's
 * feeds (input [1,576] FP32, state [2,1,128] FP32, sr INT64) go out and come back.
 *
 * - raw postMessage: a bare worker echoing the feeds by structured clone (the floor the issue measured);
 * - raw transfer: the same with the buffers transferred;
 * - raw Atomics: a bare worker echoing the feeds' bytes through a SharedArrayBuffer, woken by Atomics both ways; and
 *   the same with the worker busy 120 or 250 µs before it answers (a model run's length), so the main thread sleeps
 *   that long: what waking a thread costs after a short and a long sleep;
 * - pool.run: the real pool around a worker that echoes instead of running a model (bench/echo-worker.ts), through
 *   the shared slot (the default) and by postMessage (`sharedSlots: false`);
 * - pool.run, real worker: the real pool and worker on the arith test model and on Silero (Silero also by
 *   postMessage), with the time the worker reports for the run itself shown beside it.
 *
 * Paths are interleaved in chunks so a noisy moment hits all of them.
 *
 *   bun bench/index.ts hop     (HOP_N=20000)
 */
import { createPool } from '../src/inference/pool'
import { packVadBatch, SILERO_INPUT, SILERO_STATE } from '../src/inference/vad-batch'
import { tone } from '../test/audio/wav-builder'
import { col, envInt, goal, percentile, ROOT, WebWorker } from './lib'

const samples = tone(220, 16000, SILERO_INPUT / 16000, 0.3)
const feeds = () => packVadBatch([{ samples, state: new Float32Array(SILERO_STATE) }])
const FEED_BYTES = Object.values(feeds()).reduce((n, t) => n + t.data.byteLength, 0)
const arithFeeds = () => ({
  x: { type: 'float32' as const, data: Float32Array.of(1, 2, 3, 4), dims: [1, 4] },
  n: { type: 'int64' as const, data: BigInt64Array.of(1n, 2n), dims: [1, 2] },
})

const RAW_ECHO = `
onmessage = (event) => {
  const { transfer, feeds } = event.data
  postMessage(event.data, transfer ? Object.values(feeds).map((t) => t.data.buffer) : [])
}
`

function rawEcho() {
  const url = URL.createObjectURL(new Blob([RAW_ECHO], { type: 'application/javascript' }))
  const worker = new WebWorker(url)
  let waiting: (() => void) | undefined
  worker.addEventListener('message', () => waiting?.())
  return {
    roundTrip(transfer: boolean): Promise<void> {
      const message = { transfer, feeds: feeds() }
      return new Promise((resolve) => {
        waiting = resolve
        const buffers = transfer ? Object.values(message.feeds).map((t) => t.data.buffer as ArrayBuffer) : []
        worker.postMessage(message, buffers)
      })
    },
    close: () => worker.terminate(),
  }
}

// The bare form of the pool's shared slot: bytes copied out and back in, the bells at Int32 0 (to the worker) and 1 (back).
// With busyUs the worker spins that long before it answers, as a model run would, so the main thread sleeps meanwhile.
const ATOMICS_ECHO = `
onmessage = async (event) => {
  const { buffer, busyUs } = event.data
  const bells = new Int32Array(buffer, 0, 2)
  const area = new Uint8Array(buffer, 8)
  let seen = 0
  for (;;) {
    const wait = Atomics.waitAsync(bells, 0, seen)
    if (wait.async) await wait.value
    const now = Atomics.load(bells, 0)
    if (now === seen) continue
    seen = now
    const until = performance.now() + busyUs / 1000
    while (performance.now() < until) {}
    area.set(area.slice(0, ${FEED_BYTES}))
    Atomics.store(bells, 1, seen)
    Atomics.notify(bells, 1)
  }
}
`

function atomicsEcho(busyUs = 0) {
  const url = URL.createObjectURL(new Blob([ATOMICS_ECHO], { type: 'application/javascript' }))
  const worker = new WebWorker(url)
  const buffer = new SharedArrayBuffer(8 + FEED_BYTES)
  const bells = new Int32Array(buffer, 0, 2)
  const area = new Uint8Array(buffer, 8)
  worker.postMessage({ buffer, busyUs })
  let sent = 0
  return {
    async roundTrip(): Promise<void> {
      let offset = 0
      for (const tensor of Object.values(feeds())) {
        const bytes = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength)
        area.set(bytes, offset)
        offset += bytes.byteLength
      }
      Atomics.store(bells, 0, ++sent)
      Atomics.notify(bells, 0)
      while (Atomics.load(bells, 1) !== sent) {
        const wait = Atomics.waitAsync(bells, 1, sent - 1)
        if (wait.async) await wait.value
      }
      area.slice(0, offset)
    },
    close: () => worker.terminate(),
  }
}

export async function benchHop(): Promise<void> {
  const n = envInt('HOP_N', 20000)
  const raw = rawEcho()
  const atomics = atomicsEcho()
  // A thread that has slept longer than ≈ 150–170 µs wakes ≈ 30 µs slower on this VM: a model run's length.
  const busy = [120, 250].map((us) => ({ us, label: `raw Atomics, worker busy ${us} µs first`, echo: atomicsEcho(us) }))
  const echoUrl = new URL('./echo-worker.ts', import.meta.url)
  const echoPool = createPool({ size: 1, queueMax: 16, workerUrl: echoUrl })
  const postedPool = createPool({ size: 1, queueMax: 16, workerUrl: echoUrl, sharedSlots: false })
  const realPool = createPool({ size: 1, queueMax: 16 })
  const sileroPool = createPool({ size: 1, queueMax: 16 })
  const sileroPosted = createPool({ size: 1, queueMax: 16, sharedSlots: false })
  try {
    const echoLoad = await echoPool.load({ name: 'echo', bytes: new Uint8Array(), backends: ['echo'] })
    const postedLoad = await postedPool.load({ name: 'echo', bytes: new Uint8Array(), backends: ['echo'] })
    const bytes = new Uint8Array(await Bun.file(`${ROOT}test/fixtures/models/arith/model.onnx`).arrayBuffer())
    const realLoad = await realPool.load({ name: 'arith', bytes, backends: ['cpu', 'wasm'] })
    const silero = new Uint8Array(await Bun.file(`${ROOT}models/silero-vad/silero_vad_v5.onnx`).arrayBuffer())
    const sileroLoad = await sileroPool.load({ name: 'silero-vad', bytes: silero, backends: ['cpu', 'wasm'] })
    const postedSileroLoad = await sileroPosted.load({ name: 'silero-vad', bytes: silero, backends: ['cpu', 'wasm'] })
    if (!echoLoad.ok || !postedLoad.ok || !realLoad.ok || !sileroLoad.ok || !postedSileroLoad.ok) throw new Error('a pool did not load')
    const inside: number[] = []
    const insideSilero: number[] = []
    const insidePosted: number[] = []
    const paths: Record<string, () => Promise<unknown>> = {
      'raw postMessage (structured clone)': () => raw.roundTrip(false),
      'raw postMessage (buffers transferred)': () => raw.roundTrip(true),
      'raw Atomics (bytes through shared memory)': () => atomics.roundTrip(),
      ...Object.fromEntries(busy.map(({ label, echo }) => [label, () => echo.roundTrip()])),
      'pool.run, echo worker (no model)': () => echoPool.run('echo', feeds(), { timeoutMs: 10_000 }),
      'pool.run, echo worker, by postMessage': () => postedPool.run('echo', feeds(), { timeoutMs: 10_000 }),
      [`pool.run, real worker, arith on ${realLoad.backend}`]: async () => {
        const result = await realPool.run('arith', arithFeeds(), { timeoutMs: 10_000 })
        inside.push(result.inferenceMs)
      },
      [`pool.run, real worker, Silero on ${sileroLoad.backend}`]: async () => {
        const result = await sileroPool.run('silero-vad', feeds(), { timeoutMs: 10_000 })
        insideSilero.push(result.inferenceMs)
      },
      'pool.run, real worker, Silero, by postMessage': async () => {
        const result = await sileroPosted.run('silero-vad', feeds(), { timeoutMs: 10_000 })
        insidePosted.push(result.inferenceMs)
      },
    }
    const times: Record<string, number[]> = Object.fromEntries(Object.keys(paths).map((k) => [k, []]))
    for (const run of Object.values(paths)) for (let i = 0; i < 2000; i++) await run()
    inside.length = 0
    insideSilero.length = 0
    insidePosted.length = 0
    const chunk = 500
    for (let done = 0; done < n; done += chunk) {
      for (const [name, run] of Object.entries(paths)) {
        for (let i = 0; i < chunk; i++) {
          const started = performance.now()
          await run()
          times[name]!.push((performance.now() - started) * 1000)
        }
      }
    }
    const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b)
    console.log(`hand-off round trip main → worker → main, ${n} sequential calls per path, interleaved in chunks of ${chunk} (µs)`)
    console.log(`  ${'path'.padEnd(48)}${col('p50', 8)}${col('p99', 8)}`)
    const p50s: Record<string, number> = {}
    for (const [name, xs] of Object.entries(times)) {
      const s = sorted(xs)
      p50s[name] = percentile(s, 50)
      console.log(`  ${name.padEnd(48)}${col(percentile(s, 50), 8)}${col(percentile(s, 99), 8)}`)
    }
    for (const [label, xs] of [
      ['arith', inside],
      ['Silero', insideSilero],
      ['Silero (by postMessage)', insidePosted],
    ] as const) {
      const run = sorted(xs.map((ms) => ms * 1000))
      console.log(
        `  ${`  of which ${label}'s run in the real worker`.padEnd(48)}${col(percentile(run, 50), 8)}${col(percentile(run, 99), 8)}`,
      )
    }
    const poolP50 = p50s['pool.run, echo worker (no model)']!
    console.log(
      `  shared slot over postMessage at p50: echo ${(poolP50 / p50s['pool.run, echo worker, by postMessage']!).toFixed(2)}×, ` +
        `Silero ${(p50s[`pool.run, real worker, Silero on ${sileroLoad.backend}`]! / p50s['pool.run, real worker, Silero, by postMessage']!).toFixed(2)}×`,
    )
    const wake = busy.map(({ us, label }) => `${(p50s[label]! - us).toFixed(0)} µs after ${us} µs asleep`)
    console.log(
      `  bare Atomics round trip less the worker's busy time, p50: ${wake.join(', ')} (${p50s['raw Atomics (bytes through shared memory)']!.toFixed(0)} µs with none)`,
    )
    console.log(`  pool over raw structured clone at p50: ${(poolP50 / p50s['raw postMessage (structured clone)']!).toFixed(2)}×`)
    console.log(`  ${goal('pool round trip p50 (echo worker), µs:', poolP50, '<=', 50, 0)}`)
  } finally {
    raw.close()
    atomics.close()
    for (const { echo } of busy) echo.close()
    await echoPool.close()
    await postedPool.close()
    await realPool.close()
    await sileroPool.close()
    await sileroPosted.close()
  }
}
