import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Value } from '@sinclair/typebox/value'
import { t } from 'elysia'
import { DATATYPES } from './tensors'

/** A manifest's `batching`, also shown in the model's metadata (`GET /api/v1/models/:name`). */
export const BatchingSchema = t.Object(
  {
    max_batch_size: t.Integer({ minimum: 1, maximum: 4096, description: 'rows one run may hold, summed along the batch axis' }),
    max_delay_ms: t.Number({
      minimum: 0,
      maximum: 1000,
      description: 'how long a request may wait for company while a worker is free; 0: never wait',
    }),
    axes: t.Optional(
      t.Record(t.String({ minLength: 1 }), t.Union([t.Integer({ minimum: 0 }), t.Null()]), {
        description: 'batch axis of each input and output where it is not 0; null: not batched, equal in every request of a batch',
      }),
    ),
  },
  { additionalProperties: false, description: 'dynamic batching: concurrent compatible requests run as one' },
)

/** `models/<name>/manifest.json`: what a model folder must say about itself. */
export const ManifestSchema = t.Object(
  {
    name: t.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,63}$', description: 'matches the folder name' }),
    version: t.String({ minLength: 1, maxLength: 64 }),
    task: t.Union([t.Literal('vad'), t.Literal('tensor')]),
    file: t.String({ minLength: 1, pattern: '^[^/\\\\]+$', description: 'ONNX file name inside the model folder' }),
    license: t.String({ minLength: 1 }),
    source: t.String({ minLength: 1 }),
    backends: t.Array(t.Union([t.Literal('cpu'), t.Literal('webgpu'), t.Literal('wasm')]), {
      minItems: 1,
      uniqueItems: true,
      description: 'tried in order',
    }),
    timeout_ms: t.Integer({ minimum: 1 }),
    warmup: t.Optional(
      t.Array(
        t.Object({
          name: t.String({ minLength: 1 }),
          shape: t.Array(t.Integer({ minimum: 0 })),
          datatype: t.Union(Object.keys(DATATYPES).map((d) => t.Literal(d))),
          data: t.Array(t.Union([t.Number(), t.String(), t.Boolean()])),
        }),
        { minItems: 1 },
      ),
    ),
    batching: t.Optional(BatchingSchema),
  },
  { additionalProperties: false },
)
export type Manifest = typeof ManifestSchema.static

/**
 * Read and check `<dir>/manifest.json`. Returns the manifest, or a sentence saying what is wrong
 * (a bad model folder must not stop the others from loading, so this never throws).
 * @example const manifest = await loadManifest('models/silero-vad')
 */
export async function loadManifest(dir: string): Promise<Manifest | string> {
  let text: string
  try {
    text = await readFile(join(dir, 'manifest.json'), 'utf8')
  } catch {
    return `${join(dir, 'manifest.json')} cannot be read`
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    return `manifest.json is not valid JSON: ${(error as Error).message}`
  }
  return checkManifest(json)
}

/** The pure half of loadManifest. */
export function checkManifest(json: unknown): Manifest | string {
  const problems = [...Value.Errors(ManifestSchema, json)].slice(0, 5).map((e) => `${e.path || '/'}: ${e.message}`)
  if (problems.length) return `manifest.json is invalid: ${problems.join('; ')}`
  return json as Manifest
}
