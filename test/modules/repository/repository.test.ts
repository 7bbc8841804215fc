import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { bearer, body, createKey, createTestApp, req, type TestApp } from '../../helpers'
import { arithRequest, placeModel } from '../../inference/model-folders'

let root: string
let t: TestApp
let admin: string
let user: string

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'vireo-repository-http-'))
  await placeModel(root, 'arith', '1')
  await placeModel(root, 'other', null)
  t = await createTestApp({ MODELS_DIR: root, INFERENCE_WORKERS: '2' })
  admin = await createKey(t, ['admin'])
  user = await createKey(t, ['inference'])
})
afterAll(async () => {
  await t.close()
  await rm(root, { recursive: true, force: true })
})

const post = (path: string, init: { json?: unknown; key?: string } = {}) =>
  t.app.handle(req(path, { method: 'POST', json: init.json, headers: init.key === undefined ? {} : bearer(init.key) }))
const index = async () => body(await post('/v2/repository/index', { key: admin }))
/** A generous budget: on this shared machine a request may wait behind session creation; only failures count here. */
const request = { ...arithRequest, parameters: { timeout_ms: 60_000 } }
const infer = (model: string) => post(`/api/v1/models/${model}/infer`, { json: request, key: user })

describe('the repository routes', () => {
  it('need an admin key', async () => {
    expect((await post('/v2/repository/index')).status).toBe(401)
    expect((await post('/v2/repository/index', { key: user })).status).toBe(403)
    expect((await post('/v2/repository/models/arith/load', { key: user })).status).toBe(403)
    expect((await post('/v2/repository/models/arith/unload', { key: user })).status).toBe(403)
  })

  it('index every model version as bare JSON, all of them or the ready ones, with an empty body or a request object', async () => {
    await placeModel(root, 'broken', '1', { from: 'corrupt' })
    expect((await post('/v2/repository/models/broken/load', { key: admin })).status).toBe(400)
    const all = [
      { name: 'arith', version: '1', state: 'READY', reason: '' },
      { name: 'broken', version: '1', state: 'UNAVAILABLE', reason: expect.stringContaining('protobuf parsing failed') },
      { name: 'other', version: '1', state: 'READY', reason: '' },
    ]
    expect(await index()).toEqual(all)
    expect(await body(await post('/v2/repository/index', { key: admin, json: {} }))).toEqual(all)
    expect(await body(await post('/v2/repository/index', { key: admin, json: { ready: true } }))).toEqual([all[0], all[2]])
    expect((await post('/v2/repository/index', { key: admin, json: { ready: 'yes' } })).status).toBe(400)
  })

  it('load a model: 200 with an empty object, then its new version serves', async () => {
    await placeModel(root, 'arith', '2')
    const loaded = await post('/v2/repository/models/arith/load', { key: admin, json: {} })
    expect(loaded.status).toBe(200)
    expect(await body(loaded)).toEqual({})
    expect((await body(await infer('arith'))).data.model_version).toBe('2')
    const described = (await body(await t.app.handle(req('/api/v1/models/arith', { headers: bearer(user) })))).data
    expect(described).toMatchObject({ version: '2', status: 'ready' })
    expect(described.versions.map((v: { version: string; status: string }) => [v.version, v.status])).toEqual([
      ['1', 'ready'],
      ['2', 'ready'],
    ])
    // The same versions through the protocol routes: listed, and each one addressable.
    const oip = (path: string, json?: unknown) =>
      t.app.handle(req(path, { method: json === undefined ? 'GET' : 'POST', json, headers: bearer(user) }))
    expect((await body(await oip('/v2/models/arith'))).versions).toEqual(['1', '2'])
    expect((await body(await oip('/v2/models/arith/infer', request))).model_version).toBe('2')
    expect((await body(await oip('/v2/models/arith/versions/1/infer', request))).model_version).toBe('1')
    const stats = (await body(await oip('/v2/models/arith/versions/1/stats'))).model_stats
    expect(stats.map((s: { version: string; inference_count: number }) => [s.version, s.inference_count])).toEqual([['1', 1]])
  })

  it('answer 400 to a failed load while the serving version serves on, and 404 to a model with no folder', async () => {
    await placeModel(root, 'arith', '3', { from: 'corrupt' })
    const failed = await post('/v2/repository/models/arith/load', { key: admin })
    expect(failed.status).toBe(400)
    expect(await body(failed)).toEqual({ error: expect.stringContaining('version 3') })
    expect((await infer('arith')).status).toBe(200)
    await rm(join(root, 'arith', '3'), { recursive: true })
    expect((await post('/v2/repository/models/nothing/load', { key: admin })).status).toBe(404)
    expect((await post('/v2/repository/models/nothing/unload', { key: admin })).status).toBe(404)
    // Triton's overrides of the model's config and files are not taken: the model is what MODELS_DIR holds.
    expect((await post('/v2/repository/models/arith/load', { key: admin, json: { parameters: { config: '{}' } } })).status).toBe(400)
  })

  it('unload a model: 200 with an empty object, then it answers 503 until loaded again', async () => {
    const unloaded = await post('/v2/repository/models/other/unload', { key: admin, json: { parameters: { unload_dependents: false } } })
    expect(unloaded.status).toBe(200)
    expect(await body(unloaded)).toEqual({})
    const refused = await infer('other')
    expect(refused.status).toBe(503)
    expect((await body(refused)).error.details).toEqual({ status: 'unloaded' })
    const listed = (await body(await t.app.handle(req('/api/v1/models', { headers: bearer(user) })))).data
    expect(listed.find((m: { name: string }) => m.name === 'other')).toMatchObject({ status: 'unloaded', reason: 'unloaded' })
    expect((await index()).find((row: { name: string }) => row.name === 'other')).toEqual({
      name: 'other',
      version: '1',
      state: 'UNAVAILABLE',
      reason: 'unloaded',
    })
    expect((await post('/v2/repository/models/other/load', { key: admin })).status).toBe(200)
    expect((await infer('other')).status).toBe(200)
  })

  it('are in the OpenAPI document, tagged oip', async () => {
    const spec = await body(await t.app.handle(req('/api/v1/docs/json')))
    for (const path of ['/v2/repository/index', '/v2/repository/models/{name}/load', '/v2/repository/models/{name}/unload']) {
      expect(spec.paths[path].post.tags).toEqual(['oip'])
      expect(spec.paths[path].post['x-required-scope']).toBe('admin')
    }
  })
})

describe('load, unload and version switches under concurrent traffic', () => {
  it('fail no request', async () => {
    const outcomes = { arith: new Map<string, number>(), pinned: new Map<string, number>(), other: new Map<string, number>() }
    const count = (map: Map<string, number>, outcome: string) => map.set(outcome, (map.get(outcome) ?? 0) + 1)
    const versions = new Set<string>()
    let running = true

    /** A client sending requests one after another until the admin is done. */
    async function client(model: 'arith' | 'other') {
      while (running) {
        const response = await infer(model)
        const json = await body(response)
        if (response.status === 200) {
          if (model === 'arith') versions.add(json.data.model_version)
          count(outcomes[model], '200')
        } else if (model === 'other' && response.status === 503 && ['unloading', 'unloaded'].includes(json.error.details?.status)) {
          // Refused before it began, because the model was being (or had been) unloaded: not a request that failed.
          count(outcomes.other, 'refused while unloaded')
        } else count(outcomes[model], `${response.status} ${json.error?.message}`)
        // A refusal never leaves the main thread: without a pause this loop would starve the event loop.
        if (response.status !== 200) await Bun.sleep(1)
      }
    }
    /** Requests that name version 1, which stays in the folder throughout. */
    async function pinned() {
      while (running) {
        try {
          const result = await t.deps.registry.infer('arith', request, { version: '1' })
          count(outcomes.pinned, result.model_version === '1' ? 'ok' : `ran on ${result.model_version}`)
        } catch (error) {
          count(outcomes.pinned, (error as Error).message)
          await Bun.sleep(1)
        }
      }
    }
    const load = async (name: string, status = 200) => {
      const response = await post(`/v2/repository/models/${name}/load`, { key: admin })
      expect({ status: response.status, body: await response.text() }).toMatchObject({ status })
    }

    await rm(join(root, 'arith', '2'), { recursive: true, force: true })
    await load('arith')
    const traffic = [
      ...Array.from({ length: 6 }, () => client('arith')),
      ...Array.from({ length: 2 }, () => client('other')),
      pinned(),
      pinned(),
    ]
    try {
      for (let round = 0; round < 3; round++) {
        await placeModel(root, 'arith', '2')
        await load('arith') // a new version: requests that name none switch from 1 to 2
        await load('arith') // the same versions again: every version is replaced by a fresh load
        // cpu only: a wasm fallback would compile onnxruntime-web in every worker first, seconds on a busy host.
        await placeModel(root, 'arith', '3', { from: 'corrupt', manifest: { backends: ['cpu'] } })
        await load('arith', 400) // a failed load: nothing changes
        await rm(join(root, 'arith', '3'), { recursive: true })
        await writeFile(join(root, 'arith', 'model.json'), JSON.stringify({ default_version: '1' }))
        await load('arith') // pinned back to 1
        await rm(join(root, 'arith', 'model.json'))
        await rm(join(root, 'arith', '2'), { recursive: true })
        await load('arith') // version 2 gone
        expect((await post('/v2/repository/models/other/unload', { key: admin })).status).toBe(200)
        await load('other')
      }
    } finally {
      running = false
      await Promise.all(traffic)
    }

    expect([...outcomes.arith.keys()]).toEqual(['200'])
    expect([...outcomes.pinned.keys()]).toEqual(['ok'])
    expect([...outcomes.other.keys()].filter((k) => k !== '200' && k !== 'refused while unloaded')).toEqual([])
    expect(outcomes.other.get('200')).toBeGreaterThan(0)
    // The switches happened under this traffic: requests that named no version ran on both versions.
    expect([...versions].sort()).toEqual(['1', '2'])
    expect(await index()).toContainEqual({ name: 'arith', version: '1', state: 'READY', reason: '' })
  })
})
