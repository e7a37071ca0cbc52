// Real-browser end-to-end test of the password-guessing defence at the tobira
// OP, driven from the marketplace: wrong passwords lock an account for devices
// that never signed in to it, the owner's mail unlocks it, the owner's known
// device is never locked out by someone else's guesses, and the sign-in help
// page mails a locked, an unverified and an unknown address what each needs.
// One OP + marketplace stack for the whole file (default throttle settings:
// 5 failures lock for 1 minute); every test has members of its own, so the
// tests do not depend on each other. No test waits for a lock to run out.
//
// Screenshots and the servers' logs go to artifacts/throttle/.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  ARTIFACTS,
  addMember,
  mailLink,
  readOutbox,
  waitForMail,
} from './lib/harness.mjs';
import { pages, sharedStack } from './lib/pages.mjs';

const TEST_TIMEOUT_MS = 120_000;
const MAIL_TIMEOUT_MS = 15_000;
/** How long a second mail would need to show up after the first (the job worker polls every 100 ms). */
const MAIL_SETTLE_MS = 600;
const OUT = join(ARTIFACTS, 'throttle');

/** Default throttle settings (crates/auth/src/config.rs, ThrottleConfig). */
const ACCOUNT_FAILURES = 5;
const LOCK_MINUTES = 1;
/** The pages' clock: throttle.display_utc_offset, +09:00. */
const DISPLAY_OFFSET_MINUTES = 9 * 60;

const SUBJECT = {
  locked: '【Tobira】ログインを一時的に制限しました',
  verify: '【Tobira】メールアドレスの確認',
  help: '【Tobira】ログインについてのご案内',
  noAccount: '【Tobira】このアドレスのアカウントはありません',
};
const WRONG_CREDENTIALS = 'メールアドレスまたはパスワードが正しくありません';
/** The whole message of a locked account ("12月5日 15:42" when the lock ends on another day). */
const LOCKED =
  /ログインの失敗が続いたため、このアカウントへのログインを一時的に制限しています。しばらくしてからお試しください（(?:\d{1,2}月\d{1,2}日 )?(\d\d):(\d\d) 以降）。このメールアドレスのアカウントがある場合は、.*ロック解除のご案内をお送りしています。/;
const UNLOCK_BUTTON = 'ロックを解除する';
const UNLOCKED = 'ロックを解除しました。もう一度ログインしてください。';

describe('throttled password sign-in at tobira, from the marketplace, in Chromium', { concurrency: false }, () => {
  let stack;
  let browser;
  let mp; // marketplace origin, http://127.0.0.1:PORT
  let op; // OP origin (the issuer), http://localhost:PORT
  const problems = []; // page errors and console errors seen in any context

  sharedStack({
    out: OUT,
    problems,
    expected: '4xx answers to refused sign-ins are expected',
    ready: (started) => {
      ({ stack, browser, op, mp } = started);
    },
  });

  // ------------------------------------------------------------- helpers

  const {
    arrive,
    clickAndWait,
    expectAt,
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
    withScreenshot,
  } = pages({ browser: () => browser, op: () => op, mp: () => mp, out: OUT, problems });

  /** Minutes since midnight in the pages' offset. */
  const displayMinutes = (ms) => Math.floor(ms / 60_000 + DISPLAY_OFFSET_MINUTES) % 1440;

  /**
   * Asserts a locked message: the whole sentence, a "HH:MM 以降" that is the lock's end
   * (LOCK_MINUTES after `lockedAtMs`, rounded up to the minute, in +09:00), and the
   * パスワードをお忘れの方 link after it. Resolves with "HH:MM".
   */
  async function expectLockedMessage(page, lockedAtMs, what) {
    const text = await formError(page);
    const m = text.match(LOCKED);
    assert.ok(m, `${what}: #form-error does not say the account is locked: "${text}"`);
    const shown = Number(m[1]) * 60 + Number(m[2]);
    const ahead = (shown - displayMinutes(lockedAtMs) + 1440) % 1440;
    assert.ok(
      ahead >= LOCK_MINUTES && ahead <= LOCK_MINUTES + 2,
      `${what}: the lock ends at ${m[1]}:${m[2]}, ${ahead} minutes after the locking attempt (expected ${LOCK_MINUTES}-${LOCK_MINUTES + 1}, +09:00)`,
    );
    const forgot = page.locator('#form-error a', { hasText: 'パスワードをお忘れの方' });
    assert.equal(await forgot.count(), 1, `${what}: no パスワードをお忘れの方 link in #form-error: "${text}"`);
    const href = new URL(await forgot.getAttribute('href'), page.url());
    assert.ok(isAt(op, '/password/forgot')(href), `${what}: the パスワードをお忘れの方 link goes to ${redact(href.href)}`);
    return `${m[1]}:${m[2]}`;
  }

  /**
   * Types wrong passwords for `email` until the account locks (ACCOUNT_FAILURES), each
   * submitted through the form. Resolves with { at, until }: when the locking attempt
   * was sent, and the "HH:MM" the page shows.
   */
  async function lockOut(page, email, what) {
    let at;
    for (let i = 1; i <= ACCOUNT_FAILURES; i++) {
      at = Date.now();
      const res = await submitSignIn(page, email, `wrong-guess-${i}-pumpkin`);
      assert.equal(res.status(), 401, `${what}: wrong password #${i} answered ${res.status()}: "${await pageText(page)}"`);
      await expectAt(page, op, '/login', `${what}: after wrong password #${i}`);
      if (i < ACCOUNT_FAILURES) {
        const text = await formError(page);
        assert.ok(text.includes(WRONG_CREDENTIALS), `${what}: wrong password #${i}: "${text}"`);
        assert.doesNotMatch(text, LOCKED, `${what}: locked already after ${i} wrong passwords`);
      }
    }
    const until = await expectLockedMessage(page, at, `${what}: after wrong password #${ACCOUNT_FAILURES} (the one that locks)`);
    return { at, until };
  }

  /** Opens an unlock link, presses ロックを解除する; resolves with the done page's answer. */
  async function unlock(page, link, what) {
    const opened = await page.goto(link);
    assert.equal(opened?.status(), 200, `${what}: GET ${redact(link)} answered ${opened?.status()}: "${await pageText(page)}"`);
    await expectAt(page, op, '/unlock', `${what}: after opening the unlock link`);
    const button = page.getByRole('button', { name: UNLOCK_BUTTON, exact: true });
    await button.waitFor({ state: 'visible' });
    const res = await clickAndWait(page, button);
    assert.equal(res?.status(), 200, `${what}: POST /unlock answered ${res?.status()}: "${await pageText(page)}"`);
    const done = page.getByRole('status');
    await done.waitFor({ state: 'visible' });
    assert.equal((await done.innerText()).trim(), UNLOCKED, `${what}: after ${UNLOCK_BUTTON}: "${await pageText(page)}"`);
    return res;
  }

  /** Every mail to `email` (optionally with `subject`) in the outbox now. */
  async function mailsTo(email, subject) {
    return (await readOutbox(stack.outbox)).filter((m) => m.to.includes(email) && (!subject || m.subject === subject));
  }

  // --------------------------------------------------------------- tests

  it('ten wrong passwords lock the account, the owner\'s mail unlocks it, and the member signs in', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const who = { email: 'misaki@example.jp', name: '高橋美咲', password: 'saffron-glacier-piano-81' };
    await addMember(stack, who);
    const { context, page } = await fresh('misaki');
    await withScreenshot(t, () => page, async () => {
      const t0 = performance.now();
      await toOpSignIn(page);

      // Ten wrong passwords, each typed and submitted: 1-4 are plainly wrong, the 5th
      // locks (and says so, still as a 401), 6-10 are refused unchecked with 429.
      const statuses = [];
      let lockedAt;
      let until;
      let last;
      for (let i = 1; i <= 10; i++) {
        const sentAt = Date.now();
        last = await submitSignIn(page, who.email, `not-my-password-${i}`);
        statuses.push(last.status());
        await expectAt(page, op, '/login', `after wrong password #${i}`);
        const text = await formError(page);
        if (i < ACCOUNT_FAILURES) {
          assert.ok(text.includes(WRONG_CREDENTIALS), `wrong password #${i}: "${text}"`);
          assert.doesNotMatch(text, LOCKED, `locked already after ${i} wrong passwords`);
        } else if (i === ACCOUNT_FAILURES) {
          lockedAt = sentAt;
          until = await expectLockedMessage(page, lockedAt, `wrong password #${i} (the one that locks)`);
          await screenshot(t, page, '-1-locking-attempt');
        } else {
          const again = await expectLockedMessage(page, lockedAt, `wrong password #${i}`);
          assert.equal(again, until, `wrong password #${i}: the lock's end moved from ${until} to ${again}`);
        }
      }
      console.log(`ten wrong passwords answered ${statuses.join(' ')}; locked until ${until} (+09:00)`);
      assert.equal(last.status(), 429, `the 10th wrong password answered ${last.status()}, not 429`);
      assert.deepEqual(
        statuses,
        [401, 401, 401, 401, 401, 429, 429, 429, 429, 429],
        'statuses of ten wrong passwords (5 lock the account; the locking one is a 401, the refused ones 429)',
      );
      const retryAfter = Number(last.headers()['retry-after']);
      assert.ok(
        retryAfter >= 1 && retryAfter <= LOCK_MINUTES * 60 + 1,
        `the 429 carries Retry-After: ${last.headers()['retry-after']} (expected 1-${LOCK_MINUTES * 60 + 1} s)`,
      );
      // The page keeps the address and offers the reset next to the message.
      assert.equal(await page.getByLabel('メールアドレス', { exact: true }).inputValue(), who.email, 'the locked page lost the address');
      await screenshot(t, page, '-2-locked');

      // The owner is told once per lock, not once per refused attempt.
      const mail = await waitForMail(stack.outbox, mailTo(who.email, SUBJECT.locked), { timeoutMs: MAIL_TIMEOUT_MS });
      await new Promise((ok) => setTimeout(ok, MAIL_SETTLE_MS));
      const lockMails = await mailsTo(who.email, SUBJECT.locked);
      assert.equal(lockMails.length, 1, `${lockMails.length} lock mails after ten wrong passwords`);
      const all = await mailsTo(who.email);
      assert.equal(all.length, 1, `mails to ${who.email}: ${all.map((m) => m.subject).join(', ')}`);
      assert.ok(mail.text.includes(until), `the lock mail does not say until when (${until}):\n${mail.text}`);
      const link = mailLink(mail, `${op}/unlock?token=`);

      // The link, opened in the same browser: a button (a GET changes nothing), then done.
      await unlock(page, link, 'the lock mail');
      await screenshot(t, page, '-3-unlocked');
      // The mail carries no parked request (the sign-in that locked is most likely an
      // attacker's), so the done page leads nowhere in particular: the member starts again.
      assert.equal(await page.getByRole('link', { name: 'ログインに戻る' }).count(), 0, 'the done page offers a parked request the mail never carried');

      // The link works once.
      const twice = await fetch(link, { headers: { 'accept-language': 'ja' } });
      assert.equal(twice.status, 400, `the unlock link opened after use answered ${twice.status}`);

      // From the marketplace again, and in with the right password.
      await toOpSignIn(page);
      await signInToMyPage(page, who, 'after unlocking');
      console.log(`ten wrong passwords → mail → unlock → My page: ${Math.round(performance.now() - t0)} ms`);
    }, { close: [context] });
  });

  it('the owner\'s known device still signs in while another device on the same address locks the account, which stays locked for that device', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const who = { email: 'daisuke@example.jp', name: '中村大輔', password: 'walnut-comet-tundra-29' };
    await addMember(stack, who);
    const owner = await fresh('daisuke-owner');
    const attacker = await fresh('daisuke-attacker');
    let last = owner.page;
    await withScreenshot(t, () => last, async () => {
      // The owner signs in once (the device becomes known to the account) and signs out.
      await toOpSignIn(owner.page);
      await signInToMyPage(owner.page, who, 'owner: first sign-in');
      await owner.page.locator('form[action="/logout"] button[type="submit"]').click();
      await arrive(owner.page, (u) => u.origin === mp && u.pathname !== '/mypage', 'owner: after signing out');
      await expectAt(owner.page, mp, '/', 'owner: after signing out');
      await owner.page.waitForLoadState('load');
      const deviceCookie = (await owner.context.cookies(op)).find((c) => c.name === 'tobira_device');
      assert.ok(deviceCookie, 'owner: no tobira_device cookie after signing in');

      // Another browser (another device cookie, same client address 127.0.0.1) guesses.
      last = attacker.page;
      await toOpSignIn(attacker.page);
      const lock = await lockOut(attacker.page, who.email, 'attacker');
      await screenshot(t, attacker.page, '-1-attacker-locked');
      await waitForMail(stack.outbox, mailTo(who.email, SUBJECT.locked), { timeoutMs: MAIL_TIMEOUT_MS });

      // The owner, meanwhile: a typo is just a typo (no lock on this device) ...
      last = owner.page;
      await toOpSignIn(owner.page);
      const typo = await submitSignIn(owner.page, who.email, `${who.password}-typo`);
      assert.equal(typo.status(), 401, `owner: a typo answered ${typo.status()}: "${await pageText(owner.page)}"`);
      const typoText = await formError(owner.page);
      assert.ok(typoText.includes(WRONG_CREDENTIALS), `owner: after a typo: "${typoText}"`);
      assert.doesNotMatch(typoText, LOCKED, 'owner: the known device is locked out by the other device\'s guesses');
      // ... and the right password signs in.
      await signInToMyPage(owner.page, who, 'owner: while the account is locked for other devices');
      await screenshot(t, owner.page, '-2-owner-signed-in');

      // The lock still holds for the other device, even with the right password.
      last = attacker.page;
      const right = await submitSignIn(attacker.page, who.email, who.password);
      assert.equal(
        right.status(),
        429,
        `attacker: the right password after the owner signed in answered ${right.status()} (expected 429, locked): "${await pageText(attacker.page)}"`,
      );
      await expectAt(attacker.page, op, '/login', 'attacker: the right password while locked');
      const still = await expectLockedMessage(attacker.page, lock.at, 'attacker: the right password while locked');
      assert.equal(still, lock.until, `attacker: the lock's end moved from ${lock.until} to ${still}`);
      await screenshot(t, attacker.page, '-3-attacker-still-locked');
    }, { close: [owner.context, attacker.context] });
  });

  it('sign-in help mails a locked, an unverified and an unknown address', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const locked = { email: 'yuki@example.jp', name: '小林由紀', password: 'ember-quilt-harbor-54' };
    const unverified = { email: 'sora@example.jp', name: '加藤空', password: 'glacier-lemon-violet-36' };
    const unknown = { email: 'nobody-here@example.jp' };
    await addMember(stack, locked);
    const c = await fresh('signin-help');
    const d = await fresh('signin-help-unverified');
    let last = c.page;
    const notices = []; // { who, status, text }

    /** From the OP's sign-in page: ログインできない方 → the help form → its notice. */
    async function askForHelp(page, email, who) {
      const link = page.getByRole('link', { name: 'ログインできない方', exact: true });
      assert.equal(await link.count(), 1, `${who}: no ログインできない方 link on the sign-in page: "${await pageText(page)}"`);
      await clickAndWait(page, link);
      await expectAt(page, op, '/signin-help', `${who}: after clicking ログインできない方`);
      const form = page.locator('form:has(input[name="email"])');
      assert.equal(await form.count(), 1, `${who}: no form with an email field on /signin-help`);
      await form.locator('input[name="email"]').fill(email);
      const submit = form.locator('button[type="submit"], input[type="submit"]');
      assert.equal(await submit.count(), 1, `${who}: the help form has ${await submit.count()} submit buttons`);
      const res = await clickAndWait(page, submit);
      const notice = page.locator('p.notice[role="status"]');
      await notice.waitFor({ state: 'visible' });
      const text = (await notice.innerText()).replace(/\s+/g, ' ').trim();
      notices.push({ who, status: res?.status(), text });
      return text;
    }

    await withScreenshot(t, () => last, async () => {
      // A locked account: five wrong passwords, then the help page.
      await toOpSignIn(c.page);
      await lockOut(c.page, locked.email, 'locked');
      await waitForMail(stack.outbox, mailTo(locked.email, SUBJECT.locked), { timeoutMs: MAIL_TIMEOUT_MS });
      await askForHelp(c.page, locked.email, 'locked');
      await screenshot(t, c.page, '-1-help-sent-locked');
      const helpLocked = await waitForMail(stack.outbox, mailTo(locked.email, SUBJECT.help), { timeoutMs: MAIL_TIMEOUT_MS });
      const unlockLink = mailLink(helpLocked, `${op}/unlock?token=`);

      // An unverified sign-up (its verification mail left unopened), then the help page.
      last = d.page;
      await toOpSignIn(d.page);
      await clickAndWait(d.page, d.page.getByRole('link', { name: 'アカウントを作成' }));
      await expectAt(d.page, op, '/signup', 'unverified: after clicking アカウントを作成');
      await d.page.getByLabel('メールアドレス', { exact: true }).fill(unverified.email);
      await d.page.getByLabel('表示名', { exact: true }).fill(unverified.name);
      await d.page.getByLabel('パスワード', { exact: true }).fill(unverified.password);
      const signedUp = await clickAndWait(d.page, d.page.getByRole('button', { name: '登録する' }));
      assert.equal(signedUp?.status(), 200, `unverified: POST /signup answered ${signedUp?.status()}: "${await pageText(d.page)}"`);
      await waitForMail(stack.outbox, mailTo(unverified.email, SUBJECT.verify), { timeoutMs: MAIL_TIMEOUT_MS });
      await toOpSignIn(d.page);
      await askForHelp(d.page, unverified.email, 'unverified');
      const helpUnverified = await waitForMail(stack.outbox, mailTo(unverified.email, SUBJECT.help), { timeoutMs: MAIL_TIMEOUT_MS });
      const verifyLink = mailLink(helpUnverified, `${op}/verify-email?token=`);
      assert.throws(() => mailLink(helpUnverified, `${op}/unlock?token=`), 'the help mail to an unverified (unlocked) address carries an unlock link');

      // An address without an account.
      await toOpSignIn(d.page);
      await askForHelp(d.page, unknown.email, 'unknown');
      await screenshot(t, d.page, '-2-help-sent-unknown');
      const noAccount = await waitForMail(stack.outbox, mailTo(unknown.email, SUBJECT.noAccount), { timeoutMs: MAIL_TIMEOUT_MS });
      for (const path of ['/unlock?token=', '/verify-email?token=', '/password/reset?token=']) {
        assert.ok(!`${noAccount.text}\n${noAccount.html}`.includes(path), `the mail to an unknown address carries a ${path} link`);
      }

      // The page answers the same whoever asked: it tells nobody who has an account.
      console.log(`sign-in help notices:\n${notices.map((n) => `  ${n.who}: ${n.status} "${n.text}"`).join('\n')}`);
      for (const n of notices.slice(1)) {
        assert.equal(n.status, notices[0].status, `the help page answered ${n.who} with ${n.status}, ${notices[0].who} with ${notices[0].status}`);
        assert.equal(n.text, notices[0].text, `the help page's notice differs between ${notices[0].who} and ${n.who}`);
      }

      // The links work: the unlock link lifts the lock and the member signs in ...
      last = c.page;
      await unlock(c.page, unlockLink, 'the sign-in help mail');
      await toOpSignIn(c.page);
      await signInToMyPage(c.page, locked, 'locked: after the help mail\'s unlock link');
      await screenshot(t, c.page, '-3-locked-signed-in');

      // ... and the verification link (bound to no browser, so it asks for the password
      // the sign-up chose, even in the browser that signed up) verifies the address.
      last = d.page;
      const opened = await d.page.goto(verifyLink);
      assert.equal(opened?.status(), 200, `the help mail's verification link answered ${opened?.status()}: "${await pageText(d.page)}"`);
      await expectAt(d.page, op, '/verify-email', 'after opening the help mail\'s verification link');
      await d.page.getByLabel('パスワード', { exact: true }).fill(unverified.password);
      const confirmed = await clickAndWait(d.page, d.page.getByRole('button', { name: '確認する', exact: true }));
      assert.equal(confirmed?.status(), 200, `POST /verify-email answered ${confirmed?.status()}: "${await pageText(d.page)}"`);
      const verified = d.page.getByRole('status');
      await verified.waitFor({ state: 'visible' });
      assert.ok(
        (await verified.innerText()).includes('メールアドレスを確認しました'),
        `after 確認する: "${await pageText(d.page)}"`,
      );
      await screenshot(t, d.page, '-4-verified');
      await toOpSignIn(d.page);
      await signInToMyPage(d.page, unverified, 'unverified: after the help mail\'s verification link');
    }, { close: [c.context, d.context] });
  });
});
