/** The HTTP methods an OpenAPI path item can hold; its other keys (`parameters`, `summary`, …) are not operations. */
const METHODS = new Set(['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'])

/** Every operation of an OpenAPI document, with its path and method: what the OpenAPI, contract and docs tests walk. */
export function operations<Operation>(spec: { paths: Record<string, Record<string, Operation>> }) {
  return Object.entries(spec.paths).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([method]) => METHODS.has(method))
      .map(([method, op]) => ({ path, method, op })),
  )
}
