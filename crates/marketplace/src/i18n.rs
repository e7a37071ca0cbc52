//! The marketplace's texts, Japanese first, English second, and relative times.

use time::Duration;

pub struct Texts {
    pub lang: &'static str,
    pub top_title: &'static str,
    pub top_lead: &'static str,
    pub sign_in: &'static str,
    pub sign_out: &'static str,
    pub mypage: &'static str,
    pub display_name: &'static str,
    pub email: &'static str,
    pub last_login: &'static str,
    pub public_profile: &'static str,
    pub privacy: &'static str,
    pub security: &'static str,
    pub security_lead: &'static str,
    pub show_last_login: &'static str,
    pub save: &'static str,
    pub saved: &'static str,
    pub signin_required: &'static str,
    pub signin_failed: &'static str,
    pub signin_unavailable: &'static str,
    pub not_found: &'static str,
    pub error_title: &'static str,
    pub form_expired: &'static str,
    pub console: [&'static str; 9],
}

pub const JA: Texts = Texts {
    lang: "ja",
    top_title: "スキルマーケット",
    top_lead: "得意を売り買いできるマーケットです。",
    sign_in: "ログイン",
    sign_out: "ログアウト",
    mypage: "マイページ",
    display_name: "表示名",
    email: "メールアドレス",
    last_login: "ログイン日時",
    public_profile: "公開プロフィール",
    privacy: "プライバシー設定",
    security: "アカウントとセキュリティ",
    security_lead: "パスワードや2段階認証などの設定は、ログインサービスのアカウント設定で行います。",
    show_last_login: "ログイン時間を表示する",
    save: "保存",
    saved: "保存しました。",
    signin_required: "このページを見るにはログインしてください。",
    signin_failed: "ログインを完了できませんでした。もう一度お試しください。",
    signin_unavailable: "ログインサービスに接続できません。しばらくしてからお試しください。",
    not_found: "ページが見つかりません。",
    error_title: "エラー",
    form_expired: "フォームの有効期限が切れました。もう一度お試しください。",
    console: [
        "アカウント設定",
        "メールアドレスの変更",
        "パスワードの変更",
        "二段階認証",
        "パスキー",
        "ログイン中の端末",
        "ログイン履歴",
        "連携中のアプリ",
        "退会",
    ],
};

pub const EN: Texts = Texts {
    lang: "en",
    top_title: "Skill Market",
    top_lead: "A marketplace for buying and selling skills.",
    sign_in: "Sign in",
    sign_out: "Sign out",
    mypage: "My page",
    display_name: "Display name",
    email: "Email address",
    last_login: "Signed in",
    public_profile: "Public profile",
    privacy: "Privacy settings",
    security: "Account and security",
    security_lead: "Passwords, 2-step verification and other security settings live in your sign-in account settings.",
    show_last_login: "Show my last sign-in time",
    save: "Save",
    saved: "Saved.",
    signin_required: "Please sign in to see this page.",
    signin_failed: "Sign-in could not be completed. Please try again.",
    signin_unavailable: "The sign-in service cannot be reached. Please try again later.",
    not_found: "Page not found.",
    error_title: "Error",
    form_expired: "This form has expired. Please try again.",
    console: [
        "Account settings",
        "Change email address",
        "Change password",
        "Two-step verification",
        "Passkeys",
        "Signed-in devices",
        "Sign-in history",
        "Connected apps",
        "Delete account",
    ],
};

/// The OP's account console pages that exist, in the order of `Texts::console` (each
/// issue that adds a page adds its link).
pub const CONSOLE_PATHS: [&str; 9] = [
    "/account",
    "/account/email",
    "/account/password",
    "/account/2fa",
    "/account/passkeys",
    "/account/sessions",
    "/account/history",
    "/account/apps",
    "/account/delete",
];

pub fn texts(accept_language: Option<&str>) -> &'static Texts {
    let first = accept_language
        .unwrap_or("")
        .split(',')
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .find(|t| t.starts_with("ja") || t.starts_with("en"));
    match first {
        Some(t) if t.starts_with("en") => &EN,
        _ => &JA,
    }
}

/// "最終ログイン: 3時間前" / "Last signed in 3 hours ago".
pub fn last_seen(t: &Texts, ago: Duration) -> String {
    let (n, unit_ja, unit_en) = if ago < Duration::minutes(1) {
        return if t.lang == "ja" {
            "最終ログイン: たった今".to_owned()
        } else {
            "Last signed in just now".to_owned()
        };
    } else if ago < Duration::hours(1) {
        (ago.whole_minutes(), "分", "minute")
    } else if ago < Duration::days(1) {
        (ago.whole_hours(), "時間", "hour")
    } else {
        (ago.whole_days(), "日", "day")
    };
    if t.lang == "ja" {
        format!("最終ログイン: {n}{unit_ja}前")
    } else {
        format!(
            "Last signed in {n} {unit_en}{} ago",
            if n == 1 { "" } else { "s" }
        )
    }
}

/// How a member signed in, from the ID token's `amr`.
pub fn method(t: &Texts, amr: &[String]) -> &'static str {
    let ja = t.lang == "ja";
    if amr.iter().any(|a| a == "hwk" || a == "swk") {
        if ja { "パスキー" } else { "passkey" }
    } else if amr.iter().any(|a| a == "pwd") {
        if ja { "パスワード" } else { "password" }
    } else if ja {
        "ログインサービス"
    } else {
        "sign-in service"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally_in_both_languages() {
        assert_eq!(
            last_seen(&JA, Duration::seconds(20)),
            "最終ログイン: たった今"
        );
        assert_eq!(last_seen(&JA, Duration::minutes(5)), "最終ログイン: 5分前");
        assert_eq!(
            last_seen(&JA, Duration::hours(3) + Duration::minutes(59)),
            "最終ログイン: 3時間前"
        );
        assert_eq!(last_seen(&JA, Duration::days(2)), "最終ログイン: 2日前");
        assert_eq!(
            last_seen(&EN, Duration::hours(1)),
            "Last signed in 1 hour ago"
        );
        assert_eq!(
            last_seen(&EN, Duration::minutes(7)),
            "Last signed in 7 minutes ago"
        );
        assert_eq!(texts(Some("en-US,en;q=0.9")).lang, "en");
        assert_eq!(texts(Some("fr, ja;q=0.5")).lang, "ja");
        assert_eq!(texts(None).lang, "ja");
    }
}
