import { afterAll, afterEach, beforeAll, describe, expect, it } from 'bun:test'
import { cp, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TimeoutError } from '../../src/errors'
import { createPool, type Pool } from '../../src/inference/pool'
import type { Feeds } from '../../src/inference/tensors'
import { packVadBatch, SILERO_FRAME, SILERO_INPUT, SILERO_STATE, SileroWindow, unpackVadBatch } from '../../src/inference/vad-batch'
import { body, createTestApp, req } from '../helpers'
import { arithFeeds, ENOUGH_MS, FIXTURES, MODELS, modelBytes, slowFeeds, timed, until } from './helpers'

const ROOT = new URL('../../', import.meta.url).pathname
const TOLERANCE = 1e-5
type Backend = 'cpu' | 'wasm'

/** A deterministic voiced-like frame per stream: a tone with harmonics and a little hash noise. */
function frame(stream: number, index: number): Float32Array {
  return Float32Array.from({ length: SILERO_FRAME }, (_, i) => {
    const t = (index * SILERO_FRAME + i) / 16000
    const f = 150 + 35 * stream
    const noise = (((i * 7919 + index * 104729 + stream * 15485863) % 1000) / 1000 - 0.5) * 0.05
    return 0.3 * (Math.sin(2 * Math.PI * f * t) + 0.5 * Math.sin(4 * Math.PI * f * t)) + noise
  })
}

function maxDifference(a: Feeds[string]['data'], b: Feeds[string]['data']): number {
  expect(a.length).toBe(b.length)
  let max = 0
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(Number(a[i]) - Number(b[i])))
  return max
}

describe('cpu (onnxruntime-node) and wasm (onnxruntime-web) give the same answers', () => {
  let pool: Pool
  beforeAll(async () => {
    pool = createPool({ size: 1, queueMax: 16 })
    const models = [
      ['arith', `${FIXTURES}arith/model.onnx`],
      ['dynbatch', `${FIXTURES}dynbatch/model.onnx`],
      ['slow', `${FIXTURES}slow/model.onnx`],
      ['silero', `${MODELS}silero-vad/silero_vad_v5.onnx`],
    ] as const
    for (const [name, path] of models) {
      const bytes = await modelBytes(path)
      for (const backend of ['cpu', 'wasm']) {
        const report = await pool.load({ name: `${name}-${backend}`, bytes, backends: [backend] })
        expect(report).toMatchObject({ ok: true, backend, attempts: [] })
      }
    }
  })
  afterAll(() => pool.close())

  /** Feeds are made once per backend: a run transfers (and so empties) its input buffers. */
  async function both(model: string, make: (backend: Backend) => Feeds): Promise<[Feeds, Feeds]> {
    const cpu = await pool.run(`${model}-cpu`, make('cpu'), { timeoutMs: ENOUGH_MS })
    const wasm = await pool.run(`${model}-wasm`, make('wasm'), { timeoutMs: ENOUGH_MS })
    return [cpu.outputs, wasm.outputs]
  }

  it('on the fixture models, output by output, as plain typed arrays', async () => {
    const cases: [string, () => Feeds][] = [
      ['arith', () => arithFeeds([1.5, -2.25, 1e6, 3e-7])],
      ['dynbatch', () => ({ x: { type: 'float32', data: Float32Array.from({ length: 15 }, (_, i) => Math.sin(i) * 10), dims: [5, 3] } })],
      ['slow', () => slowFeeds(1000n)],
    ]
    for (const [model, make] of cases) {
      const [cpu, wasm] = await both(model, make)
      expect(Object.keys(cpu).sort()).toEqual(Object.keys(wasm).sort())
      for (const name of Object.keys(wasm)) {
        const [c, w] = [cpu[name]!, wasm[name]!]
        expect({ model, name, type: c.type, dims: c.dims }).toEqual({ model, name, type: w.type, dims: w.dims })
        expect(c.data.constructor).toBe(w.data.constructor)
        expect(c.data.byteLength).toBe(c.data.buffer.byteLength)
        expect(maxDifference(c.data, w.data)).toBeLessThanOrEqual(TOLERANCE)
      }
    }
    const [cpu] = await both('arith', () => arithFeeds())
    expect(Array.from(cpu.y!.data as Float32Array)).toEqual([3, 5, 7, 9])
    expect(Array.from(cpu.m!.data as BigInt64Array)).toEqual([2n, 3n])
  })

  it('on Silero v5, frame by frame with state carried, in batches of 1 and 8', async () => {
    const probabilities: number[] = []
    for (const batch of [1, 8]) {
      const zeros = () => Array.from({ length: batch }, () => new Float32Array(SILERO_STATE))
      const states: Record<Backend, Float32Array[]> = { cpu: zeros(), wasm: zeros() }
      const windows = Array.from({ length: batch }, () => new SileroWindow())
      for (let i = 0; i < 12; i++) {
        const samples = windows.map((w, s) => w.next(frame(s, i)))
        const [cpu, wasm] = await both('silero', (backend) =>
          packVadBatch(samples.map((x, s) => ({ samples: x, state: states[backend][s]! }))),
        )
        // Each backend carries its own state, so differences would compound over the frames if there were any.
        const c = unpackVadBatch(cpu, batch)
        const w = unpackVadBatch(wasm, batch)
        for (let s = 0; s < batch; s++) {
          expect(Math.abs(c[s]!.probability - w[s]!.probability)).toBeLessThanOrEqual(TOLERANCE)
          expect(maxDifference(c[s]!.state, w[s]!.state)).toBeLessThanOrEqual(TOLERANCE)
          probabilities.push(c[s]!.probability)
        }
        states.cpu = c.map((r) => r.state)
        states.wasm = w.map((r) => r.state)
      }
    }
    // The comparison means something only if the model said different things along the way.
    expect(Math.max(...probabilities) - Math.min(...probabilities)).toBeGreaterThan(0.01)
  })

  it('on Silero v5 through a VAD sequence, which carries the state inside the worker', async () => {
    const window = new SileroWindow()
    const inputs = new Float32Array(20 * SILERO_INPUT)
    for (let i = 0; i < 20; i++) inputs.set(window.next(frame(2, i)), i * SILERO_INPUT)
    const run = (backend: string) =>
      pool.runVadSequence(`silero-${backend}`, inputs.slice(), new Float32Array(SILERO_STATE), { timeoutMs: ENOUGH_MS })
    const cpu = await run('cpu')
    const wasm = await run('wasm')
    expect(cpu.outputs.output!.dims).toEqual([20, 1])
    expect(maxDifference(cpu.outputs.output!.data, wasm.outputs.output!.data)).toBeLessThanOrEqual(TOLERANCE)
    expect(maxDifference(cpu.outputs.stateN!.data, wasm.outputs.stateN!.data)).toBeLessThanOrEqual(TOLERANCE)
  })
})

/**
 * A copy of the real worker in a folder where onnxruntime-node is installed without its native binary
 * (as on a platform it ships no binary for): its import then fails for real, with no mock of onnxruntime.
 */
async function workerWithoutNativeBinary(): Promise<{ url: URL; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'vireo-no-native-'))
  await mkdir(join(dir, 'src/inference'), { recursive: true })
  // worker.ts imports only types from tensors.ts and worker-messages.ts; vad-batch.ts and shared-slot.ts are its other modules.
  for (const file of ['worker.ts', 'vad-batch.ts', 'shared-slot.ts'])
    await cp(join(ROOT, 'src/inference', file), join(dir, 'src/inference', file))
  await mkdir(join(dir, 'node_modules'))
  for (const pkg of ['onnxruntime-web', 'onnxruntime-common'])
    await symlink(join(ROOT, 'node_modules', pkg), join(dir, 'node_modules', pkg))
  const native = join(ROOT, 'node_modules/onnxruntime-node')
  await cp(native, join(dir, 'node_modules/onnxruntime-node'), { recursive: true, filter: (path) => !path.startsWith(join(native, 'bin')) })
  return { url: new URL(`file://${join(dir, 'src/inference/worker.ts')}`), dir }
}

describe('backend fallback', () => {
  let pool: Pool | undefined
  afterEach(async () => {
    await pool?.close()
    pool = undefined
  })

  it('falls back from cpu to wasm, recording why, where the native binding cannot load', async () => {
    const { url, dir } = await workerWithoutNativeBinary()
    try {
      pool = createPool({ size: 1, queueMax: 4, workerUrl: url })
      const report = await pool.load({ name: 'arith', bytes: await modelBytes(`${FIXTURES}arith/model.onnx`), backends: ['cpu', 'wasm'] })
      expect(report.ok).toBe(true)
      if (!report.ok) return
      expect(report.backend).toBe('wasm')
      expect(report.attempts).toHaveLength(1)
      expect(report.attempts[0]!.backend).toBe('cpu')
      expect(report.attempts[0]!.error).toContain('onnxruntime_binding.node')
      const { outputs } = await pool.run('arith', arithFeeds(), { timeoutMs: ENOUGH_MS })
      expect(Array.from(outputs.y!.data as Float32Array)).toEqual([3, 5, 7, 9])
    } finally {
      await rm(dir, { recursive: true })
    }
  })

  it('INFERENCE_BACKENDS forces the order for every model and the API reports what was skipped', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vireo-models-'))
    await cp(join(FIXTURES, 'arith'), join(dir, 'arith'), { recursive: true })
    const admin = 'a'.repeat(40)
    for (const [forced, backend, skipped] of [
      ['wasm', 'wasm', []],
      ['webgpu,cpu', 'cpu', ['webgpu']],
    ] as const) {
      const t = await createTestApp({ MODELS_DIR: dir, INFERENCE_BACKENDS: forced, ADMIN_API_KEY: admin })
      try {
        const json = await body(await t.app.handle(req('/api/v1/models/arith', { headers: { authorization: `Bearer ${admin}` } })))
        expect(json.data).toMatchObject({ status: 'ready', backend })
        expect(json.data.skipped_backends.map((a: { backend: string }) => a.backend)).toEqual(skipped)
        const metrics = await (await t.app.handle(req('/metrics', { headers: { authorization: `Bearer ${admin}` } }))).text()
        expect(metrics).toContain(`model_backend_info{model="arith",backend="${backend}"} 1`)
        const ready = await t.logs.line((l) => l.msg === 'model ready' && l.model === 'arith')
        expect(ready.backend).toBe(backend)
      } finally {
        await t.close()
      }
    }
    await rm(dir, { recursive: true })
  })
})

describe('timeouts on cpu', () => {
  let pool: Pool | undefined
  afterEach(async () => {
    await pool?.close()
    pool = undefined
  })

  it('answers at the timeout and serves at full strength, but the native run is not stopped: its worker finishes it, then goes', async () => {
    pool = createPool({ size: 2, queueMax: 4 })
    const slow = await modelBytes(`${FIXTURES}slow/model.onnx`)
    expect(await pool.load({ name: 'slow', bytes: slow, backends: ['cpu'] })).toMatchObject({ ok: true, backend: 'cpu' })
    expect(await pool.load({ name: 'arith', bytes: await modelBytes(`${FIXTURES}arith/model.onnx`), backends: ['cpu'] })).toMatchObject({
      ok: true,
      backend: 'cpu',
    })
    // Bounded work (about 25 slices, seconds, not minutes): the abandoned run keeps a core busy to its end.
    const slice = await timed(() => pool!.run('slow', slowFeeds(200_000n), { timeoutMs: 60_000 }))
    const unstoppedMs = slice.ms * 25
    // Typical runs are short, so the slice is not what the pool's timeout floor and grace are measured from.
    for (let i = 0; i < 3; i++) await pool.run('slow', slowFeeds(1n), { timeoutMs: 60_000 })
    const before = pool.stats().workers.map((w) => w.id)
    const stopped = await timed(() => pool!.run('slow', slowFeeds(5_000_000n), { timeoutMs: 150 }).catch((e) => e))
    expect(stopped.value).toBeInstanceOf(TimeoutError)
    expect(stopped.value.details.stage).toBe('running')
    expect(stopped.ms).toBeLessThan(unstoppedMs / 20)
    // Once the run outlives its grace, the caller long answered, a replacement serves while the old thread is
    // still inside session.run.
    await until(() => pool!.stats().abandoned === 1)
    expect(pool.stats().terminations).toBe(1)
    const results = await Promise.all([1, 2, 3].map((v) => pool!.run('arith', arithFeeds([v, 0, 0, 0]), { timeoutMs: ENOUGH_MS })))
    expect(results.map((r) => r.outputs.y!.data[0])).toEqual([3, 5, 7])
    await until(() => pool!.stats().workers.length === 2 && pool!.stats().workers.every((w) => w.state === 'idle'))
    expect(
      pool
        .stats()
        .workers.map((w) => w.id)
        .filter((id) => !before.includes(id)),
    ).toHaveLength(1)
    // Terminated once its run came back to JavaScript; the process is still here (terminating it mid-run aborts it).
    const left = await timed(() => until(() => pool!.stats().abandoned === 0, unstoppedMs * 4))
    expect(stopped.ms + left.ms).toBeGreaterThan(unstoppedMs / 10)
  })
})
