// Load measurement for a running Tobira OP. Started by ../load.sh, which builds and
// starts the server, registers the clients and the member, and passes everything here
// through the environment (see readConfig). Only 127.0.0.1 is ever contacted.
//
// Scenarios 1-3 use autocannon (pinned in package.json); every response's latency is
// recorded from its `response` event (float milliseconds), so p50/p99 come from the
// sorted samples, not from autocannon's whole-millisecond histogram. Scenario 4 (refresh
// with rotation) needs per-user state and is our own loop over an undici Pool.

import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import autocannon from 'autocannon'
import { Pool, request } from 'undici'

const REDIRECT_URI = 'http://127.0.0.1:9/cb'

function readConfig () {
  const env = process.env
  const need = (name) => {
    if (!env[name]) throw new Error(`${name} is not set (run scripts/load.sh)`)
    return env[name]
  }
  const int = (name, dflt, min, max) => {
    const v = env[name] === undefined || env[name] === '' ? dflt : Number(env[name])
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new Error(`${name} must be an integer in ${min}..${max}, got ${env[name]}`)
    }
    return v
  }
  const base = new URL(need('LOAD_BASE_URL'))
  if (base.hostname !== '127.0.0.1') throw new Error('LOAD_BASE_URL must be on 127.0.0.1')
  const cc = JSON.parse(readFileSync(need('LOAD_CC_CLIENT_JSON'), 'utf8'))
  const rp = JSON.parse(readFileSync(need('LOAD_RP_CLIENT_JSON'), 'utf8'))
  return {
    base: base.origin,
    duration: int('LOAD_DURATION', 10, 1, 600),
    concurrency: int('LOAD_CONCURRENCY', 32, 1, 1024),
    vus: int('LOAD_VUS', 32, 1, 1024),
    maxRequests: int('LOAD_MAX_REQUESTS', 2_000_000, 1, 100_000_000),
    signInParallel: int('LOAD_SIGNIN_PARALLEL', 4, 1, 64),
    email: need('LOAD_EMAIL'),
    password: need('LOAD_PASSWORD'),
    cc: { id: cc.client_id, secret: cc.client_secret },
    rp: { id: rp.client_id, secret: rp.client_secret },
    serverPid: env.LOAD_SERVER_PID ? Number(env.LOAD_SERVER_PID) : null,
    clockTicks: int('LOAD_CLK_TCK', 100, 1, 1_000_000),
    jsonOut: env.LOAD_JSON_OUT || null
  }
}

// --- helpers ---------------------------------------------------------------------

const b64url = (buf) => Buffer.from(buf).toString('base64url')

// application/x-www-form-urlencoded of one value (RFC 6749 §2.3.1 wants the client id
// and secret encoded this way before they are joined and base64-encoded).
const formEncode = (s) => new URLSearchParams({ v: s }).toString().slice(2)

const basicAuth = ({ id, secret }) =>
  'Basic ' + Buffer.from(`${formEncode(id)}:${formEncode(secret)}`).toString('base64')

const form = (fields) => new URLSearchParams(fields).toString()

function percentile (sorted, p) {
  if (sorted.length === 0) return NaN
  // Nearest-rank: the smallest sample with at least p% of samples at or below it.
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[rank - 1]
}

// CPU seconds (user + system) the server process has used so far, from /proc.
function serverCpuSeconds (cfg) {
  if (!cfg.serverPid) return null
  try {
    const stat = readFileSync(`/proc/${cfg.serverPid}/stat`, 'utf8')
    // Fields after the command name (which is in parentheses and may hold spaces).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const utime = Number(fields[11])
    const stime = Number(fields[12])
    return (utime + stime) / cfg.clockTicks
  } catch {
    return null
  }
}

function cpuMeter (cfg) {
  const server0 = serverCpuSeconds(cfg)
  const self0 = process.cpuUsage()
  return () => {
    const server1 = serverCpuSeconds(cfg)
    const self = process.cpuUsage(self0)
    return {
      serverCpu: server0 === null || server1 === null ? null : server1 - server0,
      loadgenCpu: (self.user + self.system) / 1e6
    }
  }
}

function summarise (name, { latencies, errors, elapsed, cpu, notes }) {
  latencies.sort((a, b) => a - b)
  const ok = latencies.length - errors.responses
  const total = latencies.length + errors.transport
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
    notes: notes || ''
  }
}

// --- the sign-in, as a browser would do it ----------------------------------------

class CookieJar {
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
async function browse (cfg, jar, method, pathOrUrl, { body, headers = {} } = {}) {
  const url = new URL(pathOrUrl, cfg.base)
  // Locations may name the issuer (http://localhost:PORT); always talk to 127.0.0.1.
  const target = cfg.base + url.pathname + url.search
  const h = { ...headers }
  const cookie = jar.header()
  if (cookie) h.cookie = cookie
  const res = await request(target, { method, headers: h, body })
  const text = await res.body.text()
  jar.store(res.headers)
  return { status: res.statusCode, headers: res.headers, text }
}

function expectRedirect (step, res) {
  if (res.status < 300 || res.status > 399 || !res.headers.location) {
    throw new Error(`${step}: expected a redirect, got ${res.status}: ${(res.text || '').slice(0, 300)}`)
  }
  return res.headers.location
}

function hiddenInput (html, name) {
  const m = html.match(new RegExp(`name="${name}"\\s+value="([^"]*)"`))
  if (!m) throw new Error(`sign-in page has no hidden input ${name}`)
  // Askama escapes attribute values; tokens are URL-safe, but undo the basics anyway.
  return m[1].replace(/&#x2f;|&#47;/gi, '/').replace(/&amp;/g, '&')
}

// Signs the member in with a fresh cookie jar, exchanges the code, returns the tokens.
async function signIn (cfg, vu) {
  const jar = new CookieJar()
  const verifier = b64url(randomBytes(32))
  const challenge = b64url(createHash('sha256').update(verifier).digest())
  const state = `s${vu}`
  const authorize = '/authorize?' + form({
    response_type: 'code',
    client_id: cfg.rp.id,
    redirect_uri: REDIRECT_URI,
    scope: 'openid email',
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256'
  })
  let res = await browse(cfg, jar, 'GET', authorize)
  const loginUrl = expectRedirect('GET /authorize', res)

  res = await browse(cfg, jar, 'GET', loginUrl)
  if (res.status !== 200) throw new Error(`GET /login: ${res.status}`)
  const csrf = hiddenInput(res.text, 'csrf')
  const tx = hiddenInput(res.text, 'tx')

  res = await browse(cfg, jar, 'POST', '/login', {
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: form({ csrf, tx, email: cfg.email, password: cfg.password })
  })
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
    throw new Error(`POST /token (authorization_code): ${token.statusCode} ${JSON.stringify(json)}`)
  }
  return { access: json.access_token, refresh: json.refresh_token }
}

async function signInAll (cfg) {
  const vus = new Array(cfg.vus)
  let next = 0
  const worker = async () => {
    while (next < cfg.vus) {
      const vu = next++
      vus[vu] = await signIn(cfg, vu)
    }
  }
  await Promise.all(Array.from({ length: Math.min(cfg.signInParallel, cfg.vus) }, worker))
  return vus
}

// --- scenarios 1-3: autocannon ----------------------------------------------------

async function cannon (cfg, name, opts) {
  const latencies = []
  const meter = cpuMeter(cfg)
  const t0 = performance.now()
  const instance = autocannon({
    url: cfg.base + opts.path,
    method: opts.method || 'GET',
    headers: opts.headers,
    body: opts.body,
    connections: cfg.concurrency,
    duration: cfg.duration,
    maxOverallRequests: cfg.maxRequests,
    timeout: 10
  })
  let bad = 0
  let firstAt = 0
  let lastAt = 0
  instance.on('response', (_client, status, _bytes, ms) => {
    lastAt = performance.now()
    if (!firstAt) firstAt = lastAt - ms
    latencies.push(ms)
    if (status < 200 || status > 299) bad++
  })
  const result = await instance
  const elapsed = (performance.now() - t0) / 1000
  const cpu = meter()
  if (process.env.LOAD_DEBUG) console.error(`[load] ${name}: wall ${elapsed.toFixed(2)} s, autocannon ${result.duration} s, first-to-last ${((lastAt - firstAt) / 1000).toFixed(2)} s`)
  const codes = Object.entries(result.statusCodeStats || {})
    .map(([code, { count }]) => `${code}×${count}`).join(' ')
  return summarise(name, {
    latencies,
    errors: { responses: bad, transport: result.errors + result.timeouts },
    elapsed,
    cpu,
    notes: codes
  })
}

// --- scenario 4: refresh with rotation, one chain per virtual user -------------------

async function refreshRotation (cfg, vus) {
  const pool = new Pool(cfg.base, { connections: cfg.concurrency, pipelining: 1 })
  const latencies = []
  const errors = { responses: 0, transport: 0 }
  const failures = new Map()
  const auth = basicAuth(cfg.rp)
  let issued = 0
  const meter = cpuMeter(cfg)
  const t0 = performance.now()
  const deadline = t0 + cfg.duration * 1000
  let alive = 0

  // Each VU is one sequential chain; with more VUs than connections they share the
  // pool. A VU stops on its first failure: its token may be spent or its grant revoked,
  // so going on would only count the same failure again.
  const runVu = async (vu) => {
    while (performance.now() < deadline && issued < cfg.maxRequests) {
      issued++
      const start = performance.now()
      let status, json
      try {
        const res = await pool.request({
          path: '/token',
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: auth },
          body: form({ grant_type: 'refresh_token', refresh_token: vus[vu].refresh })
        })
        status = res.statusCode
        json = await res.body.json().catch(() => null)
      } catch (e) {
        // A transport error has no response, so no latency sample.
        errors.transport++
        failures.set(e.code || e.message, (failures.get(e.code || e.message) || 0) + 1)
        return
      }
      latencies.push(performance.now() - start)
      if (status === 200 && json && json.refresh_token && json.access_token && json.id_token) {
        vus[vu].refresh = json.refresh_token
        vus[vu].access = json.access_token
      } else {
        errors.responses++
        const why = `${status} ${json && json.error}`
        failures.set(why, (failures.get(why) || 0) + 1)
        return
      }
    }
    alive++
  }
  await Promise.all(vus.map((_, vu) => runVu(vu)))
  const elapsed = (performance.now() - t0) / 1000
  const cpu = meter()
  await pool.close()
  const notes = [`${alive}/${vus.length} chains intact`,
    ...[...failures].map(([k, n]) => `${k}×${n}`)].join(', ')
  return summarise('refresh_token (rotating)', { latencies, errors, elapsed, cpu, notes })
}

// --- main ---------------------------------------------------------------------------

function fmt (n, digits) {
  return n === null || Number.isNaN(n) ? '-' : n.toFixed(digits)
}

function printTable (cfg, rows) {
  const head = ['scenario', 'requests', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'errors',
    'server CPU', 'µs CPU/req', 'loadgen CPU']
  const body = rows.map((r) => [
    r.scenario, String(r.requests), fmt(r.rps, 0), fmt(r.p50, 2), fmt(r.p99, 2), fmt(r.max, 1),
    String(r.errors), r.serverCpuPct === null ? '-' : fmt(r.serverCpuPct, 0) + ' %',
    fmt(r.serverCpuUsPerReq, 0), fmt(r.loadgenCpuPct, 0) + ' %'
  ])
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)))
  const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')
  console.log('')
  console.log(`Tobira load: ${cfg.duration} s per scenario, ${cfg.concurrency} connections, ` +
    `${cfg.vus} refresh chains, server ${cfg.base}`)
  console.log(line(head))
  console.log(widths.map((w) => '-'.repeat(w)).join('  '))
  for (const row of body) console.log(line(row))
  console.log('(CPU: 100 % = one core; the load generator shares the machine with the server)')
  for (const r of rows) if (r.notes) console.log(`  ${r.scenario}: ${r.notes}`)
}

async function main () {
  const cfg = readConfig()
  const log = (m) => console.error(`[load] ${m}`)

  log(`signing in ${cfg.vus} virtual users (one grant each)...`)
  const t0 = performance.now()
  const vus = await signInAll(cfg)
  log(`signed in ${vus.length} in ${((performance.now() - t0) / 1000).toFixed(1)} s`)

  const rows = []
  log('1/4 GET /jwks')
  rows.push(await cannon(cfg, 'GET /jwks', { path: '/jwks' }))

  // A fresh access token for /userinfo (rotates VU 0's chain like any refresh would),
  // so a long run does not outlive the token from the sign-in.
  const fresh = await request(cfg.base + '/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(cfg.rp) },
    body: form({ grant_type: 'refresh_token', refresh_token: vus[0].refresh })
  })
  const freshJson = await fresh.body.json()
  if (fresh.statusCode !== 200) throw new Error(`refresh before /userinfo: ${JSON.stringify(freshJson)}`)
  vus[0].refresh = freshJson.refresh_token
  vus[0].access = freshJson.access_token

  log('2/4 GET /userinfo')
  rows.push(await cannon(cfg, 'GET /userinfo', {
    path: '/userinfo',
    headers: { authorization: `Bearer ${vus[0].access}` }
  }))

  log('3/4 POST /token client_credentials')
  rows.push(await cannon(cfg, 'POST /token client_credentials', {
    path: '/token',
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(cfg.cc) },
    body: 'grant_type=client_credentials'
  }))

  log('4/4 POST /token refresh_token (rotation, one chain per VU)')
  rows.push(await refreshRotation(cfg, vus))

  printTable(cfg, rows)
  if (cfg.jsonOut) writeFileSync(cfg.jsonOut, JSON.stringify({ config: { duration: cfg.duration, concurrency: cfg.concurrency, vus: cfg.vus }, rows }, null, 2))
  const failed = rows.reduce((n, r) => n + r.errors, 0)
  process.exitCode = failed > 0 ? 1 : 0
}

main().catch((e) => {
  console.error(`[load] failed: ${e.stack || e}`)
  process.exitCode = 2
})
