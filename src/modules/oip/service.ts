import { TypeCompiler } from '@sinclair/typebox/compiler'
import { fieldIssue, ServiceUnavailableError, ValidationError } from '../../errors'
import { decodeInputs, encodeTensor, oipDatatype } from '../../inference/oip-binary'
import type { CallOptions, ModelInfo, Registry } from '../../inference/registry'
import type { InferenceStatistics, ModelStat } from '../../inference/statistics'
import type { DecodedInput, DecodedRequest, InferResult } from '../../inference/tensors'
import type { OipBody } from '../../plugins/body-parser'
import { type HealthDeps, readiness } from '../health/service'
import { OipModel } from './model'

/** What `GET /v2` advertises. Each extension that lands adds its name here. */
export const OIP_EXTENSIONS: string[] = ['binary_tensor_data', 'statistics', 'model_repository']

/** Triton's platform name for ONNX models run by onnxruntime, which tritonclient users know. */
export const PLATFORM = 'onnxruntime_onnx'

/** A model that never loaded has no inputs or outputs to describe, nor runs: 503, as `/api/v1` answers its infer. */
function loaded(info: ModelInfo): ModelInfo & { version: string } {
  if (info.status === 'loading') throw new ServiceUnavailableError(`Model "${info.name}" is still loading`, 2)
  if (info.status === 'failed') throw new ServiceUnavailableError(`Model "${info.name}" failed to load: ${info.reason}`, 60)
  return info as ModelInfo & { version: string }
}

export function modelMetadata(info: ModelInfo): OipModel.modelMetadata {
  const model = loaded(info)
  const tensors = (list: ModelInfo['inputs']) =>
    list.map((tensor) => ({ name: tensor.name, datatype: oipDatatype(tensor.datatype), shape: tensor.shape ?? [-1] }))
  const versions = model.versions.flatMap((v) => (v.version === null ? [] : [v.version]))
  return { name: model.name, versions, platform: PLATFORM, inputs: tensors(model.inputs), outputs: tensors(model.outputs) }
}

export function modelReady(info: ModelInfo): { name: string; ready: true } {
  const model = loaded(info)
  if (model.status !== 'ready') throw new ServiceUnavailableError(`Model "${model.name}" is not ready: ${model.reason}`, 10)
  return { name: model.name, ready: true }
}

/** Ready as `/api/v1/health/ready` says it (a degraded service, some models down, still serves the rest). */
export async function serverReady(deps: HealthDeps): Promise<{ ready: true }> {
  const report = await readiness(deps)
  if (report.status === 'unavailable') {
    const failing = report.checks.filter((c) => c.status === 'fail').map((c) => c.name)
    throw new ServiceUnavailableError(`vireo is not ready to serve (failing: ${failing.join(', ')})`, 5)
  }
  return { ready: true }
}

/** Statistics of every model (no name), one model (every version it has) or one version. */
export function modelStats(registry: Pick<Registry, 'get' | 'list'>, statistics: InferenceStatistics, name?: string, version?: string) {
  const versions =
    name === undefined
      ? registry.list().flatMap((m) => m.versions.map((v) => ({ name: m.name, version: v.version })))
      : version === undefined
        ? registry.get(name).versions.map((v) => ({ name, version: v.version }))
        : [{ name, version: registry.get(name, version).version }]
  const model_stats: ModelStat[] = versions.flatMap((v) => (v.version === null ? [] : [statistics.of(v.name, v.version)]))
  return { model_stats }
}

const checkRequest = TypeCompiler.Compile(OipModel.inferRequest)

/** Parameters vireo would silently get wrong if it ignored them; any other parameter is ignored, as the protocol allows. */
const REFUSED: Record<string, string> = {
  sequence_id: 'vireo has no sequence batcher; send each request on its own',
  sequence_start: 'vireo has no sequence batcher; send each request on its own',
  sequence_end: 'vireo has no sequence batcher; send each request on its own',
  shared_memory_region: 'vireo has no shared-memory extension; send the data in the body',
  shared_memory_byte_size: 'vireo has no shared-memory extension; send the data in the body',
  shared_memory_offset: 'vireo has no shared-memory extension; send the data in the body',
  classification: 'vireo has no classification extension; ask for the raw output',
}

function refuseUnsupported(parameters: OipModel.parameters | undefined, at: string): { path: string; message: string }[] {
  return Object.keys(parameters ?? {})
    .filter((key) => Object.hasOwn(REFUSED, key))
    .map((key) => ({ path: `${at}/parameters/${key}`, message: `"${key}" is not supported: ${REFUSED[key]}` }))
}

function booleanParameter(
  parameters: OipModel.parameters | undefined,
  key: string,
  at: string,
  issues: { path: string; message: string }[],
) {
  const value = parameters?.[key]
  if (value === undefined || typeof value === 'boolean') return value
  issues.push({ path: `${at}/parameters/${key}`, message: `${key} must be true or false` })
  return undefined
}

function wholeParameter(parameters: OipModel.parameters | undefined, key: string, issues: { path: string; message: string }[]) {
  const value = parameters?.[key]
  if (value === undefined || (typeof value === 'number' && Number.isSafeInteger(value) && value >= 1)) return value
  issues.push({ path: `/parameters/${key}`, message: `${key} must be a whole number ≥ 1` })
  return undefined
}

/** A checked OIP infer request, turned into what the registry runs, and how each output should come back. */
export interface PreparedInfer {
  request: DecodedRequest
  /** The response's `id`. */
  id: string
  /** Whether an output (by name) goes back as binary data. */
  binary: (output: string) => boolean
}

/**
 * Check an OIP infer body field by field, slice its binary data among the inputs and build the registry's request.
 * `timeout` (tritonclient's, in µs) and `timeout_ms` (vireo's) set the budget; `priority` is taken and ignored
 * (vireo has one priority); the parameters in REFUSED answer 400.
 */
export function prepareInfer(model: string, body: OipBody, requestId: string): PreparedInfer {
  const header = body.header
  if (!checkRequest.Check(header)) {
    const issues = [...checkRequest.Errors(header)].slice(0, 10).map(fieldIssue)
    throw new ValidationError('The inference request does not follow the Open Inference Protocol', issues)
  }
  const issues = [...refuseUnsupported(header.parameters, '')]
  if (header.model_name !== undefined && header.model_name !== model)
    issues.push({ path: '/model_name', message: `The body names model "${header.model_name}" but the URL names "${model}"` })
  header.inputs.forEach((input, i) => {
    issues.push(...refuseUnsupported(input.parameters, `/inputs/${i}`))
  })
  const wanted = new Map<string, boolean | undefined>()
  header.outputs?.forEach((output, i) => {
    issues.push(...refuseUnsupported(output.parameters, `/outputs/${i}`))
    wanted.set(output.name, booleanParameter(output.parameters, 'binary_data', `/outputs/${i}`, issues))
  })
  const binaryOutput = booleanParameter(header.parameters, 'binary_data_output', '', issues) ?? false
  const timeoutMs = wholeParameter(header.parameters, 'timeout_ms', issues)
  const timeoutUs = wholeParameter(header.parameters, 'timeout', issues)
  if (timeoutMs !== undefined && timeoutUs !== undefined)
    issues.push({ path: '/parameters/timeout', message: 'Give timeout (µs) or timeout_ms, not both' })
  if (issues.length) throw new ValidationError('The inference request cannot be served', issues)

  const decoded = decodeInputs(header.inputs, body.binary)
  const inputs: DecodedInput[] = header.inputs.map((input, i) => ({
    name: input.name,
    shape: input.shape,
    datatype: input.datatype,
    // A datatype vireo cannot carry arrives undecoded (null): the model check names the datatype, not the data.
    data: decoded[i] === undefined ? flatten(input.data ?? []) : ((decoded[i] as DecodedInput['data'] | null) ?? []),
  }))
  const budget = timeoutMs ?? (timeoutUs === undefined ? undefined : Math.ceil(Number(timeoutUs) / 1000))
  const request: DecodedRequest = {
    id: header.id,
    inputs,
    ...(header.outputs ? { outputs: header.outputs.map((o) => ({ name: o.name })) } : {}),
    ...(budget === undefined ? {} : { parameters: { timeout_ms: Number(budget) } }),
  }
  return { request, id: header.id ?? requestId, binary: (output) => wanted.get(output) ?? binaryOutput }
}

/** Nested data (`[[1, 2], [3, 4]]`, which the protocol allows) in the flat row-major order the model check expects. */
function flatten(data: unknown[]): DecodedInput['data'] {
  return (data.some(Array.isArray) ? data.flat(Number.POSITIVE_INFINITY) : data) as DecodedInput['data']
}

/** The protocol's response to a finished inference: the JSON header, and the binary parts after it when any output asked for binary data. */
export function inferResponse(result: InferResult, prepared: PreparedInfer): { header: OipModel.inferResponse; parts: Uint8Array[] } {
  const parts: Uint8Array[] = []
  const outputs = result.outputs.map((output): OipModel.inferOutput => {
    if (!prepared.binary(output.name)) return output
    const bytes = encodeTensor(output.datatype, output.data)
    parts.push(bytes)
    return { name: output.name, shape: output.shape, datatype: output.datatype, parameters: { binary_data_size: bytes.byteLength } }
  })
  return { header: { model_name: result.model_name, model_version: result.model_version, id: prepared.id, outputs }, parts }
}

/** Run one prepared request on the model the URL names. */
export async function infer(registry: Registry, model: string, version: string | undefined, prepared: PreparedInfer, call: CallOptions) {
  return inferResponse(await registry.infer(model, prepared.request, { ...call, version }), prepared)
}
