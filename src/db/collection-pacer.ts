/**
 * Full garbage collections paced by the heap's growth, for a Bun process that holds an embedded PGlite.
 *
 * JavaScriptCore counts PGlite's WebAssembly memory in the size of the heap (≈ 0.43 GB once started, up to 1.7 GB
 * while it starts, against ≈ 5 MB of objects), and lets the heap grow in proportion to that size before it collects.
 * A server on PGlite could so pile up hundreds of megabytes of garbage, request bodies included, between two
 * collections, and with Bun's allocator keeping what it frees (`MIMALLOC_PURGE_DELAY=-1`) that high-water mark stayed
 * as RSS (README, "Memory under load"). The pacer reads the heap's size every `intervalMs` and runs a full collection
 * once it has grown `everyBytes` past its lowest reading since the last one. Such a collection is short (≈ 1.1 ms of the
 * main thread in a server here): PGlite's memory is one buffer the collector does not walk. Deno (V8) has no such
 * count, and no pacer.
 */

/**
 * The heap's size as the pacer reads it: the collector's capacity for cells plus the memory it counts beside them
 * (array buffers, PGlite's WebAssembly memory). `heapSize()` of `bun:jsc` says much the same but walks the heap to
 * say it: 0.75 ms at p50 with PGlite open and requests being parsed, against 43 µs for `process.memoryUsage()`
 * (each read every 50 ms in turn, 40 reads each), and the pacer reads ten times a second on the main thread.
 */
export function heapBytes(): number {
  const { heapTotal, external } = process.memoryUsage()
  return heapTotal + external
}

export interface CollectionPacer {
  /** Collections the pacer has run so far. */
  readonly collections: number
  stop(): void
}

export interface CollectionPacerOptions {
  /** Growth of the heap, in bytes, after which the pacer collects; 0 turns it off. */
  everyBytes: number
  /** How often the heap's size is read. */
  intervalMs?: number
}

/**
 * Start pacing collections, or return undefined where there is nothing to pace (off, or not under Bun).
 * @example const pacer = startCollectionPacer({ everyBytes: 64 * 2 ** 20 }); pacer?.stop()
 */
export function startCollectionPacer({ everyBytes, intervalMs = 100 }: CollectionPacerOptions): CollectionPacer | undefined {
  if (everyBytes <= 0 || !process.versions.bun) return undefined
  let floor = heapBytes()
  let collections = 0
  const timer = setInterval(() => {
    const size = heapBytes()
    // The runtime collected on its own: growth counts from there.
    if (size < floor) floor = size
    else if (size - floor >= everyBytes) {
      Bun.gc(false)
      collections++
      floor = heapBytes()
    }
  }, intervalMs)
  // Never what keeps a process alive.
  timer.unref()
  return {
    get collections() {
      return collections
    },
    stop: () => clearInterval(timer),
  }
}
