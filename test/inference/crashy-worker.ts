// The real worker, except that a run of model "arith" whose first x is 666 kills it. It declines the shared slot, so
// runs reach it by postMessage, where it can see them.
import '../../src/inference/worker.ts'

const scope = globalThis as unknown as { onmessage: (event: MessageEvent) => void }
const real = scope.onmessage
scope.onmessage = function crashOn666(event) {
  const message = event.data
  if (message.type === 'attach') return
  if (message.type === 'run' && message.feeds.x?.data[0] === 666) {
    setTimeout(() => {
      throw new Error('boom')
    })
    return
  }
  real(event)
}
