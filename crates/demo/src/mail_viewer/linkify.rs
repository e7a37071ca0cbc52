//! Plain mail text cut into text and http(s) links, for the template to render: the
//! template escapes both, so no HTML is ever built here. Only `http://` and `https://`
//! start a link, so `javascript:` or `data:` in a mail stays text.

use url::Url;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fragment {
    Text(String),
    Link(String),
}

/// Bytes a link may hold. URLs in our mails are ASCII; a link ends at whitespace, at the
/// first non-ASCII character (Japanese text often follows a URL with no space) and at the
/// characters RFC 3986 never allows unescaped (`<`, `>`, `"`, `` ` ``, `{`, `}`, `|`,
/// `\`, `^`), which are how plain text usually delimits a URL.
fn in_url(b: u8) -> bool {
    b.is_ascii_graphic() && !b"<>\"'`{}|\\^".contains(&b)
}

/// Trailing punctuation belongs to the sentence, not the URL ("see https://x/a." or
/// "(https://x/a)"), unless a `(` inside the URL opened the `)`.
fn trim_trailing(url: &str) -> &str {
    let mut url = url;
    loop {
        let Some(last) = url.chars().last() else {
            return url;
        };
        let trim = match last {
            '.' | ',' | ';' | ':' | '!' | '?' => true,
            ')' => url.matches('(').count() < url.matches(')').count(),
            _ => false,
        };
        if !trim {
            return url;
        }
        url = &url[..url.len() - 1];
    }
}

/// An http(s) URL with a host; anything else is left as text.
fn is_web_url(candidate: &str) -> bool {
    Url::parse(candidate)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

pub fn linkify(text: &str) -> Vec<Fragment> {
    // ASCII lowercasing keeps every byte offset, so offsets in `lower` index `text`.
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut fragments = Vec::new();
    let mut text_start = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find("http") {
        let start = search + found;
        search = start + 4;
        let rest = &lower[start..];
        if !(rest.starts_with("http://") || rest.starts_with("https://")) {
            continue;
        }
        // "xhttp://" is not a URL starting here.
        if start > 0 && bytes[start - 1].is_ascii_alphanumeric() {
            continue;
        }
        let len = bytes[start..].iter().take_while(|&&b| in_url(b)).count();
        let candidate = trim_trailing(&text[start..start + len]);
        if !is_web_url(candidate) {
            continue;
        }
        if text_start < start {
            fragments.push(Fragment::Text(text[text_start..start].to_owned()));
        }
        fragments.push(Fragment::Link(candidate.to_owned()));
        text_start = start + candidate.len();
        search = text_start;
    }
    if text_start < text.len() {
        fragments.push(Fragment::Text(text[text_start..].to_owned()));
    }
    fragments
}

#[cfg(test)]
mod tests {
    use super::Fragment::{Link, Text};
    use super::*;

    fn t(s: &str) -> Fragment {
        Text(s.to_owned())
    }
    fn l(s: &str) -> Fragment {
        Link(s.to_owned())
    }

    #[test]
    fn a_reset_link_between_japanese_lines_is_one_link() {
        let text = "以下のリンクから再設定してください。\nhttp://localhost:8080/password/reset?token=abc-DEF_123\n30分で無効になります。";
        assert_eq!(
            linkify(text),
            vec![
                t("以下のリンクから再設定してください。\n"),
                l("http://localhost:8080/password/reset?token=abc-DEF_123"),
                t("\n30分で無効になります。"),
            ]
        );
    }

    #[test]
    fn a_link_ends_at_japanese_text_and_sentence_punctuation() {
        assert_eq!(
            linkify("詳しくはhttps://example.jp/a。 See https://example.jp/b."),
            vec![
                t("詳しくは"),
                l("https://example.jp/a"),
                t("。 See "),
                l("https://example.jp/b"),
                t("."),
            ]
        );
    }

    #[test]
    fn a_closing_parenthesis_is_kept_only_when_the_url_opened_it() {
        assert_eq!(
            linkify("(https://example.jp/x) https://example.jp/wiki/A_(b)"),
            vec![
                t("("),
                l("https://example.jp/x"),
                t(") "),
                l("https://example.jp/wiki/A_(b)"),
            ]
        );
    }

    #[test]
    fn other_schemes_and_hostless_urls_stay_text() {
        for text in [
            "javascript:alert(document.cookie)",
            "data:text/html,<script>alert(1)</script>",
            "http:// and https://",
            "xhttp://example.jp/",
            "file:///etc/passwd",
        ] {
            assert_eq!(linkify(text), vec![t(text)], "{text}");
        }
    }

    #[test]
    fn markup_around_a_url_is_not_part_of_the_link() {
        assert_eq!(
            linkify("<a href=\"https://example.jp/ok\">x</a>"),
            vec![t("<a href=\""), l("https://example.jp/ok"), t("\">x</a>"),]
        );
    }

    #[test]
    fn the_scheme_is_matched_in_any_case_and_kept_as_written() {
        assert_eq!(
            linkify("HTTPS://Example.jp/A"),
            vec![l("HTTPS://Example.jp/A")]
        );
    }

    #[test]
    fn empty_text_has_no_fragments() {
        assert!(linkify("").is_empty());
    }
}
