/**
 * `bun run bench`: every benchmark in turn, each in a fresh process (so one's memory and threads
 * never colour the next); `bun bench/index.ts <name>` runs one here. A benchmark is a module of
 * bench/ exporting `bench<Name>()`; the VAD one lives in bench/vad.ts and is skipped until it exists.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from './lib'

const BENCHMARKS = {
  stack: { file: 'stack.ts', run: 'benchStack' },
  inference: { file: 'inference.ts', run: 'benchInference' },
  backends: { file: 'backends.ts', run: 'benchBackends' },
  soak: { file: 'soak.ts', run: 'benchSoak' },
  jobs: { file: 'jobs.ts', run: 'benchJobs' },
  vad: { file: 'vad.ts', run: 'benchVad' },
  churn: { file: 'churn.ts', run: 'benchChurn' },
  hop: { file: 'hop.ts', run: 'benchHop' },
  batching: { file: 'batching.ts', run: 'benchBatching' },
  oip: { file: 'oip.ts', run: 'benchOip' },
  repository: { file: 'repository.ts', run: 'benchRepository' },
  memory: { file: 'memory.ts', run: 'benchMemory' },
} as const
type Name = keyof typeof BENCHMARKS

// Bun's allocator reads MIMALLOC_PURGE_DELAY once, as it starts: every benchmark, and every server it starts (they
// inherit this environment), runs with the setting of the image and of `bun run start` (README, "Memory allocator")
// unless the caller chose one (`MIMALLOC_PURGE_DELAY=100` is mimalloc's own default).
if (process.env.MIMALLOC_PURGE_DELAY === undefined) {
  const again = Bun.spawn([process.execPath, ...process.argv.slice(1)], {
    env: { ...process.env, MIMALLOC_PURGE_DELAY: '-1' },
    stdio: ['inherit', 'inherit', 'inherit'],
  })
  process.exit(await again.exited)
}

const isName = (value: string): value is Name => Object.hasOwn(BENCHMARKS, value)
const path = (name: Name) => join(ROOT, 'bench', BENCHMARKS[name].file)

async function runHere(name: Name): Promise<void> {
  if (!existsSync(path(name))) {
    console.log(`${name}: skipped (bench/${BENCHMARKS[name].file} does not exist yet)`)
    return
  }
  const module = (await import(path(name))) as Record<string, unknown>
  const run = module[BENCHMARKS[name].run]
  if (typeof run !== 'function') throw new Error(`bench/${BENCHMARKS[name].file} does not export ${BENCHMARKS[name].run}()`)
  await run()
}

const chosen = process.argv[2]
if (chosen !== undefined) {
  if (!isName(chosen)) {
    console.error(`usage: bun bench/index.ts [${Object.keys(BENCHMARKS).join('|')}]`)
    process.exit(2)
  }
  console.log(`(Bun's allocator: MIMALLOC_PURGE_DELAY=${process.env.MIMALLOC_PURGE_DELAY})`)
  await runHere(chosen)
  // Pools, timers and sockets a benchmark leaves open must not keep the run alive.
  process.exit(0)
}

const failed: string[] = []
for (const name of Object.keys(BENCHMARKS) as Name[]) {
  console.log(`\n=== ${name}`)
  const child = Bun.spawn(['bun', join(ROOT, 'bench/index.ts'), name], { cwd: ROOT, stdout: 'inherit', stderr: 'inherit' })
  if ((await child.exited) !== 0) failed.push(name)
}
if (failed.length) {
  console.error(`\nbenchmarks that failed: ${failed.join(', ')}`)
  process.exit(1)
}
