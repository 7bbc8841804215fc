/**
 * What the full request stack costs: requests/second on `GET /api/v1/models/arith` through the real
 * app (auth, rate limit, request id, logging to a real sink, envelope, headers) against a bare
 * Bun.serve answering the same body; then each plugin's cost in µs per request, from variants of
 * the app with that one plugin left out. Every server is its own child process; the load tool is
 * another. Variants are measured in interleaved rounds and the median kept, so drift on this shared
 * machine hits them all alike.
 *
 * Two measures of cost per request are printed: wall time (1e6 / req/s, as asked) and the server
 * process's own CPU time per request (from /proc), which other work on the machine barely moves.
 *
 *   bun bench/index.ts stack     (STACK_ROUNDS=5 STACK_SECONDS=2 STACK_CONNECTIONS=32)
 */
import { benchKey, type Child, col, cpuSeconds, envInt, goal, load, loadToolNote, median, PLUGINS, productionEnv, startServer } from './lib'

const PATH = '/api/v1/models/arith'

interface Sample {
  rps: number
  /** Server CPU µs per request. */
  cpuUs: number
}

export async function benchStack(): Promise<void> {
  const rounds = envInt('STACK_ROUNDS', 5)
  const seconds = envInt('STACK_SECONDS', 2)
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
    servers.set('bare', await startServer('bare', { BENCH_BODY: body }))
    for (const variant of ['full', ...PLUGINS.map((p) => `no-${p}`), 'route-only']) servers.set(variant, await startServer(variant, env))

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

    const variants = [...servers.keys()]
    const samples = new Map<string, Sample[]>(variants.map((v) => [v, []]))
    let bad = 0
    for (let round = 0; round < rounds; round++) {
      // Rotate the order so no variant always runs first (or right after the noisiest one).
      const order = variants.map((_, i) => variants[(i + round) % variants.length]!)
      for (const variant of order) {
        const { pid } = servers.get(variant)!
        const cpuBefore = cpuSeconds(pid)
        const result = await load({ url: url(variant), connections, seconds, headers })
        const cpu = cpuSeconds(pid) - cpuBefore
        samples.get(variant)!.push({ rps: result.rps, cpuUs: (cpu * 1e6) / result.requests })
        bad += result.bad
      }
    }
    const rps = (variant: string) => median(samples.get(variant)!.map((s) => s.rps))
    const wallUs = (variant: string) => 1e6 / rps(variant)
    const cpuUs = (variant: string) => median(samples.get(variant)!.map((s) => s.cpuUs))
    const bare = rps('bare')

    console.log(`stack: GET ${PATH}, ${connections} connections, ${rounds} interleaved rounds x ${seconds}s per variant, median kept`)
    console.log(`  ${loadToolNote()}; logs: pino JSON at info to /dev/null; every server its own process`)
    console.log(`  ${'variant'.padEnd(20)}${col('req/s', 8)}${col('x bare', 8)}${col('wall µs', 9)}${col('cpu µs', 8)}   req/s per round`)
    for (const variant of variants) {
      const perRound = samples
        .get(variant)!
        .map((s) => s.rps.toFixed(0))
        .join(' ')
      console.log(
        `  ${variant.padEnd(20)}${col(rps(variant), 8)}${col(rps(variant) / bare, 8, 2)}${col(wallUs(variant), 9, 1)}${col(cpuUs(variant), 8, 1)}   ${perRound}`,
      )
    }
    if (bad) console.log(`  WARNING: ${bad} non-2xx answers or socket errors during the runs; figures are suspect`)
    console.log(`  ${goal('full stack (real createApp) / bare Bun.serve, req/s:', rps('app') / bare, '>=', 0.6)}`)
    console.log(`  same by server CPU per request (bare / app): ${(cpuUs('bare') / cpuUs('app')).toFixed(2)}`)
    console.log(`  composed full / real app, req/s: ${(rps('full') / rps('app')).toFixed(2)} (near 1: the variants stand for the app)`)
    console.log(
      `  stack over bare, composed full: wall ${(wallUs('full') - wallUs('bare')).toFixed(1)} µs, cpu ${(cpuUs('full') - cpuUs('bare')).toFixed(1)} µs per request; of which plugins (full - route-only): wall ${(wallUs('full') - wallUs('route-only')).toFixed(1)} µs, cpu ${(cpuUs('full') - cpuUs('route-only')).toFixed(1)} µs`,
    )
    console.log('  cost of each plugin = µs/req(full) - µs/req(without it); a few µs either side of 0 is noise')
    console.log(`    ${'plugin'.padEnd(16)}${col('wall µs', 9)}${col('cpu µs', 8)}`)
    let wallSum = 0
    let cpuSum = 0
    for (const plugin of PLUGINS) {
      const wall = wallUs('full') - wallUs(`no-${plugin}`)
      const cpu = cpuUs('full') - cpuUs(`no-${plugin}`)
      wallSum += wall
      cpuSum += cpu
      const note =
        plugin === 'requestId'
          ? '   includes logging and metrics: without request state the logger does nothing'
          : plugin === 'requestLogger'
            ? '   includes the request metrics it feeds'
            : ''
      console.log(`    ${plugin.padEnd(16)}${col(wall, 9, 1)}${col(cpu, 8, 1)}${note}`)
    }
    console.log(`    ${'sum'.padEnd(16)}${col(wallSum, 9, 1)}${col(cpuSum, 8, 1)}`)
  } finally {
    await Promise.all([...servers.values()].map((s) => s.stop()))
  }
}
