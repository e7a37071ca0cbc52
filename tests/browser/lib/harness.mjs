// Starts the real `tobira` OP and the real `marketplace` RP on free loopback
// ports (fresh temp data dirs), seeds two members and the marketplace client,
// and launches Debian's headless Chromium through playwright-core. Also reads
// the mails the OP writes to its outbox (`.eml` files, no SMTP configured).
// On request it starts a second `tobira` first, as the OP's upstream provider
// for social sign-in (`startStack({ upstream: true })`).

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { access, constants, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const HERE = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const REPO = resolve(HERE, '..', '..');
export const ARTIFACTS = join(HERE, 'artifacts');

export const TOBIRA_BIN = process.env.TOBIRA_BIN
  ? resolve(process.env.TOBIRA_BIN)
  : join(REPO, 'target', 'release', 'tobira');
export const MARKETPLACE_BIN = process.env.MARKETPLACE_BIN
  ? resolve(process.env.MARKETPLACE_BIN)
  : join(REPO, 'target', 'release', 'marketplace');
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

export const MEMBERS = {
  hanako: { email: 'hanako@example.jp', name: '山田花子', password: 'violet-tunnel-ramen-42' },
  taro: { email: 'taro@example.jp', name: '佐藤太郎', password: 'another-strong-pass-77' },
};

/**
 * The members of the upstream provider (`startStack({ upstream: true })`): kenji has no
 * account at the OP; taro has the address of the OP's taro, with a password of his own.
 */
export const UPSTREAM_MEMBERS = {
  kenji: { email: 'kenji@example.jp', name: '鈴木健二', password: 'saffron-meadow-kite-58' },
  taro: { email: 'taro@example.jp', name: '佐藤太郎', password: 'upstream-cobalt-ferry-31' },
};

/** The upstream provider as the OP's configuration names it (`[[federation.providers]]`). */
export const UPSTREAM_PROVIDER = {
  id: 'up',
  label: 'アップストリームIDでログイン',
  labelEn: 'Sign in with Upstream ID',
};

const STARTUP_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 10_000;

// ---------------------------------------------------------------- processes

export function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

/** `n` distinct free ports. */
async function freePorts(n) {
  const ports = new Set();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

async function requireExecutable(path, hint) {
  await access(path, constants.X_OK).catch(() => {
    throw new Error(`no executable at ${path}: ${hint}`);
  });
}

/** Runs a CLI command to completion; resolves with stdout, rejects with stderr. */
function runCli(bin, args, env, stdin = '') {
  return new Promise((ok, fail) => {
    const child = spawn(bin, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.once('error', fail);
    child.once('close', (code, signal) => {
      if (code === 0) ok(stdout);
      else fail(new Error(`${bin} ${args.join(' ')} exited with ${code ?? signal}:\n${stderr}`));
    });
    child.stdin.end(stdin);
  });
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;
const LISTENING = /listening on http:\/\/127\.0\.0\.1:(\d+)/;

/** Processes started here; killed with SIGKILL if node exits without cleanup. */
const live = new Set();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/**
 * Starts `<bin> serve` and resolves once a complete stderr line says
 * `listening on http://127.0.0.1:PORT`; the port is read from that line.
 */
function startServer(label, bin, env) {
  return new Promise((ok, fail) => {
    const child = spawn(bin, ['serve'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    live.add(child);
    child.once('exit', () => live.delete(child));
    let log = '';
    let ready = false;
    const server = { label, child, port: undefined, log: () => log };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`${label} serve did not log "listening on http://" within ${STARTUP_TIMEOUT_MS} ms:\n${log}`));
    }, STARTUP_TIMEOUT_MS);
    child.stderr.setEncoding('utf8').on('data', (d) => {
      log += d;
      if (ready) return;
      for (const line of log.replace(ANSI, '').split('\n').slice(0, -1)) {
        const m = line.match(LISTENING);
        if (m) {
          ready = true;
          clearTimeout(timer);
          server.port = Number(m[1]);
          ok(server);
          return;
        }
      }
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      fail(err);
    });
    child.once('exit', (code, signal) => {
      if (!ready) {
        clearTimeout(timer);
        fail(new Error(`${label} serve exited early with ${code ?? signal}:\n${log}`));
      }
    });
  });
}

/** SIGTERM, then SIGKILL after a grace period. */
async function stopServer(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((ok) => child.once('exit', ok));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

// -------------------------------------------------------------------- stack

/**
 * The upstream provider of `startStack({ upstream: true })`: a second tobira with its own
 * data dir at `http://127.0.0.1:{upPort}` (the OP is at `localhost`: cookies ignore ports,
 * so the two OPs need different host names), UPSTREAM_MEMBERS seeded with the CLI, and a
 * first-party client `Tobira` whose redirect URI is the OP's federation callback. Writes
 * the OP's `[[federation.providers]]` entry (UPSTREAM_PROVIDER, kind `oidc`) to
 * `<tmp>/federation.toml` (stack.federationConfig). Fills in stack.up, upOrigin,
 * upDataDir and upClient ({ clientId, clientSecret }).
 */
async function startUpstream(stack, { base, upPort }) {
  stack.upOrigin = `http://127.0.0.1:${upPort}`;
  stack.upDataDir = join(stack.tmp, 'up');
  const upEnv = {
    ...base,
    TOBIRA_DATA_DIR: stack.upDataDir,
    TOBIRA_SERVER__BIND: `127.0.0.1:${upPort}`,
    TOBIRA_ISSUER: stack.upOrigin,
    TOBIRA_JOBS__POLL_INTERVAL_MS: '100',
  };
  for (const m of Object.values(UPSTREAM_MEMBERS)) {
    await runCli(
      TOBIRA_BIN,
      ['users', 'add', '--email', m.email, '--name', m.name, '--password-stdin', '--verified', '--json'],
      upEnv,
      `${m.password}\n`,
    );
  }
  const callback = `${stack.opOrigin}/federation/${UPSTREAM_PROVIDER.id}/callback`;
  const out = await runCli(
    TOBIRA_BIN,
    ['clients', 'add', '--name', 'Tobira', '--redirect-uri', callback, '--first-party', '--json'],
    upEnv,
  );
  const client = JSON.parse(out);
  if (!client.client_id || !client.client_secret) {
    throw new Error(`the upstream's tobira clients add printed no client_id/client_secret: ${out}`);
  }
  stack.upClient = { clientId: client.client_id, clientSecret: client.client_secret };

  stack.up = await startServer('upstream tobira', TOBIRA_BIN, upEnv);
  if (stack.up.port !== upPort) {
    throw new Error(`the upstream tobira listens on ${stack.up.port}, asked for ${upPort}`);
  }

  // JSON strings are TOML basic strings (same escapes; the labels stay UTF-8).
  const q = (v) => JSON.stringify(String(v));
  stack.federationConfig = join(stack.tmp, 'federation.toml');
  await writeFile(
    stack.federationConfig,
    [
      '[[federation.providers]]',
      `id = ${q(UPSTREAM_PROVIDER.id)}`,
      'kind = "oidc"',
      `issuer = ${q(stack.upOrigin)}`,
      `client_id = ${q(stack.upClient.clientId)}`,
      `client_secret = ${q(stack.upClient.clientSecret)}`,
      `label = ${q(UPSTREAM_PROVIDER.label)}`,
      `label_en = ${q(UPSTREAM_PROVIDER.labelEn)}`,
      '',
    ].join('\n'),
  );
}

/**
 * Starts OP + marketplace. Resolves with
 * { op, mp, opOrigin, mpOrigin, clientId, clientSecret, opDataDir, outbox, stop() }
 * (`marketplace: false` starts the OP alone: mp is then undefined).
 * `upstream: true` first starts a second tobira as the OP's upstream provider (see
 * startUpstream): the stack then also has { up, upOrigin, upDataDir, upClient,
 * federationConfig }, and the OP (and runTobira) read that TOML file as TOBIRA_CONFIG.
 * `outbox` is the directory the OP writes its mails to (see readOutbox).
 * `artifacts` is where stop() writes the servers' logs (default ARTIFACTS);
 * `opEnv` adds to (or overrides) the OP's environment.
 * The OP's job worker polls every 100 ms (TOBIRA_JOBS__POLL_INTERVAL_MS), so a
 * queued mail reaches the outbox quickly.
 * On a failure half-way, whatever was started is stopped before rejecting.
 */
export async function startStack({
  marketplace = true,
  artifacts = ARTIFACTS,
  opEnv: extraOpEnv = {},
  upstream = false,
} = {}) {
  await requireExecutable(
    TOBIRA_BIN,
    'build it (cargo build --release --bin tobira) or set TOBIRA_BIN',
  );
  if (marketplace) {
    await requireExecutable(
      MARKETPLACE_BIN,
      'build it (cargo build --release --bin marketplace) or set MARKETPLACE_BIN',
    );
  }

  const tmp = await mkdtemp(join(tmpdir(), 'tobira-browser-'));
  const stack = { tmp, op: undefined, mp: undefined, up: undefined };
  stack.stop = async () => {
    await Promise.all([stopServer(stack.mp?.child), stopServer(stack.op?.child), stopServer(stack.up?.child)]);
    await mkdir(artifacts, { recursive: true });
    if (stack.op) await writeFile(join(artifacts, 'tobira.log'), stack.op.log());
    if (stack.mp) await writeFile(join(artifacts, 'marketplace.log'), stack.mp.log());
    if (stack.up) await writeFile(join(artifacts, 'upstream.log'), stack.up.log());
    await rm(tmp, { recursive: true, force: true });
  };

  try {
    // The OP's port must be known before the upstream registers its callback.
    const [opPort, mpPort, upPort] = await freePorts(upstream ? 3 : 2);
    const base = { PATH: process.env.PATH, HOME: tmp, LANG: 'C.UTF-8' };
    if (process.env.RUST_LOG) base.RUST_LOG = process.env.RUST_LOG;

    stack.opOrigin = `http://localhost:${opPort}`;
    stack.mpOrigin = `http://127.0.0.1:${mpPort}`;
    stack.opDataDir = join(tmp, 'op');
    if (upstream) {
      if (extraOpEnv.TOBIRA_CONFIG) {
        throw new Error('startStack: upstream: true writes the OP\'s TOBIRA_CONFIG itself; opEnv must not set it');
      }
      await startUpstream(stack, { base, upPort });
      extraOpEnv = { TOBIRA_CONFIG: stack.federationConfig, ...extraOpEnv };
    }
    stack.opEnv = extraOpEnv; // the CLI run against this OP gets it too (runTobira)
    stack.outbox = extraOpEnv.TOBIRA_MAIL__OUTBOX_DIR || join(stack.opDataDir, 'outbox');
    const opEnv = {
      ...base,
      TOBIRA_DATA_DIR: stack.opDataDir,
      TOBIRA_SERVER__BIND: `127.0.0.1:${opPort}`,
      TOBIRA_ISSUER: stack.opOrigin,
      TOBIRA_JOBS__POLL_INTERVAL_MS: '100',
      ...extraOpEnv,
    };

    for (const m of Object.values(MEMBERS)) {
      await runCli(
        TOBIRA_BIN,
        ['users', 'add', '--email', m.email, '--name', m.name, '--password-stdin', '--verified', '--json'],
        opEnv,
        `${m.password}\n`,
      );
    }
    const out = await runCli(
      TOBIRA_BIN,
      [
        'clients', 'add', '--name', 'マーケット',
        '--redirect-uri', `${stack.mpOrigin}/callback`,
        '--post-logout-redirect-uri', `${stack.mpOrigin}/`,
        '--backchannel-logout-uri', `${stack.mpOrigin}/backchannel-logout`,
        '--first-party', '--grant', 'refresh_token', '--json',
      ],
      opEnv,
    );
    const client = JSON.parse(out);
    if (!client.client_id || !client.client_secret) {
      throw new Error(`tobira clients add printed no client_id/client_secret: ${out}`);
    }
    stack.clientId = client.client_id;
    stack.clientSecret = client.client_secret;

    stack.op = await startServer('tobira', TOBIRA_BIN, opEnv);
    if (stack.op.port !== opPort) {
      throw new Error(`tobira listens on ${stack.op.port}, asked for ${opPort}`);
    }

    if (!marketplace) return stack;
    stack.mp = await startServer('marketplace', MARKETPLACE_BIN, {
      ...base,
      MARKETPLACE_SERVER__BIND: `127.0.0.1:${mpPort}`,
      MARKETPLACE_PUBLIC_URL: stack.mpOrigin,
      MARKETPLACE_DATA_DIR: join(tmp, 'mp'),
      MARKETPLACE_OIDC__ISSUER: stack.opOrigin,
      MARKETPLACE_OIDC__CLIENT_ID: stack.clientId,
      MARKETPLACE_OIDC__CLIENT_SECRET: stack.clientSecret,
    });
    if (stack.mp.port !== mpPort) {
      throw new Error(`marketplace listens on ${stack.mp.port}, asked for ${mpPort}`);
    }
    return stack;
  } catch (err) {
    await stack.stop().catch(() => {});
    throw err;
  }
}

// ------------------------------------------------------------------ browser

export async function launchBrowser() {
  await requireExecutable(CHROMIUM, 'install it: apt-get install -y chromium (tests/browser/run.sh does)');
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** A PKCE S256 challenge (43 characters) for a fresh random verifier. */
export function pkceChallenge() {
  const verifier = randomBytes(32).toString('base64url');
  return createHash('sha256').update(verifier).digest('base64url');
}

/** File name for a test's screenshot: artifacts/<test-name>.png (or in `dir`) */
export function artifactPath(testName, suffix = '', dir = ARTIFACTS) {
  const slug = testName
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 100);
  return join(dir, `${slug}${suffix}.png`);
}

// --------------------------------------------------------------------- mail
//
// Just enough MIME for the OP's mails: header unfolding, RFC 2047 encoded
// words (B and Q, UTF-8), multipart bodies (nested too), and base64 /
// quoted-printable / 7bit / 8bit transfer encodings.

/** Decodes RFC 2047 encoded words; adjacent words are joined before UTF-8 decoding. */
export function decodeHeader(value) {
  const word = /=\?([^?]+)\?([BbQq])\?([^?]*)\?=/g;
  let out = '';
  let pending = []; // bytes of adjacent encoded words (a character may span two)
  let last = 0;
  const flush = () => {
    if (pending.length) out += Buffer.concat(pending).toString('utf8');
    pending = [];
  };
  for (let m; (m = word.exec(value)); ) {
    const between = value.slice(last, m.index);
    if (!(pending.length && /^\s*$/.test(between))) {
      flush();
      out += between;
    }
    const [, , enc, text] = m;
    pending.push(
      enc.toUpperCase() === 'B'
        ? Buffer.from(text, 'base64')
        : qpBytes(text.replace(/_/g, ' ')),
    );
    last = word.lastIndex;
  }
  flush();
  return out + value.slice(last);
}

/** Quoted-printable to bytes (soft line breaks removed). */
function qpBytes(text) {
  const s = text.replace(/=\r?\n/g, '');
  const bytes = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '=' && /^[0-9A-Fa-f]{2}$/.test(s.slice(i + 1, i + 3))) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(s[i], 'utf8'));
    }
  }
  return Buffer.from(bytes);
}

/** Splits an entity into { headers (lower-case names, unfolded, raw), body }. */
function splitEntity(raw) {
  const m = raw.match(/\r?\n\r?\n/);
  const head = m ? raw.slice(0, m.index) : raw;
  const body = m ? raw.slice(m.index + m[0].length) : '';
  const headers = {};
  for (const line of head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return { headers, body };
}

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function param(headerValue, name) {
  const m = (headerValue || '').match(new RegExp(`;\\s*${name}\\s*=\\s*(?:"([^"]*)"|([^;\\s]+))`, 'i'));
  return m ? (m[1] ?? m[2]) : undefined;
}

function decodeBody(body, encoding = '7bit', charset = 'utf-8') {
  let bytes;
  switch (encoding.toLowerCase()) {
    case 'base64':
      bytes = Buffer.from(body.replace(/\s+/g, ''), 'base64');
      break;
    case 'quoted-printable':
      bytes = qpBytes(body);
      break;
    default:
      bytes = Buffer.from(body, 'latin1'); // the file was read as latin1: bytes as they are
  }
  return new TextDecoder(charset.toLowerCase() === 'us-ascii' ? 'utf-8' : charset).decode(bytes);
}

/** Leaf parts of an entity, depth first: [{ type, text }]. */
function leafParts(raw) {
  const { headers, body } = splitEntity(raw);
  const contentType = headers['content-type'] || 'text/plain; charset=us-ascii';
  const type = contentType.split(';')[0].trim().toLowerCase();
  if (type.startsWith('multipart/')) {
    const boundary = param(contentType, 'boundary');
    if (!boundary) throw new Error(`multipart without boundary: ${contentType}`);
    const delimiter = `--${boundary}`;
    const parts = [];
    let chunks = body.split(new RegExp(`(?:^|\\r?\\n)${escapeRegExp(delimiter)}`));
    chunks = chunks.slice(1); // the preamble
    for (const chunk of chunks) {
      if (chunk.startsWith('--')) break; // the closing delimiter
      parts.push(...leafParts(chunk.replace(/^[ \t]*\r?\n/, '')));
    }
    return parts;
  }
  return [{ type, text: decodeBody(body, headers['content-transfer-encoding'], param(contentType, 'charset') || 'utf-8') }];
}

/**
 * Parses one mail (the bytes of an .eml file) into
 * { subject, to, from, headers, text, html } (headers decoded; text and html
 * are the first text/plain and text/html parts, decoded to strings).
 */
export function parseMail(bytes) {
  const raw = Buffer.isBuffer(bytes) ? bytes.toString('latin1') : bytes;
  const { headers } = splitEntity(raw);
  const decoded = Object.fromEntries(
    Object.entries(headers).map(([k, v]) => [k, decodeHeader(Buffer.from(v, 'latin1').toString('utf8'))]),
  );
  const parts = leafParts(raw);
  return {
    subject: decoded.subject ?? '',
    to: decoded.to ?? '',
    from: decoded.from ?? '',
    headers: decoded,
    text: parts.find((p) => p.type === 'text/plain')?.text ?? '',
    html: parts.find((p) => p.type === 'text/html')?.text ?? '',
  };
}

/**
 * Every mail in the outbox directory, oldest first:
 * [{ file, mtimeMs, subject, to, from, headers, text, html }].
 * A missing directory is an empty outbox; files being written (`.*.part`) are skipped.
 */
export async function readOutbox(dir) {
  const names = await readdir(dir).catch((e) => {
    if (e.code === 'ENOENT') return [];
    throw e;
  });
  const mails = [];
  for (const name of names) {
    if (!name.endsWith('.eml') || name.startsWith('.')) continue;
    const file = join(dir, name);
    const [bytes, st] = await Promise.all([readFile(file), stat(file)]);
    mails.push({ file, mtimeMs: st.mtimeMs, ...parseMail(bytes) });
  }
  return mails.sort((a, b) => a.mtimeMs - b.mtimeMs || a.file.localeCompare(b.file));
}

/**
 * Waits until a mail in the outbox matches `predicate(mail)` and resolves with
 * it (the newest match). Rejects after `timeoutMs`, listing what the outbox held.
 */
export async function waitForMail(dir, predicate, { timeoutMs = 10_000, intervalMs = 50 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const mails = await readOutbox(dir);
    const hits = mails.filter(predicate);
    if (hits.length) return hits[hits.length - 1];
    if (Date.now() > deadline) {
      const seen = mails.map((m) => `  ${m.to} | ${m.subject}`).join('\n') || '  (empty)';
      throw new Error(`no matching mail in ${dir} within ${timeoutMs} ms; the outbox holds:\n${seen}`);
    }
    await new Promise((ok) => setTimeout(ok, intervalMs));
  }
}

/** The first link in a mail's text (else its HTML) that starts with `prefix`. */
export function mailLink(mail, prefix) {
  const re = new RegExp(`${escapeRegExp(prefix)}[^\\s"'<>]*`);
  const m = mail.text.match(re) ?? mail.html.replace(/&amp;/g, '&').match(re);
  if (!m) throw new Error(`no link starting ${prefix} in the mail "${mail.subject}":\n${mail.text}`);
  return m[0];
}

// ------------------------------------------------------------ more members

/**
 * Runs `tobira <args>` against a running stack's OP: its data dir and database, the
 * `opEnv` the stack was started with, and `opEnv` here on top (a support command reads
 * the same configuration as the server, e.g. the support contact it mails). Resolves
 * with stdout; rejects with stderr when the command exits non-zero.
 */
export function runTobira(stack, args, { opEnv = {}, stdin = '' } = {}) {
  const env = {
    PATH: process.env.PATH,
    HOME: stack.tmp,
    LANG: 'C.UTF-8',
    TOBIRA_DATA_DIR: stack.opDataDir,
    TOBIRA_SERVER__BIND: `127.0.0.1:${new URL(stack.opOrigin).port}`,
    TOBIRA_ISSUER: stack.opOrigin,
    ...stack.opEnv,
    ...opEnv,
  };
  return runCli(TOBIRA_BIN, args, env, stdin);
}

/**
 * Adds a verified member to a running stack's OP with the `tobira` CLI (as
 * startStack seeds MEMBERS), for a test that wants an account of its own.
 * `member` is { email, name, password }; resolves with the CLI's JSON output.
 * `opEnv` adds to what was passed to startStack as `opEnv`, if anything.
 */
export async function addMember(stack, member, { opEnv = {} } = {}) {
  const out = await runTobira(
    stack,
    ['users', 'add', '--email', member.email, '--name', member.name, '--password-stdin', '--verified', '--json'],
    { opEnv, stdin: `${member.password}\n` },
  );
  return JSON.parse(out);
}
