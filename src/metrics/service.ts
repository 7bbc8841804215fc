import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry as PromRegistry } from 'prom-client'
import type { BatchEvent } from '../inference/batcher'
import type { RateLimiter } from '../rate-limit/limiter'

/** Model states reported by the registry; each model gets one series per state so `== 0` alerts work. */
export const MODEL_STATUSES = ['loading', 'ready', 'failed', 'unhealthy'] as const

/** Any other method (clients may send anything) is counted as `other`, so it cannot grow the label set. */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])

/** Inference runs in well under a millisecond per frame, so the buckets start far below prom-client's defaults. */
const INFERENCE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

/**
 * Live values read at scrape time. Every collector is optional: a labelled gauge whose collector
 * is missing stays empty rather than showing made-up zeros (prom-client shows 0 for an unlabelled one).
 */
export interface MetricsCollectors {
  queueDepth?: () => number
  /** One entry per inference worker (the pool's `stats().workers` fits). */
  workers?: () => readonly { id: number | string; state: string; heapBytes: number }[]
  /** One entry per model (the registry's `list()` fits); `backend` is null until the model has loaded. */
  models?: () => readonly { name: string; status: string; backend?: string | null }[]
  /** Workers taken out of service mid-run on a backend that cannot be interrupted, still finishing that run. */
  abandonedWorkers?: () => number
  /** Since start: runs whose caller had gone that finished within their grace, and workers terminated for outliving it. */
  overruns?: () => { discarded: number; terminations: number }
  /** Since start: runs handed to a worker through shared memory and by postMessage (the pool's `stats().handoffs`). */
  handoffs?: () => { shared: number; posted: number }
  /** Since start: full collections run by the collection pacer of an embedded PGlite (src/db/collection-pacer.ts). */
  pacedCollections?: () => number
  /** Job counts by status, e.g. `{ queued: 3, running: 1 }`. */
  jobs?: () => Record<string, number> | Promise<Record<string, number>>
}

export interface MetricsOptions {
  collect?: MetricsCollectors
  /** Process metrics (RSS, heap, event-loop lag, GC); on by default. */
  defaultMetrics?: boolean
}

/** One finished HTTP request, as the request-id plugin reports it. */
export interface RequestObservation {
  method: string
  /** The route pattern (`/api/v1/keys/:id`), or `unmatched`; never a concrete path. */
  route: string
  status: number
  durationS: number
}

/** One finished inference request, as the pool reports it. */
export interface RunObservation {
  model: string
  outcome: string
  queueMs: number
  /** Time inside the model; 0 when the run did not finish. */
  inferenceMs: number
}

/**
 * vireo's metrics in a private prom-client `Registry` (`promRegistry`; "registry" alone means the model
 * registry). Each app gets its own (never prom-client's global one), so tests and several apps in one
 * process do not share or clash over series.
 * `observeRequest` and `observeRun` use no `this`: pass them straight as callbacks.
 * @example
 * const metrics = createMetrics({ collect: { queueDepth: () => pool.stats().queueDepth } })
 * app.use(requestId({ logger, trustProxy, onResponse: metrics.observeRequest, peer: (r) => app.server?.requestIP(r)?.address }))
 */
export function createMetrics(options: MetricsOptions = {}) {
  const { collect = {}, defaultMetrics = true } = options
  const promRegistry = new PromRegistry()
  const registers = [promRegistry]

  const collectErrors = new Counter({
    name: 'metrics_collect_errors_total',
    help: 'Collectors that threw during a scrape; their gauges were left empty for that scrape',
    labelNames: ['collector'] as const,
    registers,
  })
  /**
   * A failing collector must not fail the whole scrape: the other series matter most when something is wrong.
   * Collectors run concurrently, so a failure shows in `metrics_collect_errors_total` from the next scrape on.
   */
  async function guarded(
    collector: string,
    gauge: { reset(): void },
    read: () => unknown | Promise<unknown>,
    write: (value: never) => void,
  ) {
    gauge.reset()
    try {
      write((await read()) as never)
    } catch {
      gauge.reset()
      collectErrors.inc({ collector })
    }
  }

  const http = {
    requests: new Counter({
      name: 'http_requests_total',
      help: 'HTTP requests answered, by method, route pattern and status',
      labelNames: ['method', 'route', 'status'] as const,
      registers,
    }),
    duration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'Time from the first hook to the response, by method, route pattern and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
  }

  const inference = {
    duration: new Histogram({
      name: 'inference_duration_seconds',
      help: 'Time spent inside the model for finished runs, by model',
      labelNames: ['model'] as const,
      buckets: INFERENCE_BUCKETS,
      registers,
    }),
    queueWait: new Histogram({
      name: 'inference_queue_wait_seconds',
      help: 'Time a request waited for a free inference worker, by model',
      labelNames: ['model'] as const,
      buckets: INFERENCE_BUCKETS,
      registers,
    }),
    runs: new Counter({
      name: 'inference_runs_total',
      help: 'Inference requests by model and outcome (ok, error, timeout, aborted, crashed, rejected)',
      labelNames: ['model', 'outcome'] as const,
      registers,
    }),
    queueDepth: new Gauge({
      name: 'inference_queue_depth',
      help: 'Requests waiting for an inference worker',
      registers,
      async collect() {
        const read = collect.queueDepth
        if (read) await guarded('queue_depth', this, read, (depth: number) => this.set(depth))
      },
    }),
    workers: new Gauge({
      name: 'inference_workers',
      help: 'Inference workers by state (starting, idle, busy, draining)',
      labelNames: ['state'] as const,
      registers,
      async collect() {
        const read = collect.workers
        if (!read) return
        await guarded('workers', this, read, (workers: ReturnType<typeof read>) => {
          for (const worker of workers) this.inc({ state: worker.state })
        })
      },
    }),
    abandonedWorkers: new Gauge({
      name: 'inference_workers_abandoned',
      help: 'Workers stopped mid-run on a native backend (cpu) that terminate() cannot interrupt; each keeps a core busy until its run ends',
      registers,
      async collect() {
        const read = collect.abandonedWorkers
        if (read) await guarded('abandoned_workers', this, read, (count: number) => this.set(count))
      },
    }),
    discardedRuns: new Counter({
      name: 'inference_runs_discarded_total',
      help: 'Runs whose caller gave up (timeout or disconnect) that finished within their grace: result dropped, worker kept',
      registers,
      async collect() {
        const read = collect.overruns
        if (read) await guarded('overruns', this, read, (counts: ReturnType<typeof read>) => this.inc(counts.discarded))
      },
    }),
    workerTerminations: new Counter({
      name: 'inference_worker_terminations_total',
      help: 'Workers terminated (abandoned on cpu) and replaced because a run whose caller gave up outlived its grace',
      registers,
      async collect() {
        const read = collect.overruns
        if (read) await guarded('overruns', this, read, (counts: ReturnType<typeof read>) => this.inc(counts.terminations))
      },
    }),
    handoffs: new Counter({
      name: 'inference_handoffs_total',
      help: 'Runs handed to a worker, by path: shared (shared memory) or posted (postMessage: too large for the slot, or no shared memory)',
      labelNames: ['path'] as const,
      registers,
      async collect() {
        const read = collect.handoffs
        if (read)
          await guarded('handoffs', this, read, (counts: ReturnType<typeof read>) => {
            this.inc({ path: 'shared' }, counts.shared)
            this.inc({ path: 'posted' }, counts.posted)
          })
      },
    }),
    workerHeap: new Gauge({
      name: 'inference_worker_heap_bytes',
      help: 'Memory of each live inference worker as of its last answer (WASM heap, else JS heap)',
      labelNames: ['worker'] as const,
      registers,
      async collect() {
        const read = collect.workers
        if (!read) return
        await guarded('worker_heap', this, read, (workers: ReturnType<typeof read>) => {
          for (const worker of workers) this.set({ worker: String(worker.id) }, worker.heapBytes)
        })
      },
    }),
  }

  const modelStatus = new Gauge({
    name: 'model_status',
    help: 'Current status of each model: 1 for its status, 0 for the others',
    labelNames: ['model', 'status'] as const,
    registers,
    async collect() {
      const read = collect.models
      if (!read) return
      await guarded('models', this, read, (models: ReturnType<typeof read>) => {
        for (const model of models) {
          for (const status of new Set<string>([...MODEL_STATUSES, model.status]))
            this.set({ model: model.name, status }, status === model.status ? 1 : 0)
        }
      })
    },
  })

  const modelBackend = new Gauge({
    name: 'model_backend_info',
    help: 'The backend (cpu, webgpu, wasm) each loaded model runs on: 1 for that backend',
    labelNames: ['model', 'backend'] as const,
    registers,
    async collect() {
      const read = collect.models
      if (!read) return
      await guarded('model_backend', this, read, (models: ReturnType<typeof read>) => {
        for (const model of models) if (model.backend) this.set({ model: model.name, backend: model.backend }, 1)
      })
    },
  })

  const rateLimitRejections = new Counter({
    name: 'rate_limit_rejections_total',
    help: 'Requests refused with 429, by rate-limit policy',
    labelNames: ['policy'] as const,
    registers,
  })

  const jobs = new Gauge({
    name: 'jobs',
    help: 'Jobs by status',
    labelNames: ['status'] as const,
    registers,
    async collect() {
      const read = collect.jobs
      if (!read) return
      await guarded('jobs', this, read, (counts: Record<string, number>) => {
        for (const [status, count] of Object.entries(counts)) this.set({ status }, count)
      })
    },
  })

  /** Dynamic batching (src/inference/batcher.ts): how full its runs are, and what waiting for company costs. */
  const batching = {
    size: new Histogram({
      name: 'inference_batch_size',
      help: "Rows (along the batch axis) in each run a model's dynamic batcher sent, by model",
      labelNames: ['model'] as const,
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    }),
    queueDelay: new Histogram({
      name: 'inference_batch_queue_delay_seconds',
      help: "Time each request waited in its model's dynamic batcher before its run went to the pool, by model",
      labelNames: ['model'] as const,
      buckets: INFERENCE_BUCKETS,
      registers,
    }),
  }
  /** Feed from the registry's `onBatch`. */
  function observeBatch(event: BatchEvent): void {
    batching.size.observe({ model: event.model }, event.rows)
    for (const ms of event.queueDelaysMs) batching.queueDelay.observe({ model: event.model }, ms / 1000)
  }

  // Includes process_resident_memory_bytes, nodejs_heap_* and nodejs_eventloop_lag_* (perf_hooks'
  // monitorEventLoopDelay, which Bun and Deno both provide).
  if (defaultMetrics) collectDefaultMetrics({ register: promRegistry })

  // Only a process on the embedded PGlite paces collections: elsewhere the series is absent, not a made-up 0.
  const readPaced = collect.pacedCollections
  if (readPaced)
    new Counter({
      name: 'gc_paced_collections_total',
      help: 'Full garbage collections run because the heap had grown PGLITE_COLLECT_EVERY_MB (Bun on the embedded PGlite only)',
      registers,
      async collect() {
        await guarded('paced_collections', this, readPaced, (count: number) => this.inc(count))
      },
    })

  return {
    promRegistry,
    http,
    inference,
    modelStatus,
    modelBackend,
    rateLimitRejections,
    jobs,
    batching,
    observeBatch,
    /** Feed from the request-id plugin's `onResponse`. */
    observeRequest(entry: RequestObservation): void {
      const labels = {
        method: METHODS.has(entry.method) ? entry.method : 'other',
        route: entry.route || 'unmatched',
        status: String(entry.status),
      }
      http.requests.inc(labels)
      http.duration.observe(labels, entry.durationS)
    },
    /** Feed from the inference pool's `onRun`. */
    observeRun(event: RunObservation): void {
      inference.runs.inc({ model: event.model, outcome: event.outcome })
      // A refused request never waited; a run that did not finish has no model time worth recording.
      if (event.outcome !== 'rejected') inference.queueWait.observe({ model: event.model }, event.queueMs / 1000)
      if (event.outcome === 'ok') inference.duration.observe({ model: event.model }, event.inferenceMs / 1000)
    },
    /**
     * The same limiter, counting its refusals. Wrapping the one limiter every module shares counts
     * each 429 once, without threading a callback through every module's rate-limit plugin.
     */
    countRejections(limiter: RateLimiter): RateLimiter {
      return {
        ...limiter,
        async consume(policy, subject) {
          const decision = await limiter.consume(policy, subject)
          if (!decision.allowed) rateLimitRejections.inc({ policy })
          return decision
        },
      }
    },
  }
}

export type Metrics = ReturnType<typeof createMetrics>
