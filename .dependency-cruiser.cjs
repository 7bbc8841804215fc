/**
 * vireo's layers (see ARCHITECTURE.md): entry points → app → modules (controllers) → plugins → domain
 * (audio, inference, jobs, keys, db, metrics, rate-limit) → config, errors. `bun run lint:layers` checks them in CI.
 */
const DOMAIN = '^src/(audio|inference|jobs|keys|db|metrics|rate-limit)/'
const ENTRY = '^src/(index|deno|job-runner|keys-create|migrate|boot)\\.ts$'

module.exports = {
  forbidden: [
    {
      name: 'plugin-imports-controller',
      comment: 'Plugins are below controllers: what a plugin needs from a feature lives in the domain folder.',
      severity: 'error',
      from: { path: '^src/plugins/' },
      to: { path: '^src/modules/' },
    },
    {
      name: 'domain-imports-http',
      comment: 'Domain code never sees HTTP: no controllers, plugins, app or wiring.',
      severity: 'error',
      from: { path: DOMAIN },
      to: { path: '^src/(modules|plugins)/|^src/(app|deps)\\.ts$' },
    },
    {
      name: 'imports-entry-point',
      comment: 'Entry points sit beside src/index.ts and only they start things; nothing imports them but each other.',
      severity: 'error',
      from: { path: '^src/', pathNot: ENTRY },
      to: { path: ENTRY },
    },
    {
      name: 'foundation-imports-upward',
      comment: 'config, errors, logger and envelope are the bottom layer.',
      severity: 'error',
      from: { path: '^src/(config|errors|logger|envelope)\\.ts$' },
      to: { path: '^src/(modules|plugins|audio|inference|jobs|keys|db|metrics|rate-limit)/|^src/(app|deps)\\.ts$' },
    },
    {
      name: 'no-circular',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: 'node_modules' },
  },
}
