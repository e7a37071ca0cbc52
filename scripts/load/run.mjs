// Load measurement for a running Tobira OP. Started by ../load.sh, which builds and
// starts the server, measures the same-run limits (`tobira-bench limits`), registers the
// clients and the members, and passes everything here through the environment (see
// readConfig). Only 127.0.0.1 is ever contacted.
//
// The GET scenarios and client_credentials use autocannon (pinned in package.json); every
// response's latency is recorded from its `response` event (float milliseconds), so
// p50/p99 come from the sorted samples, not from autocannon's whole-millisecond
// histogram. Refresh with rotation needs per-user state and is our own loop over an
// undici Pool. The run ends with the goals table: each figure beside its limit.

import { execFile } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { performance } from 'node:perf_hooks'
import autocannon from 'autocannon'
import { Pool, request } from 'undici'
import {
  CookieJar, FlowError, LEGIT_NET, REDIRECT_URI, addressIn, authorizeRequest, basicAuth, browse,
  bump, cpuMeter, expectRedirect, form, ipv4, median, percentile, serverMemory, signIn, sleep,
  startFlow, summarise, throttleScope
} from './lib.mjs'
import { printSoak, soak, soakConfig } from './soak.mjs'

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
  const list = (name) => (env[name] || '').split(',').map((x) => x.trim()).filter(Boolean)
  const duration = int('LOAD_DURATION', 10, 1, 600)
  const members = list('LOAD_MEMBER_EMAILS')
  const timing = list('LOAD_TIMING_EMAILS')
  const scenarios = new Set(list('LOAD_SCENARIOS').length ? list('LOAD_SCENARIOS') : SCENARIOS)
  for (const s of scenarios) {
    if (!SCENARIOS.includes(s) && s !== 'soak') {
      throw new Error(`LOAD_SCENARIOS: unknown ${s} (${SCENARIOS.join(', ')}, or soak alone)`)
    }
  }
  // The soak (scripts/soak.sh) runs alone: its figures are about time, not one scenario.
  if (scenarios.has('soak') && scenarios.size > 1) throw new Error('LOAD_SCENARIOS: soak runs alone')
  if ((scenarios.has('attack') || scenarios.has('timing') || scenarios.has('storm')) &&
      (members.length === 0 || timing.length !== 2)) {
    throw new Error('LOAD_MEMBER_EMAILS and LOAD_TIMING_EMAILS (two) are needed for the sign-in scenarios')
  }
  const backend = env.LOAD_BACKEND || 'sqlite'
  if (!['sqlite', 'postgres'].includes(backend)) throw new Error(`LOAD_BACKEND: ${backend} (sqlite, postgres)`)
  if (scenarios.has('memory') && !(env.LOAD_BENCH_BIN && env.LOAD_SEED_EMAIL)) {
    throw new Error('LOAD_BENCH_BIN and LOAD_SEED_EMAIL are needed for the memory scenario')
  }
  return {
    base: base.origin,
    scenarios,
    duration,
    concurrency: int('LOAD_CONCURRENCY', 32, 1, 1024),
    vus: int('LOAD_VUS', 32, 1, 1024),
    maxRequests: int('LOAD_MAX_REQUESTS', 2_000_000, 1, 100_000_000),
    signInParallel: int('LOAD_SIGNIN_PARALLEL', 4, 1, 64),
    // Sign-in under attack (see signInUnderAttack).
    members,
    timingKnown: timing[0],
    timingLocked: timing[1],
    signInDuration: int('LOAD_SIGNIN_DURATION', duration, 1, 600),
    signInVus: int('LOAD_SIGNIN_VUS', members.length, 1, 1024),
    newDeviceVus: int('LOAD_SIGNIN_NEW_DEVICE_VUS', 2, 0, 1024),
    retryMs: int('LOAD_SIGNIN_RETRY_MS', 200, 0, 60_000),
    attackStuffing: int('LOAD_ATTACK_STUFFING', 16, 0, 1024),
    attackGuessing: int('LOAD_ATTACK_GUESSING', 4, 0, 1024),
    attackSingle: int('LOAD_ATTACK_SINGLE', 4, 0, 1024),
    attackAddressReuse: int('LOAD_ATTACK_ADDRESS_REUSE', 50, 1, 1_000_000),
    hashConcurrency: int('LOAD_HASH_CONCURRENCY', 4, 1, 1024),
    timingSamples: int('LOAD_TIMING_SAMPLES', 200, 1, 100_000),
    email: need('LOAD_EMAIL'),
    password: need('LOAD_PASSWORD'),
    cc: { id: cc.client_id, secret: cc.client_secret },
    rp: {
      id: rp.client_id,
      secret: rp.client_secret,
      idTokenAlg: rp.id_token_signed_response_alg || rp.id_token_alg || 'RS256'
    },
    serverPid: env.LOAD_SERVER_PID ? Number(env.LOAD_SERVER_PID) : null,
    clockTicks: int('LOAD_CLK_TCK', 100, 1, 1_000_000),
    jsonOut: env.LOAD_JSON_OUT || null,
    // The same-run limits (tobira-bench limits --json), the goals' denominators.
    limits: env.LOAD_LIMITS_JSON ? JSON.parse(readFileSync(env.LOAD_LIMITS_JSON, 'utf8')) : null,
    limitsSeconds: env.LOAD_LIMITS_SECONDS || '1',
    // PostgreSQL + Redis mode: whose CPU is reported beside Tobira's.
    backend,
    pgDatabase: env.LOAD_PG_DATABASE || null,
    redisPid: env.LOAD_REDIS_PID ? Number(env.LOAD_REDIS_PID) : null,
    // The sign-in storm (see signInStorm).
    stormTokenConnections: int('LOAD_STORM_TOKEN_CONNECTIONS', 4, 1, 1024),
    stormVus: int('LOAD_STORM_SIGNIN_VUS', 2 * Math.max(members.length, 1), 1, 1024),
    // The memory scenario (see memoryWithSessions).
    benchBin: env.LOAD_BENCH_BIN || null,
    seedEmail: env.LOAD_SEED_EMAIL || null,
    seedSessions: int('LOAD_SEED_SESSIONS', 100_000, 1, 10_000_000),
    seedTouch: int('LOAD_SEED_TOUCH', 16, 1, 10_000),
    soak: soakConfig(env, int)
  }
}

// In the order they run: memory first, on the idle server, so that its figures are the
// sessions' and not what the load left behind (and every later scenario then runs beside
// the seeded rows, as a provider with that many signed-in browsers would); the storm
// before the attack (see main).
const SCENARIOS = ['memory', 'tokens', 'storm', 'attack', 'timing']

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

// --- GET scenarios and client_credentials: autocannon --------------------------------

async function cannon (cfg, name, opts) {
  const latencies = []
  const meter = cpuMeter(cfg)
  const t0 = performance.now()
  const instance = autocannon({
    url: cfg.base + opts.path,
    method: opts.method || 'GET',
    headers: opts.headers,
    body: opts.body,
    connections: opts.connections || cfg.concurrency,
    duration: opts.duration || cfg.duration,
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

// --- refresh with rotation, one chain per virtual user --------------------------------

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

// --- password sign-in under attack, and what a sign-in answer's timing tells ----------
//
// Simulated client addresses: Tobira runs with server.trusted_proxies = 127.0.0.1/32
// (load.sh sets it), so every request names its client in X-Forwarded-For. Each
// population has its own range, so none of them shares an address-limit count with
// another:
//   legitimate members  198.18.0.0/16 (one address per virtual user; the sign-in storm's
//                       from 198.18.64.1, new browsers from 198.18.128.1)
//   credential stuffing 100.64.0.0/10 (a new address every LOAD_ATTACK_ADDRESS_REUSE posts)
//   guessing            10.0.0.0/8    (a new address for every post)
//   one single address  203.0.113.66
//   argon2 ceiling      172.16.0.0/13, timing 172.24.0.0/13 (a new address for every post)

const SINGLE_ATTACKER = '203.0.113.66'
const WRONG_PASSWORD = 'not-the-password-1'

const STUFFING_NET = ipv4(100, 64, 0, 0)
const GUESSING_NET = ipv4(10, 0, 0, 0)
const CEILING_NET = ipv4(172, 16, 0, 0)
const TIMING_NET = ipv4(172, 24, 0, 0)


// A browser that opened the sign-in page once and then posts the form again and again
// with the same request (tx), CSRF token and binding cookie, as an attack script does.
// The device cookie each answer sets is dropped: every post comes from a new device.
async function formBrowser (cfg, xff, state) {
  const jar = new CookieJar()
  jar.extra = { 'x-forwarded-for': xff }
  const { csrf, tx } = await startFlow(cfg, jar, state)
  return { cookie: jar.header(), csrf, tx }
}

// One POST /login; the answer's status and the time to its last byte.
async function postLogin (dispatcher, browser, email, password, xff) {
  const start = performance.now()
  const res = await dispatcher.request({
    path: '/login',
    method: 'POST',
    headers: {
      cookie: browser.cookie,
      'content-type': 'application/x-www-form-urlencoded',
      'x-forwarded-for': xff
    },
    body: form({ csrf: browser.csrf, tx: browser.tx, email, password })
  })
  const text = await res.body.text()
  const ms = performance.now() - start
  return { status: res.statusCode, ms, scope: res.statusCode === 429 ? throttleScope(text) : null }
}

// The legitimate members: LOAD_SIGNIN_VUS virtual users, each one member (round robin
// over LOAD_MEMBER_EMAILS) on its own browser and address. A browser keeps its cookies
// from one sign-in to the next (device, CSRF), except the session, so every round is a
// complete sign-in (authorize, form, password, code, token) and the device is known to
// the account after its first success. LOAD_SIGNIN_NEW_DEVICE_VUS more users sign in
// on a new browser every time (a member on a device never used before). `firstAddress`
// keeps another population's addresses apart (the sign-in storm's start at 16384).
function makeLegitUsers (cfg, { known = cfg.signInVus, fresh = cfg.newDeviceVus, firstAddress = 0 } = {}) {
  const users = []
  for (let i = 0; i < known; i++) {
    const jar = new CookieJar()
    jar.extra = { 'x-forwarded-for': addressIn(LEGIT_NET, 16, firstAddress + i) }
    users.push({ kind: 'known', email: cfg.members[i % cfg.members.length], jar })
  }
  for (let i = 0; i < fresh; i++) {
    users.push({
      kind: 'new',
      email: cfg.members[i % cfg.members.length],
      xff: addressIn(LEGIT_NET, 16, firstAddress + 32768 + i)
    })
  }
  return users
}

async function legitPhase (cfg, users, name) {
  const stats = {
    known: { attempts: 0, ok: 0, flowMs: [], loginMs: [], failures: new Map() },
    new: { attempts: 0, ok: 0, flowMs: [], loginMs: [], failures: new Map() }
  }
  const meter = cpuMeter(cfg)
  const t0 = performance.now()
  const deadline = t0 + cfg.signInDuration * 1000
  let round = 0
  const run = async (user, i) => {
    const st = stats[user.kind]
    while (performance.now() < deadline) {
      let jar = user.jar
      if (user.kind === 'new') {
        jar = new CookieJar()
        jar.extra = { 'x-forwarded-for': user.xff }
      } else {
        jar.cookies.delete('tobira_session')
      }
      st.attempts++
      const start = performance.now()
      try {
        const { loginMs } = await signIn(cfg, `${i}-${round++}`, { jar, email: user.email, password: cfg.password })
        st.ok++
        st.flowMs.push(performance.now() - start)
        st.loginMs.push(loginMs)
      } catch (e) {
        bump(st.failures, e instanceof FlowError ? `${e.step} ${e.status}` : (e.code || e.message))
        // A person would not click again at once.
        if (cfg.retryMs) await sleep(cfg.retryMs)
      }
    }
  }
  await Promise.all(users.map(run))
  const elapsed = (performance.now() - t0) / 1000
  const cpu = meter()
  const out = { phase: name, seconds: elapsed, serverCpu: cpu.serverCpu, loadgenCpu: cpu.loadgenCpu }
  for (const kind of ['known', 'new']) {
    const st = stats[kind]
    st.flowMs.sort((a, b) => a - b)
    st.loginMs.sort((a, b) => a - b)
    out[kind] = {
      users: users.filter((u) => u.kind === kind).length,
      attempts: st.attempts,
      ok: st.ok,
      perSecond: st.ok / elapsed,
      share: st.attempts ? st.ok / st.attempts : NaN,
      flowP50: percentile(st.flowMs, 50),
      flowP99: percentile(st.flowMs, 99),
      loginP50: percentile(st.loginMs, 50),
      failures: Object.fromEntries(st.failures)
    }
  }
  return out
}

// The attack, until `stop.done`: three populations posting wrong passwords.
//   stuffing: a new unknown address (e-mail) every post, LOAD_ATTACK_ADDRESS_REUSE posts
//     per client address (over the 30-account address limit when above 30);
//   guessing: wrong passwords for the members' accounts, a new client address every post;
//   single:   one client address going through a list (every fifth entry a member).
async function runAttack (cfg, stop) {
  const kinds = [
    ['stuffing', cfg.attackStuffing],
    ['guessing', cfg.attackGuessing],
    ['single', cfg.attackSingle]
  ].filter(([, n]) => n > 0)
  const connections = kinds.reduce((n, [, k]) => n + k, 0)
  const result = {}
  if (connections === 0) return { kinds: result, seconds: 0 }
  const pool = new Pool(cfg.base, { connections, pipelining: 1 })
  // Each population opened the sign-in page once (from an address of its own).
  const browsers = {
    stuffing: await formBrowser(cfg, addressIn(STUFFING_NET, 10, 4_000_000), 'stuffing'),
    guessing: await formBrowser(cfg, addressIn(GUESSING_NET, 8, 16_000_000), 'guessing'),
    single: await formBrowser(cfg, SINGLE_ATTACKER, 'single')
  }
  const counters = { stuffing: 0, guessing: 0, single: 0 }
  const next = {
    stuffing: () => {
      const n = counters.stuffing++
      return { email: `stuffed-${n}@example.net`, xff: addressIn(STUFFING_NET, 10, Math.floor(n / cfg.attackAddressReuse)) }
    },
    guessing: () => {
      const n = counters.guessing++
      return { email: cfg.members[n % cfg.members.length], xff: addressIn(GUESSING_NET, 8, n) }
    },
    single: () => {
      const n = counters.single++
      const email = n % 5 === 4 ? cfg.members[Math.floor(n / 5) % cfg.members.length] : `single-${n}@example.net`
      return { email, xff: SINGLE_ATTACKER }
    }
  }
  const t0 = performance.now()
  const worker = async (kind) => {
    const r = result[kind]
    while (!stop.done) {
      const { email, xff } = next[kind]()
      try {
        const { status, ms, scope } = await postLogin(pool, browsers[kind], email, WRONG_PASSWORD, xff)
        r.requests++
        bump(r.statuses, status)
        if (scope) bump(r.scopes, scope)
        r.ms.push(ms)
      } catch (e) {
        r.requests++
        bump(r.statuses, e.code || e.message)
      }
    }
  }
  const workers = []
  for (const [kind, n] of kinds) {
    result[kind] = { connections: n, requests: 0, statuses: new Map(), scopes: new Map(), ms: [] }
    for (let i = 0; i < n; i++) workers.push(worker(kind))
  }
  await Promise.all(workers)
  const seconds = (performance.now() - t0) / 1000
  await pool.close()
  for (const r of Object.values(result)) {
    r.ms.sort((a, b) => a - b)
    r.p50 = percentile(r.ms, 50)
    r.p99 = percentile(r.ms, 99)
    delete r.ms
    r.perSecond = r.requests / seconds
    r.statuses = Object.fromEntries(r.statuses)
    r.scopes = Object.fromEntries(r.scopes)
  }
  return { kinds: result, seconds, addressesUsed: { stuffing: Math.ceil(counters.stuffing / cfg.attackAddressReuse), guessing: counters.guessing, single: 1 } }
}

// The most password checks per second the server does: wrong passwords for unknown
// addresses, each from a new client address, so that nothing is throttled and every
// post costs one argon2 verification. LOAD_HASH_CONCURRENCY posts in flight.
async function argon2Ceiling (cfg) {
  const pool = new Pool(cfg.base, { connections: cfg.hashConcurrency, pipelining: 1 })
  const browser = await formBrowser(cfg, addressIn(CEILING_NET, 13, 500_000), 'ceiling')
  const statuses = new Map()
  const ms = []
  let n = 0
  const meter = cpuMeter(cfg)
  const t0 = performance.now()
  const deadline = t0 + Math.min(cfg.signInDuration, 10) * 1000
  const worker = async () => {
    while (performance.now() < deadline) {
      const i = n++
      const r = await postLogin(pool, browser, `ceiling-${i}@example.net`, WRONG_PASSWORD, addressIn(CEILING_NET, 13, i))
      bump(statuses, r.status)
      ms.push(r.ms)
    }
  }
  await Promise.all(Array.from({ length: cfg.hashConcurrency }, worker))
  const seconds = (performance.now() - t0) / 1000
  const cpu = meter()
  await pool.close()
  ms.sort((a, b) => a - b)
  const hashed = statuses.get(401) || 0
  return {
    connections: cfg.hashConcurrency,
    seconds,
    requests: n,
    hashedPerSecond: hashed / seconds,
    p50: percentile(ms, 50),
    statuses: Object.fromEntries(statuses),
    serverCpuPct: cpu.serverCpu === null ? null : (100 * cpu.serverCpu) / seconds
  }
}

async function signInUnderAttack (cfg, log) {
  log(`attack: argon2 ceiling: wrong passwords, nothing throttled, ${cfg.hashConcurrency} in flight`)
  const ceiling = await argon2Ceiling(cfg)

  const users = makeLegitUsers(cfg)
  log(`attack: sign-in alone: ${cfg.signInVus} members on their own browsers, ${cfg.newDeviceVus} on new browsers`)
  const alone = await legitPhase(cfg, users, 'alone')

  log(`attack: sign-in under attack: stuffing ${cfg.attackStuffing}, guessing ${cfg.attackGuessing}, ` +
    `single address ${cfg.attackSingle} connections`)
  const stop = { done: false }
  const attackMeter = cpuMeter(cfg)
  const attack = runAttack(cfg, stop)
  await sleep(1000) // the attack is under way before the members come
  let attacked
  try {
    attacked = await legitPhase(cfg, users, 'under attack')
  } finally {
    stop.done = true
  }
  const attackResult = await attack
  const attackCpu = attackMeter()
  attackResult.serverCpuPct = attackCpu.serverCpu === null ? null : (100 * attackCpu.serverCpu) / attackResult.seconds
  attackResult.loadgenCpuPct = (100 * attackCpu.loadgenCpu) / attackResult.seconds
  return { ceiling, alone, attacked, attack: attackResult }
}

// Response times of one sign-in post, sequential on one connection, each from a new
// client address (so the address limit never joins in), in four cases interleaved in
// a random order every round:
//   locked known:    the member account LOAD_TIMING_EMAILS[1], locked by 5 wrong passwords
//   locked unknown:  an address nobody registered, locked the same way
//   known, unlocked: LOAD_TIMING_EMAILS[0]; a right password from a new browser clears its
//                    count after every 4 failures, so it is never locked
//   unknown:         a new unregistered address every post (never locked)
// A wrong password every time.
async function signInTiming (cfg, log) {
  log(`timing: sign-in response times: ${cfg.timingSamples} posts per case, sequential`)
  const pool = new Pool(cfg.base, { connections: 1, pipelining: 1 })
  let addr = 0
  const fresh = () => addressIn(TIMING_NET, 13, addr++)
  const browser = await formBrowser(cfg, fresh(), 'timing')
  const lockedUnknown = 'timing-locked-nobody@example.net'
  let known = 0
  let unknown = 0
  let resets = 0
  let relocks = 0

  // Wrong passwords until the account answers 429 (at most 12 tries).
  const lock = async (email) => {
    for (let i = 0; i < 12; i++) {
      const r = await postLogin(pool, browser, email, WRONG_PASSWORD, fresh())
      if (r.status === 429) return
      if (r.status !== 401) throw new Error(`locking ${email}: ${r.status}`)
    }
    throw new Error(`${email} did not lock after 12 wrong passwords`)
  }
  await lock(cfg.timingLocked)
  await lock(lockedUnknown)

  const cases = {
    'locked account (known)': { expect: 429, ms: [], other: new Map() },
    'locked account (unknown e-mail)': { expect: 429, ms: [], other: new Map() },
    'known account, wrong password': { expect: 401, ms: [], other: new Map() },
    'unknown e-mail, wrong password': { expect: 401, ms: [], other: new Map() }
  }
  const one = {
    'locked account (known)': () => postLogin(pool, browser, cfg.timingLocked, WRONG_PASSWORD, fresh()),
    'locked account (unknown e-mail)': () => postLogin(pool, browser, lockedUnknown, WRONG_PASSWORD, fresh()),
    'known account, wrong password': async () => {
      if (known === 4) {
        const jar = new CookieJar()
        jar.extra = { 'x-forwarded-for': fresh() }
        await signIn(cfg, `reset${resets++}`, { jar, email: cfg.timingKnown, password: cfg.password })
        known = 0
      }
      known++
      return postLogin(pool, browser, cfg.timingKnown, WRONG_PASSWORD, fresh())
    },
    'unknown e-mail, wrong password': () =>
      postLogin(pool, browser, `timing-unknown-${unknown++}@example.net`, WRONG_PASSWORD, fresh())
  }
  const names = Object.keys(cases)
  let unexpected = 0
  for (let round = 0; round < cfg.timingSamples; round++) {
    const order = [...names].sort(() => Math.random() - 0.5)
    for (const name of order) {
      const c = cases[name]
      const r = await one[name]()
      if (r.status === c.expect) {
        c.ms.push(r.ms)
      } else {
        bump(c.other, r.status)
        if (c.expect === 429) {
          // The lock ran out: lock it again (the sample is not counted).
          relocks++
          await lock(name.includes('unknown') ? lockedUnknown : cfg.timingLocked)
        } else {
          unexpected++
        }
      }
    }
  }
  await pool.close()
  const rows = names.map((name) => {
    const c = cases[name]
    const sorted = [...c.ms].sort((a, b) => a - b)
    return {
      case: name,
      status: c.expect,
      n: sorted.length,
      p50: percentile(sorted, 50),
      p90: percentile(sorted, 90),
      mean: sorted.reduce((a, b) => a + b, 0) / (sorted.length || 1),
      other: Object.fromEntries(c.other)
    }
  })
  return { rows, resets, relocks, unexpected }
}

function printAttack (cfg, r) {
  const pct = (x) => (Number.isNaN(x) ? '-' : (100 * x).toFixed(1) + ' %')
  const cpuPct = (cpu, s) => (cpu === null ? '-' : fmt((100 * cpu) / s, 0) + ' %')
  const statuses = (o) => Object.entries(o).map(([k, n]) => `${k}×${n}`).join(' ') || '-'
  console.log('')
  console.log(`Password sign-in under attack: ${cfg.signInDuration} s per phase; ${cfg.signInVus} members ` +
    `on browsers they keep, ${cfg.newDeviceVus} on a new browser every time; a sign-in is ` +
    'GET /authorize, GET /login, POST /login, GET /authorize/continue, POST /token; ' +
    `${cfg.retryMs} ms pause after a failed one`)
  const c = r.ceiling
  console.log(`argon2 ceiling: ${fmt(c.hashedPerSecond, 1)} password checks/s (wrong passwords, nothing throttled, ` +
    `${c.connections} in flight, ${c.requests} posts in ${fmt(c.seconds, 1)} s, p50 ${fmt(c.p50, 1)} ms, ` +
    `server CPU ${c.serverCpuPct === null ? '-' : fmt(c.serverCpuPct, 0) + ' %'}; ${statuses(c.statuses)})`)
  const head = ['phase', 'browsers', 'attempts', 'signed in', 'sign-ins/s', 'succeeded', 'p50 flow ms',
    'p99 flow ms', 'p50 POST ms', 'server CPU', 'loadgen CPU']
  const rows = []
  for (const p of [r.alone, r.attacked]) {
    for (const kind of ['known', 'new']) {
      const k = p[kind]
      if (k.users === 0) continue
      rows.push([`${p.phase}, ${kind === 'known' ? 'own browser' : 'new browser'}`, String(k.users),
        String(k.attempts), String(k.ok), fmt(k.perSecond, 1), pct(k.share), fmt(k.flowP50, 1),
        fmt(k.flowP99, 1), fmt(k.loginP50, 1),
        kind === 'known' ? cpuPct(p.serverCpu, p.seconds) : '', kind === 'known' ? cpuPct(p.loadgenCpu, p.seconds) : ''])
    }
  }
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)))
  const line = (cells) => cells.map((x, i) => (i === 0 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join('  ')
  console.log(line(head))
  console.log(widths.map((w) => '-'.repeat(w)).join('  '))
  for (const row of rows) console.log(line(row))
  for (const p of [r.alone, r.attacked]) {
    for (const kind of ['known', 'new']) {
      const f = p[kind].failures
      if (Object.keys(f).length) console.log(`  ${p.phase}, ${kind === 'known' ? 'own' : 'new'} browser, failed: ${statuses(f)}`)
    }
  }
  const a = r.attack
  console.log(`attack: ${fmt(a.seconds, 1)} s, server CPU ${a.serverCpuPct === null ? '-' : fmt(a.serverCpuPct, 0) + ' %'}, ` +
    `loadgen CPU ${fmt(a.loadgenCpuPct, 0)} %; stuffing addresses: ${a.addressesUsed.stuffing} ` +
    `(${cfg.attackAddressReuse} posts each), guessing addresses: ${a.addressesUsed.guessing}`)
  const ahead = ['attacker', 'conns', 'requests', 'req/s', '401', '429', '503', 'other', 'p50 ms', 'p99 ms']
  const arows = Object.entries(a.kinds).map(([kind, k]) => {
    const other = Object.entries(k.statuses).filter(([s]) => !['401', '429', '503'].includes(s))
    return [kind, String(k.connections), String(k.requests), fmt(k.perSecond, 0),
      String(k.statuses[401] || 0), String(k.statuses[429] || 0), String(k.statuses[503] || 0),
      other.map(([s, n]) => `${s}×${n}`).join(' ') || '0', fmt(k.p50, 1), fmt(k.p99, 1)]
  })
  const total = Object.values(a.kinds).reduce((t, k) => ({
    requests: t.requests + k.requests,
    s401: t.s401 + (k.statuses[401] || 0),
    s429: t.s429 + (k.statuses[429] || 0),
    s503: t.s503 + (k.statuses[503] || 0)
  }), { requests: 0, s401: 0, s429: 0, s503: 0 })
  arows.push(['all', String(Object.values(a.kinds).reduce((n, k) => n + k.connections, 0)), String(total.requests),
    fmt(total.requests / a.seconds, 0), String(total.s401), String(total.s429), String(total.s503), '', '', ''])
  const aw = ahead.map((h, i) => Math.max(h.length, ...arows.map((row) => row[i].length)))
  const aline = (cells) => cells.map((x, i) => (i === 0 ? x.padEnd(aw[i]) : x.padStart(aw[i]))).join('  ')
  console.log(aline(ahead))
  console.log(aw.map((w) => '-'.repeat(w)).join('  '))
  for (const row of arows) console.log(aline(row))
  for (const [kind, k] of Object.entries(a.kinds)) {
    if (Object.keys(k.scopes).length) console.log(`  ${kind}: 429 for ${statuses(k.scopes)}`)
  }
  console.log(`(401: the password was checked, one argon2 verification each; 429: throttled, not checked; ` +
    '503: the hasher queue was full)')
}

function printTiming (cfg, t) {
  console.log('')
  console.log(`Sign-in response times (POST /login, wrong password, ${cfg.timingSamples} rounds, sequential, ` +
    `a new client address each; ${t.resets} right-password sign-ins kept the known account unlocked, ` +
    `${t.relocks} re-locks)`)
  const head = ['case', 'status', 'n', 'p50 ms', 'p90 ms', 'mean ms', 'other answers']
  const rows = t.rows.map((r) => [r.case, String(r.status), String(r.n), fmt(r.p50, 2), fmt(r.p90, 2),
    fmt(r.mean, 2), Object.entries(r.other).map(([s, n]) => `${s}×${n}`).join(' ') || '-'])
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)))
  const line = (cells) => cells.map((x, i) => (i === 0 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join('  ')
  console.log(line(head))
  console.log(widths.map((w) => '-'.repeat(w)).join('  '))
  for (const row of rows) console.log(line(row))
  const by = Object.fromEntries(t.rows.map((r) => [r.case, r]))
  const d1 = by['known account, wrong password'].p50 - by['unknown e-mail, wrong password'].p50
  const d2 = by['locked account (known)'].p50 - by['locked account (unknown e-mail)'].p50
  console.log(`median known − unknown: ${fmt(d1, 2)} ms unlocked, ${fmt(d2, 2)} ms locked`)
}

// --- the sign-in storm: the token endpoint while sign-ins saturate hashing -----------
//
// client_credentials at LOAD_STORM_TOKEN_CONNECTIONS connections (a steady client, not a
// flood: a flood's p99 is its own queue), first alone (its idle p99), then while
// LOAD_STORM_SIGNIN_VUS members sign in again and again on their own browsers (more
// sign-ins in flight than hashing threads, so hashing never idles). Each phase lasts
// LOAD_SIGNIN_DURATION seconds.
async function signInStorm (cfg, log) {
  const token = {
    path: '/token',
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(cfg.cc) },
    body: 'grant_type=client_credentials',
    connections: cfg.stormTokenConnections,
    duration: cfg.signInDuration
  }
  log(`storm: client_credentials alone, ${cfg.stormTokenConnections} connections`)
  const idle = await cannon(cfg, 'client_credentials, idle', token)
  const users = makeLegitUsers(cfg, { known: cfg.stormVus, fresh: 0, firstAddress: 16384 })
  log(`storm: client_credentials while ${cfg.stormVus} members sign in on their own browsers`)
  const [storm, signIns] = await Promise.all([
    cannon(cfg, 'client_credentials, sign-in storm', token),
    legitPhase(cfg, users, 'storm')
  ])
  return { idle, storm, signIns }
}

function printStorm (cfg, r) {
  console.log('')
  console.log(`Sign-in storm: POST /token client_credentials at ${cfg.stormTokenConnections} connections, ` +
    `${cfg.signInDuration} s alone, then ${cfg.signInDuration} s while ${cfg.stormVus} members sign in ` +
    '(GET /authorize, GET /login, POST /login, GET /authorize/continue, POST /token, over and over)')
  const head = ['token traffic', 'requests', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'errors', 'server CPU']
  const rows = [r.idle, r.storm].map((x) => [x.scenario, String(x.requests), fmt(x.rps, 0), fmt(x.p50, 2),
    fmt(x.p99, 2), fmt(x.max, 1), String(x.errors), x.serverCpuPct === null ? '-' : fmt(x.serverCpuPct, 0) + ' %'])
  printColumns(head, rows)
  const k = r.signIns.known
  const limit = argon2Limit(cfg)
  console.log(`sign-ins during the storm: ${k.ok} of ${k.attempts} (${fmt(k.perSecond, 1)}/s; argon2 limit ` +
    `${fmt(limit, 1)}/s), p50 flow ${fmt(k.flowP50, 1)} ms, p50 POST /login ${fmt(k.loginP50, 1)} ms` +
    (Object.keys(k.failures).length ? `; failed: ${Object.entries(k.failures).map(([s, n]) => `${s}×${n}`).join(' ')}` : ''))
  for (const x of [r.idle, r.storm]) if (x.notes) console.log(`  ${x.scenario}: ${x.notes}`)
}

// --- memory: the idle server, then beside LOAD_SEED_SESSIONS live sessions --------------
//
// `tobira-bench seed` writes the sessions, grants and refresh tokens straight into the
// server's database (as sign-ins would have); then every seeded secret it hands back is
// used once as a client and a browser would: a refresh, and an authorization request from
// the signed-in browser. The server's RSS is read after each step.
async function memoryWithSessions (cfg, log, idle) {
  log(`memory: seeding ${cfg.seedSessions} sessions, grants and refresh tokens for ${cfg.seedEmail}`)
  const t0 = performance.now()
  const seeded = await bench(cfg, ['seed', '--sessions', String(cfg.seedSessions), '--email', cfg.seedEmail,
    `--client-id=${cfg.rp.id}`, '--json', '--sample', String(cfg.seedTouch)])
  const seedSeconds = (performance.now() - t0) / 1000
  const afterSeed = serverMemory(cfg)
  log(`memory: seeded in ${seedSeconds.toFixed(1)} s; ${seeded.sample.length} refreshes and authorization requests with them`)
  const touched = await touchSeeded(cfg, seeded.sample)
  return {
    sessions: seeded.sessions,
    grants: seeded.grants,
    refreshTokens: seeded.refresh_tokens,
    seedSeconds,
    idle,
    afterSeed,
    afterTouch: serverMemory(cfg),
    touched
  }
}

// Runs `tobira-bench` with this process's environment (the server's TOBIRA_* settings,
// so the same database); its JSON answer.
function bench (cfg, args) {
  return new Promise((resolve, reject) => {
    execFile(cfg.benchBin, args, { env: process.env, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`tobira-bench ${args[0]} failed: ${stderr.trim() || err.message}`))
      else resolve(JSON.parse(stdout))
    })
  })
}

// The seeded rows, found as a client and a browser find them: a refresh with a seeded
// refresh token (its grant and its session must be live), and an authorization request
// from the seeded session's browser (signed in already: back to the client with a code).
async function touchSeeded (cfg, sample) {
  const kinds = {
    refresh: { ok: 0, ms: [], failures: new Map() },
    authorize: { ok: 0, ms: [], failures: new Map() }
  }
  for (const [i, seeded] of sample.entries()) {
    let start = performance.now()
    try {
      const res = await request(cfg.base + '/token', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(cfg.rp) },
        body: form({ grant_type: 'refresh_token', refresh_token: seeded.refresh_token })
      })
      const json = await res.body.json().catch(() => null)
      if (res.statusCode === 200 && json && json.access_token && json.refresh_token) {
        kinds.refresh.ok++
        kinds.refresh.ms.push(performance.now() - start)
      } else {
        bump(kinds.refresh.failures, `${res.statusCode} ${json && json.error}`)
      }
    } catch (e) {
      bump(kinds.refresh.failures, e.code || e.message)
    }
    start = performance.now()
    try {
      await signedInCode(cfg, seeded.session, `seeded-${i}`)
      kinds.authorize.ok++
      kinds.authorize.ms.push(performance.now() - start)
    } catch (e) {
      bump(kinds.authorize.failures, e instanceof FlowError ? `${e.step} ${e.status}` : (e.code || e.message))
    }
  }
  return Object.fromEntries(Object.entries(kinds).map(([kind, k]) => [kind, {
    requests: sample.length,
    ok: k.ok,
    p50: median(k.ms),
    failures: Object.fromEntries(k.failures)
  }]))
}

// The code an authorization request gets from a browser whose session cookie is
// `secret`: no sign-in page, redirects back to the client with a code. The cookie has no
// `__Host-` prefix since load.sh's issuer is http.
async function signedInCode (cfg, secret, state) {
  const jar = new CookieJar()
  jar.cookies.set('tobira_session', secret)
  let next = authorizeRequest(cfg, state).authorize
  for (let hop = 0; hop < 4; hop++) {
    const step = `GET ${new URL(next, cfg.base).pathname}`
    const res = await browse(cfg, jar, 'GET', next)
    next = expectRedirect(step, res)
    const url = new URL(next, cfg.base)
    if (url.origin + url.pathname === REDIRECT_URI) {
      if (!url.searchParams.get('code')) throw new FlowError(step, 'no code', `${step}: ${next}`)
      return url.searchParams.get('code')
    }
  }
  throw new FlowError('GET /authorize', 'no code', 'no redirect back to the client within 4 hops')
}

function printMemory (cfg, m) {
  const mb = (x, key) => (x ? fmt(x[key], 1) + ' MB' : '-')
  console.log('')
  console.log(`Memory (server RSS): idle after start ${mb(m.idle, 'rssMb')}; after seeding ${m.sessions} sessions, ` +
    `${m.grants} grants and ${m.refreshTokens} refresh tokens (${fmt(m.seedSeconds, 1)} s) ${mb(m.afterSeed, 'rssMb')}; ` +
    `after using ${m.touched.refresh.requests} of them ${mb(m.afterTouch, 'rssMb')} (peak ${mb(m.afterTouch, 'peakMb')})`)
  for (const [kind, k] of Object.entries(m.touched)) {
    const failed = Object.entries(k.failures).map(([s, n]) => `${s}×${n}`).join(' ')
    console.log(`  seeded ${kind}: ${k.ok}/${k.requests} succeeded, p50 ${fmt(k.p50, 2)} ms${failed ? `; failed: ${failed}` : ''}`)
  }
}

// --- the goals (issue 18): each figure beside its limit measured in this run -------------

// Password checks per second the hashing threads can do: tobira-bench's measure.
function argon2Limit (cfg) {
  return cfg.limits ? cfg.limits.argon2.limit_per_second : null
}

function goalRows (cfg, r) {
  const L = cfg.limits
  const cpuUs = (op, alg) => (L && L[op] && L[op][alg] ? L[op][alg].cpu : null)
  const accessAlg = L ? L.access_token_alg : 'RS256'
  const cores = L ? L.cores : availableParallelism()
  const byName = Object.fromEntries(r.rows.map((x) => [x.scenario, x]))
  const sum = (...xs) => (xs.some((x) => x === null) ? null : xs.reduce((a, b) => a + b, 0))
  const out = []
  // `atLeast`: the figure should reach goal × limit (throughput), else stay under it.
  const add = (scenario, figure, unit, limit, limitIs, goal, atLeast = false) => {
    const ratio = figure === null || figure === undefined || Number.isNaN(figure) || !(limit > 0) ? null : figure / limit
    const met = ratio === null || goal === null ? null : (atLeast ? ratio >= goal : ratio <= goal)
    out.push({ scenario, figure, unit, limit, limitIs, ratio, goal: goal === null ? null : `${atLeast ? '≥' : '≤'} ${goal}`, met })
  }
  for (const [name, label] of [['GET /jwks', 'JWKS'], ['GET /.well-known/openid-configuration', 'discovery']]) {
    if (byName[name]) add(`${label}: Tobira CPU/request`, byName[name].serverCpuUsPerReq, 'µs', 15, '15 µs', 1)
  }
  const userinfo = byName['GET /userinfo']
  if (userinfo) {
    const check = cpuUs('verify_us', accessAlg)
    add('userinfo: Tobira CPU/request', userinfo.serverCpuUsPerReq, 'µs', check === null ? null : 40 + check,
      `40 µs + 1 ${accessAlg} check`, 1)
  }
  // Where the goals above are out of reach on SQLite, what bounds them: the cost of a
  // request that does nothing (JWKS, measured here), its signature work, and its store
  // round trips (SQLite's `SELECT 1`, measured by tobira-bench limits). No goal.
  const trip = L && L.sqlite_round_trip_us ? L.sqlite_round_trip_us.cpu : null
  const floor = byName['GET /jwks'] ? byName['GET /jwks'].serverCpuUsPerReq : null
  if (cfg.backend !== 'postgres' && trip !== null && floor !== null) {
    if (userinfo) {
      add('userinfo: bound on SQLite', userinfo.serverCpuUsPerReq, 'µs',
        sum(floor, cpuUs('verify_us', accessAlg), trip), `JWKS + 1 ${accessAlg} check + 1 round trip`, null)
    }
    const rotating = byName['refresh_token (rotating)']
    if (rotating) {
      add('refresh: bound on SQLite', rotating.serverCpuUsPerReq, 'µs',
        sum(floor, cpuUs('sign_us', accessAlg), cpuUs('sign_us', cfg.rp.idTokenAlg), 5 * trip),
        'JWKS + 2 signatures + 5 round trips', null)
    }
  }
  const cc = byName['POST /token client_credentials']
  if (cc) add('client_credentials: Tobira CPU/request', cc.serverCpuUsPerReq, 'µs', cpuUs('sign_us', accessAlg), `1 ${accessAlg} signature`, 1.2)
  const refresh = byName['refresh_token (rotating)']
  if (refresh) {
    add('refresh: Tobira CPU/request', refresh.serverCpuUsPerReq, 'µs',
      sum(cpuUs('sign_us', accessAlg), cpuUs('sign_us', cfg.rp.idTokenAlg)),
      `${accessAlg} + ${cfg.rp.idTokenAlg} signatures`, 1.2)
    // What the cores left to Tobira could do at its CPU per request.
    const others = refresh.loadgenCpuPct + (refresh.pgCpuPct || 0) + (refresh.redisCpuPct || 0)
    const capacity = refresh.serverCpuUsPerReq ? (cores - others / 100) / (refresh.serverCpuUsPerReq / 1e6) : null
    add('refresh: requests/s', refresh.rps, '/s', capacity,
      `(${cores} cores − load generator${cfg.backend === 'postgres' ? ', PG, Redis' : ''}) ÷ CPU/req`, 0.8, true)
  }
  if (r.signin) {
    const a = r.signin.alone
    add('password sign-ins/s (alone)', a.known.perSecond + a.new.perSecond, '/s', argon2Limit(cfg),
      'hashing threads ÷ 1 verify', 0.9, true)
    add('argon2 ceiling: password checks/s', r.signin.ceiling.hashedPerSecond, '/s', argon2Limit(cfg),
      'hashing threads ÷ 1 verify', null)
  }
  if (r.storm) {
    add('client_credentials p99 in a sign-in storm', r.storm.storm.p99, 'ms', r.storm.idle.p99, 'its idle p99', 3)
    add('sign-ins/s during the storm', r.storm.signIns.known.perSecond, '/s', argon2Limit(cfg),
      'hashing threads ÷ 1 verify', null)
  }
  if (r.idleMemory) {
    add('RSS, idle after start', r.idleMemory.rssMb, 'MB', 25, '25 MB', 1)
    add('  of it anonymous (the process\'s own)', r.idleMemory.anonMb, 'MB', 25, '25 MB', null)
    add('  of it mapped files (program text)', r.idleMemory.fileMb, 'MB', 25, '25 MB', null)
  }
  if (r.memory && r.memory.afterTouch) {
    add(`RSS with ${r.memory.sessions} live sessions`, r.memory.afterTouch.rssMb, 'MB', 150,
      '150 MB for 100,000', 1)
  }
  return out
}

// The mean of two answers of `tobira-bench limits` (the same shape): every number the
// mean of its two values (counts such as cores and threads are the same in both).
function meanLimits (a, b) {
  if (typeof a === 'number' && typeof b === 'number') return (a + b) / 2
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a)) {
    return Object.fromEntries(Object.entries(a).map(([k, v]) => [k, k in b ? meanLimits(v, b[k]) : v]))
  }
  return a
}

function printGoals (cfg, goals, memoryAfter) {
  const L = cfg.limits
  console.log('')
  if (L) {
    const rs = L.sign_us.RS256
    const a = L.argon2
    console.log(`Goals against the limits of this run (tobira-bench limits, ${L.cores} cores): ` +
      `RS256 sign ${fmt(rs.cpu, 0)} µs, verify ${fmt(L.verify_us.RS256.cpu, 0)} µs; ` +
      `ES256 sign ${fmt(L.sign_us.ES256.cpu, 0)} µs; EdDSA sign ${fmt(L.sign_us.EdDSA.cpu, 0)} µs; ` +
      `argon2id (m=${a.memory_kib} KiB, t=${a.iterations}, p=${a.parallelism}) verify ${fmt(a.verify_ms.cpu, 1)} ms ` +
      `× ${a.hashing_threads} hashing threads → ${fmt(a.limit_per_second, 1)}/s` +
      (L.sqlite_round_trip_us ? `; a SQLite round trip ${fmt(L.sqlite_round_trip_us.cpu, 0)} µs` : '') +
      (cfg.backend === 'postgres' ? '; PostgreSQL + Redis' : '; SQLite'))
    if (cfg.limitsRuns) {
      const [before, after] = cfg.limitsRuns.map((x) => x.sign_us.RS256.cpu)
      console.log(`(each limit is the mean of two measurements, before and after the scenarios: ` +
        `RS256 sign ${fmt(before, 0)} and ${fmt(after, 0)} µs)`)
    }
  } else {
    console.log('Goals (no limits measured: LOAD_LIMITS_JSON unset, so no ratios for signatures and hashing)')
  }
  const num = (x, unit) => (x === null || x === undefined || Number.isNaN(x)
    ? '-'
    : `${fmt(x, unit === 'µs' || unit === '/s' ? (x < 100 ? 1 : 0) : unit === 'MB' ? 1 : 2)} ${unit}`)
  const head = ['scenario', 'figure', 'limit', 'ratio', 'goal', 'met', 'the limit is']
  const rows = goals.map((g) => [g.scenario, num(g.figure, g.unit), num(g.limit, g.unit), fmt(g.ratio, 2),
    g.goal || '-', g.met === null ? '' : g.met ? 'yes' : 'NO', g.limitIs])
  printColumns(head, rows, 2)
  const after = Object.entries(memoryAfter)
  if (after.length) {
    console.log('(server RSS after each scenario: ' +
      after.map(([name, m]) => `${name} ${fmt(m.rssMb, 1)} MB (peak ${fmt(m.peakMb, 1)})`).join(', ') + ')')
  }
  console.log('(ratio = figure ÷ limit; CPU is the Tobira process\'s alone, from /proc; the machine may be shared, ' +
    'so figures are indicative)')
}

// A table: the first column and the last `leftAtEnd` columns left-aligned, the others
// right-aligned.
function printColumns (head, rows, leftAtEnd = 0) {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)))
  const left = (i) => i === 0 || i >= head.length - leftAtEnd
  const line = (cells) => cells.map((x, i) => (left(i) ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join('  ').trimEnd()
  console.log(line(head))
  console.log(widths.map((w) => '-'.repeat(w)).join('  '))
  for (const row of rows) console.log(line(row))
}

// --- main ---------------------------------------------------------------------------

function fmt (n, digits) {
  return n === null || Number.isNaN(n) ? '-' : n.toFixed(digits)
}

function printTable (cfg, rows) {
  const pg = cfg.backend === 'postgres'
  const head = ['scenario', 'requests', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'errors',
    'server CPU', 'µs CPU/req', 'loadgen CPU', ...(pg ? ['PG µs/req', 'Redis µs/req'] : [])]
  const body = rows.map((r) => [
    r.scenario, String(r.requests), fmt(r.rps, 0), fmt(r.p50, 2), fmt(r.p99, 2), fmt(r.max, 1),
    String(r.errors), r.serverCpuPct === null ? '-' : fmt(r.serverCpuPct, 0) + ' %',
    fmt(r.serverCpuUsPerReq, 0), fmt(r.loadgenCpuPct, 0) + ' %',
    ...(pg ? [fmt(r.pgCpuUsPerReq, 0), fmt(r.redisCpuUsPerReq, 0)] : [])
  ])
  console.log('')
  console.log(`Tobira load (${pg ? 'PostgreSQL + Redis' : 'SQLite, in-process store'}): ${cfg.duration} s per ` +
    `scenario, ${cfg.concurrency} connections, ${cfg.vus} refresh chains, server ${cfg.base}`)
  printColumns(head, body)
  console.log('(CPU: 100 % = one core; the load generator shares the machine with the server' +
    (pg
      ? '; PG: the backends of the load database, Redis: the whole Redis server, neither counted in µs CPU/req)'
      : ')'))
  for (const r of rows) if (r.notes) console.log(`  ${r.scenario}: ${r.notes}`)
}

async function main () {
  const cfg = readConfig()
  const log = (m) => console.error(`[load] ${m}`)
  if (cfg.scenarios.has('soak')) {
    const r = await soak(cfg, log)
    printSoak(cfg, r)
    if (cfg.jsonOut) writeFileSync(cfg.jsonOut, JSON.stringify({ backend: cfg.backend, limits: cfg.limits, soak: r }, null, 2))
    process.exitCode = r.errorCount > 0 ? 1 : 0
    return
  }
  // Nothing but the CLI's registrations has reached the server yet.
  const idleMemory = serverMemory(cfg)

  // The server's memory after each scenario, to tell which one grew it.
  const memoryAfter = {}
  const noteMemory = (scenario) => {
    const m = serverMemory(cfg)
    if (m) memoryAfter[scenario] = m
  }
  const memory = cfg.scenarios.has('memory') ? await memoryWithSessions(cfg, log, idleMemory) : null
  if (memory) noteMemory('memory')

  const rows = []
  if (cfg.scenarios.has('tokens')) {
    log(`tokens: signing in ${cfg.vus} virtual users (one grant each)...`)
    const t0 = performance.now()
    const vus = await signInAll(cfg)
    log(`tokens: signed in ${vus.length} in ${((performance.now() - t0) / 1000).toFixed(1)} s`)

    log('tokens: GET /jwks')
    rows.push(await cannon(cfg, 'GET /jwks', { path: '/jwks' }))

    log('tokens: GET /.well-known/openid-configuration')
    rows.push(await cannon(cfg, 'GET /.well-known/openid-configuration', { path: '/.well-known/openid-configuration' }))

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

    log('tokens: GET /userinfo')
    rows.push(await cannon(cfg, 'GET /userinfo', {
      path: '/userinfo',
      headers: { authorization: `Bearer ${vus[0].access}` }
    }))

    log('tokens: POST /token client_credentials')
    rows.push(await cannon(cfg, 'POST /token client_credentials', {
      path: '/token',
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(cfg.cc) },
      body: 'grant_type=client_credentials'
    }))

    log('tokens: POST /token refresh_token (rotation, one chain per VU)')
    rows.push(await refreshRotation(cfg, vus))
    noteMemory('tokens')
  }

  // The storm before the attack: the attack's guesses leave the members' accounts
  // throttled for a while, and the storm's browsers are new to them.
  const storm = cfg.scenarios.has('storm') ? await signInStorm(cfg, log) : null
  if (storm) noteMemory('storm')
  const signin = cfg.scenarios.has('attack') ? await signInUnderAttack(cfg, log) : null
  if (signin) noteMemory('attack')
  const timing = cfg.scenarios.has('timing') ? await signInTiming(cfg, log) : null
  if (timing) noteMemory('timing')

  // The machine's speed drifts (another tenant's load, the host's clocks): the limits are
  // measured again now that the scenarios are over, and each goal is held against the
  // mean of the two measurements, taken on either side of its figure.
  if (cfg.limits && cfg.benchBin) {
    log('measuring the limits again, after the scenarios')
    const after = await bench(cfg, ['limits', '--json', '--seconds', cfg.limitsSeconds])
    cfg.limitsRuns = [cfg.limits, after]
    cfg.limits = meanLimits(cfg.limits, after)
  }

  if (rows.length) printTable(cfg, rows)
  if (memory) printMemory(cfg, memory)
  if (storm) printStorm(cfg, storm)
  if (signin) printAttack(cfg, signin)
  if (timing) printTiming(cfg, timing)
  const goals = goalRows(cfg, { rows, signin, storm, memory, idleMemory })
  printGoals(cfg, goals, memoryAfter)
  if (cfg.jsonOut) {
    writeFileSync(cfg.jsonOut, JSON.stringify({
      config: { duration: cfg.duration, concurrency: cfg.concurrency, vus: cfg.vus, backend: cfg.backend },
      limits: cfg.limits,
      limitsBeforeAndAfter: cfg.limitsRuns || null,
      goals,
      rows,
      memory: { idle: idleMemory, after: memoryAfter, seeded: memory },
      signInUnderAttack: signin,
      signInStorm: storm,
      signInTiming: timing
    }, null, 2))
  }
  // Failures under attack are what is measured; elsewhere every sign-in must succeed,
  // every token request too, and every timing post must get the answer its case expects.
  const failedSignIns = (p) => p.known.attempts - p.known.ok + p.new.attempts - p.new.ok
  const failed = rows.reduce((n, r) => n + r.errors, 0) +
    (signin ? failedSignIns(signin.alone) : 0) +
    (storm ? storm.idle.errors + storm.storm.errors + failedSignIns(storm.signIns) : 0) +
    (memory ? Object.values(memory.touched).reduce((n, k) => n + k.requests - k.ok, 0) : 0) +
    (timing ? timing.unexpected : 0)
  process.exitCode = failed > 0 ? 1 : 0
}

main().catch((e) => {
  console.error(`[load] failed: ${e.stack || e}`)
  process.exitCode = 2
})
