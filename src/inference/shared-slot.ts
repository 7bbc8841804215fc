import type { Feeds, RawTensor, TypedArray } from './tensors'
import type { FromWorker, ToWorker, Work } from './worker-messages'

/**
 * The hand-off between the pool and one worker without postMessage: a SharedArrayBuffer both threads see, holding
 * one message at a time (the pool gives a worker one run at a time), and two Atomics "bells", one per direction.
 * A message is a small JSON header (what postMessage would have carried besides tensors) followed by the tensors'
 * bytes, copied in and out. Measured here (2 vCPUs, Bun 1.4.4, `bun bench/index.ts hop`): a bare round trip with
 * one Silero frame's feeds costs 22–29 µs this way against 49–61 µs by postMessage with the buffers transferred;
 * through the pool, with its own bookkeeping on both sides, 45–60 against 51–65 µs, and a Silero run costs the same
 * either way (README, "Hand-off to the workers"). A message that does not fit, or holds a tensor type not listed
 * here, goes by postMessage as before.
 */

/** Where the bells are; each holds the sequence number of the last message rung in its direction. */
export const TO_WORKER = 0
export const TO_POOL = 1
type Bell = typeof TO_WORKER | typeof TO_POOL

const HEADER_BYTES = 64
/** One message's room: a Silero frame needs 3.4 KB, a VAD sequence of 256 frames 590 KB; larger ones go by postMessage. */
export const SHARED_SLOT_BYTES = 1 << 20

const ARRAYS = {
  float32: Float32Array,
  float64: Float64Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  uint16: Uint16Array,
  uint32: Uint32Array,
  bool: Uint8Array,
} as const satisfies Record<RawTensor['type'], unknown>

type ArrayType = keyof typeof ARRAYS
const isArrayType = (type: string): type is ArrayType => Object.hasOwn(ARRAYS, type)

/** [name, type, dims, byte length] of each tensor, in the order their bytes follow the header. */
type TensorEntry = [string, ArrayType, number[], number]

export interface Packet<M> {
  meta: M
  tensors: Feeds
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const align8 = (n: number) => (n + 7) & ~7

/** Whether this runtime can wait on shared memory without blocking its event loop (Bun and Deno can). */
export const sharedSlotsSupported = typeof SharedArrayBuffer === 'function' && typeof Atomics.waitAsync === 'function'

export class SharedSlot {
  readonly bells: Int32Array
  readonly area: Uint8Array

  constructor(readonly buffer: SharedArrayBuffer) {
    this.bells = new Int32Array(buffer, 0, 2)
    this.area = new Uint8Array(buffer, HEADER_BYTES)
  }

  static create(bytes = SHARED_SLOT_BYTES): SharedSlot {
    return new SharedSlot(new SharedArrayBuffer(HEADER_BYTES + bytes))
  }

  /** The sequence number last rung on `bell`. */
  rung(bell: Bell): number {
    return Atomics.load(this.bells, bell)
  }

  /**
   * Write a message and ring `bell`; answers the new sequence number, or undefined (nothing written, nothing rung)
   * when the message does not fit or holds a tensor type the slot does not carry.
   */
  send(bell: Bell, meta: object, tensors: Feeds = {}): number | undefined {
    const entries: TensorEntry[] = []
    let dataBytes = 0
    for (const name in tensors) {
      const { type, data, dims } = tensors[name]!
      if (!isArrayType(type)) return undefined
      entries.push([name, type, dims, data.byteLength])
      dataBytes += align8(data.byteLength)
    }
    const header = encoder.encode(JSON.stringify({ meta, tensors: entries }))
    let offset = align8(4 + header.byteLength)
    if (offset + dataBytes > this.area.byteLength) return undefined
    new DataView(this.area.buffer, this.area.byteOffset).setUint32(0, header.byteLength, true)
    this.area.set(header, 4)
    for (const name in tensors) {
      const data = tensors[name]!.data
      this.area.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), offset)
      offset += align8(data.byteLength)
    }
    const seq = (Atomics.load(this.bells, bell) + 1) | 0
    Atomics.store(this.bells, bell, seq)
    Atomics.notify(this.bells, bell)
    return seq
  }

  /** Resolve once `bell` holds something other than `seen` (at once when it already does). */
  async wait(bell: Bell, seen: number): Promise<void> {
    for (;;) {
      const waiting = Atomics.waitAsync(this.bells, bell, seen)
      if (!waiting.async) return
      await waiting.value
      // Bun wakes a waiter now and then with the value unchanged (≈ 2 % of round trips here): wait again.
      if (Atomics.load(this.bells, bell) !== seen) return
    }
  }

  /** The message in the slot, its tensors copied out into arrays of their own. */
  read<M>(): Packet<M> {
    const length = new DataView(this.area.buffer, this.area.byteOffset).getUint32(0, true)
    const { meta, tensors: entries } = JSON.parse(decoder.decode(this.area.subarray(4, 4 + length))) as {
      meta: M
      tensors: TensorEntry[]
    }
    let offset = align8(4 + length)
    const tensors: Feeds = {}
    for (const [name, type, dims, byteLength] of entries) {
      const View = ARRAYS[type]
      const bytes = this.area.slice(offset, offset + byteLength)
      tensors[name] = { type, dims, data: new View(bytes.buffer, 0, byteLength / View.BYTES_PER_ELEMENT) as TypedArray }
      offset += align8(byteLength)
    }
    return { meta, tensors }
  }

  /** Ring `bell` with no message, so a waiter on a worker that is gone stops waiting. */
  wake(bell: Bell): void {
    Atomics.add(this.bells, bell, 1)
    Atomics.notify(this.bells, bell)
  }
}

/** A run or VAD sequence as it crosses a shared slot: tensors apart from the rest. */
export type SharedWork =
  | { type: 'run'; id: number; model: string; outputs?: string[] }
  | { type: 'vad-sequence'; id: number; model: string; sampleRate: number }

/** An answer as it crosses a shared slot; 'posted' when it did not fit and went by postMessage instead. */
export type SharedAnswer =
  | Omit<Extract<FromWorker, { type: 'result' }>, 'outputs'>
  | Extract<FromWorker, { type: 'failed' }>
  | { type: 'posted' }

/** A run or VAD sequence as a slot's packet: `inputs` and `state` of a VAD sequence travel as float32 tensors. */
export function toPacket(work: Work & { id: number; model: string }): Packet<SharedWork> {
  const { id, model } = work
  if (work.type === 'run') return { meta: { type: 'run', id, model, outputs: work.outputs }, tensors: work.feeds }
  const flat = (data: Float32Array): RawTensor => ({ type: 'float32', data, dims: [data.length] })
  return {
    meta: { type: 'vad-sequence', id, model, sampleRate: work.sampleRate },
    tensors: { inputs: flat(work.inputs), state: flat(work.state) },
  }
}

/** The worker-side message a packet stands for. */
export function fromPacket({ meta, tensors }: Packet<SharedWork>): Extract<ToWorker, { id: number }> {
  if (meta.type === 'run') return { ...meta, feeds: tensors }
  return { ...meta, inputs: tensors.inputs!.data as Float32Array, state: tensors.state!.data as Float32Array }
}
