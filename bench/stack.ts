/**
 * What the full request stack costs: requests/second on `GET /api/v1/models/arith` with a key through the real app
 * (auth, rate limit, request id, access log to a real sink, metrics, envelope, headers) against a bare Bun.serve
 * answering the same body and headers (R1, goal ≥ 0.6), and against FastAPI/uvicorn answering the same with no
 * auth at all (goal ≥ 20×; skipped with a message where Debian's python3-fastapi and uvicorn are missing). Then each
 * plugin's cost in µs per request, from variants of the app with that one plugin left out, and the cost of Elysia's
 * response-schema check (compiled check vs none vs Elysia's default TypeBox Encode).
 *
 * Every server is its own child process pinned to one core, the load tool (wrk) to another; while one is measured,
 * the others are stopped (SIGSTOP), as their idle timers and threads would take from it. Variants are measured in
 * interleaved rounds, the order rotated each round; the best round of each is kept (the run least disturbed by the
 * other work on this shared machine), the median printed beside it.
 *
 * Two measures of cost per request are printed: wall time (1e6 / req/s) and the server process's own CPU time per
 * request (from /proc), which other work on the machine barely moves.
 *
 *   bun bench/index.ts stack     (STACK_ROUNDS=5 STACK_SECONDS=3 STACK_CONNECTIONS=32 BENCH_SERVER_CPU=0 BENCH_LOAD_CPU=1)
 */
import { join } from 'node:path'
import {
  benchKey,
  type Child,
  col,
  cpuSeconds,
  envInt,
  goal,
  load,
  loadToolNote,
  median,
  PLUGINS,
  pinned,
  pinningNote,
  productionEnv,
  ROOT,
  spawnUntil,
  startServer,
} from './lib'

const PATH = '/api/v1/models/arith'

interface Sample {
  rps: number
  /** Server CPU µs per request. */
  cpuUs: number
}

/** Headers the app sends that a peer repeats verbatim (not the per-response ones). */
function constantHeaders(response: Response): Record<string, string> {
  const skip = new Set(['date', 'content-length', 'x-request-id'])
  return Object.fromEntries([...response.headers].filter(([name]) => !skip.has(name)))
}

/** Debian's python3 with fastapi and uvicorn, or why the peer is skipped. */
function fastapiPython(): string | { skipped: string } {
  for (const python of ['/usr/bin/python3', 'python3']) {
    const probe = Bun.spawnSync([python, '-c', 'import fastapi, uvicorn'], { stderr: 'ignore' })
    if (probe.exitCode === 0) return python
  }
  return { skipped: 'FastAPI peer skipped: python3-fastapi and uvicorn not installed (`apt-get install -y python3-fastapi uvicorn`)' }
}

async function startFastapi(python: string, env: Record<string, string>): Promise<Child> {
  const command = pinned([python, join(ROOT, 'bench/peer-fastapi.py')], 'server')
  const { line, pid, stop } = await spawnUntil(command, env, (l) => l.startsWith('listening '))
  const url = line.slice('listening '.length).trim()
  // The port is printed just before uvicorn binds it.
  for (let attempt = 0; ; attempt++) {
    try {
      await fetch(`${url.replace(/\/$/, '')}${PATH}`)
      break
    } catch (error) {
      if (attempt > 100) throw error
      await Bun.sleep(100)
    }
  }
  return { url, pid, stop }
}

export async function benchStack(): Promise<void> {
  const rounds = envInt('STACK_ROUNDS', 5)
  const seconds = envInt('STACK_SECONDS', 3)
  const connections = envInt('STACK_CONNECTIONS', 32)
  const key = benchKey()
  const headers = { authorization: `Bearer ${key}` }
  const env = productionEnv(key, { MODELS_DIR: 'test/fixtures/models', INFERENCE_WORKERS: '1' })

  const servers = new Map<string, Child>()
  try {
    servers.set('app', await startServer('app', env))
    const reference = await fetch(`${servers.get('app')!.url.replace(/\/$/, '')}${PATH}`, { headers })
    const body = await reference.text()
    if (reference.status !== 200) throw new Error(`the app answered ${reference.status}: ${body}`)
    const peerEnv = { BENCH_BODY: body, BENCH_HEADERS: JSON.stringify(constantHeaders(reference)) }
    servers.set('bare', await startServer('bare', peerEnv))
    const python = fastapiPython()
    if (typeof python === 'string') servers.set('fastapi', await startFastapi(python, peerEnv))
    const variants = ['full', ...PLUGINS.map((p) => `no-${p}`), 'no-response-check', 'encode-response', 'route-only']
    for (const variant of variants) servers.set(variant, await startServer(variant, env))

    const url = (variant: string) => `${servers.get(variant)!.url.replace(/\/$/, '')}${PATH}`
    for (const variant of servers.keys()) {
      const res = await fetch(url(variant), { headers })
      const text = await res.text()
      // Same document everywhere; only load_ms and last_health_check differ between processes.
      if (res.status !== 200 || !text.startsWith('{"success":true,"data":{"name":"arith"'))
        throw new Error(`variant ${variant} answered ${res.status} ${text.slice(0, 200)}`)
      // Warm-up: the JIT reaches its top tier only after many requests.
      await load({ url: url(variant), connections, seconds: 2, headers })
    }

    const names = [...servers.keys()]
    const samples = new Map<string, Sample[]>(names.map((v) => [v, []]))
    let bad = 0
    for (let round = 0; round < rounds; round++) {
      // Rotate the order so no variant always runs first (or right after the noisiest one).
      const order = names.map((_, i) => names[(i + round) % names.length]!)
      for (const variant of order) {
        const { pid } = servers.get(variant)!
        // The other servers share the core; even idle, their timers and threads would take from the one measured.
        const others = [...servers.values()].filter((server) => server.pid !== pid)
        for (const other of others) process.kill(other.pid, 'SIGSTOP')
        const cpuBefore = cpuSeconds(pid)
        const result = await load({ url: url(variant), connections, seconds, headers }).finally(() => {
          for (const other of others) process.kill(other.pid, 'SIGCONT')
        })
        const cpu = cpuSeconds(pid) - cpuBefore
        samples.get(variant)!.push({ rps: result.rps, cpuUs: (cpu * 1e6) / result.requests })
        bad += result.bad
      }
    }
    const rps = (variant: string) => Math.max(...samples.get(variant)!.map((s) => s.rps))
    const medianRps = (variant: string) => median(samples.get(variant)!.map((s) => s.rps))
    const wallUs = (variant: string) => 1e6 / rps(variant)
    const cpuUs = (variant: string) => Math.min(...samples.get(variant)!.map((s) => s.cpuUs))
    const bare = rps('bare')

    console.log(
      `stack: GET ${PATH} with a key, ${connections} connections, ${rounds} interleaved rounds x ${seconds}s per variant, best kept`,
    )
    console.log(`  ${loadToolNote()}; ${pinningNote()}; logs: pino JSON at info to /dev/null; every server its own process`)
    console.log(
      `  ${'variant'.padEnd(20)}${col('req/s', 8)}${col('x bare', 8)}${col('median', 8)}${col('wall µs', 9)}${col('cpu µs', 8)}   req/s per round`,
    )
    for (const variant of names) {
      const perRound = samples
        .get(variant)!
        .map((s) => s.rps.toFixed(0))
        .join(' ')
      console.log(
        `  ${variant.padEnd(20)}${col(rps(variant), 8)}${col(rps(variant) / bare, 8, 2)}${col(medianRps(variant), 8)}${col(wallUs(variant), 9, 1)}${col(cpuUs(variant), 8, 1)}   ${perRound}`,
      )
    }
    if (bad) console.log(`  WARNING: ${bad} non-2xx answers or socket errors during the runs; figures are suspect`)
    console.log(`  ${goal('R1 full stack (real createApp) / bare Bun.serve, req/s:', rps('app') / bare, '>=', 0.6)}`)
    if (typeof python === 'string')
      console.log(`  ${goal('R1 full stack / FastAPI+uvicorn (no auth), req/s:', rps('app') / rps('fastapi'), '>=', 20, 1)}`)
    else console.log(`  ${python.skipped}`)
    console.log(`  same by server CPU per request (bare / app): ${(cpuUs('bare') / cpuUs('app')).toFixed(2)}`)
    console.log(`  composed full / real app, req/s: ${(rps('full') / rps('app')).toFixed(2)} (near 1: the variants stand for the app)`)
    console.log(
      `  stack over bare, composed full: wall ${(wallUs('full') - wallUs('bare')).toFixed(1)} µs, cpu ${(cpuUs('full') - cpuUs('bare')).toFixed(1)} µs per request; of which plugins (full - route-only): wall ${(wallUs('full') - wallUs('route-only')).toFixed(1)} µs, cpu ${(cpuUs('full') - cpuUs('route-only')).toFixed(1)} µs`,
    )
    console.log('  cost of each part = µs/req(full) - µs/req(without it); a few µs either side of 0 is noise')
    console.log(`    ${'part'.padEnd(24)}${col('wall µs', 9)}${col('cpu µs', 8)}`)
    let wallSum = 0
    let cpuSum = 0
    for (const plugin of PLUGINS) {
      const wall = wallUs('full') - wallUs(`no-${plugin}`)
      const cpu = cpuUs('full') - cpuUs(`no-${plugin}`)
      wallSum += wall
      cpuSum += cpu
      const note = plugin === 'requestId' ? '   includes the access line and the request metrics (one hook pair)' : ''
      console.log(`    ${plugin.padEnd(24)}${col(wall, 9, 1)}${col(cpu, 8, 1)}${note}`)
    }
    console.log(`    ${'sum of plugins'.padEnd(24)}${col(wallSum, 9, 1)}${col(cpuSum, 8, 1)}`)
    console.log(
      `    ${'response check (compiled)'.padEnd(24)}${col(wallUs('full') - wallUs('no-response-check'), 9, 1)}${col(cpuUs('full') - cpuUs('no-response-check'), 8, 1)}   what the app pays (encodeSchema: false)`,
    )
    console.log(
      `    ${'response Encode (default)'.padEnd(24)}${col(wallUs('encode-response') - wallUs('no-response-check'), 9, 1)}${col(cpuUs('encode-response') - cpuUs('no-response-check'), 8, 1)}   Elysia's default: TypeBox Encode of every answer`,
    )
  } finally {
    await Promise.all([...servers.values()].map((s) => s.stop()))
  }
}
