import { loadConfig } from './config'
import { openDatabase } from './db/client'

/** `bun run db:migrate`: apply pending migrations to the configured database and exit. */
const config = loadConfig()
const database = await openDatabase(config)
await database.migrate()
await database.close()
console.log(`migrations applied (${database.kind})`)
