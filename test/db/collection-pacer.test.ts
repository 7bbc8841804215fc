import { describe, expect, it } from 'bun:test'
import { openDatabase } from '../../src/db/client'
import { heapBytes, startCollectionPacer } from '../../src/db/collection-pacer'
import { testConfig } from '../helpers'

const MiB = 2 ** 20
const base = { ...testConfig(), DATABASE_URL: undefined, inMemory: true }

/** Throw away `mib` MiB of array buffers (memory the runtime counts in the heap), then let `waitMs` pass. */
async function litter(mib: number, waitMs: number): Promise<void> {
  let garbage: ArrayBuffer[] = []
  for (let i = 0; i < mib * 8; i++) garbage.push(new ArrayBuffer(MiB / 8))
  garbage = []
  await Bun.sleep(waitMs)
}

describe('the collection pacer of an embedded PGlite', () => {
  // With PGlite open the runtime counts its WebAssembly memory in the heap and, in a server, has let hundreds of
  // megabytes of garbage pile up before it collected on its own; the pacer collects every PGLITE_COLLECT_EVERY_MB.
  it('collects each time the heap has grown by its budget, so garbage never piles up far past it', async () => {
    const database = await openDatabase({ ...base, PGLITE_COLLECT_EVERY_MB: 8 })
    try {
      expect(database.pacer).toBeDefined()
      // The runtime's count of PGlite's memory settles over its first collections (from ≈ 1.7 GB to ≈ 0.43 GB);
      // growth is read from the lowest count seen, as the pacer reads it.
      let lowest = heapBytes()
      let highest = 0
      for (let step = 0; step < 30; step++) {
        await litter(4, 120)
        const size = heapBytes()
        lowest = Math.min(lowest, size)
        highest = Math.max(highest, size - lowest)
      }
      // 120 MiB thrown away in steps of 4, the heap read every 100 ms: it grows to the budget (8 MiB) and is collected
      // there. Without the pacer's collections it reached 32 MiB in this test process before the runtime collected.
      expect(database.pacer!.collections).toBeGreaterThanOrEqual(5)
      expect(highest).toBeLessThan(16 * MiB)
    } finally {
      await database.close()
    }
  }, 30_000)

  it('stops with the database, and is not started when PGLITE_COLLECT_EVERY_MB is 0', async () => {
    const database = await openDatabase({ ...base, PGLITE_COLLECT_EVERY_MB: 16 })
    const pacer = database.pacer!
    await database.close()
    const before = pacer.collections
    for (let step = 0; step < 6; step++) await litter(8, 120)
    expect(pacer.collections).toBe(before)

    const off = await openDatabase({ ...base, PGLITE_COLLECT_EVERY_MB: 0 })
    expect(off.pacer).toBeUndefined()
    await off.close()
  }, 30_000)

  it('does not collect while the heap stays within its budget', async () => {
    const pacer = startCollectionPacer({ everyBytes: 64 * MiB, intervalMs: 20 })!
    try {
      await litter(4, 300)
      expect(pacer.collections).toBe(0)
    } finally {
      pacer.stop()
    }
  })
})
