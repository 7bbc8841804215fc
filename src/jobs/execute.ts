import { detectSpeech } from '../audio/detect'
import { resolveVadOptions } from '../audio/params'
import { ValidationError } from '../errors'
import type { Registry } from '../inference/registry'
import type { InferRequest } from '../inference/tensors'
import type { Job } from './queue'

/**
 * What a job does: an `infer` job is the request /infer would have run, a `vad` job the upload /audio/vad
 * would have segmented (its length was checked when it was accepted), through the same registry and checks.
 */
export async function executeJob(registry: Registry, job: Job, signal: AbortSignal): Promise<unknown> {
  if (job.task === 'infer') return registry.infer(job.model, job.input as InferRequest, { signal, owner: job.ownerKeyId })
  if (job.task === 'vad') {
    if (!job.inputBytes) throw new ValidationError('This vad job holds no audio')
    const outcome = await detectSpeech(registry, job.inputBytes, {
      ...resolveVadOptions(job.parameters),
      signal,
      owner: job.ownerKeyId,
      model: job.model,
    })
    return outcome.message === undefined ? outcome.data : { ...outcome.data, message: outcome.message }
  }
  throw new ValidationError(`Job task "${job.task}" has no executor in this process`)
}
