import { afterEach, describe, expect, it } from 'bun:test'
import { RateLimitedError, ServiceUnavailableError, TimeoutError } from '../../src/errors'
import { createPool, type Pool, type RunEvent } from '../../src/inference/pool'
import { arithFeeds, ENOUGH_MS, FIXTURES, modelBytes, slowFeeds, timed, until } from './helpers'

const arith = async () => ({ name: 'arith', bytes: await modelBytes(`${FIXTURES}arith/model.onnx`), backends: ['wasm'] })
const slow = async () => ({ name: 'slow', bytes: await modelBytes(`${FIXTURES}slow/model.onnx`), backends: ['wasm'] })

let pool: Pool | undefined
afterEach(async () => {
  await pool?.close()
  pool = undefined
})

describe('inference pool', () => {
  it('runs a model on every worker and reports timings', async () => {
    const events: RunEvent[] = []
    pool = createPool({ size: 2, queueMax: 4, onRun: (e) => events.push(e) })
    const report = await pool.load(await arith())
    expect(report.ok).toBe(true)
    const results = await Promise.all([1, 2, 3, 4].map((v) => pool!.run('arith', arithFeeds([v, 0, 0, 0]), { timeoutMs: ENOUGH_MS })))
    expect(results.map((r) => r.outputs.y!.data[0])).toEqual([3, 5, 7, 9])
    expect(new Set(results.map((r) => r.workerId)).size).toBe(2)
    expect(events).toHaveLength(4)
    expect(events.every((e) => e.outcome === 'ok' && e.model === 'arith' && e.inferenceMs > 0)).toBe(true)
    const stats = pool.stats()
    expect(stats.workers.map((w) => w.runs).reduce((a, b) => a + b)).toBe(4)
    expect(stats.workers[0]!.heapBytes).toBeGreaterThan(1 << 20)
  })

  it('hands runs over through the shared slot, copying the inputs; without it, transfers them', async () => {
    pool = createPool({ size: 1, queueMax: 1 })
    await pool.load(await arith())
    const feeds = arithFeeds()
    const x = feeds.x!.data
    const shared = await pool.run('arith', feeds, { timeoutMs: ENOUGH_MS })
    expect(shared.outputs.y!.data).toEqual(Float32Array.of(3, 5, 7, 9))
    expect(shared.outputs.m!.data).toEqual(BigInt64Array.of(2n, 3n))
    expect(shared.outputs.y!.data.buffer).toBeInstanceOf(ArrayBuffer)
    expect(x.byteLength).toBe(16)
    expect(pool.stats().handoffs).toEqual({ shared: 1, posted: 0 })
    await pool.close()

    pool = createPool({ size: 1, queueMax: 1, sharedSlots: false })
    await pool.load(await arith())
    const posted = arithFeeds()
    const result = await pool.run('arith', posted, { timeoutMs: ENOUGH_MS })
    expect(result.outputs.y!.data).toEqual(Float32Array.of(3, 5, 7, 9))
    expect(posted.x!.data.byteLength).toBe(0)
    expect(pool.stats().handoffs).toEqual({ shared: 0, posted: 1 })
  })

  it('answers 503 with Retry-After once the wait queue is full', async () => {
    pool = createPool({ size: 1, queueMax: 1 })
    await pool.load(await slow())
    const running = pool.run('slow', slowFeeds(), { timeoutMs: 1000 })
    const queued = pool.run('slow', slowFeeds(1n), { timeoutMs: ENOUGH_MS })
    const refused = pool.run('slow', slowFeeds(1n), { timeoutMs: 1000 })
    const error = await refused.catch((e) => e)
    expect(error).toBeInstanceOf(ServiceUnavailableError)
    expect(error.headers['Retry-After']).toBe('1')
    expect(pool.stats().queueDepth).toBe(1)
    await expect(running).rejects.toBeInstanceOf(TimeoutError)
    expect((await queued).outputs.h!.dims).toEqual([1, 64])
  })

  it('times out a running request, replaces its worker and serves the next requests', async () => {
    pool = createPool({ size: 2, queueMax: 4 })
    await pool.load(await slow())
    await pool.load(await arith())
    // What the stopped run would have cost: a 1/500 slice of the same work, timed unstopped on this machine now.
    const slice = await timed(() => pool!.run('slow', slowFeeds(200_000n), { timeoutMs: ENOUGH_MS }))
    const unstoppedMs = slice.ms * 500
    // Typical runs are short, so the slice is not what the pool's timeout floor and grace are measured from.
    for (let i = 0; i < 3; i++) await pool.run('slow', slowFeeds(1n), { timeoutMs: ENOUGH_MS })
    const before = pool.stats().workers.map((w) => w.id)
    const stopped = await timed(() => pool!.run('slow', slowFeeds(), { timeoutMs: 300 }).catch((e) => e))
    const error = stopped.value
    expect(error).toBeInstanceOf(TimeoutError)
    expect(error.details.stage).toBe('running')
    // The run was stopped, not finished: the error came back in a small fraction of the work's own time.
    expect(stopped.ms).toBeLessThan(unstoppedMs / 20)
    expect(pool.stats().workers).toHaveLength(2)
    const results = await Promise.all([1, 2, 3].map((v) => pool!.run('arith', arithFeeds([v, 0, 0, 0]), { timeoutMs: ENOUGH_MS })))
    expect(results.map((r) => r.outputs.y!.data[0])).toEqual([3, 5, 7])
    await until(() => pool!.stats().terminations === 1)
    await until(() => pool!.stats().workers.every((w) => w.state === 'idle'))
    const after = pool.stats().workers.map((w) => w.id)
    expect(after).toHaveLength(2)
    expect(after.filter((id) => !before.includes(id))).toHaveLength(1)
    // The replacement reloaded every model: the slow one runs there too.
    const both = await Promise.all([
      pool.run('slow', slowFeeds(1n), { timeoutMs: ENOUGH_MS }),
      pool.run('slow', slowFeeds(1n), { timeoutMs: ENOUGH_MS }),
    ])
    expect(new Set(both.map((r) => r.workerId)).size).toBe(2)
  })

  it('hands a lone caller’s runs to the worker that finished last, whose thread is still awake', async () => {
    pool = createPool({ size: 2, queueMax: 4 })
    await pool.load(await arith())
    const first = await pool.run('arith', arithFeeds(), { timeoutMs: ENOUGH_MS })
    const next: number[] = []
    for (let i = 0; i < 4; i++) next.push((await pool.run('arith', arithFeeds(), { timeoutMs: ENOUGH_MS })).workerId)
    expect(next).toEqual([first.workerId, first.workerId, first.workerId, first.workerId])
  })

  it('removes a timed-out or aborted request from the queue without touching the workers', async () => {
    pool = createPool({ size: 1, queueMax: 4 })
    await pool.load(await slow())
    const before = pool.stats().workers.map((w) => w.id)
    const running = pool.run('slow', slowFeeds(), { timeoutMs: 2000 })
    const queued = await pool.run('slow', slowFeeds(1n), { timeoutMs: 200 }).catch((e) => e)
    expect(queued).toBeInstanceOf(TimeoutError)
    expect(queued.details.stage).toBe('queued')
    const controller = new AbortController()
    const aborted = pool.run('slow', slowFeeds(1n), { timeoutMs: ENOUGH_MS, signal: controller.signal }).catch((e) => e)
    controller.abort()
    expect((await aborted).name).toBe('AbortError')
    expect(pool.stats()).toMatchObject({ queueDepth: 0, discarded: 0, terminations: 0, abandoned: 0 })
    expect(pool.stats().workers.map((w) => [w.id, w.state])).toEqual(before.map((id) => [id, 'busy']))
    await expect(running).rejects.toBeInstanceOf(TimeoutError)
  })

  for (const backend of ['wasm', 'cpu']) {
    it(`keeps the worker of a run whose caller gave up when the run finishes within its grace (${backend})`, async () => {
      // A grace no run here can outlive: what is tested is that the worker is kept, not how fast it finishes.
      pool = createPool({ size: 1, queueMax: 4, terminationGraceMinMs: 600_000 })
      await pool.load({ ...(await slow()), backends: [backend] })
      await pool.load({ ...(await arith()), backends: [backend] })
      const before = pool.stats().workers.map((w) => w.id)
      const controller = new AbortController()
      const running = pool.run('slow', slowFeeds(200_000n), { timeoutMs: ENOUGH_MS, signal: controller.signal, owner: 'a' })
      await until(() => pool!.stats().workers[0]!.state === 'busy')
      controller.abort()
      // The caller hears at once; its run goes on in the same worker, whose answer is then dropped.
      expect((await running.catch((e) => e)).name).toBe('AbortError')
      const timedOut = await pool.run('arith', arithFeeds(), { timeoutMs: 1 }).catch((e) => e)
      await until(() => pool!.stats().discarded >= 1 && pool!.stats().workers[0]!.state === 'idle')
      // A 1 ms budget on a short run either met its (raised) floor or timed out and finished in its grace.
      if (timedOut instanceof Error) expect(timedOut).toBeInstanceOf(TimeoutError)
      else expect(timedOut.outputs.y!.data[0]).toBe(3)
      expect(pool.stats()).toMatchObject({ terminations: 0, abandoned: 0 })
      expect(pool.stats().workers.map((w) => w.id)).toEqual(before)
      const next = await pool.run('arith', arithFeeds(), { timeoutMs: ENOUGH_MS })
      expect(next.workerId).toBe(before[0]!)
    })
  }

  it('never replaces a worker for a flood of 1 ms timeouts on a short model', async () => {
    pool = createPool({ size: 2, queueMax: 64, terminationGraceMinMs: 600_000 })
    await pool.load(await arith())
    const before = pool.stats().workers.map((w) => w.id)
    const outcomes = await Promise.all(
      Array.from({ length: 40 }, () =>
        pool!.run('arith', arithFeeds(), { timeoutMs: 1, owner: 'flood' }).then(
          () => 'ok',
          (e) => e.name,
        ),
      ),
    )
    expect(new Set(outcomes).size).toBeLessThanOrEqual(2)
    expect(outcomes.every((o) => o === 'ok' || o === 'TimeoutError')).toBe(true)
    await until(() => pool!.stats().workers.every((w) => w.state === 'idle'))
    expect(pool.stats().terminations).toBe(0)
    expect(pool.stats().workers.map((w) => w.id)).toEqual(before)
  })

  it('terminates and replaces the worker of a run still going past its timeout and grace (wasm)', async () => {
    pool = createPool({ size: 1, queueMax: 4 })
    await pool.load(await slow())
    const before = pool.stats().workers.map((w) => w.id)
    const error = await pool.run('slow', slowFeeds(), { timeoutMs: 300 }).catch((e) => e)
    expect(error).toBeInstanceOf(TimeoutError)
    await until(() => pool!.stats().terminations === 1)
    await until(() => pool!.stats().workers.length === 1 && pool!.stats().workers[0]!.state === 'idle')
    expect(pool.stats().workers[0]!.id).not.toBe(before[0]!)
    expect(pool.stats()).toMatchObject({ discarded: 0, abandoned: 0 })
    expect((await pool.run('slow', slowFeeds(1n), { timeoutMs: ENOUGH_MS })).outputs.h!.dims).toEqual([1, 64])
  })

  it('answers 429 to a key past its budget of terminations, and only to that key', async () => {
    pool = createPool({ size: 2, queueMax: 4, terminationsPerKeyPerMin: 1 })
    await pool.load(await slow())
    await pool.load(await arith())
    await expect(pool.run('slow', slowFeeds(), { timeoutMs: 300, owner: 'greedy' })).rejects.toBeInstanceOf(TimeoutError)
    await until(() => pool!.stats().terminations === 1)
    const refused = await pool.run('arith', arithFeeds(), { timeoutMs: ENOUGH_MS, owner: 'greedy' }).catch((e) => e)
    expect(refused).toBeInstanceOf(RateLimitedError)
    expect(refused.status).toBe(429)
    expect(Number(refused.headers['Retry-After'])).toBeGreaterThan(0)
    expect(Number(refused.headers['Retry-After'])).toBeLessThanOrEqual(60)
    expect(refused.message).toContain('terminate 1 inference workers within a minute')
    const other = await pool.run('arith', arithFeeds(), { timeoutMs: ENOUGH_MS, owner: 'polite' })
    expect(other.outputs.y!.data[0]).toBe(3)
    expect((await pool.run('arith', arithFeeds(), { timeoutMs: ENOUGH_MS })).outputs.y!.data[0]).toBe(3)
  })

  it('stops a run when the caller aborts', async () => {
    pool = createPool({ size: 1, queueMax: 4 })
    await pool.load(await slow())
    await pool.load(await arith())
    const controller = new AbortController()
    const running = pool.run('slow', slowFeeds(), { timeoutMs: ENOUGH_MS, signal: controller.signal })
    const queued = pool.run('slow', slowFeeds(), { timeoutMs: ENOUGH_MS, signal: controller.signal })
    setTimeout(() => controller.abort(), 150)
    const errors = await Promise.all([running.catch((e) => e), queued.catch((e) => e)])
    expect(errors.map((e) => e.name)).toEqual(['AbortError', 'AbortError'])
    const already = await pool.run('arith', arithFeeds(), { timeoutMs: 1000, signal: AbortSignal.abort() }).catch((e) => e)
    expect(already.name).toBe('AbortError')
    expect((await pool.run('arith', arithFeeds(), { timeoutMs: ENOUGH_MS })).outputs.y!.data[0]).toBe(3)
    expect(pool.stats().workers).toHaveLength(1)
  })

  it('recycles a worker after N runs without failing requests in flight', async () => {
    pool = createPool({ size: 2, queueMax: 64, recycleAfter: 3 })
    await pool.load(await arith())
    const before = pool.stats().workers.map((w) => w.id)
    const results = await Promise.all(
      Array.from({ length: 16 }, (_, i) => pool!.run('arith', arithFeeds([i, 0, 0, 0]), { timeoutMs: ENOUGH_MS })),
    )
    expect(results.map((r) => r.outputs.y!.data[0])).toEqual(Array.from({ length: 16 }, (_, i) => 2 * i + 1))
    await until(() => pool!.stats().workers.length === 2 && pool!.stats().workers.every((w) => w.state === 'idle'))
    // Whichever way the 16 runs spread, one of the two first workers reached 3 runs before any replacement existed.
    const ids = pool.stats().workers.map((w) => w.id)
    expect(ids.filter((id) => before.includes(id)).length).toBeLessThan(2)
    const more = await Promise.all([1, 2].map(() => pool!.run('arith', arithFeeds(), { timeoutMs: ENOUGH_MS })))
    expect(more.map((r) => r.outputs.y!.data[0])).toEqual([3, 3])
  })

  it('recycles a worker whose heap passes the limit', async () => {
    pool = createPool({ size: 1, queueMax: 4, maxHeapMb: 1 })
    await pool.load(await arith())
    const first = await pool.run('arith', arithFeeds(), { timeoutMs: ENOUGH_MS })
    await until(() => pool!.stats().workers.length === 1 && pool!.stats().workers[0]!.id !== first.workerId)
    const second = await pool.run('arith', arithFeeds(), { timeoutMs: ENOUGH_MS })
    expect(second.workerId).not.toBe(first.workerId)
  })

  it('fails the requests of a crashed worker as transient and replaces it', async () => {
    pool = createPool({ size: 1, queueMax: 4, workerUrl: new URL('./crashy-worker.ts', import.meta.url) })
    await pool.load(await arith())
    const error = await pool.run('arith', arithFeeds([666, 0, 0, 0]), { timeoutMs: ENOUGH_MS }).catch((e) => e)
    expect(error).toBeInstanceOf(ServiceUnavailableError)
    expect(error.message).toContain('retry')
    const next = await pool.run('arith', arithFeeds(), { timeoutMs: ENOUGH_MS })
    expect(next.outputs.y!.data[0]).toBe(3)
    expect(pool.stats().workers).toHaveLength(1)
  })

  it('fails a load, rather than waiting for ever, when its workers die before they are up', async () => {
    pool = createPool({ size: 1, queueMax: 4, workerUrl: new URL('./broken-worker.ts', import.meta.url) })
    const report = await pool.load(await arith())
    expect(report.ok).toBe(false)
    expect(report.ok ? '' : report.reason).toContain('the worker stopped while loading')
  })

  it('reports a model that cannot load and keeps serving the others', async () => {
    pool = createPool({ size: 1, queueMax: 4 })
    const report = await pool.load({ name: 'corrupt', bytes: await modelBytes(`${FIXTURES}corrupt/model.onnx`), backends: ['wasm'] })
    expect(report.ok).toBe(false)
    expect(report.ok ? '' : report.reason).toContain('protobuf parsing failed')
    await expect(pool.run('corrupt', arithFeeds(), { timeoutMs: 1000 })).rejects.toBeInstanceOf(ServiceUnavailableError)
  })
})
