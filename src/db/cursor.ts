import { ValidationError } from '../errors'

/**
 * Opaque page cursors over `(created_at, id)`, the order every list uses (newest first). Rows added
 * while a client pages are newer than its cursor, so pages neither repeat nor skip rows.
 */
export function encodeCursor(createdAt: Date, id: string): string {
  return Buffer.from(`${createdAt.toISOString()}|${id}`).toString('base64url')
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
/** Rows are never older than this; anything earlier (or past year 9999) is a forged cursor. */
const EARLIEST = Date.UTC(2000, 0, 1)

/**
 * The position a cursor names. Only a cursor this module made is accepted: a real UUID, a time in range, and
 * bytes that encode back to the same cursor. Anything else is the client's mistake (400), never a query error.
 */
export function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  const [at = '', id = '', ...rest] = Buffer.from(cursor, 'base64url').toString().split('|')
  const createdAt = new Date(at)
  const time = createdAt.getTime()
  if (rest.length || !UUID.test(id) || !(time >= EARLIEST && time < Date.UTC(10000, 0, 1)) || encodeCursor(createdAt, id) !== cursor)
    throw new ValidationError('Invalid cursor', [{ path: 'query:/cursor', message: 'use the next_cursor value of a previous page' }])
  return { createdAt, id }
}
