import { TypeCompiler } from '@sinclair/typebox/compiler'
import type { ItemError } from '../../envelope'
import { issueMessage, toAppError, ValidationError } from '../../errors'
import type { CallOptions, Registry } from '../../inference/registry'
import { type InferRequest, InferRequestSchema, type InferResult } from '../../inference/tensors'

const checkRequest = TypeCompiler.Compile(InferRequestSchema)

/** Schema-check one infer request that arrived inside a batch, with paths relative to the batch body. */
export function parseBatchItem(value: unknown, index: number): InferRequest {
  if (checkRequest.Check(value)) return value
  const issues = [...checkRequest.Errors(value)].map((e) => ({ path: `/requests/${index}${e.path}`, message: issueMessage(e) }))
  throw new ValidationError(`Request ${index} is not a valid infer request`, issues)
}

export type BatchItem =
  | { index: number; status: 'succeeded'; result: InferResult }
  | { index: number; status: 'failed'; error: Omit<ItemError, 'index'> }

/**
 * Run every request of a batch on its own: one bad or failing item never sinks the others.
 * Items run concurrently, so the pool spreads them over its workers.
 */
export async function inferBatch(registry: Registry, name: string, requests: unknown[], call: Pick<CallOptions, 'signal' | 'owner'> = {}) {
  const items: BatchItem[] = await Promise.all(
    requests.map(async (raw, index): Promise<BatchItem> => {
      try {
        // Paths inside an item's error are relative to that item (its index says which).
        return { index, status: 'succeeded', result: await registry.infer(name, parseBatchItem(raw, index), call) }
      } catch (error) {
        const known = toAppError(error, 'PROCESSING_ERROR', 'The model failed on this item')
        return {
          index,
          status: 'failed',
          error:
            known.details === undefined
              ? { code: known.code, message: known.message }
              : { code: known.code, message: known.message, details: known.details },
        }
      }
    }),
  )
  const errors: ItemError[] = items.flatMap((item) => (item.status === 'failed' ? [{ index: item.index, ...item.error }] : []))
  const succeeded = items.length - errors.length
  return { data: { succeeded, failed: errors.length, items }, errors, message: `${succeeded} of ${items.length} requests succeeded` }
}
