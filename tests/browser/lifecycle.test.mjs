// Real-browser end-to-end test of the moments an account changes hands or ends, at
// the tobira OP's console, with the marketplace signed in alongside: changing the
// sign-in address (a link to the new address, a mail with an undo link to the old
// one, and the undo), changing the password (the other browser is signed out of the
// OP and, by back-channel logout, of the marketplace), leaving (退会: sign-in refused,
// the marketplace session ended, the same address refused at sign-up with the date it
// can come back) and an account frozen by support (its message names the contact).
// One OP + marketplace stack for the whole file; every test has a member of its own,
// so the tests do not depend on each other. The OP is configured with a support contact.
//
// Prints how long the marketplace session of a signed-out browser lives on after the
// action (`… → marketplace session ended: N ms`).
//
// Screenshots and the servers' logs go to artifacts/lifecycle/.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ARTIFACTS, addMember, mailLink, readOutbox, runTobira, waitForMail } from './lib/harness.mjs';
import { displayMinute, pages, sharedStack } from './lib/pages.mjs';

const TEST_TIMEOUT_MS = 120_000;
const MAIL_TIMEOUT_MS = 15_000;
const OUT = join(ARTIFACTS, 'lifecycle');

/** `account.support_contact` of this file's OP: the frozen account's message names it. */
const SUPPORT_CONTACT = 'support@tobira.example';
/** `account.reregister_cooldown_days`, left at its default. */
const COOLDOWN_DAYS = 30;

const SUBJECT = {
  verify: '【Tobira】メールアドレスの確認',
  reset: '【Tobira】パスワードの再設定',
  changed: '【Tobira】パスワードが変更されました',
  deleted: '【Tobira】退会手続きが完了しました',
  cooldown: '【Tobira】このアドレスでの新規登録について',
  emailConfirm: '【Tobira】新しいメールアドレスの確認',
  emailChanged: '【Tobira】メールアドレスが変更されました',
  frozen: '【Tobira】アカウントの利用を停止しました',
  unfrozen: '【Tobira】アカウントの利用停止を解除しました',
};

/** What the pages say (crates/auth/src/web/i18n.rs, Japanese). */
const TEXT = {
  wrongCredentials: 'メールアドレスまたはパスワードが正しくありません',
  resetRequired: 'パスワードを再設定するまでログインできません',
  frozen: 'このアカウントは現在ご利用いただけません。サポートにお問い合わせください。',
  deleteMismatch: '入力されたメールアドレスが、このアカウントのものと一致しません。退会していません。',
  signupSent: '確認メールをお送りしました',
  resetDone: 'パスワードを変更しました',
  emailSent: 'リンクから変更を確定するまで、ログインに使うアドレスは変わりません。',
  emailChanged: 'メールアドレスを変更しました。',
  emailUndone: 'メールアドレスを元に戻し、すべての端末とアプリからログアウトしました。パスワード再設定用のリンクをこのアドレスにお送りしました',
  passwordChanged: 'パスワードを変更しました。他のすべての端末からログアウトしました。',
  deleted: '退会手続きが完了し、すべての端末からログアウトしました。',
  deleteKept: '退会から90日間保管したのち消去します。',
  deleteAgain: '同じメールアドレスで新しく登録できるのは、退会から30日後です。',
};

/** The paths of the pages under test (crates/auth/src/account/mod.rs). */
const PATH = {
  email: '/account/email',
  emailConfirm: '/account/email/confirm',
  emailUndo: '/account/email/undo',
  password: '/account/password',
  delete: '/account/delete',
};

/**
 * The minutes a mail may name as "from when the address can sign up again" for a
 * deletion between `fromMs` and `toMs`: `COOLDOWN_DAYS` on, the minute of the moment
 * or the next one (a time said with 以降 is rounded up, never before the real end).
 */
function cooldownMinutes(fromMs, toMs) {
  const shift = COOLDOWN_DAYS * 86_400_000;
  const shown = new Set();
  for (let ms = fromMs + shift; ms < toMs + shift + 120_000; ms += 60_000) {
    shown.add(displayMinute(Math.min(ms, toMs + shift + 60_000)));
  }
  return [...shown];
}

describe('changing the address and the password, leaving and a frozen account at tobira, in Chromium', { concurrency: false }, () => {
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
    formError,
    fresh,
    mailTo,
    pageText,
    screenshot,
    signInToMyPage,
    submitSignIn,
    toOpSignIn,
    untilSignedOutOfMarketplace,
    withScreenshot,
  } = pages({ browser: () => browser, op: () => op, mp: () => mp, out: OUT, problems });

  sharedStack({
    out: OUT,
    problems,
    expected: 'a 4xx answer to a refused form or sign-in is expected',
    opEnv: { TOBIRA_ACCOUNT__SUPPORT_CONTACT: SUPPORT_CONTACT },
    ready: (started) => {
      ({ stack, browser, op, mp } = started);
    },
  });

  // ------------------------------------------------------------- helpers

  /** A fresh browser signed in as `who` at the marketplace through the OP's form. */
  async function signedIn(label, who) {
    const browserOf = await fresh(label);
    await toOpSignIn(browserOf.page);
    await signInToMyPage(browserOf.page, who, `${label}: signing in`);
    return browserOf;
  }

  /**
   * Opens the console page `path` right after a sign-in (recent enough: no
   * re-authentication) and waits for its form `#formId`.
   */
  async function openConsolePage(page, path, formId, what) {
    const res = await page.goto(`${op}${path}`);
    await expectAt(page, op, path, `${what}: ${path} right after signing in (no re-authentication expected)`);
    assert.equal(res?.status(), 200, `${what}: ${path} answered ${res?.status()}: "${await pageText(page)}"`);
    await page.locator(`form#${formId}`).waitFor({ state: 'visible' });
  }

  /** Submits the form `#formId` with its submit button; resolves with the answer. */
  async function submit(page, formId) {
    return clickAndWait(page, page.locator(`form#${formId} button[type="submit"]`));
  }

  /** Waits for the notice `#id` after a form and resolves with its text. */
  async function notice(page, id, what) {
    const p = page.locator(`#${id}`);
    await p.waitFor({ state: 'visible' }).catch(async (e) => {
      throw new Error(`${what}: no #${id} at ${page.url()}: "${await pageText(page)}"`, { cause: e });
    });
    return (await p.innerText()).replace(/\s+/g, ' ').trim();
  }

  /** The newest mail to `to` holding a link that starts with `prefix`, and that link. */
  async function mailWithLink(to, prefix) {
    const mail = await waitForMail(
      stack.outbox,
      (m) => m.to.includes(to) && (m.text.includes(prefix) || m.html.includes(prefix)),
      { timeoutMs: MAIL_TIMEOUT_MS },
    );
    return { mail, link: mailLink(mail, prefix) };
  }

  /** The OP's console sends a browser without an OP session to its sign-in form. */
  async function expectOpSignedOut(page, what) {
    await page.goto(`${op}/account`);
    await arrive(page, (u) => u.origin === op && u.pathname !== '/account', `${what}: the console`);
    await expectAt(page, op, '/login', `${what}: the console (the OP session must be gone)`);
  }

  /** The OP's console still opens for a browser whose session must have stayed. */
  async function expectOpSignedIn(page, who, what) {
    const res = await page.goto(`${op}/account`);
    await expectAt(page, op, '/account', `${what}: the console (the OP session must stay)`);
    assert.equal(res?.status(), 200, `${what}: /account answered ${res?.status()}`);
    assert.ok((await page.locator('body').innerText()).includes(who.email), `${what}: the console does not show ${who.email}`);
  }

  /**
   * From the OP's sign-in form (shown), a sign-in that must be refused; resolves with
   * the error line. The POST's status is logged; a 303 (the sign-in taken) fails.
   */
  async function refusedSignIn(page, email, password, what) {
    const res = await submitSignIn(page, email, password);
    assert.notEqual(res.status(), 303, `${what}: the sign-in was taken: "${await pageText(page)}"`);
    await expectAt(page, op, '/login', what);
    const error = await formError(page);
    console.log(`${what}: ${res.status()} "${error}"`);
    return error;
  }

  // --------------------------------------------------------------- tests

  it('changes the sign-in address with the link mailed to the new one, mails an undo link to the old one, and the undo puts the address back, ends every session and asks for a password reset', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const who = { email: 'sakura@example.jp', name: '星野さくら', password: 'saffron-glacier-piano-31' };
    const moved = { ...who, email: 'sakura.hoshino@example.net' };
    const newPassword = 'tidal-marble-kestrel-64';
    await addMember(stack, who);
    const a = await signedIn('sakura-A', who);
    let b;
    let c;
    let last = a.page;
    await withScreenshot(t, () => last, async () => {
      // A: the address page, right after signing in.
      await openConsolePage(a.page, PATH.email, 'email-change', 'A');
      const current = (await a.page.locator('#current-email').innerText()).trim();
      assert.ok(current.includes(who.email), `A: #current-email says "${current}", expected ${who.email}`);
      await a.page.locator('form#email-change input[name="email"]').fill(moved.email);
      await screenshot(t, a.page, '-1-email-form');
      const asked = await submit(a.page, 'email-change');
      const sent = await notice(a.page, 'email-sent', 'A: after asking for the change');
      console.log(`A: POST ${PATH.email} answered ${asked?.status()}: "${sent}"`);
      assert.ok(sent.includes(TEXT.emailSent), `A: after asking for the change: "${sent}"`);
      const unchanged = (await a.page.locator('#current-email').innerText()).trim();
      assert.ok(unchanged.includes(who.email), `A: #current-email says "${unchanged}" before the link is used`);

      // The new address gets the link; the address changes only when it is used.
      const confirm = await mailWithLink(moved.email, `${op}${PATH.emailConfirm}?token=`);
      assert.equal(confirm.mail.subject, SUBJECT.emailConfirm, 'the mail to the new address');
      const opened = await a.page.goto(confirm.link);
      assert.equal(opened?.status(), 200, `the confirmation link answered ${opened?.status()}: "${await pageText(a.page)}"`);
      await expectAt(a.page, op, PATH.emailConfirm, 'A: the confirmation link');
      await a.page.locator('form#email-confirm').waitFor({ state: 'visible' });
      await screenshot(t, a.page, '-2-confirm');
      await submit(a.page, 'email-confirm');
      const changed = await notice(a.page, 'email-changed', 'A: after confirming');
      assert.ok(changed.includes(TEXT.emailChanged), `A: after confirming: "${changed}"`);
      const again = await fetch(confirm.link, { redirect: 'manual', headers: { 'accept-language': 'ja' } });
      assert.equal(again.status, 400, `the confirmation link opened again after use answered ${again.status}`);

      // The old address is told at once, with the undo link.
      const undo = await mailWithLink(who.email, `${op}${PATH.emailUndo}?token=`);
      assert.equal(undo.mail.subject, SUBJECT.emailChanged, 'the mail to the old address');
      console.log(`mail to the old address:\n${undo.mail.text}`);
      await a.page.goto(`${op}${PATH.email}`);
      await expectAt(a.page, op, PATH.email, 'A: the address page after the change');
      const now = (await a.page.locator('#current-email').innerText()).trim();
      assert.ok(now.includes(moved.email), `A: #current-email says "${now}" after the change, expected ${moved.email}`);

      // B: the old address no longer signs in; the new one does.
      b = await fresh('sakura-B');
      last = b.page;
      await toOpSignIn(b.page);
      const old = await refusedSignIn(b.page, who.email, who.password, 'B: the old address after the change');
      assert.ok(old.includes(TEXT.wrongCredentials), `B: the old address after the change: "${old}"`);
      await signInToMyPage(b.page, moved, 'B: the new address');

      // C, the old mailbox's browser: the undo link.
      c = await fresh('sakura-C');
      last = c.page;
      const undoPage = await c.page.goto(undo.link);
      assert.equal(undoPage?.status(), 200, `the undo link answered ${undoPage?.status()}: "${await pageText(c.page)}"`);
      await expectAt(c.page, op, PATH.emailUndo, 'C: the undo link');
      await c.page.locator('form#email-undo').waitFor({ state: 'visible' });
      console.log(`C: the undo page: "${await pageText(c.page)}"`);
      await screenshot(t, c.page, '-3-undo');
      const t0 = performance.now();
      await submit(c.page, 'email-undo');
      const undone = await notice(c.page, 'email-undone', 'C: after the undo');
      assert.ok(undone.includes(TEXT.emailUndone), `C: after the undo: "${undone}"`);
      const replay = await fetch(undo.link, { redirect: 'manual', headers: { 'accept-language': 'ja' } });
      assert.equal(replay.status, 400, `the undo link opened again after use answered ${replay.status}`);

      // Every session ended: both marketplace sessions by back-channel logout, A's OP session.
      last = b.page;
      const msB = await untilSignedOutOfMarketplace(b.page, moved, t0, 'B after the undo');
      last = a.page;
      const msA = await untilSignedOutOfMarketplace(a.page, who, t0, 'A after the undo');
      console.log(`email undo → marketplace sessions ended: B ${msB} ms, A ${msA} ms`);
      await expectOpSignedOut(a.page, 'A after the undo');

      // Sign-in with the old address is refused, even with the right password, until a reset.
      last = c.page;
      await toOpSignIn(c.page);
      const refused = await refusedSignIn(c.page, who.email, who.password, 'C: the restored address before a reset');
      assert.ok(refused.includes(TEXT.resetRequired), `C: the restored address before a reset: "${refused}"`);
      const forgot = c.page.locator('#form-error a[href*="/password/forgot"]');
      assert.equal(await forgot.count(), 1, `C: the refusal has no link to /password/forgot: "${refused}"`);
      await screenshot(t, c.page, '-4-reset-required');
      const gone = await refusedSignIn(c.page, moved.email, who.password, 'C: the address the undo left');
      assert.ok(gone.includes(TEXT.wrongCredentials), `C: the address the undo left: "${gone}"`);

      // The reset link went to the old address; after the reset the old address signs in.
      const reset = await mailWithLink(who.email, `${op}/password/reset?token=`);
      assert.equal(reset.mail.subject, SUBJECT.reset, 'the reset mail after the undo');
      await c.page.goto(reset.link);
      await expectAt(c.page, op, '/password/reset', 'C: the reset link');
      await c.page.getByLabel('新しいパスワード', { exact: true }).fill(newPassword);
      await c.page.getByLabel('新しいパスワード（確認）', { exact: true }).fill(newPassword);
      await clickAndWait(c.page, c.page.getByRole('button', { name: 'パスワードを設定する' }));
      const done = c.page.getByRole('status');
      await done.waitFor({ state: 'visible' });
      assert.ok((await done.innerText()).includes(TEXT.resetDone), `C: after the reset: "${await pageText(c.page)}"`);
      await toOpSignIn(c.page);
      await signInToMyPage(c.page, { ...who, password: newPassword }, 'C: the restored address after the reset');
      await screenshot(t, c.page, '-5-signed-in-again');
    }, { close: [a.context, { close: async () => b?.context.close() }, { close: async () => c?.context.close() }] });
  });

  it('changes the password and signs the other browser out of the OP and, by back-channel logout, of the marketplace, while this one stays signed in', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const who = { email: 'daichi@example.jp', name: '小林大地', password: 'cinder-poplar-atlas-19' };
    const newPassword = 'ember-quill-horizon-85';
    await addMember(stack, who);
    const a = await signedIn('daichi-A', who);
    const b = await signedIn('daichi-B', who);
    let last = a.page;
    await withScreenshot(t, () => last, async () => {
      await openConsolePage(a.page, PATH.password, 'password-change', 'A');
      const others = a.page.locator('form#password-change input[name="sign_out_others"]');
      assert.equal(await others.isChecked(), true, 'A: 他の端末からログアウト is not checked by default');

      // A wrong current password changes nothing.
      const form = a.page.locator('form#password-change');
      await form.locator('input[name="current_password"]').fill(`${who.password}-typo`);
      await form.locator('input[name="password"]').fill(newPassword);
      await form.locator('input[name="confirm"]').fill(newPassword);
      const wrong = await submit(a.page, 'password-change');
      assert.notEqual(wrong?.status(), 303, 'A: a wrong current password was taken');
      const error = await formError(a.page);
      console.log(`A: a wrong current password: ${wrong?.status()} "${error}"`);
      assert.equal(await a.page.locator('#password-changed').count(), 0, `A: a wrong current password changed the password: "${await pageText(a.page)}"`);

      // The right one, with the box left as it is (checked).
      await form.locator('input[name="current_password"]').fill(who.password);
      await form.locator('input[name="password"]').fill(newPassword);
      await form.locator('input[name="confirm"]').fill(newPassword);
      assert.equal(await others.isChecked(), true, 'A: the box is no longer checked after the refused attempt');
      await screenshot(t, a.page, '-1-password-form');
      const t0 = performance.now();
      await submit(a.page, 'password-change');
      const changed = await notice(a.page, 'password-changed', 'A: after changing the password');
      assert.ok(changed.includes(TEXT.passwordChanged), `A: after changing the password: "${changed}"`);
      await screenshot(t, a.page, '-2-changed');

      // B: signed out of the marketplace by back-channel logout, and of the OP.
      last = b.page;
      const ms = await untilSignedOutOfMarketplace(b.page, who, t0, 'B after the password change');
      console.log(`password change → other browser's marketplace session ended: ${ms} ms`);
      await expectOpSignedOut(b.page, 'B after the password change');
      await screenshot(t, b.page, '-3-b-signed-out');

      // A stays signed in, at the OP and at the marketplace.
      last = a.page;
      await expectOpSignedIn(a.page, who, 'A after the password change');
      await a.page.goto(`${mp}/mypage`);
      await expectMyPage(a.page, who, 'A at the marketplace after the password change');

      // The member is told, with the way to a reset for "this wasn't me".
      const mail = await waitForMail(stack.outbox, mailTo(who.email, SUBJECT.changed), { timeoutMs: MAIL_TIMEOUT_MS });
      mailLink(mail, `${op}/password/forgot`);

      // B: the old password is refused, the new one signs in.
      last = b.page;
      await toOpSignIn(b.page);
      const old = await refusedSignIn(b.page, who.email, who.password, 'B: the old password');
      assert.ok(old.includes(TEXT.wrongCredentials), `B: the old password: "${old}"`);
      await signInToMyPage(b.page, { ...who, password: newPassword }, 'B: the new password');
    }, { close: [a.context, b.context] });
  });

  it('deletes the account: sign-in is refused, the marketplace sessions end, a mail confirms it, and signing up again with the address is answered as usual with a mail saying from when', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const who = { email: 'yui@example.jp', name: '中村結衣', password: 'violet-harbor-comet-27' };
    await addMember(stack, who);
    const a = await signedIn('yui-A', who);
    const b = await signedIn('yui-B', who);
    let last = a.page;
    await withScreenshot(t, () => last, async () => {
      await openConsolePage(a.page, PATH.delete, 'delete-account', 'A');
      // It says in plain words what is kept, how long, and when the address can come back.
      const afterwards = await a.page.locator('[data-testid="afterwards"]').innerText();
      for (const words of [TEXT.deleteKept, TEXT.deleteAgain]) {
        assert.ok(afterwards.includes(words), `A: the deletion page does not say "${words}": "${await pageText(a.page)}"`);
      }
      await screenshot(t, a.page, '-1-delete-page');

      // Another address as the confirmation changes nothing.
      const confirm = a.page.locator('form#delete-account input[name="confirm"]');
      await confirm.fill('someone-else@example.jp');
      const wrong = await submit(a.page, 'delete-account');
      assert.notEqual(wrong?.status(), 303, 'A: a wrong confirmation was taken');
      const error = await formError(a.page);
      assert.ok(error.includes(TEXT.deleteMismatch), `A: a wrong confirmation: "${error}"`);
      assert.equal(await a.page.locator('#account-deleted').count(), 0, 'A: a wrong confirmation deleted the account');

      await confirm.fill(who.email);
      const from = Date.now();
      const t0 = performance.now();
      await submit(a.page, 'delete-account');
      const to = Date.now();
      const deleted = await notice(a.page, 'account-deleted', 'A: after 退会する');
      assert.ok(deleted.includes(TEXT.deleted), `A: after 退会する: "${deleted}"`);
      await screenshot(t, a.page, '-2-deleted');

      // Both marketplace sessions end by back-channel logout.
      last = b.page;
      const msB = await untilSignedOutOfMarketplace(b.page, who, t0, 'B after the deletion');
      last = a.page;
      const msA = await untilSignedOutOfMarketplace(a.page, who, t0, 'A after the deletion');
      console.log(`delete → marketplace sessions ended: B ${msB} ms, A ${msA} ms`);
      await expectOpSignedOut(a.page, 'A after the deletion');

      const mail = await waitForMail(stack.outbox, mailTo(who.email, SUBJECT.deleted), { timeoutMs: MAIL_TIMEOUT_MS });
      console.log(`deletion mail:\n${mail.text}`);
      const minutes = cooldownMinutes(from, to);
      const againFrom = minutes.find((m) => mail.text.includes(m));
      assert.ok(againFrom, `the deletion mail does not say from when the address can sign up again (${minutes.join(' or ')}, ${COOLDOWN_DAYS} days on):\n${mail.text}`);

      // Sign-in with the right password: the ordinary wrong-credentials answer.
      last = b.page;
      await toOpSignIn(b.page);
      const refused = await refusedSignIn(b.page, who.email, who.password, 'B: the deleted account');
      assert.ok(refused.includes(TEXT.wrongCredentials), `B: the deleted account's right password: "${refused}"`);
      await screenshot(t, b.page, '-3-refused');

      // Signing up again with the address: the usual answer, and a mail with the date.
      await clickAndWait(b.page, b.page.getByRole('link', { name: 'アカウントを作成' }));
      await expectAt(b.page, op, '/signup', 'B: after clicking アカウントを作成');
      await b.page.getByLabel('メールアドレス', { exact: true }).fill(who.email);
      await b.page.getByLabel('表示名', { exact: true }).fill(who.name);
      await b.page.getByLabel('パスワード', { exact: true }).fill('lotus-anchor-meteor-58');
      const res = await clickAndWait(b.page, b.page.getByRole('button', { name: '登録する' }));
      assert.equal(res?.status(), 200, `POST /signup with the deleted address answered ${res?.status()}: "${await pageText(b.page)}"`);
      const sent = b.page.getByRole('status');
      await sent.waitFor({ state: 'visible' });
      assert.ok((await sent.innerText()).includes(TEXT.signupSent), `B: after 登録する: "${await pageText(b.page)}"`);
      await screenshot(t, b.page, '-4-signup-answer');
      const cooldown = await waitForMail(stack.outbox, mailTo(who.email, SUBJECT.cooldown), { timeoutMs: MAIL_TIMEOUT_MS });
      console.log(`sign-up cooldown mail:\n${cooldown.text}`);
      assert.ok(cooldown.text.includes(againFrom), `the sign-up mail does not say ${againFrom}, as the deletion mail does:\n${cooldown.text}`);
      assert.ok(!cooldown.text.includes('/password/'), `the sign-up mail to a deleted address offers a password link:\n${cooldown.text}`);
      const mails = (await readOutbox(stack.outbox)).filter((m) => m.to.includes(who.email)).map((m) => m.subject);
      assert.ok(!mails.includes(SUBJECT.verify), `a verification mail went to the deleted address: ${mails.join(' / ')}`);
    }, { close: [a.context, b.context] });
  });

  it('freezing an account by support ends its marketplace session, mails the member, and its sign-in names the support contact only after the right password', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const who = { email: 'sota@example.jp', name: '高橋蒼太', password: 'granite-willow-signal-73' };
    const reason = '不正利用の疑いがあるため（受付番号 T-1234）';
    await addMember(stack, who);
    const a = await signedIn('sota', who);
    await withScreenshot(t, () => a.page, async () => {
      const t0 = performance.now();
      // The CLI says what it did on stderr; a non-zero exit rejects.
      await runTobira(stack, ['users', 'freeze', '--email', who.email, '--reason', reason, '--mail-reason']);

      const ms = await untilSignedOutOfMarketplace(a.page, who, t0, 'after the freeze');
      console.log(`freeze → marketplace session ended: ${ms} ms`);
      await expectOpSignedOut(a.page, 'after the freeze');

      // The member is mailed, with the reason (--mail-reason) and the contact.
      const mail = await waitForMail(stack.outbox, mailTo(who.email, SUBJECT.frozen), { timeoutMs: MAIL_TIMEOUT_MS });
      assert.ok(mail.text.includes(reason), `the freeze mail (--mail-reason) does not give the reason:\n${mail.text}`);
      assert.ok(mail.text.includes(SUPPORT_CONTACT), `the freeze mail does not name ${SUPPORT_CONTACT}:\n${mail.text}`);

      // A wrong password: the ordinary answer; the right one: the frozen message and the contact.
      await toOpSignIn(a.page);
      const wrong = await refusedSignIn(a.page, who.email, `${who.password}-typo`, 'a wrong password for the frozen account');
      assert.ok(wrong.includes(TEXT.wrongCredentials), `a wrong password for the frozen account: "${wrong}"`);
      assert.ok(!wrong.includes(SUPPORT_CONTACT), `a wrong password is told the support contact: "${wrong}"`);
      const frozen = await refusedSignIn(a.page, who.email, who.password, 'the right password for the frozen account');
      assert.ok(frozen.includes(TEXT.frozen), `the right password for the frozen account: "${frozen}"`);
      assert.ok(frozen.includes(SUPPORT_CONTACT), `the frozen message does not name ${SUPPORT_CONTACT}: "${frozen}"`);
      await screenshot(t, a.page, '-1-frozen');

      // Unfrozen, the account signs in again.
      await runTobira(stack, ['users', 'unfreeze', '--email', who.email]);
      await waitForMail(stack.outbox, mailTo(who.email, SUBJECT.unfrozen), { timeoutMs: MAIL_TIMEOUT_MS });
      await signInToMyPage(a.page, who, 'after the unfreeze');
    }, { close: [a.context] });
  });
});
