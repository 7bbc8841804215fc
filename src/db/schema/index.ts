/** Every table vireo owns. drizzle-kit reads this file to generate migrations into `drizzle/`. */
export * from './api-keys'
export * from './jobs'
