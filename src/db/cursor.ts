import { ValidationError } from '../errors'

/**
 * Opaque page cursors over `(created_at, id)`, the order every list uses (newest first). Rows added
 * while a client pages are newer than its cursor, so pages neither repeat nor skip rows.
 */
export function encodeCursor(createdAt: Date, id: string): string {
  return Buffer.from(`${createdAt.toISOString()}|${id}`).toString('base64url')
}

export function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  const [at, id] = Buffer.from(cursor, 'base64url').toString().split('|')
  const createdAt = new Date(at ?? '')
  if (!id || Number.isNaN(createdAt.getTime()) || !/^[0-9a-f-]{36}$/.test(id))
    throw new ValidationError('Invalid cursor', [{ path: 'query:/cursor', message: 'use the next_cursor value of a previous page' }])
  return { createdAt, id }
}
