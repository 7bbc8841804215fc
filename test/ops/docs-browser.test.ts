import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type BrowserContext, chromium } from 'playwright-core'
import { createTestApp, type TestApp } from '../helpers'
import { operations as listOperations } from './helpers'

/**
 * The docs page in a real browser: Debian's Chromium, headless, offline (every request that does not go
 * to vireo is blocked and recorded), checking that Swagger UI renders every documented operation with no
 * Content-Security-Policy violation. Without Chromium the test is skipped locally and fails in CI.
 */

const CHROMIUM = '/usr/bin/chromium'
const ARTIFACT = join(import.meta.dir, '..', '..', 'artifacts', 'docs.png')
const available = existsSync(CHROMIUM)
if (!available && !process.env.CI)
  console.warn(`docs-browser: ${CHROMIUM} is missing, so the browser test is skipped (apt-get install -y chromium); CI fails instead`)

describe.skipIf(!available && !process.env.CI)('docs in a browser', () => {
  let t: TestApp
  let origin: string
  let profile: string
  let context: BrowserContext

  beforeAll(async () => {
    t = await createTestApp()
    t.app.listen({ hostname: '127.0.0.1', port: 0 })
    origin = `http://127.0.0.1:${t.app.server!.port}`
    profile = mkdtempSync(join(tmpdir(), 'vireo-chromium-'))
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: CI must install Debian's chromium package`)
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1280, height: 900 },
    })
  })

  afterAll(async () => {
    await context?.close()
    await t?.app.stop(true)
    await t?.close()
    if (profile) rmSync(profile, { recursive: true, force: true })
  })

  it('renders every documented operation under its CSP, loading nothing from elsewhere', async () => {
    const spec = (await (await fetch(`${origin}/api/v1/docs/json`)).json()) as { paths: Record<string, Record<string, unknown>> }
    const operations = listOperations(spec).length
    expect(operations).toBeGreaterThan(0)

    const page = await context.newPage()
    const blocked: string[] = []
    const cspViolations: string[] = []
    const pageErrors: string[] = []
    await page.route('**/*', (route) => {
      const url = route.request().url()
      if (new URL(url).origin === origin) return route.continue()
      blocked.push(url)
      return route.abort('blockedbyclient')
    })
    page.on('console', (message) => {
      if (/content security policy/i.test(message.text())) cspViolations.push(message.text())
    })
    page.on('pageerror', (error) => pageErrors.push(error.message))
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (event) => {
        console.error(`Content Security Policy violation: ${event.violatedDirective} blocked ${event.blockedURI}`)
      })
    })

    const response = await page.goto(`${origin}/api/v1/docs`, { waitUntil: 'networkidle' })
    expect(response?.status()).toBe(200)
    await page.waitForSelector('.opblock', { timeout: 120_000 })
    await page.waitForFunction((n) => document.querySelectorAll('.opblock').length >= n, operations, { timeout: 120_000 })

    expect(await page.title()).toContain('vireo')
    expect(await page.locator('.information-container .title').first().textContent()).toContain('vireo')
    expect(await page.locator('.opblock').count()).toBeGreaterThanOrEqual(operations)
    mkdirSync(join(ARTIFACT, '..'), { recursive: true })
    await page.screenshot({ path: ARTIFACT, fullPage: true })
    console.log(`docs-browser: ${operations} operations rendered; screenshot at ${ARTIFACT}`)

    expect(cspViolations).toEqual([])
    expect(pageErrors).toEqual([])
    expect(blocked).toEqual([])
  })
})
