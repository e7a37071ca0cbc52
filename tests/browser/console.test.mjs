// Real-browser end-to-end test of the account console at the tobira OP, reached
// from the marketplace's My page: the sign-in history, the list of signed-in
// devices (signing the others out ends their marketplace sessions through
// back-channel logout), the connected apps (removing the marketplace's access
// signs the member out of it, not out of the OP) and the new-device mail.
// One OP + marketplace stack for the whole file; every test has a member of its
// own, so the tests do not depend on each other.
//
// Prints how long the marketplace session of a signed-out device lives on after
// the click (`… → marketplace session ended: N ms`).
//
// Screenshots and the servers' logs go to artifacts/console/.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ARTIFACTS, addMember, mailLink, readOutbox, waitForMail } from './lib/harness.mjs';
import { displayMinute, pages, sharedStack } from './lib/pages.mjs';

const TEST_TIMEOUT_MS = 120_000;
const MAIL_TIMEOUT_MS = 15_000;
/** How often a signed-out device's My page is asked again, and for how long at most. */
const SIGN_OUT = { pollMs: 100, timeoutMs: 20_000 };
const OUT = join(ARTIFACTS, 'console');

const SUBJECT = { newDevice: '【Tobira】新しい端末からログインがありました' };
const WRONG_CREDENTIALS = 'メールアドレスまたはパスワードが正しくありません';

/**
 * User agents of other devices (given to a context), and what the OP makes of them
 * (`woothee`, crates/auth/src/web/device.rs). Headless Debian Chromium's own user agent
 * ("… (X11; Linux x86_64) … HeadlessChrome/N …") is read as Chrome on Linux.
 */
const DEVICE = {
  chromium: 'Chrome（Linux・パソコン）',
  firefoxWindows: {
    userAgent: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0',
    words: 'Firefox（Windows 10・パソコン）',
  },
  iphone: {
    userAgent:
      'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1',
    words: 'Safari（iPhone 17.1・スマートフォン）',
  },
};

/** The marketplace as the harness registers it (`tobira clients add --name`). */
const MARKETPLACE_NAME = 'マーケット';

/** Every minute shown for a moment between `fromMs` and `toMs`. */
function minutesBetween(fromMs, toMs) {
  const shown = new Set();
  for (let ms = fromMs; ms < toMs + 60_000; ms += 60_000) shown.add(displayMinute(Math.min(ms, toMs)));
  return [...shown];
}

describe('the account console at tobira, from the marketplace, in Chromium', { concurrency: false }, () => {
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
    isAt,
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
    expected: 'a 401 answer to a wrong password is expected',
    ready: (started) => {
      ({ stack, browser, op, mp } = started);
    },
  });

  // ------------------------------------------------------------- helpers

  /** From the marketplace's My page, the link to the OP's console page `path`. */
  async function fromMyPage(page, path, what) {
    await expectAt(page, mp, '/mypage', `${what}: before following the link to ${path}`);
    const link = page.locator(`a[href="${op}${path}"]`);
    assert.equal(await link.count(), 1, `${what}: My page has ${await link.count()} links to ${op}${path}: "${await pageText(page)}"`);
    await clickAndWait(page, link);
    await expectAt(page, op, path, `${what}: after following My page's link to ${path}`);
  }

  /** The items of the device list (`/account/sessions`, shown), in words. */
  async function deviceList(page) {
    await page.locator('h1', { hasText: 'ログイン中の端末' }).waitFor({ state: 'visible' });
    const items = page.locator('[data-testid="session"]');
    const list = [];
    for (const item of await items.all()) {
      list.push({
        item,
        device: (await item.locator('strong').first().innerText()).trim(),
        current: (await item.locator('[data-testid="this-device"]').count()) === 1,
        text: (await item.innerText()).replace(/\s+/g, ' ').trim(),
      });
    }
    return list;
  }

  // --------------------------------------------------------------- tests

  it('shows a failed and a successful sign-in in the history, newest first, with the device in words, the IP, the method and the result', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const who = { email: 'emi@example.jp', name: '伊藤恵美', password: 'orchid-lantern-pebble-73' };
    await addMember(stack, who);
    const { context, page } = await fresh('emi');
    await withScreenshot(t, () => page, async () => {
      const from = Date.now();
      await toOpSignIn(page);
      const wrong = await submitSignIn(page, who.email, `${who.password}-typo`);
      assert.equal(wrong.status(), 401, `a wrong password answered ${wrong.status()}: "${await pageText(page)}"`);
      const error = await formError(page);
      assert.ok(error.includes(WRONG_CREDENTIALS), `after a wrong password: "${error}"`);
      await signInToMyPage(page, who, 'after the right password');
      const to = Date.now();

      await fromMyPage(page, '/account/history', 'history');
      await page.locator('h1', { hasText: 'ログイン履歴' }).waitFor({ state: 'visible' });
      await screenshot(t, page, '-1-history');
      const attempts = page.locator('[data-testid="attempt"]');
      assert.equal(await attempts.count(), 2, `the history of a new member after two attempts: "${await pageText(page)}"`);
      const lines = [];
      for (const a of await attempts.all()) {
        lines.push({
          failed: ((await a.getAttribute('class')) ?? '').split(/\s+/).includes('failed'),
          at: (await a.locator('time').innerText()).trim(),
          result: (await a.locator('strong').first().innerText()).trim(),
          ip: (await a.locator('[data-testid="ip"]').innerText()).trim(),
          newDevice: (await a.locator('[data-testid="new-device"]').count()) === 1,
          text: (await a.innerText()).replace(/\s+/g, ' ').trim(),
        });
      }
      console.log(`history:\n${lines.map((l) => `  ${l.text}`).join('\n')}`);

      const [good, bad] = lines;
      assert.equal(good.result, '成功', `the newest attempt is not the successful one: "${good.text}"`);
      assert.equal(good.failed, false, `the successful attempt is marked failed: "${good.text}"`);
      assert.equal(bad.result, 'パスワード誤り', `the older attempt is not the wrong password: "${bad.text}"`);
      assert.equal(bad.failed, true, `the wrong password is not marked failed: "${bad.text}"`);
      const minutes = minutesBetween(from, to);
      for (const [what, l] of [['the successful attempt', good], ['the failed attempt', bad]]) {
        assert.ok(l.text.includes(DEVICE.chromium), `${what} does not name the device "${DEVICE.chromium}": "${l.text}"`);
        assert.equal(l.ip, '127.0.0.1', `${what}: IP`);
        assert.ok(l.text.includes('方法: パスワード'), `${what} does not say the method: "${l.text}"`);
        assert.ok(minutes.includes(l.at), `${what} happened at ${l.at}, expected one of ${minutes.join(', ')} (+09:00)`);
      }
      assert.ok(good.at >= bad.at, `the newest attempt (${good.at}) is listed before an older one (${bad.at})`);
      // Its first sign-in from this browser: the device is new to the account.
      assert.equal(good.newDevice, true, `the first successful sign-in from this browser is not marked 新しい端末: "${good.text}"`);
    }, { close: [context] });
  });

  it('lists a second device, and signing out all other devices (then one device) ends their marketplace sessions by back-channel logout', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const who = { email: 'kaito@example.jp', name: '渡辺海斗', password: 'copper-willow-summit-46' };
    await addMember(stack, who);
    const a = await fresh('kaito-A');
    const b = await fresh('kaito-B', { userAgent: DEVICE.firefoxWindows.userAgent });
    let last = a.page;
    await withScreenshot(t, () => last, async () => {
      await toOpSignIn(a.page);
      await signInToMyPage(a.page, who, 'A: signing in');
      last = b.page;
      await toOpSignIn(b.page);
      await signInToMyPage(b.page, who, 'B: signing in');

      // A: My page → ログイン中の端末: both devices, A marked as this one.
      last = a.page;
      await fromMyPage(a.page, '/account/sessions', 'A');
      let devices = await deviceList(a.page);
      await screenshot(t, a.page, '-1-two-devices');
      console.log(`A's device list:\n${devices.map((d) => `  ${d.text}`).join('\n')}`);
      assert.equal(devices.length, 2, `A's device list has ${devices.length} items: "${await pageText(a.page)}"`);
      const mine = devices.filter((d) => d.current);
      assert.equal(mine.length, 1, `${mine.length} items are marked この端末`);
      assert.equal(mine[0].device, DEVICE.chromium, 'A (この端末) in words');
      assert.ok(mine[0].text.includes('この端末'), `A's item: "${mine[0].text}"`);
      const other = devices.find((d) => !d.current);
      assert.equal(other.device, DEVICE.firefoxWindows.words, 'B in words');
      for (const d of devices) assert.ok(d.text.includes('IPアドレス: 127.0.0.1'), `no IP on "${d.text}"`);
      assert.equal(await mine[0].item.getByRole('button').count(), 0, 'this device has a sign-out button of its own in the list');
      assert.equal(
        await other.item.getByRole('button', { name: `ログアウト: ${DEVICE.firefoxWindows.words}`, exact: true }).count(),
        1,
        `B's item has no ログアウト button: "${other.text}"`,
      );

      // 他のすべての端末からログアウト: B's marketplace session ends by back-channel logout.
      const t0 = performance.now();
      await clickAndWait(a.page, a.page.getByRole('button', { name: '他のすべての端末からログアウト', exact: true }));
      const tAnswer = performance.now();
      await expectAt(a.page, op, '/account/sessions', 'A: after 他のすべての端末からログアウト');
      const notice = a.page.getByTestId('notice');
      await notice.waitFor({ state: 'visible' });
      assert.equal((await notice.innerText()).trim(), '他のすべての端末からログアウトしました。', 'A: the notice');
      devices = await deviceList(a.page);
      assert.deepEqual(devices.map((d) => [d.device, d.current]), [[DEVICE.chromium, true]], 'A: the list after signing the others out');
      assert.equal(await a.page.getByRole('button', { name: '他のすべての端末からログアウト' }).count(), 0, 'the button stays with no other device');
      await screenshot(t, a.page, '-2-others-signed-out');

      last = b.page;
      const ms = await untilSignedOutOfMarketplace(b.page, who, t0, 'B after 他のすべての端末からログアウト', SIGN_OUT);
      console.log(`sign out all other devices → marketplace session ended: ${ms} ms (the OP answered the click in ${Math.round(tAnswer - t0)} ms)`);
      await screenshot(t, b.page, '-3-b-signed-out');

      // A stays signed in at the marketplace; B's OP session is gone (no single sign-on).
      last = a.page;
      await a.page.goto(`${mp}/mypage`);
      await expectMyPage(a.page, who, 'A at the marketplace after signing the other devices out');
      last = b.page;
      await b.page.goto(`${mp}/login`);
      await arrive(b.page, (u) => isAt(op, '/login')(u) || (u.origin === mp && u.pathname !== '/login'), 'B: signing in again');
      await expectAt(b.page, op, '/login', 'B: signing in again (its OP session must be gone, no single sign-on)');

      // Second round: B signs in again, and A signs B alone out with its own button.
      await signInToMyPage(b.page, who, 'B: signing in again');
      last = a.page;
      await a.page.goto(`${op}/account/sessions`);
      devices = await deviceList(a.page);
      assert.equal(devices.length, 2, `A's device list after B signed in again: ${devices.map((d) => d.text).join(' | ')}`);
      const t1 = performance.now();
      await clickAndWait(a.page, a.page.getByRole('button', { name: `ログアウト: ${DEVICE.firefoxWindows.words}`, exact: true }));
      await notice.waitFor({ state: 'visible' });
      assert.equal((await notice.innerText()).trim(), '端末をログアウトしました。', 'A: the notice after signing B out');
      devices = await deviceList(a.page);
      assert.deepEqual(devices.map((d) => [d.device, d.current]), [[DEVICE.chromium, true]], 'A: the list after signing B out');

      last = b.page;
      const one = await untilSignedOutOfMarketplace(b.page, who, t1, 'B after its ログアウト button', SIGN_OUT);
      console.log(`sign out one device → marketplace session ended: ${one} ms`);
      last = a.page;
      await a.page.goto(`${mp}/mypage`);
      await expectMyPage(a.page, who, 'A at the marketplace after signing B out');
    }, { close: [a.context, b.context] });
  });

  it('removing the marketplace\'s access in 連携中のアプリ signs the member out of the marketplace, not out of the OP', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const who = { email: 'nanami@example.jp', name: '松本七海', password: 'harbor-thistle-gamma-85' };
    await addMember(stack, who);
    const { context, page } = await fresh('nanami');
    await withScreenshot(t, () => page, async () => {
      await toOpSignIn(page);
      await signInToMyPage(page, who, 'signing in');

      // My page → 連携中のアプリ (the overview links it too).
      await fromMyPage(page, '/account/apps', 'apps');
      await page.locator('h1', { hasText: '連携中のアプリ' }).waitFor({ state: 'visible' });
      const app = page.locator('[data-testid="app"]').filter({ has: page.locator('strong', { hasText: MARKETPLACE_NAME }) });
      assert.equal(await app.count(), 1, `the marketplace is not listed once among the connected apps: "${await pageText(page)}"`);
      const maySee = (await app.locator('ul > li').allInnerTexts()).map((s) => s.trim());
      console.log(`${MARKETPLACE_NAME} may see: ${maySee.join(' / ')}`);
      for (const words of ['あなたを識別するID（サービスごとに異なる場合があります）', '表示名と言語の設定', 'メールアドレス']) {
        assert.ok(maySee.includes(words), `the marketplace's entry does not say it may see "${words}": ${maySee.join(' / ')}`);
      }
      await screenshot(t, page, '-1-apps');

      const t0 = performance.now();
      const res = await clickAndWait(page, app.getByRole('button', { name: `アクセスを解除: ${MARKETPLACE_NAME}`, exact: true }));
      const tAnswer = performance.now();
      // Post/redirect/get: the form's answer sends the browser back to the list.
      assert.equal(res?.status(), 303, `POST /account/apps/remove answered ${res?.status()}: "${await pageText(page)}"`);
      await expectAt(page, op, '/account/apps', 'after アクセスを解除');
      const notice = page.getByTestId('notice');
      await notice.waitFor({ state: 'visible' });
      assert.equal(
        (await notice.innerText()).trim(),
        'アプリのアクセスを解除し、そのアプリからログアウトしました。',
        `after アクセスを解除: "${await pageText(page)}"`,
      );
      assert.equal(await app.count(), 0, `the marketplace is still listed after アクセスを解除: "${await pageText(page)}"`);
      await screenshot(t, page, '-2-removed');

      const ms = await untilSignedOutOfMarketplace(page, who, t0, 'after アクセスを解除', SIGN_OUT);
      console.log(`remove access → marketplace session ended: ${ms} ms (the OP answered the click in ${Math.round(tAnswer - t0)} ms)`);
      await screenshot(t, page, '-3-marketplace-signed-out');

      // The OP session stays: the console still opens, without the sign-in form.
      const overview = await page.goto(`${op}/account`);
      assert.equal(overview?.status(), 200, `${op}/account answered ${overview?.status()} after removing the marketplace's access`);
      await expectAt(page, op, '/account', 'the console after removing the marketplace\'s access (the OP session must stay)');
      await page.locator('h1', { hasText: 'アカウント' }).waitFor({ state: 'visible' });
      assert.ok((await page.locator('body').innerText()).includes(who.email), `the console does not show ${who.email}: "${await pageText(page)}"`);
      // ... and the marketplace's ログイン is single sign-on again (a first-party app: no
      // consent page), back to My page without the password.
      await page.goto(`${mp}/`);
      await clickAndWait(page, page.locator('a[href="/login"]').filter({ hasText: 'ログイン' }).first());
      await arrive(page, (u) => isAt(op, '/login')(u) || isAt(mp, '/mypage')(u), 'signing in at the marketplace again');
      await expectMyPage(page, who, 'signing in at the marketplace again (single sign-on: the OP session stays)');
    }, { close: [context] });
  });

  it('mails the member when a second device signs in (not for the first), and the mail\'s links open the device list and the reset request', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const who = { email: 'ren@example.jp', name: '井上蓮', password: 'juniper-falcon-meadow-52' };
    await addMember(stack, who);
    const a = await fresh('ren-A');
    const b = await fresh('ren-B', { userAgent: DEVICE.iphone.userAgent });
    let last = a.page;
    await withScreenshot(t, () => last, async () => {
      // A: the account's first device (the member was added by the CLI): no mail.
      await toOpSignIn(a.page);
      await signInToMyPage(a.page, who, 'A: the first sign-in');

      // B: a device new to an account that knows one already.
      last = b.page;
      await toOpSignIn(b.page);
      const from = Date.now();
      await signInToMyPage(b.page, who, 'B: signing in');
      const to = Date.now();
      const mail = await waitForMail(stack.outbox, mailTo(who.email, SUBJECT.newDevice), { timeoutMs: MAIL_TIMEOUT_MS });
      console.log(`new-device mail in the outbox ${Date.now() - to} ms after B reached My page:\n${mail.text}`);
      assert.ok(mail.to.includes(who.email), `the mail is addressed to ${mail.to}`);
      assert.ok(mail.text.startsWith(`${who.name} 様`), `the mail does not greet ${who.name}:\n${mail.text}`);
      const at = mail.text.match(/^日時: (\d{4}-\d\d-\d\d \d\d:\d\d)（日本時間）$/m);
      assert.ok(at, `the mail does not say when, in 日本時間:\n${mail.text}`);
      const minutes = minutesBetween(from, to);
      assert.ok(minutes.includes(at[1]), `the mail says ${at[1]}, B signed in at ${minutes.join(' or ')} (+09:00)`);
      assert.match(mail.text, new RegExp(`^端末: ${DEVICE.iphone.words.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'), 'the device in words');
      assert.match(mail.text, /^IPアドレス: 127\.0\.0\.1$/m, 'the IP');
      for (const words of [DEVICE.iphone.words, '127.0.0.1']) {
        assert.ok(mail.html.includes(words), `the HTML part does not show ${words}`);
      }

      // The first sign-in (from A) mailed nothing: B's is the only mail to the member.
      const all = (await readOutbox(stack.outbox)).filter((m) => m.to.includes(who.email));
      assert.deepEqual(all.map((m) => m.subject), [SUBJECT.newDevice], 'mails to the member after two first sign-ins from two devices');

      // Its link to the device list, opened in B (signed in at the OP): both devices.
      const sessions = mailLink(mail, `${op}/account/sessions`);
      await b.page.goto(sessions);
      await expectAt(b.page, op, '/account/sessions', 'B: after opening the mail\'s device list link');
      const devices = await deviceList(b.page);
      await screenshot(t, b.page, '-1-devices-from-mail');
      assert.deepEqual(
        devices.map((d) => [d.device, d.current]).sort(),
        [[DEVICE.chromium, false], [DEVICE.iphone.words, true]].sort(),
        `B's device list from the mail: ${devices.map((d) => d.text).join(' | ')}`,
      );

      // Its reset link: the reset request page.
      const reset = mailLink(mail, `${op}/password/forgot`);
      const opened = await b.page.goto(reset);
      assert.equal(opened?.status(), 200, `the mail's reset link answered ${opened?.status()}`);
      await expectAt(b.page, op, '/password/forgot', 'B: after opening the mail\'s reset link');
      await b.page.getByLabel('メールアドレス', { exact: true }).waitFor({ state: 'visible' });
      assert.equal(await b.page.getByRole('button', { name: '再設定のリンクを送る' }).count(), 1, `no 再設定のリンクを送る button: "${await pageText(b.page)}"`);
      await screenshot(t, b.page, '-2-reset-from-mail');
    }, { close: [a.context, b.context] });
  });
});
