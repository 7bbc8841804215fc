/**
 * Version switches under load (issue 11 §3). vireo runs in a child process pinned to core 0 on a model folder
 * holding Silero as `silero-vad/1` (and `silero-vad/2` half of the time); the load tool, pinned to core 1,
 * drives `POST /api/v1/models/silero-vad/infer` (no version named) in alternating rounds: steady (nothing
 * happens) and switching (an admin load every REPO_SWITCH_EVERY_MS: version 2 added → requests switch to it; version 2 removed
 * → back to 1; the same versions reloaded). Printed: requests that failed while switching (goal 0: every answer
 * not 2xx and every socket error counts), the switches made, how long a load took, and throughput switching ÷
 * steady.
 *
 *   bun bench/index.ts repository     (REPO_ROUNDS=3 REPO_SECONDS=5 REPO_CONNECTIONS=8 REPO_SWITCH_EVERY_MS=1000)
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SILERO_FRAME, SILERO_STATE } from '../src/inference/vad-batch'
import { benchKey, envInt, fmt, goal, load, loadToolNote, median, productionEnv, ROOT, startServer } from './lib'

const frame = JSON.stringify({
  inputs: [
    {
      name: 'input',
      shape: [1, SILERO_FRAME],
      datatype: 'FP32',
      data: Array.from({ length: SILERO_FRAME }, (_, i) => Math.sin(i / 9) / 3),
    },
    { name: 'state', shape: [2, 1, 128], datatype: 'FP32', data: new Array(SILERO_STATE).fill(0) },
    { name: 'sr', shape: [], datatype: 'INT64', data: [16000] },
  ],
})

async function placeSilero(root: string, version: string): Promise<void> {
  const dir = join(root, 'silero-vad', version)
  await cp(join(ROOT, 'models/silero-vad'), dir, { recursive: true })
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'))
  await writeFile(join(dir, 'manifest.json'), JSON.stringify({ ...manifest, version }))
}

export async function benchRepository(): Promise<void> {
  const rounds = envInt('REPO_ROUNDS', 3)
  const seconds = envInt('REPO_SECONDS', 5)
  const connections = envInt('REPO_CONNECTIONS', 8)
  const everyMs = envInt('REPO_SWITCH_EVERY_MS', 1000)
  const root = await mkdtemp(join(tmpdir(), 'vireo-bench-repository-'))
  await placeSilero(root, '1')
  const admin = benchKey()
  // This process (and the load tool it starts) on core 1, the server and its workers on core 0.
  Bun.spawnSync(['taskset', '-p', '-c', '1', String(process.pid)])
  const server = await startServer('app', productionEnv(admin, { MODELS_DIR: root, INFERENCE_WORKERS: '2' }))
  const base = server.url
  const asAdmin = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }
  const url = new URL('/api/v1/models/silero-vad/infer', base).href
  const failedLoads: string[] = []
  const loadModel = async () => {
    const started = performance.now()
    const response = await fetch(new URL('/v2/repository/models/silero-vad/load', base), { method: 'POST', headers: asAdmin })
    if (response.status !== 200) failedLoads.push(`${response.status} ${await response.text()}`)
    return performance.now() - started
  }
  const drive = () => load({ url, connections, seconds, method: 'POST', headers: asAdmin, body: frame })
  try {
    // Warm-up: WASM tiers up and the pool's run-time windows fill before anything is measured.
    await load({ url, connections, seconds: 2, method: 'POST', headers: asAdmin, body: frame })
    const steady: number[] = []
    const switching: number[] = []
    const loadMs: number[] = []
    let requests = 0
    let failed = 0
    let steadyFailed = 0
    for (let round = 0; round < rounds; round++) {
      const quiet = await drive()
      steady.push(quiet.rps)
      steadyFailed += quiet.bad
      let done = false
      const switches = (async () => {
        for (let step = 0; !done; step++) {
          if (step % 3 === 0) await placeSilero(root, '2')
          if (step % 3 === 1) await rm(join(root, 'silero-vad', '2'), { recursive: true })
          loadMs.push(await loadModel())
          await Bun.sleep(everyMs)
        }
      })()
      const busy = await drive()
      done = true
      await switches
      switching.push(busy.rps)
      requests += busy.requests
      failed += busy.bad
    }
    console.log(
      `repository: ${rounds} rounds of ${seconds} s steady then ${seconds} s switching, ${connections} connections; ${loadToolNote()}`,
    )
    console.log(`load average: ${(await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')}`)
    console.log(
      `switches (loads) while switching: ${loadMs.length}, one every ${everyMs} ms after the last; a load took ${fmt(median(loadMs), 1)} ms (median)`,
    )
    console.log(`loads that failed: ${failedLoads.length}${failedLoads.length ? ` (first: ${failedLoads[0]!.slice(0, 300)})` : ''}`)
    console.log(`requests while switching: ${requests}, failed: ${failed}; failed while steady: ${steadyFailed}`)
    console.log(goal('requests that failed during version switches', failed, '<=', 0, 0))
    console.log(`throughput switching / steady (best rounds): ${fmt(Math.max(...switching) / Math.max(...steady), 2)}`)
  } finally {
    await server.stop()
    await rm(root, { recursive: true, force: true })
  }
}
