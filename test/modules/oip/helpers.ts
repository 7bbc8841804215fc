import { expect } from 'bun:test'
import type { OipModel } from '../../../src/modules/oip/model'

/**
 * Requests and responses as OIP clients build and read them. `binaryRequest` lays a body out exactly as
 * tritonclient's `_get_inference_request` does (compact JSON, then each input's bytes in order, the JSON's
 * length in `Inference-Header-Content-Length`, and no Content-Type, which tritonclient never sets); `readResponse`
 * reads one as tritonclient's `InferResult` does (the header, then `binary_data_size` bytes per binary output).
 */

export const text = (s: string) => new TextEncoder().encode(s)

export function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let offset = 0
  for (const p of parts) {
    out.set(p, offset)
    offset += p.byteLength
  }
  return out
}

/** The bytes of a typed array, as numpy's `tobytes()` gives them on a little-endian host. */
export const raw = (array: ArrayBufferView) => new Uint8Array(array.buffer, array.byteOffset, array.byteLength)

export function binaryRequest(path: string, json: string, parts: Uint8Array[], headers: Record<string, string> = {}): Request {
  return new Request(`http://localhost${path}`, {
    method: 'POST',
    headers: { ...headers, 'inference-header-content-length': String(json.length) },
    body: concat(text(json), ...parts),
  })
}

export interface OipResponse {
  status: number
  headers: Headers
  header: OipModel.inferResponse
  /** Binary outputs by name. */
  parts: Record<string, Uint8Array>
}

export async function readResponse(response: Response): Promise<OipResponse> {
  const bytes = new Uint8Array(await response.arrayBuffer())
  const length = response.headers.get('inference-header-content-length')
  const headerLength = length === null ? bytes.byteLength : Number(length)
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(0, headerLength)))
  const parts: Record<string, Uint8Array> = {}
  let offset = headerLength
  for (const output of header.outputs ?? []) {
    const size = output.parameters?.binary_data_size
    if (size === undefined) continue
    parts[output.name] = bytes.slice(offset, offset + size)
    offset += size
  }
  expect(offset).toBe(bytes.byteLength)
  return { status: response.status, headers: response.headers, header, parts }
}
