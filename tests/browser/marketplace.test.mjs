// Real-browser end-to-end test: headless Chromium signs members in to the
// marketplace through the tobira OP, both run from their real binaries.
//
// Members: 花子 (context A) and 太郎 (context B), each in its own browser
// context (own cookies). Every test leaves a full-page screenshot of its final
// page in artifacts/<test-name>.png. Later tests reuse the sessions of earlier
// ones but sign in again by themselves when a session is missing, so each
// failure is reported where it happens.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  ARTIFACTS,
  MEMBERS,
  artifactPath,
  launchBrowser,
  pkceChallenge,
  startStack,
} from './lib/harness.mjs';

const ACTION_TIMEOUT_MS = 15_000;
const NAVIGATION_TIMEOUT_MS = 30_000;
const TEST_TIMEOUT_MS = 120_000;

describe('marketplace sign-in through tobira in Chromium', { concurrency: false }, () => {
  let stack;
  let browser;
  let mp; // marketplace origin, http://127.0.0.1:PORT
  let op; // OP origin (the issuer), http://localhost:PORT
  const ctx = {}; // { hanako: { context, page }, taro: { context, page } }
  const problems = []; // page errors seen in any context

  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    for (const f of await readdir(ARTIFACTS)) {
      if (f.endsWith('.png') || f.endsWith('.log')) await rm(join(ARTIFACTS, f), { force: true });
    }
    stack = await startStack();
    mp = stack.mpOrigin;
    op = stack.opOrigin;
    browser = await launchBrowser();
    console.log(`chromium ${browser.version()}; OP ${op}; marketplace ${mp}`);
  }, { timeout: 180_000 });

  after(async () => {
    await browser?.close().catch((e) => console.log(`closing chromium: ${e.message}`));
    await stack?.stop();
    if (problems.length) console.log(`page errors:\n${problems.join('\n')}`);
  });

  // ------------------------------------------------------------- helpers

  const isAt = (origin, path) => (u) => u.origin === origin && u.pathname === path;

  /** A URL fit for the log: token and code values cut short. */
  const redact = (href) => {
    const u = new URL(href);
    for (const k of ['id_token_hint', 'code', 'code_verifier', 'client_secret']) {
      const v = u.searchParams.get(k);
      if (v) u.searchParams.set(k, `${v.slice(0, 8)}...`);
    }
    return u.href;
  };

  /** The visible text of the page, squeezed and cut short, for messages. */
  async function pageText(page) {
    const text = await page.locator('body').innerText({ timeout: 2_000 }).catch(() => '');
    return text.replace(/\s+/g, ' ').trim().slice(0, 400);
  }

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

  /** The member's browser context and page, created on first use. */
  async function member(key) {
    if (!ctx[key]) {
      const context = await browser.newContext({
        locale: 'ja-JP',
        viewport: { width: 1280, height: 800 },
      });
      context.setDefaultTimeout(ACTION_TIMEOUT_MS);
      context.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT_MS);
      const page = await context.newPage();
      page.on('pageerror', (e) => problems.push(`[${key}] ${page.url()}: ${e.message}`));
      ctx[key] = { context, page };
    }
    return ctx[key];
  }

  async function screenshot(t, page, suffix = '') {
    if (!page || page.isClosed()) return;
    const path = artifactPath(t.name, suffix);
    await page.screenshot({ path, fullPage: true }).catch((e) => console.log(`screenshot ${path}: ${e.message}`));
  }

  /** Runs `fn` and screenshots `pageOf()` afterwards, pass or fail. */
  async function withScreenshot(t, pageOf, fn) {
    try {
      await fn();
    } finally {
      await screenshot(t, pageOf());
    }
  }

  /** Clicks something that submits or navigates, and waits for the next page. */
  async function clickAndWait(page, locator) {
    const navigated = page.waitForEvent('framenavigated', {
      predicate: (f) => f === page.mainFrame(),
    });
    await locator.click();
    await navigated;
    await page.waitForLoadState('load');
  }

  /**
   * Signs `key` in the way a person does: marketplace top page → "ログイン" →
   * the OP's sign-in form → My page. Returns the wall time from the click on
   * "ログイン" until My page's heading is visible, and the bodies of everything
   * the browser fetched from the OP while showing its sign-in page.
   */
  async function signIn(key) {
    const who = MEMBERS[key];
    const { page } = await member(key);

    await page.goto(`${mp}/`);
    const login = page.locator('a[href="/login"]').filter({ hasText: 'ログイン' }).first();
    await login.waitFor({ state: 'visible' });

    // Everything requested from the OP from the sign-in page's own request on
    // (the HTML and what it loads) until the form is submitted.
    const fetched = [];
    let onSignInPage = false;
    const onRequest = (req) => {
      const u = new URL(req.url());
      if (u.origin !== op) return;
      if (u.pathname === '/login' && req.method() === 'GET' && req.isNavigationRequest()) onSignInPage = true;
    };
    const onResponse = (res) => {
      const u = new URL(res.url());
      if (!onSignInPage || u.origin !== op) return;
      const redirect = res.status() >= 300 && res.status() < 400;
      fetched.push(
        (redirect ? Promise.resolve(Buffer.alloc(0)) : res.body()).then(
          (b) => ({ url: res.url(), status: res.status(), bytes: b.length }),
          (e) => ({ url: res.url(), status: res.status(), bytes: 0, error: e.message }),
        ),
      );
    };
    page.on('request', onRequest);
    page.on('response', onResponse);

    const t0 = performance.now();
    let weight = [];
    try {
      await login.click();
      // The OP shows its sign-in form, or (single sign-on) sends the browser
      // straight back to the marketplace.
      await arrive(
        page,
        (u) => isAt(op, '/login')(u) || (u.origin === mp && u.pathname !== '/'),
        'after clicking ログイン on the top page',
      );
      if (isAt(op, '/login')(new URL(page.url()))) {
        await page.locator('#email').fill(who.email);
        await page.locator('#password').fill(who.password);
        assert.equal(await page.locator('input[name="remember"]').count(), 1, 'no "remember" checkbox on the sign-in page');
        await page.waitForLoadState('load');
        weight = await Promise.all(fetched);
        onSignInPage = false;
        await page.locator('button[type="submit"]').click();
        await arrive(page, (u) => u.origin === mp, 'after submitting the OP sign-in form');
      }
      await expectAt(page, mp, '/mypage', 'after signing in');
      await page.locator('h1', { hasText: 'マイページ' }).waitFor({ state: 'visible' });
    } finally {
      page.off('request', onRequest);
      page.off('response', onResponse);
    }
    const ms = Math.round(performance.now() - t0);
    return { page, ms, weight };
  }

  /** `key`'s page, on My page and signed in (signing in when needed). */
  async function signedIn(key) {
    const { page } = await member(key);
    const res = await page.goto(`${mp}/mypage`);
    const signedOut = (await page.locator('[data-testid="signin-required"]').count()) > 0;
    if (res?.ok() && !signedOut && (await page.locator('h1', { hasText: 'マイページ' }).count()) > 0) return page;
    return (await signIn(key)).page;
  }

  /** Absolute URL of the member's public profile, from My page's profile link. */
  async function profileUrl(page) {
    const href = await page.locator('a[data-testid="profile-link"]').first().getAttribute('href');
    assert.ok(href, 'profile link has no href');
    const url = new URL(href, page.url());
    assert.equal(url.origin, mp, `profile link leaves the marketplace: ${href}`);
    assert.match(url.pathname, /^\/users\/[^/]+$/, `profile link is not /users/<member_id>: ${href}`);
    return url.href;
  }

  function authorizeUrl(params = {}) {
    const q = new URLSearchParams({
      response_type: 'code',
      client_id: stack.clientId,
      redirect_uri: `${mp}/callback`,
      scope: 'openid',
      state: 'x',
      nonce: 'n',
      code_challenge: pkceChallenge(),
      code_challenge_method: 'S256',
      ...params,
    });
    return `${op}/authorize?${q}`;
  }

  /**
   * Asks the OP for a silent sign-in (prompt=none) in `page` and returns the
   * URL the OP sent the browser back to (read from the request to the
   * marketplace's /callback, whatever the marketplace then does with it).
   */
  async function silentAuthorize(page) {
    const callback = page.waitForRequest((r) => r.url().startsWith(`${mp}/callback`));
    await page.goto(authorizeUrl({ prompt: 'none' })).catch(() => {});
    return new URL((await callback).url());
  }

  // --------------------------------------------------------------- tests

  it('signs in from the marketplace and lands on My page', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const who = MEMBERS.hanako;
    await withScreenshot(t, () => ctx.hanako?.page, async () => {
      const { page, ms, weight } = await signIn('hanako');
      console.log(`sign-in to My page: ${ms} ms`);
      const total = weight.reduce((n, r) => n + r.bytes, 0);
      console.log(`sign-in page weight: ${total} bytes`);
      for (const r of weight) console.log(`  ${r.status} ${r.bytes} bytes ${r.url}${r.error ? ` (${r.error})` : ''}`);
      assert.ok(weight.some((r) => new URL(r.url).pathname === '/login'), 'the OP sign-in page itself was not seen');

      const text = await page.locator('body').innerText();
      assert.ok(text.includes(who.name), `My page does not show the name ${who.name}`);
      assert.ok(text.includes(who.email), `My page does not show the email ${who.email}`);

      const lastLogin = page.locator('[data-testid="last-login"]');
      await lastLogin.first().waitFor({ state: 'visible' });
      const lastLoginText = (await lastLogin.first().innerText()).trim();
      assert.ok(lastLoginText, '[data-testid="last-login"] is empty');
      console.log(`My page last-login: ${lastLoginText}`);

      const hrefs = await page.locator('a[href]').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
      const consoleLinks = hrefs.filter((h) => h.startsWith(`${op}/account`));
      assert.ok(
        consoleLinks.length > 0,
        `no link to the OP's account console (${op}/account…); links on the page: ${hrefs.join(' ')}`,
      );
      console.log(`account console links: ${consoleLinks.join(' ')}`);
      // Every console link works: with the OP session of this browser, each opens at once.
      for (const href of consoleLinks) {
        const tab = await page.context().newPage();
        const res = await tab.goto(href);
        assert.equal(res.status(), 200, `${href} answered ${res.status()}`);
        // Not sent to the sign-in page (the password page has a #password field of its own).
        assert.equal(new URL(tab.url()).pathname, new URL(href).pathname, `${href} asked to sign in again: ${tab.url()}`);
        assert.equal(await tab.locator('#reauth-notice').count(), 0, `${href} asked to sign in again`);
        if (new URL(href).pathname === '/account') {
          const seen = await tab.locator('body').innerText();
          assert.ok(seen.includes(who.email), `${href} does not show ${who.email}: ${seen}`);
        }
        await tab.close();
      }

      console.log(`profile link: ${await profileUrl(page)}`);
      assert.equal(
        await page.locator('form[action="/logout"] button[type="submit"]').count(),
        1,
        'no sign-out button form[action="/logout"] button[type="submit"]',
      );
    });
  });

  it("opens another member's public profile and sees their last sign-in time", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    await withScreenshot(t, () => ctx.taro?.page, async () => {
      const hanakoProfile = await profileUrl(await signedIn('hanako'));

      const taro = await signedIn('taro');
      assert.ok((await taro.locator('body').innerText()).includes(MEMBERS.taro.name), '太郎 does not see his own name on My page');
      const taroProfile = await profileUrl(taro);
      assert.notEqual(taroProfile, hanakoProfile, 'both members have the same profile URL');

      const res = await taro.goto(hanakoProfile);
      assert.equal(res?.status(), 200, `GET ${hanakoProfile}`);
      await taro.locator('h1', { hasText: MEMBERS.hanako.name }).waitFor({ state: 'visible' });
      const lastLogin = taro.locator('[data-testid="last-login"]');
      await lastLogin.waitFor({ state: 'visible' });
      const text = await lastLogin.innerText();
      assert.ok(text.includes('最終ログイン'), `last-login reads "${text}"`);
      console.log(`花子's profile as seen by 太郎: ${text.trim()}`);
    });
  });

  it('hides and shows again one\'s own last sign-in time', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    await withScreenshot(t, () => ctx.taro?.page, async () => {
      const hanako = await signedIn('hanako');
      const hanakoProfile = await profileUrl(hanako);
      const taro = await signedIn('taro');

      const setShowLastLogin = async (show) => {
        const res = await hanako.goto(`${mp}/settings/privacy`);
        assert.equal(res?.status(), 200, 'GET /settings/privacy');
        const box = hanako.locator('input[name="show_last_login"]');
        const form = hanako.locator('form', { has: box });
        assert.equal(await form.count(), 1, 'no single form with input[name="show_last_login"]');
        assert.equal(await box.isChecked(), !show, `show_last_login before saving ${show}`);
        await box.setChecked(show);
        await clickAndWait(hanako, form.locator('button[type="submit"]'));
        assert.ok(isAt(mp, '/settings/privacy')(new URL(hanako.url())), `after saving the browser is at ${hanako.url()}`);
        assert.equal(await hanako.locator('input[name="show_last_login"]').isChecked(), show, 'page after saving shows the old state');
        await hanako.reload();
        assert.equal(await hanako.locator('input[name="show_last_login"]').isChecked(), show, 'the setting did not stick');
      };

      // Shown by default.
      await taro.goto(hanakoProfile);
      await taro.locator('[data-testid="last-login"]').waitFor({ state: 'visible' });

      await setShowLastLogin(false);
      await screenshot(t, hanako, '-settings-off');
      const res = await taro.reload();
      assert.equal(res?.status(), 200, `GET ${hanakoProfile} after hiding`);
      await taro.locator('h1', { hasText: MEMBERS.hanako.name }).waitFor({ state: 'visible' });
      assert.equal(await taro.locator('[data-testid="last-login"]').count(), 0, '太郎 still sees 花子\'s last sign-in time');
      assert.ok(!(await taro.locator('body').innerText()).includes('最終ログイン'), '最終ログイン still on the page');
      await screenshot(t, taro, '-hidden');

      await setShowLastLogin(true);
      await taro.reload();
      const lastLogin = taro.locator('[data-testid="last-login"]');
      await lastLogin.waitFor({ state: 'visible' });
      assert.ok((await lastLogin.innerText()).includes('最終ログイン'), 'last sign-in time not back');
    });
  });

  it('signs out of the marketplace and of the OP', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    await withScreenshot(t, () => ctx.hanako?.page, async () => {
      const page = await signedIn('hanako');
      const { context } = ctx.hanako;
      const before = await context.storageState();

      const visited = [];
      const onRequest = (r) => {
        if (r.isNavigationRequest() && r.frame() === page.mainFrame()) visited.push(`${r.method()} ${redact(r.url())}`);
      };
      page.on('request', onRequest);
      try {
        await page.locator('form[action="/logout"] button[type="submit"]').click();
        await arrive(page, (u) => u.origin === mp && u.pathname !== '/mypage', 'after signing out');
        await expectAt(page, mp, '/', 'after signing out');
        await page.waitForLoadState('load');
      } finally {
        page.off('request', onRequest);
      }
      console.log(`sign-out went through:\n  ${visited.join('\n  ')}`);
      assert.ok(
        visited.some((v) => v.includes(`${op}/end-session`)),
        `sign-out did not pass through ${op}/end-session`,
      );
      await page.locator('a[href="/login"]').first().waitFor({ state: 'visible' });
      await screenshot(t, page, '-top');

      // The marketplace no longer knows the member.
      const res = await page.goto(`${mp}/mypage`);
      assert.equal(res?.status(), 200, 'GET /mypage signed out');
      await page.locator('[data-testid="signin-required"]').waitFor({ state: 'visible' });
      assert.ok((await page.locator('a[href="/login"]').count()) > 0, 'no sign-in link on /mypage signed out');

      // Nor does the OP: a silent sign-in is refused.
      const back = await silentAuthorize(page);
      assert.equal(back.searchParams.get('error'), 'login_required', `prompt=none after sign-out: ${back}`);
      assert.equal(back.searchParams.get('state'), 'x');
      assert.equal(back.searchParams.get('code'), null);

      // Not even with the cookies from before the sign-out (the sessions are
      // gone on the servers, not just the cookies in the browser).
      const replay = await browser.newContext({ locale: 'ja-JP', storageState: before });
      try {
        replay.setDefaultTimeout(ACTION_TIMEOUT_MS);
        const old = await replay.newPage();
        const again = await silentAuthorize(old);
        assert.equal(again.searchParams.get('error'), 'login_required', `prompt=none with pre-sign-out cookies: ${again}`);
        const stale = await old.goto(`${mp}/mypage`);
        const stillIn = (await old.locator('[data-testid="signin-required"]').count()) === 0;
        console.log(
          `marketplace /mypage with pre-sign-out cookies: ${stale?.status()} ${stillIn ? 'STILL SIGNED IN' : 'signed out'}`,
        );
      } finally {
        await replay.close();
      }

      // Leave the signed-out My page as this test's final page.
      await page.goto(`${mp}/mypage`);
    });
  });
});
