import { describe, expect, it } from 'bun:test'
import { ValidationError } from '../../src/errors'
import {
  decodeBytes,
  decodeInputs,
  decodeTensor,
  ELEMENT_BYTES,
  encodeBody,
  encodeBytes,
  encodeTensor,
  oipDatatype,
  splitBody,
} from '../../src/inference/oip-binary'

const bytes = (...values: number[]) => Uint8Array.from(values)
const text = (s: string) => new TextEncoder().encode(s)

/** The issues of the ValidationError that `work` throws. */
function issuesOf(work: () => unknown): { path: string; message: string }[] {
  try {
    work()
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError)
    return ((error as ValidationError).details as { path: string; message: string }[]) ?? []
  }
  throw new Error('expected a ValidationError')
}

describe('splitBody', () => {
  it('takes the whole body as JSON when there is no Inference-Header-Content-Length', () => {
    const body = text('{"a":1}')
    expect(splitBody(body, null)).toEqual({ json: body, binary: new Uint8Array(0) })
  })

  it('cuts the header at the given length and leaves the rest as binary data', () => {
    const { json, binary } = splitBody(bytes(123, 125, 1, 2, 3), '2')
    expect([...json]).toEqual([123, 125])
    expect([...binary]).toEqual([1, 2, 3])
  })

  it('refuses a length past the end of the body, a non-number and a raw binary request (0), each with 400', () => {
    expect(() => splitBody(bytes(1, 2, 3), '4')).toThrow('the JSON header is 4 bytes, but the whole body is 3 bytes')
    expect(() => splitBody(bytes(1), '-1')).toThrow('must be a whole number of bytes')
    expect(() => splitBody(bytes(1), '1e3')).toThrow('must be a whole number of bytes')
    expect(() => splitBody(bytes(1), '0')).toThrow('raw binary request')
    for (const value of ['4', 'x', '0']) expect(() => splitBody(bytes(1, 2, 3), value)).toThrow(ValidationError)
  })
})

describe('decodeTensor', () => {
  it('reads little-endian, row-major values of every datatype vireo carries, byte for byte', () => {
    expect(decodeTensor('FP32', [1, 2], bytes(0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0))).toEqual(Float32Array.of(1, -2))
    expect(decodeTensor('FP64', [1], bytes(0, 0, 0, 0, 0, 0, 0xf0, 0x3f))).toEqual(Float64Array.of(1))
    expect(decodeTensor('INT8', [2], bytes(0x80, 0x7f))).toEqual(Int8Array.of(-128, 127))
    expect(decodeTensor('INT16', [1], bytes(0xfe, 0xff))).toEqual(Int16Array.of(-2))
    expect(decodeTensor('INT32', [1], bytes(0x01, 0x02, 0x03, 0x04))).toEqual(Int32Array.of(0x04030201))
    expect(decodeTensor('INT64', [1], bytes(0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))).toEqual(BigInt64Array.of(-2n))
    expect(decodeTensor('INT64', [1], bytes(1, 0, 0, 0, 0, 0, 0x20, 0))).toEqual(BigInt64Array.of(2n ** 53n + 1n))
    expect(decodeTensor('UINT8', [1], bytes(255))).toEqual(Uint8Array.of(255))
    expect(decodeTensor('UINT16', [1], bytes(0xff, 0xff))).toEqual(Uint16Array.of(65535))
    expect(decodeTensor('UINT32', [1], bytes(0xff, 0xff, 0xff, 0xff))).toEqual(Uint32Array.of(4294967295))
    expect(decodeTensor('BOOL', [3], bytes(1, 0, 1))).toEqual(Uint8Array.of(1, 0, 1))
  })

  it('keeps NaN and infinities, which binary data can carry', () => {
    const values = decodeTensor('FP32', [3], new Uint8Array(Float32Array.of(Number.NaN, Infinity, -Infinity).buffer)) as Float32Array
    expect(Number.isNaN(values[0])).toBe(true)
    expect([values[1], values[2]]).toEqual([Infinity, -Infinity])
  })

  it('copies into an aligned buffer of its own, whatever the offset in the body', () => {
    const body = bytes(9, 0, 0, 0x80, 0x3f)
    const values = decodeTensor('FP32', [1], body.subarray(1)) as Float32Array
    expect(values).toEqual(Float32Array.of(1))
    expect(values.buffer.byteLength).toBe(4)
  })

  it('refuses a size that does not match shape × datatype, naming both', () => {
    expect(() => decodeTensor('FP32', [2, 2], new Uint8Array(12), 'x')).toThrow(
      '"x" is FP32 [2,2]: 4 × 4 = 16 bytes, but binary_data_size is 12',
    )
    expect(() => decodeTensor('INT64', [], new Uint8Array(4), 'n')).toThrow('1 × 8 = 8 bytes')
  })

  it('refuses BOOL bytes other than 0 and 1', () => {
    expect(() => decodeTensor('BOOL', [2], bytes(1, 2), 'flag')).toThrow('byte 1 is 2')
  })

  it('size-checks the datatypes vireo cannot carry and leaves them undecoded', () => {
    expect(decodeTensor('FP16', [2], new Uint8Array(4))).toBeNull()
    expect(decodeTensor('UINT64', [1], new Uint8Array(8))).toBeNull()
    expect(() => decodeTensor('BF16', [2], new Uint8Array(3))).toThrow('2 × 2 = 4 bytes')
    expect(() => decodeTensor('COMPLEX', [1], new Uint8Array(8))).toThrow('has no binary form')
  })

  it('sizes every fixed-size datatype of the protocol by the bits in its name, and decodes those vireo carries to that width', () => {
    const fixedSize = ['BOOL', 'UINT8', 'INT8', 'UINT16', 'INT16', 'FP16', 'BF16', 'UINT32', 'INT32', 'FP32', 'UINT64', 'INT64', 'FP64']
    expect(Object.keys(ELEMENT_BYTES).sort()).toEqual(fixedSize.sort())
    for (const datatype of fixedSize) {
      const width = Number(/\d+$/.exec(datatype)?.[0] ?? 8) / 8
      expect(ELEMENT_BYTES[datatype]).toBe(width)
      expect(() => decodeTensor(datatype, [3], new Uint8Array(3 * width - 1))).toThrow(`3 × ${width} = ${3 * width} bytes`)
      const decoded = decodeTensor(datatype, [3], new Uint8Array(3 * width))
      // FP16, BF16 and UINT64 are size-checked only (null): the model check refuses them with its own message.
      if (decoded !== null) expect([(decoded as Uint8Array).BYTES_PER_ELEMENT, decoded.length]).toEqual([width, 3])
    }
  })
})

describe('BYTES elements', () => {
  it('are a 4-byte little-endian length followed by the bytes', () => {
    expect([...encodeBytes(['ab', '', 'é'])]).toEqual([2, 0, 0, 0, 0x61, 0x62, 0, 0, 0, 0, 2, 0, 0, 0, 0xc3, 0xa9])
    const long = new Uint8Array(300).fill(7)
    expect([...encodeBytes([long]).subarray(0, 4)]).toEqual([0x2c, 0x01, 0, 0])
  })

  it('decode back to the same elements', () => {
    const wire = encodeBytes(['ab', '', 'é'])
    expect(decodeBytes(wire, 3).map((e) => new TextDecoder().decode(e))).toEqual(['ab', '', 'é'])
    expect(decodeTensor('BYTES', [1, 3], wire)).toEqual(decodeBytes(wire, 3))
  })

  it('refuse a truncated length, a length past the end and a count that does not match the shape', () => {
    expect(() => decodeBytes(bytes(2, 0), 1, 's')).toThrow('element 0 has 2 bytes where its 4-byte length should be')
    expect(() => decodeBytes(bytes(5, 0, 0, 0, 1), 1, 's')).toThrow('element 0 says 5 bytes, but only 1 remain')
    expect(() => decodeBytes(encodeBytes(['a', 'b']), 3, 's')).toThrow('3 elements by its shape, but its data holds 2')
  })
})

describe('decodeInputs', () => {
  const fp32 = (name: string, size?: number, data?: number[]) => ({
    name,
    datatype: 'FP32',
    shape: [2],
    ...(size === undefined ? {} : { parameters: { binary_data_size: size } }),
    ...(data ? { data } : {}),
  })

  it('slices the binary data among the inputs that declare a size, in order, leaving JSON inputs alone', () => {
    const binary = new Uint8Array([...new Uint8Array(Float32Array.of(1, 2).buffer), ...new Uint8Array(Float32Array.of(3, 4).buffer)])
    const decoded = decodeInputs([fp32('a', 8), fp32('b', undefined, [5, 6]), fp32('c', 8)], binary)
    expect(decoded).toEqual([Float32Array.of(1, 2), undefined, Float32Array.of(3, 4)])
  })

  it('accounts for every byte: a size past the end and bytes left over are both 400', () => {
    expect(issuesOf(() => decodeInputs([fp32('a', 8), fp32('b', 8)], new Uint8Array(12)))).toEqual([
      {
        path: '/inputs/1/parameters/binary_data_size',
        message: 'Input "b" needs 8 bytes of binary data, but only 4 remain after the header and the inputs before it',
      },
    ])
    expect(issuesOf(() => decodeInputs([fp32('a', 8)], new Uint8Array(10)))[0]!.message).toContain(
      '2 bytes of binary data follow the last input',
    )
  })

  it('refuses an input with both data and a size, one with neither, and a size that is not a whole number', () => {
    const issues = issuesOf(() =>
      decodeInputs(
        [
          fp32('a', 8, [1, 2]),
          { name: 'b', datatype: 'FP32', shape: [2] },
          { name: 'c', datatype: 'FP32', shape: [2], parameters: { binary_data_size: 1.5 } },
        ],
        new Uint8Array(0),
      ),
    )
    expect(issues.map((i) => i.path)).toEqual(['/inputs/0/data', '/inputs/1/data', '/inputs/2/parameters/binary_data_size'])
  })

  it('reports a size that does not fit the shape at the input it belongs to', () => {
    expect(issuesOf(() => decodeInputs([fp32('a', 4)], new Uint8Array(4)))).toEqual([
      { path: '/inputs/0/parameters/binary_data_size', message: '"a" is FP32 [2]: 2 × 4 = 8 bytes, but binary_data_size is 4' },
    ])
  })
})

describe('encoding responses', () => {
  it('writes each datatype from its JSON values, losslessly', () => {
    expect([...encodeTensor('FP32', [1, -2])]).toEqual([0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0])
    const special = [...new Float32Array(encodeTensor('FP32', ['NaN', 'Infinity', '-Infinity']).buffer)]
    expect(Number.isNaN(special[0])).toBe(true)
    expect(special.slice(1)).toEqual([Infinity, -Infinity])
    expect([...encodeTensor('INT64', ['9007199254740993'])]).toEqual([1, 0, 0, 0, 0, 0, 0x20, 0])
    expect([...encodeTensor('INT64', [-2])]).toEqual([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    expect([...encodeTensor('BOOL', [true, false])]).toEqual([1, 0])
    expect([...encodeTensor('UINT16', [65535])]).toEqual([0xff, 0xff])
    expect([...encodeTensor('INT8', [-128])]).toEqual([0x80])
    expect([...encodeTensor('BYTES', ['ab'])]).toEqual([2, 0, 0, 0, 0x61, 0x62])
    expect(() => encodeTensor('FP16', [1])).toThrow('cannot be sent as binary data')
  })

  it('puts the JSON header first and the parts after it, and says how long the header is', () => {
    const { body, headerLength } = encodeBody({ outputs: [] }, [bytes(1, 2), bytes(3)])
    expect(headerLength).toBe('{"outputs":[]}'.length)
    expect(new TextDecoder().decode(body.subarray(0, headerLength))).toBe('{"outputs":[]}')
    expect([...body.subarray(headerLength)]).toEqual([1, 2, 3])
  })

  it('counts the header in bytes, not characters', () => {
    expect(encodeBody({ id: 'é' }, []).headerLength).toBe(new TextEncoder().encode('{"id":"é"}').byteLength)
  })
})

describe('oipDatatype', () => {
  it('names onnxruntime types in the protocol', () => {
    expect(['FP32', 'float16', 'bfloat16', 'uint64', 'string', 'complex64'].map(oipDatatype)).toEqual([
      'FP32',
      'FP16',
      'BF16',
      'UINT64',
      'BYTES',
      'COMPLEX64',
    ])
  })
})
