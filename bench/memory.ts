/**
 * The server's RSS under sustained load: one-frame `POST /api/v1/models/silero-vad/infer` at concurrency
 * MEMORY_CONNECTIONS against two servers on the embedded PGlite (vireo's zero-setup default), one with its collection
 * pacer (`PGLITE_COLLECT_EVERY_MB`, src/db/collection-pacer.ts) and one without, and a third on PostgreSQL when
 * MEMORY_DATABASE_URL names one, side by side on the server core, driven in turn for MEMORY_SECONDS each per round,
 * MEMORY_ROUNDS rounds. Prints each RSS after every round (it should level off) and each server's throughput, so the
 * pacer's cost is read beside its gain (README, "Memory under load").
 *
 *   bun bench/index.ts memory     (MEMORY_ROUNDS=10 MEMORY_SECONDS=8 MEMORY_CONNECTIONS=8 MEMORY_DATABASE_URL=)
 */
import { inferBody } from './inference'
import { benchKey, type Child, col, envInt, load, loadToolNote, mib, peakRss, pinningNote, productionEnv, startServer } from './lib'

const rss = (child: Child) => peakRss(child.pid).rss

export async function benchMemory(): Promise<void> {
  const rounds = envInt('MEMORY_ROUNDS', 10)
  const seconds = envInt('MEMORY_SECONDS', 8)
  const connections = envInt('MEMORY_CONNECTIONS', 8)
  const key = benchKey()
  const env = productionEnv(key, { MODELS_DIR: 'models', DATABASE_URL: '' })
  const postgres = process.env.MEMORY_DATABASE_URL
  const servers: Record<string, Child> = {
    PGlite: await startServer('app', env),
    'PGlite, no pacer': await startServer('app', { ...env, PGLITE_COLLECT_EVERY_MB: '0' }),
    ...(postgres ? { PostgreSQL: await startServer('app', { ...env, DATABASE_URL: postgres }) } : {}),
  }
  try {
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' }
    const names = Object.keys(servers)
    console.log(
      `server RSS under one-frame POST /infer at concurrency ${connections}; ${rounds} rounds of ${seconds} s per server, in turn`,
    )
    if (!postgres) console.log('  (no PostgreSQL server: MEMORY_DATABASE_URL is not set)')
    console.log(`  ${pinningNote()}; ${loadToolNote()}`)
    console.log(`  ${'after'.padEnd(10)}${names.map((n) => col(n, 20)).join('')}${col("first's requests", 18)}`)
    const first = Object.fromEntries(names.map((n) => [n, rss(servers[n]!)]))
    console.log(`  ${'start'.padEnd(10)}${names.map((n) => col(mib(first[n]!), 20)).join('')}`)
    let last: Record<string, number> = first
    const served = Object.fromEntries(names.map((n) => [n, 0]))
    for (let round = 1; round <= rounds; round++) {
      for (const name of names) {
        const url = `${servers[name]!.url.replace(/\/$/, '')}/api/v1/models/silero-vad/infer`
        const result = await load({ url, connections, seconds, headers, method: 'POST', body: inferBody })
        if (result.bad) console.log(`  WARNING: ${result.bad} failed answers from "${name}"`)
        served[name]! += result.requests
      }
      last = Object.fromEntries(names.map((n) => [n, rss(servers[n]!)]))
      console.log(`  ${`round ${round}`.padEnd(10)}${names.map((n) => col(mib(last[n]!), 20)).join('')}${col(served[names[0]!]!, 18)}`)
    }
    for (const name of names)
      console.log(
        `  ${name}: RSS ${mib(first[name]!)} -> ${mib(last[name]!)} (${(last[name]! / first[name]!).toFixed(2)}×), ` +
          `${Math.round(served[name]! / (rounds * seconds))} req/s`,
      )
  } finally {
    for (const server of Object.values(servers)) await server.stop()
  }
}
