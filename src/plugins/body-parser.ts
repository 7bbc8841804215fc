import { Elysia } from 'elysia'
import { PayloadTooLargeError, UnsupportedMediaTypeError, ValidationError } from '../errors'
import { HEADER_LENGTH_HEADER, splitBody } from '../inference/oip-binary'
import type { RouteLookup } from './route-lookup'
import { seedOf } from './seed'

export interface BodyParserOptions {
  maxJsonBytes: number
  maxUploadBytes: number
  /** Deepest nesting accepted in a JSON body; deeper documents are refused before validation. */
  maxJsonDepth?: number
  /** The route's declared hooks: a route with neither a body schema nor a documented requestBody takes no body. */
  findRoute?: RouteLookup
}

type BodyKind = 'json' | 'form' | 'multipart' | 'binary'

/**
 * OpenAPI extension a route sets in `detail` to take an Open Inference Protocol infer body: JSON, or the JSON
 * header followed by binary tensor data (`Inference-Header-Content-Length`). Its handler receives an `OipBody`.
 */
export const OIP_BODY_EXTENSION = 'x-oip-infer-body'

/** What an OIP infer route receives: the parsed JSON header and the binary tensor data after it (empty when none). */
export interface OipBody {
  header: unknown
  binary: Uint8Array
}

/** Which parser a Content-Type gets, or undefined for types vireo does not accept. */
export function bodyKind(contentType: string | null): BodyKind | undefined {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase()
  if (type === 'application/json' || type.endsWith('+json')) return 'json'
  if (type === 'multipart/form-data') return 'multipart'
  if (type === 'application/x-www-form-urlencoded') return 'form'
  if (type.startsWith('audio/') || type === 'application/octet-stream') return 'binary'
  return undefined
}

/**
 * Read a body stream, stopping as soon as it passes `limit` bytes, so neither a false
 * Content-Length nor a chunked body can make vireo buffer more than the limit.
 */
export async function readLimited(request: Request, limit: number): Promise<Uint8Array> {
  const declared = Number(request.headers.get('content-length') ?? Number.NaN)
  if (declared > limit) throw new PayloadTooLargeError(limit)
  if (!request.body) return new Uint8Array(0)
  // A declared length within the limit binds the body (the runtime reads no more than it declares), so it is read in
  // one native call: a stream reader cost 7–10 µs more of server CPU per 11 KB body (a one-frame /infer) here.
  if (declared >= 0) return new Uint8Array(await request.arrayBuffer())
  const reader = request.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > limit) {
      await reader.cancel().catch(() => {})
      throw new PayloadTooLargeError(limit)
    }
    chunks.push(value)
  }
  if (chunks.length === 1) return chunks[0]!
  const bytes = new Uint8Array(size)
  let offset = 0
  for (const chunk of chunks) {
    bytes.set(chunk, offset)
    offset += chunk.byteLength
  }
  return bytes
}

/**
 * Nesting depth of a parsed JSON value, walked without recursion. Only objects and arrays are stacked, and arrays
 * are read by index: a tensor's thousands of numbers cost one type check each, with no allocation.
 */
export function jsonDepth(value: unknown): number {
  if (value === null || typeof value !== 'object') return 0
  let deepest = 0
  const nodes: object[] = [value]
  const depths: number[] = [1]
  while (nodes.length) {
    const node = nodes.pop()!
    const depth = depths.pop()!
    if (depth > deepest) deepest = depth
    // Object.values, not `for in`: an own "__proto__" key (JSON.parse makes one) is read as itself.
    const children: unknown[] = Array.isArray(node) ? node : Object.values(node)
    for (let i = 0; i < children.length; i++) {
      const child = children[i]
      if (child !== null && typeof child === 'object') {
        nodes.push(child)
        depths.push(depth + 1)
      }
    }
  }
  return deepest
}

function parseJson(bytes: Uint8Array, maxDepth: number): unknown {
  if (bytes.byteLength === 0) throw new ValidationError('The request body is empty; send a JSON document')
  let value: unknown
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
    value = JSON.parse(text)
  } catch (error) {
    throw new ValidationError(`The request body is not valid JSON: ${(error as Error).message}`)
  }
  if (jsonDepth(value) > maxDepth) throw new ValidationError(`The JSON body is nested deeper than ${maxDepth} levels`)
  // JSON.parse makes "__proto__" an own key, which schemas that refuse unknown fields do not all see; no vireo
  // document has such a field, so it is refused here, once, for every route.
  if (text.includes('"__proto__"') && hasProtoKey(value))
    throw new ValidationError('The JSON body has a "__proto__" field', [{ path: '/__proto__', message: 'unknown field' }])
  return value
}

function hasProtoKey(value: unknown): boolean {
  const stack = [value]
  while (stack.length) {
    const node = stack.pop()
    if (node === null || typeof node !== 'object') continue
    if (Object.hasOwn(node, '__proto__')) return true
    for (const child of Object.values(node)) stack.push(child)
  }
  return false
}

async function parseMultipart(bytes: Uint8Array, contentType: string): Promise<Record<string, unknown>> {
  let form: FormData
  try {
    form = await new Response(bytes as Uint8Array<ArrayBuffer>, { headers: { 'content-type': contentType } }).formData()
  } catch {
    throw new ValidationError('The multipart body could not be read; check the boundary and the parts')
  }
  const body: Record<string, unknown> = {}
  for (const [name, value] of form.entries()) body[name] = value
  return body
}

/**
 * An OIP infer body. The protocol names no Content-Type and tritonclient sends none, so none, JSON and
 * application/octet-stream are all taken. With binary data the whole body may reach the upload limit; the JSON
 * header alone never passes the JSON limit.
 */
async function parseOipBody(
  request: Request,
  contentType: string,
  limits: { json: number; upload: number; depth: number },
): Promise<OipBody> {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase()
  if (type && bodyKind(type) !== 'json' && type !== 'application/octet-stream')
    throw new UnsupportedMediaTypeError(
      `Content-Type "${contentType}" is not accepted here; send application/json, or application/octet-stream with Inference-Header-Content-Length`,
    )
  const headerLength = request.headers.get(HEADER_LENGTH_HEADER)
  const bytes = await readLimited(request, headerLength === null ? limits.json : limits.upload)
  const { json, binary } = splitBody(bytes, headerLength)
  if (json.byteLength > limits.json) throw new PayloadTooLargeError(limits.json)
  return { header: parseJson(json, limits.depth), binary }
}

/**
 * The only body parser: JSON, multipart, url-encoded forms and raw audio/binary, each read
 * under its byte limit and answered with the error envelope when too large or malformed.
 * @example app.use(bodyParser({ maxJsonBytes: 1 << 20, maxUploadBytes: 50 << 20 }))
 */
export const bodyParser = (options: BodyParserOptions) => {
  const { maxJsonBytes, maxUploadBytes, maxJsonDepth = 64, findRoute } = options
  return new Elysia({ name: 'vireo.body-parser', seed: seedOf(maxJsonBytes, maxUploadBytes, maxJsonDepth, findRoute) }).onParse(
    { as: 'global' },
    async function parseBody({ request, contentType, route }) {
      const hooks = findRoute?.(request.method, route)?.hooks
      // A route that takes no body ignores what was sent, its type included, without reading it.
      if (hooks && !hooks.body && !hooks.detail?.requestBody) {
        await request.body?.cancel().catch(() => {})
        return null
      }
      if (hooks?.detail?.[OIP_BODY_EXTENSION])
        return parseOipBody(request, contentType, { json: maxJsonBytes, upload: maxUploadBytes, depth: maxJsonDepth })
      const kind = bodyKind(contentType)
      // No body bytes (Bun's and undici's fetch send Content-Length: 0 on a bodiless DELETE): no media type to refuse.
      // An empty JSON document is still refused below, with a message saying so.
      const empty = request.body === null || request.headers.get('content-length') === '0'
      if (empty && kind !== 'json') return null
      if (!contentType && !request.headers.get('content-length') && !request.headers.get('transfer-encoding')) return null
      if (!kind)
        throw new UnsupportedMediaTypeError(
          `Content-Type "${contentType}" is not accepted; send application/json, multipart/form-data or an audio/* body`,
        )
      const bytes = await readLimited(request, kind === 'json' || kind === 'form' ? maxJsonBytes : maxUploadBytes)
      if (kind === 'json') return parseJson(bytes, maxJsonDepth)
      if (kind === 'multipart') return parseMultipart(bytes, request.headers.get('content-type') ?? contentType)
      if (kind === 'form') return Object.fromEntries(new URLSearchParams(new TextDecoder().decode(bytes)))
      return bytes
    },
  )
}
