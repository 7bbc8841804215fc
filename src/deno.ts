import { createApp } from './app'
import { boot, gracefulShutdown } from './boot'
import type { UpgradeWebSocket } from './modules/audio/sessions'

/**
 * Entry point under Deno (`deno task start`): the same boot → app as `src/index.ts`, served
 * by `Deno.serve`. Elysia's `.ws()` needs Bun's server, so the realtime stream is upgraded here with
 * `Deno.upgradeWebSocket`, after the same route hooks (key, subprotocol rule, rate limit) have admitted it,
 * and runs the same session code as on Bun.
 */

/** The part of the Deno namespace used here; the project's TypeScript setup only knows Bun's types. */
declare const Deno: {
  serve(
    options: { port: number; hostname: string; onListen?: (address: { hostname: string; port: number }) => void },
    handler: (request: Request, info: { remoteAddr: { hostname: string; port: number } }) => Response | Promise<Response>,
  ): { shutdown(): Promise<void> }
  addSignalListener(signal: 'SIGTERM' | 'SIGINT', handler: () => void): void
  upgradeWebSocket(request: Request, options?: { protocol?: string }): { socket: WebSocket; response: Response }
}

const deps = await boot()
const { config, logger } = deps

// The 101 answer cannot pass through Elysia (it rebuilds responses, and a Response with status 101 cannot be
// constructed), so the route only asks for the upgrade and the answer is taken from here.
const upgrades = new WeakMap<Request, Response>()
/** The request Deno handed in, for one rebuilt on its normalized URL (`routable`): only that one can be upgraded. */
const received = new WeakMap<Request, Request>()
const upgradeWebSocket: UpgradeWebSocket = (request, { headers, open }) => {
  const { 'sec-websocket-protocol': protocol, ...rest } = headers
  let upgraded: ReturnType<typeof Deno.upgradeWebSocket>
  try {
    upgraded = Deno.upgradeWebSocket(received.get(request) ?? request, {
      protocol: protocol === undefined ? undefined : String(protocol),
    })
  } catch {
    // Not a valid upgrade (no Sec-WebSocket-Key, wrong version): the route answers 400, as Bun's would.
    return false
  }
  const { socket, response } = upgraded
  for (const [name, value] of Object.entries(rest)) response.headers.set(name, String(value))
  upgrades.set(request, response)
  socket.binaryType = 'arraybuffer'
  socket.addEventListener('open', function streamOpened() {
    const session = open({ send: (text) => socket.send(text), close: (code, reason) => socket.close(code, reason) })
    socket.addEventListener('message', (event) =>
      session.message(typeof event.data === 'string' ? event.data : new Uint8Array(event.data as ArrayBuffer)),
    )
    socket.addEventListener('close', () => session.closed())
  })
  return true
}
const app = createApp(deps, { upgradeWebSocket })

// Elysia hands route hooks `server.requestIP()` (Bun's API) for the client address that logs and
// per-IP rate limits use; without it every client would share one "unknown" address.
const peers = new WeakMap<Request, { address: string; port: number }>()
app.server = {
  requestIP: (request: Request) => peers.get(request) ?? null,
} as unknown as typeof app.server

/**
 * The request on its URL as the WHATWG parser writes it, as Bun hands requests to the app. Deno hands the URL over as
 * sent: `/api/v1/./health/live` or `/api/v1\health\live` matched no route there (and was answered 405 "use GET"),
 * while Bun resolves dot segments and backslashes first. Most requests are already in that form and pass as they are.
 */
function routable(request: Request): Request {
  const href = new URL(request.url).href
  if (href === request.url) return request
  const rebuilt = new Request(href, request)
  received.set(rebuilt, request)
  return rebuilt
}

let ready: () => void
const listening = new Promise<void>((resolve) => {
  ready = resolve
})
const server = Deno.serve(
  {
    hostname: config.HOST,
    port: config.PORT,
    onListen({ hostname, port }) {
      const host = hostname.includes(':') ? `[${hostname}]` : hostname
      logger.info({ url: `http://${host}:${port}/`, env: config.NODE_ENV, runtime: 'deno' }, 'vireo listening')
      ready()
    },
  },
  async function handle(incoming, info) {
    const request = routable(incoming)
    peers.set(request, { address: info.remoteAddr.hostname, port: info.remoteAddr.port })
    const response = await app.handle(request)
    return upgrades.get(request) ?? response
  },
)
await listening
deps.runner.start()

// Deno has no forced close: exiting (in finish) ends whatever connections outlive the grace period.
const shutdown = gracefulShutdown(deps, { drain: () => server.shutdown() })
Deno.addSignalListener('SIGTERM', () => void shutdown('SIGTERM'))
Deno.addSignalListener('SIGINT', () => void shutdown('SIGINT'))
