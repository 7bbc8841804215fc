import { existsSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { createApp } from '../src/app'
import { type Config, loadConfig } from '../src/config'
import { createDeps, type Deps } from '../src/deps'
import { createLogger } from '../src/logger'
import { spawnUntil } from './spawn'

/** Build a request against the in-process app. */
export function req(path: string, init: RequestInit & { json?: unknown } = {}): Request {
  const { json, ...rest } = init
  const headers = new Headers(rest.headers)
  if (json !== undefined) headers.set('content-type', 'application/json')
  return new Request(`http://localhost${path}`, { ...rest, headers, body: json === undefined ? rest.body : JSON.stringify(json) })
}

/** Lines a test logger wrote, parsed. */
export class LogCapture extends Writable {
  readonly raw: string[] = []
  override _write(chunk: Buffer, _encoding: string, done: () => void) {
    this.raw.push(chunk.toString())
    done()
  }
  get text() {
    return this.raw.join('')
  }
  get lines(): Record<string, unknown>[] {
    return this.text
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line))
  }
  /** The first line that matches, once it has been written (access lines follow the response). */
  async line(match: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    await until(() => this.lines.some(match))
    return this.lines.find(match)!
  }
}

/** The test environment: the real PostgreSQL when DATABASE_URL is set (CI runs both), in-memory PGlite otherwise. */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({
    NODE_ENV: 'test',
    DATABASE_URL: process.env.DATABASE_URL,
    // CI runs the inference tests again with INFERENCE_BACKENDS=wasm.
    INFERENCE_BACKENDS: process.env.INFERENCE_BACKENDS,
    LOG_LEVEL: 'debug',
    // Tests hammer a few routes from one address; the rate-limit tests set their own quotas.
    RATE_LIMIT_PUBLIC: '100000/60',
    RATE_LIMIT_INFERENCE: '100000/60',
    RATE_LIMIT_JOBS: '100000/60',
    RATE_LIMIT_ADMIN: '100000/60',
    RATE_LIMIT_AUTH_FAILURES: '100000/60',
    // The generated test models load in well under a second; one worker keeps start-up quick.
    MODELS_DIR: 'test/fixtures/models',
    INFERENCE_WORKERS: '1',
    MODELS_HEALTH_INTERVAL_MS: '0',
    ...env,
  })
}

export interface TestApp {
  app: ReturnType<typeof createApp>
  deps: Deps
  logs: LogCapture
  close(): Promise<void>
}

/**
 * A real app on a real database with logs captured in memory.
 * @example const { app, close } = await createTestApp(); afterAll(close)
 */
export async function createTestApp(env: Record<string, string> = {}): Promise<TestApp> {
  const config = testConfig(env)
  const logs = new LogCapture()
  const logger = createLogger(config, { destination: logs })
  const deps = await createDeps(config, { logger, inMemory: true })
  const app = createApp(deps)
  return { app, deps, logs, close: () => deps.close() }
}

/** Parse a JSON response body. */
export async function body<T = any>(response: Response): Promise<T> {
  return (await response.json()) as T
}

/** Create a key straight through the service (as an operator would) and return its secret. */
export async function createKey(
  t: TestApp,
  scopes: ('inference' | 'jobs' | 'admin')[],
  name = `test ${scopes.join('+')}`,
): Promise<string> {
  return (await t.deps.keys.create({ name, scopes })).key
}

/** Headers carrying a key. */
export const bearer = (key: string) => ({ authorization: `Bearer ${key}` })

export interface RunningServer {
  proc: ReturnType<typeof Bun.spawn>
  url: string
  /** Everything the server wrote to stdout, once it has exited. */
  output(): Promise<string>
}

/** Which runtime serves a test server: Bun (`src/index.ts`) or Deno (`src/deno.ts`). */
export type Runtime = 'bun' | 'deno'

/**
 * The Deno binary of the `deno` devDependency (its npm package ships it; the `.bin` launcher is a Node script that
 * would stand between vireo and its signals). Throws when it is missing: a run that asked for Deno never skips it.
 */
export function denoBinary(): string {
  for (const candidate of ['node_modules/deno/deno', 'node_modules/.bin/deno']) if (existsSync(candidate)) return candidate
  throw new Error('Deno is not installed: `bun install` installs the deno devDependency (node_modules/deno/deno)')
}

/**
 * vireo as a real process (`bun src/index.ts`, or `src/deno.ts` under Deno) on a throwaway PGlite and the fixture
 * models, resolved once it logs "vireo listening".
 * @example const { url, proc } = await startServer({ ADMIN_API_KEY: key }); proc.kill('SIGTERM')
 */
export async function startServer(env: Record<string, string> = {}, runtime: Runtime = 'bun'): Promise<RunningServer> {
  const command = runtime === 'deno' ? [denoBinary(), 'run', '-A', 'src/deno.ts'] : ['bun', 'src/index.ts']
  const { proc, line, output } = await spawnUntil(command, (l) => URL_FIELD.test(l), {
    env: {
      PATH: process.env.PATH ?? '',
      // Deno keeps its cache under HOME (or DENO_DIR).
      ...(runtime === 'deno' ? pick(process.env, ['HOME', 'DENO_DIR', 'XDG_CACHE_HOME']) : {}),
      NODE_ENV: 'test',
      LOG_LEVEL: 'info',
      HOST: '127.0.0.1',
      PORT: '0',
      PGLITE_DIR: mkdtempSync(join(tmpdir(), 'vireo-server-')),
      MODELS_DIR: 'test/fixtures/models',
      INFERENCE_WORKERS: '1',
      ...env,
    },
    keep: true,
  })
  return { proc, url: URL_FIELD.exec(line)![1]!.replace(/\/$/, ''), output }
}

/** The listening URL in vireo's "vireo listening" log line. */
const URL_FIELD = /"url":"([^"]+)"/

/**
 * Waits for a condition, checked every 20 ms; a failed async check just means "not yet". The bound only turns a
 * hang into a readable failure, so it is generous: nothing here asserts how fast the machine is.
 */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (
    !(await Promise.resolve()
      .then(check)
      .catch(() => false))
  ) {
    if (performance.now() > deadline) throw new Error('condition not reached in time')
    await Bun.sleep(20)
  }
}

const pick = (from: Record<string, string | undefined>, names: string[]) =>
  Object.fromEntries(names.flatMap((name) => (from[name] === undefined ? [] : [[name, from[name]]]))) as Record<string, string>
