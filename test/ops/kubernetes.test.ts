import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { type Manifest, readManifests, validateManifest } from '../../scripts/validate-manifests'
import { loadConfig } from '../../src/config'
import { createTestApp, req, type TestApp } from '../helpers'

/**
 * deploy/kubernetes/ is checked offline twice: against the API schemas (as .ci/run's `lint:manifests` does, and
 * that the validator does refuse what the API server would), and against vireo itself: the probes name routes
 * that answer, the shutdown budget covers the graceful shutdown, ports, names and selectors line up.
 */

const ROOT = join(import.meta.dir, '..', '..')
const manifests = await readManifests(join(ROOT, 'deploy', 'kubernetes'))
const find = (kind: string) => {
  const found = manifests.find((m) => m.doc.kind === kind)
  if (!found) throw new Error(`no ${kind} in deploy/kubernetes`)
  // biome-ignore lint/suspicious/noExplicitAny: free-form YAML, read and broken on purpose by known paths below
  return structuredClone(found.doc) as Manifest & Record<string, any>
}

interface Probe {
  httpGet: { path: string; port: string | number }
}
interface Container {
  name: string
  ports: { name?: string; containerPort: number }[]
  env: { name: string; value?: string }[]
  readinessProbe: Probe
  livenessProbe: Probe
  startupProbe?: Probe
  lifecycle: { preStop: { exec: { command: string[] } } }
}
const envOf = (container: Container, name: string) => container.env.find((e) => e.name === name)?.value

describe('Kubernetes manifests', () => {
  it('holds a Deployment, Service, HPA, PDB, KServe ServingRuntime and InferenceService, each valid', async () => {
    expect(manifests.map((m) => m.doc.kind).sort()).toEqual([
      'Deployment',
      'HorizontalPodAutoscaler',
      'InferenceService',
      'PodDisruptionBudget',
      'Service',
      'ServingRuntime',
    ])
    for (const { file, doc } of manifests) expect({ file, problems: await validateManifest(doc) }).toEqual({ file, problems: [] })
  })

  it('refuses what the API server would: wrong types, unknown (misspelt) fields, in built-in and KServe kinds', async () => {
    const deployment = find('Deployment')
    deployment.spec.replicas = 'two'
    deployment.spec.template.spec.containers[0].readinesProbe = deployment.spec.template.spec.containers[0].readinessProbe
    expect(await validateManifest(deployment)).toEqual(
      expect.arrayContaining([
        '/spec/replicas must be integer',
        '/spec/template/spec/containers/0 must NOT have additional properties: readinesProbe',
      ]),
    )
    const runtime = find('ServingRuntime')
    runtime.spec.protocolVersions = 'v2'
    runtime.spec.containers[0].imagePullPolcy = 'Always'
    expect(await validateManifest(runtime)).toEqual(
      expect.arrayContaining([
        '/spec/protocolVersions must be array',
        '/spec/containers/0 must NOT have additional properties: imagePullPolcy',
      ]),
    )
    const service = find('InferenceService')
    delete service.spec.predictor
    expect(await validateManifest(service)).toEqual(["/spec must have required property 'predictor'"])
    expect(await validateManifest({ apiVersion: 'example.com/v1', kind: 'Gadget', metadata: { name: 'x' } })).toEqual([
      'no schema for example.com/v1 Gadget',
    ])
  })
})

describe('Kubernetes manifests agree with vireo', () => {
  let t: TestApp
  beforeAll(async () => {
    t = await createTestApp({ MODELS_DIR: 'models' })
  })
  afterAll(() => t.close())

  const deployment = find('Deployment')
  const pod = deployment.spec.template.spec
  const container = pod.containers[0] as Container
  const runtime = find('ServingRuntime')
  const kserveContainer = runtime.spec.containers[0] as Container

  it('probes the health routes, which answer 200 once the models are ready: /api/v1 for the Deployment, the protocol’s /v2 for KServe', async () => {
    expect(container.readinessProbe.httpGet.path).toBe('/api/v1/health/ready')
    expect(container.livenessProbe.httpGet.path).toBe('/api/v1/health/live')
    expect(container.startupProbe?.httpGet.path).toBe('/api/v1/health/ready')
    expect(kserveContainer.readinessProbe.httpGet.path).toBe('/v2/health/ready')
    expect(kserveContainer.livenessProbe.httpGet.path).toBe('/v2/health/live')
    for (const path of ['/api/v1/health/ready', '/api/v1/health/live', '/v2/health/ready', '/v2/health/live'])
      expect((await t.app.handle(req(path))).status).toBe(200)
  })

  it('gives the pod time for preStop, the graceful shutdown (SHUTDOWN_GRACE_MS) and closing, before the kubelet kills it', () => {
    const defaults = loadConfig({})
    for (const [c, grace] of [
      [container, pod.terminationGracePeriodSeconds],
      [kserveContainer, find('InferenceService').spec.predictor.terminationGracePeriodSeconds],
    ] as const) {
      const [command, seconds] = c.lifecycle.preStop.exec.command
      expect(command).toBe('sleep')
      const shutdownMs = Number(envOf(c, 'SHUTDOWN_GRACE_MS') ?? defaults.SHUTDOWN_GRACE_MS)
      expect(shutdownMs).toBe(defaults.SHUTDOWN_GRACE_MS)
      // Closing the pools and connections after the drain gets at least 5 s more.
      expect(grace).toBeGreaterThanOrEqual(Number(seconds) + shutdownMs / 1000 + 5)
    }
  })

  it('listens on the port it declares, and the Service, HPA and PDB find the pods', () => {
    for (const c of [container, kserveContainer]) expect(c.ports[0]!.containerPort).toBe(Number(envOf(c, 'PORT')))
    const labels = deployment.spec.template.metadata.labels
    expect(deployment.spec.selector.matchLabels).toEqual(labels)
    const service = find('Service')
    expect(service.spec.selector).toEqual(labels)
    expect(container.ports.map((p) => p.name)).toContain(service.spec.ports[0].targetPort)
    expect(find('PodDisruptionBudget').spec.selector.matchLabels).toEqual(labels)
    expect(find('HorizontalPodAutoscaler').spec.scaleTargetRef).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: deployment.metadata!.name,
    })
  })

  it('runs as the image’s unprivileged user', () => {
    const user = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').match(/^USER\s+(\S+)/m)?.[1]
    expect(user).toBe('bun')
    // The base image's bun user is uid 1000 (scripts/container-build.sh makes the stand-in the same way).
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 })
    expect(kserveContainer).toMatchObject({ securityContext: { runAsNonRoot: true, runAsUser: 1000 } })
  })

  it('is a KServe v2 runtime that the InferenceService selects', () => {
    expect(runtime.spec.protocolVersions).toEqual(['v2'])
    expect(kserveContainer.name).toBe('kserve-container')
    const isvc = find('InferenceService').spec.predictor.model
    expect(isvc.runtime).toBe(runtime.metadata!.name)
    expect(isvc.protocolVersion).toBe('v2')
    expect(runtime.spec.supportedModelFormats.map((f: { name: string }) => f.name)).toContain(isvc.modelFormat.name)
  })
})
