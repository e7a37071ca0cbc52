#!/usr/bin/env python3
"""A real SMTP server for the mail tests (crates/auth/tests/api/smtp_sink.rs).

Accepts every message on 127.0.0.1:PORT and appends it to MAILBOX as one JSON line:
the envelope, the raw message, and what a test wants to compare (headers and subject
decoded per RFC 2047, the text/plain and text/html parts transfer- and charset-decoded),
so the Rust side needs no MIME parser. A line is written and flushed before the 250
reply to DATA: a message the client saw accepted is in the mailbox, even if the
server is killed right after (as the outage tests do).

Usage: smtp_sink.py --port PORT --mailbox FILE [--user USER --password PASSWORD]
With credentials, AUTH PLAIN/LOGIN is required and allowed without TLS (loopback only).
"""

import argparse
import asyncio
import email
import email.policy
import json
import logging
import signal
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def decoded(raw: bytes) -> dict:
    """What a test compares, read with the stdlib's RFC 5322/2047/2045 parser."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)

    def part(subtype):
        body = msg.get_body(preferencelist=(subtype,))
        # SMTP lines end in CRLF; tests compare with Rust string literals.
        return None if body is None else body.get_content().replace("\r\n", "\n")

    def text(value):
        return None if value is None else str(value)

    return {
        "subject": text(msg["subject"]),
        "headers": [[name, str(value)] for name, value in msg.items()],
        "text": part("plain"),
        "html": part("html"),
    }


class Mailbox:
    def __init__(self, path: str):
        # `replace`: a header with undecodable bytes comes back from the email package
        # with surrogate escapes, which UTF-8 cannot write; losing the message would be worse.
        self.file = open(path, "a", encoding="utf-8", errors="replace")

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "auth_user": session.auth_data,
            # `replace`, not a failure: a test should see a badly encoded message, and
            # lone surrogates would make the line unreadable to serde_json.
            "data": raw.decode("utf-8", errors="replace"),
        }
        try:
            record.update(decoded(raw))
        except Exception as e:  # noqa: BLE001 — a message we cannot parse is still a message
            record["parse_error"] = repr(e)
        self.file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.file.flush()
        return "250 OK"


def authenticator(user: str, password: str):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # `handled=False`: aiosmtpd then answers 535 itself; its default (True) would
        # leave a wrong password without any reply.
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

    return check


async def serve(args) -> None:
    handler = Mailbox(args.mailbox)
    auth = {}
    if args.user is not None:
        auth = {
            "authenticator": authenticator(args.user, args.password),
            "auth_required": True,
            # Plain-text AUTH is safe on loopback; the sink speaks no TLS.
            "auth_require_tls": False,
        }
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="smtp-sink.test", enable_SMTPUTF8=True, **auth),
        host="127.0.0.1",
        port=args.port,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"smtp_sink ready on 127.0.0.1:{args.port}", flush=True)
    await stop.wait()
    # Not `wait_closed()`: from Python 3.12 it waits for open client connections (a
    # pooled SMTP client keeps one), and asyncio.run cancels their tasks anyway.
    server.close()
    handler.file.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mailbox", required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")
    # Errors (a failing handler) reach stderr, which the Rust side shows when a test
    # fails; aiosmtpd's per-connection chatter and its (here intended) warning about
    # AUTH without TLS do not.
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
