// Starts the real `tobira` OP and the real `marketplace` RP on free loopback
// ports (fresh temp data dirs), seeds two members and the marketplace client,
// and launches Debian's headless Chromium through playwright-core.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { access, constants, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
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

/** Two distinct free ports. */
async function twoFreePorts() {
  for (;;) {
    const a = await freePort();
    const b = await freePort();
    if (a !== b) return [a, b];
  }
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
 * Starts OP + marketplace. Resolves with
 * { op, mp, opOrigin, mpOrigin, clientId, clientSecret, stop() }
 * (`marketplace: false` starts the OP alone: mp is then undefined).
 * On a failure half-way, whatever was started is stopped before rejecting.
 */
export async function startStack({ marketplace = true } = {}) {
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
  const stack = { tmp, op: undefined, mp: undefined };
  stack.stop = async () => {
    await Promise.all([stopServer(stack.mp?.child), stopServer(stack.op?.child)]);
    await mkdir(ARTIFACTS, { recursive: true });
    if (stack.op) await writeFile(join(ARTIFACTS, 'tobira.log'), stack.op.log());
    if (stack.mp) await writeFile(join(ARTIFACTS, 'marketplace.log'), stack.mp.log());
    await rm(tmp, { recursive: true, force: true });
  };

  try {
    const [opPort, mpPort] = await twoFreePorts();
    const base = { PATH: process.env.PATH, HOME: tmp, LANG: 'C.UTF-8' };
    if (process.env.RUST_LOG) base.RUST_LOG = process.env.RUST_LOG;

    stack.opOrigin = `http://localhost:${opPort}`;
    stack.mpOrigin = `http://127.0.0.1:${mpPort}`;
    const opEnv = {
      ...base,
      TOBIRA_DATA_DIR: join(tmp, 'op'),
      TOBIRA_SERVER__BIND: `127.0.0.1:${opPort}`,
      TOBIRA_ISSUER: stack.opOrigin,
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

/** File name for a test's screenshot: artifacts/<test-name>.png */
export function artifactPath(testName, suffix = '') {
  const slug = testName
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 100);
  return join(ARTIFACTS, `${slug}${suffix}.png`);
}
