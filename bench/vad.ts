/**
 * The VAD product surface against onnxruntime called directly, all figures from one run:
 *   1. real-time factor of POST /audio/vad on a 60 s file vs a raw in-process loop over the same frames (goal ≥ 0.8 of raw)
 *   2. peak RSS of the server while it segments a 10-minute file (generated in memory)
 *   3. concurrent realtime streams over real WebSockets, each fed at real-time pace: p99 event latency per N,
 *      and the largest N kept under 100 ms (goal ≥ 100)
 *
 *   bun bench/vad.ts            (or `bun bench/index.ts vad`)
 */
import { readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as ort from 'onnxruntime-web'
import { readAudioInfo, readWavInfo } from '../src/audio/decode'
import { frames16k } from '../src/audio/detect'
import { SileroWindow } from '../src/inference/vad-batch'
import { benchKey, envInt, fmt, goal, mib, percentile, productionEnv, ROOT, startServer } from './lib'

const LONG = join(ROOT, 'test/fixtures/audio/speech_16k_mono_s16_long.wav')

/** A 16 kHz mono s16 WAV of `seconds`, the long fixture's speech repeated. */
async function wavOf(seconds: number): Promise<Uint8Array> {
  const source = new Uint8Array(await readFile(LONG))
  const info = readWavInfo(source)
  const pcm = source.subarray(info.dataOffset, info.dataOffset + info.dataBytes)
  const dataBytes = seconds * 16000 * 2
  const out = new Uint8Array(44 + dataBytes)
  const view = new DataView(out.buffer)
  out.set(source.subarray(0, 36))
  view.setUint32(4, 36 + dataBytes, true)
  out.set([0x64, 0x61, 0x74, 0x61], 36)
  view.setUint32(40, dataBytes, true)
  for (let at = 0; at < dataBytes; at += pcm.length) out.set(pcm.subarray(0, Math.min(pcm.length, dataBytes - at)), 44 + at)
  return out
}

/** The same work without the service: decode, resample, one session.run per frame with the state carried. */
async function rawLoop(session: ort.InferenceSession, bytes: Uint8Array): Promise<number> {
  const started = performance.now()
  const window = new SileroWindow()
  const sr = new ort.Tensor('int64', BigInt64Array.of(16000n), [])
  let state: Float32Array = new Float32Array(256)
  // The same decode + resample + framing the service uses, so only the model calls differ.
  for (const frame of frames16k(bytes, readAudioInfo(bytes))) {
    const out = await session.run({
      input: new ort.Tensor('float32', window.next(frame), [1, 576]),
      state: new ort.Tensor('float32', state, [2, 1, 128]),
      sr,
    })
    state = out.stateN!.data as Float32Array
  }
  return performance.now() - started
}

function peakRss(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024
  return { rss: kb('VmRSS'), peak: kb('VmHWM') }
}

interface StreamRun {
  p50: number
  p99: number
  events: number
  errors: number
}

/** N streams, each sending 100 ms of 16 kHz s16 every 100 ms for `seconds`; latency of each frame's probability event. */
async function streams(url: string, key: string, n: number, seconds: number): Promise<StreamRun> {
  const pcm = (await wavOf(30)).subarray(44)
  const chunk = 3200
  const latencies: number[] = []
  let errors = 0
  await Promise.all(
    Array.from({ length: n }, async (_, s) => {
      const ws = new WebSocket(url, { headers: { authorization: `Bearer ${key}` } } as never)
      ws.binaryType = 'arraybuffer'
      const sentAt: number[] = []
      let ready: () => void = () => {}
      const isReady = new Promise<void>((resolve) => {
        ready = resolve
      })
      const closed = new Promise<void>((resolve) => ws.addEventListener('close', () => resolve()))
      ws.addEventListener('message', (m) => {
        const event = JSON.parse(String(m.data))
        if (event.type === 'ready') ready()
        else if (event.type === 'probability') {
          const frame = Math.round(event.t_s / 0.032)
          // The frame is complete once the chunk holding its last sample has been sent.
          const chunkIndex = Math.floor(((frame + 1) * 512 * 2 - 1) / chunk)
          if (sentAt[chunkIndex] !== undefined) latencies.push(performance.now() - sentAt[chunkIndex]!)
        } else if (event.type === 'error') errors++
      })
      await new Promise((resolve) => ws.addEventListener('open', resolve))
      ws.send(JSON.stringify({ sample_rate: 16000, encoding: 'pcm_s16le', probabilities: true }))
      await isReady
      // Stagger the streams over one period so they do not all send in the same millisecond.
      await Bun.sleep((100 * s) / n)
      const start = performance.now()
      for (let i = 0; i * 100 < seconds * 1000; i++) {
        const due = start + i * 100
        const wait = due - performance.now()
        if (wait > 0) await Bun.sleep(wait)
        const offset = (i * chunk) % (pcm.length - chunk)
        sentAt[i] = performance.now()
        ws.send(pcm.subarray(offset - (offset % 2), offset - (offset % 2) + chunk))
      }
      await Bun.sleep(300)
      ws.close()
      await closed
    }),
  )
  latencies.sort((a, b) => a - b)
  return { p50: percentile(latencies, 50), p99: percentile(latencies, 99), events: latencies.length, errors }
}

export async function benchVad(): Promise<void> {
  const adminKey = benchKey()
  const dataDir = await mkdtemp(join(tmpdir(), 'vireo-bench-vad-'))
  const workers = envInt('INFERENCE_WORKERS', 2)
  const server = await startServer(
    'app',
    productionEnv(adminKey, {
      PGLITE_DIR: dataDir,
      INFERENCE_WORKERS: String(workers),
      VAD_STREAM_MAX_PER_KEY: '10000',
      MAX_AUDIO_MS: '3600000',
      MAX_UPLOAD_BYTES: String(200 * 1024 * 1024),
    }),
  )
  try {
    const api = `${server.url.replace(/\/$/, '')}/api/v1/audio/vad`
    const post = async (bytes: Uint8Array) => {
      const started = performance.now()
      const response = await fetch(api, {
        method: 'POST',
        body: bytes as Uint8Array<ArrayBuffer>,
        headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'audio/wav' },
      })
      const json = (await response.json()) as { data?: { mode: string } }
      if (response.status !== 200 || json.data?.mode !== 'model') throw new Error(`POST /audio/vad answered ${response.status}`)
      return performance.now() - started
    }

    ort.env.wasm.numThreads = 1
    const session = await ort.InferenceSession.create(new Uint8Array(await readFile(join(ROOT, 'models/silero-vad/silero_vad_v5.onnx'))), {
      executionProviders: ['wasm'],
    })
    const minute = await wavOf(60)
    await post(await wavOf(5))
    await rawLoop(session, await wavOf(5))
    const apiMs: number[] = []
    const rawMs: number[] = []
    for (let i = 0; i < 3; i++) {
      rawMs.push(await rawLoop(session, minute))
      apiMs.push(await post(minute))
    }
    const api1 = Math.min(...apiMs)
    const raw1 = Math.min(...rawMs)
    console.log(`POST /audio/vad, 60 s of 16 kHz speech (best of 3; RTF = processing time / audio time)`)
    console.log(`  raw in-process loop   ${fmt(raw1)} ms   RTF ${fmt(raw1 / 60000, 4)}`)
    console.log(`  POST /audio/vad       ${fmt(api1)} ms   RTF ${fmt(api1 / 60000, 4)}`)
    console.log(`  ${goal('speed vs raw (raw time / API time)', raw1 / api1, '>=', 0.8)}`)
    await session.release()

    const before = peakRss(server.pid)
    const tenMinutes = await wavOf(600)
    // VmHWM holds the start-up peak (model loading), so RSS is sampled while the request runs.
    let during = before.rss
    const sampler = setInterval(() => {
      during = Math.max(during, peakRss(server.pid).rss)
    }, 25)
    const tenMs = await post(tenMinutes)
    clearInterval(sampler)
    console.log(`10-minute file (${mib(tenMinutes.length)} upload): ${fmt(tenMs)} ms, RTF ${fmt(tenMs / 600000, 4)}`)
    console.log(`  server RSS before ${mib(before.rss)}, highest while segmenting ${mib(during)} (+${mib(during - before.rss)})`)

    const wsUrl = `${server.url.replace(/^http/, 'ws').replace(/\/$/, '')}/api/v1/audio/vad/stream`
    const seconds = envInt('BENCH_VAD_STREAM_S', 6)
    console.log(`realtime streams: each sends 100 ms of audio every 100 ms for ${seconds} s; latency = frame complete → its event`)
    let best = 0
    for (const n of [25, 50, 100, 150, 200, 300]) {
      const run = await streams(wsUrl, adminKey, n, seconds)
      const okay = run.p99 < 100 && run.errors === 0
      if (okay) best = n
      console.log(
        `  N=${String(n).padStart(3)}  p50 ${fmt(run.p50, 1)} ms  p99 ${fmt(run.p99, 1)} ms  events ${run.events}  errors ${run.errors}`,
      )
      if (!okay) break
    }
    console.log(`  ${goal('streams sustained with p99 < 100 ms', best, '>=', 100, 0)}`)
  } finally {
    await server.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

if (import.meta.main) await benchVad()
