import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import pkg from '../../../package.json' with { type: 'json' }
import { bearer, body, createKey, createTestApp, req, type TestApp } from '../../helpers'
import { binaryRequest, concat, raw, readResponse, text } from './helpers'

/**
 * Conformance with the Open Inference Protocol, field by field from its documents: KServe's
 * `docs/predict-api/v2/required_api.md` (health, metadata, inference, errors) and Triton's
 * `docs/protocol/extension_binary_data.md` and `extension_statistics.md`. Real models (the generated
 * `alltypes` Identity model carries every datatype vireo supports), real HTTP handling, no mocks.
 */

let t: TestApp
let key: string
const MAX_JSON = 65_536
const MAX_UPLOAD = 262_144
beforeAll(async () => {
  t = await createTestApp({ MAX_JSON_BYTES: String(MAX_JSON), MAX_UPLOAD_BYTES: String(MAX_UPLOAD) })
  key = await createKey(t, ['inference'])
})
afterAll(() => t.close())

const get = (path: string, headers: Record<string, string> = bearer(key)) => t.app.handle(req(path, { headers }))
const post = (path: string, json: unknown, headers: Record<string, string> = bearer(key)) =>
  t.app.handle(req(path, { method: 'POST', json, headers }))

/** Checks the protocol's error object: the status, and `{ "error": <string> }` with nothing else. */
async function expectError(response: Response, status: number, message?: string | RegExp) {
  expect(response.status, `answered ${response.status}: ${await response.clone().text()}`).toBe(status)
  expect(response.headers.get('content-type')).toBe('application/json')
  const json = await body(response)
  expect(Object.keys(json)).toEqual(['error'])
  expect(typeof json.error).toBe('string')
  if (message) expect(json.error).toMatch(message)
  return json.error as string
}

/** Every datatype vireo carries, with edge values, as JSON sends them and as the Identity model returns them. */
const TYPES = [
  { datatype: 'FP32', data: [1.5, -2.25, 0.1, 3e38], out: [1.5, -2.25, Math.fround(0.1), Math.fround(3e38)], array: Float32Array },
  { datatype: 'FP64', data: [1e300, -0.1, 5e-324, 2], out: [1e300, -0.1, 5e-324, 2], array: Float64Array },
  { datatype: 'INT8', data: [-128, 127, 0, -1], out: [-128, 127, 0, -1], array: Int8Array },
  { datatype: 'INT16', data: [-32768, 32767, 0, 1], out: [-32768, 32767, 0, 1], array: Int16Array },
  { datatype: 'INT32', data: [-2147483648, 2147483647, 0, 1], out: [-2147483648, 2147483647, 0, 1], array: Int32Array },
  {
    datatype: 'INT64',
    data: ['-9223372036854775808', '9223372036854775807', '9007199254740993', 0],
    out: ['-9223372036854775808', '9223372036854775807', '9007199254740993', '0'],
    array: BigInt64Array,
  },
  { datatype: 'UINT8', data: [0, 255, 1, 2], out: [0, 255, 1, 2], array: Uint8Array },
  { datatype: 'UINT16', data: [0, 65535, 1, 2], out: [0, 65535, 1, 2], array: Uint16Array },
  { datatype: 'UINT32', data: [0, 4294967295, 1, 2], out: [0, 4294967295, 1, 2], array: Uint32Array },
  { datatype: 'BOOL', data: [true, false, false, true], out: [true, false, false, true], array: Uint8Array },
] as const

/** The little-endian bytes of one datatype's test values. */
function bytesOf(type: (typeof TYPES)[number]): Uint8Array {
  if (type.datatype === 'INT64') return raw(BigInt64Array.from(type.data, (v) => BigInt(v)))
  if (type.datatype === 'BOOL') return Uint8Array.from(type.data, (v) => (v ? 1 : 0))
  return raw((type.array as Float64ArrayConstructor).from(type.data as readonly number[]))
}

const jsonInput = (type: (typeof TYPES)[number]) => ({
  name: type.datatype.toLowerCase(),
  shape: [2, 2],
  datatype: type.datatype,
  data: type.data,
})
const binaryInput = (type: (typeof TYPES)[number]) => ({
  name: type.datatype.toLowerCase(),
  shape: [2, 2],
  datatype: type.datatype,
  parameters: { binary_data_size: bytesOf(type).byteLength },
})

describe('health (required API: server live, server ready)', () => {
  it('answers live and ready with 200 and the bodies KServe reads, without a key', async () => {
    const live = await get('/v2/health/live', {})
    expect(live.status).toBe(200)
    expect(await body(live)).toEqual({ live: true })
    const ready = await get('/v2/health/ready', {})
    expect(ready.status).toBe(200)
    expect(await body(ready)).toEqual({ ready: true })
  })

  it('answers ready 503 with Retry-After once vireo is shutting down, while live stays 200', async () => {
    t.deps.lifecycle.shuttingDown = true
    try {
      const ready = await get('/v2/health/ready', {})
      await expectError(ready, 503, /not ready to serve \(failing: lifecycle\)/)
      expect(ready.headers.get('retry-after')).toBe('5')
      expect((await get('/v2/health/live', {})).status).toBe(200)
    } finally {
      t.deps.lifecycle.shuttingDown = false
    }
  })

  it('carries X-Request-Id, the security headers and API-Version as everywhere, and logs one line', async () => {
    const response = await t.app.handle(req('/v2/health/live', { headers: { 'x-request-id': 'oip-trace-1' } }))
    expect(response.headers.get('x-request-id')).toBe('oip-trace-1')
    expect(response.headers.get('x-content-type-options')).toBe('nosniff')
    expect(response.headers.get('content-security-policy')).toBe("default-src 'none'; frame-ancestors 'none'")
    expect(response.headers.get('cache-control')).toBe('no-store')
    const line = await t.logs.line((l) => l.request_id === 'oip-trace-1' && l.msg === 'request')
    expect(line).toMatchObject({ route: '/v2/health/live', status: 200 })
  })
})

describe('server metadata', () => {
  it('is { name, version, extensions } with the extensions vireo speaks, and public', async () => {
    const response = await get('/v2', {})
    expect(response.status).toBe(200)
    const json = await body(response)
    expect(Object.keys(json)).toEqual(['name', 'version', 'extensions'])
    expect(json).toMatchObject({ name: 'vireo', version: pkg.version })
    expect(json.extensions).toEqual(expect.arrayContaining(['binary_tensor_data', 'statistics']))
  })
})

describe('model metadata', () => {
  const arith = {
    name: 'arith',
    versions: ['1'],
    platform: 'onnxruntime_onnx',
    inputs: [
      { name: 'x', datatype: 'FP32', shape: [1, 4] },
      { name: 'n', datatype: 'INT64', shape: [1, 2] },
    ],
    outputs: [
      { name: 'y', datatype: 'FP32', shape: [1, 4] },
      { name: 'm', datatype: 'INT64', shape: [1, 2] },
    ],
  }

  it('is { name, versions, platform, inputs, outputs }, each tensor { name, datatype, shape }', async () => {
    const response = await get('/v2/models/arith')
    expect(response.status).toBe(200)
    const json = await body(response)
    expect(json).toEqual(arith)
    expect(Object.keys(json)).toEqual(['name', 'versions', 'platform', 'inputs', 'outputs'])
  })

  it('answers the same for the served version and 404 for any other', async () => {
    expect(await body(await get('/v2/models/arith/versions/1'))).toEqual(arith)
    await expectError(
      await get('/v2/models/arith/versions/2'),
      404,
      'Model "arith" has no version "2"; GET /api/v1/models/arith lists its versions',
    )
  })

  it('marks dynamic dimensions -1', async () => {
    const json = await body(await get('/v2/models/dynbatch'))
    expect(json.inputs).toEqual([{ name: 'x', datatype: 'FP32', shape: [-1, 3] }])
    const all = await body(await get('/v2/models/alltypes'))
    expect(all.inputs.map((i: { datatype: string }) => i.datatype)).toEqual(TYPES.map((d) => d.datatype))
    for (const input of all.inputs) expect(input.shape).toEqual([-1, -1])
  })

  it('answers 404 for an unknown model and 503 with the reason for one that failed to load', async () => {
    await expectError(await get('/v2/models/no-such-model'), 404, 'Model "no-such-model" does not exist')
    const failed = await get('/v2/models/corrupt')
    await expectError(failed, 503, /Model "corrupt" failed to load: onnxruntime could not load/)
    expect(failed.headers.get('retry-after')).toBe('60')
  })
})

describe('model ready', () => {
  it('is 200 for a ready model (any or its version), 503 for one that is not, 404 for unknown ones', async () => {
    const ready = await get('/v2/models/arith/ready')
    expect(ready.status).toBe(200)
    expect(await body(ready)).toEqual({ name: 'arith', ready: true })
    expect((await get('/v2/models/arith/versions/1/ready')).status).toBe(200)
    await expectError(await get('/v2/models/arith/versions/7/ready'), 404)
    await expectError(await get('/v2/models/corrupt/ready'), 503, 'failed to load')
    await expectError(await get('/v2/models/nope/ready'), 404)
  })
})

describe('inference, JSON both ways', () => {
  it('runs every datatype vireo supports and returns each value exactly, with model_name, model_version and id', async () => {
    const response = await post('/v2/models/alltypes/infer', { id: 'all-json', inputs: TYPES.map(jsonInput) })
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toStartWith('application/json')
    expect(response.headers.get('inference-header-content-length')).toBeNull()
    const json = await body(response)
    expect(Object.keys(json)).toEqual(['model_name', 'model_version', 'id', 'outputs'])
    expect(json).toMatchObject({ model_name: 'alltypes', model_version: '1', id: 'all-json' })
    expect(json.outputs).toEqual(
      TYPES.map((type) => ({ name: `${type.datatype.toLowerCase()}_out`, shape: [2, 2], datatype: type.datatype, data: type.out })),
    )
  })

  it('takes data nested as the shape, as the protocol allows, and flat', async () => {
    const nested = await body(
      await post('/v2/models/arith/infer', {
        inputs: [
          { name: 'x', shape: [1, 4], datatype: 'FP32', data: [[1, 2, 3, 4]] },
          { name: 'n', shape: [1, 2], datatype: 'INT64', data: [[5, 6]] },
        ],
      }),
    )
    expect(nested.outputs).toEqual([
      { name: 'y', shape: [1, 4], datatype: 'FP32', data: [3, 5, 7, 9] },
      { name: 'm', shape: [1, 2], datatype: 'INT64', data: [6, 7] },
    ])
  })

  it('returns only the outputs asked for, in the order asked', async () => {
    const json = await body(
      await post('/v2/models/alltypes/infer', {
        inputs: TYPES.map(jsonInput),
        outputs: [{ name: 'bool_out' }, { name: 'int8_out', parameters: { binary_data: false } }],
      }),
    )
    expect(json.outputs.map((o: { name: string }) => o.name)).toEqual(['bool_out', 'int8_out'])
  })

  it("echoes the request's id, and answers the X-Request-Id as id when the request gave none", async () => {
    const inputs = [
      { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] },
      { name: 'n', shape: [1, 2], datatype: 'INT64', data: [1, 2] },
    ]
    expect((await body(await post('/v2/models/arith/infer', { id: '42', inputs }))).id).toBe('42')
    const response = await t.app.handle(
      req('/v2/models/arith/infer', { method: 'POST', json: { inputs }, headers: { ...bearer(key), 'x-request-id': 'trace-77' } }),
    )
    expect((await body(response)).id).toBe('trace-77')
  })

  it('runs a named version, and answers 404 for a version the model does not serve', async () => {
    const inputs = [
      { name: 'x', shape: [1, 4], datatype: 'FP32', data: [0, 0, 0, 0] },
      { name: 'n', shape: [1, 2], datatype: 'INT64', data: [0, 0] },
    ]
    expect((await body(await post('/v2/models/arith/versions/1/infer', { inputs }))).model_version).toBe('1')
    await expectError(await post('/v2/models/arith/versions/3/infer', { inputs }), 404, 'no version "3"')
  })
})

describe('inference, binary tensor data both ways (binary data extension)', () => {
  it('takes every datatype as binary data and gives it back byte for byte when binary_data_output is set', async () => {
    const header = JSON.stringify({ inputs: TYPES.map(binaryInput), parameters: { binary_data_output: true } })
    const response = await readResponse(
      await t.app.handle(binaryRequest('/v2/models/alltypes/infer', header, TYPES.map(bytesOf), bearer(key))),
    )
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('application/octet-stream')
    expect(response.headers.get('x-request-id')).toBeTruthy()
    expect(response.headers.get('x-content-type-options')).toBe('nosniff')
    expect(response.header.outputs).toEqual(
      TYPES.map((type) => ({
        name: `${type.datatype.toLowerCase()}_out`,
        shape: [2, 2],
        datatype: type.datatype,
        parameters: { binary_data_size: bytesOf(type).byteLength },
      })),
    )
    for (const type of TYPES) expect([...response.parts[`${type.datatype.toLowerCase()}_out`]!]).toEqual([...bytesOf(type)])
  })

  it('carries NaN and infinities in binary FP32, which JSON cannot', async () => {
    const values = Float32Array.of(Number.NaN, Infinity, -Infinity, 0)
    const inputs = TYPES.map((type) => (type.datatype === 'FP32' ? { ...binaryInput(type) } : jsonInput(type)))
    const header = JSON.stringify({ inputs, outputs: [{ name: 'fp32_out', parameters: { binary_data: true } }] })
    const response = await readResponse(await t.app.handle(binaryRequest('/v2/models/alltypes/infer', header, [raw(values)], bearer(key))))
    expect([...response.parts.fp32_out!]).toEqual([...raw(values)])
  })

  it('mixes JSON and binary inputs in one request, and JSON and binary outputs in one response', async () => {
    const binaryTypes = TYPES.filter((_, i) => i % 2 === 0)
    const inputs = TYPES.map((type, i) => (i % 2 === 0 ? binaryInput(type) : jsonInput(type)))
    const header = JSON.stringify({
      inputs,
      outputs: [
        { name: 'int64_out', parameters: { binary_data: true } },
        { name: 'fp32_out' },
        { name: 'bool_out', parameters: { binary_data: true } },
        { name: 'uint32_out', parameters: { binary_data: false } },
      ],
    })
    const raw = await t.app.handle(binaryRequest('/v2/models/alltypes/infer', header, binaryTypes.map(bytesOf), bearer(key)))
    const response = await readResponse(raw)
    expect(response.status).toBe(200)
    const [int64, fp32, bool, uint32] = response.header.outputs
    expect(int64).toEqual({ name: 'int64_out', shape: [2, 2], datatype: 'INT64', parameters: { binary_data_size: 32 } })
    expect(fp32).toEqual({ name: 'fp32_out', shape: [2, 2], datatype: 'FP32', data: [...TYPES[0].out] })
    expect(bool).toEqual({ name: 'bool_out', shape: [2, 2], datatype: 'BOOL', parameters: { binary_data_size: 4 } })
    expect(uint32?.data).toEqual([...TYPES[8].out])
    expect([...response.parts.int64_out!]).toEqual([...bytesOf(TYPES[5])])
    expect([...response.parts.bool_out!]).toEqual([1, 0, 0, 1])
  })

  it('lets a browser send Inference-Header-Content-Length and read it on a binary answer (CORS)', async () => {
    const origin = 'https://app.example.com'
    const preflight = await t.app.handle(
      req('/v2/models/arith/infer', {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'inference-header-content-length' },
      }),
    )
    expect(preflight.headers.get('access-control-allow-headers')).toContain('Inference-Header-Content-Length')
    const header = JSON.stringify({ inputs: TYPES.map(binaryInput), parameters: { binary_data_output: true } })
    const response = await t.app.handle(binaryRequest('/v2/models/alltypes/infer', header, TYPES.map(bytesOf), { ...bearer(key), origin }))
    expect(response.headers.get('access-control-allow-origin')).not.toBeNull()
    expect(response.headers.get('access-control-expose-headers')).toContain('Inference-Header-Content-Length')
  })

  it('answers JSON to a binary request that asks for no binary outputs', async () => {
    const header = JSON.stringify({ inputs: TYPES.map(binaryInput) })
    const response = await t.app.handle(binaryRequest('/v2/models/alltypes/infer', header, TYPES.map(bytesOf), bearer(key)))
    expect(response.headers.get('content-type')).toStartWith('application/json')
    expect((await body(response)).outputs[0].data).toEqual(TYPES[0].out)
  })
})

describe('clients, byte for byte', () => {
  // tritonclient is not installable here (no PyPI), so its requests are reproduced from its source
  // (tritonclient/http/_utils.py `_get_inference_request`, _infer_input.py, _requested_output.py): rapidjson's
  // compact JSON, inputs as binary by default, `binary_data_output: true` when no outputs are named, the JSON's
  // length in Inference-Header-Content-Length, no Content-Type, and the key through `headers=`.
  const TRITON_DEFAULT =
    '{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}},' +
    '{"name":"n","shape":[1,2],"datatype":"INT64","parameters":{"binary_data_size":16}}],"parameters":{"binary_data_output":true}}'
  const x = raw(Float32Array.of(1, 2, 3, 4))
  const n = raw(BigInt64Array.of(5n, 6n))

  for (const [how, headers] of [
    ['Authorization: Bearer', () => bearer(key)],
    ['X-API-Key', () => ({ 'X-API-Key': key })],
  ] as const)
    it(`answers tritonclient's default infer (binary in, binary out) with the key as ${how}`, async () => {
      const request = binaryRequest('/v2/models/arith/infer', TRITON_DEFAULT, [x, n], headers())
      expect(request.headers.get('content-type')).toBeNull()
      const response = await readResponse(await t.app.handle(request))
      expect(response.status).toBe(200)
      expect(response.header.outputs.map((o: { name: string }) => o.name)).toEqual(['y', 'm'])
      expect(new Float32Array(response.parts.y!.buffer)).toEqual(Float32Array.of(3, 5, 7, 9))
      expect(new BigInt64Array(response.parts.m!.buffer)).toEqual(BigInt64Array.of(6n, 7n))
    })

  it("answers tritonclient's request with InferRequestedOutput(binary_data=False), a request id and a server timeout in µs", async () => {
    const json =
      '{"id":"req-9","parameters":{"timeout":2000000},"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}},' +
      '{"name":"n","shape":[1,2],"datatype":"INT64","parameters":{"binary_data_size":16}}],"outputs":[{"name":"y","parameters":{"binary_data":false}}]}'
    const response = await readResponse(await t.app.handle(binaryRequest('/v2/models/arith/infer', json, [x, n], bearer(key))))
    expect(response.header).toEqual({
      model_name: 'arith',
      model_version: '1',
      id: 'req-9',
      outputs: [{ name: 'y', shape: [1, 4], datatype: 'FP32', data: [3, 5, 7, 9] }],
    })
  })

  it("answers KServe's InferenceRESTClient: JSON with model_name and an id, and binary as application/octet-stream", async () => {
    const id = '3f1c3a52-9d0e-4d8e-9a55-2b8f0e6c1d11'
    const json = `{"id":"${id}","model_name":"arith","inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1.0,2.0,3.0,4.0]},{"name":"n","shape":[1,2],"datatype":"INT64","data":[5,6]}]}`
    const plain = await t.app.handle(
      new Request('http://localhost/v2/models/arith/infer', {
        method: 'POST',
        body: json,
        headers: { ...bearer(key), 'content-type': 'application/json' },
      }),
    )
    expect((await readResponse(plain)).header).toMatchObject({
      id,
      model_name: 'arith',
      outputs: [{ data: [3, 5, 7, 9] }, { data: [6, 7] }],
    })
    const binaryJson = `{"id":"${id}","model_name":"arith","inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}},{"name":"n","shape":[1,2],"datatype":"INT64","data":[5,6]}]}`
    const binary = binaryRequest('/v2/models/arith/infer', binaryJson, [x], { ...bearer(key), 'content-type': 'application/octet-stream' })
    expect((await readResponse(await t.app.handle(binary))).header.outputs[0]?.data).toEqual([3, 5, 7, 9])
  })

  it('gives KServe\'s client the error text it reads (exact application/json, an "error" field)', async () => {
    const response = await post('/v2/models/arith/infer', { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1] }] })
    await expectError(response, 400, /\/inputs\/0\/data: Shape \[1,4\] needs 4 values; got 1/)
  })
})

describe('errors: every status, in the protocol shape', () => {
  const arithInputs = [
    { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] },
    { name: 'n', shape: [1, 2], datatype: 'INT64', data: [1, 2] },
  ]

  it('400: a request that breaks the protocol schema, with each field path in the message', async () => {
    await expectError(
      await post('/v2/models/arith/infer', { inputs: arithInputs, extra: 1 }),
      400,
      /does not follow the Open Inference Protocol/,
    )
    await expectError(await post('/v2/models/arith/infer', { inputs: [] }), 400, /\/inputs/)
    await expectError(await post('/v2/models/arith/infer', { inputs: arithInputs, model_name: 'dynbatch' }), 400, /names model "dynbatch"/)
  })

  it('400: malformed JSON, and parameters vireo would otherwise get wrong', async () => {
    await expectError(
      await t.app.handle(
        req('/v2/models/arith/infer', {
          method: 'POST',
          body: '{"inputs":',
          headers: { ...bearer(key), 'content-type': 'application/json' },
        }),
      ),
      400,
      /not valid JSON/,
    )
    await expectError(
      await post('/v2/models/arith/infer', { inputs: arithInputs, parameters: { sequence_id: 7 } }),
      400,
      /no sequence batcher/,
    )
    await expectError(
      await post('/v2/models/arith/infer', { inputs: arithInputs, parameters: { binary_data_output: 'yes' } }),
      400,
      /true or false/,
    )
    await expectError(
      await post('/v2/models/arith/infer', { inputs: arithInputs, outputs: [{ name: 'y', parameters: { classification: 2 } }] }),
      400,
      /no classification extension/,
    )
  })

  it('takes parameters it does not know, such as priority and content_type, and ignores them', async () => {
    const inputs = arithInputs.map((i) => ({ ...i, parameters: { content_type: 'np' } }))
    expect((await post('/v2/models/arith/infer', { inputs, parameters: { priority: 1, custom: 'x' } })).status).toBe(200)
  })

  it('400: a header length past the end of the body, a size that does not match shape × datatype, leftover bytes', async () => {
    const header =
      '{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}},{"name":"n","shape":[1,2],"datatype":"INT64","data":[1,2]}]}'
    const past = new Request('http://localhost/v2/models/arith/infer', {
      method: 'POST',
      headers: { ...bearer(key), 'inference-header-content-length': String(header.length + 100) },
      body: concat(text(header), new Uint8Array(16)),
    })
    await expectError(
      await t.app.handle(past),
      400,
      /Inference-Header-Content-Length says the JSON header is \d+ bytes, but the whole body is \d+ bytes/,
    )
    const wrongSize = header.replace('"binary_data_size":16', '"binary_data_size":12')
    await expectError(
      await t.app.handle(binaryRequest('/v2/models/arith/infer', wrongSize, [new Uint8Array(12)], bearer(key))),
      400,
      /"x" is FP32 \[1,4\]: 4 × 4 = 16 bytes, but binary_data_size is 12/,
    )
    await expectError(
      await t.app.handle(binaryRequest('/v2/models/arith/infer', header, [new Uint8Array(20)], bearer(key))),
      400,
      /4 bytes of binary data follow the last input/,
    )
    await expectError(
      await t.app.handle(binaryRequest('/v2/models/arith/infer', header, [new Uint8Array(8)], bearer(key))),
      400,
      /needs 16 bytes/,
    )
  })

  it('400: a binary input the model does not take, in datatype or shape', async () => {
    const header =
      '{"inputs":[{"name":"x","shape":[1,4],"datatype":"INT32","parameters":{"binary_data_size":16}},{"name":"n","shape":[1,2],"datatype":"INT64","data":[1,2]}]}'
    await expectError(
      await t.app.handle(binaryRequest('/v2/models/arith/infer', header, [new Uint8Array(16)], bearer(key))),
      400,
      /takes FP32, not INT32/,
    )
    const fp16 =
      '{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP16","parameters":{"binary_data_size":8}},{"name":"n","shape":[1,2],"datatype":"INT64","data":[1,2]}]}'
    await expectError(
      await t.app.handle(binaryRequest('/v2/models/arith/infer', fp16, [new Uint8Array(8)], bearer(key))),
      400,
      /Datatype "FP16" is not supported/,
    )
  })

  it('401 without a valid key, on every protected route, and before the body is read', async () => {
    for (const path of ['/v2/models/arith', '/v2/models/arith/ready', '/v2/models/arith/stats', '/v2/models/stats'])
      await expectError(await get(path, {}), 401, /A valid API key is required/)
    const bad = await get('/v2/models/arith', bearer('vk_00000000_not-a-real-key-not-a-real-key-not-a-real-k'))
    await expectError(bad, 401)
    expect(bad.headers.get('www-authenticate')).toBe('Bearer realm="vireo"')
    let pulled = 0
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulled++ >= 100) return controller.close()
        controller.enqueue(new Uint8Array(1000))
      },
    })
    const anonymous = new Request('http://localhost/v2/models/arith/infer', {
      method: 'POST',
      body: stream,
      headers: { 'inference-header-content-length': '10' },
    })
    await expectError(await t.app.handle(anonymous), 401)
    expect(pulled).toBeLessThanOrEqual(1)
  })

  it('403 for a key without the inference scope', async () => {
    const jobsOnly = await createKey(t, ['jobs'])
    await expectError(await get('/v2/models/arith', bearer(jobsOnly)), 403, /lacks the "inference" scope/)
    await expectError(await post('/v2/models/arith/infer', { inputs: arithInputs }, bearer(jobsOnly)), 403)
  })

  it('404 for an unknown model, version or route', async () => {
    await expectError(await post('/v2/models/nope/infer', { inputs: arithInputs }), 404, /does not exist/)
    await expectError(await get('/v2/models/arith/versions/9/stats'), 404)
    await expectError(await get('/v2/repository/nothing-here'), 404, /No route for GET/)
  })

  it('405 with Allow for a known path and the wrong method', async () => {
    const response = await t.app.handle(req('/v2/models/arith/infer', { headers: bearer(key) }))
    await expectError(response, 405, 'GET is not allowed here; use POST')
    expect(response.headers.get('allow')).toBe('POST')
  })

  it('413 before buffering: a declared length over the JSON limit, a chunked binary body past the upload limit, a JSON header past the JSON limit', async () => {
    const declared = new Request('http://localhost/v2/models/arith/infer', {
      method: 'POST',
      headers: { ...bearer(key), 'content-type': 'application/json', 'content-length': String(MAX_JSON + 1) },
      body: '{}',
    })
    await expectError(await t.app.handle(declared), 413, `exceeds the limit of ${MAX_JSON} bytes`)
    let pulled = 0
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulled++ >= 10_000) return controller.close()
        controller.enqueue(new Uint8Array(4096))
      },
    })
    const chunked = new Request('http://localhost/v2/models/arith/infer', {
      method: 'POST',
      body: stream,
      headers: { ...bearer(key), 'inference-header-content-length': '10' },
    })
    await expectError(await t.app.handle(chunked), 413, `exceeds the limit of ${MAX_UPLOAD} bytes`)
    expect(pulled).toBeLessThan(MAX_UPLOAD / 4096 + 5)
    const bigHeader = JSON.stringify({ id: 'x'.repeat(200), inputs: arithInputs, pad: 'y'.repeat(MAX_JSON) })
    await expectError(
      await t.app.handle(binaryRequest('/v2/models/arith/infer', bigHeader, [], bearer(key))),
      413,
      `limit of ${MAX_JSON} bytes`,
    )
  })

  it('415 for a Content-Type that is neither JSON nor application/octet-stream', async () => {
    const response = await t.app.handle(
      req('/v2/models/arith/infer', { method: 'POST', body: 'x', headers: { ...bearer(key), 'content-type': 'text/plain' } }),
    )
    await expectError(response, 415, /send application\/json, or application\/octet-stream/)
  })

  it('503 with Retry-After for a model that failed to load', async () => {
    const response = await post('/v2/models/corrupt/infer', { inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [1] }] })
    await expectError(response, 503, /failed to load/)
    expect(response.headers.get('retry-after')).toBe('60')
  })

  it('504 when the model outlives the timeout the request set', async () => {
    const h0 = { name: 'h0', shape: [1, 64], datatype: 'FP32', data: Array.from({ length: 64 }, (_, i) => (i % 8) / 8) }
    const response = await post('/v2/models/slow/infer', {
      inputs: [{ name: 'iters', shape: [], datatype: 'INT64', data: [100_000_000] }, h0],
      parameters: { timeout_ms: 300 },
    })
    await expectError(response, 504)
  })

  it('429 with Retry-After once the inference quota is spent, the quota v1 routes share', async () => {
    const own = await createTestApp({ RATE_LIMIT_INFERENCE: '2/60' })
    try {
      const limited = await createKey(own, ['inference'])
      expect((await own.app.handle(req('/api/v1/models/arith', { headers: bearer(limited) }))).status).toBe(200)
      expect((await own.app.handle(req('/v2/models/arith', { headers: bearer(limited) }))).status).toBe(200)
      const refused = await own.app.handle(req('/v2/models/arith/ready', { headers: bearer(limited) }))
      await expectError(refused, 429, /Rate limit "inference" exceeded; retry in \d+ s/)
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0)
      expect(refused.headers.get('ratelimit-policy')).toBe('"inference";q=2;w=60')
    } finally {
      await own.close()
    }
  })
})

describe('statistics extension', () => {
  const dynInput = (data: number[]) => ({ inputs: [{ name: 'x', shape: [data.length / 3, 3], datatype: 'FP32', data }] })
  const statsOf = async (path = '/v2/models/dynbatch/stats') => (await body(await get(path))).model_stats

  it('is { model_stats: [ { name, version, last_inference, inference_count, execution_count, inference_stats, … } ] }', async () => {
    const [stat] = await statsOf()
    expect(Object.keys(stat)).toEqual([
      'name',
      'version',
      'last_inference',
      'inference_count',
      'execution_count',
      'inference_stats',
      'response_stats',
      'batch_stats',
      'memory_usage',
    ])
    expect(Object.keys(stat.inference_stats)).toEqual([
      'success',
      'fail',
      'queue',
      'compute_input',
      'compute_infer',
      'compute_output',
      'cache_hit',
      'cache_miss',
    ])
    expect(stat).toMatchObject({ name: 'dynbatch', version: '1' })
  })

  it('counts successes and failures, from /v2 and /api/v1 alike, with cumulative durations in ns', async () => {
    const [before] = await statsOf()
    const started = Date.now()
    expect((await post('/v2/models/dynbatch/infer', dynInput([1, 2, 3]))).status).toBe(200)
    expect((await post('/api/v1/models/dynbatch/infer', dynInput([1, 2, 3, 4, 5, 6]))).status).toBe(200)
    const misfit = { inputs: [{ name: 'x', shape: [1, 3], datatype: 'FP32', data: [1, 2] }] }
    expect((await post('/v2/models/dynbatch/infer', misfit)).status).toBe(400)
    const [after] = await statsOf()
    const s = after.inference_stats
    const b = before.inference_stats
    expect(s.success.count - b.success.count).toBe(2)
    expect(s.fail.count - b.fail.count).toBe(1)
    expect(s.queue.count - b.queue.count).toBe(2)
    expect(s.compute_infer.count - b.compute_infer.count).toBe(2)
    expect(after.inference_count - before.inference_count).toBe(2)
    expect(after.execution_count - before.execution_count).toBe(2)
    expect(s.success.ns).toBeGreaterThan(b.success.ns)
    expect(s.fail.ns).toBeGreaterThan(b.fail.ns)
    expect(s.compute_infer.ns).toBeGreaterThan(b.compute_infer.ns)
    // The model's own time is part of the whole request's.
    expect(s.compute_infer.ns + s.queue.ns).toBeLessThanOrEqual(s.success.ns)
    for (const value of [s.success.ns, s.queue.ns, s.compute_infer.ns]) expect(Number.isInteger(value)).toBe(true)
    expect(after.last_inference).toBeGreaterThanOrEqual(started)
    expect(after.last_inference).toBeLessThanOrEqual(Date.now())
    expect(after.batch_stats).toEqual([
      { batch_size: 1, compute_input: s.compute_input, compute_infer: s.compute_infer, compute_output: s.compute_output },
    ])
  })

  it('answers every loaded model at /v2/models/stats, one version at its URL, and 404 for an unknown version', async () => {
    const all = await statsOf('/v2/models/stats')
    expect(all.map((m: { name: string }) => m.name)).toEqual(expect.arrayContaining(['arith', 'alltypes', 'dynbatch', 'slow']))
    expect(all.map((m: { name: string }) => m.name)).not.toContain('badmanifest')
    const [one] = await statsOf('/v2/models/dynbatch/versions/1/stats')
    expect(one).toMatchObject({ name: 'dynbatch', version: '1' })
    await expectError(await get('/v2/models/dynbatch/versions/2/stats'), 404)
  })
})

describe('OpenAPI', () => {
  it('documents every /v2 route under the tag oip, health and server metadata public, infer with both body types', async () => {
    const spec = await body(await t.app.handle(req('/api/v1/docs/json')))
    const paths = Object.keys(spec.paths).filter((p) => p === '/v2' || p.startsWith('/v2/'))
    expect(paths).toEqual(
      expect.arrayContaining([
        '/v2',
        '/v2/health/live',
        '/v2/health/ready',
        '/v2/models/{name}',
        '/v2/models/{name}/versions/{version}',
        '/v2/models/{name}/ready',
        '/v2/models/{name}/infer',
        '/v2/models/{name}/versions/{version}/infer',
        '/v2/models/{name}/stats',
        '/v2/models/stats',
      ]),
    )
    for (const path of paths) for (const op of Object.values(spec.paths[path]) as { tags: string[] }[]) expect(op.tags).toEqual(['oip'])
    expect(spec.paths['/v2/health/live'].get.security).toEqual([])
    expect(spec.paths['/v2'].get.security).toEqual([])
    expect(spec.paths['/v2/models/{name}'].get.security).toEqual([{ bearer: [] }, { apiKey: [] }])
    const infer = spec.paths['/v2/models/{name}/infer'].post
    expect(Object.keys(infer.requestBody.content)).toEqual(['application/json', 'application/octet-stream'])
    expect(infer.responses['400'].content['application/json'].schema.properties.error.type).toBe('string')
  })
})
