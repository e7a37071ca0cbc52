// Real-browser end-to-end test of social sign-in (issue 15) the way a member meets it:
// the OP's sign-in page offers a button per configured provider, and the provider here is
// a second tobira (kind `oidc`, started by the harness with `upstream: true`) at
// http://127.0.0.1:PORT, while the OP is at http://localhost:PORT (cookies ignore ports,
// so the two OPs need different host names). The upstream knows kenji (no account at the
// OP) and taro (the OP's taro's address, with another password).
//
// In order, in one stack: kenji's first federated sign-in creates his account and lands on
// the marketplace's My page; taro's federated sign-in finds his existing account, asks him
// to sign in to it first and only then links; taro unlinks in the console, and his next
// federated sign-in asks again (nothing is linked silently); the provider button works
// without JavaScript.
//
// Prints `federated sign-in: N ms`, from the upstream's sign-in form submit to My page
// (the member's typing at the upstream cannot be taken out of a click-to-My-page time).
//
// Screenshots and the three servers' logs (tobira.log, upstream.log, marketplace.log) go to
// artifacts/federation/.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ARTIFACTS, MEMBERS, UPSTREAM_MEMBERS, UPSTREAM_PROVIDER, waitForMail } from './lib/harness.mjs';
import { pages, sharedStack } from './lib/pages.mjs';

const TEST_TIMEOUT_MS = 120_000;
const MAIL_TIMEOUT_MS = 15_000;
const OUT = join(ARTIFACTS, 'federation');

/** The paths of the pages under test (crates/auth/src/oidc/paths.rs, account/mod.rs). */
const PATH = {
  start: `/federation/${UPSTREAM_PROVIDER.id}/start`,
  callback: `/federation/${UPSTREAM_PROVIDER.id}/callback`,
  linked: '/account/linked',
  unlink: '/account/linked/remove',
  history: '/account/history',
};

/** What the pages say (crates/auth/src/web/i18n.rs, Japanese; the label is the config's). */
const TEXT = {
  button: UPSTREAM_PROVIDER.label,
  // The console, its mails and its history lines name the service: the label without
  // its 「でログイン」 (account/linked.rs), so 「アップストリームIDを連携する」.
  service: UPSTREAM_PROVIDER.label.replace(/\s*でログイン$/, ''),
  addressInUse: '登録済みのアカウント',
  unlink: '連携を解除',
  linkedLine: '連携',
  unlinkedLine: '連携を解除',
  unlinkedDone: (service) => `${service}の連携を解除しました`,
};

/** The mails' subjects (crates/auth/src/mail/templates.rs, Japanese), matched as parts. */
const SUBJECT = {
  linked: '連携しました',
  unlinked: '連携を解除しました',
};

describe('social sign-in at tobira through an upstream tobira, from the marketplace, in Chromium', { concurrency: false }, () => {
  let stack;
  let browser;
  let mp; // marketplace origin, http://127.0.0.1:PORT
  let op; // OP origin (the issuer), http://localhost:PORT
  let up; // the upstream provider's origin (its issuer), http://127.0.0.1:PORT
  const problems = []; // page errors and console errors seen in any context
  const {
    arrive,
    clickAndWait,
    expectAt,
    expectMyPage,
    formError,
    fresh,
    isAt,
    pageText,
    screenshot,
    submitSignIn,
    toOpSignIn,
    withScreenshot,
  } = pages({ browser: () => browser, op: () => op, mp: () => mp, out: OUT, problems });

  sharedStack({
    out: OUT,
    problems,
    upstream: true,
    expected: 'a 401 answer to the upstream\'s password at the OP is expected',
    ready: (started) => {
      ({ stack, browser, op, mp } = started);
      up = stack.upOrigin;
    },
  });

  /** The OP's taro (his own password) and the upstream's taro (same address, other password). */
  const taro = MEMBERS.taro;
  const upTaro = UPSTREAM_MEMBERS.taro;
  const kenji = UPSTREAM_MEMBERS.kenji;

  /** taro's browser, from the link test to the unlink test. */
  const linked = { done: false, page: undefined };

  // ------------------------------------------------------------- helpers

  async function textOf(locator) {
    return (await locator.innerText()).replace(/\s+/g, ' ').trim();
  }

  /**
   * On the OP's sign-in page: the provider's button (a plain form posting to its start
   * path, with its label) → the upstream's sign-in page.
   */
  async function pressProviderButton(page, what) {
    const button = page.locator(`#federation-${UPSTREAM_PROVIDER.id}`);
    await button.waitFor({ state: 'visible' }).catch(async (e) => {
      throw new Error(`${what}: the OP's sign-in page shows no #federation-${UPSTREAM_PROVIDER.id}: "${await pageText(page)}"`, { cause: e });
    });
    assert.equal(await textOf(button), TEXT.button, `${what}: the provider button's text`);
    const form = page.locator(`form[method="post"][action="${PATH.start}"]`, { has: button });
    assert.equal(await form.count(), 1, `${what}: the provider button is not in a form posting to ${PATH.start}`);
    const res = await clickAndWait(page, button);
    await arrive(page, (u) => u.origin !== op, `${what}: after the provider button (the OP answered ${res?.status()})`);
    await expectAt(page, up, '/login', `${what}: after the provider button`);
    await page.locator('#password').waitFor({ state: 'visible' });
  }

  /**
   * Fills and submits the upstream's sign-in form as `who`; resolves with the time of the
   * submit (`performance.now()`) once the browser has left the upstream.
   */
  async function signInAtUpstream(page, who, what) {
    await page.getByLabel('メールアドレス', { exact: true }).fill(who.email);
    await page.getByLabel('パスワード', { exact: true }).fill(who.password);
    const answer = page.waitForResponse(
      (r) => r.request().method() === 'POST' && isAt(up, '/login')(new URL(r.url())) && r.frame() === page.mainFrame(),
    );
    const t0 = performance.now();
    await page.locator('form[action="/login"] button[type="submit"]').click();
    const res = await answer;
    assert.equal(res.status(), 303, `${what}: the upstream's POST /login answered ${res.status()}`);
    await arrive(page, (u) => u.origin !== up, `${what}: after signing in at the upstream`);
    await page.waitForLoadState('load');
    return t0;
  }

  /** The OP's sign-in page again, with the notice that an account uses the address. */
  async function expectAddressInUse(page, email, what) {
    assert.equal(new URL(page.url()).origin, op, `${what}: expected the OP, the browser is at ${page.url()}: "${await pageText(page)}"`);
    const notice = page.locator('#federation-notice');
    await notice.waitFor({ state: 'visible' }).catch(async (e) => {
      throw new Error(`${what}: no #federation-notice at ${page.url()}: "${await pageText(page)}"`, { cause: e });
    });
    const text = await textOf(notice);
    assert.ok(text.includes(TEXT.addressInUse), `${what}: the notice says "${text}"`);
    assert.equal(await page.locator('#email').inputValue(), email, `${what}: the email field is not filled in with the provider's address`);
    assert.equal(await page.locator('#password').inputValue(), '', `${what}: the password field is not empty`);
    return text;
  }

  /** The lines of the OP's sign-in history (`/account/history`), newest first. */
  async function historyLines(page, what) {
    await page.goto(`${op}${PATH.history}`);
    await expectAt(page, op, PATH.history, what);
    return (await page.locator('[data-testid="attempt"]').allInnerTexts()).map((l) => l.replace(/\s+/g, ' ').trim());
  }

  /** The remove forms of `/account/linked` (one per link). */
  const removeForms = (page) => page.locator(`form[method="post"][action="${PATH.unlink}"]`);

  /** Opens `/account/linked`, signing in again with `who`'s password if the console asks. */
  async function openLinked(page, who, what) {
    await page.goto(`${op}${PATH.linked}`);
    await reauthenticateIfAsked(page, who, what);
    await expectAt(page, op, PATH.linked, what);
  }

  /** Answers the console's re-authentication (the OP's sign-in page) with the password. */
  async function reauthenticateIfAsked(page, who, what) {
    if (!isAt(op, '/login')(new URL(page.url()))) return;
    console.log(`${what}: the console asks to sign in again: "${await pageText(page)}"`);
    const res = await submitSignIn(page, who.email, who.password);
    assert.equal(res.status(), 303, `${what}: re-authentication answered ${res.status()}: "${await pageText(page)}"`);
    await arrive(page, (u) => !isAt(op, '/login')(u), `${what}: after re-authenticating`);
  }

  /** My page → the sign-out button → the OP's end-session → the marketplace's top page. */
  async function signOutOfMarketplace(page, who, what) {
    await page.goto(`${mp}/mypage`);
    await expectMyPage(page, who, `${what}: before signing out`);
    await page.locator('form[action="/logout"] button[type="submit"]').click();
    await arrive(page, (u) => u.origin === mp && u.pathname !== '/mypage', `${what}: after signing out`);
    await expectAt(page, mp, '/', `${what}: after signing out`);
    await page.waitForLoadState('load');
  }

  /** The upstream's `/end-session` asks first (no id_token_hint): confirm, and it says so. */
  async function signOutOfUpstream(page, what) {
    await page.goto(`${up}/end-session`);
    const confirm = page.locator('form[action="/end-session/confirm"] button[type="submit"]');
    assert.equal(await confirm.count(), 1, `${what}: the upstream's /end-session offers no confirmation (no session there?): "${await pageText(page)}"`);
    const res = await clickAndWait(page, confirm);
    assert.ok((res?.status() ?? 200) < 400, `${what}: the upstream's sign-out answered ${res?.status()}: "${await pageText(page)}"`);
    assert.equal(await confirm.count(), 0, `${what}: the upstream still asks to confirm: "${await pageText(page)}"`);
  }

  // --------------------------------------------------------------- tests

  it('signs a newcomer in at the marketplace with the upstream account: a new account, named as the upstream has it, on My page', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { page } = await fresh('kenji');
    await withScreenshot(t, () => page, async () => {
      await toOpSignIn(page);
      await screenshot(t, page, '-1-op-sign-in');
      await pressProviderButton(page, 'kenji at the OP\'s sign-in page');
      await screenshot(t, page, '-2-upstream-sign-in');

      const t0 = await signInAtUpstream(page, kenji, 'kenji at the upstream');
      await arrive(page, (u) => u.origin === mp, 'kenji after the upstream (through the OP\'s callback)');
      await expectMyPage(page, kenji, 'kenji\'s first federated sign-in');
      console.log(`federated sign-in: ${Math.round(performance.now() - t0)} ms (the upstream's form submit to My page)`);

      // The OP's history names the provider as the way in.
      const lines = await historyLines(page, 'kenji\'s history at the OP');
      assert.ok(lines.length >= 1, `kenji's history is empty: "${await pageText(page)}"`);
      assert.ok(lines[0].includes(TEXT.button), `kenji's newest history line does not name "${TEXT.button}": "${lines[0]}"`);
      console.log(`kenji's history: ${lines[0]}`);
    });
  });

  it('links the upstream account to an existing account only after the member signs in to it, and lists the link', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { page } = await fresh('taro');
    linked.page = page;
    await withScreenshot(t, () => page, async () => {
      await toOpSignIn(page);
      await pressProviderButton(page, 'taro at the OP\'s sign-in page');
      await signInAtUpstream(page, upTaro, 'taro at the upstream');
      const notice = await expectAddressInUse(page, taro.email, 'taro back at the OP');
      console.log(`the OP's notice: "${notice}"`);
      await screenshot(t, page, '-1-address-in-use');

      // The upstream's password is not the OP's: it is refused there, and signs no one in.
      // The OP's own password then signs in (the same parked request), and links.
      const refused = await submitSignIn(page, taro.email, upTaro.password);
      assert.ok(
        refused.status() >= 400 && refused.status() < 500,
        `the upstream's password at the OP answered ${refused.status()}: "${await pageText(page)}"`,
      );
      await expectAt(page, op, '/login', 'after the upstream\'s password at the OP');
      console.log(`the upstream's password at the OP: ${refused.status()}, "${await formError(page)}"`);
      const res = await submitSignIn(page, taro.email, taro.password);
      assert.equal(res.status(), 303, `taro's OP password answered ${res.status()}: "${await pageText(page)}"`);
      await arrive(page, (u) => u.origin === mp, 'taro after his OP password');
      await expectMyPage(page, taro, 'taro after linking');

      await openLinked(page, taro, 'taro\'s linked accounts');
      const main = await textOf(page.locator('main'));
      assert.ok(main.includes(TEXT.service), `/account/linked does not list "${TEXT.service}": "${await pageText(page)}"`);
      assert.ok(main.includes(upTaro.email), `/account/linked does not show the provider's address ${upTaro.email}: "${await pageText(page)}"`);
      assert.equal(await removeForms(page).count(), 1, `/account/linked has ${await removeForms(page).count()} ${PATH.unlink} forms: "${await pageText(page)}"`);
      await screenshot(t, page, '-2-linked');

      const mail = await waitForMail(
        stack.outbox,
        (m) => m.to.includes(taro.email) && m.subject.includes(SUBJECT.linked) && !m.subject.includes(SUBJECT.unlinked),
        { timeoutMs: MAIL_TIMEOUT_MS },
      );
      assert.ok(`${mail.subject}\n${mail.text}`.includes(TEXT.service), `the mail "${mail.subject}" does not name "${TEXT.service}":\n${mail.text}`);

      const lines = await historyLines(page, 'taro\'s history at the OP');
      const line = lines.find((l) => l.includes(TEXT.service) && l.includes(TEXT.linkedLine) && !l.includes(TEXT.unlinkedLine));
      assert.ok(line, `taro's history has no line for the link:\n${lines.join('\n')}`);
      console.log(`taro's history: ${line}`);
      linked.done = true;
    });
  });

  it('unlinks in the console; after signing out everywhere the next federated sign-in asks again instead of linking', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    assert.ok(linked.done, 'needs the link made by the previous test');
    const { page } = linked;
    await withScreenshot(t, () => page, async () => {
      await openLinked(page, taro, 'taro\'s linked accounts');
      const button = removeForms(page).locator('button[type="submit"]');
      assert.equal(await textOf(button), TEXT.unlink, 'the remove button\'s text');
      let res = await clickAndWait(page, button);
      if (isAt(op, '/login')(new URL(page.url()))) {
        await reauthenticateIfAsked(page, taro, 'unlinking');
        await expectAt(page, op, PATH.linked, 'after re-authenticating to unlink');
        if ((await removeForms(page).count()) === 1) {
          res = await clickAndWait(page, removeForms(page).locator('button[type="submit"]'));
        }
      }
      assert.ok((res?.status() ?? 200) < 400, `unlinking answered ${res?.status()}: "${await pageText(page)}"`);
      const said = await textOf(page.locator('main'));
      const done = TEXT.unlinkedDone(TEXT.service);
      assert.ok(said.includes(done), `the page after unlinking does not say "${done}": "${await pageText(page)}"`);
      await page.goto(`${op}${PATH.linked}`);
      await expectAt(page, op, PATH.linked, 'after unlinking');
      assert.equal(await removeForms(page).count(), 0, `/account/linked still lists a link: "${await pageText(page)}"`);
      await screenshot(t, page, '-1-unlinked');

      await waitForMail(stack.outbox, (m) => m.to.includes(taro.email) && m.subject.includes(SUBJECT.unlinked), {
        timeoutMs: MAIL_TIMEOUT_MS,
      });
      const lines = await historyLines(page, 'taro\'s history after unlinking');
      assert.ok(
        lines[0]?.includes(TEXT.service) && lines[0]?.includes(TEXT.unlinkedLine),
        `taro's newest history line is not the unlink:\n${lines.join('\n')}`,
      );

      // Signed out of the marketplace, the OP and the upstream, a federated sign-in goes
      // through the upstream's password again and ends at the notice, not on My page.
      await signOutOfMarketplace(page, taro, 'taro');
      await signOutOfUpstream(page, 'taro at the upstream');
      await toOpSignIn(page);
      await pressProviderButton(page, 'taro after unlinking');
      await signInAtUpstream(page, upTaro, 'taro at the upstream after unlinking');
      await expectAddressInUse(page, taro.email, 'taro\'s federated sign-in after unlinking');
      await screenshot(t, page, '-2-asked-again');
      await page.goto(`${mp}/mypage`);
      assert.equal(
        await page.locator('[data-testid="signin-required"]').count(),
        1,
        `the marketplace signed taro in after the unlinked provider: "${await pageText(page)}"`,
      );
    });
  });

  it('shows and submits the provider button without JavaScript: the plain form reaches the upstream\'s sign-in page', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { context, page } = await fresh('no-js', { javaScriptEnabled: false });
    await withScreenshot(t, () => page, async () => {
      await toOpSignIn(page);
      await pressProviderButton(page, 'without JavaScript');
      const authorize = new URL(page.url());
      console.log(`without JavaScript, the upstream's sign-in page: ${authorize.pathname}`);
    }, { close: [context] });
  });
});
