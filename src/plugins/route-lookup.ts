/** What checks made before the body is read need to know of a route: its method, pattern and declared options. */
export interface RouteHooks {
  method: string
  path: string
  hooks?: { body?: unknown; detail?: Record<string, unknown> }
}

export type RouteLookup = (method: string, path: string) => RouteHooks | undefined

/**
 * Looks up a route's declared hooks by method and pattern, once per route (routes do not change after start).
 * @example const find = routeLookup(() => app.routes); find('POST', '/api/v1/keys/')?.hooks?.body
 */
export function routeLookup(routes: () => readonly RouteHooks[]): RouteLookup {
  const cache = new Map<string, RouteHooks | null>()
  return function findRoute(method: string, path: string): RouteHooks | undefined {
    const key = `${method} ${path}`
    let found = cache.get(key)
    if (found === undefined) {
      found = routes().find((r) => r.method === method && r.path === path) ?? null
      cache.set(key, found)
    }
    return found ?? undefined
  }
}
