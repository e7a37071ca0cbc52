// Interoperability test: the certified relying-party library `openid-client`
// against the real `tobira` binary (authorization code + PKCE, ID token
// validation, userinfo, refresh-token rotation, RP-initiated logout, and an
// emergency signing-key rotation with `tobira keys rotate --now`).
//
// The browser is simulated with fetch(redirect: 'manual') and a small cookie jar.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access, constants, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as client from 'openid-client';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TOBIRA_BIN = process.env.TOBIRA_BIN
  ? resolve(process.env.TOBIRA_BIN)
  : join(REPO, 'target', 'release', 'tobira');

const EMAIL = 'member@example.jp';
const PASSWORD = 'violet-tunnel-ramen-42';
const NAME = '花子';
// Nothing listens here: redirects to the RP are read, never followed.
const RP = 'http://127.0.0.1:9';
const REDIRECT_URI = `${RP}/cb`;
const POST_LOGOUT_URI = `${RP}/logged-out`;
const SCOPE = 'openid email profile offline_access';
const STARTUP_TIMEOUT_MS = 60_000;
// How often the server reads its key ring again: short, so that `keys rotate --now`
// (which waits one interval before the new key signs) returns within a moment.
const RELOAD_INTERVAL_MS = 200;

// ---------------------------------------------------------------- processes

function freePort() {
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

/** Runs a tobira CLI command to completion; rejects with its stderr on failure. */
function runCli(args, env, stdin = '') {
  return new Promise((ok, fail) => {
    const child = spawn(TOBIRA_BIN, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.once('error', fail);
    child.once('close', (code, signal) => {
      if (code === 0) ok(stdout);
      else fail(new Error(`tobira ${args.join(' ')} exited with ${code ?? signal}:\n${stderr}`));
    });
    child.stdin.end(stdin);
  });
}

/** Starts `tobira serve` and resolves once it logs that it is listening. */
function startServer(env) {
  return new Promise((ok, fail) => {
    const child = spawn(TOBIRA_BIN, ['serve'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let ready = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`tobira serve did not log "listening on http://" within ${STARTUP_TIMEOUT_MS} ms:\n${stderr}`));
    }, STARTUP_TIMEOUT_MS);
    child.stderr.setEncoding('utf8').on('data', (d) => {
      stderr += d;
      if (!ready && stderr.includes('listening on http://')) {
        ready = true;
        clearTimeout(timer);
        ok({ child, stderr: () => stderr });
      }
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      fail(err);
    });
    child.once('exit', (code, signal) => {
      if (!ready) {
        clearTimeout(timer);
        fail(new Error(`tobira serve exited early with ${code ?? signal}:\n${stderr}`));
      }
    });
  });
}

async function stopServer(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((ok) => child.once('exit', ok));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

// ------------------------------------------------------------------ browser

/** A minimal browser: manual redirects and a cookie jar for one origin. */
class Browser {
  constructor(origin) {
    this.origin = origin;
    this.jar = new Map();
  }

  cookieHeader() {
    return [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  snapshot() {
    return new Map(this.jar);
  }

  storeCookies(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq < 1) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => {
        const [k, v = ''] = a.split('=');
        return k.trim().toLowerCase() === 'max-age' && Number(v.trim()) <= 0;
      });
      if (expired) this.jar.delete(name);
      else this.jar.set(name, value);
    }
  }

  async request(url, { method = 'GET', form, jar = this.jar } = {}) {
    const target = new URL(url, this.origin);
    const headers = {};
    const cookies = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    if (cookies) headers.cookie = cookies;
    let body;
    if (form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(form).toString();
    }
    const res = await fetch(target, { method, headers, body, redirect: 'manual' });
    if (jar === this.jar) this.storeCookies(res);
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, url: target };
  }
}

function describeResponse(res) {
  return `${res.status} ${res.url}\nlocation: ${res.headers.get('location')}\n${res.text.slice(0, 2000)}`;
}

function expectRedirect(res, what) {
  assert.equal(res.status, 303, `${what}: expected 303, got ${describeResponse(res)}`);
  const location = res.headers.get('location');
  assert.ok(location, `${what}: 303 without location`);
  return location;
}

function decodeEntities(s) {
  return s
    .replace(/&quot;/g, '"')
    .replace(/&#x27;|&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** Value of `<input type="hidden" name=NAME value=...>` in an HTML page. */
function hiddenInput(html, name) {
  for (const [tag] of html.matchAll(/<input\b[^>]*>/gi)) {
    const attr = (a) => tag.match(new RegExp(`\\b${a}\\s*=\\s*(?:"([^"]*)"|'([^']*)')`, 'i'));
    const n = attr('name');
    const t = attr('type');
    if (n && (n[1] ?? n[2]) === name && t && (t[1] ?? t[2]).toLowerCase() === 'hidden') {
      const v = attr('value');
      return v ? decodeEntities(v[1] ?? v[2]) : '';
    }
  }
  return undefined;
}

/** The JWK set the OP publishes now, fetched past any cache. */
async function fetchJwks(uri) {
  const res = await fetch(uri, { headers: { 'cache-control': 'no-cache' } });
  assert.equal(res.status, 200, `GET ${uri}`);
  const { keys } = await res.json();
  assert.ok(Array.isArray(keys), `no keys in the JWKS at ${uri}`);
  return keys;
}

/** The protected header of a compact JWS. */
function jwsHeader(jws) {
  return JSON.parse(Buffer.from(jws.split('.')[0], 'base64url').toString('utf8'));
}

function callbackParams(location) {
  const url = new URL(location);
  assert.equal(`${url.origin}${url.pathname}`, REDIRECT_URI, `redirect to the wrong place: ${location}`);
  return url;
}

// -------------------------------------------------------------------- tests

describe('openid-client against tobira', { concurrency: false }, () => {
  let tmp;
  let server;
  let issuer;
  let clientId;
  let config;
  let browser;
  let env;
  let clientSecret;
  // Filled by the steps in order; a later step fails early when one is missing.
  const s = {};

  const need = (...keys) => {
    for (const k of keys) {
      if (s[k] === undefined) throw new Error(`an earlier step did not produce ${k}`);
    }
  };

  before(async () => {
    await access(TOBIRA_BIN, constants.X_OK).catch(() => {
      throw new Error(
        `no tobira binary at ${TOBIRA_BIN}: build it (cargo build --release --bin tobira) or set TOBIRA_BIN`,
      );
    });
    tmp = await mkdtemp(join(tmpdir(), 'tobira-interop-'));
    const port = await freePort();
    issuer = `http://localhost:${port}`;
    env = {
      PATH: process.env.PATH,
      HOME: tmp,
      LANG: 'C.UTF-8',
      TOBIRA_DATA_DIR: join(tmp, 'data'),
      TOBIRA_SERVER__BIND: `127.0.0.1:${port}`,
      TOBIRA_ISSUER: issuer,
      TOBIRA_KEYS__RELOAD_INTERVAL_MS: String(RELOAD_INTERVAL_MS),
    };

    await runCli(
      ['users', 'add', '--email', EMAIL, '--password-stdin', '--verified', '--name', NAME],
      env,
      `${PASSWORD}\n`,
    );
    const out = await runCli(
      [
        'clients', 'add', '--name', 'interop',
        '--redirect-uri', REDIRECT_URI,
        '--post-logout-redirect-uri', POST_LOGOUT_URI,
        '--first-party', '--grant', 'refresh_token', '--json',
      ],
      env,
    );
    const registered = JSON.parse(out);
    assert.ok(registered.client_id, `no client_id in ${out}`);
    assert.ok(registered.client_secret, `no client_secret in ${out}`);
    clientId = registered.client_id;
    clientSecret = registered.client_secret;

    server = await startServer(env);
    // Last resort if the test process dies without running `after`.
    process.once('exit', () => server?.child.kill('SIGKILL'));

    config = await client.discovery(
      new URL(issuer),
      clientId,
      undefined,
      client.ClientSecretBasic(clientSecret),
      { execute: [client.allowInsecureRequests] },
    );
    browser = new Browser(issuer);
  }, { timeout: 120_000 });

  after(async () => {
    if (server) await stopServer(server.child);
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('discovery names the issuer and the endpoints', () => {
    const meta = config.serverMetadata();
    assert.equal(meta.issuer, issuer);
    for (const k of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'jwks_uri']) {
      assert.ok(meta[k], `discovery lacks ${k}`);
    }
    assert.ok(meta.code_challenge_methods_supported?.includes('S256'), 'S256 not advertised');
  });

  it('signs in through the authorization code flow with PKCE', async () => {
    s.codeVerifier = client.randomPKCECodeVerifier();
    s.state = client.randomState();
    s.nonce = client.randomNonce();
    const authUrl = client.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT_URI,
      scope: SCOPE,
      code_challenge: await client.calculatePKCECodeChallenge(s.codeVerifier),
      code_challenge_method: 'S256',
      state: s.state,
      nonce: s.nonce,
    });

    // 1. /authorize sends the browser to the sign-in page.
    let res = await browser.request(authUrl);
    const loginPage = expectRedirect(res, 'GET /authorize');
    assert.match(loginPage, /^\/login\?tx=/, `unexpected sign-in redirect ${loginPage}`);

    // 2. The sign-in page carries the CSRF token and the transaction.
    res = await browser.request(loginPage);
    assert.equal(res.status, 200, describeResponse(res));
    const csrf = hiddenInput(res.text, 'csrf');
    const tx = hiddenInput(res.text, 'tx');
    assert.ok(csrf, 'no hidden csrf input on the sign-in page');
    assert.ok(tx, 'no hidden tx input on the sign-in page');
    assert.ok(browser.jar.has('tobira_csrf'), 'sign-in page did not set tobira_csrf');

    // 3. Submitting the form signs in.
    res = await browser.request('/login', {
      method: 'POST',
      form: { csrf, tx, email: EMAIL, password: PASSWORD },
    });
    const cont = expectRedirect(res, 'POST /login');
    assert.match(cont, /^\/authorize\/continue\?tx=/, `unexpected redirect after sign-in ${cont}`);
    assert.ok(browser.jar.has('tobira_session'), 'sign-in did not set tobira_session');

    // 4. Continuing the authorization returns to the RP with a code.
    res = await browser.request(cont);
    const callback = expectRedirect(res, 'GET /authorize/continue');
    const cb = callbackParams(callback);
    assert.ok(cb.searchParams.get('code'), `no code in ${callback}`);
    assert.equal(cb.searchParams.get('state'), s.state);
    assert.equal(cb.searchParams.get('iss'), issuer);
    s.callback = callback;
  });

  it('exchanges the code and validates the ID token', async () => {
    need('callback');
    const tokens = await client.authorizationCodeGrant(config, new URL(s.callback), {
      pkceCodeVerifier: s.codeVerifier,
      expectedState: s.state,
      expectedNonce: s.nonce,
      idTokenExpected: true,
    });
    assert.equal(tokens.token_type.toLowerCase(), 'bearer');
    assert.ok(tokens.access_token, 'no access_token');
    assert.ok(tokens.id_token, 'no id_token');
    assert.ok(tokens.refresh_token, 'no refresh_token for offline_access');

    const claims = tokens.claims();
    assert.equal(claims.iss, issuer);
    assert.deepEqual([].concat(claims.aud), [clientId]);
    assert.equal(claims.nonce, s.nonce);
    assert.ok(typeof claims.sub === 'string' && claims.sub, 'no sub');
    assert.ok(typeof claims.sid === 'string' && claims.sid, `no sid in ${JSON.stringify(claims)}`);
    assert.ok(Array.isArray(claims.amr) && claims.amr.includes('pwd'), `amr lacks pwd: ${JSON.stringify(claims.amr)}`);

    s.tokens = tokens;
    s.sub = claims.sub;
  });

  it('returns the member at userinfo', async () => {
    need('tokens', 'sub');
    const info = await client.fetchUserInfo(config, s.tokens.access_token, s.sub);
    assert.equal(info.sub, s.sub);
    assert.equal(info.email, EMAIL);
    assert.equal(info.email_verified, true);
    assert.equal(info.name, NAME);
  });

  it('rotates the refresh token and refuses the old one', async () => {
    need('tokens', 'sub');
    const old = s.tokens.refresh_token;
    const fresh = await client.refreshTokenGrant(config, old);
    assert.ok(fresh.access_token, 'no access_token from refresh');
    assert.ok(fresh.refresh_token, 'no refresh_token from refresh');
    assert.notEqual(fresh.refresh_token, old, 'refresh token was not rotated');
    if (fresh.id_token) {
      const claims = fresh.claims();
      assert.equal(claims.sub, s.sub);
      assert.deepEqual([].concat(claims.aud), [clientId]);
    }

    const info = await client.fetchUserInfo(config, fresh.access_token, s.sub);
    assert.equal(info.email, EMAIL);

    await assert.rejects(
      client.refreshTokenGrant(config, old),
      (err) => {
        assert.ok(err instanceof client.ResponseBodyError, `expected ResponseBodyError, got ${err}`);
        assert.equal(err.error, 'invalid_grant');
        return true;
      },
    );
  });

  it('logs out through the end-session endpoint (RP-initiated logout)', async () => {
    assert.ok(config.serverMetadata().end_session_endpoint, 'discovery lists end_session_endpoint');
    need('tokens');
    s.cookiesBeforeLogout = browser.snapshot();
    const url = client.buildEndSessionUrl(config, {
      id_token_hint: s.tokens.id_token,
      post_logout_redirect_uri: POST_LOGOUT_URI,
      state: 'bye-123',
    });
    const res = await browser.request(url);
    const location = expectRedirect(res, 'GET end_session_endpoint');
    assert.ok(location.startsWith(POST_LOGOUT_URI), `logout redirected to ${location}`);
    const back = new URL(location);
    assert.equal(`${back.origin}${back.pathname}`, POST_LOGOUT_URI);
    assert.equal(back.searchParams.get('state'), 'bye-123');
    s.loggedOut = true;
  });

  it('has no session after logout (prompt=none gives login_required)', async () => {
    assert.ok(s.loggedOut, 'logout ran');
    // Once with the browser's cookies as they are after logout, once with the
    // cookies from before it: the session must be gone on the server too.
    for (const [label, jar] of [
      ['cookies after logout', browser.jar],
      ['cookies from before logout', s.cookiesBeforeLogout],
    ]) {
      const codeVerifier = client.randomPKCECodeVerifier();
      const state = client.randomState();
      const authUrl = client.buildAuthorizationUrl(config, {
        redirect_uri: REDIRECT_URI,
        scope: SCOPE,
        code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
        code_challenge_method: 'S256',
        state,
        nonce: client.randomNonce(),
        prompt: 'none',
      });
      const res = await browser.request(authUrl, { jar });
      const location = expectRedirect(res, `GET /authorize prompt=none (${label})`);
      const cb = callbackParams(location);
      assert.equal(cb.searchParams.get('error'), 'login_required', `${label}: ${location}`);
      assert.equal(cb.searchParams.get('state'), state, label);
      assert.equal(cb.searchParams.get('code'), null, label);
      await assert.rejects(
        client.authorizationCodeGrant(config, cb, { pkceCodeVerifier: codeVerifier, expectedState: state }),
        (err) => {
          assert.ok(err instanceof client.AuthorizationResponseError, `${label}: got ${err}`);
          assert.equal(err.error, 'login_required');
          return true;
        },
      );
    }
  });

  it('rotates the signing key at once: both keys published, the next ID token signed by the new one', async () => {
    const jwksUri = config.serverMetadata().jwks_uri;
    const before = await fetchJwks(jwksUri);
    const oldKids = new Set(before.map((k) => k.kid));

    // Same configuration as the server, as an operator runs it beside it; it returns
    // once the new key signs.
    await runCli(['keys', 'rotate', '--now', '--alg', 'RS256'], env);

    // At once: a client that fetches the JWKS now finds the new key, and tokens signed
    // by the old one still verify.
    const after = await fetchJwks(jwksUri);
    const kids = new Set(after.map((k) => k.kid));
    for (const kid of oldKids) assert.ok(kids.has(kid), `old key ${kid} left the JWKS at once`);
    const added = after.filter((k) => !oldKids.has(k.kid));
    assert.equal(added.length, 1, `one new key expected: ${JSON.stringify(added)}`);
    assert.equal(added[0].alg, 'RS256');

    // A relying party that checks every ID token's signature against the JWKS (it
    // fetches the set when it first needs it, after the rotation).
    const verifying = await client.discovery(
      new URL(issuer),
      clientId,
      undefined,
      client.ClientSecretBasic(clientSecret),
      { execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks] },
    );
    const signer = new Browser(issuer);
    const codeVerifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const authUrl = client.buildAuthorizationUrl(verifying, {
      redirect_uri: REDIRECT_URI,
      scope: SCOPE,
      code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
    let res = await signer.request(authUrl);
    res = await signer.request(expectRedirect(res, 'GET /authorize'));
    assert.equal(res.status, 200, describeResponse(res));
    res = await signer.request('/login', {
      method: 'POST',
      form: { csrf: hiddenInput(res.text, 'csrf'), tx: hiddenInput(res.text, 'tx'), email: EMAIL, password: PASSWORD },
    });
    res = await signer.request(expectRedirect(res, 'POST /login'));
    const callback = expectRedirect(res, 'GET /authorize/continue');

    const tokens = await client.authorizationCodeGrant(verifying, new URL(callback), {
      pkceCodeVerifier: codeVerifier,
      expectedState: state,
      expectedNonce: nonce,
      idTokenExpected: true,
    });
    assert.equal(jwsHeader(tokens.id_token).kid, added[0].kid, 'the next ID token is signed by the new key');
    assert.equal(tokens.claims().nonce, nonce);
  });
});
