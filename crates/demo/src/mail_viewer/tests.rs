//! The viewer driven through its router, the way a browser asks, over a temporary outbox
//! holding hand-written `.eml` files shaped like the ones the OP writes.

use std::path::Path;
use std::time::{Duration, SystemTime};

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Request};
use base64::Engine;
use tempfile::TempDir;
use tower::ServiceExt;

use super::*;

const PORT: u16 = 8025;
const HOST: &str = "127.0.0.1:8025";
const ID: &str = "0192f0c4-7b1e-4a8e-9d3c-5f6a7b8c9d0e";
const OTHER_ID: &str = "7d444840-9dc0-11d1-b245-5ffdce74fad2";
const SUBJECT: &str = "【Tobira】パスワードの再設定";
/// The subject as an RFC 2047 header, folded over two encoded words as mailers do.
const SUBJECT_HEADER: &str =
    "=?utf-8?b?44CQVG9iaXJh44CR?=\r\n =?utf-8?b?44OR44K544Ov44O844OJ44Gu5YaN6Kit5a6a?=";
const RESET_URL: &str = "http://localhost:8080/password/reset?token=Zm9vYmFy-baz_42";

/// A mail as the OP's mailer writes it: multipart/alternative, the text part in base64,
/// the HTML part in quoted-printable (`=3D` is `=`, a trailing `=` a soft line break).
fn eml(subject_header: &str, text: &str, html_qp: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(text);
    let b64_lines: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    [
        "From: Tobira <no-reply@localhost>",
        "To: member@example.jp",
        &format!("Subject: {subject_header}"),
        "Date: Wed, 01 Apr 2026 09:30:00 +0900",
        "MIME-Version: 1.0",
        "Content-Type: multipart/alternative; boundary=\"b0undary\"",
        "",
        "--b0undary",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: base64",
        "",
        &b64_lines.join("\r\n"),
        "--b0undary",
        "Content-Type: text/html; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        html_qp,
        "--b0undary--",
        "",
    ]
    .join("\r\n")
}

fn reset_mail() -> String {
    eml(
        SUBJECT_HEADER,
        &format!(
            "デモ会員 様\n\n以下のリンクからパスワードを再設定してください(30分有効)。\n{RESET_URL}\n\nTobira"
        ),
        &format!("<p>=E5=86=8D=E8=A8=AD=E5=AE=9A: <a href=3D\"{RESET_URL}\">=\r\nreset</a></p>"),
    )
}

struct Fixture {
    root: TempDir,
    router: Router,
}

impl Fixture {
    /// An outbox at `<tmp>/outbox` holding `mails` (id, contents).
    fn with(mails: &[(&str, String)]) -> Self {
        let root = tempfile::tempdir().expect("a temp dir");
        let dir = root.path().join("outbox");
        std::fs::create_dir(&dir).expect("the outbox");
        for (id, contents) in mails {
            std::fs::write(dir.join(format!("{id}.eml")), contents).expect("a mail");
        }
        let router = router(Outbox::new(dir), PORT);
        Self { root, router }
    }

    fn outbox(&self) -> std::path::PathBuf {
        self.root.path().join("outbox")
    }

    async fn get(&self, path: &str) -> (StatusCode, HeaderMap, String) {
        self.get_from(HOST, path).await
    }

    async fn get_from(&self, host: &str, path: &str) -> (StatusCode, HeaderMap, String) {
        let req = Request::get(path)
            .header(header::HOST, host)
            .body(Body::empty())
            .expect("a request");
        let res = self.router.clone().oneshot(req).await.expect("a response");
        let status = res.status();
        let headers = res.headers().clone();
        let body = to_bytes(res.into_body(), usize::MAX).await.expect("a body");
        (
            status,
            headers,
            String::from_utf8(body.to_vec()).expect("UTF-8"),
        )
    }
}

fn set_mtime(path: &Path, secs_after_2026: u64) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("the file");
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + secs_after_2026);
    file.set_modified(t).expect("set mtime");
}

#[tokio::test]
async fn the_list_shows_the_decoded_japanese_subject_linking_to_the_mail() {
    let app = Fixture::with(&[(ID, reset_mail())]);
    let (status, headers, body) = app.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(
        body.contains(&format!("<a href=\"/mail/{ID}\">{SUBJECT}</a>")),
        "{body}"
    );
    assert!(body.contains("member@example.jp"), "{body}");
    assert!(body.contains("2026-04-01 09:30:00 +09:00"), "{body}");
}

#[tokio::test]
async fn the_mail_page_links_the_reset_url_to_the_same_url() {
    let app = Fixture::with(&[(ID, reset_mail())]);
    let (status, _, body) = app.get(&format!("/mail/{ID}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(&format!(
            "<a href=\"{RESET_URL}\" rel=\"noreferrer\">{RESET_URL}</a>"
        )),
        "{body}"
    );
    assert!(body.contains(SUBJECT), "{body}");
    assert!(
        body.contains("Tobira &#60;no-reply@localhost&#62;"),
        "{body}"
    );
    assert!(
        body.contains("以下のリンクからパスワードを再設定してください"),
        "{body}"
    );
    assert!(body.contains(&format!("href=\"/mail/{ID}.eml\"")), "{body}");
    assert!(
        body.contains(&format!("href=\"/mail/{ID}.html\"")),
        "{body}"
    );
}

#[tokio::test]
async fn a_hostile_mail_is_escaped_and_its_javascript_urls_are_not_links() {
    let hostile = eml(
        "<img src=x onerror=alert(1)>",
        "<script>alert(1)</script>\njavascript:alert(document.cookie)\n\
         <a href=\"javascript:alert(2)\">click</a>\n\"><script>alert(3)</script>",
        "<script>alert(4)</script>",
    );
    let app = Fixture::with(&[(ID, hostile)]);

    let (_, _, list) = app.get("/").await;
    assert!(!list.contains("<img"), "{list}");
    assert!(
        list.contains("&#60;img src=x onerror=alert(1)&#62;"),
        "{list}"
    );

    let (status, _, page) = app.get(&format!("/mail/{ID}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("<img"), "{page}");
    assert!(
        page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{page}"
    );
    assert!(
        !page.to_ascii_lowercase().contains("href=\"javascript"),
        "{page}"
    );
    // Only the viewer's own navigation links: nothing in the body became a link.
    assert_eq!(page.matches("<a ").count(), 3, "{page}");
}

#[tokio::test]
async fn an_id_that_is_not_a_uuid_is_not_found_without_touching_other_files() {
    let app = Fixture::with(&[(ID, reset_mail())]);
    // A file beside the outbox that a traversal would reach.
    std::fs::write(app.root.path().join("secret.eml"), reset_mail()).expect("a file");
    std::fs::write(app.outbox().join(format!(".{OTHER_ID}.eml.part")), "half").expect("a file");
    for path in [
        "/mail/../../etc/passwd".to_owned(),
        "/mail/..%2F..%2Fetc%2Fpasswd".to_owned(),
        "/mail/%2Fetc%2Fpasswd".to_owned(),
        "/mail/..%2Fsecret".to_owned(),
        "/mail/..%2Fsecret.eml".to_owned(),
        format!("/mail/..%2Foutbox%2F{ID}"),
        format!("/mail/.{OTHER_ID}.eml.part"),
        format!("/mail/{}", ID.to_uppercase()),
        format!("/mail/{}", ID.replace('-', "")),
        "/mail/not-a-uuid".to_owned(),
        "/mail/".to_owned(),
        // A UUID, but no such mail.
        format!("/mail/{OTHER_ID}"),
        format!("/mail/{OTHER_ID}.eml"),
    ] {
        let (status, headers, _) = app.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
    }
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let app = Fixture::with(&[(ID, reset_mail())]);
    for path in [
        "/".to_owned(),
        format!("/mail/{ID}"),
        "/mail/nope".to_owned(),
    ] {
        let (_, headers, _) = app.get(&path).await;
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], PAGE_CSP, "{path}");
        assert!(PAGE_CSP.starts_with("default-src 'none'; style-src 'unsafe-inline'"));
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer", "{path}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{path}");
    }
}

#[tokio::test]
async fn the_raw_mail_is_plain_text_and_the_html_part_a_sandboxed_document() {
    let app = Fixture::with(&[(ID, reset_mail())]);
    let (status, headers, raw) = app.get(&format!("/mail/{ID}.eml")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(raw, reset_mail());

    let (status, headers, html) = app.get(&format!("/mail/{ID}.html")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let csp = headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("ASCII");
    assert!(csp.starts_with("sandbox; default-src 'none';"), "{csp}");
    assert!(
        html.contains(&format!("<a href=\"{RESET_URL}\">")),
        "{html}"
    );
}

#[tokio::test]
async fn mails_are_listed_newest_first_and_unfinished_files_are_skipped() {
    let older = eml("older", "one", "<p>one</p>");
    let newer = eml("newer", "two", "<p>two</p>");
    let app = Fixture::with(&[(ID, older), (OTHER_ID, newer)]);
    set_mtime(&app.outbox().join(format!("{ID}.eml")), 10);
    set_mtime(&app.outbox().join(format!("{OTHER_ID}.eml")), 20);
    let hidden = "3f2b6c1e-8a4d-4e5f-9b7c-1d2e3f4a5b6c";
    std::fs::write(
        app.outbox().join(format!(".{hidden}.eml.part")),
        eml("partial", "", ""),
    )
    .expect("a file");
    std::fs::write(app.outbox().join("notes.txt"), "not a mail").expect("a file");

    let (_, _, body) = app.get("/").await;
    let newer_at = body.find(">newer</a>").expect("the newer mail");
    let older_at = body.find(">older</a>").expect("the older mail");
    assert!(newer_at < older_at, "{body}");
    assert!(!body.contains("partial"), "{body}");
    assert!(!body.contains(hidden), "{body}");
}

#[tokio::test]
async fn an_outbox_that_does_not_exist_yet_is_an_empty_list() {
    let app = Fixture::with(&[]);
    std::fs::remove_dir(app.outbox()).expect("remove the outbox");
    let (status, _, body) = app.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("まだメールはありません"), "{body}");
}

#[tokio::test]
async fn a_request_for_another_host_name_is_refused() {
    let app = Fixture::with(&[(ID, reset_mail())]);
    // A page whose name was rebound to 127.0.0.1 (DNS rebinding) sends its own name.
    let (status, _, body) = app.get_from("rebind.example:8025", "/").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!body.contains(SUBJECT));
    let (status, _, _) = app.get_from("localhost:8025", "/").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = app.get_from("127.0.0.1:9999", "/").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// The real thing: a reset mail rendered and written by the OP's own mailer (lettre's
/// encoding, folding and boundaries), so the viewer follows the OP's format as it changes.
#[tokio::test]
async fn a_reset_mail_written_by_the_op_is_listed_and_its_link_is_clickable() {
    use tobira_auth::mail::{Mailer, templates};
    use tobira_auth::web::i18n::Lang;

    let app = Fixture::with(&[]);
    let config = tobira_auth::Config {
        data_dir: app.root.path().to_owned(),
        ..tobira_auth::Config::default()
    };
    assert_eq!(config.outbox_dir(), app.outbox());
    let mailer = Mailer::from_config(&config).expect("the outbox mailer");
    let mail = templates::reset(Lang::Ja, "member@example.jp", "デモ会員", RESET_URL, 30);
    mailer
        .deliver(ID, &mail)
        .await
        .expect("delivered to the outbox");

    let (_, _, list) = app.get("/").await;
    assert!(
        list.contains(&format!("<a href=\"/mail/{ID}\">{SUBJECT}</a>")),
        "{list}"
    );
    let (_, _, page) = app.get(&format!("/mail/{ID}")).await;
    assert!(
        page.contains(&format!(
            "<a href=\"{RESET_URL}\" rel=\"noreferrer\">{RESET_URL}</a>"
        )),
        "{page}"
    );
    assert!(page.contains("デモ会員 様"), "{page}");
}
