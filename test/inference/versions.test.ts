import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NotFoundError, ServiceUnavailableError, ValidationError } from '../../src/errors'
import { createRegistry, type Registry } from '../../src/inference/registry'
import type { InferRequest } from '../../src/inference/tensors'
import { compareVersions } from '../../src/inference/versions'
import { backendOrder, ENOUGH_MS, FIXTURES, registryConfig, silent, until } from './helpers'
import { arithRequest, placeModel } from './model-folders'

/** A run of the slow fixture that takes `iters` loop iterations (about 2.5 µs each here). */
const slowRequest = (iters: number): InferRequest => ({
  inputs: [
    { name: 'iters', shape: [], datatype: 'INT64', data: [iters] },
    { name: 'h0', shape: [1, 64], datatype: 'FP32', data: new Array(64).fill(0.5) },
  ],
  parameters: { timeout_ms: ENOUGH_MS / 2 },
})

const rows = (registry: Registry, name: string) => registry.index().filter((row) => row.name === name)

describe('version order', () => {
  it('compares digit runs as numbers, then as text', () => {
    expect(['10', '9', '2', '1.10', '1.9', 'b', 'a'].sort(compareVersions)).toEqual(['1.9', '1.10', '2', '9', '10', 'a', 'b'])
    expect(compareVersions('01', '1')).not.toBe(0)
  })
})

describe('model versions side by side', () => {
  let root: string
  let registry: Registry

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'vireo-versions-'))
    await placeModel(root, 'arith', '1')
    await placeModel(root, 'arith', '2')
    await placeModel(root, 'pinned', '1')
    await placeModel(root, 'pinned', '2')
    await writeFile(join(root, 'pinned', 'model.json'), JSON.stringify({ default_version: '1' }))
    await placeModel(root, 'mixed', '2')
    await placeModel(root, 'mixed', '9')
    await placeModel(root, 'mixed', '10', { from: 'corrupt' })
    await placeModel(root, 'flat', null)
    await placeModel(root, 'mismatch', '1', { manifest: { version: '2' } })
    await placeModel(root, 'wrongdefault', '1')
    await writeFile(join(root, 'wrongdefault', 'model.json'), JSON.stringify({ default_version: '7' }))
    await placeModel(root, 'badsettings', '1')
    await writeFile(join(root, 'badsettings', 'model.json'), JSON.stringify({ default: '1' }))
    await mkdir(join(root, 'empty'))
    registry = createRegistry({ config: registryConfig({ MODELS_DIR: root }), logger: silent, backendOrder })
    await registry.start()
  })
  afterAll(async () => {
    await registry.stop()
    await rm(root, { recursive: true, force: true })
  })

  it('serves every version of a model, each answering as itself', async () => {
    const one = await registry.infer('arith', arithRequest, { version: '1' })
    const two = await registry.infer('arith', arithRequest, { version: '2' })
    expect(one.model_version).toBe('1')
    expect(two.model_version).toBe('2')
    expect(two.outputs).toEqual(one.outputs)
    expect(one.outputs[0]!.data).toEqual([3, 5, 7, 9])
  })

  it('runs a request that names no version on the highest ready version', async () => {
    expect((await registry.infer('arith', arithRequest)).model_version).toBe('2')
    // 10 is the highest version but failed to load; 9 is above 2 because digits compare as numbers.
    expect((await registry.infer('mixed', arithRequest)).model_version).toBe('9')
    expect(registry.get('mixed').version).toBe('9')
  })

  it("runs it on model.json's default_version when one is given", async () => {
    expect((await registry.infer('pinned', arithRequest)).model_version).toBe('1')
    expect(registry.get('pinned')).toMatchObject({ version: '1', status: 'ready' })
    expect((await registry.infer('pinned', arithRequest, { version: '2' })).model_version).toBe('2')
  })

  it('loads a flat folder as one version, named by its manifest', async () => {
    expect(registry.get('flat')).toMatchObject({ version: '1', status: 'ready', versions: [{ version: '1', status: 'ready' }] })
    expect((await registry.infer('flat', arithRequest, { version: '1' })).model_version).toBe('1')
  })

  it('lists every version with its status, and describes one version when asked', () => {
    const mixed = registry.list().find((m) => m.name === 'mixed')!
    expect(mixed.versions.map((v) => [v.version, v.status])).toEqual([
      ['2', 'ready'],
      ['9', 'ready'],
      ['10', 'failed'],
    ])
    expect(mixed.versions[2]!.reason).toContain('protobuf parsing failed')
    expect(registry.get('mixed', '10')).toMatchObject({ version: '10', status: 'failed' })
    expect(registry.get('arith', '1')).toMatchObject({ version: '1', status: 'ready', inputs: [{ name: 'x' }, { name: 'n' }] })
  })

  it('indexes every version in the repository states, with the reason of those that cannot serve', () => {
    expect(rows(registry, 'arith')).toEqual([
      { name: 'arith', version: '1', state: 'READY', reason: '' },
      { name: 'arith', version: '2', state: 'READY', reason: '' },
    ])
    expect(rows(registry, 'mixed').map((r) => [r.version, r.state])).toEqual([
      ['2', 'READY'],
      ['9', 'READY'],
      ['10', 'UNAVAILABLE'],
    ])
    expect(rows(registry, 'mismatch')).toEqual([
      {
        name: 'mismatch',
        version: '1',
        state: 'UNAVAILABLE',
        reason: 'manifest.json says version "2" but its folder is "1"; they must match',
      },
    ])
  })

  it('fails a folder it cannot read as a whole, saying why', () => {
    expect(registry.get('wrongdefault')).toMatchObject({ status: 'failed', version: null })
    expect(registry.get('wrongdefault').reason).toContain('default_version "7"')
    expect(registry.get('badsettings').reason).toStartWith('model.json is invalid: ')
    expect(registry.get('empty').reason).toContain('holds neither manifest.json nor a version folder')
    expect(rows(registry, 'empty')).toEqual([{ name: 'empty', state: 'UNAVAILABLE', reason: expect.stringContaining('neither') }])
  })

  it('answers 404 for a version the model does not have and 503 for one that cannot serve', async () => {
    expect(() => registry.get('arith', '3')).toThrow(NotFoundError)
    await expect(registry.infer('arith', arithRequest, { version: '3' })).rejects.toThrow(NotFoundError)
    await expect(registry.infer('mixed', arithRequest, { version: '10' })).rejects.toThrow(
      /^Version "10" of model "mixed" failed to load: onnxruntime could not load/,
    )
    expect(() => registry.check('arith', arithRequest, '3')).toThrow(NotFoundError)
    expect(() => registry.check('arith', { inputs: [] }, '1')).toThrow(ValidationError)
  })
})

describe('load and unload', () => {
  let root: string
  let registry: Registry

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'vireo-repository-'))
    await placeModel(root, 'arith', '1')
    await placeModel(root, 'slow', null, { from: 'slow', manifest: { timeout_ms: ENOUGH_MS } })
    // Two workers: a request can run beside a warm-up.
    registry = createRegistry({ config: registryConfig({ MODELS_DIR: root, INFERENCE_WORKERS: 2 }), logger: silent, backendOrder })
    await registry.start()
  })
  afterAll(async () => {
    await registry.stop()
    await rm(root, { recursive: true, force: true })
  })

  it('loads a version added to the folder, and switches requests that name none to it', async () => {
    await placeModel(root, 'arith', '2')
    await registry.load('arith')
    expect((await registry.infer('arith', arithRequest)).model_version).toBe('2')
    expect((await registry.infer('arith', arithRequest, { version: '1' })).model_version).toBe('1')
    expect(rows(registry, 'arith').map((r) => [r.version, r.state])).toEqual([
      ['1', 'READY'],
      ['2', 'READY'],
    ])
  })

  it('keeps what served when a new version fails to load, and says why', async () => {
    await placeModel(root, 'arith', '3', { from: 'corrupt' })
    const failure = registry.load('arith')
    await expect(failure).rejects.toThrow(ValidationError)
    await expect(failure).rejects.toThrow(/^Model "arith" was not loaded, and what served before serves on: version 3: onnxruntime/)
    expect(rows(registry, 'arith')).toEqual([
      { name: 'arith', version: '1', state: 'READY', reason: '' },
      { name: 'arith', version: '2', state: 'READY', reason: '' },
      { name: 'arith', version: '3', state: 'UNAVAILABLE', reason: expect.stringContaining('protobuf parsing failed') },
    ])
    expect((await registry.infer('arith', arithRequest)).model_version).toBe('2')
    await rm(join(root, 'arith', '3'), { recursive: true })
    await registry.load('arith')
    expect(rows(registry, 'arith').map((r) => r.version)).toEqual(['1', '2'])
  })

  it('keeps a serving version serving when its reload fails, with the failure as its reason', async () => {
    const file = join(root, 'arith', '2', 'model.onnx')
    const good = await readFile(file)
    await writeFile(file, new Uint8Array(64).fill(7))
    await expect(registry.load('arith')).rejects.toThrow(/version 2: onnxruntime could not load model\.onnx/)
    const [, two] = rows(registry, 'arith')
    expect(two).toMatchObject({ version: '2', state: 'READY' })
    expect(two!.reason).toStartWith('the last load failed and this version serves on as loaded before: onnxruntime could not load')
    expect((await registry.infer('arith', arithRequest)).model_version).toBe('2')
    await writeFile(file, good)
    await registry.load('arith')
    expect(rows(registry, 'arith')[1]).toEqual({ name: 'arith', version: '2', state: 'READY', reason: '' })
  })

  it('refuses to load a folder that is not there or cannot be read, leaving the model as it was', async () => {
    await expect(registry.load('nothing')).rejects.toThrow(NotFoundError)
    expect(() => registry.get('nothing')).toThrow(NotFoundError)
    await writeFile(join(root, 'arith', 'model.json'), '{"default_version": 1}')
    await expect(registry.load('arith')).rejects.toThrow(/model\.json is invalid/)
    expect((await registry.infer('arith', arithRequest)).model_version).toBe('2')
    await rm(join(root, 'arith', 'model.json'))
  })

  it('adds a model whose folder appeared after start-up', async () => {
    await placeModel(root, 'late', '4')
    await registry.load('late')
    expect((await registry.infer('late', arithRequest)).model_version).toBe('4')
  })

  it('serves the old version while the new one warms up, and lets a request started on it finish there', async () => {
    // Version 2 of `slow` warms up on ~0.25 s of work; the request on version 1 takes ten times as much.
    const original = JSON.parse(await readFile(join(FIXTURES, 'slow', 'manifest.json'), 'utf8'))
    const warmup = original.warmup.map((input: { name: string }) => (input.name === 'iters' ? { ...input, data: [100_000] } : input))
    await writeFile(join(root, 'slow', 'manifest.json'), JSON.stringify({ ...original, version: '2', timeout_ms: ENOUGH_MS, warmup }))
    let loaded = false
    const loading = registry.load('slow').then(() => {
      loaded = true
    })
    // Its backend is known once every worker holds it: from then on its warm-up runs on one worker.
    await until(() => registry.get('slow', '2').backend !== null)
    expect(registry.get('slow', '2').status).toBe('loading')
    expect(rows(registry, 'slow')).toEqual([
      { name: 'slow', version: '1', state: 'READY', reason: '' },
      { name: 'slow', version: '2', state: 'LOADING', reason: '' },
    ])
    let finishedAfterSwitch = false
    const started = registry.infer('slow', slowRequest(1_000_000)).then((result) => {
      finishedAfterSwitch = loaded
      return result
    })
    await loading
    expect(rows(registry, 'slow')).toEqual([{ name: 'slow', version: '2', state: 'READY', reason: '' }])
    expect((await registry.infer('slow', slowRequest(1))).model_version).toBe('2')
    expect((await started).model_version).toBe('1')
    expect(finishedAfterSwitch).toBe(true)
  })

  it('lets requests under way finish before an unload frees the model, and refuses new ones meanwhile', async () => {
    const order: string[] = []
    const inflight = registry.infer('slow', slowRequest(400_000)).then((result) => {
      order.push('request')
      return result
    })
    await until(() => registry.pool.stats().workers.some((w) => w.inflight > 0))
    const unloading = registry.unload('slow').then(() => order.push('unload'))
    await until(() => rows(registry, 'slow')[0]?.state === 'UNLOADING')
    await expect(registry.infer('slow', slowRequest(1))).rejects.toThrow(ServiceUnavailableError)
    expect(registry.get('slow').status).toBe('unloading')
    expect((await inflight).model_version).toBe('2')
    await unloading
    expect(order).toEqual(['request', 'unload'])
    expect(rows(registry, 'slow')).toEqual([{ name: 'slow', version: '2', state: 'UNAVAILABLE', reason: 'unloaded' }])
    await expect(registry.infer('slow', slowRequest(1))).rejects.toThrow(/^Model "slow" is unloaded; an admin can load it again/)
    await registry.load('slow')
    expect((await registry.infer('slow', slowRequest(1))).model_version).toBe('2')
  })

  it('runs loads and unloads of one model in the order they were asked for', async () => {
    const outcomes = await Promise.all([registry.unload('arith'), registry.load('arith'), registry.unload('arith')])
    expect(outcomes).toEqual([undefined, undefined, undefined])
    expect(rows(registry, 'arith').map((r) => r.state)).toEqual(['UNAVAILABLE', 'UNAVAILABLE'])
    await registry.load('arith')
    expect(rows(registry, 'arith').map((r) => r.state)).toEqual(['READY', 'READY'])
  })
})
