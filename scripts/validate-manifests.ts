/**
 * Validates every manifest under deploy/kubernetes/ offline, against the schemas of the API that will receive it:
 * Kubernetes' own kinds with the `kubernetes-models` package (validators generated from Kubernetes' OpenAPI
 * document), KServe's kinds with Ajv against KServe's CRD schemas vendored in deploy/schemas/kserve.json
 * (scripts/vendor-kserve-schemas.ts). For KServe's kinds unknown fields are errors, as under `kubectl apply`'s
 * default strict field validation (a CRD's schema leaves `additionalProperties` out and the API server refuses
 * unknown fields all the same, except under `x-kubernetes-preserve-unknown-fields`). kubernetes-models' validators
 * let unknown fields through, so a pod template (where a misspelt `readinessProbe` would silently vanish) is also
 * checked field by field against core/v1 PodSpec as KServe's InferenceService predictor embeds it (generated from
 * k8s.io/api; the predictor only adds fields of its own beside it).
 *   bun scripts/validate-manifests.ts [dir]     exits 1 and names every problem when a manifest is invalid
 */
import { readdir } from 'node:fs/promises'
import { join, relative } from 'node:path'
import Ajv, { type ValidateFunction } from 'ajv'

const ROOT = join(import.meta.dir, '..')

export interface Manifest {
  apiVersion?: string
  kind?: string
  metadata?: { name?: string }
  [field: string]: unknown
}

/** Every YAML document in the folder and below, with the file it came from. */
export async function readManifests(dir: string): Promise<{ file: string; doc: Manifest }[]> {
  const files = (await readdir(dir, { recursive: true })).filter((f) => /\.ya?ml$/.test(f)).sort()
  const found: { file: string; doc: Manifest }[] = []
  for (const file of files) {
    const parsed = Bun.YAML.parse(await Bun.file(join(dir, file)).text()) as Manifest | Manifest[] | null
    for (const doc of [parsed].flat()) if (doc) found.push({ file: join(dir, file), doc })
  }
  return found
}

/** Object schemas that list their properties refuse any other, unless they preserve unknown fields. */
function strict(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(strict)
  if (schema === null || typeof schema !== 'object') return schema
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(schema))
    out[key] = key === 'properties' ? Object.fromEntries(Object.entries(value as object).map(([k, v]) => [k, strict(v)])) : strict(value)
  if (out.properties && out.additionalProperties === undefined && !out['x-kubernetes-preserve-unknown-fields'])
    out.additionalProperties = false
  return out
}

type PodSpecHolder = { properties: { spec: { properties: { predictor: unknown } } } }
const POD_SPEC = 'core/v1/PodSpec'

/** Where a built-in kind keeps its pod template's spec, if it has one. */
function podSpecOf(doc: Manifest): { path: string; spec: unknown } | undefined {
  const spec = doc.spec as { template?: { spec?: unknown }; jobTemplate?: { spec?: { template?: { spec?: unknown } } } } | undefined
  if (spec?.template?.spec) return { path: '/spec/template/spec', spec: spec.template.spec }
  if (spec?.jobTemplate?.spec?.template?.spec)
    return { path: '/spec/jobTemplate/spec/template/spec', spec: spec.jobTemplate.spec.template.spec }
  return undefined
}

const INT32 = 2 ** 31
function crdValidators(): Map<string, ValidateFunction> {
  const ajv = new Ajv({ allErrors: true, strict: false })
  // The formats Kubernetes' structural schemas use; Ajv knows none of them without a plugin.
  ajv.addFormat('int32', { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= -INT32 && n < INT32 })
  ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isSafeInteger(n) })
  ajv.addFormat('date-time', (s: string) => !Number.isNaN(Date.parse(s)))
  const vendored = require(join(ROOT, 'deploy', 'schemas', 'kserve.json')) as { schemas: Record<string, unknown> }
  const validators = new Map<string, ValidateFunction>()
  for (const [key, schema] of Object.entries(vendored.schemas)) validators.set(key, ajv.compile(strict(schema) as object))
  const isvc = vendored.schemas['serving.kserve.io/v1beta1/InferenceService'] as PodSpecHolder
  validators.set(POD_SPEC, ajv.compile(strict(isvc.properties.spec.properties.predictor) as object))
  return validators
}

/** kubernetes-models' module path for an apiVersion (`v1` is the core group, at the package's root). */
function modelPath(apiVersion: string, kind: string): string {
  return `kubernetes-models/${apiVersion}/${kind}`
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/

/** Problems with one manifest; empty when it is valid. */
export async function validateManifest(doc: Manifest, crds = crdValidators()): Promise<string[]> {
  const { apiVersion, kind } = doc
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return ['apiVersion and kind are required']
  if (!DNS_LABEL.test(doc.metadata?.name ?? '')) return [`metadata.name ${JSON.stringify(doc.metadata?.name)} is not a DNS label`]
  const crd = crds.get(`${apiVersion}/${kind}`)
  if (crd) {
    return crd(doc) ? [] : ajvProblems(crd)
  }
  let Model: new (data: object) => { validate(): void }
  try {
    Model = (await import(modelPath(apiVersion, kind)))[kind]
  } catch {
    return [`no schema for ${apiVersion} ${kind}`]
  }
  const problems: string[] = []
  try {
    new Model(doc).validate()
  } catch (error) {
    const errors = (error as { errors?: { instancePath: string; message?: string }[] }).errors
    problems.push(...(errors?.map((e) => `${e.instancePath || '/'} ${e.message}`) ?? [String(error)]))
  }
  const pod = podSpecOf(doc)
  const podSpec = crds.get(POD_SPEC)
  if (pod && podSpec && !podSpec(pod.spec)) problems.push(...ajvProblems(podSpec, pod.path))
  return problems
}

function ajvProblems(validate: ValidateFunction, prefix = ''): string[] {
  return (validate.errors ?? []).map((e) => {
    const extra = e.keyword === 'additionalProperties' ? `: ${(e.params as { additionalProperty: string }).additionalProperty}` : ''
    return `${prefix}${e.instancePath || (prefix ? '' : '/')} ${e.message}${extra}`
  })
}

if (import.meta.main) {
  const dir = process.argv[2] ?? join(ROOT, 'deploy', 'kubernetes')
  const crds = crdValidators()
  let failed = 0
  const manifests = await readManifests(dir)
  for (const { file, doc } of manifests) {
    const problems = await validateManifest(doc, crds)
    const what = `${relative(ROOT, file)}: ${doc.apiVersion} ${doc.kind} ${doc.metadata?.name ?? ''}`
    if (problems.length === 0) console.log(`  ok   ${what}`)
    else {
      failed++
      console.error(`  FAIL ${what}\n${problems.map((p) => `         ${p}`).join('\n')}`)
    }
  }
  console.log(`manifests: ${manifests.length - failed} valid, ${failed} invalid`)
  if (failed || manifests.length === 0) process.exit(1)
}
