import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { connect } from 'node:net'
import { type RunningServer, type Runtime, startServer } from '../helpers'

/** Bun by default; `TEST_RUNTIME=deno` (run by `bun run smoke:deno`) checks what Deno's parser answers instead. */
const RUNTIME = (process.env.TEST_RUNTIME ?? 'bun') as Runtime

let server: RunningServer
beforeAll(async () => {
  server = await startServer({}, RUNTIME)
})
afterAll(async () => {
  server.proc.kill('SIGTERM')
  await server.proc.exited
})

/** Sends raw bytes and reads the status line and body of the answer (the connection is closed after it). */
function raw(text: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(server.url)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(text))
    let out = ''
    socket.on('data', (chunk) => {
      out += chunk
      const end = out.indexOf('\r\n\r\n')
      const length = /content-length: (\d+)/i.exec(out)
      if (end >= 0 && (!length || out.length - end - 4 >= Number(length[1]))) socket.destroy()
    })
    socket.on('error', reject)
    socket.on('close', () => resolve({ status: Number(out.split(' ')[1]), body: out.split('\r\n\r\n')[1] ?? '' }))
  })
}

describe(`requests ${RUNTIME}'s HTTP parser refuses before vireo runs (the README lists them)`, () => {
  // Deno's parser tells none of them apart: each is a bare 400.
  const cases: [string, string, { bun: number; deno: number }][] = [
    ['a 100 kB URL', `GET /${'a'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, { bun: 431, deno: 400 }],
    [
      '10 000 headers',
      `GET / HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 10_000 }, (_, i) => `X-${i}: y\r\n`).join('')}\r\n`,
      { bun: 431, deno: 400 },
    ],
    [
      'a duplicate Content-Length',
      'POST /api/v1/keys HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab',
      { bun: 400, deno: 400 },
    ],
    [
      'Content-Length with chunked encoding',
      'POST /api/v1/keys HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      { bun: 400, deno: 400 },
    ],
    ['an unknown HTTP version', 'GET / HTTP/9.9\r\nHost: x\r\n\r\n', { bun: 505, deno: 400 }],
  ]
  for (const [what, request, { [RUNTIME]: status }] of cases)
    it(`answers ${what} with ${status} and an empty body, and stays up`, async () => {
      const answer = await raw(request)
      expect(answer.status).toBe(status)
      expect(answer.body).toBe('')
      expect((await fetch(`${server.url}/api/v1/health/live`)).status).toBe(200)
    })
})

describe(`paths with dot segments or backslashes on ${RUNTIME}`, () => {
  // Clients built on WHATWG URLs resolve these before sending; curl --path-as-is, proxies and hand-written clients
  // do not. Bun resolves them before the app sees the request; Deno hands them over as sent, and vireo resolves them.
  const paths = ['/api/v1/./health/live', '/api/v1/keys/../health/live', '/api/v1/%2e%2E/v1/health/./live?x=/../', '/api/v1\\health\\live']
  for (const path of paths)
    it(`answers GET ${path} as GET /api/v1/health/live`, async () => {
      const answer = await raw(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
      expect(answer.status).toBe(200)
      expect(JSON.parse(answer.body).data.status).toBe('alive')
    })

  it('answers a resolved path that names no route with 404 under the resolved path', async () => {
    const answer = await raw('GET /api/v1/health/../nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    expect(answer.status).toBe(404)
    expect(JSON.parse(answer.body).error).toMatchObject({ code: 'NOT_FOUND', message: 'No route for GET /api/v1/nothing' })
  })
})
