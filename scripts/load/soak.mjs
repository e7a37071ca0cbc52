// The soak (scripts/soak.sh): a steady mix of what members and clients do, for many
// minutes, against one server, sampled every SOAK_SAMPLE_SECONDS: the server's memory and
// CPU, and per workload the requests, errors, p50 and p99 of that window. Not a
// saturation test: every workload runs at a fixed pace, so a figure that drifts over time
// is the server's doing, not the load's.
//
// Workloads (each a set of loops; every loop waits its pause after each round):
//   sign-in   SOAK_SIGNIN_VUS browsers of their own that keep their cookies except the
//             session, each round another member (round robin over LOAD_MEMBER_EMAILS):
//             the whole flow (authorize, form, password, code exchange), the account
//             console's pages with the new session, then sign-out as the client asks
//             for it (RP-initiated logout with the ID token as id_token_hint).
//   console   SOAK_CONSOLE_VUS members signed in once, reading the console's pages.
//   refresh   SOAK_REFRESH_VUS clients' refresh-token chains, each rotating its own token,
//             then GET /userinfo twice with the new access token.
//   metadata  SOAK_METADATA_VUS loops of GET /jwks and GET /.well-known/openid-configuration.
// An error is any answer other than the one a correct server gives (a 200, or the
// sign-in flow's redirects) or a failed connection; the soak fails when there is one.

import { performance } from 'node:perf_hooks'
import { Pool } from 'undici'
import {
  CookieJar, FlowError, LEGIT_NET, addressIn, basicAuth, browse, cpuMeter, form,
  percentile, serverMemory, signIn, sleep
} from './lib.mjs'

// The console's pages a member reads (crates/auth/src/account/mod.rs).
const CONSOLE_PAGES = ['/account', '/account/sessions', '/account/history', '/account/apps']
const WORKLOADS = ['sign-in', 'console', 'sign-out', 'refresh', 'userinfo', 'jwks', 'discovery']

export function soakConfig (env, int) {
  return {
    minutes: int('SOAK_MINUTES', 30, 1, 1440),
    sampleSeconds: int('SOAK_SAMPLE_SECONDS', 60, 5, 3600),
    warmupMinutes: int('SOAK_WARMUP_MINUTES', 10, 0, 1440),
    signInVus: int('SOAK_SIGNIN_VUS', 2, 0, 64),
    signInPauseMs: int('SOAK_SIGNIN_PAUSE_MS', 1000, 0, 600_000),
    consoleVus: int('SOAK_CONSOLE_VUS', 2, 0, 64),
    consolePauseMs: int('SOAK_CONSOLE_PAUSE_MS', 200, 0, 600_000),
    refreshVus: int('SOAK_REFRESH_VUS', 8, 0, 256),
    refreshPauseMs: int('SOAK_REFRESH_PAUSE_MS', 250, 0, 600_000),
    metadataVus: int('SOAK_METADATA_VUS', 2, 0, 64),
    metadataPauseMs: int('SOAK_METADATA_PAUSE_MS', 20, 0, 600_000)
  }
}

// Samples of the current window, per workload; `take` hands them over and starts anew.
class Window {
  constructor () { this.reset() }
  reset () {
    this.samples = Object.fromEntries(WORKLOADS.map((w) => [w, { ms: [], errors: 0 }]))
  }
  ok (workload, ms) { this.samples[workload].ms.push(ms) }
  error (workload) { this.samples[workload].errors++ }
  take () {
    const out = this.samples
    this.reset()
    return out
  }
}

// The soak's own record of every error: the workload, why, how often, first and last
// time (minutes into the run).
class Errors {
  constructor (t0) { this.t0 = t0; this.byReason = new Map() }
  add (workload, why) {
    const key = `${workload}: ${why}`
    const at = (performance.now() - this.t0) / 60_000
    const e = this.byReason.get(key) || { count: 0, first: at, last: at }
    e.count++
    e.last = at
    this.byReason.set(key, e)
  }
  get total () { return [...this.byReason.values()].reduce((n, e) => n + e.count, 0) }
}

export async function soak (cfg, log) {
  const s = cfg.soak
  if (cfg.members.length === 0) throw new Error('the soak needs LOAD_MEMBER_EMAILS')
  const t0 = performance.now()
  const deadline = t0 + s.minutes * 60_000
  const running = () => performance.now() < deadline
  const window = new Window()
  const errors = new Errors(t0)
  const fail = (workload, why) => {
    window.error(workload)
    errors.add(workload, why)
  }
  const pool = new Pool(cfg.base, { connections: 16, pipelining: 1 })
  const rpAuth = basicAuth(cfg.rp)

  // One timed request through the pool; the answer's status and its JSON (or null).
  const call = async (workload, opts, accept = (status) => status === 200) => {
    const start = performance.now()
    try {
      const res = await pool.request(opts)
      const text = await res.body.text()
      if (!accept(res.statusCode)) {
        fail(workload, `${res.statusCode} ${text.slice(0, 80).replace(/\s+/g, ' ')}`)
        return null
      }
      window.ok(workload, performance.now() - start)
      try { return JSON.parse(text) } catch { return {} }
    } catch (e) {
      fail(workload, e.code || e.message)
      return null
    }
  }

  // A page of the console read with this browser's session; a redirect (to the sign-in
  // page) is an error: the session must still be live.
  const readPage = async (jar, path) => {
    const start = performance.now()
    try {
      const res = await browse(cfg, jar, 'GET', path)
      if (res.status !== 200) {
        fail('console', `${path} ${res.status} ${res.headers.location || ''}`.trim())
        return
      }
      window.ok('console', performance.now() - start)
    } catch (e) {
      fail('console', `${path} ${e.code || e.message}`)
    }
  }

  // Browsers: each on its own simulated address (a /16 of its own, apart from run.mjs's).
  let address = 49152
  const browser = () => {
    const jar = new CookieJar()
    jar.extra = { 'x-forwarded-for': addressIn(LEGIT_NET, 16, address++) }
    return jar
  }
  const member = (i) => cfg.members[i % cfg.members.length]

  // RP-initiated logout of this browser's session with its own ID token as the hint:
  // it ends at once (no confirmation page) and the browser's cookie goes.
  const signOut = async (jar, idToken) => {
    const start = performance.now()
    try {
      const res = await browse(cfg, jar, 'GET', '/end-session?' + form({ id_token_hint: idToken }))
      if (res.status !== 200 || jar.cookies.has('tobira_session')) {
        fail('sign-out', `${res.status}${jar.cookies.has('tobira_session') ? ', the session cookie stayed' : ''}`)
        return
      }
      window.ok('sign-out', performance.now() - start)
    } catch (e) {
      fail('sign-out', e.code || e.message)
    }
  }

  const signInLoop = async (i) => {
    const jar = browser()
    let round = 0
    while (running()) {
      jar.cookies.delete('tobira_session')
      const who = member(round * s.signInVus + i)
      const start = performance.now()
      try {
        const tokens = await signIn(cfg, `soak-${i}-${round++}`, { jar, email: who })
        window.ok('sign-in', performance.now() - start)
        for (const page of CONSOLE_PAGES) await readPage(jar, page)
        await signOut(jar, tokens.idToken)
      } catch (e) {
        fail('sign-in', e instanceof FlowError ? `${e.step} ${e.status}` : (e.code || e.message))
      }
      await sleep(s.signInPauseMs)
    }
  }

  const consoleLoop = async (jar) => {
    let page = 0
    while (running()) {
      await readPage(jar, CONSOLE_PAGES[page++ % CONSOLE_PAGES.length])
      await sleep(s.consolePauseMs)
    }
  }

  // A chain ends at its first failure (its token may be spent): it signs in again, so
  // one failure is counted once and the load stays the same.
  const refreshLoop = async (i, tokens) => {
    while (running()) {
      const json = await call('refresh', {
        path: '/token',
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: rpAuth },
        body: form({ grant_type: 'refresh_token', refresh_token: tokens.refresh })
      })
      if (json && json.refresh_token && json.access_token) {
        tokens = { refresh: json.refresh_token, access: json.access_token }
        for (let k = 0; k < 2; k++) {
          await call('userinfo', {
            path: '/userinfo',
            method: 'GET',
            headers: { authorization: `Bearer ${tokens.access}` }
          })
        }
      } else {
        if (json) fail('refresh', 'an answer without tokens')
        try {
          tokens = await signIn(cfg, `soak-chain-${i}`, { jar: browser(), email: member(i) })
        } catch (e) {
          fail('sign-in', `(new chain) ${e instanceof FlowError ? `${e.step} ${e.status}` : (e.code || e.message)}`)
          await sleep(1000)
        }
      }
      await sleep(s.refreshPauseMs)
    }
  }

  const metadataLoop = async () => {
    while (running()) {
      await call('jwks', { path: '/jwks', method: 'GET' })
      await call('discovery', { path: '/.well-known/openid-configuration', method: 'GET' })
      await sleep(s.metadataPauseMs)
    }
  }

  // The console readers and the chains start signed in (not measured).
  const readers = []
  for (let i = 0; i < s.consoleVus; i++) {
    const jar = browser()
    await signIn(cfg, `soak-reader-${i}`, { jar, email: member(i) })
    readers.push(jar)
  }
  const chains = []
  for (let i = 0; i < s.refreshVus; i++) {
    chains.push(await signIn(cfg, `soak-chain-${i}`, { jar: browser(), email: member(i) }))
  }

  const startMemory = serverMemory(cfg)
  const samples = []
  let meter = cpuMeter(cfg)
  let windowStart = performance.now()
  const sampleNow = () => {
    const now = performance.now()
    const cpu = meter()
    const seconds = (now - windowStart) / 1000
    const taken = window.take()
    const row = {
      minute: (now - t0) / 60_000,
      seconds,
      memory: serverMemory(cfg),
      serverCpuPct: cpu.serverCpu === null ? null : (100 * cpu.serverCpu) / seconds,
      pgCpuPct: cpu.pgCpu === null ? null : (100 * cpu.pgCpu) / seconds,
      redisCpuPct: cpu.redisCpu === null ? null : (100 * cpu.redisCpu) / seconds,
      workloads: {}
    }
    for (const [w, { ms, errors: n }] of Object.entries(taken)) {
      ms.sort((a, b) => a - b)
      row.workloads[w] = { requests: ms.length + n, errors: n, p50: percentile(ms, 50), p99: percentile(ms, 99) }
    }
    samples.push(row)
    meter = cpuMeter(cfg)
    windowStart = now
    const m = row.memory
    log(`soak ${row.minute.toFixed(1)} min: RSS ${m ? m.rssMb.toFixed(1) : '-'} MB, ` +
      WORKLOADS.map((w) => `${w} ${row.workloads[w].requests}/p99 ${fmtMs(row.workloads[w].p99)}`).join(', ') +
      `, errors so far ${errors.total}`)
  }
  const sampler = setInterval(sampleNow, s.sampleSeconds * 1000)

  log(`soak: ${s.minutes} min; ${s.signInVus} signing in, ${s.consoleVus} reading the console, ` +
    `${s.refreshVus} refresh chains, ${s.metadataVus} metadata loops`)
  await Promise.all([
    ...Array.from({ length: s.signInVus }, (_, i) => signInLoop(i)),
    ...readers.map((jar) => consoleLoop(jar)),
    ...chains.map((tokens, i) => refreshLoop(i, tokens)),
    ...Array.from({ length: s.metadataVus }, () => metadataLoop())
  ])
  clearInterval(sampler)
  // The last, partial window, if it holds anything.
  if ((performance.now() - windowStart) / 1000 >= 1) sampleNow()
  await pool.close()
  return { config: s, startMemory, samples, errors: Object.fromEntries(errors.byReason), errorCount: errors.total }
}

const fmtMs = (x) => (Number.isFinite(x) ? x.toFixed(x < 10 ? 2 : 1) + ' ms' : '-')

// RSS at the start, after 5 minutes, after the warm-up and at the end; the growth after
// the warm-up as a straight line fitted through the samples (MB per hour), so one noisy
// sample does not decide it.
export function memoryTrend (r) {
  const rss = r.samples.filter((x) => x.memory).map((x) => ({ t: x.minute, mb: x.memory.rssMb, anon: x.memory.anonMb }))
  const at = (minute) => rss.find((x) => x.t >= minute - 1e-9) || null
  const after = rss.filter((x) => x.t >= r.config.warmupMinutes)
  const slope = (key) => {
    if (after.length < 2) return NaN
    const mt = after.reduce((n, x) => n + x.t, 0) / after.length
    const my = after.reduce((n, x) => n + x[key], 0) / after.length
    const num = after.reduce((n, x) => n + (x.t - mt) * (x[key] - my), 0)
    const den = after.reduce((n, x) => n + (x.t - mt) ** 2, 0)
    return den === 0 ? NaN : (60 * num) / den
  }
  return {
    start: r.startMemory ? { t: 0, mb: r.startMemory.rssMb, anon: r.startMemory.anonMb } : null,
    five: at(5),
    warm: at(r.config.warmupMinutes),
    end: rss.length ? rss[rss.length - 1] : null,
    peak: rss.length ? Math.max(...r.samples.filter((x) => x.memory).map((x) => x.memory.peakMb)) : NaN,
    rssSlope: slope('mb'),
    anonSlope: slope('anon')
  }
}

export function printSoak (cfg, r) {
  const fmt = (n, d) => (Number.isFinite(n) ? n.toFixed(d) : '-')
  console.log('')
  console.log(`Soak: ${r.config.minutes} min on ${cfg.backend}, a sample every ${r.config.sampleSeconds} s ` +
    '(requests and p99 of each window)')
  const head = ['min', 'RSS MB', 'anon MB', 'CPU %']
  if (cfg.backend === 'postgres') head.push('PG %', 'Redis %')
  for (const w of WORKLOADS) head.push(`${w} n`, `${w} p99`)
  head.push('errors')
  const rows = r.samples.map((x) => {
    const row = [fmt(x.minute, 1), fmt(x.memory?.rssMb, 1), fmt(x.memory?.anonMb, 1), fmt(x.serverCpuPct, 1)]
    if (cfg.backend === 'postgres') row.push(fmt(x.pgCpuPct, 1), fmt(x.redisCpuPct, 1))
    for (const w of WORKLOADS) row.push(String(x.workloads[w].requests), fmtMs(x.workloads[w].p99))
    row.push(String(WORKLOADS.reduce((n, w) => n + x.workloads[w].errors, 0)))
    return row
  })
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)))
  const line = (cells) => cells.map((c, i) => c.padStart(widths[i])).join('  ')
  console.log(line(head))
  for (const row of rows) console.log(line(row))
  const m = memoryTrend(r)
  console.log('')
  const point = (x, name) => (x ? `${fmt(x.mb, 1)} MB (anon ${fmt(x.anon, 1)}) ${name}` : `- ${name}`)
  console.log('RSS: ' + [
    point(m.start, 'at the start'),
    point(m.five, `after ${m.five ? fmt(m.five.t, 1) : 5} min`),
    point(m.warm, `after the warm-up (${fmt(m.warm?.t, 1)} min)`),
    point(m.end, `at the end (${fmt(m.end?.t, 1)} min)`)
  ].join(', ') + `; peak ${fmt(m.peak, 1)} MB`)
  console.log(`trend after the warm-up: RSS ${fmt(m.rssSlope, 2)} MB/h, anonymous memory ${fmt(m.anonSlope, 2)} MB/h`)
  console.log(`errors: ${r.errorCount}`)
  for (const [why, e] of Object.entries(r.errors)) {
    console.log(`  ${e.count}× ${why} (minutes ${fmt(e.first, 1)}–${fmt(e.last, 1)})`)
  }
}
