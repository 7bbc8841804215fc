/**
 * Job throughput end to end on a real PostgreSQL: `arith` inference jobs (test/fixtures/models) run
 * by one and then two `bun run runner` processes (src/job-runner.ts, default settings), on a fresh
 * database made for this run and dropped after it. For each: a backlog of JOBS_N jobs inserted at
 * once and drained (jobs/s from the first claim to the last finish), then JOBS_PACED_N jobs submitted
 * one by one at JOBS_PACED_PER_S to an idle queue, whose median started_at - created_at is the
 * submit-to-claim time a client sees (dominated by JOBS_POLL_MS, as separate runners are not woken).
 *
 *   bun bench/index.ts jobs     (JOBS_PG_URL=postgres://postgres@127.0.0.1:5432/postgres JOBS_N=1000 JOBS_PACED_N=100 JOBS_PACED_PER_S=20)
 */
import { inArray, sql } from 'drizzle-orm'
import postgres from 'postgres'
import { loadConfig } from '../src/config'
import { openDatabase } from '../src/db/client'
import { jobs } from '../src/db/schema'
import { createQueue, type NewJob, rowsOf } from '../src/jobs/queue'
import { createKeyService } from '../src/keys/service'
import { benchKey, col, envInt, productionEnv, ROOT, spawnUntil } from './lib'

const ARITH_INPUT = {
  inputs: [
    { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] },
    { name: 'n', shape: [1, 2], datatype: 'INT64', data: [1, 2] },
  ],
}

interface Runner {
  stop(): Promise<void>
}

/** `bun run runner` in a child process; resolves once it logs that it is running. */
async function startRunner(env: Record<string, string>): Promise<Runner> {
  return spawnUntil(['bun', `${ROOT}src/job-runner.ts`], env, (line) => line.includes('"job runner running"'))
}

interface Phase {
  runners: number
  jobsPerS: number
  backlogClaimMs: number
  pacedClaimMs: number
  failed: number
}

export async function benchJobs(): Promise<void> {
  const total = envInt('JOBS_N', 1000)
  const pacedN = envInt('JOBS_PACED_N', 100)
  const pacedPerS = envInt('JOBS_PACED_PER_S', 20)
  const adminUrl = process.env.JOBS_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
  const name = `vireo_bench_${Date.now()}_${process.pid}`
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database ${name}`)
  const key = benchKey()
  const env = productionEnv(key, {
    DATABASE_URL: url.href,
    MODELS_DIR: 'test/fixtures/models',
    INFERENCE_WORKERS: '1',
    JOBS_CONCURRENCY: '',
  })
  const config = loadConfig(env)
  const database = await openDatabase(config)
  try {
    await database.migrate()
    const { db } = database
    const keys = createKeyService({ db, cacheTtlMs: config.AUTH_CACHE_TTL_MS })
    const owner = await keys.create({ name: 'bench jobs', scopes: ['jobs'] })
    const queue = createQueue({
      db,
      leaseMs: config.JOBS_LEASE_MS,
      backoff: { baseMs: config.JOBS_BACKOFF_BASE_MS, maxMs: config.JOBS_BACKOFF_MAX_MS },
      idempotencyTtlMs: config.JOBS_IDEMPOTENCY_TTL_MS,
    })
    const job: NewJob = { ownerKeyId: owner.id, task: 'infer', model: 'arith', input: ARITH_INPUT, parameters: {}, maxAttempts: 5 }

    const waitFinished = async (ids: string[] | undefined, count: number) => {
      const deadline = Date.now() + 300_000
      for (;;) {
        const [row] = rowsOf<{ n: number }>(
          await db.execute(
            sql`select count(*)::int as n from ${jobs} where status in ('succeeded', 'failed', 'dead', 'cancelled')${
              ids ? sql` and ${inArray(jobs.id, ids)}` : sql``
            }`,
          ),
        )
        if (Number(row?.n) >= count) return
        if (Date.now() > deadline) throw new Error(`jobs did not finish in 300 s (${row?.n} of ${count})`)
        await Bun.sleep(50)
      }
    }
    const claimMedianMs = async (ids?: string[]) => {
      const [row] = rowsOf<{ ms: number }>(
        await db.execute(
          sql`select percentile_cont(0.5) within group (order by extract(epoch from started_at - created_at)) * 1000 as ms
              from ${jobs} where started_at is not null${ids ? sql` and ${inArray(jobs.id, ids)}` : sql``}`,
        ),
      )
      return Number(row?.ms)
    }

    const phases: Phase[] = []
    for (const count of [1, 2]) {
      await db.delete(jobs)
      const runners = await Promise.all(Array.from({ length: count }, () => startRunner(env)))
      try {
        await db.insert(jobs).values(Array.from({ length: total }, () => job))
        await waitFinished(undefined, total)
        const [stats] = rowsOf<{ seconds: number; failed: number }>(
          await db.execute(
            sql`select extract(epoch from max(finished_at) - min(started_at)) as seconds,
                       count(*) filter (where status <> 'succeeded')::int as failed from ${jobs}`,
          ),
        )
        const backlogClaimMs = await claimMedianMs()

        const ids: string[] = []
        const started = performance.now()
        for (let i = 0; i < pacedN; i++) {
          const due = started + (i * 1000) / pacedPerS
          if (due > performance.now()) await Bun.sleep(due - performance.now())
          ids.push((await queue.submit(job)).job.id)
        }
        await waitFinished(ids, pacedN)
        phases.push({
          runners: count,
          jobsPerS: total / Number(stats!.seconds),
          backlogClaimMs,
          pacedClaimMs: await claimMedianMs(ids),
          failed: Number(stats!.failed),
        })
      } finally {
        await Promise.all(runners.map((r) => r.stop()))
      }
    }

    console.log(
      `jobs: arith inference jobs on PostgreSQL (fresh database ${name}), runners = \`bun run runner\` processes, JOBS_CONCURRENCY=${config.JOBS_CONCURRENCY} JOBS_POLL_MS=${config.JOBS_POLL_MS} each`,
    )
    console.log(
      `  backlog: ${total} jobs inserted at once, jobs/s from first claim to last finish; paced: ${pacedN} jobs submitted at ${pacedPerS}/s to an idle queue`,
    )
    console.log(
      `  ${'runners'.padEnd(9)}${col('jobs/s', 8)}${col('claim ms (backlog)', 20)}${col('claim ms (paced)', 18)}${col('not ok', 8)}`,
    )
    for (const p of phases) {
      console.log(
        `  ${String(p.runners).padEnd(9)}${col(p.jobsPerS, 8, 1)}${col(p.backlogClaimMs, 20, 1)}${col(p.pacedClaimMs, 18, 1)}${col(p.failed, 8)}`,
      )
    }
    const [one, two] = phases
    console.log(`  2 runners / 1 runner, jobs/s: ${(two!.jobsPerS / one!.jobsPerS).toFixed(2)}`)
    console.log(
      `  median submit -> claim (started_at - created_at), paced: ${one!.pacedClaimMs.toFixed(1)} ms with 1 runner, ${two!.pacedClaimMs.toFixed(1)} ms with 2 (a backlog's median is mostly waiting in line)`,
    )
  } finally {
    await database.close()
    await admin.unsafe(`drop database if exists ${name} with (force)`)
    await admin.end()
  }
}
