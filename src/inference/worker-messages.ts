/**
 * The messages between the pool and its workers (worker.ts): plain data, so the same protocol
 * crosses by postMessage or, for runs, through the shared slot (shared-slot.ts).
 */
import type { Feeds } from './tensors'

export interface WireTensorInfo {
  name: string
  type: string
  shape: (number | string)[] | null
}

export interface BackendAttempt {
  backend: string
  error: string
}

/**
 * What a pool job asks of a worker. 'vad-sequence' runs consecutive Silero frames of one stream
 * (inputs n × SILERO_INPUT, already windowed) and carries the state between them here, so a file
 * costs one round trip per chunk rather than one per 32 ms frame. It answers like a run of a
 * [n, 1] batch: `output` holds the n probabilities, `stateN` the state after the last frame.
 */
export type Work =
  | { type: 'run'; feeds: Feeds; outputs?: string[] }
  | { type: 'vad-sequence'; inputs: Float32Array; state: Float32Array; sampleRate: number }

export type ToWorker =
  /** The pool's shared slot for this worker (see shared-slot.ts): runs may then come, and go back, through it. */
  | { type: 'attach'; buffer: SharedArrayBuffer }
  | { type: 'load'; name: string; bytes: Uint8Array; backends: string[] }
  | { type: 'unload'; name: string }
  | (Work & { id: number; model: string })

export type FromWorker =
  | { type: 'ready' }
  /** It serves the shared slot it was given: runs may come through it from now on. */
  | { type: 'attached' }
  | {
      type: 'loaded'
      name: string
      ok: true
      backend: string
      attempts: BackendAttempt[]
      inputs: WireTensorInfo[]
      outputs: WireTensorInfo[]
      loadMs: number
    }
  | { type: 'loaded'; name: string; ok: false; reason: string; attempts: BackendAttempt[] }
  | { type: 'result'; id: number; outputs: Feeds; inferenceMs: number; heapBytes: number }
  /** `rejected`: the session itself refused these inputs (the model is fine; the input is not). */
  | { type: 'failed'; id: number; message: string; heapBytes: number; rejected: boolean }
