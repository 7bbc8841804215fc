import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { ServiceUnavailableError, TimeoutError, ValidationError } from '../../src/errors'
import {
  type BatchEvent,
  type BatchingSpec,
  batchRows,
  createBatcher,
  sameBatch,
  splitOutputs,
  stackFeeds,
} from '../../src/inference/batcher'
import { checkManifest, loadManifest } from '../../src/inference/manifest'
import { createPool, type Pool, type RunEvent, type RunOptions } from '../../src/inference/pool'
import { createRegistry, type Registry } from '../../src/inference/registry'
import type { Feeds } from '../../src/inference/tensors'
import { packVadBatch, SILERO_INPUT, SILERO_STATE, unpackVadBatch, type VadFrameResult } from '../../src/inference/vad-batch'
import { bearer, createTestApp } from '../helpers'
import { ENOUGH_MS, expectedBackend, FIXTURES, MODELS, modelBytes, registryConfig, silent, until } from './helpers'

const rows = (...values: number[][]): Feeds => ({
  x: { type: 'float32', data: Float32Array.from(values.flat()), dims: [values.length, 3] },
})
const floats = (feeds: Feeds, name: string) => Array.from(feeds[name]!.data as Float32Array)
const close = (a: number[], b: number[]) => a.length === b.length && a.every((v, i) => Math.abs(v - b[i]!) <= 1e-5)

let pool: Pool
const runs: RunEvent[] = []
beforeAll(async () => {
  pool = createPool({ size: 2, queueMax: 64, onRun: (e) => runs.push(e) })
  for (const [name, path] of [
    ['dynbatch', `${FIXTURES}dynbatch/model.onnx`],
    ['silero-vad', `${MODELS}silero-vad/silero_vad_v5.onnx`],
  ]) {
    const report = await pool.load({ name: name!, bytes: await modelBytes(path!), backends: [expectedBackend] })
    expect(report.ok).toBe(true)
  }
})
afterAll(() => pool.close())

/** A batcher over the real pool; the k-th run, when `holds[k]` is given, waits for it before it goes. */
function batcherFor(model: string, batching: BatchingSpec, holds: Promise<void>[] = []) {
  const events: BatchEvent[] = []
  const batcher = createBatcher({
    model,
    batching,
    maxInFlight: 1,
    queueMax: 8,
    onBatch: (e) => events.push(e),
    run: async (feeds: Feeds, options: RunOptions) => {
      await holds.shift()
      return pool.run(model, feeds, options)
    },
  })
  return { batcher, events }
}

const budget = { timeoutMs: ENOUGH_MS }

describe('dynamic batcher', () => {
  it('stacks concurrent requests into one run and splits outputs equal to unbatched runs', async () => {
    const requests = [rows([1, 2, 3]), rows([4, 5, 6], [7, 8, 9]), rows([-1, 0.5, 2]), rows([3, 3, 3], [0, 0, 0], [9, 9, 9])]
    const alone: Feeds[] = []
    for (const r of requests) alone.push((await pool.run('dynbatch', structuredClone(r), budget)).outputs)
    const { batcher, events } = batcherFor('dynbatch', { maxBatchSize: 16, maxDelayMs: 50 })
    const together = await Promise.all(requests.map((r) => batcher.run(r, budget)))
    expect(events.map((e) => [e.requests, e.rows])).toEqual([[4, 7]])
    together.forEach((got, i) => {
      expect(got.outputs.sq!.dims).toEqual(alone[i]!.sq!.dims)
      expect(close(floats(got.outputs, 'sq'), floats(alone[i]!, 'sq'))).toBe(true)
      expect(close(floats(got.outputs, 'shifted'), floats(alone[i]!, 'shifted'))).toBe(true)
    })
    expect(batcher.pending).toBe(0)
  })

  it('splits a full batch off at max_batch_size and runs a larger request alone', async () => {
    const { batcher, events } = batcherFor('dynbatch', { maxBatchSize: 2, maxDelayMs: 50 })
    const results = await Promise.all([
      batcher.run(rows([1, 1, 1]), budget),
      batcher.run(rows([2, 2, 2]), budget),
      batcher.run(rows([3, 3, 3]), budget),
      batcher.run(rows([4, 4, 4], [5, 5, 5], [6, 6, 6]), budget),
    ])
    expect(events.map((e) => e.rows)).toEqual([2, 1])
    expect(results.map((r) => r.outputs.sq!.dims[0])).toEqual([1, 1, 1, 3])
    expect(floats(results[3]!.outputs, 'sq')).toEqual([16, 16, 16, 25, 25, 25, 36, 36, 36])
  })

  it('batches Silero frames of several streams on axis 1 of the state, sharing sr, as the realtime VAD does', async () => {
    const frames = [0.1, 0.3, -0.2, 0.05].map((a, s) => ({
      samples: Float32Array.from({ length: SILERO_INPUT }, (_, i) => a * Math.sin((i * (s + 1)) / 7)),
      state: Float32Array.from({ length: SILERO_STATE }, (_, i) => ((i % 13) - 6) / 50),
    }))
    const alone: VadFrameResult[] = []
    for (const frame of frames) alone.push(unpackVadBatch((await pool.run('silero-vad', packVadBatch([frame]), budget)).outputs, 1)[0]!)
    const { batcher, events } = batcherFor('silero-vad', { maxBatchSize: 64, maxDelayMs: 50, axes: { state: 1, stateN: 1, sr: null } })
    const together = await Promise.all(
      frames.map(async (f) => unpackVadBatch((await batcher.run(packVadBatch([f]), budget)).outputs, 1)[0]!),
    )
    expect(events.map((e) => e.rows)).toEqual([4])
    together.forEach((got, s) => {
      expect(Math.abs(got.probability - alone[s]!.probability)).toBeLessThanOrEqual(1e-5)
      expect(close(Array.from(got.state), Array.from(alone[s]!.state))).toBe(true)
    })
  })

  it('answers 503 with Retry-After once queue_max requests wait for a batch', async () => {
    const { batcher, events } = batcherFor('dynbatch', { maxBatchSize: 64, maxDelayMs: 50 })
    const waiting = Array.from({ length: 8 }, (_, i) => batcher.run(rows([i, i, i]), budget))
    const refused = await batcher.run(rows([9, 9, 9]), budget).catch((e) => e)
    expect(refused).toBeInstanceOf(ServiceUnavailableError)
    expect(refused.headers['Retry-After']).toBe('1')
    expect((await Promise.all(waiting)).map((r) => r.outputs.sq!.data[0])).toEqual([0, 1, 4, 9, 16, 25, 36, 49])
    expect(events.map((e) => e.rows)).toEqual([8])
  })

  it("lets a request wait for company longer or shorter than the model's max_delay_ms", async () => {
    const { batcher, events } = batcherFor('dynbatch', { maxBatchSize: 16, maxDelayMs: 0 })
    const patient = { ...budget, maxDelayMs: 100 }
    const first = batcher.run(rows([1, 1, 1]), patient)
    await Bun.sleep(20)
    const second = batcher.run(rows([2, 2, 2]), patient)
    await Promise.all([first, second])
    // Both waited: the first for 100 ms, and the second joined it before that.
    expect(events.map((e) => [e.requests, e.rows])).toEqual([[2, 2]])
    expect(events[0]!.queueDelaysMs[0]).toBeGreaterThanOrEqual(99)
    // A request that may not wait goes at once, and takes the patient ones waiting with it.
    events.length = 0
    const third = batcher.run(rows([3, 3, 3]), patient)
    const hasty = batcher.run(rows([4, 4, 4]), { ...budget, maxDelayMs: 0 })
    expect(floats((await hasty).outputs, 'sq')).toEqual([16, 16, 16])
    expect(floats((await third).outputs, 'sq')).toEqual([9, 9, 9])
    expect(events.map((e) => e.requests)).toEqual([2])
    expect(events[0]!.queueDelaysMs[0]).toBeLessThan(50)
  })

  it('never stacks requests that differ outside the batch axis or in a shared tensor', () => {
    const axes = { state: 1, stateN: 1, sr: null }
    const frame = { samples: new Float32Array(SILERO_INPUT), state: new Float32Array(SILERO_STATE) }
    const at16k = packVadBatch([frame])
    expect(batchRows(at16k, axes)).toBe(1)
    expect(sameBatch(at16k, packVadBatch([frame], 8000), axes)).toBe(false)
    const two = packVadBatch([frame, frame])
    expect(batchRows(two, axes)).toBe(2)
    expect(sameBatch(at16k, two, axes)).toBe(true)
    // The state's batch axis is 1: a state that differs along axis 0 is another shape.
    expect(sameBatch(at16k, { ...at16k, state: { ...at16k.state!, dims: [1, 1, 128] } }, axes)).toBe(false)
    expect(sameBatch(at16k, { input: at16k.input!, state: at16k.state! }, axes)).toBe(false)
    expect(sameBatch(at16k, { ...at16k, input: { ...at16k.input!, type: 'float64' } }, axes)).toBe(false)
    expect(sameBatch(rows([1, 2, 3]), rows([4, 5, 6]), undefined)).toBe(true)
    expect(sameBatch(rows([1, 2, 3]), rows([1, 2, 3]), undefined, undefined, ['sq'])).toBe(false)
    expect(sameBatch(rows([1, 2, 3]), rows([1, 2, 3]), undefined, ['sq'], ['sq'])).toBe(true)
    expect(batchRows({ x: { type: 'float32', data: new Float32Array(1), dims: [] } }, undefined)).toBeUndefined()
    expect(batchRows({ x: rows([1, 2, 3]).x!, y: rows([1, 2, 3], [4, 5, 6]).x! }, undefined)).toBeUndefined()
    const stacked = stackFeeds([rows([1, 2, 3]), rows([4, 5, 6])], undefined)
    expect(() => splitOutputs({ y: { ...stacked.x!, dims: [1, 6] } }, [1, 1], undefined)).toThrow(/not the batch's 2/)
  })

  it('lets a request time out or be cancelled while it waits, and the rest of the batch runs without it', async () => {
    const { batcher, events } = batcherFor('dynbatch', { maxBatchSize: 16, maxDelayMs: 200 })
    const controller = new AbortController()
    const kept = batcher.run(rows([1, 2, 3]), budget)
    const timedOut = batcher.run(rows([4, 5, 6]), { timeoutMs: 1 })
    const cancelled = batcher.run(rows([7, 8, 9]), { ...budget, signal: controller.signal })
    controller.abort()
    await expect(cancelled).rejects.toMatchObject({ name: 'AbortError' })
    const error = await timedOut.catch((e) => e)
    expect(error).toBeInstanceOf(TimeoutError)
    expect(error.details).toMatchObject({ timeout_ms: 1, stage: 'queued' })
    expect(floats((await kept).outputs, 'sq')).toEqual([1, 4, 9])
    expect(events.map((e) => e.rows)).toEqual([1])
  })

  it('gives a request waiting for a batch the budget the pool would give it alone (the timeout floor)', async () => {
    const events: BatchEvent[] = []
    const batcher = createBatcher({
      model: 'dynbatch',
      batching: { maxBatchSize: 16, maxDelayMs: 200 },
      maxInFlight: 1,
      queueMax: 8,
      budget: (timeoutMs) => Math.max(timeoutMs, ENOUGH_MS),
      onBatch: (e) => events.push(e),
      run: (feeds, options) => pool.run('dynbatch', feeds, options),
    })
    // 1 ms would run out during the 200 ms gathering wait; the raised budget does not.
    expect(floats((await batcher.run(rows([1, 2, 3]), { timeoutMs: 1 })).outputs, 'sq')).toEqual([1, 4, 9])
    expect(events.map((e) => e.rows)).toEqual([1])
  })

  it('answers a request cancelled while its batch runs at once, and its neighbours with their own rows', async () => {
    let open = () => {}
    const held = new Promise<void>((resolve) => {
      open = resolve
    })
    const { batcher, events } = batcherFor('dynbatch', { maxBatchSize: 16, maxDelayMs: 0 }, [Promise.resolve(), held])
    const controller = new AbortController()
    const first = batcher.run(rows([1, 1, 1]), budget)
    // The first request took the only run slot; these two gather behind it and go together, and are held there.
    const leaving = batcher.run(rows([2, 2, 2]), { ...budget, signal: controller.signal })
    const staying = batcher.run(rows([3, 3, 3]), budget)
    await first
    await until(() => events.length === 2)
    expect(events.map((e) => e.rows)).toEqual([1, 2])
    controller.abort()
    await expect(leaving).rejects.toMatchObject({ name: 'AbortError' })
    open()
    expect(floats((await staying).outputs, 'sq')).toEqual([9, 9, 9])
  })

  it('runs the requests of a failed batch again one by one, so only the bad one fails', async () => {
    // Axis 1 is not dynbatch's batch axis: any stacked run is refused by the model, every single request is not.
    const { batcher, events } = batcherFor('dynbatch', { maxBatchSize: 16, maxDelayMs: 50, axes: { x: 1, sq: 1, shifted: 1 } })
    const bad = { x: { type: 'float32' as const, data: new Float32Array(4), dims: [1, 4] } }
    runs.length = 0
    const results = await Promise.allSettled([
      batcher.run(rows([1, 2, 3]), budget),
      batcher.run(bad, budget),
      batcher.run(rows([2, 2, 2]), budget),
    ])
    expect(events.map((e) => [e.requests, e.rows])).toEqual([[3, 10]])
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(ValidationError)
    expect(floats((results[0] as PromiseFulfilledResult<{ outputs: Feeds }>).value.outputs, 'shifted')).toEqual([2, 4, 6])
    expect(floats((results[2] as PromiseFulfilledResult<{ outputs: Feeds }>).value.outputs, 'sq')).toEqual([4, 4, 4])
    expect(runs.map((r) => r.outcome).sort()).toEqual(['error', 'error', 'ok', 'ok'])
  })
})

describe('batching in a manifest', () => {
  it("reads Silero's batching and explains a bad one", async () => {
    const manifest = await loadManifest(`${MODELS}silero-vad`)
    expect(manifest).toMatchObject({ batching: { max_batch_size: 512, max_delay_ms: 0, axes: { state: 1, stateN: 1, sr: null } } })
    const base = { name: 'x', version: '1', task: 'tensor', file: 'a.onnx', license: 'MIT', source: 's', backends: ['cpu'], timeout_ms: 1 }
    expect(checkManifest({ ...base, batching: { max_batch_size: 0, max_delay_ms: 0 } })).toContain('/batching/max_batch_size')
    expect(checkManifest({ ...base, batching: { max_batch_size: 4, max_delay_ms: 1, axes: { x: -1 } } })).toContain('/batching/axes')
    expect(checkManifest({ ...base, batching: { max_batch_size: 4, max_delay_ms: 1, window: 5 } })).toContain('/batching')
  })
})

describe('dynamic batching in the registry', () => {
  let registry: Registry
  const events: BatchEvent[] = []
  beforeAll(async () => {
    registry = createRegistry({
      config: registryConfig({ INFERENCE_WORKERS: 1 }),
      logger: silent,
      backendOrder: () => [expectedBackend],
      onBatch: (e) => events.push(e),
    })
    await registry.start()
  })
  afterAll(() => registry.stop())

  it('batches a manifest that asks for it; a request failing validation never joins a batch', async () => {
    const infer = (data: number[], shape = [data.length / 3, 3]) =>
      registry.infer('dynbatch', { inputs: [{ name: 'x', shape, datatype: 'FP32', data }] }, {})
    events.length = 0
    const results = await Promise.allSettled([infer([1, 2, 3]), infer([1, 2, 3, 4], [1, 4]), infer([4, 5, 6, 7, 8, 9])])
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(ValidationError)
    expect(events.map((e) => [e.requests, e.rows])).toEqual([[2, 3]])
    const second = (results[2] as PromiseFulfilledResult<Awaited<ReturnType<typeof infer>>>).value
    expect(second.outputs.find((o) => o.name === 'sq')).toMatchObject({ shape: [2, 3], data: [16, 25, 36, 49, 64, 81] })
    // Models without `batching` run as before.
    await registry.infer('arith', {
      inputs: [
        { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] },
        { name: 'n', shape: [1, 2], datatype: 'INT64', data: [1, 2] },
      ],
    })
    expect(events.every((e) => e.model === 'dynbatch')).toBe(true)
  })

  it('lets a full batch per worker wait even where INFERENCE_QUEUE_MAX is lower (one frame from each of many streams)', async () => {
    const small = createRegistry({
      config: registryConfig({ INFERENCE_WORKERS: 1, INFERENCE_QUEUE_MAX: 4 }),
      logger: silent,
      backendOrder: () => [expectedBackend],
      onBatch: (e) => events.push(e),
    })
    await small.start()
    try {
      events.length = 0
      // dynbatch holds 8 rows a run: 8 one-row requests may wait, the 4 of INFERENCE_QUEUE_MAX notwithstanding.
      const runs = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => small.runRaw('dynbatch', rows([i, i, i]))))
      expect(runs.map((r) => r.status)).toEqual(Array(8).fill('fulfilled'))
      expect(events.map((e) => e.rows)).toEqual([8])
    } finally {
      await small.stop()
    }
  })
})

describe('batching metrics', () => {
  it('shows the batch-size and queue-delay histograms on /metrics', async () => {
    const token = 'metrics-token-0123456789abcdef'
    const t = await createTestApp({ METRICS_TOKEN: token, INFERENCE_WORKERS: '1' })
    try {
      const body = { inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] }
      await Promise.all([1, 2, 3].map(() => t.deps.registry.infer('dynbatch', structuredClone(body))))
      const text = await (await t.app.handle(new Request('http://localhost/metrics', { headers: bearer(token) }))).text()
      expect(text).toContain('inference_batch_size_count{model="dynbatch"} 1')
      expect(text).toContain('inference_batch_size_sum{model="dynbatch"} 3')
      expect(text).toContain('inference_batch_queue_delay_seconds_count{model="dynbatch"} 3')
    } finally {
      await t.close()
    }
  })
})
