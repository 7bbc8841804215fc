/**
 * Writes the ONNX models the inference tests run against into test/fixtures/models/<name>/.
 * Output is byte-for-byte deterministic, so regenerating leaves git clean.
 *
 *   bun scripts/make-test-models.ts [outDir]
 *
 * ONNX files are protobuf; the handful of ModelProto fields these models need are encoded
 * by hand below (field numbers from onnx/onnx.proto) rather than pulling in a protobuf stack.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

// Protobuf wire format: just enough for ModelProto.

type Field = Uint8Array

function varint(value: number | bigint): number[] {
  let v = BigInt.asUintN(64, BigInt(value))
  const out: number[] = []
  do {
    let byte = Number(v & 0x7fn)
    v >>= 7n
    if (v) byte |= 0x80
    out.push(byte)
  } while (v)
  return out
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let offset = 0
  for (const p of parts) {
    out.set(p, offset)
    offset += p.length
  }
  return out
}

function int(field: number, value: number | bigint): Field {
  return Uint8Array.from([...varint(field << 3), ...varint(value)])
}

function bytes(field: number, value: Uint8Array): Field {
  return concat([Uint8Array.from([...varint((field << 3) | 2), ...varint(value.length)]), value])
}

function str(field: number, value: string): Field {
  return bytes(field, new TextEncoder().encode(value))
}

function msg(field: number, parts: Field[]): Field {
  return bytes(field, concat(parts))
}

// ONNX messages (onnx.proto field numbers).

const DT = { FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, BOOL: 9, DOUBLE: 11, UINT32: 12 } as const
const ATTR_GRAPH = 5

type Dim = number | string

function tensorType(elemType: number, shape: Dim[] | undefined): Field {
  const dims = shape?.map((d) => msg(1, [typeof d === 'number' ? int(1, d) : str(2, d)]))
  return msg(2, [msg(1, [int(1, elemType), ...(dims ? [msg(2, dims)] : [])])])
}

function valueInfo(field: number, name: string, elemType: number, shape?: Dim[]): Field {
  return msg(field, [str(1, name), tensorType(elemType, shape)])
}

function initializer(name: string, elemType: number, dims: number[], raw: Uint8Array): Field {
  return msg(5, [...dims.map((d) => int(1, d)), int(2, elemType), str(8, name), bytes(9, raw)])
}

interface NodeSpec {
  op: string
  inputs: string[]
  outputs: string[]
  graphAttr?: { name: string; graph: Field[] }
}

function node(spec: NodeSpec): Field {
  const attrs = spec.graphAttr ? [msg(5, [str(1, spec.graphAttr.name), msg(6, spec.graphAttr.graph), int(20, ATTR_GRAPH)])] : []
  return msg(1, [
    ...spec.inputs.map((i) => str(1, i)),
    ...spec.outputs.map((o) => str(2, o)),
    str(3, spec.outputs[0]!),
    str(4, spec.op),
    ...attrs,
  ])
}

function graphBody(name: string, parts: { nodes: NodeSpec[]; inits?: Field[]; inputs: Field[]; outputs: Field[] }): Field[] {
  return [...parts.nodes.map(node), str(2, name), ...(parts.inits ?? []), ...parts.inputs, ...parts.outputs]
}

function model(graph: Field[]): Uint8Array {
  return concat([int(1, 8), str(2, 'vireo-make-test-models'), msg(7, graph), msg(8, [str(1, ''), int(2, 17)])])
}

const f32 = (values: number[]) => new Uint8Array(Float32Array.from(values).buffer)
const i64 = (values: bigint[]) => new Uint8Array(BigInt64Array.from(values).buffer)

// The fixture models.

/** y = 2x + 1 on FP32 [1,4]; m = n + 1 on INT64 [1,2] (to exercise 64-bit integers end to end). */
function arith(): Uint8Array {
  return model(
    graphBody('arith', {
      nodes: [
        { op: 'Mul', inputs: ['x', 'two'], outputs: ['x2'] },
        { op: 'Add', inputs: ['x2', 'one'], outputs: ['y'] },
        { op: 'Add', inputs: ['n', 'one64'], outputs: ['m'] },
      ],
      inits: [
        initializer('two', DT.FLOAT, [], f32([2])),
        initializer('one', DT.FLOAT, [], f32([1])),
        initializer('one64', DT.INT64, [], i64([1n])),
      ],
      inputs: [valueInfo(11, 'x', DT.FLOAT, [1, 4]), valueInfo(11, 'n', DT.INT64, [1, 2])],
      outputs: [valueInfo(12, 'y', DT.FLOAT, [1, 4]), valueInfo(12, 'm', DT.INT64, [1, 2])],
    }),
  )
}

/** Dynamic batch: sq = x * x and shifted = x + [1, 2, 3] on FP32 [batch, 3]. */
function dynbatch(): Uint8Array {
  return model(
    graphBody('dynbatch', {
      nodes: [
        { op: 'Mul', inputs: ['x', 'x'], outputs: ['sq'] },
        { op: 'Add', inputs: ['x', 'bias'], outputs: ['shifted'] },
      ],
      inits: [initializer('bias', DT.FLOAT, [3], f32([1, 2, 3]))],
      inputs: [valueInfo(11, 'x', DT.FLOAT, ['batch', 3])],
      outputs: [valueInfo(12, 'sq', DT.FLOAT, ['batch', 3]), valueInfo(12, 'shifted', DT.FLOAT, ['batch', 3])],
    }),
  )
}

/** Every datatype vireo carries, as the OIP names it, with its ONNX element type. */
const ALL_TYPES = {
  FP32: DT.FLOAT,
  FP64: DT.DOUBLE,
  INT8: DT.INT8,
  INT16: DT.INT16,
  INT32: DT.INT32,
  INT64: DT.INT64,
  UINT8: DT.UINT8,
  UINT16: DT.UINT16,
  UINT32: DT.UINT32,
  BOOL: DT.BOOL,
} as const

/** `<type>_out` = Identity(`<type>`) for every datatype, each [rows, cols] with both dimensions dynamic. */
function alltypes(): Uint8Array {
  const names = Object.keys(ALL_TYPES) as (keyof typeof ALL_TYPES)[]
  return model(
    graphBody('alltypes', {
      nodes: names.map((d) => ({ op: 'Identity', inputs: [d.toLowerCase()], outputs: [`${d.toLowerCase()}_out`] })),
      inputs: names.map((d) => valueInfo(11, d.toLowerCase(), ALL_TYPES[d], ['rows', 'cols'])),
      outputs: names.map((d) => valueInfo(12, `${d.toLowerCase()}_out`, ALL_TYPES[d], ['rows', 'cols'])),
    }),
  )
}

const SLOW_N = 64

/**
 * A Loop of `iters` steps h = tanh(h · W), h [1,64], W [64,64]: one step is well under a millisecond, so the
 * caller picks the cost (the warm-up uses 1, the timeout tests a number that takes minutes).
 */
function slow(): Uint8Array {
  const w = Array.from({ length: SLOW_N * SLOW_N }, (_, i) => Math.sin(i + 1) / SLOW_N)
  const body = graphBody('slow_body', {
    nodes: [
      { op: 'MatMul', inputs: ['h_in', 'w'], outputs: ['mm'] },
      { op: 'Tanh', inputs: ['mm'], outputs: ['h_out'] },
      { op: 'Identity', inputs: ['cond_in'], outputs: ['cond_out'] },
    ],
    inputs: [valueInfo(11, 'i', DT.INT64, []), valueInfo(11, 'cond_in', DT.BOOL, []), valueInfo(11, 'h_in', DT.FLOAT, [1, SLOW_N])],
    outputs: [valueInfo(12, 'cond_out', DT.BOOL, []), valueInfo(12, 'h_out', DT.FLOAT, [1, SLOW_N])],
  })
  return model(
    graphBody('slow', {
      nodes: [{ op: 'Loop', inputs: ['iters', 'go', 'h0'], outputs: ['h'], graphAttr: { name: 'body', graph: body } }],
      inits: [initializer('w', DT.FLOAT, [SLOW_N, SLOW_N], f32(w)), initializer('go', DT.BOOL, [], Uint8Array.from([1]))],
      inputs: [valueInfo(11, 'iters', DT.INT64, []), valueInfo(11, 'h0', DT.FLOAT, [1, SLOW_N])],
      outputs: [valueInfo(12, 'h', DT.FLOAT, [1, SLOW_N])],
    }),
  )
}

/** Deterministic noise (mulberry32) so the corrupt model is the same bytes on every run. */
function noise(length: number, seed: number): Uint8Array {
  let a = seed
  return Uint8Array.from({ length }, () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) & 0xff
  })
}

const base = { version: '1', task: 'tensor', file: 'model.onnx', license: 'MIT', source: 'generated by scripts/make-test-models.ts' }

const fixtures: Record<string, { manifest: unknown; onnx?: Uint8Array }> = {
  arith: {
    onnx: arith(),
    manifest: {
      name: 'arith',
      ...base,
      backends: ['cpu', 'webgpu', 'wasm'],
      timeout_ms: 2000,
      warmup: [
        { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] },
        { name: 'n', shape: [1, 2], datatype: 'INT64', data: [1, 2] },
      ],
    },
  },
  dynbatch: {
    onnx: dynbatch(),
    manifest: {
      name: 'dynbatch',
      ...base,
      backends: ['cpu', 'wasm'],
      timeout_ms: 2000,
      warmup: [{ name: 'x', shape: [2, 3], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6] }],
      // Long enough a wait that requests sent together in a test meet in one batch.
      batching: { max_batch_size: 8, max_delay_ms: 20 },
    },
  },
  alltypes: {
    onnx: alltypes(),
    manifest: {
      name: 'alltypes',
      ...base,
      backends: ['cpu', 'wasm'],
      timeout_ms: 2000,
      warmup: Object.keys(ALL_TYPES).map((d) => ({ name: d.toLowerCase(), shape: [1, 1], datatype: d, data: [d === 'BOOL' ? true : 1] })),
    },
  },
  slow: {
    onnx: slow(),
    manifest: {
      name: 'slow',
      ...base,
      // wasm only: its tests time out runs of minutes, and terminate() stops those on wasm; a native
      // (cpu) run cannot be stopped and would keep a core busy to the end (test/inference/backends.test.ts).
      backends: ['wasm'],
      timeout_ms: 300,
      warmup: [
        { name: 'iters', shape: [], datatype: 'INT64', data: [1] },
        { name: 'h0', shape: [1, SLOW_N], datatype: 'FP32', data: Array.from({ length: SLOW_N }, (_, i) => (i % 8) / 8) },
      ],
    },
  },
  corrupt: {
    onnx: noise(2048, 42),
    manifest: { name: 'corrupt', ...base, backends: ['cpu', 'wasm'], timeout_ms: 1000 },
  },
  badmanifest: {
    manifest: { name: 'Bad Manifest!', version: 1, task: 'image', file: 'model.onnx', backends: [], timeout_ms: -5 },
  },
}

/** JSON with arrays of plain values kept on one line, so the warm-up data stays readable. */
function formatJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2).replace(/\[[^[\]{}]*\]/g, (s) => JSON.stringify(JSON.parse(s)))}\n`
}

async function main(outDir = 'test/fixtures/models') {
  for (const [name, fixture] of Object.entries(fixtures)) {
    const dir = join(outDir, name)
    await rm(dir, { recursive: true, force: true })
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'manifest.json'), formatJson(fixture.manifest))
    if (fixture.onnx) await writeFile(join(dir, 'model.onnx'), fixture.onnx)
    console.log(`wrote ${dir}`)
  }
}

await main(process.argv[2])
