import { cp, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { InferRequest } from '../../src/inference/tensors'
import { FIXTURES } from './helpers'

/**
 * Copy a fixture model into `root` as `<name>/<version>/` (or flat `<name>/` when version is null), its
 * manifest renamed to match; `manifest` overrides fields.
 */
export async function placeModel(
  root: string,
  name: string,
  version: string | null,
  { from = 'arith', manifest = {} }: { from?: string; manifest?: Record<string, unknown> } = {},
): Promise<string> {
  const dir = version === null ? join(root, name) : join(root, name, version)
  await mkdir(dir, { recursive: true })
  await cp(join(FIXTURES, from), dir, { recursive: true })
  const original = JSON.parse(await readFile(join(FIXTURES, from, 'manifest.json'), 'utf8'))
  await writeFile(join(dir, 'manifest.json'), JSON.stringify({ ...original, name, version: version ?? original.version, ...manifest }))
  return dir
}

export const arithRequest: InferRequest = {
  inputs: [
    { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] },
    { name: 'n', shape: [1, 2], datatype: 'INT64', data: [10, -3] },
  ],
}
