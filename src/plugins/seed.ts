const ids = new WeakMap<object, number>()
let next = 0

/**
 * An Elysia `seed` for a plugin whose options hold services: each object stands for its identity (a number kept per
 * object), other values for themselves. Elysia registers a named plugin once per seed, so the same services share one
 * instance and different ones are never silently merged into the first.
 * @example new Elysia({ name: 'vireo.rate-limit', seed: seedOf(options.limiter, options.logger) })
 */
export function seedOf(...values: unknown[]): unknown[] {
  return values.map((value) => {
    if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return value
    let id = ids.get(value)
    if (id === undefined) {
      id = next++
      ids.set(value, id)
    }
    return `#${id}`
  })
}
