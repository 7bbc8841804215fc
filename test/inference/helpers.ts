import pino from 'pino'
import { loadConfig } from '../../src/config'
import { configuredBackendOrder, type RegistryConfig } from '../../src/inference/registry'
import type { Feeds } from '../../src/inference/tensors'

export const FIXTURES = new URL('../fixtures/models/', import.meta.url).pathname
export const MODELS = new URL('../../models/', import.meta.url).pathname
export const silent = pino({ level: 'silent' })
/**
 * The budget of a run that must succeed: generous, because a loaded machine, or a replacement worker that is
 * still loading its models, must slow such a run down, never turn it into a timeout.
 */
export const ENOUGH_MS = 120_000

/** What this test run forces on every model: CI's second run sets INFERENCE_BACKENDS=wasm; empty by default. */
export const forcedBackends = loadConfig({ INFERENCE_BACKENDS: process.env.INFERENCE_BACKENDS }).INFERENCE_BACKENDS
/** The registry's backend order in this test run, as src/deps.ts wires it. */
export const backendOrder = configuredBackendOrder(forcedBackends)
/** Where a model whose manifest lists `cpu` first runs in this test run. */
export const expectedBackend = forcedBackends[0] ?? 'cpu'

export function registryConfig(overrides: Partial<RegistryConfig> = {}): RegistryConfig {
  return {
    MODELS_DIR: FIXTURES,
    MODELS_REQUIRED: [],
    MODELS_HEALTH_INTERVAL_MS: 0,
    INFERENCE_WORKERS: 1,
    INFERENCE_QUEUE_MAX: 16,
    INFERENCE_MAX_TIMEOUT_MS: 60000,
    INFERENCE_TERMINATION_GRACE_MIN_MS: 50,
    INFERENCE_TERMINATIONS_PER_KEY_PER_MIN: 10,
    INFERENCE_MAX_ELEMENTS: 1 << 20,
    INFERENCE_WORKER_RECYCLE_AFTER: 0,
    INFERENCE_WORKER_MAX_HEAP_MB: 0,
    ...overrides,
  }
}

export async function modelBytes(path: string): Promise<Uint8Array> {
  return new Uint8Array(await Bun.file(path).arrayBuffer())
}

export function arithFeeds(x = [1, 2, 3, 4]): Feeds {
  return {
    x: { type: 'float32', data: Float32Array.from(x), dims: [1, 4] },
    n: { type: 'int64', data: BigInt64Array.from([1n, 2n]), dims: [1, 2] },
  }
}

/** The slow fixture with enough Loop iterations to run for minutes. */
export function slowFeeds(iters = 100_000_000n): Feeds {
  return {
    iters: { type: 'int64', data: BigInt64Array.of(iters), dims: [] },
    h0: { type: 'float32', data: new Float32Array(64).fill(0.5), dims: [1, 64] },
  }
}

/** Wall time of one call, for comparing work against work measured in the same run (never against a constant). */
export async function timed<T>(work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now()
  const value = await work()
  return { ms: performance.now() - started, value }
}

export { until } from '../helpers'
