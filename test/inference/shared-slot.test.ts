import { describe, expect, it } from 'bun:test'
import { fromPacket, SharedSlot, TO_POOL, TO_WORKER, toPacket } from '../../src/inference/shared-slot'
import type { Feeds } from '../../src/inference/tensors'

const feeds = (): Feeds => ({
  x: { type: 'float32', data: Float32Array.of(1.5, -2, 3.25), dims: [1, 3] },
  n: { type: 'int64', data: BigInt64Array.of(-(2n ** 62n), 7n), dims: [2] },
  flags: { type: 'bool', data: Uint8Array.of(1, 0, 1), dims: [3] },
  half: { type: 'uint16', data: Uint16Array.of(65535), dims: [] },
  wide: { type: 'float64', data: Float64Array.of(Math.PI), dims: [1, 1] },
})

describe('shared slot', () => {
  it('carries a message and its tensors, each type and shape intact, in arrays of their own', () => {
    const slot = SharedSlot.create(4096)
    expect(slot.send(TO_WORKER, { type: 'run', id: 7, model: 'm' }, feeds())).toBe(1)
    const { meta, tensors } = slot.read<Record<string, unknown>>()
    expect(meta).toEqual({ type: 'run', id: 7, model: 'm' })
    const sent = feeds()
    for (const name of Object.keys(sent)) {
      expect(tensors[name]!.type).toBe(sent[name]!.type)
      expect(tensors[name]!.dims).toEqual(sent[name]!.dims)
      expect(tensors[name]!.data).toEqual(sent[name]!.data)
      // Not a view of the slot: the next message must not change what a caller holds.
      expect(tensors[name]!.data.buffer).toBeInstanceOf(ArrayBuffer)
    }
    slot.send(TO_POOL, { type: 'posted' })
    expect(tensors.x!.data).toEqual(Float32Array.of(1.5, -2, 3.25))
    expect([slot.rung(TO_WORKER), slot.rung(TO_POOL)]).toEqual([1, 1])
  })

  it('refuses, ringing nothing, a message that does not fit or holds a type it does not carry', () => {
    const slot = SharedSlot.create(256)
    const big: Feeds = { x: { type: 'float32', data: new Float32Array(64), dims: [64] } }
    expect(slot.send(TO_WORKER, { id: 1 }, big)).toBeUndefined()
    const odd = { x: { type: 'float16', data: new Uint16Array(1), dims: [1] } } as unknown as Feeds
    expect(slot.send(TO_WORKER, { id: 2 }, odd)).toBeUndefined()
    expect(slot.rung(TO_WORKER)).toBe(0)
    expect(slot.send(TO_WORKER, { id: 3 }, { x: { type: 'float32', data: new Float32Array(16), dims: [16] } })).toBe(1)
  })

  it('wakes a waiter when its bell rings, at once when it already has, and on wake()', async () => {
    const slot = SharedSlot.create(1024)
    const order: string[] = []
    const waiting = slot.wait(TO_POOL, 0).then(() => order.push('answered'))
    await Bun.sleep(5)
    expect(order).toEqual([])
    slot.send(TO_WORKER, { id: 1 })
    await Bun.sleep(5)
    // A ring in the other direction is not an answer.
    expect(order).toEqual([])
    slot.send(TO_POOL, { id: 1 })
    await waiting
    expect(order).toEqual(['answered'])
    await slot.wait(TO_POOL, 0)
    const gone = slot.wait(TO_POOL, 1)
    slot.wake(TO_POOL)
    await gone
    expect(slot.rung(TO_POOL)).toBe(2)
  })

  it('carries a VAD sequence as two float32 tensors and gives back the same work', () => {
    const inputs = Float32Array.from({ length: 576 * 2 }, (_, i) => i / 1000)
    const state = Float32Array.from({ length: 256 }, (_, i) => -i)
    const packet = toPacket({ type: 'vad-sequence', id: 3, model: 'silero-vad', inputs, state, sampleRate: 16000 })
    const slot = SharedSlot.create()
    slot.send(TO_WORKER, packet.meta, packet.tensors)
    const work = fromPacket(slot.read())
    expect(work).toMatchObject({ type: 'vad-sequence', id: 3, model: 'silero-vad', sampleRate: 16000 })
    if (work.type !== 'vad-sequence') throw new Error('not a sequence')
    expect(work.inputs).toEqual(inputs)
    expect(work.state).toEqual(state)
  })
})
