/**
 * HTTP clients people point at vireo, each behind one adapter: a request in, `{ status, body }` out. Every client but
 * Bun's fetch runs as a child process with a tiny inline program, so what reaches the server is exactly what that
 * client sends on its own (its default headers, Content-Length on bodiless requests, multipart encoding).
 */
import { basename } from 'node:path'

/** What is sent; a text or file body carries its Content-Type in `headers`, a multipart one gets the client's own. */
export type ClientBody =
  | { kind: 'none' }
  | { kind: 'text'; text: string }
  | { kind: 'file'; path: string }
  | { kind: 'multipart'; field: string; path: string; type: string }

export interface ClientRequest {
  method: string
  url: string
  headers: Record<string, string>
  body: ClientBody
}

export interface ClientResponse {
  status: number
  /** The response body as text. */
  body: string
}

export interface Client {
  name: string
  /** Why the client cannot run here, or undefined when it can. */
  missing?: string
  send(request: ClientRequest): Promise<ClientResponse>
}

/** Children run without proxy settings: the server is on 127.0.0.1 and a proxy would only get in the way. */
const childEnv = () => Object.fromEntries(Object.entries(process.env).filter(([name]) => !/_proxy$/i.test(name))) as Record<string, string>

async function run(cmd: string[], stdin?: string): Promise<string> {
  const proc = Bun.spawn(cmd, {
    env: childEnv(),
    stdin: stdin === undefined ? 'ignore' : new TextEncoder().encode(stdin),
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  if (code !== 0) throw new Error(`${cmd[0]} exited with ${code}: ${err.trim()}`)
  return out
}

const succeeds = (cmd: string[]) => {
  try {
    return Bun.spawnSync(cmd, { stdout: 'ignore', stderr: 'ignore' }).exitCode === 0
  } catch {
    return false
  }
}

/** A client whose child program prints `{ status, body }` as JSON, given the request as JSON in its last argument. */
const scripted = (name: string, cmd: string[] | undefined, missing: string): Client => ({
  name,
  missing: cmd ? undefined : missing,
  async send(request) {
    return JSON.parse(await run([...cmd!, JSON.stringify(request)]))
  },
})

const NODE_FETCH = `
const fs = require('node:fs'), path = require('node:path')
const r = JSON.parse(process.argv[1]), b = r.body
let body
if (b.kind === 'text') body = b.text
else if (b.kind === 'file') body = fs.readFileSync(b.path)
else if (b.kind === 'multipart') {
  body = new FormData()
  body.append(b.field, new Blob([fs.readFileSync(b.path)], { type: b.type }), path.basename(b.path))
}
fetch(r.url, { method: r.method, headers: r.headers, body })
  .then(async (res) => process.stdout.write(JSON.stringify({ status: res.status, body: await res.text() })))
  .catch((error) => { console.error(error); process.exit(1) })
`

const PYTHON_URLLIB = `
import json, os, sys, urllib.error, urllib.request, uuid
r = json.loads(sys.argv[1]); b = r['body']; headers = dict(r['headers']); data = None
if b['kind'] == 'text': data = b['text'].encode()
elif b['kind'] == 'file': data = open(b['path'], 'rb').read()
elif b['kind'] == 'multipart':
    # urllib has no multipart encoder: this is the one its users write.
    boundary = uuid.uuid4().hex
    head = f'--{boundary}\\r\\nContent-Disposition: form-data; name="{b["field"]}"; filename="{os.path.basename(b["path"])}"\\r\\nContent-Type: {b["type"]}\\r\\n\\r\\n'
    data = head.encode() + open(b['path'], 'rb').read() + f'\\r\\n--{boundary}--\\r\\n'.encode()
    headers['Content-Type'] = f'multipart/form-data; boundary={boundary}'
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    res = opener.open(urllib.request.Request(r['url'], data=data, headers=headers, method=r['method']))
    status, text = res.status, res.read()
except urllib.error.HTTPError as e:
    status, text = e.code, e.read()
print(json.dumps({'status': status, 'body': text.decode('utf-8')}))
`

const PYTHON_REQUESTS = `
import json, os, sys, requests
r = json.loads(sys.argv[1]); b = r['body']; kw = {}
if b['kind'] == 'text': kw['data'] = b['text'].encode()
elif b['kind'] == 'file': kw['data'] = open(b['path'], 'rb').read()
elif b['kind'] == 'multipart': kw['files'] = {b['field']: (os.path.basename(b['path']), open(b['path'], 'rb'), b['type'])}
s = requests.Session(); s.trust_env = False
res = s.request(r['method'], r['url'], headers=r['headers'], **kw)
print(json.dumps({'status': res.status_code, 'body': res.content.decode('utf-8')}))
`

/** The first Python that can import `module`: the one on PATH, else Debian's (where `apt-get install python3-requests` puts it). */
function python(module: string): string | undefined {
  return ['python3', '/usr/bin/python3'].find((exe) => succeeds([exe, '-c', `import ${module}`]))
}

function curlArgs({ method, url, headers, body }: ClientRequest): string[] {
  const args = ['curl', '--silent', '--show-error', '--noproxy', '*', '--request', method, '--write-out', '\n%{http_code}']
  for (const [name, value] of Object.entries(headers)) args.push('--header', `${name}: ${value}`)
  if (body.kind === 'text') args.push('--data-binary', '@-')
  if (body.kind === 'file') args.push('--data-binary', `@${body.path}`)
  if (body.kind === 'multipart') args.push('--form', `${body.field}=@${body.path};type=${body.type}`)
  return [...args, url]
}

const curl: Client = {
  name: 'curl',
  missing: Bun.which('curl') ? undefined : 'curl is not on PATH',
  async send(request) {
    const out = await run(curlArgs(request), request.body.kind === 'text' ? request.body.text : undefined)
    const cut = out.lastIndexOf('\n')
    return { status: Number(out.slice(cut + 1)), body: out.slice(0, cut) }
  },
}

const bunFetch: Client = {
  name: 'bun fetch',
  async send({ method, url, headers, body }) {
    let payload: BodyInit | undefined
    if (body.kind === 'text') payload = body.text
    if (body.kind === 'file') payload = Bun.file(body.path)
    if (body.kind === 'multipart') {
      payload = new FormData()
      payload.append(body.field, new Blob([await Bun.file(body.path).bytes()], { type: body.type }), basename(body.path))
    }
    const response = await fetch(url, { method, headers, body: payload })
    return { status: response.status, body: await response.text() }
  },
}

const nodeHasFetch = succeeds(['node', '-e', "process.exit(typeof fetch === 'function' && typeof FormData === 'function' ? 0 : 1)"])
const urllibPython = python('urllib.request')
const requestsPython = python('requests')

/**
 * curl, Bun's fetch, Node's fetch (undici), Python's urllib and requests; `missing` says why one cannot run here.
 * @example for (const client of CLIENTS) if (!client.missing) await client.send({ method: 'GET', url, headers: {}, body: { kind: 'none' } })
 */
export const CLIENTS: Client[] = [
  curl,
  bunFetch,
  scripted('node fetch', nodeHasFetch ? ['node', '-e', NODE_FETCH] : undefined, 'node (18 or later, for fetch) is not on PATH'),
  scripted('python urllib', urllibPython ? [urllibPython, '-c', PYTHON_URLLIB] : undefined, 'python3 is not on PATH'),
  scripted(
    'python requests',
    requestsPython ? [requestsPython, '-c', PYTHON_REQUESTS] : undefined,
    'no python3 can import requests: apt-get install python3-requests (.ci/run does)',
  ),
]
