/**
 * The load generator of `bench/vad.ts`'s stream search, run in its own process (pinned to the load core) so its
 * sockets never share a thread with the server or with the bench that reads the figures:
 *
 *   bun bench/vad-streams.ts <ws-url> <key> <streams> <seconds>
 *
 * Opens `streams` WebSockets to `/api/v1/audio/vad/stream`, each sending one 512-sample frame of 16 kHz s16
 * speech (1024 bytes) every 32 ms, real-time pace, start times spread over one period. One scheduler loop sends
 * every chunk that is due, so hundreds of sockets cost one timer, not hundreds. Lag = the frame's chunk sent → its
 * `probability` event received. Prints one JSON line: lag p50/p99, events, errors, and the generator's own health
 * (how late its sends left, the share of a core it used), since at hundreds of sockets the generator itself can
 * be what falls behind.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { readWavInfo } from '../src/audio/decode'
import { percentile, ROOT } from './lib'

const CHUNK = 1024
const PERIOD_MS = 32

const [url, key, count, duration] = process.argv.slice(2)
const n = Number(count)
const seconds = Number(duration)
if (!url || !key || !(n > 0) || !(seconds > 0)) {
  console.error('usage: bun bench/vad-streams.ts <ws-url> <key> <streams> <seconds>')
  process.exit(2)
}

const wav = new Uint8Array(await readFile(join(ROOT, 'test/fixtures/audio/speech_16k_mono_s16_long.wav')))
const info = readWavInfo(wav)
const pcm = wav.subarray(info.dataOffset, info.dataOffset + info.dataBytes - (info.dataBytes % CHUNK))
const chunks = Math.floor((seconds * 1000) / PERIOD_MS)

interface Stream {
  ws: WebSocket
  sentAt: Float64Array
  offset: number
}

const lags: number[] = []
const slips: number[] = []
let errors = 0
let closedEarly = 0

async function open(index: number): Promise<Stream> {
  const ws = new WebSocket(url!, { headers: { authorization: `Bearer ${key}` } } as never)
  ws.binaryType = 'arraybuffer'
  const stream: Stream = { ws, sentAt: new Float64Array(chunks), offset: ((index * 37) % (pcm.length / CHUNK)) * CHUNK }
  const ready = Promise.withResolvers<void>()
  ws.addEventListener('message', (m) => {
    const text = String(m.data)
    // Only probability events are counted; parse the rest to see errors and `ready`.
    const event = JSON.parse(text) as { type: string; t_s?: number }
    if (event.type === 'probability') {
      const frame = Math.round(event.t_s! / (PERIOD_MS / 1000))
      const sent = stream.sentAt[frame]
      if (sent) lags.push(performance.now() - sent)
    } else if (event.type === 'ready') ready.resolve()
    else if (event.type === 'error') errors++
  })
  ws.addEventListener('close', () => {
    closedEarly++
    ready.reject(new Error('closed before ready'))
  })
  await new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve)
    ws.addEventListener('error', reject)
  })
  ws.send(JSON.stringify({ sample_rate: 16000, encoding: 'pcm_s16le', probabilities: true }))
  await ready.promise
  return stream
}

// Open in groups: a few hundred handshakes at once would themselves be a burst no real client makes.
const streams: Stream[] = []
for (let at = 0; at < n; at += 50) {
  streams.push(...(await Promise.all(Array.from({ length: Math.min(50, n - at) }, (_, i) => open(at + i)))))
}

const cpuBefore = process.cpuUsage()
const start = performance.now() + 50
// Stream s sends chunk i at start + s·(period/n) + i·period.
const next = new Int32Array(n)
let remaining = n * chunks
while (remaining > 0) {
  const now = performance.now()
  for (let s = 0; s < n; s++) {
    const i = next[s]!
    if (i >= chunks) continue
    const due = start + (s * PERIOD_MS) / n + i * PERIOD_MS
    if (due > now) continue
    const stream = streams[s]!
    const offset = (stream.offset + i * CHUNK) % pcm.length
    stream.sentAt[i] = performance.now()
    stream.ws.send(pcm.subarray(offset, offset + CHUNK))
    slips.push(stream.sentAt[i]! - due)
    next[s] = i + 1
    remaining--
  }
  await Bun.sleep(1)
}
const wallMs = performance.now() - start
await Bun.sleep(500)
const cpu = process.cpuUsage(cpuBefore)
const early = closedEarly
for (const { ws } of streams) ws.close()

lags.sort((a, b) => a - b)
slips.sort((a, b) => a - b)
console.log(
  JSON.stringify({
    streams: n,
    p50: percentile(lags, 50),
    p99: percentile(lags, 99),
    events: lags.length,
    expected: n * chunks,
    errors,
    closedEarly: early,
    sendSlipP99: percentile(slips, 99),
    generatorCore: (cpu.user + cpu.system) / 1000 / (wallMs + 500),
  }),
)
process.exit(0)
