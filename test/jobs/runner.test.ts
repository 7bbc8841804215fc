import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { ServiceUnavailableError, ValidationError } from '../../src/errors'
import { createQueue, type Job } from '../../src/jobs/queue'
import { createRunner, type Executor } from '../../src/jobs/runner'
import type { Principal } from '../../src/keys/service'
import { createKey, createTestApp, type TestApp, until } from '../helpers'

let t: TestApp
let principal: Principal
beforeAll(async () => {
  t = await createTestApp({ JOBS_CONCURRENCY: '0' })
  principal = (await t.deps.keys.authenticate(await createKey(t, ['jobs'])))!
})
afterAll(() => t.close())

function queue(options: { now?: () => number; random?: () => number } = {}) {
  return createQueue({
    db: t.deps.database.db,
    leaseMs: 1000,
    backoff: { baseMs: 40, maxMs: 1000 },
    idempotencyTtlMs: 86_400_000,
    ...options,
  })
}

function runner(execute: Executor, q = queue(), extra: { owner?: string } = {}) {
  return createRunner({
    queue: q,
    execute,
    logger: t.deps.logger,
    concurrency: 3,
    pollMs: 20,
    leaseMs: 1000,
    retentionMs: 604_800_000,
    ...extra,
  })
}

async function submit(n: number, parameters: Record<string, unknown> = {}, maxAttempts = 3): Promise<string[]> {
  const ids: string[] = []
  for (let i = 0; i < n; i++) {
    const { job } = await t.deps.queue.submit({
      ownerKeyId: principal.id,
      task: 'infer',
      model: 'arith',
      input: { n: i },
      parameters,
      maxAttempts,
    })
    ids.push(job.id)
  }
  return ids
}

async function settled(ids: string[], done: (job: Job) => boolean): Promise<Job[]> {
  let jobs: Job[] = []
  await until(async () => {
    jobs = await Promise.all(ids.map((id) => t.deps.queue.get(id)))
    return jobs.every(done)
  }).catch(() => {
    throw new Error(`timed out: ${jobs.map((j) => j.status).join(',')}`)
  })
  return jobs
}

const logged = (msg: string) => t.logs.lines.some((l) => l.msg === msg)

describe('runner', () => {
  it('runs each job once and stores its result', async () => {
    const ids = await submit(6, { case: 'success' })
    const runs = new Map<string, number>()
    const r = runner(async (job) => {
      runs.set(job.id, (runs.get(job.id) ?? 0) + 1)
      return { doubled: (job.input as { n: number }).n * 2 }
    })
    r.start()
    const jobs = await settled(ids, (j) => j.status === 'succeeded')
    await r.stop()
    expect(jobs.map((j) => j.result)).toEqual([0, 2, 4, 6, 8, 10].map((d) => ({ doubled: d })))
    for (const id of ids) expect(runs.get(id)).toBe(1)
    for (const job of jobs) {
      expect(job.attempts).toBe(1)
      expect(job.leaseOwner).toBeNull()
      expect(job.finishedAt).not.toBeNull()
    }
  })

  it('retries a transient failure with growing delays until dead', async () => {
    const [id] = await submit(1, { case: 'always-fails' }, 4)
    const attemptsAt: number[] = []
    const r = runner(
      async (job) => {
        if (job.id === id) attemptsAt.push(Date.now())
        throw new ServiceUnavailableError('worker crashed')
      },
      queue({ random: () => 0.999 }),
    )
    r.start()
    const [job] = await settled([id!], (j) => j.status === 'dead')
    await r.stop()
    expect(job!.attempts).toBe(4)
    expect(job!.error!.history.map((h) => h.attempt)).toEqual([1, 2, 3, 4])
    expect(job!.error!.code).toBe('SERVICE_UNAVAILABLE')
    const gaps = attemptsAt.slice(1).map((at, i) => at - attemptsAt[i]!)
    expect(gaps).toHaveLength(3)
    // Backoff ceilings 40, 80, 160 ms (random 0.999): each wait at least its backoff, and they grow.
    expect(gaps[0]!).toBeGreaterThanOrEqual(39)
    expect(gaps[1]!).toBeGreaterThanOrEqual(79)
    expect(gaps[2]!).toBeGreaterThanOrEqual(159)
  })

  it('fails a permanent failure at once', async () => {
    const [id] = await submit(1, { case: 'bad-input' })
    const r = runner(async () => {
      throw new ValidationError('shape mismatch')
    })
    r.start()
    const [job] = await settled([id!], (j) => j.status === 'failed')
    await r.stop()
    expect(job!.attempts).toBe(1)
    expect(job!.error).toMatchObject({ code: 'VALIDATION_ERROR', message: 'shape mismatch' })
  })

  it('stops a running job when it is cancelled', async () => {
    const [id] = await submit(1, { case: 'cancel' })
    let aborted = false
    let started!: () => void
    const running = new Promise<void>((resolve) => {
      started = resolve
    })
    const r = runner(
      (_job, signal) =>
        new Promise((_resolve, reject) => {
          started()
          signal.addEventListener('abort', () => {
            aborted = true
            reject(signal.reason)
          })
        }),
    )
    r.start()
    await running
    await t.deps.queue.cancel(id!)
    r.abort(id!)
    await until(() => aborted && r.active === 0)
    expect(aborted).toBe(true)
    expect(r.active).toBe(0)
    expect((await t.deps.queue.get(id!)).status).toBe('cancelled')
    await r.stop()
  })

  it('notices a cancellation made elsewhere at its next lease renewal', async () => {
    const [id] = await submit(1, { case: 'cancel-elsewhere' })
    let aborted = false
    const r = runner(
      (_job, signal) =>
        new Promise((_resolve, reject) => {
          signal.addEventListener('abort', () => {
            aborted = true
            reject(signal.reason)
          })
        }),
    )
    r.start()
    await settled([id!], (j) => j.status === 'running')
    await t.deps.queue.cancel(id!)
    await until(() => aborted)
    expect(aborted).toBe(true)
    await r.stop()
  })

  it('hands running jobs back on shutdown without counting the attempt', async () => {
    const [id] = await submit(1, { case: 'shutdown' })
    const r = runner((_job, signal) => new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason))))
    r.start()
    await settled([id!], (j) => j.status === 'running')
    await r.stop()
    const job = await t.deps.queue.get(id!)
    expect(job.status).toBe('queued')
    expect(job.attempts).toBe(0)
    expect(job.leaseOwner).toBeNull()
  })

  it('reclaims a job whose lease expired (its runner died) and counts the attempt', async () => {
    const [id] = await submit(1, { case: 'lease' })
    const claimed = (await queue().claim('runner-that-dies', 50)).filter((j) => j.id === id)
    expect(claimed).toHaveLength(1)
    const later = () => Date.now() + 5_000
    const r = runner(async () => ({ ok: true }), queue({ now: later }))
    r.start()
    const [job] = await settled([id!], (j) => j.status === 'succeeded')
    await r.stop()
    expect(job!.attempts).toBe(2)
  })

  it('keeps going when the database fails under it, logging each failure', async () => {
    const [id] = await submit(1, { case: 'flaky-db' })
    const real = queue()
    let claimFailures = 1
    const flaky: typeof real = {
      ...real,
      claim: (owner, limit) => (claimFailures-- > 0 ? Promise.reject(new Error('connection reset')) : real.claim(owner, limit)),
      renew: () => Promise.reject(new Error('connection reset')),
      release: () => Promise.reject(new Error('connection reset')),
      purge: () => Promise.reject(new Error('connection reset')),
    }
    const r = createRunner({
      queue: flaky,
      execute: (_job, signal) => new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
      logger: t.deps.logger,
      concurrency: 1,
      pollMs: 20,
      leaseMs: 300,
      retentionMs: 604_800_000,
    })
    r.start()
    await settled([id!], (j) => j.status === 'running')
    await until(() => logged('lease renewal failed; will retry') && logged('job purge failed'))
    await r.stop()
    await until(() => logged('could not hand the job back; its lease will expire'))
    const messages = t.logs.lines.map((l) => l.msg)
    for (const msg of ['job claim failed; retrying after the poll interval', 'lease renewal failed; will retry', 'job purge failed'])
      expect(messages).toContain(msg)
    expect(messages).toContain('could not hand the job back; its lease will expire')
    await t.deps.queue.cancel(id!)
  })

  it('logs how many finished jobs it purged', async () => {
    const [id] = await submit(1, { case: 'purge-log' })
    await t.deps.queue.cancel(id!)
    const r = runner(async () => ({}), queue({ now: () => Date.now() + 8 * 86_400_000 }))
    r.start()
    await until(() => logged('purged finished jobs past retention'))
    await r.stop()
    expect(t.logs.lines.some((l) => l.msg === 'purged finished jobs past retention' && (l.purged as number) >= 1)).toBe(true)
  })

  it('purges finished jobs past retention', async () => {
    const [id] = await submit(1, { case: 'purge' })
    await t.deps.queue.cancel(id!)
    expect(await queue({ now: () => Date.now() + 8 * 86_400_000 }).purge(7 * 86_400_000)).toBeGreaterThanOrEqual(1)
    await expect(t.deps.queue.get(id!)).rejects.toThrow('No job')
  })
})
