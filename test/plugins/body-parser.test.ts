import { describe, expect, it } from 'bun:test'
import { body, req } from '../helpers'
import { expectError, usePluginTestApp } from './helpers'

const t = usePluginTestApp()

describe('request bodies', () => {
  it('refuses malformed JSON with 400', async () => {
    const json = await expectError(
      await t.app.handle(req('/api/v1/test/echo', { method: 'POST', body: '{"a":', headers: { 'content-type': 'application/json' } })),
      400,
      'VALIDATION_ERROR',
    )
    expect(json.error.message).toContain('not valid JSON')
  })

  it('refuses an empty JSON body with 400', async () => {
    await expectError(
      await t.app.handle(req('/api/v1/test/echo', { method: 'POST', body: '', headers: { 'content-type': 'application/json' } })),
      400,
      'VALIDATION_ERROR',
    )
  })

  it('refuses deeply nested JSON', async () => {
    const deep = `${'['.repeat(200)}${']'.repeat(200)}`
    const json = await expectError(
      await t.app.handle(req('/api/v1/test/echo', { method: 'POST', body: deep, headers: { 'content-type': 'application/json' } })),
      400,
      'VALIDATION_ERROR',
    )
    expect(json.error.message).toContain('nested deeper')
  })

  it('refuses a Content-Type it does not accept with 415', async () => {
    await expectError(
      await t.app.handle(req('/api/v1/test/echo', { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } })),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    )
  })

  it('answers 413 for a declared Content-Length over the limit', async () => {
    const response = await t.app.handle(
      req('/api/v1/test/echo', {
        method: 'POST',
        body: JSON.stringify({ a: 'x'.repeat(2000) }),
        headers: { 'content-type': 'application/json' },
      }),
    )
    const json = await expectError(response, 413, 'PAYLOAD_TOO_LARGE')
    expect(json.error.details.limit_bytes).toBe(1024)
  })

  it('answers 413 for a chunked body that grows past the limit, without reading it all', async () => {
    let pulled = 0
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++
        if (pulled > 1000) return controller.close()
        controller.enqueue(new TextEncoder().encode(`"${'y'.repeat(254)}",`))
      },
    })
    const request = new Request('http://localhost/api/v1/test/echo', {
      method: 'POST',
      body: stream,
      headers: { 'content-type': 'application/json' },
    })
    expect(request.headers.get('content-length')).toBeNull()
    await expectError(await t.app.handle(request), 413, 'PAYLOAD_TOO_LARGE')
    expect(pulled).toBeLessThan(20)
  })

  it('names each failing field path with 400 VALIDATION_ERROR, not 422', async () => {
    const response = await t.app.handle(
      req('/api/v1/test/typed', { method: 'POST', json: { name: '', inputs: [{ shape: ['x'] }], extra: 1 } }),
    )
    const json = await expectError(response, 400, 'VALIDATION_ERROR')
    const paths = (json.error.details as { path: string; message: string }[]).map((d) => d.path)
    expect(paths).toContain('/name')
    expect(paths).toContain('/inputs/0/shape/0')
    expect(paths).toContain('/extra')
    for (const detail of json.error.details) expect(detail.message.length).toBeGreaterThan(3)
  })

  it('answers 415 when a JSON route receives audio', async () => {
    const response = await t.app.handle(
      req('/api/v1/test/typed', { method: 'POST', body: new Uint8Array(8), headers: { 'content-type': 'audio/wav' } }),
    )
    await expectError(response, 415, 'UNSUPPORTED_MEDIA_TYPE')
  })

  it('maps a bare framework status to its contract code', async () => {
    await expectError(await t.app.handle(req('/api/v1/test/unavailable')), 503, 'SERVICE_UNAVAILABLE')
  })

  it('reads raw audio, multipart and url-encoded bodies under their limits', async () => {
    const raw = await t.app.handle(
      req('/api/v1/test/size', { method: 'POST', body: new Uint8Array(3000), headers: { 'content-type': 'audio/wav' } }),
    )
    expect((await body(raw)).data).toEqual({ bytes: 3000 })
    const form = new FormData()
    form.set('file', new File([new Uint8Array(100)], 'a.wav', { type: 'audio/wav' }))
    form.set('threshold', '0.4')
    const multipart = await t.app.handle(new Request('http://localhost/api/v1/test/size', { method: 'POST', body: form }))
    expect((await body(multipart)).data).toEqual({ fields: ['file', 'threshold'], file_bytes: 100 })
    const urlencoded = await t.app.handle(
      req('/api/v1/test/size', { method: 'POST', body: 'a=1&b=2', headers: { 'content-type': 'application/x-www-form-urlencoded' } }),
    )
    expect((await body(urlencoded)).data).toEqual({ fields: ['a', 'b'], file_bytes: null })
  })

  it('uses the upload limit for audio: 413 past MAX_UPLOAD_BYTES', async () => {
    const response = await t.app.handle(
      req('/api/v1/test/size', { method: 'POST', body: new Uint8Array(5000), headers: { 'content-type': 'audio/wav' } }),
    )
    const json = await expectError(response, 413, 'PAYLOAD_TOO_LARGE')
    expect(json.error.details.limit_bytes).toBe(4096)
  })

  it('refuses a multipart body with a broken boundary', async () => {
    const response = await t.app.handle(
      req('/api/v1/test/size', {
        method: 'POST',
        body: '--nope\r\ngarbage',
        headers: { 'content-type': 'multipart/form-data; boundary=zzz' },
      }),
    )
    await expectError(response, 400, 'VALIDATION_ERROR')
  })

  it('accepts a body within the limit', async () => {
    const response = await t.app.handle(req('/api/v1/test/echo', { method: 'POST', json: { hello: 'world' } }))
    expect(response.status).toBe(200)
    expect((await body(response)).data).toEqual({ hello: 'world' })
  })
})
