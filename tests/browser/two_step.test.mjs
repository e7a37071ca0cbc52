// Real-browser end-to-end test of two-step verification (二段階認証, issue 13) the way a
// member meets it: turning on the authenticator app from the marketplace's My page (the
// key read from the page, the code computed by lib/totp.mjs as an app would), keeping the
// recovery codes, then signing in from the marketplace with the password and a code on
// the second-step page (`/login/second-step`), with a recovery code (single use), and, for
// a member without an app, with a code the OP mails.
// One OP + marketplace stack for the whole file. The first three tests follow one member
// in one browser (高橋翼's enrolment is what the next two sign in with), so they run in
// order; the email member has an account of their own.
//
// An authenticator code is accepted once (RFC 6238 §5.2): a sign-in after the enrolment
// waits for the next 30 s step when the last code used was of the current one, as a
// member waits for the app to show a new code. Prints how long it waited.
//
// Screenshots and the servers' logs go to artifacts/two-step/.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ARTIFACTS, addMember, readOutbox, waitForMail } from './lib/harness.mjs';
import { pages, sharedStack } from './lib/pages.mjs';
import { base32Decode, currentStep, hotp, nextCode, selfCheck } from './lib/totp.mjs';

const TEST_TIMEOUT_MS = 120_000;
const MAIL_TIMEOUT_MS = 15_000;
const OUT = join(ARTIFACTS, 'two-step');

/** The paths of the pages under test (crates/auth/src/oidc/paths.rs, account/mod.rs). */
const PATH = {
  secondStep: '/login/second-step',
  twoStep: '/account/2fa',
};

/** How many recovery codes an enrolment hands out (issue 13). */
const RECOVERY_CODES = 10;

/** What the pages say (crates/auth/src/web/i18n.rs, Japanese). */
const TEXT = {
  myPageLink: '二段階認証',
  secondStepTitle: '二段階認証',
  statusOn: '二段階認証: オン',
  statusOff: '二段階認証: オフ',
  turnedOn: '二段階認証を有効にしました。次回のログインから、パスワードの後に確認コードをお尋ねします。',
  rememberDevice: 'この端末では30日間確認しない', // account.remember_device_days, 30 by default
  wrongCode: /^確認コードが正しくありません（あと \d+ 回）。$/,
};

/** The mails' subjects (crates/auth/src/mail/templates.rs, Japanese). */
const SUBJECT = {
  emailCode: '【Tobira】ログインの確認コード',
  recoveryUsed: '【Tobira】リカバリーコードが使用されました',
};

/** RFC 4648 base32 in groups of four, as `Authenticator::key_text` shows the key. */
const KEY_TEXT = /^[A-Z2-7]{4}( [A-Z2-7]{1,4})*$/;

describe('lib/totp.mjs, the test\'s authenticator app', () => {
  it('computes the RFC 6238 SHA-1 test vectors (T=59 gives 287082 in 6 digits) and decodes the key from grouped base32', () => {
    selfCheck();
  });

  it('refuses a key that is not base32 or does not end on a whole byte', () => {
    for (const bad of ['GEZD GNB1', 'GEZ', 'GF', 'GEZ!', '', '   ']) {
      assert.throws(() => base32Decode(bad), /base32/, `base32Decode("${bad}") was taken`);
    }
  });
});

describe('two-step verification at tobira, from the marketplace, in Chromium', { concurrency: false }, () => {
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
    expected: 'a 401 answer to a wrong or reused code is expected',
    ready: (started) => {
      ({ stack, browser, op, mp } = started);
    },
  });

  /** The member of the first three tests, and what their enrolment leaves for the next. */
  const tsubasa = { email: 'tsubasa@example.jp', name: '高橋翼', password: 'maple-orbit-lantern-58' };
  const enrolled = {
    browser: undefined, // { context, page }: one browser, signed out and in again
    key: undefined, // the authenticator's key (bytes), read from the enrolment page
    lastStep: -Infinity, // the step of the last code the OP took
    recoveryCodes: [], // as #recovery-codes listed them
  };

  // ------------------------------------------------------------- helpers

  /** The text of `locator`, spaces squeezed. */
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

  /**
   * From the marketplace's ログイン, the right password: resolves once the browser shows
   * the second-step page (`#second-step`), after asserting it is in Japanese, offers to
   * remember this (known) device, and that the password alone made no session.
   */
  async function toSecondStep(page, who, what) {
    await toOpSignIn(page);
    const res = await submitSignIn(page, who.email, who.password);
    assert.equal(res.status(), 303, `${what}: POST /login answered ${res.status()}: "${await pageText(page)}"`);
    await arrive(page, (u) => u.origin !== op || u.pathname !== '/login', `${what}: after the right password`);
    await expectAt(page, op, PATH.secondStep, `${what}: after the right password (the account has a second step)`);
    await visible(page, '#second-step', what);
    assert.ok(new URL(page.url()).searchParams.get('tx'), `${what}: the second-step page has no tx: ${page.url()}`);
    const lang = await page.evaluate(() => document.documentElement.lang);
    assert.equal(lang, 'ja', `${what}: the second-step page is in "${lang}", the browser asks for ja-JP`);
    const heading = await textOf(page.locator('#second-step h1'));
    assert.equal(heading, TEXT.secondStepTitle, `${what}: the second-step page's heading`);
    // This browser signed in to the account before: a known device may be remembered.
    const remember = page.locator('#remember-device');
    assert.equal(await remember.count(), 1, `${what}: no #remember-device on a known device: "${await pageText(page)}"`);
    const label = await textOf(page.locator('label', { has: remember }));
    assert.equal(label, TEXT.rememberDevice, `${what}: the #remember-device label`);
    // The first step alone makes no session: the console still asks to sign in.
    const probe = await page.context().newPage();
    try {
      await probe.goto(`${op}/account`);
      assert.ok(
        isAt(op, '/login')(new URL(probe.url())),
        `${what}: with only the password given, ${op}/account opened at ${probe.url()} (the first step alone made a session)`,
      );
    } finally {
      await probe.close();
    }
  }

  /**
   * Types `code` into the second-step form `#formId` (field `#fieldId`), leaves
   * 「この端末では30日間確認しない」 unticked (the next sign-in must ask again), presses
   * `#submitId` and resolves with the answer to the POST.
   */
  async function submitCode(page, { formId, fieldId, submitId }, code, what) {
    assert.equal(await page.locator(`#${formId}`).count(), 1, `${what}: the second-step page has no #${formId}: "${await pageText(page)}"`);
    await visible(page, `#${fieldId}`, what);
    await page.locator(`#${fieldId}`).fill(code);
    const remember = page.locator(`#${formId} input[name="remember_device"]`);
    if ((await remember.count()) > 0) await remember.first().setChecked(false);
    const answer = page.waitForResponse(
      (r) => r.request().method() === 'POST' && isAt(op, PATH.secondStep)(new URL(r.url())) && r.frame() === page.mainFrame(),
    );
    await clickAndWait(page, page.locator(`#${submitId}`));
    return answer;
  }

  const TOTP_FORM = { formId: 'totp-form', fieldId: 'totp-code', submitId: 'totp-submit' };
  const RECOVERY_FORM = { formId: 'recovery-form', fieldId: 'recovery-code', submitId: 'recovery-submit' };
  const EMAIL_FORM = { formId: 'email-form', fieldId: 'email-code', submitId: 'email-submit' };

  /** A code the second-step page must refuse: 401, the page again with `#second-step-error`. */
  async function refusedCode(page, form, code, what) {
    const res = await submitCode(page, form, code, what);
    assert.equal(res.status(), 401, `${what}: POST ${PATH.secondStep} answered ${res.status()}: "${await pageText(page)}"`);
    await expectAt(page, op, PATH.secondStep, what);
    await visible(page, '#second-step-error', what);
    const error = await textOf(page.locator('#second-step-error'));
    assert.match(error, TEXT.wrongCode, `${what}: #second-step-error`);
    console.log(`${what}: 401 "${error}"`);
    return error;
  }

  /** A code the second-step page must take: 303, then the marketplace's My page. */
  async function acceptedCode(page, form, code, who, what) {
    const res = await submitCode(page, form, code, what);
    assert.equal(res.status(), 303, `${what}: POST ${PATH.secondStep} answered ${res.status()}: "${await pageText(page)}"`);
    await arrive(page, (u) => u.origin === mp, `${what}: after the code`);
    await expectMyPage(page, who, what);
  }

  /**
   * Opens `/account/2fa` from My page's 「二段階認証」 link. A console sign-in asked for
   * on the way (a re-authentication) is answered with the password and the second step
   * the account has.
   */
  async function openTwoStepPage(page, who, what) {
    await page.goto(`${mp}/mypage`);
    await expectMyPage(page, who, `${what}: My page`);
    const link = page.locator(`a[href="${op}${PATH.twoStep}"]`);
    assert.equal(await link.count(), 1, `${what}: My page has ${await link.count()} links to ${op}${PATH.twoStep}: "${await pageText(page)}"`);
    assert.equal(await textOf(link), TEXT.myPageLink, `${what}: My page's link to ${PATH.twoStep}`);
    await clickAndWait(page, link);
    if (isAt(op, '/login')(new URL(page.url()))) await reauthenticate(page, who, what);
    await expectAt(page, op, PATH.twoStep, what);
    await visible(page, '#two-step-status', what);
  }

  /**
   * The console's sign-in again (`#reauth-notice`), with every factor the account has:
   * the password, then the app's next code (the enrolled member) or the mailed code.
   */
  async function reauthenticate(page, who, what) {
    console.log(`${what}: the console asks to sign in again: "${await pageText(page)}"`);
    const before = await outboxFiles();
    const res = await submitSignIn(page, who.email, who.password);
    assert.equal(res.status(), 303, `${what}: re-authentication answered ${res.status()}: "${await pageText(page)}"`);
    if (!isAt(op, PATH.secondStep)(new URL(page.url()))) return;
    let answer;
    if (who === tsubasa && enrolled.key) {
      const { code, step, waitedMs } = await nextCode(enrolled.key, { after: enrolled.lastStep });
      console.log(`${what}: re-authentication with the app's code, after waiting ${waitedMs} ms for a new one`);
      answer = await submitCode(page, TOTP_FORM, code, `${what}: re-authentication`);
      enrolled.lastStep = step;
    } else {
      const { code } = await mailedCode(who, before);
      console.log(`${what}: re-authentication with a mailed code`);
      answer = await submitCode(page, EMAIL_FORM, code, `${what}: re-authentication`);
    }
    assert.equal(answer.status(), 303, `${what}: the code answered ${answer.status()}: "${await pageText(page)}"`);
  }

  /** The files in the outbox now: what `mailedCode` must not take for a new mail. */
  async function outboxFiles() {
    return (await readOutbox(stack.outbox)).map((m) => m.file);
  }

  /**
   * The newest email-code mail to `who` not among the files `before`, and its code (six
   * digits on a line of their own).
   */
  async function mailedCode(who, before) {
    const isCodeMail = mailTo(who.email, SUBJECT.emailCode);
    const mail = await waitForMail(stack.outbox, (m) => !before.includes(m.file) && isCodeMail(m), {
      timeoutMs: MAIL_TIMEOUT_MS,
    });
    const line = mail.text.match(/^(\d{6})$/m);
    assert.ok(line, `the mail "${mail.subject}" has no line of six digits:\n${mail.text}`);
    return { mail, code: line[1] };
  }

  /** `#two-step-status` of the console's two-step page, and `#recovery-left` if shown. */
  async function twoStepStatus(page) {
    const left = page.locator('#recovery-left');
    return {
      status: await textOf(page.locator('#two-step-status')),
      recoveryLeft: (await left.count()) === 1 ? (await textOf(left)).replace(/[^0-9]/g, '') : undefined,
    };
  }

  // --------------------------------------------------------------- tests

  it('turns on the authenticator app from My page\'s 二段階認証 link with the key read from the page, and shows 10 recovery codes to keep', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    await addMember(stack, tsubasa);
    const { context, page } = await fresh('tsubasa');
    enrolled.browser = { context, page };
    await withScreenshot(t, () => page, async () => {
      await toOpSignIn(page);
      const res = await submitSignIn(page, tsubasa.email, tsubasa.password);
      assert.equal(res.status(), 303, `signing in: POST /login answered ${res.status()}: "${await pageText(page)}"`);
      await arrive(page, (u) => u.origin === mp, 'signing in without a second factor');
      await expectMyPage(page, tsubasa, 'signing in without a second factor (no second-step page)');

      await openTwoStepPage(page, tsubasa, 'before the enrolment');
      const off = await twoStepStatus(page);
      assert.equal(off.status, TEXT.statusOff, '#two-step-status before the enrolment');
      assert.equal(off.recoveryLeft, undefined, '#recovery-left shown before the enrolment');
      await screenshot(t, page, '-1-off');

      // The enrolment page: the QR code drawn inline, and the key as text.
      await clickAndWait(page, page.locator('#totp-start'));
      await visible(page, '#totp-key', 'the enrolment page');
      const svg = page.locator('#totp-qr svg');
      assert.equal(await svg.count(), 1, `#totp-qr holds ${await svg.count()} inline <svg>: "${await pageText(page)}"`);
      const box = await svg.boundingBox();
      assert.ok(box && box.width >= 100 && box.height >= 100, `the QR code is drawn ${JSON.stringify(box)}, too small to scan`);
      const keyText = (await page.locator('#totp-key').innerText()).trim();
      assert.match(keyText, KEY_TEXT, `#totp-key shows "${keyText}", not base32 in groups of four`);
      const key = base32Decode(keyText);
      // RFC 4226 §4 R6: at least 128 bits, 160 recommended (and what the OP makes).
      assert.ok(key.length >= 20, `the key has ${key.length * 8} bits`);
      await screenshot(t, page, '-2-enrol');

      // A wrong code is refused and the same key stays on the page. A code of none of
      // the steps around now is wrong whatever the OP's window (±1 step).
      const now = currentStep();
      const near = new Set([-2, -1, 0, 1, 2].map((d) => hotp(key, now + d)));
      let wrong = 0;
      while (near.has(String(wrong).padStart(6, '0'))) wrong += 1;
      wrong = String(wrong).padStart(6, '0');
      await page.locator('#totp-code').fill(wrong);
      const refused = await clickAndWait(page, page.locator('#totp-confirm'));
      await visible(page, '#two-step-error', 'after a wrong enrolment code');
      console.log(`a wrong enrolment code: ${refused?.status()} "${await textOf(page.locator('#two-step-error'))}"`);
      assert.equal(await page.locator('#recovery-codes').count(), 0, 'a wrong enrolment code showed recovery codes');
      await visible(page, '#totp-confirm', 'after a wrong enrolment code');
      assert.equal((await page.locator('#totp-key').innerText()).trim(), keyText, 'the key changed after a wrong code');

      // The app's code confirms it.
      const { code, step } = await nextCode(key);
      await page.locator('#totp-code').fill(code);
      const confirmed = await clickAndWait(page, page.locator('#totp-confirm'));
      assert.ok((confirmed?.status() ?? 200) < 400, `the right code answered ${confirmed?.status()}: "${await pageText(page)}"`);
      enrolled.key = key;
      enrolled.lastStep = step;

      // The recovery codes, shown once: ten, all different.
      await visible(page, '#recovery-codes', 'after the right enrolment code');
      const codes = (await page.locator('#recovery-codes > li').allInnerTexts()).map((s) => s.trim());
      console.log(`recovery codes: ${codes.length} like "${codes[0]}"`);
      assert.equal(codes.length, RECOVERY_CODES, `#recovery-codes lists ${codes.length} codes`);
      assert.equal(new Set(codes).size, RECOVERY_CODES, `the recovery codes are not all different: ${codes.join(' ')}`);
      for (const c of codes) assert.match(c, /^[0-9A-Za-z-]{8,}$/, `the recovery code "${c}"`);
      enrolled.recoveryCodes = codes;
      await screenshot(t, page, '-3-recovery-codes');

      const notice = await textOf(page.locator('#two-step-notice'));
      assert.equal(notice, TEXT.turnedOn, 'the recovery codes page\'s notice');

      // ... downloadable as a text file holding the same codes.
      const answer = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().startsWith(`${op}${PATH.twoStep}/`));
      const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#recovery-download').click()]);
      const headers = (await answer).headers();
      assert.match(headers['content-type'] ?? '', /^text\/plain\b/, 'the download\'s Content-Type');
      assert.match(headers['content-disposition'] ?? '', /^attachment\b/, 'the download\'s Content-Disposition');
      const name = download.suggestedFilename();
      assert.match(name, /\.txt$/, `the download is named "${name}"`);
      const saved = await readFile(await download.path(), 'utf8');
      for (const c of codes) assert.ok(saved.includes(c), `the downloaded ${name} lacks the code ${c}:\n${saved}`);
      console.log(`downloaded ${name}: ${saved.length} characters`);

      // The console's overview says two-step verification is on. (Its own page would
      // ask to sign in again: this session signed in with the password alone, and a
      // console change now needs the code too. The tests after this one go there.)
      await page.goto(`${op}/account`);
      await expectAt(page, op, '/account', 'the console overview after the enrolment');
      const on = await textOf(page.locator('#two-step-status'));
      assert.equal(on, TEXT.statusOn, 'the console overview\'s #two-step-status after the enrolment');
      await screenshot(t, page, '-4-on');
    });
  });

  it('asks for a code after the password, in Japanese, refuses the code that confirmed the enrolment, and takes a new one from the app to My page', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    assert.ok(enrolled.key, 'needs the authenticator turned on by the test before');
    const { page } = enrolled.browser;
    await withScreenshot(t, () => page, async () => {
      await signOut(page, tsubasa, 'before signing in with the app');
      await toSecondStep(page, tsubasa, 'with the app');
      // What the member enrolled is offered, and nothing else.
      await visible(page, '#totp-code', 'the second-step page');
      assert.equal(await page.locator('#email-form').count(), 0, `an email code is offered to a member without one: "${await pageText(page)}"`);
      assert.equal(await page.locator('#recovery-form').count(), 1, 'no recovery code is offered');
      await screenshot(t, page, '-1-second-step');

      // The enrolment's code (its step taken, or out of the window by now): refused.
      const replayed = hotp(enrolled.key, enrolled.lastStep);
      await refusedCode(page, TOTP_FORM, replayed, 'the enrolment\'s code at sign-in');
      await screenshot(t, page, '-2-replay-refused');

      const { code, step, waitedMs } = await nextCode(enrolled.key, { after: enrolled.lastStep });
      console.log(`waited ${waitedMs} ms for the app's next code`);
      await acceptedCode(page, TOTP_FORM, code, tsubasa, 'the app\'s new code');
      enrolled.lastStep = step;
    });
  });

  it('signs in with a recovery code once: the same code on a later sign-in is refused', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    assert.equal(enrolled.recoveryCodes.length, RECOVERY_CODES, 'needs the recovery codes of the enrolment test');
    const { page } = enrolled.browser;
    const [first, second] = enrolled.recoveryCodes;
    await withScreenshot(t, () => page, async () => {
      await signOut(page, tsubasa, 'before the recovery code');
      await toSecondStep(page, tsubasa, 'with a recovery code');
      await acceptedCode(page, RECOVERY_FORM, first, tsubasa, 'a recovery code');

      // The member is told, and the console counts one code fewer.
      const mail = await waitForMail(stack.outbox, mailTo(tsubasa.email, SUBJECT.recoveryUsed), { timeoutMs: MAIL_TIMEOUT_MS });
      assert.ok(mail.text.includes(`残り${RECOVERY_CODES - 1}個`), `the mail does not say ${RECOVERY_CODES - 1} codes are left:\n${mail.text}`);
      await openTwoStepPage(page, tsubasa, 'after a recovery code');
      const after1 = await twoStepStatus(page);
      assert.equal(after1.status, TEXT.statusOn, '#two-step-status after a recovery code');
      assert.equal(after1.recoveryLeft, String(RECOVERY_CODES - 1), '#recovery-left after one recovery code');
      await screenshot(t, page, '-1-one-used');

      // The same code again, on a later sign-in: refused; another one still works.
      await signOut(page, tsubasa, 'before the used recovery code');
      await toSecondStep(page, tsubasa, 'with the used recovery code');
      await refusedCode(page, RECOVERY_FORM, first, 'the recovery code used before');
      await screenshot(t, page, '-2-used-code-refused');
      await acceptedCode(page, RECOVERY_FORM, second, tsubasa, 'another recovery code');
    });
  });

  it('mails a member with email codes only a code at sign-in, and the code signs in to My page', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const yui = { email: 'yui@example.jp', name: '小林結衣', password: 'quartz-meadow-cobalt-27' };
    await addMember(stack, yui);
    const { context, page } = await fresh('yui');
    await withScreenshot(t, () => page, async () => {
      // No factor yet: the password alone signs in. Turn email codes on in the console.
      await toOpSignIn(page);
      const res = await submitSignIn(page, yui.email, yui.password);
      assert.equal(res.status(), 303, `signing in: POST /login answered ${res.status()}: "${await pageText(page)}"`);
      await arrive(page, (u) => u.origin === mp, 'signing in without a second factor');
      await expectMyPage(page, yui, 'signing in without a second factor');
      await openTwoStepPage(page, yui, 'before turning email codes on');
      const off = await twoStepStatus(page);
      assert.equal(off.status, TEXT.statusOff, '#two-step-status before turning email codes on');
      await clickAndWait(page, page.locator('#email-enable'));
      // Back to the page: the console now asks for the mailed code too (re-authentication).
      await openTwoStepPage(page, yui, 'after turning email codes on');
      const on = await twoStepStatus(page);
      assert.equal(on.status, TEXT.statusOn, '#two-step-status after turning email codes on');
      await visible(page, '#email-disable', 'after turning email codes on');
      assert.equal(await page.locator('#email-enable').count(), 0, 'email codes are on and #email-enable is still offered');
      await screenshot(t, page, '-1-email-on');

      // Sign out, sign in: the code goes to the member's address on its own.
      await signOut(page, yui, 'before signing in with an email code');
      const before = await outboxFiles();
      await toSecondStep(page, yui, 'with an email code');
      assert.equal(await page.locator('#totp-form').count(), 0, `an authenticator code is asked of a member without one: "${await pageText(page)}"`);
      await visible(page, '#email-code', 'the second-step page of an email-only member');
      await visible(page, '#email-send', 'the second-step page of an email-only member (resend)');
      const where = await textOf(page.locator('#email-sent-to'));
      const masked = `${yui.email[0]}***@${yui.email.split('@')[1]}`;
      assert.ok(where.includes(masked), `#email-sent-to does not say the code went to ${masked}: "${where}"`);
      const all = await page.locator('body').innerText();
      assert.ok(!all.includes(yui.email), `the page shows the whole address ${yui.email}, not ${masked}`);
      await screenshot(t, page, '-2-second-step');

      const { mail, code } = await mailedCode(yui, before);
      assert.ok(mail.html.includes(code), 'the mail\'s HTML part does not show the code');

      const wrong = String((Number(code) + 1) % 1_000_000).padStart(6, '0');
      await refusedCode(page, EMAIL_FORM, wrong, 'a wrong email code');
      await acceptedCode(page, EMAIL_FORM, code, yui, 'the mailed code');
    }, { close: [context] });
  });
});
