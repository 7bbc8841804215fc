import { describe, expect, it } from 'bun:test'
import { ConfigError, keyStrengthBits, loadConfig } from '../src/config'
import { generateKey } from '../src/keys/service'

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env)
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError)
    return (error as ConfigError).problems
  }
  throw new Error('expected the configuration to be refused')
}

describe('config', () => {
  it('gives every setting a default so an empty environment starts in development', () => {
    const config = loadConfig({})
    expect(config.NODE_ENV).toBe('development')
    expect(config.PORT).toBe(3000)
    expect(config.LOG_LEVEL).toBe('debug')
    expect(config.CORS_ORIGINS).toEqual(['*'])
    expect(config.INFERENCE_WORKERS).toBeGreaterThan(0)
    expect(config.RATE_LIMITS.inference).toEqual({ points: 600, durationS: 60 })
  })

  it('converts strings to numbers, booleans and lists', () => {
    const config = loadConfig({
      PORT: '8080',
      TRUST_PROXY: '2',
      CORS_ORIGINS: 'https://a.com, https://b.com',
      MODELS_REQUIRED: 'x,y',
      RATE_LIMIT_JOBS: '5/10',
    })
    expect(config.PORT).toBe(8080)
    expect(config.TRUST_PROXY).toEqual({ hops: 2 })
    expect(config.CORS_ORIGINS).toEqual(['https://a.com', 'https://b.com'])
    expect(config.MODELS_REQUIRED).toEqual(['x', 'y'])
    expect(config.RATE_LIMITS.jobs).toEqual({ points: 5, durationS: 10 })
  })

  it('names every bad variable at once, with the reason', () => {
    const found = problems({ PORT: 'abc', LOG_LEVEL: 'loud', MAX_JSON_BYTES: '1.5', TRUST_PROXY: 'maybe', RATE_LIMIT_ADMIN: '10' })
    expect(found).toHaveLength(5)
    expect(found.find((p) => p.startsWith('PORT='))).toContain('abc')
    expect(found.find((p) => p.startsWith('LOG_LEVEL='))).toContain('expected one of')
    expect(found.find((p) => p.startsWith('MAX_JSON_BYTES='))).toContain('whole number')
    expect(found.some((p) => p.startsWith('TRUST_PROXY='))).toBe(true)
    expect(found.some((p) => p.startsWith('RATE_LIMIT_ADMIN='))).toBe(true)
  })

  it("caps VAD_STREAM_MAX_MESSAGE_BYTES at Bun's own WebSocket message cap, 16 MiB", () => {
    expect(loadConfig({ VAD_STREAM_MAX_MESSAGE_BYTES: String(16 * 1024 * 1024) }).VAD_STREAM_MAX_MESSAGE_BYTES).toBe(16 * 1024 * 1024)
    expect(problems({ VAD_STREAM_MAX_MESSAGE_BYTES: String(16 * 1024 * 1024 + 1) })[0]).toStartWith('VAD_STREAM_MAX_MESSAGE_BYTES=')
  })

  it('reads TRUST_PROXY as hops or proxy addresses, and refuses true, which would believe the client', () => {
    expect(loadConfig({}).TRUST_PROXY).toEqual({ hops: 0 })
    expect(loadConfig({ TRUST_PROXY: 'false' }).TRUST_PROXY).toEqual({ hops: 0 })
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 192.168.1.7,::1' }).TRUST_PROXY).toEqual({
      proxies: ['10.0.0.0/8', '192.168.1.7', '::1'],
    })
    expect(problems({ TRUST_PROXY: 'true' })[0]).toContain('the client writes')
    for (const bad of ['10.0.0.0/33', 'proxy.local', '10.0.0.1/8/1', '99'])
      expect(problems({ TRUST_PROXY: bad })[0], bad).toStartWith('TRUST_PROXY=')
  })

  it('reads INFERENCE_BACKENDS as an ordered list of known backends, empty meaning each manifest decides', () => {
    expect(loadConfig({}).INFERENCE_BACKENDS).toEqual([])
    expect(loadConfig({ INFERENCE_BACKENDS: 'wasm' }).INFERENCE_BACKENDS).toEqual(['wasm'])
    expect(loadConfig({ INFERENCE_BACKENDS: ' cpu , wasm,cpu' }).INFERENCE_BACKENDS).toEqual(['cpu', 'wasm'])
    expect(problems({ INFERENCE_BACKENDS: 'cuda,wasm' })[0]).toStartWith('INFERENCE_BACKENDS="cuda,wasm"')
  })

  it('refuses an out-of-range port and a malformed origin', () => {
    expect(problems({ PORT: '70000' })[0]).toContain('PORT')
    expect(problems({ CORS_ORIGINS: 'https://a.com/path' })[0]).toContain('not an origin')
  })

  it('refuses production without an explicit CORS allowlist or admin key', () => {
    const unset = problems({ NODE_ENV: 'production' })
    expect(unset.some((p) => p.startsWith('CORS_ORIGINS'))).toBe(true)
    expect(unset.some((p) => p.startsWith('ADMIN_API_KEY'))).toBe(true)
    expect(
      problems({ NODE_ENV: 'production', CORS_ORIGINS: '*', ADMIN_API_KEY: 'q7T_xV2mK9pL4wZr8bN1cY6hJ3fD0sG5eA-uQiWoR' })[0],
    ).toContain('CORS_ORIGINS')
    const config = loadConfig({
      NODE_ENV: 'production',
      CORS_ORIGINS: 'https://app.example.com',
      ADMIN_API_KEY: 'q7T_xV2mK9pL4wZr8bN1cY6hJ3fD0sG5eA-uQiWoR',
    })
    expect(config.LOG_LEVEL).toBe('info')
  })

  it('refuses a predictable ADMIN_API_KEY in production, saying how to make one', () => {
    for (const weak of ['k'.repeat(64), 'abababababababababababababababab', '0123456789012345678901234567890123'])
      expect(problems({ NODE_ENV: 'production', CORS_ORIGINS: 'https://a.com', ADMIN_API_KEY: weak })[0]).toContain('too predictable')
    expect(keyStrengthBits('k'.repeat(64))).toBe(0)
    expect(keyStrengthBits(generateKey().key)).toBeGreaterThan(128)
    // Development keeps any well-formed key, so local set-ups stay simple.
    expect(loadConfig({ ADMIN_API_KEY: 'k'.repeat(32) }).ADMIN_API_KEY).toBe('k'.repeat(32))
  })

  it('is quiet in tests by default', () => {
    expect(loadConfig({ NODE_ENV: 'test' }).LOG_LEVEL).toBe('silent')
  })

  it('stops the process with a non-zero exit code and one message naming every bad variable', async () => {
    const proc = Bun.spawn(['bun', 'src/index.ts'], {
      env: { PATH: process.env.PATH ?? '', PORT: 'abc', NODE_ENV: 'production' },
      stderr: 'pipe',
      stdout: 'pipe',
    })
    const code = await proc.exited
    const stderr = await new Response(proc.stderr).text()
    expect(code).not.toBe(0)
    expect(stderr).toContain('Invalid configuration')
    for (const name of ['PORT', 'CORS_ORIGINS', 'ADMIN_API_KEY']) expect(stderr).toContain(name)
  })
})
