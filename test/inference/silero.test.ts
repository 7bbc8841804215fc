import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { createRegistry, type Registry } from '../../src/inference/registry'
import { packVadBatch, SILERO_FRAME, SILERO_STATE, unpackVadBatch, type VadFrameResult } from '../../src/inference/vad-batch'
import { backendOrder, expectedBackend, MODELS, registryConfig, silent } from './helpers'

/** A deterministic voiced-like frame: a 220 Hz tone with harmonics, amplitude and phase per stream. */
function frame(stream: number, index: number): Float32Array {
  return Float32Array.from({ length: SILERO_FRAME }, (_, i) => {
    const t = (index * SILERO_FRAME + i) / 16000
    const f = 180 + 40 * stream
    return 0.3 * (Math.sin(2 * Math.PI * f * t) + 0.5 * Math.sin(4 * Math.PI * f * t) + 0.25 * Math.sin(6 * Math.PI * f * t))
  })
}

describe('Silero VAD v5 (real model)', () => {
  let registry: Registry

  async function step(frames: { samples: Float32Array; state: Float32Array }[]): Promise<VadFrameResult[]> {
    const { outputs } = await registry.runRaw('silero-vad', packVadBatch(frames))
    return unpackVadBatch(outputs, frames.length)
  }

  beforeAll(async () => {
    registry = createRegistry({
      config: registryConfig({ MODELS_DIR: MODELS, MODELS_REQUIRED: ['silero-vad'], INFERENCE_WORKERS: 2 }),
      logger: silent,
      backendOrder,
    })
    await registry.start()
  })
  afterAll(() => registry.stop())

  it('loads with the inputs and outputs the session reports', () => {
    expect(registry.get('silero-vad')).toMatchObject({
      status: 'ready',
      task: 'vad',
      backend: expectedBackend,
      inputs: [
        { name: 'input', datatype: 'FP32', shape: [-1, -1] },
        { name: 'state', datatype: 'FP32', shape: [2, -1, 128] },
        { name: 'sr', datatype: 'INT64', shape: [] },
      ],
      outputs: [
        { name: 'output', datatype: 'FP32', shape: [-1, 1] },
        { name: 'stateN', datatype: 'FP32', shape: [-1, -1, -1] },
      ],
    })
  })

  it('answers a probability in [0, 1] through the JSON path', async () => {
    const result = await registry.infer('silero-vad', {
      inputs: [
        { name: 'input', shape: [1, 512], datatype: 'FP32', data: Array.from(frame(0, 0)) },
        { name: 'state', shape: [2, 1, 128], datatype: 'FP32', data: Array(256).fill(0) },
        { name: 'sr', shape: [], datatype: 'INT64', data: [16000] },
      ],
    })
    const [output, stateN] = result.outputs
    expect(output!.shape).toEqual([1, 1])
    const p = output!.data[0] as number
    expect(p).toBeGreaterThanOrEqual(0)
    expect(p).toBeLessThanOrEqual(1)
    expect(stateN!.shape).toEqual([2, 1, 128])
  })

  it('carries state between frames: the same frame scores differently with history', async () => {
    const zero = new Float32Array(SILERO_STATE)
    const [fresh] = await step([{ samples: frame(0, 1), state: zero }])
    let state: Float32Array = zero
    for (let i = 0; i < 5; i++) [{ state }] = (await step([{ samples: frame(0, i), state }])) as [VadFrameResult]
    const [withHistory] = await step([{ samples: frame(0, 1), state }])
    expect(state.some((v) => v !== 0)).toBe(true)
    expect(Math.abs(withHistory!.probability - fresh!.probability)).toBeGreaterThan(1e-4)
  })

  it('gives the same results for a batch of streams as for each stream alone', async () => {
    const streams = 6
    const states: Float32Array[] = Array.from({ length: streams }, () => new Float32Array(SILERO_STATE))
    const alone: Float32Array[] = Array.from({ length: streams }, () => new Float32Array(SILERO_STATE))
    for (let i = 0; i < 4; i++) {
      const batched = await step(states.map((state, s) => ({ samples: frame(s, i), state })))
      for (let s = 0; s < streams; s++) {
        const [single] = await step([{ samples: frame(s, i), state: alone[s]! }])
        expect(batched[s]!.probability).toBeCloseTo(single!.probability, 5)
        expect(Math.max(...batched[s]!.state.map((v, k) => Math.abs(v - single!.state[k]!)))).toBeLessThan(1e-4)
        states[s] = batched[s]!.state
        alone[s] = single!.state
      }
    }
  })
})

describe('input Silero itself rejects', () => {
  let registry: Registry
  beforeAll(async () => {
    registry = createRegistry({ config: registryConfig({ MODELS_DIR: MODELS, MODELS_REQUIRED: ['silero-vad'] }), logger: silent })
    await registry.start()
  })
  afterAll(() => registry.stop())

  const request = (sr: number | string, shape: number[]) => ({
    inputs: [
      { name: 'input', shape, datatype: 'FP32', data: new Array(shape.reduce((a, b) => a * b, 1)).fill(0) },
      { name: 'state', shape: [2, 1, 128], datatype: 'FP32', data: new Array(256).fill(0) },
      { name: 'sr', shape: [], datatype: 'INT64', data: [sr] },
    ],
  })

  it('answers 400 about the input, without the runtime internals, and keeps serving', async () => {
    for (const [sr, shape] of [
      [8000, [1, 512]],
      [0, [1, 512]],
      ['9223372036854775807', [1, 512]],
      [16000, [1, 0]],
      [16000, [0, 512]],
    ] as const) {
      const error = await registry.infer('silero-vad', request(sr, [...shape])).catch((e) => e)
      expect(error.code, `sr ${sr} shape ${shape}`).toBe('VALIDATION_ERROR')
      expect(error.status).toBe(400)
      expect(error.message).toContain('could not run on these inputs')
      expect(JSON.stringify(error.details)).not.toMatch(/If_0|OrtRun|Aborted|ERROR_CODE/)
    }
    const fine = await registry.infer('silero-vad', request(16000, [1, 512]))
    expect(fine.outputs.map((o) => o.name).sort()).toEqual(['output', 'stateN'])
  })
})
