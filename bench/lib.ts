/**
 * What every benchmark shares: servers in child processes, one HTTP load tool for a whole run,
 * percentiles and number formatting. Benchmarks print ratios measured side by side in one run,
 * never absolute pass/fail timings: this machine is small and shared.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnUntil as spawnChild } from '../test/spawn'

/**
 * The Web Worker constructor, taken at import: onnxruntime-web, once initialised in a thread,
 * replaces `globalThis.Worker` with node:worker_threads' (see src/inference/pool.ts).
 */
export const WebWorker = globalThis.Worker

/** The plugins of src/app.ts that the stack benchmark switches off one at a time, in the app's order. */
export const PLUGINS = [
  'requestId',
  'securityHeaders',
  'corsPolicy',
  'errorHandler',
  'versioning',
  'bodyParser',
  'auth',
  'rateLimit',
] as const
export type PluginName = (typeof PLUGINS)[number]

export const ROOT = new URL('..', import.meta.url).pathname

/** A positive whole number from the environment (bench sizes), or the default. */
export function envInt(name: string, fallback: number): number {
  const value = Number(process.env[name])
  return Number.isInteger(value) && value > 0 ? value : fallback
}

/** An operator-style admin key (ADMIN_API_KEY accepts 32–256 of [A-Za-z0-9_-]). */
export const benchKey = () => `bench_${crypto.randomUUID().replaceAll('-', '')}${crypto.randomUUID().replaceAll('-', '')}`

/**
 * Environment of a production-like vireo child: JSON logs at info, one explicit CORS origin,
 * an admin key, quotas high enough that the limiter counts but never refuses.
 */
export function productionEnv(adminKey: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'production',
    LOG_LEVEL: 'info',
    CORS_ORIGINS: 'https://app.example.com',
    ADMIN_API_KEY: adminKey,
    PORT: '0',
    HOST: '127.0.0.1',
    RATE_LIMIT_INFERENCE: '1000000000/60',
    MODELS_HEALTH_INTERVAL_MS: '0',
    JOBS_CONCURRENCY: '0',
    ...extra,
  }
}

export interface Child {
  url: string
  pid: number
  stop(): Promise<void>
}

const CLOCK_TICKS = Number(Bun.spawnSync(['getconf', 'CLK_TCK']).stdout.toString().trim()) || 100

/**
 * CPU seconds a process has used so far, all its threads together (Linux /proc). Unlike
 * requests/second, CPU time per request barely moves when other work crowds the machine.
 */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name, which may itself hold spaces: utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
}

/** CPU time in µs (user, system) of each thread of a process (this one by default) so far, keyed `tid:name` (/proc). */
export function threadCpu(pid: number | 'self' = 'self'): Map<string, { user: number; system: number }> {
  const threads = new Map<string, { user: number; system: number }>()
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    threads.set(`${tid}:${name}`, { user: (Number(fields[11]) / CLOCK_TICKS) * 1e6, system: (Number(fields[12]) / CLOCK_TICKS) * 1e6 })
  }
  return threads
}

/** `command` from the repository root, resolved with the stdout line `found` accepts (see test/spawn.ts). */
export async function spawnUntil(command: string[], env: Record<string, string>, found: (line: string) => boolean) {
  const { proc, line } = await spawnChild(command, found, { cwd: ROOT, env: { ...process.env, ...env }, stderr: 'inherit' })
  return {
    line,
    pid: proc.pid,
    async stop() {
      proc.kill('SIGTERM')
      await proc.exited
    },
  }
}

/**
 * Cores for a server and its load generator, so neither steals the other's time: `BENCH_SERVER_CPU` (default 0)
 * and `BENCH_LOAD_CPU` (default 1). Unpinned where `taskset` is missing or the machine has one core.
 */
export const pinning = (() => {
  const usable = Bun.which('taskset') !== null && availableParallelism() > 1
  const cpu = (name: string, fallback: number) => (process.env[name] === undefined ? fallback : Number(process.env[name]))
  return usable ? { server: cpu('BENCH_SERVER_CPU', 0), load: cpu('BENCH_LOAD_CPU', 1) } : undefined
})()

/** `command` run on one core with taskset, or as it is when pinning is off. */
export function pinned(command: string[], role: 'server' | 'load'): string[] {
  return pinning ? ['taskset', '-c', String(pinning[role]), ...command] : command
}

export function pinningNote(): string {
  return pinning
    ? `server pinned to cpu ${pinning.server}, load generator to cpu ${pinning.load} (taskset)`
    : 'unpinned (taskset missing or one core)'
}

/** Start `bun bench/server.ts <variant>` (on the server core unless `pin` is false) and wait for the URL it prints. */
export async function startServer(variant: string, env: Record<string, string>, { pin = true } = {}): Promise<Child> {
  const command = ['bun', join(ROOT, 'bench/server.ts'), variant]
  if (pin) command.splice(0, command.length, ...pinned(command, 'server'))
  const { line, pid, stop } = await spawnUntil(command, env, (l) => l.startsWith('listening '))
  return { url: line.slice('listening '.length).trim(), pid, stop }
}

export interface LoadRequest {
  url: string
  connections: number
  seconds: number
  headers?: Record<string, string>
  method?: 'GET' | 'POST'
  body?: string
}

export interface LoadResult {
  rps: number
  requests: number
  /** Answers other than 2xx/3xx, plus socket errors: any makes the figure suspect. */
  bad: number
}

/** The load tool of this run: wrk when installed (C, far lighter than the server), else autocannon. */
export const loadTool: 'wrk' | 'autocannon' = Bun.which('wrk') ? 'wrk' : 'autocannon'

export function loadToolNote(): string {
  return loadTool === 'wrk'
    ? 'load: wrk, 1 thread, in its own process'
    : 'load: autocannon (wrk not installed: `apt-get install -y wrk`); autocannon saturates near 40k req/s here, so ratios against a fast server are compressed'
}

/** Drive `url` for `seconds` and report requests per second, with the run's load tool in its own process. */
export async function load(request: LoadRequest): Promise<LoadResult> {
  return loadTool === 'wrk' ? wrk(request) : autocannon(request)
}

async function wrk({ url, connections, seconds, headers = {}, method = 'GET', body }: LoadRequest): Promise<LoadResult> {
  const dir = await mkdtemp(join(tmpdir(), 'vireo-bench-'))
  try {
    const args = pinned(['wrk', '-t1', `-c${connections}`, `-d${seconds}s`], 'load')
    for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`)
    if (method !== 'GET' || body !== undefined) {
      const script = join(dir, 'request.lua')
      await writeFile(script, `wrk.method = ${JSON.stringify(method)}\nwrk.body = ${JSON.stringify(body ?? '')}\n`)
      args.push('-s', script)
    }
    args.push(url)
    const child = Bun.spawn(args, { stdout: 'pipe', stderr: 'pipe' })
    const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited])
    const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1])
    const requests = Number(/(\d+) requests in/.exec(out)?.[1])
    if (code !== 0 || !Number.isFinite(rps) || !Number.isFinite(requests)) throw new Error(`wrk failed (${code}): ${err || out}`)
    const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0)
    const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
    const socketErrors = socket ? socket.slice(1).reduce((n, v) => n + Number(v), 0) : 0
    return { rps, requests, bad: non2xx + socketErrors }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

async function autocannon({ url, connections, seconds, headers = {}, method = 'GET', body }: LoadRequest): Promise<LoadResult> {
  const bin = join(ROOT, 'node_modules/autocannon/autocannon.js')
  const runtime = Bun.which('node') ?? 'bun'
  const args = pinned([runtime, bin, '--json', '-c', String(connections), '-d', String(seconds), '-m', method], 'load')
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}=${value}`)
  if (body !== undefined) args.push('-b', body)
  args.push(url)
  const child = Bun.spawn(args, { stdout: 'pipe', stderr: 'pipe' })
  const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited])
  if (code !== 0) throw new Error(`autocannon failed (${code}): ${err}`)
  const report = JSON.parse(out) as { requests: { total: number }; duration: number; non2xx: number; errors: number; timeouts: number }
  return {
    rps: report.requests.total / report.duration,
    requests: report.requests.total,
    bad: report.non2xx + report.errors + report.timeouts,
  }
}

/** Nearest-rank percentile of an ascending list. */
export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

export function median(values: number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    50,
  )
}

export const fmt = (n: number, digits = 0) => n.toFixed(digits)

/** A process's resident memory now and at its peak, in bytes (Linux /proc). */
export function peakRss(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024
  return { rss: kb('VmRSS'), peak: kb('VmHWM') }
}

export const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`

/** A number right-aligned in a column. */
export const col = (n: number | string, width: number, digits = 0) => (typeof n === 'string' ? n : fmt(n, digits)).padStart(width)

/** A goal line: the figure, the goal, and whether this run met it. */
export function goal(label: string, value: number, op: '>=' | '<=', target: number, digits = 2): string {
  const met = op === '>=' ? value >= target : value <= target
  return `${label} ${fmt(value, digits)} (goal ${op} ${target}: ${met ? 'met' : 'MISSED'})`
}
