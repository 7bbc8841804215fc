import { describe, expect, it } from 'bun:test'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openDatabase } from '../src/db/client'
import { createKeyService } from '../src/keys/service'
import { testConfig } from './helpers'

const env = (dir: string) => ({ PATH: process.env.PATH ?? '', NODE_ENV: 'test', PGLITE_DIR: dir })

describe('bun run keys:create', () => {
  it('creates a working key and prints it once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vireo-cli-'))
    const run = Bun.spawnSync(['bun', 'run', 'keys:create', '--name', 'ops key', '--scopes', 'inference,jobs'], {
      env: env(dir),
      stdout: 'pipe',
      stderr: 'pipe',
    })
    expect(run.exitCode).toBe(0)
    const out = run.stdout.toString()
    const key = /key \(shown once\): (\S+)/.exec(out)![1]!
    expect(JSON.parse(out.split('\n')[0]!)).toMatchObject({ name: 'ops key', scopes: ['inference', 'jobs'] })
    const database = await openDatabase({ ...testConfig(), DATABASE_URL: undefined, PGLITE_DIR: dir })
    try {
      const principal = await createKeyService({ db: database.db, cacheTtlMs: 0 }).authenticate(key)
      expect(principal?.scopes).toEqual(['inference', 'jobs'])
    } finally {
      await database.close()
    }
  })

  it('explains its usage when the scopes are wrong', () => {
    const run = Bun.spawnSync(['bun', 'run', 'keys:create', '--name', 'x', '--scopes', 'root'], {
      env: env(mkdtempSync(join(tmpdir(), 'vireo-cli-'))),
      stderr: 'pipe',
    })
    expect(run.exitCode).toBe(2)
    expect(run.stderr.toString()).toContain('unknown scopes: root')
  })
})

describe('bun run runner', () => {
  it('refuses to start with JOBS_CONCURRENCY=0', () => {
    const run = Bun.spawnSync(['bun', 'run', 'runner'], {
      env: { ...env(mkdtempSync(join(tmpdir(), 'vireo-w-'))), JOBS_CONCURRENCY: '0' },
      stderr: 'pipe',
    })
    expect(run.exitCode).toBe(1)
    expect(run.stderr.toString()).toContain('JOBS_CONCURRENCY is 0')
  })

  it('runs a queued job through the registry and stops cleanly on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vireo-w-'))
    const config = testConfig({ DATABASE_URL: '' })
    const setup = await openDatabase({ ...config, DATABASE_URL: undefined, PGLITE_DIR: dir })
    await setup.migrate()
    const keys = createKeyService({ db: setup.db, cacheTtlMs: 0 })
    const owner = (await keys.authenticate((await keys.create({ name: 'w', scopes: ['jobs'] })).key))!
    const { createQueue } = await import('../src/jobs/queue')
    const queue = createQueue({ db: setup.db, leaseMs: 30000, backoff: { baseMs: 100, maxMs: 1000 }, idempotencyTtlMs: 86_400_000 })
    const x = { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }
    const n = { name: 'n', shape: [1, 2], datatype: 'INT64', data: [1, 2] }
    const { job } = await queue.submit({
      ownerKeyId: owner.id,
      task: 'infer',
      model: 'arith',
      input: { inputs: [x, n] },
      parameters: {},
      maxAttempts: 3,
    })
    // PGlite is single-process: hand the data folder to the worker.
    await setup.close()
    const runner = Bun.spawn(['bun', 'run', 'runner'], {
      env: { ...env(dir), LOG_LEVEL: 'info', MODELS_DIR: 'test/fixtures/models', INFERENCE_WORKERS: '1', JOBS_POLL_MS: '50' },
      stdout: 'pipe',
      stderr: 'inherit',
    })
    const reader = runner.stdout.getReader()
    let out = ''
    while (!out.includes('"msg":"job runner running"')) {
      const { value, done } = await reader.read()
      if (done) break
      out += new TextDecoder().decode(value)
    }
    await Bun.sleep(1500)
    runner.kill('SIGTERM')
    expect(await runner.exited).toBe(0)
    const check = await openDatabase({ ...config, DATABASE_URL: undefined, PGLITE_DIR: dir })
    try {
      const done = await createQueue({
        db: check.db,
        leaseMs: 30000,
        backoff: { baseMs: 100, maxMs: 1000 },
        idempotencyTtlMs: 86_400_000,
      }).get(job.id)
      expect(done.status).toBe('succeeded')
      expect((done.result as { outputs: { name: string; data: number[] }[] }).outputs.find((o) => o.name === 'y')!.data).toEqual([
        3, 5, 7, 9,
      ])
    } finally {
      await check.close()
    }
  })
})
