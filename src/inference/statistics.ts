import type { Registry } from './registry'

/**
 * Per-model, per-version inference statistics in the shape of Triton's statistics extension
 * (`extension_statistics.md`): counts and cumulative durations in nanoseconds since the process started.
 * Every tensor inference counts, whichever route asked for it (`/api/v1` infer and batches, `/v2` infer, jobs);
 * the VAD routes run frames through their own path and do not.
 *
 * What vireo can time: the whole call (success / fail), the wait for a worker (queue) and the model run
 * inside the worker (compute_infer). Checking and converting the inputs, the hops to and from the worker
 * thread and building the outputs are not timed apart, so compute_input holds all of them and compute_output
 * counts the same requests with 0 ns. Each request runs as one execution of batch size 1.
 */

export interface DurationStat {
  count: number
  ns: number
}

const DURATIONS = ['success', 'fail', 'queue', 'compute_input', 'compute_infer', 'compute_output', 'cache_hit', 'cache_miss'] as const
type InferenceStats = Record<(typeof DURATIONS)[number], DurationStat>

export interface ModelStat {
  name: string
  version: string
  /** Milliseconds since the epoch of the last request, 0 before the first. */
  last_inference: number
  inference_count: number
  execution_count: number
  inference_stats: InferenceStats
  response_stats: Record<string, never>
  batch_stats: { batch_size: number; compute_input: DurationStat; compute_infer: DurationStat; compute_output: DurationStat }[]
  memory_usage: never[]
}

/** One finished infer call. Durations in milliseconds, as the registry reports them. */
export type InferOutcome = { ok: true; totalMs: number; queueMs: number; inferenceMs: number } | { ok: false; totalMs: number }

export interface InferenceStatistics {
  record(name: string, version: string, outcome: InferOutcome): void
  /** The statistics of one model version; zeros when it has not been asked anything yet. */
  of(name: string, version: string): ModelStat
}

const ns = (ms: number) => Math.max(0, Math.round(ms * 1e6))

function blank(name: string, version: string): ModelStat {
  const inference_stats = Object.fromEntries(DURATIONS.map((d) => [d, { count: 0, ns: 0 }])) as InferenceStats
  return {
    name,
    version,
    last_inference: 0,
    inference_count: 0,
    execution_count: 0,
    inference_stats,
    response_stats: {},
    batch_stats: [],
    memory_usage: [],
  }
}

function add(stat: DurationStat, ms: number): void {
  stat.count += 1
  stat.ns += ns(ms)
}

/**
 * Counters for every model version, kept in memory.
 * @example const statistics = createInferenceStatistics(); statistics.of('arith', '1').inference_count // 0
 */
export function createInferenceStatistics(options: { now?: () => number } = {}): InferenceStatistics {
  const { now = Date.now } = options
  const stats = new Map<string, ModelStat>()
  const keyOf = (name: string, version: string) => `${name}\u0000${version}`

  return {
    record(name, version, outcome) {
      const key = keyOf(name, version)
      let stat = stats.get(key)
      if (!stat) {
        stat = blank(name, version)
        stats.set(key, stat)
      }
      stat.last_inference = now()
      const s = stat.inference_stats
      if (!outcome.ok) return add(s.fail, outcome.totalMs)
      add(s.success, outcome.totalMs)
      add(s.queue, outcome.queueMs)
      add(s.compute_input, outcome.totalMs - outcome.queueMs - outcome.inferenceMs)
      add(s.compute_infer, outcome.inferenceMs)
      add(s.compute_output, 0)
      stat.inference_count += 1
      stat.execution_count += 1
    },
    of(name, version) {
      const stat = stats.get(keyOf(name, version)) ?? blank(name, version)
      const s = stat.inference_stats
      const batch = stat.execution_count
        ? [
            {
              batch_size: 1,
              compute_input: { ...s.compute_input },
              compute_infer: { ...s.compute_infer },
              compute_output: { ...s.compute_output },
            },
          ]
        : []
      return structuredClone({ ...stat, batch_stats: batch })
    },
  }
}

/**
 * The same registry, counting every `infer` call in `statistics`. A request for a model that does not exist,
 * or never loaded far enough to have a version, has nothing to count against.
 * @example const registry = withStatistics(createRegistry({ config, logger }), statistics)
 */
export function withStatistics(registry: Registry, statistics: InferenceStatistics): Registry {
  return {
    ...registry,
    async infer(name, request, options) {
      const started = performance.now()
      try {
        const result = await registry.infer(name, request, options)
        statistics.record(name, result.model_version, {
          ok: true,
          totalMs: performance.now() - started,
          queueMs: result.timing.queue_ms,
          inferenceMs: result.timing.inference_ms,
        })
        return result
      } catch (error) {
        const version = options?.version ?? registry.list().find((m) => m.name === name)?.version
        if (version) statistics.record(name, version, { ok: false, totalMs: performance.now() - started })
        throw error
      }
    },
  }
}
