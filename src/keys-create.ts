import { parseArgs } from 'node:util'
import { loadConfig } from './config'
import { openDatabase } from './db/client'
import { SCOPES, type Scope } from './keys/model'
import { createKeyService } from './keys/service'

/** `bun run keys:create --name <name> --scopes inference,jobs [--expires-at <RFC 3339>]`: prints the new key once. */
const { values } = parseArgs({
  options: { name: { type: 'string' }, scopes: { type: 'string' }, 'expires-at': { type: 'string' } },
})
const scopes = (values.scopes ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean)
const unknown = scopes.filter((s) => !SCOPES.includes(s as Scope))
if (!values.name || scopes.length === 0 || unknown.length) {
  console.error(`usage: bun run keys:create --name <name> --scopes ${SCOPES.join(',')} [--expires-at 2030-01-01T00:00:00Z]`)
  if (unknown.length) console.error(`unknown scopes: ${unknown.join(', ')}`)
  process.exit(2)
}
const config = loadConfig()
const database = await openDatabase(config)
try {
  await database.migrate()
  const keys = createKeyService({ db: database.db, cacheTtlMs: 0 })
  const created = await keys.create({ name: values.name, scopes: scopes as Scope[], expires_at: values['expires-at'] })
  console.log(
    JSON.stringify({ id: created.id, name: created.name, scopes: created.scopes, prefix: created.prefix, expires_at: created.expires_at }),
  )
  console.log(`key (shown once): ${created.key}`)
} catch (error) {
  console.error(`could not create the key: ${(error as Error).message}`)
  process.exitCode = 1
} finally {
  await database.close()
}
