// What a member does in the browser, shared by the test files: fresh browser
// contexts, waiting for a page, the marketplace's way to the OP's sign-in form,
// signing in, My page, screenshots. `pages({ … })` binds them to one file's
// browser, origins, artifacts directory and list of page errors.

import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { artifactPath, launchBrowser, startStack } from './harness.mjs';

export const ACTION_TIMEOUT_MS = 15_000;
export const NAVIGATION_TIMEOUT_MS = 30_000;

/** `to` (a mail's To) names `email` and the subject is `subject`: a `waitForMail` predicate. */
export const mailTo = (email, subject) => (m) => m.to.includes(email) && m.subject === subject;

/** A predicate on a URL: at `origin` + `path` exactly (any query). */
export const isAt = (origin, path) => (u) => u.origin === origin && u.pathname === path;

/** The pages' and mails' clock: throttle.display_utc_offset, +09:00. */
export const DISPLAY_OFFSET_MINUTES = 9 * 60;

/** "2026-12-04 15:42": a moment as the pages and mails write it (+09:00, to the minute). */
export function displayMinute(ms) {
  const d = new Date(ms + DISPLAY_OFFSET_MINUTES * 60_000);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}`;
}

/** A URL fit for the log: token, code and tx values cut short. */
export const redact = (href) => {
  const u = new URL(href);
  for (const k of ['token', 'code', 'tx']) {
    const v = u.searchParams.get(k);
    if (v) u.searchParams.set(k, `${v.slice(0, 8)}...`);
  }
  return u.href;
};

/**
 * One OP + marketplace stack and one Chromium for the test file (call it inside the
 * file's `describe`): started in `before`, with `out` cleared of the last run's
 * screenshots and logs, and stopped in `after`, which prints the page and console
 * errors collected in `problems` (`expected` says which of them are expected).
 * `ready({ stack, browser, op, mp })` hands the started ones to the file; `opEnv`
 * adds to the OP's environment (startStack's `opEnv`); `upstream: true` starts the
 * upstream provider too (startStack's `upstream`; its origin is `stack.upOrigin`).
 */
export function sharedStack({ out, problems, expected, ready, opEnv = {}, upstream = false }) {
  let stack;
  let browser;
  before(async () => {
    await mkdir(out, { recursive: true });
    for (const f of await readdir(out)) {
      if (f.endsWith('.png') || f.endsWith('.log')) await rm(join(out, f), { force: true });
    }
    stack = await startStack({ artifacts: out, opEnv, upstream });
    browser = await launchBrowser();
    const op = stack.opOrigin;
    const mp = stack.mpOrigin;
    const up = upstream ? `; upstream ${stack.upOrigin}` : '';
    console.log(`chromium ${browser.version()}; OP ${op}; marketplace ${mp}${up}; outbox ${stack.outbox}`);
    ready({ stack, browser, op, mp });
  }, { timeout: 180_000 });
  after(async () => {
    await browser?.close().catch((e) => console.log(`closing chromium: ${e.message}`));
    await stack?.stop();
    if (problems.length) console.log(`page and console errors (${expected}):\n${problems.join('\n')}`);
  });
}

/** The visible text of the page, squeezed and cut short, for messages. */
export async function pageText(page) {
  const text = await page.locator('body').innerText({ timeout: 2_000 }).catch(() => '');
  return text.replace(/\s+/g, ' ').trim().slice(0, 400);
}

/**
 * The helpers of one test file. `browser`, `op` (the OP's origin) and `mp` (the
 * marketplace's) are values or functions returning them: the stack and the browser
 * start in `before`, after the helpers are made. `out` is the file's artifacts
 * directory; `problems` collects page errors and console errors of every context;
 * `contexts`, if given, collects every context made by `fresh`.
 */
export function pages({
  browser,
  op,
  mp,
  out,
  problems,
  contexts,
  actionTimeoutMs = ACTION_TIMEOUT_MS,
  navigationTimeoutMs = NAVIGATION_TIMEOUT_MS,
}) {
  const now = (v) => (typeof v === 'function' ? v() : v);
  const OP = () => now(op);
  const MP = () => now(mp);

  /** Waits until the main frame commits a URL matching `predicate`. */
  async function arrive(page, predicate, what) {
    try {
      await page.waitForURL(predicate);
    } catch (e) {
      throw new Error(`${what}: the browser stays at ${redact(page.url())}, showing "${await pageText(page)}"`, { cause: e });
    }
  }

  async function expectAt(page, origin, path, what) {
    const u = new URL(page.url());
    assert.ok(
      isAt(origin, path)(u),
      `${what}: expected ${origin}${path}, the browser is at ${redact(u.href)}, showing "${await pageText(page)}"`,
    );
  }

  /** A fresh browser context (own cookies, so its own tobira_device) and its page. */
  async function fresh(label, options = {}) {
    const context = await now(browser).newContext({
      locale: 'ja-JP',
      viewport: { width: 1280, height: 800 },
      ...options,
    });
    contexts?.push(context);
    context.setDefaultTimeout(actionTimeoutMs);
    context.setDefaultNavigationTimeout(navigationTimeoutMs);
    const page = await context.newPage();
    page.on('pageerror', (e) => problems.push(`[${label}] ${page.url()}: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`[${label}] console: ${m.text()} (${m.location().url || page.url()})`);
    });
    return { context, page };
  }

  /** A full-page screenshot: <out>/<test-name><suffix>.png. */
  async function screenshot(t, page, suffix = '') {
    if (!page || page.isClosed()) return;
    const path = artifactPath(t.name, suffix, out);
    await page.screenshot({ path, fullPage: true }).catch((e) => console.log(`screenshot ${path}: ${e.message}`));
  }

  /** Runs `fn` and screenshots `pageOf()` afterwards, pass or fail; then closes `close`. */
  async function withScreenshot(t, pageOf, fn, { close = [] } = {}) {
    try {
      await fn();
    } finally {
      await screenshot(t, pageOf());
      for (const c of close) await c.close().catch(() => {});
    }
  }

  /** Clicks something that submits or navigates; resolves with the main frame's response. */
  async function clickAndWait(page, locator) {
    const navigated = page.waitForEvent('framenavigated', {
      predicate: (f) => f === page.mainFrame(),
    });
    const response = page.waitForResponse((r) => r.request().isNavigationRequest() && r.frame() === page.mainFrame());
    await locator.click();
    await navigated;
    await page.waitForLoadState('load');
    return response.catch(() => null);
  }

  /** Marketplace top page → ログイン → the OP's sign-in page (no OP session in this browser). */
  async function toOpSignIn(page) {
    const [o, m] = [OP(), MP()];
    await page.goto(`${m}/`);
    await page.locator('a[href="/login"]').filter({ hasText: 'ログイン' }).first().click();
    await arrive(page, (u) => isAt(o, '/login')(u) || (u.origin === m && u.pathname !== '/'), 'after clicking ログイン');
    await expectAt(page, o, '/login', 'after clicking ログイン at the marketplace (no OP session in this browser)');
    await page.locator('#password').waitFor({ state: 'visible' });
  }

  /**
   * Fills and submits the OP's sign-in form; resolves with the answer to the POST
   * (a 303 when the password was taken, else the page shown again).
   */
  async function submitSignIn(page, email, password) {
    const o = OP();
    await page.getByLabel('メールアドレス', { exact: true }).fill(email);
    await page.getByLabel('パスワード', { exact: true }).fill(password);
    const answer = page.waitForResponse(
      (r) => r.request().method() === 'POST' && isAt(o, '/login')(new URL(r.url())) && r.frame() === page.mainFrame(),
    );
    // The page that answers must replace this one before it is read (it shows an
    // error line of its own from the previous attempt).
    const navigated = page.waitForEvent('framenavigated', { predicate: (f) => f === page.mainFrame() });
    await page.locator('form[action="/login"] button[type="submit"]').click();
    const res = await answer;
    await navigated;
    await page.waitForLoadState('load');
    return res;
  }

  /** The sign-in page's error line (`#form-error`) after a refused sign-in. */
  async function formError(page) {
    const error = page.locator('#form-error');
    await error.waitFor({ state: 'visible' });
    return (await error.innerText()).replace(/\s+/g, ' ').trim();
  }

  /** Asserts the marketplace's My page shows `who` signed in. */
  async function expectMyPage(page, who, what) {
    await expectAt(page, MP(), '/mypage', what);
    await page.locator('h1', { hasText: 'マイページ' }).waitFor({ state: 'visible' });
    const text = await page.locator('body').innerText();
    assert.ok(text.includes(who.name), `${what}: My page does not show the name ${who.name}: "${await pageText(page)}"`);
    assert.ok(text.includes(who.email), `${what}: My page does not show the email ${who.email}`);
  }

  /** Signs in with the right password from the OP's sign-in page and lands on My page. */
  async function signInToMyPage(page, who, what) {
    const res = await submitSignIn(page, who.email, who.password);
    assert.equal(res.status(), 303, `${what}: POST /login answered ${res.status()}: "${await pageText(page)}"`);
    await arrive(page, (u) => u.origin === MP(), `${what}: after the right password`);
    await expectMyPage(page, who, what);
  }

  /**
   * Asks for the marketplace's My page in `page` every `pollMs` until it says `who` is
   * signed out (no name or address, a ログイン link), as a back-channel logout makes it;
   * resolves with the ms since `t0` (a `performance.now()`). Fails after `timeoutMs`.
   */
  async function untilSignedOutOfMarketplace(page, who, t0, what, { pollMs = 100, timeoutMs = 20_000 } = {}) {
    const deadline = performance.now() + timeoutMs;
    let asked = 0;
    for (;;) {
      await page.goto(`${MP()}/mypage`);
      asked += 1;
      if ((await page.locator('[data-testid="signin-required"]').count()) === 1) break;
      if (performance.now() > deadline) {
        throw new Error(
          `${what}: the marketplace still shows ${who.name} signed in ${timeoutMs} ms later (${asked} times asked): "${await pageText(page)}"`,
        );
      }
      await new Promise((ok) => setTimeout(ok, pollMs));
    }
    const ms = Math.round(performance.now() - t0);
    const text = await page.locator('body').innerText();
    assert.ok(!text.includes(who.name), `${what}: the signed-out My page still shows ${who.name}: "${await pageText(page)}"`);
    assert.ok(!text.includes(who.email), `${what}: the signed-out My page still shows ${who.email}`);
    const login = page.locator('main a[href="/login"]', { hasText: 'ログイン' });
    assert.equal(await login.count(), 1, `${what}: the signed-out My page offers no ログイン link: "${await pageText(page)}"`);
    return ms;
  }

  return {
    arrive,
    clickAndWait,
    expectAt,
    expectMyPage,
    formError,
    fresh,
    isAt,
    mailTo,
    pageText,
    redact,
    screenshot,
    signInToMyPage,
    submitSignIn,
    toOpSignIn,
    untilSignedOutOfMarketplace,
    withScreenshot,
  };
}
