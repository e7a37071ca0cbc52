// Real-browser end-to-end test of passkeys (パスキー, issue 14) the way a member meets them:
// registering one in the OP's console from the marketplace's My page, signing in with it
// from the marketplace (「パスキーでログイン」, no email and no password), through the
// browser's own autofill (conditional mediation), and as the second step after a password.
// The member's authenticator is Chromium's virtual one, added through the DevTools
// protocol (`WebAuthn.addVirtualAuthenticator` on a CDP session of the page: ctap2,
// internal, resident keys, user verification); it keeps its credentials across
// navigations of that page, so each member keeps one page.
//
// Headless Chromium completes a conditional request by itself as soon as the authenticator
// holds a credential for the site and simulates the member's presence: the sign-in page
// would then sign in before any button is pressed. So presence is off while a sign-in page
// loads (its autofill request then stays pending) and turned on just before the member's
// click (the page's script aborts the pending request and starts its own); the autofill
// test turns it on before the page loads, so that request itself signs in.
//
// One OP + marketplace stack for the whole file (the OP at http://localhost:PORT: passkeys
// need a domain name). The first three tests follow one member in one page, in order.
// Prints `passkey sign-in: N ms` (click to My page) and `passkey autofill sign-in: N ms`.
//
// Screenshots and the servers' logs go to artifacts/passkeys/.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ARTIFACTS, addMember, waitForMail } from './lib/harness.mjs';
import { pages, sharedStack } from './lib/pages.mjs';
import { base32Decode, nextCode } from './lib/totp.mjs';

const TEST_TIMEOUT_MS = 120_000;
const MAIL_TIMEOUT_MS = 15_000;
const OUT = join(ARTIFACTS, 'passkeys');

/** The paths of the pages under test (crates/auth/src/account/mod.rs, oidc/paths.rs). */
const PATH = {
  passkeys: '/account/passkeys',
  secondStep: '/login/second-step',
  twoStep: '/account/2fa',
};

/** What the pages say (crates/auth/src/web/i18n.rs and the marketplace's, Japanese). */
const TEXT = {
  myPageLink: 'パスキー',
  signInButton: 'パスキーでログイン',
  statusOn: '二段階認証: オン',
};

/** The mails' subjects (crates/auth/src/mail/templates.rs, Japanese), matched as parts. */
const SUBJECT = {
  added: 'パスキーが登録されました',
};

/** The page's script contract (crates/auth/static/passkey.js). */
const FORM = {
  register: 'form[data-passkey="register"]',
  signIn: 'form[data-passkey="signin"]',
  assert: 'form[data-passkey="assert"]',
  go: '[data-passkey-go]',
};

// ---------------------------------------------------------------- authenticator

/**
 * Chromium's virtual authenticator on `page` (a platform authenticator: ctap2, internal,
 * resident keys, user verification that succeeds). `presence(on)` switches the simulated
 * touch; `credentials()` lists what it holds (WebAuthn.getCredentials).
 */
async function virtualAuthenticator(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return {
    presence: (enabled) => cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId, enabled }),
    credentials: async () => (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials,
  };
}

/**
 * Records every `navigator.credentials.get` / `create` a page of `context` makes, before
 * the page's own script runs (an init script is not subject to the page's CSP):
 * `window.__webauthn` is a list of { kind, mediation, publicKey (JSON-ish) }.
 */
async function recordWebAuthnCalls(context) {
  await context.addInitScript(() => {
    const calls = [];
    Object.defineProperty(window, '__webauthn', { value: calls });
    if (!navigator.credentials) return;
    const b64u = (b) => {
      const bytes = new Uint8Array(b instanceof ArrayBuffer ? b : b.buffer);
      return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    };
    const plain = (pk) => ({
      challenge: pk.challenge ? b64u(pk.challenge) : undefined,
      rpId: pk.rpId,
      userVerification: pk.userVerification,
      allowCredentials: (pk.allowCredentials || []).map((c) => b64u(c.id)),
    });
    for (const kind of ['get', 'create']) {
      const original = navigator.credentials[kind].bind(navigator.credentials);
      navigator.credentials[kind] = (options = {}) => {
        calls.push({ kind, mediation: options.mediation, publicKey: kind === 'get' ? plain(options.publicKey || {}) : {} });
        return original(options);
      };
    }
  });
}

// ------------------------------------------------------------------------ tests

describe('passkeys at tobira, from the marketplace, in Chromium with a virtual authenticator', { concurrency: false }, () => {
  let stack;
  let browser;
  let mp; // marketplace origin, http://127.0.0.1:PORT
  let op; // OP origin (the issuer), http://localhost:PORT
  const problems = []; // page errors and console errors seen in any context
  const {
    arrive,
    clickAndWait,
    expectAt,
    expectMyPage,
    fresh,
    isAt,
    mailTo,
    pageText,
    screenshot,
    submitSignIn,
    toOpSignIn,
    withScreenshot,
  } = pages({ browser: () => browser, op: () => op, mp: () => mp, out: OUT, problems });

  sharedStack({
    out: OUT,
    problems,
    expected: 'a 4xx answer to the replayed passkey answer is expected',
    ready: (started) => {
      ({ stack, browser, op, mp } = started);
    },
  });

  /** The member of the first three tests and their browser (one page, one authenticator). */
  const hikari = { email: 'hikari@example.jp', name: '中村光', password: 'cedar-prism-harbor-63' };
  const registered = { done: false, page: undefined, context: undefined, auth: undefined, name: 'ノートPC' };

  // ------------------------------------------------------------- helpers

  async function textOf(locator) {
    return (await locator.innerText()).replace(/\s+/g, ' ').trim();
  }

  /** Asserts `selector` is on the page and visible, naming what the page shows if not. */
  async function visible(page, selector, what) {
    await page
      .locator(selector)
      .first()
      .waitFor({ state: 'visible' })
      .catch(async (e) => {
        throw new Error(`${what}: no visible ${selector} at ${page.url()}: "${await pageText(page)}"`, { cause: e });
      });
  }

  /** My page → the sign-out button → the OP's end-session → the marketplace's top page. */
  async function signOut(page, who, what) {
    await page.goto(`${mp}/mypage`);
    await expectMyPage(page, who, `${what}: before signing out`);
    await page.locator('form[action="/logout"] button[type="submit"]').click();
    await arrive(page, (u) => u.origin === mp && u.pathname !== '/mypage', `${what}: after signing out`);
    await expectAt(page, mp, '/', `${what}: after signing out`);
    await page.waitForLoadState('load');
  }

  /** Signs in with the password from the marketplace, with no second step, to My page. */
  async function passwordToMyPage(page, who, what) {
    await toOpSignIn(page);
    const res = await submitSignIn(page, who.email, who.password);
    assert.equal(res.status(), 303, `${what}: POST /login answered ${res.status()}: "${await pageText(page)}"`);
    await arrive(page, (u) => u.origin === mp, `${what}: after the password`);
    await expectMyPage(page, who, what);
  }

  /**
   * Presses the passkey button of the form `selector` with the authenticator's presence on
   * (and the autofill's request pending with presence off): resolves with the POST the
   * script submits and its answer, once the page after it has loaded.
   */
  async function pressPasskey(page, auth, selector, what) {
    await visible(page, `${selector} ${FORM.go}`, what);
    await auth.presence(true);
    const posted = page.waitForRequest((r) => r.method() === 'POST' && r.url().startsWith(op) && r.frame() === page.mainFrame());
    const res = await clickAndWait(page, page.locator(`${selector} ${FORM.go}`).first());
    return { request: await posted, response: res };
  }

  /**
   * Opens the console's passkey page: from My page's 「パスキー」 link if it has one (else
   * straight to the OP's page, logged), answering a re-authentication on the way with the
   * password and, on the second-step page, the app's next code (`totp`: { key, lastStep }).
   */
  async function openPasskeysPage(page, who, what, totp) {
    await page.goto(`${mp}/mypage`);
    await expectMyPage(page, who, `${what}: My page`);
    const link = page.locator(`a[href="${op}${PATH.passkeys}"]`);
    if ((await link.count()) === 1) {
      assert.equal(await textOf(link), TEXT.myPageLink, `${what}: My page's link to ${PATH.passkeys}`);
      await clickAndWait(page, link);
    } else {
      console.log(`${what}: My page has ${await link.count()} links to ${op}${PATH.passkeys}; going there directly`);
      await page.goto(`${op}${PATH.passkeys}`);
    }
    if (isAt(op, '/login')(new URL(page.url()))) {
      console.log(`${what}: the console asks to sign in again: "${await pageText(page)}"`);
      const res = await submitSignIn(page, who.email, who.password);
      assert.equal(res.status(), 303, `${what}: re-authentication answered ${res.status()}: "${await pageText(page)}"`);
      if (isAt(op, PATH.secondStep)(new URL(page.url()))) {
        assert.ok(totp, `${what}: re-authentication asks for a second step of a member without one: "${await pageText(page)}"`);
        const { code, step, waitedMs } = await nextCode(totp.key, { after: totp.lastStep });
        console.log(`${what}: re-authentication with the app's code, after waiting ${waitedMs} ms for a new one`);
        await page.locator('#totp-code').fill(code);
        const answer = await clickAndWait(page, page.locator('#totp-submit'));
        totp.lastStep = step;
        assert.ok((answer?.status() ?? 200) < 400, `${what}: the code answered ${answer?.status()}: "${await pageText(page)}"`);
      }
    }
    await expectAt(page, op, PATH.passkeys, what);
  }

  /**
   * Names and registers a passkey on the console's passkey page: the name goes into the
   * page's form with a `name` field (a start form, or the register form itself), then the
   * register form's button runs the ceremony; resolves once the page lists `name`.
   */
  async function registerPasskey(page, auth, name, what) {
    const direct = page.locator(`${FORM.register} input[name="name"]`);
    if ((await direct.count()) === 0) {
      const start = page.locator('form[method="post"]', { has: page.locator('input[name="name"]') }).first();
      assert.equal(await start.count(), 1, `${what}: the passkey page has no form with a name field: "${await pageText(page)}"`);
      await start.locator('input[name="name"]').fill(name);
      const started = await clickAndWait(page, start.locator('button[type="submit"]').first());
      assert.ok((started?.status() ?? 200) < 400, `${what}: starting the registration answered ${started?.status()}: "${await pageText(page)}"`);
    } else {
      await direct.fill(name);
    }
    const options = JSON.parse(await page.locator(FORM.register).first().getAttribute('data-options'));
    const selection = options.publicKey?.authenticatorSelection ?? {};
    assert.equal(selection.residentKey, 'required', `${what}: the registration does not ask for a discoverable credential: ${JSON.stringify(selection)}`);
    assert.equal(options.publicKey?.rp?.id, 'localhost', `${what}: the RP ID`);
    const { response } = await pressPasskey(page, auth, FORM.register, `${what}: registering`);
    assert.ok((response?.status() ?? 200) < 400, `${what}: the registration answered ${response?.status()}: "${await pageText(page)}"`);
    await expectAt(page, op, PATH.passkeys, `${what}: after registering`);
    const listed = await page.locator('main').innerText();
    assert.ok(listed.includes(name), `${what}: the passkey page does not list "${name}": "${await pageText(page)}"`);
  }

  /** The one discoverable credential the authenticator holds for the OP. */
  async function theCredential(auth, what) {
    const creds = await auth.credentials();
    assert.equal(creds.length, 1, `${what}: the authenticator holds ${creds.length} credentials`);
    const [c] = creds;
    assert.equal(c.rpId, 'localhost', `${what}: the credential's RP ID`);
    assert.equal(c.isResidentCredential, true, `${what}: the credential is not discoverable (resident)`);
    assert.ok(c.userHandle, `${what}: the credential has no user handle`);
    return c;
  }

  // --------------------------------------------------------------- tests

  it('offers passkeys in the sign-in page\'s autofill: the email field is username webauthn and the page makes a conditional request for any passkey of the site', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { context, page } = await fresh('autofill');
    await recordWebAuthnCalls(context);
    await virtualAuthenticator(page); // empty: the request stays pending
    await withScreenshot(t, () => page, async () => {
      await toOpSignIn(page);
      const autocomplete = await page.locator('#email').getAttribute('autocomplete');
      assert.equal(autocomplete, 'username webauthn', 'the email field\'s autocomplete');
      assert.equal(await page.locator('script[src="/static/passkey.js"]').count(), 1, 'the sign-in page does not load /static/passkey.js');
      const form = page.locator(`${FORM.signIn}[data-conditional]`);
      assert.equal(await form.count(), 1, `the sign-in page has ${await form.count()} conditional passkey forms: "${await pageText(page)}"`);
      const options = JSON.parse(await form.getAttribute('data-options'));
      const pk = options.publicKey ?? {};
      assert.deepEqual(pk.allowCredentials ?? [], [], 'a usernameless request names credentials');
      assert.equal(pk.userVerification, 'required', 'the request\'s userVerification');
      assert.equal(pk.rpId, 'localhost', 'the request\'s RP ID');
      assert.ok((pk.challenge ?? '').length >= 22, `the request's challenge "${pk.challenge}" is short`);
      console.log(`the sign-in page's options: mediation ${options.mediation}, timeout ${pk.timeout} ms`);

      // ... and the script made that request with conditional mediation on load.
      await page.waitForFunction(() => window.__webauthn.some((c) => c.kind === 'get'));
      const calls = await page.evaluate(() => window.__webauthn);
      const conditional = calls.filter((c) => c.kind === 'get' && c.mediation === 'conditional');
      assert.equal(conditional.length, 1, `the page made ${JSON.stringify(calls)}`);
      assert.equal(conditional[0].publicKey.challenge, pk.challenge, 'the conditional request is not the page\'s challenge');
      assert.deepEqual(conditional[0].publicKey.allowCredentials, [], 'the conditional request names credentials');
      await page.waitForTimeout(1000);
      const error = page.locator(`${FORM.signIn} [data-passkey-error]`);
      console.log(`after 1 s with an empty authenticator: [data-passkey-error] ${await error.isVisible() ? `shown: "${await error.innerText()}"` : 'hidden'}`);

      // Each page view has a challenge of its own.
      await page.reload();
      const again = JSON.parse(await page.locator(FORM.signIn).getAttribute('data-options'));
      assert.notEqual(again.publicKey?.challenge, pk.challenge, 'the sign-in page shows the same challenge twice');
    }, { close: [context] });
  });

  it('registers a passkey from My page\'s パスキー link in the console, named, and lists it', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    await addMember(stack, hikari);
    const { context, page } = await fresh('hikari');
    await recordWebAuthnCalls(context);
    const auth = await virtualAuthenticator(page);
    Object.assign(registered, { context, page, auth });
    await withScreenshot(t, () => page, async () => {
      await passwordToMyPage(page, hikari, 'signing in with the password');
      await openPasskeysPage(page, hikari, 'the console\'s passkey page');
      assert.equal(await page.evaluate(() => document.documentElement.lang), 'ja', 'the passkey page\'s language');
      await screenshot(t, page, '-1-empty');

      await registerPasskey(page, auth, registered.name, 'registering a passkey');
      const cred = await theCredential(auth, 'after registering');
      console.log(`registered "${registered.name}": credential ${cred.credentialId.slice(0, 12)}..., sign count ${cred.signCount}`);

      const mail = await waitForMail(stack.outbox, (m) => m.to.includes(hikari.email) && m.subject.includes(SUBJECT.added), {
        timeoutMs: MAIL_TIMEOUT_MS,
      });
      assert.ok(mail.text.includes(registered.name), `the mail "${mail.subject}" does not name the passkey:\n${mail.text}`);
      registered.done = true;
    });
  });

  it('signs in from the marketplace with パスキーでログイン, without email or password, to My page', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { page, auth } = registered;
    assert.ok(registered.done, 'needs the passkey registered by the registration test');
    await withScreenshot(t, () => page, async () => {
      await signOut(page, hikari, 'before the passkey sign-in');
      await auth.presence(false); // the autofill's request stays pending: the click signs in
      await toOpSignIn(page);
      const button = page.locator(`${FORM.signIn} ${FORM.go}`);
      await visible(page, `${FORM.signIn} ${FORM.go}`, 'the sign-in page');
      assert.equal(await textOf(button), TEXT.signInButton, 'the passkey button\'s text');
      const before = (await theCredential(auth, 'before the sign-in')).signCount;

      const t0 = performance.now();
      const { request, response } = await pressPasskey(page, auth, FORM.signIn, 'the passkey sign-in');
      await arrive(page, (u) => u.origin === mp, `the passkey sign-in (the OP answered ${response?.status()})`);
      await expectMyPage(page, hikari, 'the passkey sign-in');
      const ms = Math.round(performance.now() - t0);
      console.log(`passkey sign-in: ${ms} ms`);
      assert.equal(new URL(request.url()).origin, op, 'the passkey answer went elsewhere');
      assert.ok(!(request.postData() ?? '').includes(hikari.password), 'the passkey sign-in sent the password');
      const after = (await theCredential(auth, 'after the sign-in')).signCount;
      assert.ok(after > before, `the authenticator's sign count went from ${before} to ${after}: it was not used`);

      // The same answer sent again (the browser's cookies, the same form) is refused and
      // signs no one in: the ceremony was used up.
      const replay = await page.context().request.post(request.url(), {
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        data: request.postData() ?? '',
        maxRedirects: 0,
        failOnStatusCode: false,
      });
      const location = replay.headers().location ?? '';
      console.log(`the replayed passkey answer: ${replay.status()} ${location}`);
      assert.ok(replay.status() >= 400 && replay.status() < 500, `the replayed passkey answer got ${replay.status()} ${location}`);
      assert.ok(!location.includes('code='), `the replayed passkey answer redirects with a code: ${location}`);
    });
  });

  it('signs in through the autofill: the virtual authenticator answers the page\'s conditional request with the member\'s passkey, to My page', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { page, auth } = registered;
    assert.ok(registered.done, 'needs the passkey registered by the registration test');
    await withScreenshot(t, () => page, async () => {
      await signOut(page, hikari, 'before the autofill');
      await auth.presence(false);
      await toOpSignIn(page);
      await visible(page, `${FORM.signIn}[data-conditional]`, 'the sign-in page');
      const before = (await theCredential(auth, 'before the autofill')).signCount;
      await screenshot(t, page, '-1-sign-in-page');

      // With the member's presence (headless Chromium's virtual authenticator answers the
      // autofill itself, as a member picking their passkey there), a fresh page signs in.
      await auth.presence(true);
      const t0 = performance.now();
      // The script may submit the autofill's answer before `load`: that navigation is the point.
      await page.reload().catch((e) => console.log(`reloading the sign-in page: ${e.message.split('\n')[0]}`));
      await arrive(page, (u) => u.origin === mp, 'the autofill sign-in');
      await expectMyPage(page, hikari, 'the autofill sign-in');
      console.log(`passkey autofill sign-in: ${Math.round(performance.now() - t0)} ms (page load to My page)`);
      const after = (await theCredential(auth, 'after the autofill')).signCount;
      assert.ok(after > before, `the authenticator's sign count went from ${before} to ${after}: it was not used`);
    });
  });

  it('takes a passkey as the second step after the password of a member with the authenticator app on', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const ren = { email: 'ren@example.jp', name: '伊藤蓮', password: 'amber-willow-signal-84' };
    await addMember(stack, ren);
    const { context, page } = await fresh('ren');
    const auth = await virtualAuthenticator(page);
    await withScreenshot(t, () => page, async () => {
      await passwordToMyPage(page, ren, 'signing in with the password');

      // The authenticator app, as two_step.test.mjs turns it on.
      await page.goto(`${op}${PATH.twoStep}`);
      await expectAt(page, op, PATH.twoStep, 'the two-step page right after signing in');
      await clickAndWait(page, page.locator('#totp-start'));
      await visible(page, '#totp-key', 'the enrolment page');
      const totp = { key: base32Decode((await page.locator('#totp-key').innerText()).trim()), lastStep: -Infinity };
      const { code, step } = await nextCode(totp.key);
      await page.locator('#totp-code').fill(code);
      const confirmed = await clickAndWait(page, page.locator('#totp-confirm'));
      assert.ok((confirmed?.status() ?? 200) < 400, `the enrolment code answered ${confirmed?.status()}: "${await pageText(page)}"`);
      await visible(page, '#recovery-codes', 'after the enrolment code');
      totp.lastStep = step;
      await page.goto(`${op}/account`);
      assert.equal(await textOf(page.locator('#two-step-status')), TEXT.statusOn, 'the console overview after the enrolment');

      // A passkey, in the console (which now asks for the code too).
      await openPasskeysPage(page, ren, 'the passkey page with the app on', totp);
      await registerPasskey(page, auth, 'スマホ', 'registering a passkey with the app on');
      await theCredential(auth, 'after registering');
      await screenshot(t, page, '-1-registered');

      // Password, then the passkey on the second-step page.
      await signOut(page, ren, 'before the second step');
      await auth.presence(false); // the sign-in page's autofill must not sign in by itself
      await toOpSignIn(page);
      const res = await submitSignIn(page, ren.email, ren.password);
      assert.equal(res.status(), 303, `POST /login answered ${res.status()}: "${await pageText(page)}"`);
      await arrive(page, (u) => u.origin !== op || u.pathname !== '/login', 'after the password');
      await expectAt(page, op, PATH.secondStep, 'after the password (the account has a second step)');
      await visible(page, '#totp-code', 'the second-step page');
      await visible(page, `${FORM.assert} ${FORM.go}`, 'the second-step page');
      const options = JSON.parse(await page.locator(FORM.assert).getAttribute('data-options'));
      const allowed = (options.publicKey?.allowCredentials ?? []).map((c) => c.id);
      const cred = await theCredential(auth, 'on the second-step page');
      const credId = cred.credentialId.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
      assert.deepEqual(allowed, [credId], 'the second step asks for other credentials than the member\'s one');
      await screenshot(t, page, '-2-second-step');

      const { response } = await pressPasskey(page, auth, FORM.assert, 'the passkey as the second step');
      await arrive(page, (u) => u.origin === mp, `the passkey as the second step (the OP answered ${response?.status()})`);
      await expectMyPage(page, ren, 'the passkey as the second step');
    }, { close: [context] });
  });
});
