/**
 * What one key's cancellations cost everyone else (issue 12 §2). The app runs in a child process on the
 * shipped Silero model with the health probe every second; in alternating rounds a second key measures its
 * p50/p99 on `POST /api/v1/models/silero-vad/infer` alone (idle) and while a first key floods the same route
 * with `parameters.timeout_ms: 1` and with requests it disconnects after a millisecond (flood). Printed: the
 * second key's p99 under flood ÷ idle (goal ≤ 2), how its requests fared, worker terminations and runs
 * kept past their caller (from /metrics), and whether the model ever left `ready` (polled throughout).
 *
 *   bun bench/index.ts churn     (CHURN_ROUNDS=3 CHURN_SECONDS=5 CHURN_FLOOD_PER_S=50)
 */
import { SILERO_FRAME, SILERO_STATE } from '../src/inference/vad-batch'
import { tone } from '../test/audio/wav-builder'
import { benchKey, envInt, fmt, goal, percentile, productionEnv, startServer } from './lib'

const samples = [...tone(220, 16000, SILERO_FRAME / 16000, 0.3)]
const frame = (parameters?: { timeout_ms: number }) =>
  JSON.stringify({
    inputs: [
      { name: 'input', shape: [1, SILERO_FRAME], datatype: 'FP32', data: samples },
      { name: 'state', shape: [2, 1, 128], datatype: 'FP32', data: new Array(SILERO_STATE).fill(0) },
      { name: 'sr', shape: [], datatype: 'INT64', data: [16000] },
    ],
    ...(parameters ? { parameters } : {}),
  })

/** Prometheus text → the value of an unlabelled series. */
function series(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line ? Number(line.split(' ')[1]) : Number.NaN
}

export async function benchChurn(): Promise<void> {
  const rounds = envInt('CHURN_ROUNDS', 3)
  const seconds = envInt('CHURN_SECONDS', 5)
  const floodPerS = envInt('CHURN_FLOOD_PER_S', 50)
  const admin = benchKey()
  const server = await startServer('app', productionEnv(admin, { MODELS_DIR: 'models', MODELS_HEALTH_INTERVAL_MS: '1000' }))
  const url = (path: string) => new URL(path, server.url).href
  const asAdmin = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }
  try {
    const key = async (name: string) => {
      const response = await fetch(url('/api/v1/keys'), {
        method: 'POST',
        headers: asAdmin,
        body: JSON.stringify({ name, scopes: ['inference'] }),
      })
      return {
        authorization: `Bearer ${((await response.json()) as { data: { key: string } }).data.key}`,
        'content-type': 'application/json',
      }
    }
    const flooder = await key('churn flooder')
    const victim = await key('churn victim')
    const infer = url('/api/v1/models/silero-vad/infer')
    const plain = frame()
    const scrape = async () => (await fetch(url('/metrics'), { headers: asAdmin })).text()

    let leftReady: string | undefined
    let polling = true
    const poll = (async () => {
      while (polling) {
        const response = await fetch(url('/api/v1/models/silero-vad'), { headers: victim })
        const status = ((await response.json()) as { data: { status: string } }).data.status
        if (status !== 'ready') leftReady ??= status
        await Bun.sleep(50)
      }
    })()

    /** The victim's sequential requests for `seconds`: latencies of the 200s, and every status seen. */
    async function measure(times: number[], statuses: Map<number, number>): Promise<void> {
      const until = performance.now() + seconds * 1000
      while (performance.now() < until) {
        const started = performance.now()
        const response = await fetch(infer, { method: 'POST', headers: victim, body: plain })
        await response.arrayBuffer()
        if (response.status === 200) times.push(performance.now() - started)
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
      }
    }

    /** The flooder, paced: every other request asks for a 1 ms timeout, the rest hang up after 1 ms. */
    async function flood(stop: () => boolean, outcomes: Map<string, number>): Promise<void> {
      const tight = frame({ timeout_ms: 1 })
      const inflight = new Set<Promise<void>>()
      for (let i = 0; !stop(); i++) {
        const controller = new AbortController()
        const disconnect = i % 2 === 1
        if (disconnect) setTimeout(() => controller.abort(), 1)
        const sent = fetch(infer, { method: 'POST', headers: flooder, body: disconnect ? plain : tight, signal: controller.signal })
          .then(async (r) => {
            await r.arrayBuffer()
            return String(r.status)
          })
          .catch(() => 'disconnected')
          .then((outcome) => {
            outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
          })
        inflight.add(sent)
        void sent.finally(() => inflight.delete(sent))
        await Bun.sleep(1000 / floodPerS)
      }
      await Promise.all(inflight)
    }

    // Warm-up: WASM code tiers up and the model's run-time window fills before anything is measured.
    for (let i = 0; i < 300; i++) await (await fetch(infer, { method: 'POST', headers: victim, body: plain })).arrayBuffer()
    const before = await scrape()

    const idle: number[] = []
    const flooded: number[] = []
    const idleStatuses = new Map<number, number>()
    const floodStatuses = new Map<number, number>()
    const outcomes = new Map<string, number>()
    for (let round = 0; round < rounds; round++) {
      await measure(idle, idleStatuses)
      let done = false
      const flooding = flood(() => done, outcomes)
      await measure(flooded, floodStatuses)
      done = true
      await flooding
    }
    polling = false
    await poll
    const after = await scrape()

    const p = (values: number[], q: number) =>
      percentile(
        [...values].sort((a, b) => a - b),
        q,
      )
    const statuses = (m: Map<number | string, number>) => [...m].map(([s, n]) => `${s}×${n}`).join(' ')
    const terminations = series(after, 'inference_worker_terminations_total') - series(before, 'inference_worker_terminations_total')
    const discarded = series(after, 'inference_runs_discarded_total') - series(before, 'inference_runs_discarded_total')
    console.log(
      `churn: ${rounds} rounds of ${seconds} s idle then ${seconds} s flooded (${floodPerS} req/s: 1 ms timeouts and 1 ms disconnects)`,
    )
    console.log(`victim idle:    p50 ${fmt(p(idle, 50), 2)} ms  p99 ${fmt(p(idle, 99), 2)} ms  (${statuses(idleStatuses)})`)
    console.log(`victim flooded: p50 ${fmt(p(flooded, 50), 2)} ms  p99 ${fmt(p(flooded, 99), 2)} ms  (${statuses(floodStatuses)})`)
    console.log(`flooder: ${statuses(outcomes)}`)
    console.log(goal('victim p99 flooded / idle', p(flooded, 99) / p(idle, 99), '<=', 2))
    console.log(`worker terminations during the run: ${terminations}; cancelled runs finished in their grace (worker kept): ${discarded}`)
    console.log(`model left ready: ${leftReady ? `yes (${leftReady})` : 'no'}`)
  } finally {
    await server.stop()
  }
}
