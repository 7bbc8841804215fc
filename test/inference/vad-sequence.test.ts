import { afterAll, afterEach, beforeAll, describe, expect, it } from 'bun:test'
import { ProcessingError, TimeoutError } from '../../src/errors'
import { createPool, type Pool } from '../../src/inference/pool'
import { createRegistry, type Registry } from '../../src/inference/registry'
import { SHARED_SLOT_BYTES } from '../../src/inference/shared-slot'
import { packVadBatch, SILERO_FRAME, SILERO_INPUT, SILERO_STATE, SileroWindow, unpackVadBatch } from '../../src/inference/vad-batch'
import { arithFeeds, backendOrder, ENOUGH_MS, FIXTURES, MODELS, modelBytes, registryConfig, silent, timed, until } from './helpers'

const silero = async () => ({ name: 'silero-vad', bytes: await modelBytes(`${MODELS}silero-vad/silero_vad_v5.onnx`), backends: ['wasm'] })
const arith = async () => ({ name: 'arith', bytes: await modelBytes(`${FIXTURES}arith/model.onnx`), backends: ['wasm'] })

/** `n` windowed frames of a voiced-like signal that starts after a short silence, so probabilities move. */
function windowed(n: number): Float32Array {
  const window = new SileroWindow()
  const out = new Float32Array(n * SILERO_INPUT)
  for (let k = 0; k < n; k++) {
    const frame = Float32Array.from({ length: SILERO_FRAME }, (_, i) => {
      const t = (k * SILERO_FRAME + i) / 16000
      return k < 4
        ? 0
        : 0.3 * (Math.sin(2 * Math.PI * 200 * t) + 0.5 * Math.sin(4 * Math.PI * 200 * t) + 0.2 * Math.sin(2 * Math.PI * 3 * t))
    })
    out.set(window.next(frame), k * SILERO_INPUT)
  }
  return out
}

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i]!)))

describe('VAD sequences in the pool', () => {
  let pool: Pool | undefined
  afterEach(async () => {
    await pool?.close()
    pool = undefined
  })

  it('gives the same probabilities and final state as one run per frame (within 1e-6)', async () => {
    pool = createPool({ size: 1, queueMax: 4 })
    await pool.load(await silero())
    const n = 40
    const inputs = windowed(n)
    const probs: number[] = []
    let state: Float32Array = new Float32Array(SILERO_STATE)
    for (let k = 0; k < n; k++) {
      const samples = inputs.slice(k * SILERO_INPUT, (k + 1) * SILERO_INPUT)
      const { outputs } = await pool.run('silero-vad', packVadBatch([{ samples, state }]), { timeoutMs: ENOUGH_MS })
      const [result] = unpackVadBatch(outputs, 1)
      probs.push(result!.probability)
      state = result!.state
    }
    const { outputs, workerId } = await pool.runVadSequence('silero-vad', inputs, new Float32Array(SILERO_STATE), { timeoutMs: ENOUGH_MS })
    expect(outputs.output!.dims).toEqual([n, 1])
    expect(outputs.stateN!.dims).toEqual([2, 1, 128])
    expect(maxDiff(outputs.output!.data as Float32Array, probs)).toBeLessThan(1e-6)
    expect(maxDiff(outputs.stateN!.data as Float32Array, state)).toBeLessThan(1e-6)
    expect(Math.max(...probs) - Math.min(...probs)).toBeGreaterThan(0.1)
    // Every call went through the shared slot; the sequence counts as one run of its worker.
    expect(pool.stats().handoffs).toEqual({ shared: n + 1, posted: 0 })
    expect(pool.stats().workers.find((w) => w.id === workerId)!.runs).toBe(n + 1)
  })

  it('sends a sequence too large for the shared slot by postMessage, with the same results', async () => {
    pool = createPool({ size: 1, queueMax: 4 })
    await pool.load(await silero())
    const n = Math.ceil(SHARED_SLOT_BYTES / (SILERO_INPUT * 4)) + 10
    const inputs = windowed(n)
    const whole = await pool.runVadSequence('silero-vad', inputs.slice(), new Float32Array(SILERO_STATE), { timeoutMs: ENOUGH_MS })
    expect(pool.stats().handoffs).toEqual({ shared: 0, posted: 1 })
    // The same frames in two halves that fit, the state carried between them.
    const half = Math.floor(n / 2) * SILERO_INPUT
    const first = await pool.runVadSequence('silero-vad', inputs.slice(0, half), new Float32Array(SILERO_STATE), {
      timeoutMs: ENOUGH_MS,
    })
    const second = await pool.runVadSequence('silero-vad', inputs.slice(half), first.outputs.stateN!.data as Float32Array, {
      timeoutMs: ENOUGH_MS,
    })
    expect(pool.stats().handoffs).toEqual({ shared: 2, posted: 1 })
    const halves = [...(first.outputs.output!.data as Float32Array), ...(second.outputs.output!.data as Float32Array)]
    expect(maxDiff(whole.outputs.output!.data as Float32Array, halves)).toBeLessThan(1e-6)
    expect(maxDiff(whole.outputs.stateN!.data as Float32Array, [...(second.outputs.stateN!.data as Float32Array)])).toBeLessThan(1e-6)
  })

  it('times out a long sequence, replaces its worker and serves the next one', async () => {
    // What the stopped sequence would have cost: a 1/20 slice of it, timed unstopped on this machine now. On a pool
    // of its own, so this long run does not enter the run times from which the pool under test floors timeouts.
    const reference = createPool({ size: 1, queueMax: 4 })
    await reference.load(await silero())
    const slice = await timed(() =>
      reference.runVadSequence('silero-vad', windowed(1_000), new Float32Array(SILERO_STATE), { timeoutMs: ENOUGH_MS }),
    )
    await reference.close()
    const unstoppedMs = slice.ms * 20
    pool = createPool({ size: 1, queueMax: 4 })
    await pool.load(await silero())
    const [before] = pool.stats().workers.map((w) => w.id)
    const long = windowed(20_000)
    const stopped = await timed(() =>
      pool!.runVadSequence('silero-vad', long, new Float32Array(SILERO_STATE), { timeoutMs: 200 }).catch((e) => e),
    )
    const error = stopped.value
    expect(error).toBeInstanceOf(TimeoutError)
    expect(error.details).toEqual({ timeout_ms: 200, stage: 'running' })
    // Stopped, not finished: the error came back in a small fraction of the sequence's own time.
    expect(stopped.ms).toBeLessThan(unstoppedMs / 4)
    const next = await pool.runVadSequence('silero-vad', windowed(3), new Float32Array(SILERO_STATE), { timeoutMs: ENOUGH_MS })
    expect(next.workerId).not.toBe(before)
    expect(next.outputs.output!.data).toHaveLength(3)
    expect(pool.stats().workers).toHaveLength(1)
  })

  it('stops a running and a queued sequence when the caller aborts', async () => {
    pool = createPool({ size: 1, queueMax: 4 })
    await pool.load(await silero())
    const [before] = pool.stats().workers.map((w) => w.id)
    const controller = new AbortController()
    const options = { timeoutMs: ENOUGH_MS, signal: controller.signal }
    const running = pool.runVadSequence('silero-vad', windowed(20_000), new Float32Array(SILERO_STATE), options)
    const queued = pool.runVadSequence('silero-vad', windowed(2), new Float32Array(SILERO_STATE), options)
    setTimeout(() => controller.abort(), 100)
    const errors = await Promise.all([running.catch((e) => e), queued.catch((e) => e)])
    expect(errors.map((e) => e.name)).toEqual(['AbortError', 'AbortError'])
    await until(() => pool!.stats().workers.some((w) => w.id !== before && w.state === 'idle'))
    const next = await pool.runVadSequence('silero-vad', windowed(2), new Float32Array(SILERO_STATE), { timeoutMs: ENOUGH_MS })
    expect(next.workerId).not.toBe(before)
  })

  it('hands over a view on a larger buffer as a copy of its own, leaving the rest alone', async () => {
    pool = createPool({ size: 1, queueMax: 4 })
    await pool.load(await silero())
    const buffer = windowed(3)
    const view = buffer.subarray(0, 2 * SILERO_INPUT)
    const { outputs } = await pool.runVadSequence('silero-vad', view, new Float32Array(SILERO_STATE), { timeoutMs: ENOUGH_MS })
    expect(outputs.output!.data).toHaveLength(2)
    expect(buffer.length).toBe(3 * SILERO_INPUT)
  })

  it('fails as a processing error on a model that is not Silero, and recycles by the same run count', async () => {
    pool = createPool({ size: 1, queueMax: 4, recycleAfter: 2 })
    await pool.load(await arith())
    const [before] = pool.stats().workers.map((w) => w.id)
    const error = await pool.runVadSequence('arith', windowed(1), new Float32Array(SILERO_STATE), { timeoutMs: ENOUGH_MS }).catch((e) => e)
    expect(error).toBeInstanceOf(ProcessingError)
    await pool.run('arith', arithFeeds(), { timeoutMs: ENOUGH_MS })
    await until(() => pool!.stats().workers.length === 1 && pool!.stats().workers[0]!.id !== before)
  })
})

describe('registry.runVadSequence', () => {
  let registry: Registry
  beforeAll(async () => {
    registry = createRegistry({
      config: registryConfig({ MODELS_DIR: MODELS, MODELS_REQUIRED: ['silero-vad'] }),
      logger: silent,
      backendOrder,
    })
    await registry.start()
  })
  afterAll(() => registry.stop())

  it('carries the state across calls: two halves equal the whole', async () => {
    const whole = await registry.runVadSequence('silero-vad', windowed(20), new Float32Array(SILERO_STATE))
    const all = windowed(20)
    const first = await registry.runVadSequence('silero-vad', all.slice(0, 12 * SILERO_INPUT), new Float32Array(SILERO_STATE))
    const second = await registry.runVadSequence('silero-vad', all.slice(12 * SILERO_INPUT), first.state)
    expect(maxDiff(whole.probabilities, [...first.probabilities, ...second.probabilities])).toBeLessThan(1e-6)
    expect(maxDiff(whole.state, second.state)).toBeLessThan(1e-6)
    expect(whole.inferenceMs).toBeGreaterThan(0)
  })

  it('refuses inputs that are not whole frames or a state of the wrong size', async () => {
    const zero = new Float32Array(SILERO_STATE)
    await expect(registry.runVadSequence('silero-vad', new Float32Array(0), zero)).rejects.toBeInstanceOf(RangeError)
    await expect(registry.runVadSequence('silero-vad', new Float32Array(SILERO_FRAME), zero)).rejects.toBeInstanceOf(RangeError)
    await expect(registry.runVadSequence('silero-vad', windowed(1), new Float32Array(128))).rejects.toBeInstanceOf(RangeError)
    await expect(registry.runVadSequence('nope', windowed(1), zero)).rejects.toMatchObject({ code: 'NOT_FOUND' })
  })
})
