import { ValidationError } from '../errors'
import type { Registry } from '../inference/registry'
import type { InferRequest } from '../inference/tensors'
import type { Job } from './queue'

/** What a job does: an `infer` job is the request /infer would have run, through the same registry and checks. */
export async function executeJob(registry: Registry, job: Job, signal: AbortSignal): Promise<unknown> {
  if (job.task === 'infer') return registry.infer(job.model, job.input as InferRequest, { signal })
  throw new ValidationError(`Job task "${job.task}" has no executor in this process`)
}
