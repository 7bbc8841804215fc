import { describe, expect, it } from 'bun:test'
import { createInferenceStatistics } from '../../src/inference/statistics'

describe('inference statistics', () => {
  it('starts every model version at zero, with every duration the statistics extension names', () => {
    const stat = createInferenceStatistics().of('m', '1')
    expect(stat).toMatchObject({ name: 'm', version: '1', last_inference: 0, inference_count: 0, execution_count: 0, batch_stats: [] })
    expect(Object.values(stat.inference_stats).every((d) => d.count === 0 && d.ns === 0)).toBe(true)
  })

  it('adds each request exactly: ms in, ns out; the time outside queue and model goes to compute_input', () => {
    let clock = 1_000
    const statistics = createInferenceStatistics({ now: () => clock })
    statistics.record('m', '1', { ok: true, totalMs: 2.5, queueMs: 0.5, inferenceMs: 1.25 })
    clock = 2_000
    statistics.record('m', '1', { ok: true, totalMs: 1, queueMs: 0, inferenceMs: 0.5 })
    statistics.record('m', '1', { ok: false, totalMs: 0.125 })
    const stat = statistics.of('m', '1')
    expect(stat.inference_stats).toMatchObject({
      success: { count: 2, ns: 3_500_000 },
      fail: { count: 1, ns: 125_000 },
      queue: { count: 2, ns: 500_000 },
      compute_input: { count: 2, ns: 1_250_000 },
      compute_infer: { count: 2, ns: 1_750_000 },
      compute_output: { count: 2, ns: 0 },
    })
    expect(stat).toMatchObject({ last_inference: 2_000, inference_count: 2, execution_count: 2 })
    expect(stat.batch_stats).toEqual([
      {
        batch_size: 1,
        compute_input: { count: 2, ns: 1_250_000 },
        compute_infer: { count: 2, ns: 1_750_000 },
        compute_output: { count: 2, ns: 0 },
      },
    ])
  })

  it('keeps versions apart, and hands out copies', () => {
    const statistics = createInferenceStatistics()
    statistics.record('m', '1', { ok: true, totalMs: 1, queueMs: 0, inferenceMs: 1 })
    const copy = statistics.of('m', '1')
    copy.inference_stats.success.count = 99
    expect(statistics.of('m', '1').inference_stats.success.count).toBe(1)
    expect(statistics.of('m', '2').inference_stats.success.count).toBe(0)
  })
})
