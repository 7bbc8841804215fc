import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * The Dockerfile is checked by reading it, and its CMD is proven by laying out the image's /app the way the
 * COPY and install steps would and starting it there: quick, and needs no container engine. The image itself is
 * built and run with podman by scripts/container-test.sh in .ci/run.
 */

const ROOT = join(import.meta.dir, '..', '..')

interface Instruction {
  op: string
  args: string
}

/** Instructions in order, with line continuations joined and comments dropped. */
function parseDockerfile(text: string): Instruction[] {
  const logical: string[] = []
  let current = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line.startsWith('#') || (line === '' && current === '')) continue
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1).trim()} `
      continue
    }
    logical.push((current + line).trim())
    current = ''
  }
  if (current.trim()) logical.push(current.trim())
  return logical.filter(Boolean).map((line) => {
    const op = line.split(/\s+/)[0] ?? ''
    return { op: op.toUpperCase(), args: line.slice(op.length).trim() }
  })
}

/** `a=b c="d e"` (and the legacy `a b`) into an object. */
function parseEnv(args: string): Record<string, string> {
  if (!args.includes('=')) {
    const [key = '', ...value] = args.split(/\s+/)
    return { [key]: value.join(' ') }
  }
  const env: Record<string, string> = {}
  for (const match of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    const value = match[2] ?? ''
    env[match[1]!] = value.startsWith('"') ? JSON.parse(value) : value
  }
  return env
}

/** Flags (`--chown=…`) stripped; exec (JSON) or shell form. */
function copyParts(args: string): { flags: string[]; sources: string[]; dest: string } {
  const words = args.split(/\s+/)
  const flags = words.filter((w) => w.startsWith('--'))
  const rest = args.trim().startsWith('[') ? (JSON.parse(args) as string[]) : words.filter((w) => !w.startsWith('--'))
  return { flags, sources: rest.slice(0, -1), dest: rest.at(-1)! }
}

const dockerfile = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))
const all = (op: string) => dockerfile.filter((i) => i.op === op)
const last = (op: string) => all(op).at(-1)
const env = Object.assign({}, ...all('ENV').map((i) => parseEnv(i.args))) as Record<string, string>
const workdir = last('WORKDIR')?.args ?? '/'
const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'))

describe('Dockerfile', () => {
  it('builds on the official Bun image pinned to the version the tests run on', () => {
    const from = all('FROM')
    expect(from.length).toBeGreaterThan(0)
    for (const { args } of from) {
      const image = args.split(/\s+/)[0]!
      expect(image).toMatch(/^oven\/bun:\d+\.\d+\.\d+(-[a-z]+)?(@sha256:[0-9a-f]{64})?$/)
      expect(image.split(':')[1]!.split(/[-@]/)[0]).toBe(Bun.version)
    }
  })

  it('copies only sources that exist and that .dockerignore lets through', () => {
    const copies = all('COPY').concat(all('ADD'))
    expect(copies.length).toBeGreaterThan(0)
    for (const { args } of copies) {
      const { flags, sources } = copyParts(args)
      if (flags.some((f) => f.startsWith('--from='))) continue
      for (const source of sources) {
        expect({ source, exists: existsSync(join(ROOT, source)) }).toEqual({ source, exists: true })
        const excludedBy = ignored.filter((pattern) => !pattern.startsWith('!') && new Bun.Glob(pattern).match(source))
        expect({ source, excludedBy }).toEqual({ source, excludedBy: [] })
      }
    }
  })

  it('installs production dependencies from the lockfile only', () => {
    const install = all('RUN').find((r) => r.args.includes('bun install'))
    expect(install?.args).toContain('--frozen-lockfile')
    expect(install?.args).toContain('--production')
    // Peers are types and tools (typescript, bun-types), not code vireo runs; the CMD test below installs the same way.
    expect(install?.args).toContain('--omit=peer')
    const copiedBefore = dockerfile
      .slice(0, dockerfile.indexOf(install!))
      .filter((i) => i.op === 'COPY')
      .flatMap((i) => copyParts(i.args).sources)
    expect(copiedBefore).toContain('bun.lock')
    expect(copiedBefore).toContain('package.json')
  })

  it('runs as a user that is not root', () => {
    const user = last('USER')?.args.split(':')[0]
    expect(user).toBeDefined()
    expect(['root', '0']).not.toContain(user!)
    // Nothing after USER may switch back.
    expect(dockerfile.slice(dockerfile.indexOf(last('USER')!)).filter((i) => i.op === 'USER').length).toBe(1)
  })

  it('declares production, the port it exposes, and a liveness HEALTHCHECK that needs no curl', () => {
    expect(env.NODE_ENV).toBe('production')
    expect(last('EXPOSE')?.args).toBe(env.PORT ?? '3000')
    const healthcheck = last('HEALTHCHECK')?.args ?? ''
    expect(healthcheck).toContain('/api/v1/health/live')
    expect(healthcheck).not.toMatch(/\b(curl|wget)\b/)
    expect(healthcheck).toMatch(/CMD \["bun"/)
  })

  it('keeps freed memory in the Bun allocator, as `bun run start` and `bun run runner` do by default', () => {
    const { scripts } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
    for (const name of ['start', 'runner']) {
      const chosen = /^MIMALLOC_PURGE_DELAY=(-?\d+) bun /.exec(scripts[name] ?? '')?.[1]
      expect({ name, chosen }).toEqual({ name, chosen: env.MIMALLOC_PURGE_DELAY })
    }
    // The setting only matters while Bun's allocator is mimalloc and reads it: its verbose start-up says so.
    const probe = Bun.spawnSync([process.execPath, '-e', '0'], {
      env: { PATH: process.env.PATH ?? '', MIMALLOC_VERBOSE: '1', MIMALLOC_PURGE_DELAY: env.MIMALLOC_PURGE_DELAY },
      stderr: 'pipe',
    })
    expect(probe.stderr.toString()).toContain(`option 'purge_delay': ${env.MIMALLOC_PURGE_DELAY}`)
  })

  it('keeps secrets and local state out of the build context', () => {
    for (const path of ['.env', '.git', '.data', 'node_modules']) expect(ignored).toContain(path)
  })
})

describe('Dockerfile CMD', () => {
  let app: string
  let stateDir: string

  beforeAll(() => {
    // Lay out the image's working directory: every COPY in order, then the install step.
    app = mkdtempSync(join(tmpdir(), 'vireo-image-'))
    stateDir = mkdtempSync(join(tmpdir(), 'vireo-image-data-'))
    for (const { args } of all('COPY')) {
      const { sources, dest } = copyParts(args)
      const target = dest.startsWith('/') ? join(app, dest.slice(workdir.length)) : join(app, dest)
      for (const source of sources) {
        const into = dest.endsWith('/') ? join(target, source.split('/').at(-1)!) : target
        mkdirSync(join(into, '..'), { recursive: true })
        cpSync(join(ROOT, source), into, { recursive: true })
      }
    }
    const install = Bun.spawnSync(['bun', 'install', '--frozen-lockfile', '--production', '--omit=peer'], {
      cwd: app,
      stdout: 'pipe',
      stderr: 'pipe',
    })
    if (install.exitCode !== 0) throw new Error(`bun install failed: ${install.stderr.toString()}`)
  })

  afterAll(() => {
    rmSync(app, { recursive: true, force: true })
    rmSync(stateDir, { recursive: true, force: true })
  })

  it('starts the service with the image environment, answers liveness and exits 0 on SIGTERM', async () => {
    const cmd = JSON.parse(last('CMD')!.args) as string[]
    const child = Bun.spawn(cmd, {
      cwd: app,
      // Only what the image sets plus what an operator must supply: nothing leaks in from this shell (e.g. DATABASE_URL).
      env: {
        PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
        HOME: stateDir,
        ...env,
        PGLITE_DIR: join(stateDir, 'pglite'),
        PORT: '0',
        CORS_ORIGINS: 'https://app.example.com',
        ADMIN_API_KEY: 'docker_test_admin_key_0123456789abcdef',
      },
      stdout: 'pipe',
      stderr: 'pipe',
    })
    const lines: string[] = []
    const reader = child.stdout.getReader()
    const decoder = new TextDecoder()
    let buffered = ''
    const deadline = Date.now() + 240_000
    let listening: { url: string; env: string } | undefined
    while (!listening && Date.now() < deadline) {
      const { value, done } = await reader.read()
      if (done) break
      buffered += decoder.decode(value, { stream: true })
      const parts = buffered.split('\n')
      buffered = parts.pop() ?? ''
      for (const line of parts) {
        lines.push(line)
        const parsed = JSON.parse(line) as { msg: string; url: string; env: string }
        if (parsed.msg === 'vireo listening') listening = parsed
      }
    }
    if (!listening) {
      child.kill('SIGKILL')
      throw new Error(`no "vireo listening" line:\n${lines.join('\n')}\n${await new Response(child.stderr).text()}`)
    }
    expect(listening.env).toBe('production')
    const port = new URL(listening.url).port
    const response = await fetch(`http://127.0.0.1:${port}/api/v1/health/live`)
    expect(response.status).toBe(200)
    expect(((await response.json()) as { data: { status: string } }).data.status).toBe('alive')
    expect(response.headers.get('strict-transport-security')).toContain('max-age=')
    const probe = JSON.parse(last('HEALTHCHECK')!.args.replace(/^.*?\bCMD\s+/, '')) as string[]
    const healthy = Bun.spawnSync(probe, { cwd: app, env: { PATH: process.env.PATH ?? '', PORT: port } })
    expect(healthy.exitCode).toBe(0)
    child.kill('SIGTERM')
    expect(await child.exited).toBe(0)
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read())
      buffered += decoder.decode(chunk.value, { stream: true })
    expect(buffered).toContain('"msg":"shutdown complete"')
    expect(Bun.spawnSync(probe, { cwd: app, env: { PATH: process.env.PATH ?? '', PORT: port } }).exitCode).toBe(1)
  })
})
