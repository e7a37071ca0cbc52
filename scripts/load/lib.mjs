// What the load script's scenarios share (run.mjs, soak.mjs): forms and client
// authentication, percentiles, the CPU and memory of the server read from /proc, and a
// member's sign-in as a browser does it (authorize, the form, the code exchange).

import { createHash, randomBytes } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { request } from 'undici'

export const REDIRECT_URI = 'http://127.0.0.1:9/cb'
export const b64url = (buf) => Buffer.from(buf).toString('base64url')

// application/x-www-form-urlencoded of one value (RFC 6749 §2.3.1 wants the client id
// and secret encoded this way before they are joined and base64-encoded).
export const formEncode = (s) => new URLSearchParams({ v: s }).toString().slice(2)

export const basicAuth = ({ id, secret }) =>
  'Basic ' + Buffer.from(`${formEncode(id)}:${formEncode(secret)}`).toString('base64')

export const form = (fields) => new URLSearchParams(fields).toString()

export function percentile (sorted, p) {
  if (sorted.length === 0) return NaN
  // Nearest-rank: the smallest sample with at least p% of samples at or below it.
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[rank - 1]
}

// CPU seconds (user + system) a process has used so far, from /proc.
export function processCpuSeconds (cfg, pid) {
  if (!pid) return null
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which is in parentheses and may hold spaces).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const utime = Number(fields[11])
    const stime = Number(fields[12])
    return (utime + stime) / cfg.clockTicks
  } catch {
    return null
  }
}

export const serverCpuSeconds = (cfg) => processCpuSeconds(cfg, cfg.serverPid)

// CPU seconds of each PostgreSQL backend serving the load's own database (pid → seconds),
// found by its process title ("postgres: [cluster: ]user DATABASE host(port) state").
// The server's shared processes (WAL writer, checkpointer, …) serve every database on
// it and are left out. null when PostgreSQL is not on this machine's /proc.
export function pgBackendsCpu (cfg) {
  if (!cfg.pgDatabase) return null
  const out = new Map()
  let pids
  try {
    pids = readdirSync('/proc').filter((name) => /^[0-9]+$/.test(name))
  } catch {
    return null
  }
  for (const pid of pids) {
    let title
    try {
      title = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    } catch {
      continue // gone meanwhile
    }
    if (!title.startsWith('postgres:') || !title.split(/[\s\0]+/).includes(cfg.pgDatabase)) continue
    const cpu = processCpuSeconds(cfg, pid)
    if (cpu !== null) out.set(pid, cpu)
  }
  return out
}

// CPU used since the meter started: Tobira's, the load generator's (this process), and
// in PostgreSQL mode the load database's backends' and the Redis server's (the whole
// Redis process: it may serve others on this machine too). None is counted in another.
export function cpuMeter (cfg) {
  const server0 = serverCpuSeconds(cfg)
  const self0 = process.cpuUsage()
  const pg0 = pgBackendsCpu(cfg)
  const redis0 = processCpuSeconds(cfg, cfg.redisPid)
  return () => {
    const server1 = serverCpuSeconds(cfg)
    const self = process.cpuUsage(self0)
    const pg1 = pgBackendsCpu(cfg)
    const redis1 = processCpuSeconds(cfg, cfg.redisPid)
    let pgCpu = null
    if (pg0 !== null && pg1 !== null && pg1.size > 0) {
      // A backend that started during the measurement counts from zero.
      pgCpu = 0
      for (const [pid, cpu] of pg1) pgCpu += cpu - (pg0.get(pid) || 0)
    }
    return {
      serverCpu: server0 === null || server1 === null ? null : server1 - server0,
      loadgenCpu: (self.user + self.system) / 1e6,
      pgCpu,
      redisCpu: redis0 === null || redis1 === null ? null : redis1 - redis0
    }
  }
}

// The server's resident memory now and its peak (VmHWM), in MB, from /proc.
export function serverMemory (cfg) {
  if (!cfg.serverPid) return null
  try {
    const status = readFileSync(`/proc/${cfg.serverPid}/status`, 'utf8')
    const kb = (name) => Number((status.match(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm')) || [])[1])
    return {
      rssMb: kb('VmRSS') / 1024,
      peakMb: kb('VmHWM') / 1024,
      // The process's own memory, and the mapped files (the program's text above all,
      // shared with the page cache: the kernel may map a cached binary whole).
      anonMb: kb('RssAnon') / 1024,
      fileMb: kb('RssFile') / 1024
    }
  } catch {
    return null
  }
}

export function summarise (name, { latencies, errors, elapsed, cpu, notes }) {
  latencies.sort((a, b) => a - b)
  const ok = latencies.length - errors.responses
  const total = latencies.length + errors.transport
  const perRequest = (seconds) => (seconds === null || total === 0 ? null : (1e6 * seconds) / total)
  const share = (seconds) => (seconds === null ? null : (100 * seconds) / elapsed)
  return {
    scenario: name,
    requests: total,
    ok,
    errors: errors.responses + errors.transport,
    seconds: elapsed,
    rps: total / elapsed,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: latencies.length ? latencies[latencies.length - 1] : NaN,
    serverCpuPct: cpu.serverCpu === null ? null : (100 * cpu.serverCpu) / elapsed,
    serverCpuUsPerReq: cpu.serverCpu === null || total === 0 ? null : (1e6 * cpu.serverCpu) / total,
    loadgenCpuPct: (100 * cpu.loadgenCpu) / elapsed,
    pgCpuPct: share(cpu.pgCpu),
    pgCpuUsPerReq: perRequest(cpu.pgCpu),
    redisCpuPct: share(cpu.redisCpu),
    redisCpuUsPerReq: perRequest(cpu.redisCpu),
    notes: notes || ''
  }
}

// --- the sign-in, as a browser would do it ----------------------------------------

export class CookieJar {
  constructor () { this.cookies = new Map() }
  store (headers) {
    let set = headers['set-cookie']
    if (!set) return
    if (!Array.isArray(set)) set = [set]
    for (const line of set) {
      const pair = line.split(';', 1)[0]
      const eq = pair.indexOf('=')
      if (eq <= 0) continue
      const name = pair.slice(0, eq).trim()
      const value = pair.slice(eq + 1).trim()
      // Max-Age=0 (or an empty value) deletes the cookie.
      if (value === '' || /;\s*max-age=0\b/i.test(line)) this.cookies.delete(name)
      else this.cookies.set(name, value)
    }
  }
  header () {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
  }
}

// One request without following redirects; keeps cookies; returns status, headers, body.
// `jar.extra` (optional) holds headers every request of this browser carries
// (X-Forwarded-For: the simulated client address behind the trusted proxy).
export async function browse (cfg, jar, method, pathOrUrl, { body, headers = {} } = {}) {
  const url = new URL(pathOrUrl, cfg.base)
  // Locations may name the issuer (http://localhost:PORT); always talk to 127.0.0.1.
  const target = cfg.base + url.pathname + url.search
  const h = { ...jar.extra, ...headers }
  const cookie = jar.header()
  if (cookie) h.cookie = cookie
  const res = await request(target, { method, headers: h, body })
  const text = await res.body.text()
  jar.store(res.headers)
  return { status: res.statusCode, headers: res.headers, text }
}

// A step of the flow that did not answer as a successful sign-in does; `step` and
// `status` let the sign-in scenarios count why.
export class FlowError extends Error {
  constructor (step, status, message) {
    super(message)
    this.step = step
    this.status = status
  }
}

// What a 429 sign-in page says refused it (the page is in Japanese or English).
export function throttleScope (html) {
  if (/この端末からのログイン|from this device is paused/.test(html)) return 'device'
  if (/ネットワークからのログイン|from your network is paused/.test(html)) return 'address'
  if (/ロック解除のリンクを使うか|Use the unlock link sent to the account/.test(html)) return 'account, until unlocked'
  if (/このアカウントへのログイン|to this account is paused/.test(html)) return 'account'
  return 'unknown scope'
}

export function expectRedirect (step, res) {
  if (res.status < 300 || res.status > 399 || !res.headers.location) {
    if (res.status === 429) throw new FlowError(step, `429 (${throttleScope(res.text || '')})`, `${step}: 429`)
    throw new FlowError(step, res.status,
      `${step}: expected a redirect, got ${res.status}: ${(res.text || '').slice(0, 300)}`)
  }
  return res.headers.location
}

export function hiddenInput (html, name) {
  const m = html.match(new RegExp(`name="${name}"\\s+value="([^"]*)"`))
  if (!m) throw new Error(`sign-in page has no hidden input ${name}`)
  // Askama escapes attribute values; tokens are URL-safe, but undo the basics anyway.
  return m[1].replace(/&#x2f;|&#47;/gi, '/').replace(/&amp;/g, '&')
}

// An authorization request of the rp client with PKCE: its path and the verifier the
// code exchange needs.
export function authorizeRequest (cfg, state) {
  const verifier = b64url(randomBytes(32))
  const challenge = b64url(createHash('sha256').update(verifier).digest())
  const authorize = '/authorize?' + form({
    response_type: 'code',
    client_id: cfg.rp.id,
    redirect_uri: REDIRECT_URI,
    scope: 'openid email',
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256'
  })
  return { verifier, authorize }
}

// Opens the sign-in page of a new authorization request in this browser: GET
// /authorize, then GET /login. Returns what a form post needs.
export async function startFlow (cfg, jar, state) {
  const { verifier, authorize } = authorizeRequest(cfg, state)
  let res = await browse(cfg, jar, 'GET', authorize)
  const loginUrl = expectRedirect('GET /authorize', res)

  res = await browse(cfg, jar, 'GET', loginUrl)
  if (res.status !== 200) throw new FlowError('GET /login', res.status, `GET /login: ${res.status}`)
  return { verifier, csrf: hiddenInput(res.text, 'csrf'), tx: hiddenInput(res.text, 'tx') }
}

// Signs a member in (by default the load member with a fresh cookie jar), exchanges
// the code, returns the tokens. Throws a FlowError naming the step that failed.
export async function signIn (cfg, vu, { jar = new CookieJar(), email = cfg.email, password = cfg.password } = {}) {
  const state = `s${vu}`
  const { verifier, csrf, tx } = await startFlow(cfg, jar, state)

  const posted = performance.now()
  let res = await browse(cfg, jar, 'POST', '/login', {
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: form({ csrf, tx, email, password })
  })
  const loginMs = performance.now() - posted
  const cont = expectRedirect('POST /login', res)

  res = await browse(cfg, jar, 'GET', cont)
  const callback = new URL(expectRedirect('GET /authorize/continue', res))
  if (callback.origin + callback.pathname !== REDIRECT_URI) {
    throw new Error(`expected the redirect to ${REDIRECT_URI}, got ${callback.href}`)
  }
  if (callback.searchParams.get('state') !== state) throw new Error('state mismatch')
  const code = callback.searchParams.get('code')
  if (!code) throw new Error(`no code in ${callback.href}`)

  const token = await request(cfg.base + '/token', {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: basicAuth(cfg.rp)
    },
    body: form({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier })
  })
  const json = await token.body.json()
  if (token.statusCode !== 200 || !json.access_token || !json.refresh_token) {
    throw new FlowError('POST /token', token.statusCode,
      `POST /token (authorization_code): ${token.statusCode} ${JSON.stringify(json)}`)
  }
  return { access: json.access_token, refresh: json.refresh_token, idToken: json.id_token, loginMs }
}


// Simulated client addresses (see run.mjs).
export const ipv4 = (a, b, c, d) => ((a << 24) | (b << 16) | (c << 8) | d) >>> 0
export function addressIn (base, bits, n) {
  const size = 2 ** (32 - bits)
  const v = (base + 1 + (n % (size - 2))) >>> 0
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.')
}
export const LEGIT_NET = ipv4(198, 18, 0, 0)
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
export const bump = (map, key, n = 1) => map.set(key, (map.get(key) || 0) + n)
export const median = (xs) => percentile([...xs].sort((a, b) => a - b), 50)
