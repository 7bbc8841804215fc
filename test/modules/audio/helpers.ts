import { expect } from 'bun:test'
import { readWavInfo } from '../../../src/audio/decode'
import { fixture, groundTruth } from '../../audio/wav-builder'

export { fixture }

/** The PCM samples of a WAV fixture, without its header: what a realtime client streams. */
export async function fixturePcm(name: string): Promise<Uint8Array> {
  const bytes = await fixture(name)
  const info = readWavInfo(bytes)
  return bytes.subarray(info.dataOffset, info.dataOffset + info.dataBytes)
}

export interface StreamMessage {
  type: string
  code?: string
  details?: { path: string; message: string }[]
  mode?: string
  segment?: { start_s: number; end_s: number }
}

export interface StreamClient {
  ws: WebSocket
  events: StreamMessage[]
  /** True once open, false if the upgrade was refused. */
  opened: Promise<boolean>
  closed: Promise<{ code: number; reason: string }>
  /** The first event of that type, seen or to come; rejects if the stream closes first. */
  next(type: string): Promise<StreamMessage>
}

export interface StreamOptions {
  headers?: Record<string, string>
  protocols?: string[]
}

/**
 * A client of the realtime VAD stream at `url` (Bun's WebSocket, which can send headers), collecting its events.
 * @example const client = openStream(url, { headers: bearer(key) }); await client.opened
 */
export function openStream(url: string, options: StreamOptions): StreamClient {
  const ws = new WebSocket(url, options as never)
  ws.binaryType = 'arraybuffer'
  const events: StreamMessage[] = []
  const waiters: {
    type: string
    resolve(event: StreamMessage): void
    reject(error: Error): void
  }[] = []
  ws.addEventListener('message', (m) => {
    const event = JSON.parse(String(m.data))
    events.push(event)
    for (const w of waiters.filter((w) => w.type === event.type)) {
      waiters.splice(waiters.indexOf(w), 1)
      w.resolve(event)
    }
  })
  const opened = new Promise<boolean>((resolve) => {
    ws.addEventListener('open', () => resolve(true))
    ws.addEventListener('error', () => resolve(false))
  })
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.addEventListener('close', (e) => {
      // An event that can no longer come fails its waiter now, with the events seen, instead of hanging the test.
      for (const w of waiters.splice(0))
        w.reject(new Error(`closed ${e.code} before a "${w.type}" event; saw ${events.map((x) => x.type).join(', ')}`))
      resolve({ code: e.code, reason: e.reason })
    }),
  )
  return {
    ws,
    events,
    opened,
    closed,
    next: (type) =>
      new Promise((resolve, reject) => {
        const seen = events.find((e) => e.type === type)
        if (seen) resolve(seen)
        else if (ws.readyState === WebSocket.CLOSED) reject(new Error(`closed before a "${type}" event`))
        else waiters.push({ type, resolve, reject })
      }),
  }
}

/** Waits for the client to open, sends the configuration and waits for `ready`. */
export async function configuredStream(
  client: StreamClient,
  config: Record<string, unknown> = { sample_rate: 16000, encoding: 'pcm_s16le' },
): Promise<StreamClient> {
  expect(await client.opened).toBe(true)
  client.ws.send(JSON.stringify(config))
  expect((await client.next('ready')).type).toBe('ready')
  return client
}

export interface Interval {
  start_s: number
  end_s: number
}

export interface ValidFixture {
  kind: string
  sample_rate: number
  channels: number
  format: string
  duration_s: number
  speech: Interval[]
}

export const VALID = groundTruth.valid as Record<string, ValidFixture>
export const INVALID = groundTruth.invalid as Record<string, { error: string; message: string }>

function merge(intervals: Interval[]): Interval[] {
  const sorted = [...intervals].sort((a, b) => a.start_s - b.start_s)
  const out: Interval[] = []
  for (const i of sorted) {
    const last = out[out.length - 1]
    if (last && i.start_s <= last.end_s) last.end_s = Math.max(last.end_s, i.end_s)
    else out.push({ ...i })
  }
  return out
}

const length = (intervals: Interval[]) => intervals.reduce((sum, i) => sum + (i.end_s - i.start_s), 0)

/** Intersection over union of two sets of intervals, each taken as the union of its members. */
export function intervalIoU(a: Interval[], b: Interval[]): number {
  const x = merge(a)
  const y = merge(b)
  let overlap = 0
  for (const i of x) for (const j of y) overlap += Math.max(0, Math.min(i.end_s, j.end_s) - Math.max(i.start_s, j.start_s))
  const union = length(x) + length(y) - overlap
  return union === 0 ? 1 : overlap / union
}

/** A copy of models/silero-vad whose ONNX file is garbage: loading fails for real, so the model is `failed`. */
export async function corruptModelsDir(): Promise<string> {
  const { mkdtemp, mkdir, copyFile, writeFile } = await import('node:fs/promises')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const root = await mkdtemp(join(tmpdir(), 'vireo-vad-'))
  const dir = join(root, 'silero-vad')
  await mkdir(dir)
  const source = new URL('../../../models/silero-vad/', import.meta.url).pathname
  await copyFile(join(source, 'manifest.json'), join(dir, 'manifest.json'))
  await writeFile(join(dir, 'silero_vad_v5.onnx'), new Uint8Array(4096).fill(7))
  return root
}
