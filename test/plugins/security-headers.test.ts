import { describe, expect, it } from 'bun:test'
import { createTestApp, req } from '../helpers'

describe('production headers', () => {
  it('sends HSTS only in production', async () => {
    const prod = await createTestApp({
      NODE_ENV: 'production',
      CORS_ORIGINS: 'https://a.example.com',
      ADMIN_API_KEY: 'q7T_xV2mK9pL4wZr8bN1cY6hJ3fD0sG5eA-uQiWoR',
      HSTS_MAX_AGE_MS: '600000',
    })
    try {
      for (const path of ['/', '/api/v1/missing']) {
        const response = await prod.app.handle(req(path))
        expect(response.headers.get('strict-transport-security')).toBe('max-age=600; includeSubDomains')
      }
    } finally {
      await prod.close()
    }
  })
})
