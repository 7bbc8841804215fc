import { index, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'

/** API keys. Only a SHA-256 hash of the whole key is stored; the secret is shown once, at creation. */
export const apiKeys = pgTable(
  'api_keys',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    name: text('name').notNull(),
    /** Visible part of the key (`vk_<prefix>_…`), for people to tell keys apart. */
    prefix: text('prefix').notNull(),
    /** Hex SHA-256 of the whole key string. */
    keyHash: text('key_hash').notNull(),
    scopes: text('scopes').array().notNull(),
    // Millisecond precision so a JavaScript Date in a page cursor matches the stored value exactly.
    createdAt: timestamp('created_at', { withTimezone: true, precision: 3 }).notNull().defaultNow(),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    expiresAt: timestamp('expires_at', { withTimezone: true }),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
  },
  (table) => [
    uniqueIndex('api_keys_prefix_idx').on(table.prefix),
    // Auth looks keys up by hash on every cache miss.
    uniqueIndex('api_keys_hash_idx').on(table.keyHash),
    // Admin listing pages by (created_at, id).
    index('api_keys_created_idx').on(table.createdAt, table.id),
  ],
)
