import type { Dirent } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Value } from '@sinclair/typebox/value'
import { t } from 'elysia'
import { loadManifest, type Manifest } from './manifest'

/**
 * The layout of MODELS_DIR. A model folder is either flat (`<name>/manifest.json`: one version, named by the
 * manifest) or versioned (`<name>/<version>/manifest.json`: one folder per version, named like the version its
 * manifest declares). An optional `<name>/model.json` pins the version a request that names none runs on.
 */

/** Version folder names: safe as one path segment and as one URL segment. */
export const VERSION_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'
const versionName = new RegExp(VERSION_PATTERN)

/** `models/<name>/model.json`: what holds for every version of one model. */
export const ModelFileSchema = t.Object(
  {
    default_version: t.Optional(
      t.String({ pattern: VERSION_PATTERN, description: 'the version a request that names none runs on; else the highest ready one' }),
    ),
  },
  { additionalProperties: false },
)

export interface FoundVersion {
  /** Null only when a flat folder's manifest cannot be read, so its version is unknown. */
  version: string | null
  dir: string
  /** The manifest, or a sentence saying what is wrong with the folder. */
  manifest: Manifest | string
}

export type FoundModel =
  | { name: string; versions: FoundVersion[]; defaultVersion?: string }
  /** The folder as a whole is unusable (bad model.json, no manifest anywhere). */
  | { name: string; problem: string }

/** Order of versions: digit runs compare as numbers ("10" after "9", "1.10" after "1.9"), then plain text. */
const collator = new Intl.Collator('en', { numeric: true })
export function compareVersions(a: string, b: string): number {
  return collator.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0)
}

async function readModelFile(dir: string): Promise<{ default_version?: string } | string> {
  let text: string
  try {
    text = await readFile(join(dir, 'model.json'), 'utf8')
  } catch {
    return {}
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    return `model.json is not valid JSON: ${(error as Error).message}`
  }
  const problems = [...Value.Errors(ModelFileSchema, json)].slice(0, 5).map((e) => `${e.path || '/'}: ${e.message}`)
  return problems.length ? `model.json is invalid: ${problems.join('; ')}` : (json as { default_version?: string })
}

/**
 * Read one model folder: its versions with their manifests, and its default version. Never throws for a bad
 * folder (the answer says what is wrong); undefined when there is no such folder.
 * @example const found = await scanModel('models', 'silero-vad')
 */
export async function scanModel(modelsDir: string, name: string): Promise<FoundModel | undefined> {
  const dir = join(modelsDir, name)
  let children: Dirent[]
  try {
    children = await readdir(dir, { withFileTypes: true })
  } catch {
    return undefined
  }
  const settings = await readModelFile(dir)
  if (typeof settings === 'string') return { name, problem: settings }
  let versions: FoundVersion[]
  if (children.some((c) => c.name === 'manifest.json')) {
    const manifest = await loadManifest(dir)
    versions = [{ version: typeof manifest === 'string' ? null : manifest.version, dir, manifest }]
  } else {
    const folders = children
      .filter((c) => c.isDirectory() && versionName.test(c.name))
      .map((c) => c.name)
      .sort(compareVersions)
    if (folders.length === 0) return { name, problem: `${dir} holds neither manifest.json nor a version folder (<version>/manifest.json)` }
    versions = await Promise.all(
      folders.map(async (version): Promise<FoundVersion> => {
        const manifest = await loadManifest(join(dir, version))
        if (typeof manifest !== 'string' && manifest.version !== version)
          return {
            version,
            dir: join(dir, version),
            manifest: `manifest.json says version "${manifest.version}" but its folder is "${version}"; they must match`,
          }
        return { version, dir: join(dir, version), manifest }
      }),
    )
  }
  const { default_version } = settings
  if (default_version !== undefined && !versions.some((v) => v.version === default_version))
    return { name, problem: `model.json names default_version "${default_version}", which is not a version in ${dir}` }
  return default_version === undefined ? { name, versions } : { name, versions, defaultVersion: default_version }
}

/**
 * Every model folder of MODELS_DIR, by name; an unreadable MODELS_DIR has none.
 * @example const models = await scanModels(config.MODELS_DIR)
 */
export async function scanModels(modelsDir: string): Promise<FoundModel[] | undefined> {
  let names: string[]
  try {
    names = (await readdir(modelsDir, { withFileTypes: true }))
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort()
  } catch {
    return undefined
  }
  const found = await Promise.all(names.map((name) => scanModel(modelsDir, name)))
  return found.filter((f) => f !== undefined)
}
