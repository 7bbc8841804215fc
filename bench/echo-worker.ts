/**
 * A stand-in inference worker for the hand-off benchmark: it speaks src/inference/worker.ts's messages but
 * holds no model; a run answers its own feeds as outputs, through the shared slot when the pool offers one
 * (src/inference/shared-slot.ts) and by postMessage otherwise. The pool around it is the real one, so a round
 * trip through it costs the pool's bookkeeping and the hand-off, nothing else.
 */
import { fromPacket, SharedSlot, type SharedWork, TO_POOL, TO_WORKER } from '../src/inference/shared-slot'
import type { FromWorker, ToWorker } from '../src/inference/worker-messages'

interface Scope {
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null
  postMessage(message: FromWorker, transfer?: Transferable[]): void
}
const scope = globalThis as unknown as Scope

async function serve(slot: SharedSlot): Promise<void> {
  let seen = slot.rung(TO_WORKER)
  for (;;) {
    await slot.wait(TO_WORKER, seen)
    seen = slot.rung(TO_WORKER)
    const message = fromPacket(slot.read<SharedWork>())
    if (message.type === 'run') slot.send(TO_POOL, { type: 'result', id: message.id, inferenceMs: 0, heapBytes: 0 }, message.feeds)
  }
}

scope.onmessage = function onEchoMessage(event) {
  const message = event.data
  if (message.type === 'attach') {
    void serve(new SharedSlot(message.buffer))
    scope.postMessage({ type: 'attached' })
  } else if (message.type === 'load') {
    scope.postMessage({ type: 'loaded', name: message.name, ok: true, backend: 'echo', attempts: [], inputs: [], outputs: [], loadMs: 0 })
  } else if (message.type === 'run') {
    const transfer = Object.values(message.feeds).map((t) => t.data.buffer as ArrayBuffer)
    scope.postMessage({ type: 'result', id: message.id, outputs: message.feeds, inferenceMs: 0, heapBytes: 0 }, transfer)
  }
}
scope.postMessage({ type: 'ready' })
