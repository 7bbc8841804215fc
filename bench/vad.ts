/**
 * The VAD product surface against onnxruntime called directly, all figures from one run:
 *   1. real-time factor of POST /audio/vad on a 60 s file vs a raw in-process loop over the same frames (goal ≥ 0.8 of raw)
 *   2. peak RSS of the server while it segments a 10-minute file (generated in memory)
 *   3. concurrent realtime streams over real WebSockets, each fed one 512-sample frame every 32 ms from a load
 *      generator in its own process (bench/vad-streams.ts, pinned to the load core): the largest N whose p99
 *      event lag stays under 100 ms, found by doubling then bisecting (goal ≥ 500 on cpu, stretch 1000)
 * The server runs on the backend INFERENCE_BACKENDS names (it inherits the environment), pinned to the server core;
 * the raw loop runs on the same backend.
 *
 *   INFERENCE_BACKENDS=cpu bun bench/index.ts vad     (or =wasm; BENCH_VAD_STREAM_S=6 VAD_STREAMS_FROM=100 VAD_STREAMS_MAX=1600 VAD_STREAMS_ROUNDS=2)
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import * as ortNode from 'onnxruntime-node'
import * as ort from 'onnxruntime-web'
import { readAudioInfo, readWavInfo } from '../src/audio/decode'
import { frames16k } from '../src/audio/detect'
import { SileroWindow } from '../src/inference/vad-batch'
import {
  benchKey,
  cpuSeconds,
  envInt,
  fmt,
  goal,
  mib,
  peakRss,
  pinned,
  pinningNote,
  productionEnv,
  ROOT,
  startServer,
  threadCpu,
} from './lib'

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

/** The server's backend: the first of INFERENCE_BACKENDS (which the server child inherits), else the manifest's first, cpu. */
const BACKEND = (process.env.INFERENCE_BACKENDS ?? '').split(',')[0]?.trim() === 'wasm' ? 'wasm' : 'cpu'
/** onnxruntime-node and -web share onnxruntime-common's API; the raw loop uses the server's backend's library. */
const lib = (BACKEND === 'cpu' ? ortNode : ort) as unknown as Pick<typeof ort, 'InferenceSession' | 'Tensor'>

/** The same work without the service: decode, resample, one session.run per frame with the state carried. */
async function rawLoop(session: ort.InferenceSession, bytes: Uint8Array): Promise<number> {
  const started = performance.now()
  const window = new SileroWindow()
  const sr = new lib.Tensor('int64', BigInt64Array.of(16000n), [])
  let state: Float32Array = new Float32Array(256)
  // The same decode + resample + framing the service uses, so only the model calls differ.
  for (const frame of frames16k(bytes, readAudioInfo(bytes))) {
    const out = await session.run({
      input: new lib.Tensor('float32', window.next(frame), [1, 576]),
      state: new lib.Tensor('float32', state, [2, 1, 128]),
      sr,
    })
    state = out.stateN!.data as Float32Array
  }
  return performance.now() - started
}

interface StreamRun {
  streams: number
  p50: number
  p99: number
  events: number
  expected: number
  errors: number
  closedEarly: number
  /** How late the generator's own sends left (ms, p99): large means the generator, not the server, fell behind. */
  sendSlipP99: number
  /** Share of one core the generator used while sending. */
  generatorCore: number
  /** Share of one core the server used over the attempt, connecting included (so a slight overestimate). */
  serverCore: number
  /** µs of server CPU per frame sent, by thread, connecting included. */
  split: { main: number; workers: number; other: number }
}

/** CPU µs of a process's threads since `before`: its main thread (tid = pid), its inference workers, the rest. */
function threadsSince(pid: number, before: ReturnType<typeof threadCpu>): { main: number; workers: number; other: number } {
  const spent = { main: 0, workers: 0, other: 0 }
  for (const [thread, t] of threadCpu(pid)) {
    const was = before.get(thread) ?? { user: 0, system: 0 }
    const us = t.user + t.system - was.user - was.system
    if (thread.startsWith(`${pid}:`)) spent.main += us
    else if (thread.endsWith(':Worker')) spent.workers += us
    else spent.other += us
  }
  return spent
}

/** N streams at real-time pace through bench/vad-streams.ts, in its own process on the load core. */
async function streams(url: string, key: string, n: number, seconds: number, serverPid: number): Promise<StreamRun> {
  const [cpu0, t0, threads0] = [cpuSeconds(serverPid), performance.now(), threadCpu(serverPid)]
  const child = Bun.spawn(pinned(['bun', join(ROOT, 'bench/vad-streams.ts'), url, key, String(n), String(seconds)], 'load'), {
    cwd: ROOT,
    stdout: 'pipe',
    stderr: 'inherit',
  })
  const [out, code] = await Promise.all([new Response(child.stdout).text(), child.exited])
  if (code !== 0) throw new Error(`bench/vad-streams.ts ${n} exited ${code}: ${out.slice(-500)}`)
  // Share of a core the server used over the whole attempt (connecting included): near 1 means its core is the limit.
  const serverCore = (cpuSeconds(serverPid) - cpu0) / ((performance.now() - t0) / 1000)
  const threads = threadsSince(serverPid, threads0)
  const run = JSON.parse(out.trim().split('\n').at(-1)!) as Omit<StreamRun, 'serverCore' | 'split'>
  const split = { main: threads.main / run.expected, workers: threads.workers / run.expected, other: threads.other / run.expected }
  return { ...run, serverCore, split }
}

/** Frames one stream sends per second (one 512-sample frame every 32 ms). */
const FRAMES_PER_S = 1000 / 32

/**
 * Server CPU per stream frame (µs), every thread, over the frames sent (connecting included). Until 2026-12-04 this
 * was the server's share of a core over the frames sent per second, which the attempt's wall time (connecting and
 * the last 500 ms included) made ≈ 10 % lower.
 */
const usPerFrame = ({ split }: StreamRun) => split.main + split.workers + split.other

/** Silero alone on this backend, in runs of `batch` frames as the batcher forms them: µs per frame (best of 3). */
async function rawBatchedUs(session: ort.InferenceSession, batch: number): Promise<number> {
  const feeds = {
    input: new lib.Tensor(
      'float32',
      new Float32Array(batch * 576).map((_, i) => Math.sin(i / 9) / 4),
      [batch, 576],
    ),
    state: new lib.Tensor('float32', new Float32Array(batch * 256), [2, batch, 128]),
    sr: new lib.Tensor('int64', BigInt64Array.of(16000n), []),
  }
  for (let i = 0; i < 10; i++) await session.run(feeds)
  const best: number[] = []
  for (let round = 0; round < 3; round++) {
    const started = performance.now()
    for (let i = 0; i < 40; i++) await session.run(feeds)
    best.push(((performance.now() - started) * 1000) / (40 * batch))
  }
  return Math.min(...best)
}

/**
 * Where a stream frame's time goes, beside the floor: the same generator against a bare Bun WebSocket peer that
 * answers the same events and does nothing else (bench/server.ts ws-bare, on the server core), plus Silero alone in
 * runs of 64 frames. Their sum is what any server on this stack pays per frame; vireo's excess is its own work.
 */
async function floorOf(run: StreamRun, session: ort.InferenceSession, seconds: number): Promise<void> {
  const peer = await startServer('ws-bare', {})
  let bare: StreamRun
  try {
    bare = await streams(
      `${peer.url.replace(/^http/, 'ws').replace(/\/$/, '')}/api/v1/audio/vad/stream`,
      'none',
      run.streams,
      seconds,
      peer.pid,
    )
  } finally {
    await peer.stop()
  }
  const [vireo, socket, model] = [usPerFrame(run), usPerFrame(bare), await rawBatchedUs(session, 64)]
  const { main, workers, other } = run.split
  console.log(
    `per frame at N=${run.streams} (server CPU, all threads): vireo ${fmt(vireo, 1)} µs; by thread: main ${fmt(main, 1)} (WebSocket, ` +
      `sessions, batcher, hand-off), inference workers ${fmt(workers, 1)}, others (JIT, GC) ${fmt(other, 1)}`,
  )
  console.log(
    `  floor: bare Bun WebSocket peer ${fmt(socket, 1)} µs (p99 ${fmt(bare.p99, 1)} ms) + Silero alone in runs of 64 ${fmt(model, 1)} µs = ${fmt(socket + model, 1)} µs`,
  )
  console.log(
    `  over the floor: main thread − bare peer ${fmt(main - socket, 1)} µs, inference workers − Silero alone ${fmt(workers - model, 1)} µs, others ${fmt(other, 1)} µs`,
  )
  console.log(
    `  vireo / floor ${fmt(vireo / (socket + model), 2)}; one core holds at most ≈ ${fmt(1e6 / FRAMES_PER_S / (socket + model))} streams at the floor, ≈ ${fmt(1e6 / FRAMES_PER_S / vireo)} at vireo's cost`,
  )
}

const holds = (run: StreamRun) => run.p99 < 100 && run.errors === 0 && run.closedEarly === 0 && run.events >= 0.99 * run.expected

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
    const session = await lib.InferenceSession.create(new Uint8Array(await readFile(join(ROOT, 'models/silero-vad/silero_vad_v5.onnx'))), {
      executionProviders: [BACKEND],
      ...(BACKEND === 'cpu' ? { intraOpNumThreads: 1, interOpNumThreads: 1 } : {}),
    })
    // VAD_PARTS=streams skips the file figures (RTF and memory), VAD_PARTS=files the streams.
    if (process.env.VAD_PARTS !== 'streams') {
      console.log(
        `vad on backend ${BACKEND} (INFERENCE_BACKENDS=${process.env.INFERENCE_BACKENDS ?? ''}); ${pinningNote()}; load average ${loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')}`,
      )
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
      console.log(`POST /audio/vad, 60 s of 16 kHz speech (best of 3; RTF = processing time / audio time; raw loop on ${BACKEND})`)
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
      // What stays once the answer is out: the allocator's setting (README, "Memory allocator") decides it.
      await Bun.sleep(2000)
      const after = peakRss(server.pid).rss
      console.log(
        `  server RSS before ${mib(before.rss)}, highest while segmenting ${mib(during)} (+${mib(during - before.rss)}), 2 s after ${mib(after)} (+${mib(after - before.rss)})`,
      )
    }
    if (process.env.VAD_PARTS === 'files') return
    const wsUrl = `${server.url.replace(/^http/, 'ws').replace(/\/$/, '')}/api/v1/audio/vad/stream`
    const seconds = envInt('BENCH_VAD_STREAM_S', 6)
    console.log(
      `realtime streams: each sends one 512-sample frame (1024 bytes) every 32 ms for ${seconds} s; lag = chunk sent → its probability event; holds = p99 < 100 ms, no error, ≥ 99 % of events`,
    )
    // Near the limit one 6 s window holds and the next does not, as the machine's other work comes and goes: a count
    // that fails is tried again, up to VAD_STREAMS_ROUNDS times, and holds when one round holds (the best of a few
    // rounds, as the other benches take). Every round is printed, so how often it held stays visible.
    const rounds = envInt('VAD_STREAMS_ROUNDS', 2)
    const tried = new Map<number, StreamRun>()
    const attempt = async (n: number) => {
      for (let round = 1; round <= rounds; round++) {
        const run = await streams(wsUrl, adminKey, n, seconds, server.pid)
        const best = tried.get(n)
        if (!best || holds(run) || run.p99 < best.p99) tried.set(n, run)
        console.log(
          `  N=${String(n).padStart(4)}  p50 ${fmt(run.p50, 1).padStart(7)} ms  p99 ${fmt(run.p99, 1).padStart(7)} ms  events ${run.events}/${run.expected}  errors ${run.errors}  ${holds(run) ? 'holds' : 'FAILS'}   server ${fmt(run.serverCore * 100)} % of a core; generator: send slip p99 ${fmt(run.sendSlipP99, 1)} ms, ${fmt(run.generatorCore * 100)} % of a core   load ${loadavg()[0]!.toFixed(2)}${rounds > 1 ? `   round ${round}/${rounds}` : ''}`,
        )
        if (holds(run)) return true
      }
      return false
    }
    // VAD_STREAMS_AT=100,200,400 runs those counts as they are: the server's CPU share per stream is the capacity
    // figure that survives a loaded machine, where p99 lag mostly measures other processes on the server's core.
    const fixed = (process.env.VAD_STREAMS_AT ?? '')
      .split(',')
      .map(Number)
      .filter((n) => n > 0)
    if (fixed.length) {
      for (const n of fixed) {
        await attempt(n)
        const perStream = (usPerFrame(tried.get(n)!) * FRAMES_PER_S) / 1e6
        console.log(`    → ${fmt(perStream * 100, 2)} % of a core per stream: ≈ ${fmt(1 / perStream)} streams would fill the server's core`)
      }
      await floorOf(tried.get(fixed.at(-1)!)!, session, seconds)
      return
    }
    // Double from VAD_STREAMS_FROM until a count fails (or VAD_STREAMS_MAX), then bisect between the last that held and it.
    const ceiling = envInt('VAD_STREAMS_MAX', 1600)
    let good = 0
    let bad = 0
    for (let n = envInt('VAD_STREAMS_FROM', 100); ; n *= 2) {
      if (n > ceiling) break
      if (await attempt(n)) good = n
      else {
        bad = n
        break
      }
    }
    const step = envInt('VAD_STREAMS_STEP', 25)
    while (bad && bad - good > step) {
      const mid = Math.round((good + bad) / 2 / step) * step
      if (await attempt(mid)) good = mid
      else bad = mid
    }
    console.log(`  ${goal(`streams held on ${BACKEND} (largest N with p99 < 100 ms)`, good, '>=', 500, 0)}; stretch 1000`)
    await floorOf(tried.get(good) ?? tried.values().next().value!, session, seconds)
  } finally {
    await server.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

if (import.meta.main) await benchVad()
