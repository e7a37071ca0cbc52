//! An SMTP server of a test's own (`tests/support/smtp_sink.py`, on aiosmtpd) that keeps
//! every message it accepts, decoded, so mail tests see what a real server received; a
//! test can take it down and bring it back on the same port with the same mailbox.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::helpers::require_services;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");

/// A message as the sink received it. The sink decodes with Python's `email` package:
/// headers and `subject` per RFC 2047, `text` and `html` (the text/plain and text/html
/// parts) per their transfer encoding and charset, with `\n` line ends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The user who authenticated, when the sink requires credentials.
    pub auth_user: Option<String>,
    /// The message as it came after DATA (RFC 5322, CRLF line ends, still encoded).
    pub data: String,
    pub subject: Option<String>,
    /// Every header in order, value decoded.
    pub headers: Vec<(String, String)>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// Set when Python could not parse the message; the decoded fields are then empty.
    pub parse_error: Option<String>,
}

impl Received {
    /// The first header called `name` (any case), decoded.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The sink process on 127.0.0.1. Killed when dropped.
pub struct SmtpSink {
    child: Option<Child>,
    port: u16,
    credentials: Option<(String, String)>,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    /// A sink that accepts every message without AUTH. `None` (a skip) when python3 or
    /// aiosmtpd is missing, unless `TEST_REQUIRE_SERVICES=1`.
    pub async fn start() -> Option<Self> {
        Self::launch(None).await
    }

    /// A sink that requires AUTH PLAIN or LOGIN with these credentials (over plain
    /// text: it is loopback). Skips like [`SmtpSink::start`].
    pub async fn start_with_credentials(user: &str, password: &str) -> Option<Self> {
        Self::launch(Some((user.to_owned(), password.to_owned()))).await
    }

    async fn launch(credentials: Option<(String, String)>) -> Option<Self> {
        if let Err(missing) = python_with_aiosmtpd() {
            assert!(
                !require_services(),
                "TEST_REQUIRE_SERVICES=1 but the SMTP sink cannot run: {missing}"
            );
            eprintln!("skipping: the SMTP sink cannot run ({missing})");
            return None;
        }
        // A free port: bound by the OS, released just before the sink takes it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut sink = Self {
            child: None,
            port,
            credentials,
            dir: tempfile::tempdir().unwrap(),
        };
        sink.spawn().await;
        Some(sink)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// For the app's SMTP settings: plain SMTP, no TLS, no credentials in it.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Kills the sink now, as an outage would. What it accepted stays readable.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Brings the sink back on the same port, appending to the same mailbox.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Every message accepted so far, in order, across restarts.
    pub fn messages(&self) -> Vec<Received> {
        let bytes = match std::fs::read(self.mailbox()) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("read the SMTP sink's mailbox: {e}"),
        };
        // Only lines with their `\n`: a line the sink is still writing is left for the
        // next call.
        bytes
            .split_inclusive(|&b| b == b'\n')
            .filter(|line| line.ends_with(b"\n"))
            .map(|line| {
                serde_json::from_slice(line).unwrap_or_else(|e| {
                    panic!(
                        "a mailbox line is not a message ({e}): {}",
                        String::from_utf8_lossy(line)
                    )
                })
            })
            .collect()
    }

    /// Waits until at least `n` messages have arrived and returns them all; fails the
    /// test with what did arrive and the sink's output after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} of {n} messages reached the SMTP sink within {timeout:?}: \
                     {messages:#?}\nsink output:\n{}",
                    messages.len(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn mailbox(&self) -> PathBuf {
        self.dir.path().join("mailbox.jsonl")
    }

    /// Its stdout and stderr, across restarts.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sink.log")).unwrap_or_default()
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sink.log"))
            .unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg(SCRIPT)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--mailbox")
            .arg(self.mailbox());
        if let Some((user, password)) = &self.credentials {
            cmd.args(["--user", user, "--password", password]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("python3 starts the SMTP sink");
        self.child = Some(child);
        self.wait_until_listening().await;
    }

    async fn wait_until_listening(&mut self) {
        // Generous: Python starts slowly on a machine busy compiling.
        for _ in 0..200 {
            let child = self.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the SMTP sink exited ({status}):\n{}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the SMTP sink is not listening after 10 s:\n{}", self.log());
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `python3` runs and can import aiosmtpd; if not, why.
fn python_with_aiosmtpd() -> Result<(), String> {
    let out = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .map_err(|e| format!("python3 cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "python3 cannot import aiosmtpd (`python3 -m pip install aiosmtpd`): {}",
            // The traceback's last line (`ModuleNotFoundError: …`) says it all.
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        ))
    }
}

// The sink on its own, driven by a hand-written SMTP conversation, so a failing mail
// test can be told apart from a broken harness.

/// Just enough of an SMTP client (RFC 5321 §4.1) to send a prepared message.
struct RawSmtp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl RawSmtp {
    async fn connect(port: u16) -> std::io::Result<Self> {
        let (read, writer) = TcpStream::connect(("127.0.0.1", port)).await?.into_split();
        let mut smtp = Self {
            reader: BufReader::new(read),
            writer,
        };
        let (code, greeting) = smtp.reply().await;
        assert_eq!(code, 220, "{greeting}");
        Ok(smtp)
    }

    /// One reply, all its lines (`250-…` continues, `250 …` ends it, RFC 5321 §4.2.1).
    async fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).await.unwrap();
            assert!(
                line.len() >= 4,
                "a short SMTP reply: {line:?} after {text:?}"
            );
            text.push_str(&line);
            if line.as_bytes()[3] == b' ' {
                return (line[..3].parse().unwrap(), text);
            }
        }
    }

    async fn command(&mut self, line: &str) -> (u16, String) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }

    async fn expect(&mut self, line: &str, code: u16) -> String {
        let (got, text) = self.command(line).await;
        assert_eq!(got, code, "{line} → {text}");
        text
    }

    /// One message; `message` has CRLF line ends and no line that starts with a dot.
    async fn send(&mut self, from: &str, to: &str, message: &str) {
        self.expect(&format!("MAIL FROM:<{from}>"), 250).await;
        self.expect(&format!("RCPT TO:<{to}>"), 250).await;
        self.expect("DATA", 354).await;
        self.expect(&format!("{message}."), 250).await;
    }
}

/// Base64 in lines of 76 characters, as RFC 2045 §6.8 asks of a body.
fn base64_lines(bytes: &[u8]) -> String {
    BASE64
        .encode(bytes)
        .as_bytes()
        .chunks(76)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[tokio::test]
async fn the_sink_decodes_what_it_receives_and_keeps_it_across_a_restart() {
    let Some(mut sink) = SmtpSink::start().await else {
        return;
    };
    let url = sink.url();
    assert_eq!(url, format!("smtp://127.0.0.1:{}", sink.port()));

    let body = "花子さん、こんにちは。\nパスワードを再設定するには次のリンクを開いてください。\n\
                https://id.example/reset?token=abc\n";
    let first = format!(
        "From: Tobira <no-reply@tobira.test>\r\n\
         To: hanako@example.test\r\n\
         Subject: =?UTF-8?B?{}?=\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=UTF-8\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {}\r\n",
        BASE64.encode("パスワードの再設定"),
        base64_lines(body.replace('\n', "\r\n").as_bytes()),
    );
    let mut smtp = RawSmtp::connect(sink.port()).await.unwrap();
    smtp.expect("EHLO client.test", 250).await;
    smtp.send("no-reply@tobira.test", "hanako@example.test", &first)
        .await;
    smtp.expect("QUIT", 221).await;

    let messages = sink.wait_for(1, Duration::from_secs(10)).await;
    let mail = &messages[0];
    assert_eq!(mail.parse_error, None);
    assert_eq!(mail.mail_from, "no-reply@tobira.test");
    assert_eq!(mail.rcpt_tos, ["hanako@example.test"]);
    assert_eq!(mail.subject.as_deref(), Some("パスワードの再設定"));
    assert_eq!(mail.header("from"), Some("Tobira <no-reply@tobira.test>"));
    assert_eq!(mail.text.as_deref(), Some(body));
    assert_eq!(mail.html, None);
    assert!(mail.data.contains("Content-Transfer-Encoding: base64\r\n"));

    sink.stop();
    assert!(RawSmtp::connect(sink.port()).await.is_err());
    assert_eq!(sink.messages().len(), 1, "the mailbox outlives the process");

    sink.restart().await;
    assert_eq!(sink.url(), url);
    // quoted-printable, as lettre writes a link: `=` itself becomes `=3D`.
    let second = "From: no-reply@tobira.test\r\n\
                  To: taro@example.test\r\n\
                  Subject: =?UTF-8?Q?=E5=86=8D=E8=A8=AD=E5=AE=9A?=\r\n\
                  MIME-Version: 1.0\r\n\
                  Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
                  \r\n\
                  --b1\r\n\
                  Content-Type: text/plain; charset=UTF-8\r\n\
                  Content-Transfer-Encoding: quoted-printable\r\n\
                  \r\n\
                  =E5=86=8D=E8=A8=AD=E5=AE=9A: https://id.example/reset?token=3Dxyz\r\n\
                  --b1\r\n\
                  Content-Type: text/html; charset=UTF-8\r\n\
                  \r\n\
                  <a href=\"https://id.example/reset?token=xyz\">reset</a>\r\n\
                  --b1--\r\n";
    let mut smtp = RawSmtp::connect(sink.port()).await.unwrap();
    smtp.expect("EHLO client.test", 250).await;
    smtp.send("no-reply@tobira.test", "taro@example.test", second)
        .await;
    smtp.expect("QUIT", 221).await;

    let messages = sink.wait_for(2, Duration::from_secs(10)).await;
    let subjects: Vec<_> = messages.iter().map(|m| m.subject.as_deref()).collect();
    assert_eq!(subjects, [Some("パスワードの再設定"), Some("再設定")]);
    let mail = &messages[1];
    assert_eq!(mail.rcpt_tos, ["taro@example.test"]);
    // The CRLF before a boundary belongs to the boundary (RFC 2046 §5.1.1).
    assert_eq!(
        mail.text.as_deref(),
        Some("再設定: https://id.example/reset?token=xyz")
    );
    assert_eq!(
        mail.html.as_deref(),
        Some("<a href=\"https://id.example/reset?token=xyz\">reset</a>")
    );
}

#[tokio::test]
async fn the_sink_with_credentials_takes_mail_only_after_auth() {
    let Some(sink) = SmtpSink::start_with_credentials("tobira", "s3cret").await else {
        return;
    };
    let plain = |user: &str, password: &str| {
        format!(
            "AUTH PLAIN {}",
            BASE64.encode(format!("\0{user}\0{password}"))
        )
    };
    let mut smtp = RawSmtp::connect(sink.port()).await.unwrap();
    let ehlo = smtp.expect("EHLO client.test", 250).await;
    assert!(ehlo.contains("AUTH LOGIN PLAIN"), "{ehlo}");
    smtp.expect("MAIL FROM:<no-reply@tobira.test>", 530).await;
    smtp.expect(&plain("tobira", "wrong"), 535).await;
    smtp.expect(&plain("tobira", "s3cret"), 235).await;
    smtp.send(
        "no-reply@tobira.test",
        "hanako@example.test",
        "Subject: hello\r\n\r\nhi\r\n",
    )
    .await;
    smtp.expect("QUIT", 221).await;

    let messages = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(messages[0].auth_user.as_deref(), Some("tobira"));
    assert_eq!(messages[0].text.as_deref(), Some("hi\n"));
}
