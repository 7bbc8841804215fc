/**
 * A stand-in inference worker for the hand-off benchmark: it speaks src/inference/worker.ts's messages but
 * holds no model; a run answers its own feeds as outputs. The pool around it is the real one, so a round trip
 * through it costs the pool's bookkeeping and the hand-off, nothing else.
 */
import type { FromWorker, ToWorker } from '../src/inference/worker'

interface Scope {
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null
  postMessage(message: FromWorker, transfer?: Transferable[]): void
}
const scope = globalThis as unknown as Scope

scope.onmessage = function onEchoMessage(event) {
  const message = event.data
  if (message.type === 'load') {
    scope.postMessage({ type: 'loaded', name: message.name, ok: true, backend: 'echo', attempts: [], inputs: [], outputs: [], loadMs: 0 })
  } else if (message.type === 'run') {
    const transfer = Object.values(message.feeds).map((t) => t.data.buffer as ArrayBuffer)
    scope.postMessage({ type: 'result', id: message.id, outputs: message.feeds, inferenceMs: 0, heapBytes: 0 }, transfer)
  }
}
scope.postMessage({ type: 'ready' })
