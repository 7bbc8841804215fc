import groundTruth from '../fixtures/audio/ground-truth.json' with { type: 'json' }

export const FIXTURES = new URL('../fixtures/audio/', import.meta.url).pathname
export const fixture = (name: string) => Bun.file(`${FIXTURES}${name}`).bytes()

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
  const source = new URL('../../models/silero-vad/', import.meta.url).pathname
  await copyFile(join(source, 'manifest.json'), join(dir, 'manifest.json'))
  await writeFile(join(dir, 'silero_vad_v5.onnx'), new Uint8Array(4096).fill(7))
  return root
}
