import { Elysia } from 'elysia'
import pkg from '../../../package.json' with { type: 'json' }
import { oipResponses } from '../../envelope'
import { encodeBody, HEADER_LENGTH_HEADER } from '../../inference/oip-binary'
import type { Registry } from '../../inference/registry'
import type { InferenceStatistics } from '../../inference/statistics'
import type { KeyService } from '../../keys/service'
import type { Logger } from '../../logger'
import { auth } from '../../plugins/auth'
import { OIP_BODY_EXTENSION, type OipBody } from '../../plugins/body-parser'
import { type RateLimiter, rateLimit } from '../../plugins/rate-limit'
import { requestState } from '../../plugins/request-id'
import { OIP_PREFIX } from '../../plugins/versioning'
import type { HealthDeps } from '../health/service'
import { OipModel } from './model'
import { infer, modelMetadata, modelReady, modelStats, OIP_EXTENSIONS, prepareInfer, serverReady } from './service'

export interface OipModuleOptions {
  registry: Registry
  statistics: InferenceStatistics
  keys: KeyService
  limiter: RateLimiter
  logger: Logger
  health: HealthDeps
  /** MAX_UPLOAD_BYTES: the documented bound of a body carrying binary tensor data. */
  maxUploadBytes: number
}

const PUBLIC = { security: [] }

/** What the infer handler reads of Elysia's context; both infer routes (with and without a version) share it. */
interface InferContext {
  params: { name: string; version?: string }
  body: unknown
  principal: { id: string }
  request: Request
  set: { headers: Record<string, string | number> }
}

/**
 * The Open Inference Protocol (KServe v2) beside `/api/v1`: health, server and model metadata, inference with
 * the binary tensor data extension, and statistics. Answers are bare protocol JSON (no envelope); errors are
 * `{ "error": "…" }` (the error handler, by path). Keys, scopes, rate limits, limits and logs are v1's.
 * @example app.use(oipModule({ registry, statistics, keys, limiter, logger, health, maxUploadBytes }))
 */
export const oipModule = (options: OipModuleOptions) => {
  const { registry, statistics, keys, limiter, logger, health, maxUploadBytes } = options

  const inferDetail = {
    [OIP_BODY_EXTENSION]: true,
    summary: 'Run the model: the Open Inference Protocol infer request, JSON or with binary tensor data',
    description:
      'JSON, or the JSON inference header followed by binary tensor data, its length in `Inference-Header-Content-Length` ' +
      '(Triton binary tensor data extension). Inputs carry `data`, or `parameters.binary_data_size` and their bytes ' +
      '(little-endian, row-major; BOOL one byte) in order after the header. Outputs come back as binary data when ' +
      "`parameters.binary_data_output` or the output's `parameters.binary_data` is true; the response then is " +
      'application/octet-stream with `Inference-Header-Content-Length`.',
    requestBody: {
      required: true,
      content: {
        'application/json': { schema: OipModel.inferRequest as never },
        'application/octet-stream': {
          schema: {
            type: 'string' as const,
            format: 'binary',
            maxLength: maxUploadBytes,
            description: 'JSON header, then binary tensor data',
          },
        },
      },
    },
  }
  const inferResponses = oipResponses({ 200: OipModel.inferResponse }, 401, 403, 404, 413, 415, 503, 504)

  async function inferRoute({ params, body, principal, request, set }: InferContext) {
    const prepared = prepareInfer(params.name, body as OipBody, requestState(request)?.id ?? '')
    const { header, parts } = await infer(registry, params.name, params.version, prepared, { signal: request.signal, owner: principal.id })
    if (!parts.length) return header
    const encoded = encodeBody(header, parts)
    set.headers['content-type'] = 'application/octet-stream'
    set.headers[HEADER_LENGTH_HEADER] = String(encoded.headerLength)
    // A Response is sent as it is: the JSON response schema, which documents the JSON answer, does not apply to bytes.
    return new Response(encoded.body as Uint8Array<ArrayBuffer>, { headers: set.headers as Record<string, string> })
  }

  return (
    new Elysia({ name: 'vireo.module.oip', prefix: OIP_PREFIX, normalize: false, detail: { tags: ['oip'] } })
      .use(auth({ keys, limiter }))
      .use(rateLimit({ limiter, logger }))
      .get('', () => ({ name: 'vireo', version: pkg.version, extensions: OIP_EXTENSIONS }), {
        rateLimit: 'public',
        detail: { ...PUBLIC, summary: 'Server metadata: name, version and the protocol extensions vireo speaks' },
        response: oipResponses({ 200: OipModel.serverMetadata }),
      })
      .get('/health/live', () => ({ live: true as const }), {
        rateLimit: 'public',
        detail: { ...PUBLIC, summary: 'Liveness: the process answers' },
        response: oipResponses({ 200: OipModel.live }),
      })
      .get('/health/ready', () => serverReady(health), {
        rateLimit: 'public',
        detail: { ...PUBLIC, summary: 'Readiness, as /api/v1/health/ready: 503 when vireo cannot serve' },
        response: oipResponses({ 200: OipModel.ready }, 503),
      })
      // Before /models/:name, so a model cannot shadow it; Triton's path for every model's statistics.
      .get('/models/stats', () => modelStats(registry, statistics), {
        auth: 'inference',
        rateLimit: 'inference',
        detail: { summary: 'Statistics of every model (statistics extension)' },
        response: oipResponses({ 200: OipModel.stats }, 401, 403),
      })
      .get('/models/:name', ({ params }) => modelMetadata(registry.get(params.name)), {
        auth: 'inference',
        rateLimit: 'inference',
        params: OipModel.params,
        detail: { summary: 'Model metadata: versions, platform, inputs and outputs (-1: dynamic dimension)' },
        response: oipResponses({ 200: OipModel.modelMetadata }, 401, 403, 404, 503),
      })
      .get('/models/:name/versions/:version', ({ params }) => modelMetadata(registry.get(params.name, params.version)), {
        auth: 'inference',
        rateLimit: 'inference',
        params: OipModel.versionParams,
        detail: { summary: 'Metadata of one model version' },
        response: oipResponses({ 200: OipModel.modelMetadata }, 401, 403, 404, 503),
      })
      .get('/models/:name/ready', ({ params }) => modelReady(registry.get(params.name)), {
        auth: 'inference',
        rateLimit: 'inference',
        params: OipModel.params,
        detail: { summary: 'Model readiness: 200 when it serves, 503 when not' },
        response: oipResponses({ 200: OipModel.modelReady }, 401, 403, 404, 503),
      })
      .get('/models/:name/versions/:version/ready', ({ params }) => modelReady(registry.get(params.name, params.version)), {
        auth: 'inference',
        rateLimit: 'inference',
        params: OipModel.versionParams,
        detail: { summary: 'Readiness of one model version' },
        response: oipResponses({ 200: OipModel.modelReady }, 401, 403, 404, 503),
      })
      .get('/models/:name/stats', ({ params }) => modelStats(registry, statistics, params.name), {
        auth: 'inference',
        rateLimit: 'inference',
        params: OipModel.params,
        detail: { summary: 'Statistics of one model: counts and cumulative durations in ns (statistics extension)' },
        response: oipResponses({ 200: OipModel.stats }, 401, 403, 404),
      })
      .get('/models/:name/versions/:version/stats', ({ params }) => modelStats(registry, statistics, params.name, params.version), {
        auth: 'inference',
        rateLimit: 'inference',
        params: OipModel.versionParams,
        detail: { summary: 'Statistics of one model version' },
        response: oipResponses({ 200: OipModel.stats }, 401, 403, 404),
      })
      .post('/models/:name/infer', inferRoute, {
        auth: 'inference',
        rateLimit: 'inference',
        params: OipModel.params,
        detail: inferDetail,
        response: inferResponses,
      })
      .post('/models/:name/versions/:version/infer', inferRoute, {
        auth: 'inference',
        rateLimit: 'inference',
        params: OipModel.versionParams,
        detail: { ...inferDetail, summary: 'Run one model version (see POST /v2/models/{name}/infer)' },
        response: inferResponses,
      })
  )
}
