// The member's authenticator app, in a few lines: RFC 6238 TOTP (HMAC-SHA1, 30 s steps,
// 6 digits, as the OP's `authn::totp` and every common app use) over the RFC 4648 base32
// key the enrolment page shows. Written here from the RFCs rather than taken from the
// server, so that a mistake on the server is not repeated in the test.

import { createHmac } from 'node:crypto';

/** RFC 6238 §4.1: X, the time step, and T0 = 0. */
export const STEP_SECONDS = 30;
export const DIGITS = 6;

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/**
 * RFC 4648 §6 base32 to bytes. Takes the key as a page shows it: any case, spaces or
 * hyphens between groups, `=` padding or none. Throws on any other character and on
 * leftover bits that are not zero (a key cut short or mistyped).
 */
export function base32Decode(text) {
  const clean = text.replace(/[\s-]+/g, '').replace(/=+$/, '').toUpperCase();
  if (clean === '') throw new Error('base32: empty key');
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of clean) {
    const v = ALPHABET.indexOf(c);
    if (v < 0) throw new Error(`base32: "${c}" is not in the RFC 4648 alphabet (key "${text}")`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
    value &= (1 << bits) - 1; // keep only the bits not yet taken
  }
  if (bits >= 5 || value !== 0) throw new Error(`base32: "${text}" does not end on a whole byte`);
  return Buffer.from(out);
}

/** RFC 4226 §5.3 HOTP: HMAC-SHA1 over the 8-byte big-endian counter, dynamic truncation. */
export function hotp(key, counter, digits = DIGITS) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', key).update(msg).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const binary = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(binary % 10 ** digits).padStart(digits, '0');
}

/** The time step of a moment (Unix seconds): RFC 6238 §4.2, T = floor((t - T0) / X). */
export const stepAt = (unixSeconds) => Math.floor(unixSeconds / STEP_SECONDS);

/** The current time step by this machine's clock (the OP runs on the same machine). */
export const currentStep = () => stepAt(Date.now() / 1000);

/** RFC 6238 TOTP: the code of the step that holds `unixSeconds`. */
export function totp(key, unixSeconds, digits = DIGITS) {
  return hotp(key, stepAt(unixSeconds), digits);
}

/**
 * The code an authenticator app shows now for `key` (bytes), and its step. The OP
 * accepts a step once (RFC 6238 §5.2: "the verifier MUST NOT accept the second
 * attempt of the OTP after the successful validation"), so when `after` names the
 * step of the last code it took, this waits for the next step, as a member waits for
 * the app to show a new code. Resolves with { code, step, waitedMs }.
 */
export async function nextCode(key, { after = -Infinity } = {}) {
  const started = Date.now();
  for (;;) {
    const now = Date.now();
    const step = stepAt(now / 1000);
    if (step > after) return { code: hotp(key, step), step, waitedMs: now - started };
    // Wake a little after the boundary: a timer may fire a few ms early.
    await new Promise((ok) => setTimeout(ok, (step + 1) * STEP_SECONDS * 1000 - now + 20));
  }
}

/**
 * RFC 6238 Appendix B, SHA-1 rows: the key is the ASCII "12345678901234567890";
 * 8-digit codes, and their last six digits for the 6-digit codes used here.
 */
export const RFC6238_VECTORS = [
  [59, '94287082'],
  [1111111109, '07081804'],
  [1111111111, '14050471'],
  [1234567890, '89005924'],
  [2000000000, '69279037'],
  [20000000000, '65353130'],
];
export const RFC6238_KEY = Buffer.from('12345678901234567890', 'ascii');
/** The same key in base32 (RFC 4648), as an enrolment page would show it. */
export const RFC6238_KEY_BASE32 = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';

/**
 * Throws unless this module computes the RFC 6238 test vectors (8 and 6 digits, among
 * them T=59 → 287082) and decodes their key from base32 as a page groups it.
 */
export function selfCheck() {
  const grouped = RFC6238_KEY_BASE32.match(/.{1,4}/g).join(' ').toLowerCase();
  const key = base32Decode(grouped);
  if (!key.equals(RFC6238_KEY)) throw new Error(`base32Decode("${grouped}") = ${key.toString('hex')}`);
  for (const [t, want] of RFC6238_VECTORS) {
    const got8 = totp(key, t, 8);
    const got6 = totp(key, t, 6);
    if (got8 !== want || got6 !== want.slice(2)) {
      throw new Error(`RFC 6238 T=${t}: computed ${got8} / ${got6}, the RFC says ${want} / ${want.slice(2)}`);
    }
  }
}
