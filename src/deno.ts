import { createApp } from './app'
import { boot, gracefulShutdown } from './boot'

/**
 * Entry point under Deno (`deno task start`): the same boot → app as `src/index.ts`, served
 * by `Deno.serve`. Realtime WebSocket routes stay Bun-only: Elysia's `.ws()` needs Bun's server.
 */

/** The part of the Deno namespace used here; the project's TypeScript setup only knows Bun's types. */
declare const Deno: {
  serve(
    options: { port: number; hostname: string; onListen?: (address: { hostname: string; port: number }) => void },
    handler: (request: Request, info: { remoteAddr: { hostname: string; port: number } }) => Response | Promise<Response>,
  ): { shutdown(): Promise<void> }
  addSignalListener(signal: 'SIGTERM' | 'SIGINT', handler: () => void): void
}

const deps = await boot()
const { config, logger } = deps
const app = createApp(deps)

// Elysia hands route hooks `server.requestIP()` (Bun's API) for the client address that logs and
// per-IP rate limits use; without it every client would share one "unknown" address.
const peers = new WeakMap<Request, { address: string; port: number }>()
app.server = {
  requestIP: (request: Request) => peers.get(request) ?? null,
} as unknown as typeof app.server

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
  function handle(request, info) {
    peers.set(request, { address: info.remoteAddr.hostname, port: info.remoteAddr.port })
    return app.handle(request)
  },
)
await listening
deps.runner.start()

// Deno has no forced close: exiting (in finish) ends whatever connections outlive the grace period.
const shutdown = gracefulShutdown(deps, { drain: () => server.shutdown() })
Deno.addSignalListener('SIGTERM', () => void shutdown('SIGTERM'))
Deno.addSignalListener('SIGINT', () => void shutdown('SIGINT'))
