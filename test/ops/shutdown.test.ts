import { describe, expect, it } from 'bun:test'
import { startServer } from '../helpers'

const ADMIN = 'shutdown_test_admin_key_0123456789abcdef'

describe('graceful shutdown', () => {
  it('finishes the request in flight, refuses new connections, flushes logs and exits 0 on SIGTERM', async () => {
    const { proc, url, output } = await startServer({ ADMIN_API_KEY: ADMIN, SHUTDOWN_GRACE_MS: '5000' })
    // A request whose body trickles in over ~1 s is in flight when the signal arrives.
    const encoder = new TextEncoder()
    const parts = ['{"name":', '"during', ' shutdown",', '"scopes":["jobs"]}']
    let sending: () => void
    const sent = new Promise<void>((resolve) => {
      sending = resolve
    })
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const part = parts.shift()
        if (part === undefined) return controller.close()
        if (parts.length < 2) sending()
        await Bun.sleep(250)
        controller.enqueue(encoder.encode(part))
      },
    })
    const inFlight = fetch(`${url}/api/v1/keys`, {
      method: 'POST',
      body,
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      duplex: 'half',
    } as RequestInit)
    // The signal arrives once the body has started to flow, however slow the machine is.
    await sent
    proc.kill('SIGTERM')
    const response = await inFlight
    expect(response.status).toBe(201)
    expect((await response.json()).data.name).toBe('during shutdown')
    await Bun.sleep(200)
    await expect(fetch(`${url}/api/v1/health/live`)).rejects.toThrow()
    expect(await proc.exited).toBe(0)
    const logs = await output()
    expect(logs).toContain('"msg":"shutting down"')
    expect(logs).toContain('"msg":"shutdown complete"')
  })
})
