import { describe, expect, it } from 'bun:test'
import fc from 'fast-check'
import { decodeCursor, encodeCursor } from '../../src/db/cursor'
import { ValidationError } from '../../src/errors'

const b64 = (text: string) => Buffer.from(text).toString('base64url')
const ID = '0b7f3c2e-9a41-4d6b-8f0e-5c3a2d1b4e6f'

describe('page cursors', () => {
  it('decode what they encode', () => {
    const at = new Date('2026-03-04T05:06:07.089Z')
    expect(decodeCursor(encodeCursor(at, ID))).toEqual({ createdAt: at, id: ID })
  })

  it('refuse forged ids, times and framings with a ValidationError', () => {
    const forged = [
      `2026-01-01T00:00:00.000Z|${'-'.repeat(36)}`,
      `2026-01-01T00:00:00.000Z|${'0'.repeat(36)}`,
      `2026-01-01T00:00:00.000Z|${ID.toUpperCase()}`,
      `0001-01-01T00:00:00.000Z|${ID}`,
      `Tue Jan 01 2026|${ID}`,
      `2026-01-01|${ID}`,
      `2026-01-01T00:00:00.000Z|${ID}|extra`,
      `2026-02-30T00:00:00.000Z|${ID}`,
      '',
    ]
    for (const text of forged) expect(() => decodeCursor(b64(text)), text).toThrow(ValidationError)
    expect(() => decodeCursor(`${encodeCursor(new Date('2026-01-01T00:00:00Z'), ID)}=`)).toThrow(ValidationError)
  })

  it('either refuse any string with a ValidationError or give back a position that encodes to it', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.base64String(), fc.string().map(b64)), (cursor) => {
        try {
          const { createdAt, id } = decodeCursor(cursor)
          expect(encodeCursor(createdAt, id)).toBe(cursor)
        } catch (error) {
          expect(error).toBeInstanceOf(ValidationError)
        }
      }),
    )
  })
})
