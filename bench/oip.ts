/**
 * The Open Inference Protocol routes against vireo's own, over real HTTP to the real app in a child process:
 *
 * - `POST /v2/models/silero-vad/infer` against `POST /api/v1/models/silero-vad/infer`, p50 and p99, one
 *   Silero VAD v5 frame in JSON both ways (and, beside them, /v2 with tritonclient's default: binary both ways);
 * - JSON against binary tensor data for a 1×65536 FP32 input (the `alltypes` Identity test model; its nine
 *   other inputs are 1×1): all JSON, binary in with JSON out, and binary both ways (tritonclient's default).
 *
 * Calls are sequential and interleaved in chunks so a noisy moment hits every path alike; each figure is the
 * best p50 of OIP_ROUNDS rounds. The server is pinned to core 1 and this load generator to core 0 (taskset)
 * when the machine has two or more cores. Client time is included: building nothing (bodies are built once),
 * parsing every answer as a client must.
 *
 *   bun bench/index.ts oip     (OIP_N=1000 OIP_ROUNDS=3 OIP_LARGE_N=200)
 */
import { cpSync, mkdtempSync } from 'node:fs'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { SILERO_FRAME, SILERO_STATE } from '../src/inference/vad-batch'
import { tone } from '../test/audio/wav-builder'
import { concat, raw } from '../test/modules/oip/helpers'
import { benchKey, col, envInt, percentile, productionEnv, ROOT, startServer } from './lib'

const LARGE = 65_536
const encoder = new TextEncoder()

/** A body with binary tensor data, laid out as tritonclient lays it out. */
function binaryBody(header: unknown, parts: Uint8Array[]): { body: Uint8Array<ArrayBuffer>; headerLength: number } {
  const json = encoder.encode(JSON.stringify(header))
  return { body: concat(json, ...parts), headerLength: json.byteLength }
}

/** Reads a /v2 answer as a client does: the JSON header, and the binary parts after it. */
async function readOip(response: Response): Promise<unknown> {
  if (response.status !== 200) throw new Error(`answered ${response.status}: ${await response.text()}`)
  const length = response.headers.get('inference-header-content-length')
  if (length === null) return response.json()
  const bytes = new Uint8Array(await response.arrayBuffer())
  return JSON.parse(new TextDecoder().decode(bytes.subarray(0, Number(length))))
}

async function readV1(response: Response): Promise<unknown> {
  const json = (await response.json()) as { success: boolean }
  if (!json.success) throw new Error(`answered ${response.status}: ${JSON.stringify(json)}`)
  return json
}

/** p50 and p99 (ms) of each path, sequential calls interleaved in chunks; the best p50 of `rounds` rounds. */
async function interleaved(paths: Record<string, () => Promise<unknown>>, n: number, rounds: number, chunk = 50) {
  for (const run of Object.values(paths)) for (let i = 0; i < 200; i++) await run()
  const best: Record<string, { p50: number; p99: number }> = {}
  for (let round = 0; round < rounds; round++) {
    const times: Record<string, number[]> = Object.fromEntries(Object.keys(paths).map((k) => [k, []]))
    for (let done = 0; done < n; done += chunk)
      for (const [name, run] of Object.entries(paths))
        for (let i = 0; i < chunk && done + i < n; i++) {
          const started = performance.now()
          await run()
          times[name]!.push(performance.now() - started)
        }
    for (const [name, list] of Object.entries(times)) {
      const sorted = list.sort((a, b) => a - b)
      const p = { p50: percentile(sorted, 50), p99: percentile(sorted, 99) }
      if (!best[name] || p.p50 < best[name].p50) best[name] = p
    }
  }
  return best
}

/** Pins `pid` to `cores` with taskset when there are cores to spare; says what it did. */
function pin(pid: number, cores: string): boolean {
  if (availableParallelism() < 2 || !Bun.which('taskset')) return false
  return Bun.spawnSync(['taskset', '-cp', cores, String(pid)]).exitCode === 0
}

export async function benchOip(): Promise<void> {
  const n = envInt('OIP_N', 1000)
  const largeN = envInt('OIP_LARGE_N', 200)
  const rounds = envInt('OIP_ROUNDS', 3)
  // The shipped Silero model and the test model with a 1×65536 FP32 input, side by side in one MODELS_DIR.
  const models = mkdtempSync(join(tmpdir(), 'vireo-bench-oip-'))
  cpSync(join(ROOT, 'models/silero-vad'), join(models, 'silero-vad'), { recursive: true })
  cpSync(join(ROOT, 'test/fixtures/models/alltypes'), join(models, 'alltypes'), { recursive: true })
  const key = benchKey()
  const env = productionEnv(key, { MODELS_DIR: models, INFERENCE_WORKERS: '1', MAX_JSON_BYTES: String(16 << 20) })
  const server = await startServer('app', env, { pin: false })
  const pinned = pin(server.pid, '1') && pin(process.pid, '0')
  const base = server.url.replace(/\/$/, '')
  const auth = { authorization: `Bearer ${key}` }
  try {
    const samples = tone(220, 16000, SILERO_FRAME / 16000, 0.3)
    const frameJson = JSON.stringify({
      inputs: [
        { name: 'input', shape: [1, SILERO_FRAME], datatype: 'FP32', data: [...samples] },
        { name: 'state', shape: [2, 1, 128], datatype: 'FP32', data: new Array(SILERO_STATE).fill(0) },
        { name: 'sr', shape: [], datatype: 'INT64', data: [16000] },
      ],
    })
    const frameBinary = binaryBody(
      {
        inputs: [
          { name: 'input', shape: [1, SILERO_FRAME], datatype: 'FP32', parameters: { binary_data_size: SILERO_FRAME * 4 } },
          { name: 'state', shape: [2, 1, 128], datatype: 'FP32', parameters: { binary_data_size: SILERO_STATE * 4 } },
          { name: 'sr', shape: [], datatype: 'INT64', parameters: { binary_data_size: 8 } },
        ],
        parameters: { binary_data_output: true },
      },
      [raw(samples), raw(new Float32Array(SILERO_STATE)), raw(BigInt64Array.of(16000n))],
    )
    const jsonHeaders = { ...auth, 'content-type': 'application/json' }
    const post = (path: string, body: string | Uint8Array<ArrayBuffer>, headers: Record<string, string>) =>
      fetch(`${base}${path}`, { method: 'POST', headers, body })
    const frame = await interleaved(
      {
        v1: async () => readV1(await post('/api/v1/models/silero-vad/infer', frameJson, jsonHeaders)),
        v2: async () => readOip(await post('/v2/models/silero-vad/infer', frameJson, jsonHeaders)),
        v2binary: async () =>
          readOip(
            await post('/v2/models/silero-vad/infer', frameBinary.body, {
              ...auth,
              'inference-header-content-length': String(frameBinary.headerLength),
            }),
          ),
      },
      n,
      rounds,
    )

    const large = Float32Array.from({ length: LARGE }, (_, i) => Math.sin(i) * 1000)
    const small = (datatype: string) => ({ name: datatype.toLowerCase(), shape: [1, 1], datatype, data: [datatype === 'BOOL' ? true : 1] })
    const others = ['FP64', 'INT8', 'INT16', 'INT32', 'INT64', 'UINT8', 'UINT16', 'UINT32', 'BOOL'].map(small)
    const largeJson = JSON.stringify({ inputs: [{ name: 'fp32', shape: [1, LARGE], datatype: 'FP32', data: [...large] }, ...others] })
    const binaryHeader = (outputs: boolean) => ({
      inputs: [{ name: 'fp32', shape: [1, LARGE], datatype: 'FP32', parameters: { binary_data_size: LARGE * 4 } }, ...others],
      ...(outputs ? { parameters: { binary_data_output: true } } : {}),
    })
    const binIn = binaryBody(binaryHeader(false), [raw(large)])
    const binBoth = binaryBody(binaryHeader(true), [raw(large)])
    const binaryHeaders = (b: { headerLength: number }) => ({ ...auth, 'inference-header-content-length': String(b.headerLength) })
    const big = await interleaved(
      {
        json: async () => readOip(await post('/v2/models/alltypes/infer', largeJson, jsonHeaders)),
        binaryIn: async () => readOip(await post('/v2/models/alltypes/infer', binIn.body, binaryHeaders(binIn))),
        binaryBoth: async () => readOip(await post('/v2/models/alltypes/infer', binBoth.body, binaryHeaders(binBoth))),
      },
      largeN,
      rounds,
      20,
    )

    const [load1, load5] = loadavg()
    const ms = (v: number) => col(v, 9, 3)
    console.log(
      `OIP over HTTP, sequential calls interleaved, best p50 of ${rounds} rounds (ms); ${pinned ? 'server on core 1, client on core 0' : 'not pinned'}; load ${load1!.toFixed(2)} / ${load5!.toFixed(2)} (1 / 5 min)`,
    )
    console.log(`  one Silero frame, ${n} calls per path per round${col('p50', 20)}${col('p99', 9)}`)
    console.log(`    POST /api/v1/models/silero-vad/infer (JSON, envelope)   ${ms(frame.v1!.p50)}${ms(frame.v1!.p99)}`)
    console.log(`    POST /v2/models/silero-vad/infer (JSON both ways)       ${ms(frame.v2!.p50)}${ms(frame.v2!.p99)}`)
    console.log(`    POST /v2/models/silero-vad/infer (binary both ways)     ${ms(frame.v2binary!.p50)}${ms(frame.v2binary!.p99)}`)
    console.log(
      `    /v2 JSON ÷ /api/v1 p50: ${(frame.v2!.p50 / frame.v1!.p50).toFixed(2)}; /v2 binary ÷ /api/v1 p50: ${(frame.v2binary!.p50 / frame.v1!.p50).toFixed(2)}`,
    )
    console.log(`  1×${LARGE} FP32 input (+ nine 1×1 inputs), ${largeN} calls per path per round`)
    console.log(
      `    JSON request, JSON response (${(largeJson.length / 1024).toFixed(0)} KiB in)      ${ms(big.json!.p50)}${ms(big.json!.p99)}`,
    )
    console.log(
      `    binary request, JSON response (${(binIn.body.byteLength / 1024).toFixed(0)} KiB in)     ${ms(big.binaryIn!.p50)}${ms(big.binaryIn!.p99)}`,
    )
    console.log(`    binary request, binary response (tritonclient)  ${ms(big.binaryBoth!.p50)}${ms(big.binaryBoth!.p99)}`)
    console.log(
      `    JSON ÷ binary p50: ${(big.json!.p50 / big.binaryIn!.p50).toFixed(2)} (request only), ${(big.json!.p50 / big.binaryBoth!.p50).toFixed(2)} (both ways)`,
    )
  } finally {
    await server.stop()
  }
}
