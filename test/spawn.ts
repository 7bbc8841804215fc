/**
 * The one launcher of child processes that announce they are ready on stdout: vireo under test
 * (`startServer` in test/helpers.ts) and the benchmarks' servers and runners (`spawnUntil` in bench/lib.ts).
 * scripts/lib.sh keeps its own `start_vireo`: a shell script cannot call TypeScript.
 */
export interface SpawnOptions {
  env: Record<string, string | undefined>
  cwd?: string
  /** 'pipe' adds the child's stderr to the error when it exits before it is ready. */
  stderr?: 'pipe' | 'inherit'
  /** Keep all the child writes to stdout for `output()`; off for long chatty children (benchmarks under load). */
  keep?: boolean
}

export interface Spawned {
  proc: ReturnType<typeof Bun.spawn>
  /** The first stdout line `found` accepted. */
  line: string
  /** Everything the child wrote to stdout once it has exited ('' unless `keep`). */
  output(): Promise<string>
}

/**
 * Spawn `command`, wait until its stdout shows a line `found` accepts, then keep draining stdout for the rest of its
 * life so a chatty child never blocks on a full pipe. Throws with what it wrote if it exits first.
 */
export async function spawnUntil(command: string[], found: (line: string) => boolean, options: SpawnOptions): Promise<Spawned> {
  const { env, cwd, stderr = 'pipe', keep = false } = options
  const proc = Bun.spawn(command, { cwd, env, stdout: 'pipe', stderr })
  const reader = proc.stdout.getReader()
  const decoder = new TextDecoder()
  let text = ''
  for (;;) {
    const { done, value } = await reader.read()
    if (done) {
      const errors = proc.stderr instanceof ReadableStream ? await new Response(proc.stderr).text() : ''
      throw new Error(`${command.join(' ')} exited (${await proc.exited}) before it was ready: ${text.slice(-2000)}${errors}`)
    }
    text += decoder.decode(value, { stream: true })
    const line = text.split('\n').find(found)
    if (!line) continue
    const rest = (async () => {
      for (;;) {
        const chunk = await reader.read()
        if (chunk.done) return keep ? text : ''
        if (keep) text += decoder.decode(chunk.value, { stream: true })
      }
    })()
    rest.catch(() => {})
    return { proc, line, output: () => rest }
  }
}
