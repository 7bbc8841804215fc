import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { cp, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NotFoundError, ServiceUnavailableError, TimeoutError, ValidationError } from '../../src/errors'
import { checkManifest, loadManifest } from '../../src/inference/manifest'
import { createRegistry, type Registry } from '../../src/inference/registry'
import { backendOrder, expectedBackend, FIXTURES, registryConfig, silent, until } from './helpers'

const arithRequest = (x = [1, 2, 3, 4], n: (number | string)[] = [10, -3]) => ({
  id: 'req-1',
  inputs: [
    { name: 'x', shape: [1, 4], datatype: 'FP32', data: x },
    { name: 'n', shape: [1, 2], datatype: 'INT64', data: n },
  ],
})

describe('model registry with the fixture models', () => {
  let registry: Registry
  let sick = false

  beforeAll(async () => {
    registry = createRegistry({
      config: registryConfig({ INFERENCE_WORKERS: 2, INFERENCE_MAX_ELEMENTS: 1000 }),
      logger: silent,
      backendOrder,
      healthProbe: async (name, warmup) => {
        if (sick && name === 'dynbatch') throw new Error('injected failure')
        await warmup()
      },
    })
    await registry.start()
  })
  afterAll(() => registry.stop())

  it('marks a corrupt model and a bad manifest failed and serves the others', () => {
    const status = Object.fromEntries(registry.list().map((m) => [m.name, m.status]))
    expect(status).toEqual({
      alltypes: 'ready',
      arith: 'ready',
      badmanifest: 'failed',
      corrupt: 'failed',
      dynbatch: 'ready',
      slow: 'ready',
    })
    expect(registry.get('corrupt').reason).toContain('protobuf parsing failed')
    expect(registry.get('badmanifest').reason).toStartWith('manifest.json is invalid: ')
    expect(registry.get('badmanifest').reason).toContain('/name: Expected string to match')
  })

  it('describes a ready model from its session', () => {
    const arith = registry.get('arith')
    expect(arith).toMatchObject({
      version: '1',
      task: 'tensor',
      backend: expectedBackend,
      reason: null,
      inputs: [
        { name: 'x', datatype: 'FP32', shape: [1, 4] },
        { name: 'n', datatype: 'INT64', shape: [1, 2] },
      ],
      outputs: [
        { name: 'y', datatype: 'FP32', shape: [1, 4] },
        { name: 'm', datatype: 'INT64', shape: [1, 2] },
      ],
      limits: { timeout_ms: 2000, max_timeout_ms: 60000, max_elements: 1000 },
    })
    expect(arith.load_ms).toBeGreaterThan(0)
    expect(Date.parse(arith.last_health_check!)).toBeGreaterThan(0)
    expect(registry.get('dynbatch').inputs[0]!.shape).toEqual([-1, 3])
  })

  it('computes y = 2x + 1 and m = n + 1', async () => {
    const result = await registry.infer('arith', arithRequest([1, -2, 0.5, 100]))
    expect(result).toMatchObject({
      model_name: 'arith',
      model_version: '1',
      id: 'req-1',
      outputs: [
        { name: 'y', shape: [1, 4], datatype: 'FP32', data: [3, -3, 2, 201] },
        { name: 'm', shape: [1, 2], datatype: 'INT64', data: [11, -2] },
      ],
    })
    expect(result.timing.inference_ms).toBeGreaterThanOrEqual(0)
    expect(result.timing.queue_ms).toBeGreaterThanOrEqual(0)
  })

  it('carries INT64 beyond 2^53 as strings both ways', async () => {
    const result = await registry.infer('arith', { ...arithRequest(undefined, ['9007199254740993', '1']), outputs: [{ name: 'm' }] })
    expect(result.outputs).toEqual([{ name: 'm', shape: [1, 2], datatype: 'INT64', data: ['9007199254740994', '2'] }])
  })

  it('runs the dynamic-batch model at several batch sizes', async () => {
    for (const batch of [1, 2, 5, 17]) {
      const data = Array.from({ length: batch * 3 }, (_, i) => i - 4)
      const result = await registry.infer('dynbatch', { inputs: [{ name: 'x', shape: [batch, 3], datatype: 'FP32', data }] })
      expect(result.outputs[0]).toEqual({ name: 'sq', shape: [batch, 3], datatype: 'FP32', data: data.map((v) => v * v) })
      expect(result.outputs[1]!.data).toEqual(data.map((v, i) => v + (i % 3) + 1))
    }
  })

  it('rejects a request that does not fit, with a pointer to the field', async () => {
    const error = await registry
      .infer('dynbatch', { inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: Array(8).fill(0) }] })
      .catch((e) => e)
    expect(error).toBeInstanceOf(ValidationError)
    expect(error.details).toEqual([{ path: '/inputs/0/shape/1', message: 'Dimension 1 of input "x" must be 3 ([?,3]); got 4' }])
    const big = await registry
      .infer('dynbatch', { inputs: [{ name: 'x', shape: [400, 3], datatype: 'FP32', data: Array(1200).fill(0) }] })
      .catch((e) => e)
    expect(big.details[0].message).toContain('the limit is 1000')
    const timeout = await registry.infer('arith', { ...arithRequest(), parameters: { timeout_ms: 60001 } }).catch((e) => e)
    expect(timeout.details).toEqual([{ path: '/parameters/timeout_ms', message: 'timeout_ms must be a whole number from 1 to 60000' }])
  })

  it('answers 404 for an unknown model and 503 for a failed one', async () => {
    await expect(registry.infer('nope', arithRequest())).rejects.toBeInstanceOf(NotFoundError)
    expect(() => registry.get('nope')).toThrow(NotFoundError)
    const error = await registry.infer('corrupt', arithRequest()).catch((e) => e)
    expect(error).toBeInstanceOf(ServiceUnavailableError)
    expect(error.message).toStartWith('Model "corrupt" failed to load')
  })

  it('times out the slow model, then keeps serving at full strength', async () => {
    const iters = { name: 'iters', shape: [], datatype: 'INT64', data: [100_000_000] }
    const h0 = { name: 'h0', shape: [1, 64], datatype: 'FP32', data: Array(64).fill(0.5) }
    const error = await registry.infer('slow', { inputs: [iters, h0] }).catch((e) => e)
    expect(error).toBeInstanceOf(TimeoutError)
    expect(error.message).toBe('Model "slow" did not answer within 300 ms')
    const results = await Promise.all([1, 2, 3].map((v) => registry.infer('arith', arithRequest([v, v, v, v]))))
    expect(results.map((r) => r.outputs[0]!.data[0])).toEqual([3, 5, 7])
    expect(registry.pool.stats().workers).toHaveLength(2)
  })

  it('marks a model unhealthy when its probe fails and ready again when it passes', async () => {
    sick = true
    await registry.checkHealth()
    expect(registry.get('dynbatch')).toMatchObject({ status: 'unhealthy', reason: 'health probe failed: injected failure' })
    expect(registry.get('arith').status).toBe('ready')
    const error = await registry
      .infer('dynbatch', { inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] })
      .catch((e) => e)
    expect(error).toBeInstanceOf(ServiceUnavailableError)
    expect(error.headers['Retry-After']).toBe('10')
    sick = false
    await registry.checkHealth()
    expect(registry.get('dynbatch')).toMatchObject({ status: 'ready', reason: null })
  })
})

describe('model health probe', () => {
  it('leaves models ready when the probe waits behind, or lands during, a deliberate worker replacement', async () => {
    // One wasm worker: every probe queues behind the long run, and terminating it replaces the only worker.
    const registry = createRegistry({ config: registryConfig({ INFERENCE_WORKERS: 1 }), logger: silent, backendOrder: () => ['wasm'] })
    await registry.start()
    try {
      const iters = { name: 'iters', shape: [], datatype: 'INT64', data: [100_000_000] }
      const h0 = { name: 'h0', shape: [1, 64], datatype: 'FP32', data: Array(64).fill(0.5) }
      const long = registry.infer('slow', { inputs: [iters, h0], parameters: { timeout_ms: 2000 } }, { owner: 'a' }).catch((e) => e)
      await until(() => registry.pool.stats().workers[0]?.state === 'busy')
      await registry.checkHealth()
      expect(await long).toBeInstanceOf(TimeoutError)
      await until(() => registry.pool.stats().terminations === 1)
      // This round queues while the replacement reloads every model.
      await registry.checkHealth()
      const status = Object.fromEntries(registry.list().map((m) => [m.name, m.status]))
      expect(status).toMatchObject({ arith: 'ready', dynbatch: 'ready', slow: 'ready' })
      // Once a worker is free the probes run and pass.
      await until(() => registry.pool.stats().workers[0]?.state === 'idle')
      await registry.checkHealth()
      expect(registry.list().every((m) => m.status === 'ready' || m.status === 'failed')).toBe(true)
    } finally {
      await registry.stop()
    }
  })
})

describe('model registry start-up', () => {
  it('refuses to start when a required model is not ready', async () => {
    const registry = createRegistry({ config: registryConfig({ MODELS_REQUIRED: ['arith', 'corrupt', 'ghost'] }), logger: silent })
    const error = await registry.start().catch((e) => e)
    expect(error.message).toStartWith(
      'Required models are not available (MODELS_REQUIRED): "corrupt" did not load: onnxruntime could not load model.onnx',
    )
    expect(error.message).toContain('"ghost" is not in MODELS_DIR')
    expect(registry.pool.stats().workers).toHaveLength(0)
  })

  it('falls back from webgpu to wasm, and past a backend that fails', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vireo-models-'))
    await cp(join(FIXTURES, 'arith'), join(dir, 'arith'), { recursive: true })
    const registry = createRegistry({
      config: registryConfig({ MODELS_DIR: dir, MODELS_REQUIRED: ['arith'] }),
      logger: silent,
      backendOrder: () => ['no-such-backend', 'webgpu', 'wasm'],
    })
    try {
      await registry.start()
      expect(registry.get('arith').backend).toBe('wasm')
      expect((await registry.infer('arith', arithRequest())).outputs[0]!.data).toEqual([3, 5, 7, 9])
      const only = createRegistry({
        config: registryConfig({ MODELS_DIR: dir }),
        logger: silent,
        backendOrder: () => ['webgpu', 'no-such-backend'],
      })
      await only.start()
      expect(only.get('arith').reason).toBe(
        'onnxruntime could not load model.onnx: webgpu: navigator.gpu is not available in this runtime; no-such-backend: no available backend found. ERR: [no-such-backend] backend not found.',
      )
      await only.stop()
    } finally {
      await registry.stop()
      await rm(dir, { recursive: true })
    }
  })

  it('serves nothing, without failing, when MODELS_DIR is missing', async () => {
    const registry = createRegistry({ config: registryConfig({ MODELS_DIR: '/nonexistent/models' }), logger: silent })
    await registry.start()
    expect(registry.list()).toEqual([])
    await registry.stop()
  })
})

describe('model manifest', () => {
  it('loads the shipped Silero manifest', async () => {
    const manifest = await loadManifest(new URL('../../models/silero-vad', import.meta.url).pathname)
    expect(manifest).toMatchObject({ name: 'silero-vad', version: '5', task: 'vad', backends: ['cpu', 'webgpu', 'wasm'] })
  })

  it('explains what is wrong', async () => {
    expect(await loadManifest('/nonexistent')).toBe('/nonexistent/manifest.json cannot be read')
    expect(checkManifest({ name: 'ok' })).toStartWith('manifest.json is invalid: /version: Expected required property')
    expect(
      checkManifest({
        name: 'x',
        version: '1',
        task: 'vad',
        file: 'a.onnx',
        license: 'MIT',
        source: 's',
        backends: ['cuda'],
        timeout_ms: 1,
      }),
    ).toContain('/backends/0')
  })
})
