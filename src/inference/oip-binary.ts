import { type FieldIssue, ValidationError } from '../errors'
import { elementCount, formatShape, isDatatype, TYPED_ARRAYS, type TypedArray, toRawTensor } from './tensors'

/**
 * The Open Inference Protocol's binary tensor data extension (Triton's `extension_binary_data.md`): a body is
 * the JSON inference header followed by the raw bytes of some tensors, `Inference-Header-Content-Length` giving
 * the header's length and each tensor's `binary_data_size` parameter its share of the bytes, in the order the
 * tensors appear in the JSON. Data is little-endian and row-major; BOOL is one byte (0 or 1); a BYTES element
 * is a 4-byte little-endian length followed by that many bytes. Pure: no I/O, so every byte is tested exactly.
 */

/** The header naming the JSON part's length; Content-Length keeps giving the whole body's. */
export const HEADER_LENGTH_HEADER = 'inference-header-content-length'

/** Bytes per element of every fixed-size datatype the protocol names; BYTES is variable (length-prefixed). */
export const ELEMENT_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1,
  UINT8: 1,
  INT8: 1,
  UINT16: 2,
  INT16: 2,
  FP16: 2,
  BF16: 2,
  UINT32: 4,
  INT32: 4,
  FP32: 4,
  UINT64: 8,
  INT64: 8,
  FP64: 8,
}

// Typed arrays read and write in the host's byte order; every host Bun and Deno run on (x86-64, arm64) is
// little-endian, as the wire is. A big-endian host would corrupt every tensor silently, so it is refused at once.
if (new Uint8Array(Uint16Array.of(1).buffer)[0] !== 1) throw new Error('oip-binary: a big-endian host is not supported')

const EMPTY = new Uint8Array(0)

/**
 * Split a request body into its JSON header and the binary data after it. `headerLength` is the raw
 * `Inference-Header-Content-Length` value, or null when the body is JSON alone.
 * @example splitBody(bytes, '123') // { json: bytes[0, 123), binary: bytes[123, end) }
 */
export function splitBody(body: Uint8Array, headerLength: string | null): { json: Uint8Array; binary: Uint8Array } {
  if (headerLength === null) return { json: body, binary: EMPTY }
  const text = headerLength.trim()
  if (!/^\d{1,15}$/.test(text))
    throw new ValidationError(`Inference-Header-Content-Length must be a whole number of bytes; got "${headerLength.slice(0, 32)}"`)
  const length = Number(text)
  if (length === 0)
    throw new ValidationError(
      'Inference-Header-Content-Length is 0 (a raw binary request), which vireo does not take; send the JSON inference header first',
    )
  if (length > body.byteLength)
    throw new ValidationError(
      `Inference-Header-Content-Length says the JSON header is ${length} bytes, but the whole body is ${body.byteLength} bytes`,
    )
  return { json: body.subarray(0, length), binary: body.subarray(length) }
}

/** One tensor of a request as far as the binary extension cares: its place in the JSON and its parameters. */
export interface BinaryTensorRef {
  name: string
  datatype: string
  shape: readonly number[]
  parameters?: Readonly<Record<string, unknown>>
  data?: unknown
}

/** A tensor decoded from binary data: a typed array for the datatypes vireo carries, BYTES as its elements. */
export type DecodedTensor = TypedArray | Uint8Array[]

/**
 * Slice the binary data among the inputs that declare `binary_data_size`, in order, and decode each one.
 * Returns one entry per input (undefined for inputs whose data is in the JSON). Every byte must be accounted
 * for, and each size must be exactly shape × datatype; anything else is a 400 naming the input.
 * Datatypes vireo cannot carry (FP16, BF16, UINT64) are size-checked and left undecoded (null): the model
 * check that follows refuses them with its own message.
 */
export function decodeInputs(inputs: readonly BinaryTensorRef[], binary: Uint8Array): (DecodedTensor | null | undefined)[] {
  const issues: FieldIssue[] = []
  let offset = 0
  const decoded = inputs.map((input, index): DecodedTensor | null | undefined => {
    const at = `/inputs/${index}`
    const size = input.parameters?.binary_data_size
    if (size === undefined) {
      if (input.data === undefined)
        issues.push({
          path: `${at}/data`,
          message: `Input "${input.name}" has no data: give "data", or binary data with "binary_data_size"`,
        })
      return undefined
    }
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      issues.push({ path: `${at}/parameters/binary_data_size`, message: 'binary_data_size must be a whole number of bytes ≥ 0' })
      return undefined
    }
    if (input.data !== undefined) {
      issues.push({ path: `${at}/data`, message: `Input "${input.name}" has both "data" and "binary_data_size"; send one` })
      return undefined
    }
    if (offset + size > binary.byteLength) {
      issues.push({
        path: `${at}/parameters/binary_data_size`,
        message: `Input "${input.name}" needs ${size} bytes of binary data, but only ${binary.byteLength - offset} remain after the header and the inputs before it`,
      })
      offset = binary.byteLength
      return undefined
    }
    const bytes = binary.subarray(offset, offset + size)
    offset += size
    try {
      return decodeTensor(input.datatype, input.shape, bytes, input.name)
    } catch (error) {
      issues.push({ path: `${at}/parameters/binary_data_size`, message: (error as Error).message })
      return undefined
    }
  })
  if (!issues.length && offset < binary.byteLength)
    issues.push({
      path: '/inputs',
      message: `${binary.byteLength - offset} bytes of binary data follow the last input; the binary_data_size of the inputs must add up to the bytes sent`,
    })
  if (issues.length) throw new ValidationError('The binary tensor data does not match the inference header', issues)
  return decoded
}

/**
 * One tensor's bytes as a typed array (copied, so it is aligned and owns its buffer: it can be transferred to a
 * worker). Throws a RangeError whose message a client can act on when the size does not fit the shape.
 */
export function decodeTensor(datatype: string, shape: readonly number[], bytes: Uint8Array, name = 'tensor'): DecodedTensor | null {
  const count = elementCount(shape)
  if (datatype === 'BYTES') return decodeBytes(bytes, count, name)
  const width = ELEMENT_BYTES[datatype]
  if (width === undefined) throw new RangeError(`Datatype "${datatype}" of "${name}" has no binary form; use one the protocol names`)
  if (bytes.byteLength !== count * width)
    throw new RangeError(
      `"${name}" is ${datatype} ${formatShape(shape)}: ${count} × ${width} = ${count * width} bytes, but binary_data_size is ${bytes.byteLength}`,
    )
  if (!isDatatype(datatype)) return null
  const copy = bytes.slice().buffer
  if (datatype === 'BOOL') {
    const values = new Uint8Array(copy)
    const bad = values.findIndex((v) => v > 1)
    if (bad >= 0) throw new RangeError(`"${name}" is BOOL, whose bytes are 0 or 1; byte ${bad} is ${values[bad]}`)
    return values
  }
  return new TYPED_ARRAYS[datatype](copy)
}

/** BYTES elements: each a 4-byte little-endian length and then its bytes, exactly `count` of them filling `bytes`. */
export function decodeBytes(bytes: Uint8Array, count: number, name = 'tensor'): Uint8Array[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const elements: Uint8Array[] = []
  let offset = 0
  while (offset < bytes.byteLength) {
    if (offset + 4 > bytes.byteLength)
      throw new RangeError(
        `"${name}" is BYTES: element ${elements.length} has ${bytes.byteLength - offset} bytes where its 4-byte length should be`,
      )
    const length = view.getUint32(offset, true)
    offset += 4
    if (offset + length > bytes.byteLength)
      throw new RangeError(
        `"${name}" is BYTES: element ${elements.length} says ${length} bytes, but only ${bytes.byteLength - offset} remain`,
      )
    elements.push(bytes.slice(offset, offset + length))
    offset += length
  }
  if (elements.length !== count)
    throw new RangeError(`"${name}" is BYTES with ${count} elements by its shape, but its data holds ${elements.length}`)
  return elements
}

/** BYTES elements in their wire form (4-byte little-endian length, then the bytes). */
export function encodeBytes(elements: readonly (Uint8Array | string)[]): Uint8Array {
  const parts = elements.map((e) => (typeof e === 'string' ? new TextEncoder().encode(e) : e))
  const out = new Uint8Array(parts.reduce((n, p) => n + 4 + p.byteLength, 0))
  const view = new DataView(out.buffer)
  let offset = 0
  for (const part of parts) {
    view.setUint32(offset, part.byteLength, true)
    out.set(part, offset + 4)
    offset += 4 + part.byteLength
  }
  return out
}

/**
 * An output's JSON values (as `toOutput` in tensors.ts writes them: numbers, INT64 maybe as decimal strings,
 * non-finite floats as "NaN"/"Infinity", BOOL as true/false) in their binary form. Lossless: every value came
 * from a typed array of this datatype.
 */
export function encodeTensor(datatype: string, data: readonly unknown[]): Uint8Array {
  if (datatype === 'BYTES') return encodeBytes(data.map(String))
  if (!isDatatype(datatype)) throw new RangeError(`Datatype "${datatype}" cannot be sent as binary data by vireo`)
  // The same conversion as a JSON input's: "NaN"/"Infinity" strings read as numbers, INT64 strings as BigInt.
  const array = toRawTensor(datatype, [data.length], data).data
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength)
}

/**
 * A response body: the JSON header, then each binary part in order. Returns the body and the header's
 * length in bytes, for `Inference-Header-Content-Length`.
 * @example const { body, headerLength } = encodeBody({ outputs }, [bytes])
 */
export function encodeBody(header: unknown, parts: readonly Uint8Array[]): { body: Uint8Array; headerLength: number } {
  const json = new TextEncoder().encode(JSON.stringify(header))
  const body = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, json.byteLength))
  body.set(json, 0)
  let offset = json.byteLength
  for (const part of parts) {
    body.set(part, offset)
    offset += part.byteLength
  }
  return { body, headerLength: json.byteLength }
}

/** OIP datatype names for the onnxruntime types vireo reports but cannot carry, so metadata speaks the protocol. */
const ORT_NAMES: Readonly<Record<string, string>> = { float16: 'FP16', bfloat16: 'BF16', uint64: 'UINT64', string: 'BYTES' }

/** The protocol's name for a datatype as the registry reports it (an OIP name already, or an onnxruntime type). */
export function oipDatatype(reported: string): string {
  return isDatatype(reported) ? reported : (ORT_NAMES[reported] ?? reported.toUpperCase())
}
