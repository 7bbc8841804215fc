import { describe, expect, it } from 'bun:test'
import { ValidationError } from '../../src/errors'
import { type InferRequest, normaliseShape, type TensorInfo, toOutput, validateInferRequest } from '../../src/inference/tensors'

const inputs: TensorInfo[] = [
  { name: 'x', datatype: 'FP32', ortType: 'float32', shape: [1, 4] },
  { name: 'n', datatype: 'INT64', ortType: 'int64', shape: [-1, 2] },
]
const outputs: TensorInfo[] = [{ name: 'y', datatype: 'FP32', ortType: 'float32', shape: [1, 4] }]
const options = { model: 'arith', inputs, outputs, maxElements: 100 }
const good = (): { inputs: InferRequest['inputs'] } => ({
  inputs: [
    { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] },
    { name: 'n', shape: [1, 2], datatype: 'INT64', data: [1, 2] },
  ],
})

function issues(request: InferRequest, opts = options) {
  try {
    validateInferRequest(request, opts)
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError)
    return (error as ValidationError).details as { path: string; message: string }[]
  }
  throw new Error('expected a ValidationError')
}

function edit(fn: (r: ReturnType<typeof good>) => void): InferRequest {
  const r = good()
  fn(r)
  return r
}

describe('tensor validation', () => {
  it('converts a valid request to typed arrays', () => {
    const feeds = validateInferRequest(good(), options)
    expect(feeds.x).toEqual({ type: 'float32', data: Float32Array.from([1, 2, 3, 4]), dims: [1, 4] })
    expect(feeds.n!.data).toEqual(BigInt64Array.from([1n, 2n]))
  })

  it('names an unknown input and lists the real ones', () => {
    const found = issues(edit((r) => (r.inputs[0]!.name = 'z')))
    expect(found[0]).toEqual({ path: '/inputs/0/name', message: 'Model "arith" has no input "z"; its inputs are: x, n' })
    expect(found[1]!.message).toContain('Input "x" (FP32 [1,4]) is required')
  })

  it('reports a missing input and a repeated one', () => {
    expect(issues({ inputs: [good().inputs[0]!] })).toEqual([{ path: '/inputs', message: 'Input "n" (INT64 [?,2]) is required' }])
    const twice = issues({ inputs: [...good().inputs, good().inputs[0]!] })
    expect(twice[0]!.path).toBe('/inputs/2/name')
  })

  it('refuses an unsupported datatype and one the model does not take', () => {
    expect(issues(edit((r) => (r.inputs[0]!.datatype = 'FP16')))[0]!.message).toStartWith(
      'Datatype "FP16" is not supported; use one of FP32',
    )
    expect(issues(edit((r) => (r.inputs[0]!.datatype = 'INT32')))[0]).toEqual({
      path: '/inputs/0/datatype',
      message: 'Input "x" takes FP32, not INT32',
    })
  })

  it('checks rank and fixed dimensions but lets dynamic ones through', () => {
    expect(issues(edit((r) => (r.inputs[0]!.shape = [4])))[0]).toEqual({
      path: '/inputs/0/shape',
      message: 'Input "x" has rank 2 ([1,4]); got rank 1 ([4])',
    })
    expect(issues(edit((r) => (r.inputs[0]!.shape = [2, 2])))).toEqual([
      { path: '/inputs/0/shape/0', message: 'Dimension 0 of input "x" must be 1 ([1,4]); got 2' },
      { path: '/inputs/0/shape/1', message: 'Dimension 1 of input "x" must be 4 ([1,4]); got 2' },
    ])
    const dyn = validateInferRequest(
      edit((r) => Object.assign(r.inputs[1]!, { shape: [3, 2], data: [1, 2, 3, 4, 5, 6] })),
      options,
    )
    expect(dyn.n!.dims).toEqual([3, 2])
  })

  it('wants exactly as many values as the shape holds', () => {
    expect(issues(edit((r) => r.inputs[0]!.data.pop()))[0]).toEqual({
      path: '/inputs/0/data',
      message: 'Shape [1,4] needs 4 values; got 3 (data is flat, row-major)',
    })
  })

  it('points at non-finite and non-numeric values', () => {
    const found = issues(edit((r) => (r.inputs[0]!.data = [1, Number.NaN, 'x', Number.POSITIVE_INFINITY])))
    expect(found.map((i) => i.path)).toEqual(['/inputs/0/data/1', '/inputs/0/data/2', '/inputs/0/data/3'])
    expect(issues(edit((r) => (r.inputs[0]!.data = [1, 2, 3, 1e39])))[0]!.message).toBe('1e+39 is out of range for FP32 (±3.4e38)')
  })

  it('checks integer ranges per datatype', () => {
    const small: TensorInfo[] = [{ name: 'b', datatype: 'UINT8', ortType: 'uint8', shape: [3] }]
    const found = issues({ inputs: [{ name: 'b', shape: [3], datatype: 'UINT8', data: [0, 256, 1.5] }] }, { ...options, inputs: small })
    expect(found).toEqual([
      { path: '/inputs/0/data/1', message: '256 is out of range for UINT8 (0..255)' },
      { path: '/inputs/0/data/2', message: '1.5 is not an integer, as UINT8 needs' },
    ])
    const i8: TensorInfo[] = [{ name: 'b', datatype: 'INT8', ortType: 'int8', shape: [1] }]
    expect(
      issues({ inputs: [{ name: 'b', shape: [1], datatype: 'INT8', data: [-129] }] }, { ...options, inputs: i8 })[0]!.message,
    ).toContain('INT8 (-128..127)')
    const flags: TensorInfo[] = [{ name: 'f', datatype: 'BOOL', ortType: 'bool', shape: [3] }]
    expect(
      issues({ inputs: [{ name: 'f', shape: [3], datatype: 'BOOL', data: [true, 0, 'yes'] }] }, { ...options, inputs: flags })[0]!.path,
    ).toBe('/inputs/0/data/2')
    const ok = validateInferRequest(
      { inputs: [{ name: 'f', shape: [3], datatype: 'BOOL', data: [true, false, 1] }] },
      { ...options, inputs: flags },
    )
    expect(ok.f!.data).toEqual(Uint8Array.from([1, 0, 1]))
  })

  it('takes large INT64 values only as decimal strings', () => {
    const unsafe = issues(edit((r) => (r.inputs[1]!.data = [2 ** 60, 1])))
    expect(unsafe[0]!.message).toContain('send it as a decimal string')
    expect(issues(edit((r) => (r.inputs[1]!.data = ['9223372036854775808', '1x'])))).toEqual([
      { path: '/inputs/1/data/0', message: '9223372036854775808 is out of range for INT64' },
      { path: '/inputs/1/data/1', message: '"1x" is not a decimal integer string' },
    ])
    const feeds = validateInferRequest(
      edit((r) => (r.inputs[1]!.data = ['9223372036854775807', '-9223372036854775808'])),
      options,
    )
    expect(feeds.n!.data).toEqual(BigInt64Array.from([9223372036854775807n, -9223372036854775808n]))
  })

  it('limits the total number of values', () => {
    const found = issues(edit((r) => Object.assign(r.inputs[1]!, { shape: [60, 2], data: Array(120).fill(0) })))
    expect(found).toEqual([{ path: '/inputs', message: 'The inputs hold 124 values in total; the limit is 100. Split the request' }])
  })

  it('rejects unknown requested outputs', () => {
    expect(issues({ ...good(), outputs: [{ name: 'nope' }] })).toEqual([
      { path: '/outputs/0/name', message: 'Model "arith" has no output "nope"; its outputs are: y' },
    ])
  })
})

describe('tensor output', () => {
  it('keeps INT64 numeric when safe and turns the whole tensor to strings when not', () => {
    expect(toOutput('m', { type: 'int64', data: BigInt64Array.from([1n, -2n]), dims: [2] }).data).toEqual([1, -2])
    expect(toOutput('m', { type: 'int64', data: BigInt64Array.from([1n, 2n ** 60n]), dims: [2] }).data).toEqual([
      '1',
      '1152921504606846976',
    ])
  })

  it('spells out non-finite floats and booleans', () => {
    expect(toOutput('y', { type: 'float32', data: Float32Array.from([1, Number.NaN, Number.NEGATIVE_INFINITY]), dims: [3] })).toEqual({
      name: 'y',
      shape: [3],
      datatype: 'FP32',
      data: [1, 'NaN', '-Infinity'],
    })
    expect(toOutput('b', { type: 'bool', data: Uint8Array.from([1, 0]), dims: [2] }).data).toEqual([true, false])
  })

  it('reads dynamic dimensions from the session as -1', () => {
    expect(normaliseShape([4294967295, 'batch', 3])).toEqual([-1, -1, 3])
    expect(normaliseShape(undefined)).toBeNull()
  })
})
