//! The message catalogue. Every text a member can read is a `Msg`, and `Msg::text` has
//! one arm per message with both languages, so a missing translation does not compile.

use serde::Serialize;
use time::{OffsetDateTime, UtcOffset};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// The default: our members are in Japan.
    #[default]
    Ja,
    En,
}

impl Lang {
    /// The first supported language of a preference list: `ui_locales` ("en ja"),
    /// `Accept-Language` ("en-US,en;q=0.9") or a POSIX locale ("ja_JP.UTF-8").
    pub fn negotiate(preferences: &str) -> Option<Self> {
        preferences
            .split([',', ' '])
            .map(|tag| tag.split(';').next().unwrap_or("").trim())
            .find_map(Self::from_tag)
    }

    pub fn from_tag(tag: &str) -> Option<Self> {
        let primary = tag
            .split(['-', '_', '.'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match primary.as_str() {
            "ja" => Some(Self::Ja),
            "en" => Some(Self::En),
            _ => None,
        }
    }

    /// The language a page offers to switch to.
    pub fn other(self) -> Self {
        match self {
            Self::Ja => Self::En,
            Self::En => Self::Ja,
        }
    }

    /// "{client} would like to access:".
    pub fn consent_for(self, client: &str) -> String {
        match self {
            Self::Ja => format!("{client} が次の情報へのアクセスを求めています。"),
            Self::En => format!("{client} would like to access:"),
        }
    }

    /// "Sign in to continue to {client}".
    pub fn login_for(self, client: &str) -> String {
        match self {
            Self::Ja => format!("{client} を利用するにはログインしてください"),
            Self::En => format!("Sign in to continue to {client}"),
        }
    }

    /// "Try again after {when}."
    pub fn try_again_after(self, when: &str) -> String {
        match self {
            Self::Ja => format!("しばらくしてからお試しください（{when} 以降）。"),
            Self::En => format!("Try again after {when}."),
        }
    }

    /// A time in the pages' offset, rounded up to the minute: "15:42" today, with the
    /// date ("12月5日 15:42", "5 Dec 15:42") on another day.
    pub fn clock_time(self, t: OffsetDateTime, now: OffsetDateTime, offset: UtcOffset) -> String {
        let up = if t.second() > 0 || t.nanosecond() > 0 {
            t + time::Duration::minutes(1)
        } else {
            t
        };
        let t = up.to_offset(offset);
        let hm = format!("{:02}:{:02}", t.hour(), t.minute());
        if t.date() == now.to_offset(offset).date() {
            return hm;
        }
        match self {
            Self::Ja => format!("{}月{}日 {hm}", u8::from(t.month()), t.day()),
            Self::En => {
                let month = &t.month().to_string()[..3];
                format!("{} {month} {hm}", t.day())
            }
        }
    }

    pub fn tag(self) -> &'static str {
        match self {
            Self::Ja => "ja",
            Self::En => "en",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Msg {
    EmailEmpty,
    EmailInvalid,
    EmailTooLong,
    EmailTaken,
    PasswordTooShort,
    PasswordTooLong,
    PasswordTooWeak,
    PasswordContainsEmail,
    PasswordsDoNotMatch,
    PasswordRequired,
    LoginTitle,
    EmailLabel,
    PasswordLabel,
    RememberMe,
    SignInButton,
    ForgotPassword,
    CreateAccount,
    InvalidCredentials,
    AccountUnavailable,
    LoginExpired,
    FormExpired,
    ErrorTitle,
    UnknownClient,
    BadRedirectUri,
    BadRequest,
    ServerError,
    ErrorReference,
    OtherLanguage,
    ConsentTitle,
    Allow,
    Deny,
    ScopeOpenid,
    ScopeProfile,
    ScopeEmail,
    ScopeOfflineAccess,
    LogoutTitle,
    LogoutQuestion,
    LogoutButton,
    LoggedOut,
    BadLogoutRequest,
    Redirecting,
    ContinueButton,
    OtherBrowser,
    CrossSite,
    TooManyRequests,
    Unavailable,
    ForgotTitle,
    ForgotLead,
    ForgotButton,
    ForgotSent,
    BackToSignIn,
    ResetTitle,
    ResetLead,
    ResetButton,
    ResetDone,
    ResetLinkInvalid,
    NewPasswordLabel,
    ConfirmPasswordLabel,
    SignupTitle,
    SignupLead,
    SignupButton,
    SignupSent,
    SignupAgain,
    DisplayNameLabel,
    DisplayNameInvalid,
    VerifyTitle,
    VerifyDone,
    VerifyAskPassword,
    VerifyWrongPassword,
    VerifyButton,
    VerifyLinkInvalid,
    NotVerified,
    ResendButton,
    // Throttling and unlocking.
    SignInLocked,
    SignInLockedHard,
    SignInDeviceLocked,
    SignInAddressBlocked,
    LockOwnerTold,
    SignInHelpLink,
    UnlockTitle,
    UnlockIntro,
    UnlockButton,
    UnlockDone,
    UnlockLinkInvalid,
    // Sign-in help.
    SignInHelpTitle,
    SignInHelpLead,
    SignInHelpButton,
    SignInHelpSent,
    // The account console.
    AccountConsole,
    AccountTitle,
    AccountEmailVerified,
    AccountEmailUnverified,
    AccountPasswordSet,
    AccountNoPassword,
    AccountRecentSignIns,
    AccountNoSignIns,
    AccountDevicesSignedIn,
    AccountProtection,
    ResultSuccess,
    ResultWrongPassword,
    ResultThrottled,
    ResultUnverified,
    ResultFrozen,
    NewDeviceMark,
    // Signed-in devices (`/account/sessions`).
    SessionsTitle,
    SessionsLead,
    SessionsThisDevice,
    SessionsIp,
    SessionsSignedInAt,
    SessionsLastActive,
    SessionsSignOut,
    SessionsSignOutOthers,
    SessionsEnded,
    SessionsOthersEnded,
    SessionsNotFound,
    BackToAccount,
    // Sign-in history (`/account/history`) and 「心当たりがない」.
    HistoryTitle,
    HistoryLead,
    /// Carries `{days}`, replaced by the configured retention.
    HistoryKept,
    HistoryIp,
    HistoryMethod,
    MethodPassword,
    HistoryOlder,
    HistoryNewest,
    NotMeTitle,
    NotMeLead,
    NotMeButton,
    NotMeDoneTitle,
    NotMeSignedOut,
    NotMeMailed,
    NotMeMailFailed,
    NotMeResetLink,
    // The profile page.
    ProfileTitle,
    ProfileLanguage,
    ProfileSave,
    ProfileSaved,
    // Connected apps.
    AppsTitle,
    AppsLead,
    AppsNone,
    AppsMaySee,
    AppsSince,
    AppsLastUsed,
    AppsRemove,
    AppsRemoveNote,
    AppsRemoved,
    AppsNotFound,
    // Re-authentication
    ReauthNeeded,
    // Email change (account/email.rs)
    EmailChangeTitle,
    EmailChangeLead,
    EmailCurrentLabel,
    EmailNewLabel,
    EmailChangeButton,
    EmailChangeSame,
    /// Carries `{hours}`, replaced by the confirmation link's lifetime.
    EmailChangeSent,
    EmailConfirmTitle,
    EmailConfirmLead,
    EmailConfirmButton,
    EmailChanged,
    EmailLinkInvalid,
    EmailLinkOtherAccount,
    EmailAddressTaken,
    EmailAddressCoolingDown,
    EmailUndoTitle,
    EmailUndoLead,
    EmailUndoRestores,
    EmailUndoSignsOut,
    EmailUndoResetFirst,
    EmailUndoChangedAgain,
    EmailUndoButton,
    /// Carries `{minutes}`, replaced by the reset link's lifetime.
    EmailUndone,
    EmailUndoTaken,
    // Password change (account/password.rs)
    PasswordChangeTitle,
    PasswordChangeLead,
    CurrentPasswordLabel,
    SignOutOthersLabel,
    PasswordChangeButton,
    CurrentPasswordMissing,
    CurrentPasswordWrong,
    PasswordChangeThrottled,
    PasswordSameAsCurrent,
    PasswordChangedOthersOut,
    PasswordChangedOthersKept,
    NoPasswordToChange,
    SetPasswordLink,
    // Freeze and support (admin/support.rs)
    AccountUnavailableContact,
    ResetRequiredSignIn,
    ResultResetRequired,
    // Deletion (account/delete.rs)
    DeleteHeldByUndo,
    DeleteTitle,
    DeleteLead,
    DeleteAtOnce,
    DeleteSignInRefused,
    DeleteDevicesSignedOut,
    DeleteAppsTold,
    DeleteAfterwards,
    /// Carries `{days}`, replaced by `account.retention_days`.
    DeleteKept,
    /// Carries `{days}`, replaced by `account.reregister_cooldown_days`.
    DeleteAgainAfter,
    DeleteAgainAtOnce,
    DeleteNoRestore,
    DeleteConfirmLabel,
    DeleteButton,
    DeleteConfirmMismatch,
    DeleteDone,
    DeleteAlreadyDone,
    // Two-step results in the history (store/history.rs)
    ResultWrongCode,
    ResultEnrolled,
    ResultRemoved,
    // passkeys in the console (account/passkeys.rs)
    MethodPasskey,
    PasskeysTitle,
    PasskeysLead,
    PasskeysUnavailable,
    PasskeysNone,
    PasskeysCreated,
    PasskeysLastUsed,
    PasskeysNeverUsed,
    PasskeysNameLabel,
    PasskeysNameHint,
    PasskeysRename,
    PasskeysRemove,
    PasskeysAddHeading,
    PasskeysAddButton,
    PasskeysCreateLead,
    PasskeysCreateButton,
    PasskeysNeedsScript,
    PasskeysBrowserFailed,
    PasskeysCancel,
    /// Carries `{n}`, the passkey's number.
    PasskeysDefaultName,
    PasskeysNameInvalid,
    PasskeysExpired,
    PasskeysMalformed,
    PasskeysRefused,
    PasskeysTaken,
    PasskeysTooMany,
    PasskeysNotFound,
    PasskeysLastWayIn,
    PasskeysDoneAdded,
    PasskeysDoneRenamed,
    PasskeysDoneRemoved,
    // passkey sign-in (oidc/passkey.rs)
    PasskeySignInButton,
    PasskeyOr,
    PasskeyBrowserError,
    PasskeyExpired,
    PasskeyRefused,
    PasskeyMalformed,
    PasskeySecondStepHeading,
    PasskeySecondStepButton,
    ResultPasskeyRefused,
    // federated sign-in (oidc/federation.rs, login page)
    /// `{label}` is the provider's button text.
    FedUnavailable,
    FedCancelled,
    FedRefused,
    FedMisconfigured,
    FedExpired,
    FedExpiredTitle,
    FedSignInAgain,
    FedAccountLink,
    FedNoEmail,
    FedAddressInUse,
    FedCooldown,
    FedOtherWays,
    FedLinkGone,
    // END-F3-ENUM
    // linked accounts in the console (account/linked.rs)
    LinkedTitle,
    LinkedLead,
    LinkedNone,
    LinkedEmail,
    LinkedNoEmail,
    LinkedCreated,
    LinkedLastUsed,
    LinkedNeverUsed,
    LinkedRemove,
    LinkedAddHeading,
    LinkedAddLead,
    LinkedAddButton,
    LinkedNoProviders,
    LinkedDoneLinked,
    LinkedDoneUnlinked,
    LinkedAlready,
    LinkedOtherAccount,
    LinkedLastWayIn,
    LinkedNotFound,
    LinkedUnknownProvider,
    LinkedCancelled,
    LinkedUnavailable,
    LinkedRefused,
    LinkedMisconfigured,
    LinkedSessionChanged,
    MethodFedLinked,
    MethodFedUnlinked,
    // END-F4-ENUM
    // store-side federation messages (ways in removed)
    // END-F2-ENUM
    // The second-step page (oidc/second_step.rs)
    SecondStepTitle,
    SecondStepLead,
    TotpHeading,
    TotpLabel,
    VerifyCodeButton,
    EmailCodeHeading,
    /// Carries `{to}`, replaced by the masked address.
    EmailCodeWillSend,
    /// Carries `{to}` and `{minutes}`.
    EmailCodeSentTo,
    EmailCodeLabel,
    EmailSendButton,
    EmailResendButton,
    EmailCodeResent,
    RecoveryHeading,
    RecoveryLead,
    RecoveryLabel,
    /// Carries `{days}`, replaced by `account.remember_device_days`.
    RememberDevice,
    OtherAccount,
    /// Carries `{left}`, replaced by the tries left for this sign-in.
    CodeWrong,
    CodeExpired,
    CodeEmpty,
    CodeNotDigits,
    CodeTooLong,
    MethodUnknown,
    MethodNotEnrolled,
    SecondStepLocked,
    EmailSendLimit,
    SecondStepVoid,
    // Two-step verification in the console (account/two_step.rs)
    TwoStepTitle,
    TwoStepLead,
    TwoStepIsOn,
    TwoStepIsOff,
    TwoStepSetUp,
    TwoStepNotSetUp,
    TwoStepTotpHeading,
    TwoStepTotpAbout,
    TwoStepTotpStart,
    TwoStepTotpReplace,
    TwoStepTotpDisable,
    TwoStepEmailHeading,
    TwoStepEmailAbout,
    TwoStepEmailEnable,
    TwoStepEmailDisable,
    TwoStepRecoveryHeading,
    TwoStepRecoveryAbout,
    TwoStepRecoveryLeft,
    TwoStepRecoveryLow,
    TwoStepRecoveryRegenerate,
    TwoStepRecoveryRegenerateNote,
    TwoStepOffHeading,
    TwoStepOffAbout,
    TwoStepOffButton,
    TwoStepDoneTotpOn,
    TwoStepDoneTotpReplaced,
    TwoStepDoneTotpOff,
    TwoStepDoneEmailOn,
    TwoStepDoneEmailOff,
    TwoStepDoneOff,
    TwoStepEnrolTitle,
    TwoStepEnrolScan,
    TwoStepEnrolQrLabel,
    TwoStepEnrolKey,
    TwoStepEnrolCode,
    TwoStepEnrolReplacing,
    TwoStepEnrolExpires,
    TwoStepCodeLabel,
    TwoStepConfirm,
    TwoStepCancel,
    TwoStepCodeMalformed,
    TwoStepCodeWrong,
    TwoStepLocked,
    TwoStepEnrolExpired,
    TwoStepCodesTitle,
    TwoStepCodesOn,
    TwoStepCodesRenewed,
    TwoStepCodesLead,
    TwoStepCodesOnce,
    TwoStepCodesDownload,
    TwoStepCodesKept,
    TwoStepCodesFileHeading,
    TwoStepDownloadGone,
    MethodTotp,
    MethodEmailCode,
    MethodRecoveryCode,
    MethodTwoStep,
}

impl Msg {
    pub fn text(self, lang: Lang) -> &'static str {
        use Lang::{En, Ja};
        match (self, lang) {
            (Self::EmailEmpty, Ja) => "メールアドレスを入力してください。",
            (Self::EmailEmpty, En) => "Enter your email address.",
            (Self::EmailInvalid, Ja) => "メールアドレスの形式が正しくありません。",
            (Self::EmailInvalid, En) => "This email address is not valid.",
            (Self::EmailTooLong, Ja) => "メールアドレスが長すぎます。",
            (Self::EmailTooLong, En) => "This email address is too long.",
            (Self::EmailTaken, Ja) => "このメールアドレスはすでに登録されています。",
            (Self::EmailTaken, En) => "This email address is already registered.",
            (Self::PasswordTooShort, Ja) => "パスワードは8文字以上にしてください。",
            (Self::PasswordTooShort, En) => "Use at least 8 characters for your password.",
            (Self::PasswordTooLong, Ja) => "パスワードは128文字以内にしてください。",
            (Self::PasswordTooLong, En) => "Use at most 128 characters for your password.",
            (Self::PasswordTooWeak, Ja) => {
                "推測されやすいパスワードです。単語を組み合わせるなど、より長く予測しにくいものにしてください。"
            }
            (Self::PasswordTooWeak, En) => {
                "This password is too easy to guess. Make it longer and less predictable, for example several unrelated words."
            }
            (Self::PasswordContainsEmail, Ja) => {
                "パスワードにメールアドレスの一部を含めないでください。"
            }
            (Self::PasswordContainsEmail, En) => {
                "Do not use part of your email address in your password."
            }
            (Self::PasswordsDoNotMatch, Ja) => "パスワードが一致しません。",
            (Self::PasswordsDoNotMatch, En) => "The passwords do not match.",
            (Self::PasswordRequired, Ja) => "パスワードを入力してください。",
            (Self::PasswordRequired, En) => "Enter your password.",
            (Self::LoginTitle, Ja) => "ログイン",
            (Self::LoginTitle, En) => "Sign in",
            (Self::EmailLabel, Ja) => "メールアドレス",
            (Self::EmailLabel, En) => "Email address",
            (Self::PasswordLabel, Ja) => "パスワード",
            (Self::PasswordLabel, En) => "Password",
            (Self::RememberMe, Ja) => "ログインしたままにする",
            (Self::RememberMe, En) => "Keep me signed in",
            (Self::SignInButton, Ja) => "ログイン",
            (Self::SignInButton, En) => "Sign in",
            (Self::ForgotPassword, Ja) => "パスワードをお忘れの方",
            (Self::ForgotPassword, En) => "Forgot your password?",
            (Self::CreateAccount, Ja) => "アカウントを作成",
            (Self::CreateAccount, En) => "Create an account",
            (Self::InvalidCredentials, Ja) => "メールアドレスまたはパスワードが正しくありません。",
            (Self::InvalidCredentials, En) => "The email address or password is incorrect.",
            (Self::AccountUnavailable, Ja) => {
                "このアカウントは現在ご利用いただけません。サポートにお問い合わせください。"
            }
            (Self::AccountUnavailable, En) => {
                "This account cannot be used at the moment. Please contact support."
            }
            (Self::LoginExpired, Ja) => {
                "ログインの有効期限が切れました。ご利用中のサービスに戻って、もう一度ログインしてください。"
            }
            (Self::LoginExpired, En) => {
                "This sign-in has expired. Go back to the service you were using and sign in again."
            }
            (Self::FormExpired, Ja) => {
                "フォームの有効期限が切れました。ページを再読み込みして、もう一度お試しください。"
            }
            (Self::FormExpired, En) => "This form has expired. Reload the page and try again.",
            (Self::ErrorTitle, Ja) => "エラー",
            (Self::ErrorTitle, En) => "Error",
            (Self::UnknownClient, Ja) => "このアプリケーションは登録されていません。",
            (Self::UnknownClient, En) => "This application is not registered.",
            (Self::BadRedirectUri, Ja) => {
                "戻り先のURLがこのアプリケーションに登録されていないため、続行できません。"
            }
            (Self::BadRedirectUri, En) => {
                "The return address is not registered for this application, so sign-in cannot continue."
            }
            (Self::BadRequest, Ja) => "リクエストが正しくありません。",
            (Self::BadRequest, En) => "The request is not valid.",
            (Self::ServerError, Ja) => {
                "問題が発生しました。しばらくしてから、もう一度お試しください。"
            }
            (Self::ServerError, En) => "Something went wrong. Please try again in a moment.",
            (Self::ErrorReference, Ja) => "お問い合わせ番号",
            (Self::ErrorReference, En) => "Reference",
            (Self::OtherLanguage, Ja) => "English",
            (Self::OtherLanguage, En) => "日本語",
            (Self::ConsentTitle, Ja) => "アクセスの許可",
            (Self::ConsentTitle, En) => "Allow access",
            (Self::Allow, Ja) => "許可する",
            (Self::Allow, En) => "Allow",
            (Self::Deny, Ja) => "許可しない",
            (Self::Deny, En) => "Deny",
            (Self::ScopeOpenid, Ja) => "あなたを識別するID（サービスごとに異なる場合があります）",
            (Self::ScopeOpenid, En) => "An identifier for your account",
            (Self::ScopeProfile, Ja) => "表示名と言語の設定",
            (Self::ScopeProfile, En) => "Your display name and language",
            (Self::ScopeEmail, Ja) => "メールアドレス",
            (Self::ScopeEmail, En) => "Your email address",
            (Self::ScopeOfflineAccess, Ja) => "ログアウト中も、許可した情報へアクセスし続けること",
            (Self::ScopeOfflineAccess, En) => {
                "Keep access to this information while you are signed out"
            }
            (Self::LogoutTitle, Ja) => "ログアウト",
            (Self::LogoutTitle, En) => "Sign out",
            (Self::LogoutQuestion, Ja) => "ログアウトしますか？",
            (Self::LogoutQuestion, En) => "Do you want to sign out?",
            (Self::LogoutButton, Ja) => "ログアウトする",
            (Self::LogoutButton, En) => "Sign out",
            (Self::LoggedOut, Ja) => "ログアウトしました。",
            (Self::LoggedOut, En) => "You have been signed out.",
            (Self::BadLogoutRequest, Ja) => "ログアウトのリクエストが正しくありません。",
            (Self::BadLogoutRequest, En) => "This sign-out request is not valid.",
            (Self::Redirecting, Ja) => "サービスに戻っています…",
            (Self::Redirecting, En) => "Returning to the service…",
            (Self::ContinueButton, Ja) => "続ける",
            (Self::ContinueButton, En) => "Continue",
            (Self::OtherBrowser, Ja) => {
                "このログインは別のブラウザで始められたため、ここでは続けられません。ご利用中のサービスに戻って、このブラウザでもう一度ログインしてください。"
            }
            (Self::OtherBrowser, En) => {
                "This sign-in was started in another browser, so it cannot continue here. Go back to the service you were using and sign in again in this browser."
            }
            (Self::CrossSite, Ja) => {
                "このフォームは別のサイトから送信されたため、受け付けられませんでした。Tobiraのページからもう一度お試しください。"
            }
            (Self::CrossSite, En) => {
                "This form was sent from another site, so it was not accepted. Please try again from Tobira's own page."
            }
            (Self::TooManyRequests, Ja) => {
                "短時間に多くのリクエストがありました。しばらく待ってから、もう一度お試しください。"
            }
            (Self::TooManyRequests, En) => {
                "There have been too many requests in a short time. Please wait a moment and try again."
            }
            (Self::Unavailable, Ja) => {
                "ただいま混み合っているか、一時的に利用できません。少し待ってから、もう一度お試しください。"
            }
            (Self::ForgotTitle, Ja) => "パスワードの再設定",
            (Self::ForgotTitle, En) => "Reset your password",
            (Self::ForgotLead, Ja) => {
                "登録したメールアドレスを入力してください。パスワードを再設定するためのリンクをお送りします。"
            }
            (Self::ForgotLead, En) => {
                "Enter the email address of your account. We will send you a link to set a new password."
            }
            (Self::ForgotButton, Ja) => "再設定のリンクを送る",
            (Self::ForgotButton, En) => "Send the link",
            (Self::ForgotSent, Ja) => {
                "入力されたメールアドレスでアカウントが登録されていれば、パスワード再設定のリンクをお送りしました。メールが届かない場合は、迷惑メールフォルダもご確認ください。リンクの有効期限は30分です。"
            }
            (Self::ForgotSent, En) => {
                "If an account is registered with this address, we have sent it a link to reset the password. If nothing arrives, check your spam folder. The link is valid for 30 minutes."
            }
            (Self::BackToSignIn, Ja) => "ログインに戻る",
            (Self::BackToSignIn, En) => "Back to sign-in",
            (Self::ResetTitle, Ja) => "新しいパスワードの設定",
            (Self::ResetTitle, En) => "Set a new password",
            (Self::ResetLead, Ja) => {
                "新しいパスワードを入力してください。設定すると、すべての端末からログアウトします。"
            }
            (Self::ResetLead, En) => {
                "Enter your new password. Once it is set, every device is signed out."
            }
            (Self::ResetButton, Ja) => "パスワードを設定する",
            (Self::ResetButton, En) => "Set the password",
            (Self::ResetDone, Ja) => {
                "パスワードを変更しました。新しいパスワードでログインしてください。"
            }
            (Self::ResetDone, En) => "Your password was changed. Sign in with the new password.",
            (Self::ResetLinkInvalid, Ja) => {
                "このリンクは無効か、有効期限が切れています。もう一度パスワードの再設定をお申し込みください。"
            }
            (Self::ResetLinkInvalid, En) => {
                "This link is not valid or has expired. Please ask for a new password reset."
            }
            (Self::SignupTitle, Ja) => "アカウントの作成",
            (Self::SignupTitle, En) => "Create an account",
            (Self::SignupLead, Ja) => {
                "パスワードは8文字以上で、推測されにくいもの（メールアドレスを含まないもの）にしてください。登録後、確認メールをお送りします。"
            }
            (Self::SignupLead, En) => {
                "Choose a password of at least 8 characters that is hard to guess and does not contain your email address. We will then send you a confirmation mail."
            }
            (Self::SignupButton, Ja) => "登録する",
            (Self::SignupButton, En) => "Sign up",
            (Self::SignupSent, Ja) => {
                "確認メールをお送りしました。メールのリンクを開いて登録を完了してください（24時間有効）。メールが届かない場合は、迷惑メールフォルダもご確認ください。"
            }
            (Self::SignupSent, En) => {
                "We sent you a mail. Open its link to finish signing up (valid for 24 hours). If nothing arrives, check your spam folder."
            }
            (Self::SignupAgain, Ja) => "もう一度登録する",
            (Self::SignupAgain, En) => "Sign up again",
            (Self::DisplayNameLabel, Ja) => "表示名",
            (Self::DisplayNameLabel, En) => "Display name",
            (Self::DisplayNameInvalid, Ja) => "表示名を50文字以内で入力してください。",
            (Self::DisplayNameInvalid, En) => "Enter a display name of at most 50 characters.",
            (Self::VerifyTitle, Ja) => "メールアドレスの確認",
            (Self::VerifyTitle, En) => "Confirm your email address",
            (Self::VerifyDone, Ja) => {
                "メールアドレスを確認しました。ご利用中のサービスからログインしてください。"
            }
            (Self::VerifyDone, En) => {
                "Your email address is confirmed. Sign in from the service you were using."
            }
            (Self::VerifyAskPassword, Ja) => {
                "登録したときとは別のブラウザで開かれたため、確認のために登録したパスワードを入力してください。"
            }
            (Self::VerifyAskPassword, En) => {
                "This link was opened in another browser than the one you signed up in. Enter the password you chose to confirm it is you."
            }
            (Self::VerifyWrongPassword, Ja) => {
                "パスワードが正しくありません。パスワードがわからない場合は、もう一度登録してください。"
            }
            (Self::VerifyWrongPassword, En) => {
                "The password is not correct. If you do not know it, sign up again."
            }
            (Self::VerifyButton, Ja) => "確認する",
            (Self::VerifyButton, En) => "Confirm",
            (Self::VerifyLinkInvalid, Ja) => {
                "この確認リンクは無効か、有効期限が切れています。もう一度登録するか、ログインして確認メールを再送してください。"
            }
            (Self::VerifyLinkInvalid, En) => {
                "This confirmation link is not valid or has expired. Sign up again, or sign in to have the mail sent again."
            }
            (Self::NotVerified, Ja) => {
                "メールアドレスの確認がまだ完了していません。確認メールのリンクを開いてください。"
            }
            (Self::NotVerified, En) => {
                "Your email address is not confirmed yet. Open the link in the confirmation mail."
            }
            (Self::ResendButton, Ja) => "確認メールを再送する",
            (Self::ResendButton, En) => "Send the mail again",
            (Self::NewPasswordLabel, Ja) => "新しいパスワード",
            (Self::NewPasswordLabel, En) => "New password",
            (Self::ConfirmPasswordLabel, Ja) => "新しいパスワード（確認）",
            (Self::ConfirmPasswordLabel, En) => "New password again",
            (Self::Unavailable, En) => {
                "The service is busy or temporarily unavailable. Please wait a moment and try again."
            }
            (Self::AccountConsole, Ja) => "Tobira アカウント",
            (Self::AccountConsole, En) => "your Tobira account",
            (Self::AccountTitle, Ja) => "アカウント",
            (Self::AccountTitle, En) => "Your account",
            (Self::AccountEmailVerified, Ja) => "確認済み",
            (Self::AccountEmailVerified, En) => "verified",
            (Self::AccountEmailUnverified, Ja) => "未確認",
            (Self::AccountEmailUnverified, En) => "not verified",
            (Self::AccountPasswordSet, Ja) => "パスワード: 設定済み",
            (Self::AccountPasswordSet, En) => "Password: set",
            (Self::AccountNoPassword, Ja) => "パスワード: 未設定",
            (Self::AccountNoPassword, En) => "Password: not set",
            (Self::AccountRecentSignIns, Ja) => "最近のログイン",
            (Self::AccountRecentSignIns, En) => "Recent sign-ins",
            (Self::AccountNoSignIns, Ja) => "ログインの記録はまだありません。",
            (Self::AccountNoSignIns, En) => "No sign-ins recorded yet.",
            (Self::AccountDevicesSignedIn, Ja) => "ログイン中の端末",
            (Self::AccountDevicesSignedIn, En) => "Devices signed in",
            (Self::AccountProtection, Ja) => "アカウントの保護",
            (Self::AccountProtection, En) => "How your account is protected",
            (Self::ResultSuccess, Ja) => "成功",
            (Self::ResultSuccess, En) => "signed in",
            (Self::ResultWrongPassword, Ja) => "パスワード誤り",
            (Self::ResultWrongPassword, En) => "wrong password",
            (Self::ResultThrottled, Ja) => "制限により拒否",
            (Self::ResultThrottled, En) => "refused (too many failures)",
            (Self::ResultUnverified, Ja) => "メール未確認",
            (Self::ResultUnverified, En) => "address not verified",
            (Self::ResultFrozen, Ja) => "利用停止中",
            (Self::ResultFrozen, En) => "account suspended",
            (Self::NewDeviceMark, Ja) => "新しい端末",
            (Self::NewDeviceMark, En) => "new device",
            (Self::SignInLocked, Ja) => {
                "ログインの失敗が続いたため、このアカウントへのログインを一時的に制限しています。"
            }
            (Self::SignInLocked, En) => {
                "Signing in to this account is paused for a while after too many failed attempts."
            }
            (Self::SignInLockedHard, Ja) => {
                "ログインの失敗が多すぎるため、このアカウントへのログインを制限しています。登録メールアドレスに届くロック解除のリンクを使うか、パスワードを再設定してください。"
            }
            (Self::SignInLockedHard, En) => {
                "Signing in to this account is paused after too many failed attempts. Use the unlock link sent to the account's address, or reset the password."
            }
            (Self::SignInDeviceLocked, Ja) => {
                "この端末からのログインの失敗が続いたため、一時的に制限しています。"
            }
            (Self::SignInDeviceLocked, En) => {
                "Signing in from this device is paused for a while after too many failed attempts."
            }
            (Self::SignInAddressBlocked, Ja) => {
                "ご利用のネットワークからのログインの失敗が多いため、一時的に制限しています。"
            }
            (Self::SignInAddressBlocked, En) => {
                "Signing in from your network is paused for a while after too many failed attempts."
            }
            (Self::LockOwnerTold, Ja) => {
                "このメールアドレスのアカウントがある場合は、そのメールアドレスにロック解除のご案内をお送りしています。"
            }
            (Self::LockOwnerTold, En) => {
                "If an account uses this address, a mail with a link to unlock it has been sent there."
            }
            (Self::SignInHelpLink, Ja) => "ログインできない方",
            (Self::SignInHelpLink, En) => "Can't sign in?",
            (Self::UnlockTitle, Ja) => "ログイン制限の解除",
            (Self::UnlockTitle, En) => "Unlock sign-in",
            (Self::UnlockIntro, Ja) => {
                "ご自身の操作でログインに失敗した場合は、ボタンを押すとすぐにログインできるようになります。お心当たりがない場合は解除せず、パスワードを再設定してください。"
            }
            (Self::UnlockIntro, En) => {
                "If the failed sign-ins were yours, press the button and you can sign in again at once. If they were not, do not unlock: reset your password instead."
            }
            (Self::UnlockButton, Ja) => "ロックを解除する",
            (Self::UnlockButton, En) => "Unlock",
            (Self::UnlockDone, Ja) => "ロックを解除しました。もう一度ログインしてください。",
            (Self::UnlockDone, En) => "Sign-in is unlocked. Please sign in again.",
            (Self::UnlockLinkInvalid, Ja) => {
                "このロック解除のリンクは無効です。使用済みか期限切れの可能性があります。「ログインできない方」から新しいリンクを受け取れます。"
            }
            (Self::UnlockLinkInvalid, En) => {
                "This unlock link is not valid: it was used or has expired. \"Can't sign in?\" sends a new one."
            }
            (Self::SignInHelpTitle, Ja) => "ログインできない方へ",
            (Self::SignInHelpTitle, En) => "Trouble signing in",
            (Self::SignInHelpLead, Ja) => {
                "登録したメールアドレスを入力してください。ロックされていないか、メールアドレスの確認が済んでいるか、どの方法でログインできるかなど、アカウントの状態を必要なリンクとともにそのアドレスへお知らせします。"
            }
            (Self::SignInHelpLead, En) => {
                "Enter the email address of your account. We will mail it how your account stands (whether it is locked, whether the address still awaits confirmation, how you can sign in) with the links you need."
            }
            (Self::SignInHelpButton, Ja) => "案内を送る",
            (Self::SignInHelpButton, En) => "Send me help",
            (Self::SignInHelpSent, Ja) => {
                "入力されたメールアドレスのアカウントがある場合は、そのアドレスにログインについてのご案内をお送りしました。メールが届かない場合は、迷惑メールフォルダもご確認ください。"
            }
            (Self::SignInHelpSent, En) => {
                "If an account uses this address, we have sent it a mail with help to sign in. If nothing arrives, check your spam folder."
            }
            (Self::SessionsTitle, Ja) => "ログイン中の端末",
            (Self::SessionsTitle, En) => "Signed-in devices",
            (Self::SessionsLead, Ja) => {
                "このアカウントに現在ログインしている端末です。心当たりのない端末があればログアウトし、パスワードを再設定してください。"
            }
            (Self::SessionsLead, En) => {
                "These devices are signed in to your account now. If you do not recognise one, sign it out and reset your password."
            }
            (Self::SessionsThisDevice, Ja) => "この端末",
            (Self::SessionsThisDevice, En) => "This device",
            (Self::SessionsIp, Ja) => "IPアドレス",
            (Self::SessionsIp, En) => "IP address",
            (Self::SessionsSignedInAt, Ja) => "ログイン日時",
            (Self::SessionsSignedInAt, En) => "Signed in",
            (Self::SessionsLastActive, Ja) => "最終利用",
            (Self::SessionsLastActive, En) => "Last active",
            (Self::SessionsSignOut, Ja) => "ログアウト",
            (Self::SessionsSignOut, En) => "Sign out",
            (Self::SessionsSignOutOthers, Ja) => "他のすべての端末からログアウト",
            (Self::SessionsSignOutOthers, En) => "Sign out all other devices",
            (Self::SessionsEnded, Ja) => "端末をログアウトしました。",
            (Self::SessionsEnded, En) => "The device has been signed out.",
            (Self::SessionsOthersEnded, Ja) => "他のすべての端末からログアウトしました。",
            (Self::SessionsOthersEnded, En) => "All other devices have been signed out.",
            (Self::SessionsNotFound, Ja) => {
                "この端末はこのアカウントにログインしていないか、すでにログアウトしています。"
            }
            (Self::SessionsNotFound, En) => {
                "This device is not signed in to your account, or it has already been signed out."
            }
            (Self::BackToAccount, Ja) => "アカウントに戻る",
            (Self::BackToAccount, En) => "Back to your account",
            (Self::HistoryTitle, Ja) => "ログイン履歴",
            (Self::HistoryTitle, En) => "Sign-in history",
            (Self::HistoryLead, Ja) => {
                "このアカウントへのログインの試み（成功・失敗・制限による拒否）を新しい順に表示しています。"
            }
            (Self::HistoryLead, En) => {
                "Every attempt to sign in to your account (successful, failed or refused), newest first."
            }
            (Self::HistoryKept, Ja) => "記録は{days}日間保存されます。",
            (Self::HistoryKept, En) => "Attempts are kept for {days} days.",
            (Self::HistoryIp, Ja) => "IPアドレス",
            (Self::HistoryIp, En) => "IP address",
            (Self::HistoryMethod, Ja) => "方法",
            (Self::HistoryMethod, En) => "Method",
            (Self::MethodPassword, Ja) => "パスワード",
            (Self::MethodPassword, En) => "Password",
            (Self::HistoryOlder, Ja) => "次へ",
            (Self::HistoryOlder, En) => "Older",
            (Self::HistoryNewest, Ja) => "最新の記録へ",
            (Self::HistoryNewest, En) => "Newest",
            (Self::NotMeTitle, Ja) => "心当たりのないログインがある場合",
            (Self::NotMeTitle, En) => "A sign-in you do not recognise?",
            (Self::NotMeLead, Ja) => {
                "ボタンを押すと、この端末を含むすべての端末からログアウトし、パスワード再設定用のリンクを登録メールアドレスにお送りします。"
            }
            (Self::NotMeLead, En) => {
                "Press the button to sign out every device, this one included, and receive a link to reset your password at your address."
            }
            (Self::NotMeButton, Ja) => "心当たりがない",
            (Self::NotMeButton, En) => "This wasn't me",
            (Self::NotMeDoneTitle, Ja) => "すべての端末からログアウトしました",
            (Self::NotMeDoneTitle, En) => "Every device is signed out",
            (Self::NotMeSignedOut, Ja) => {
                "このアカウントにログインしていたすべての端末（この端末を含む）からログアウトしました。"
            }
            (Self::NotMeSignedOut, En) => {
                "Every device that was signed in to your account, this one included, has been signed out."
            }
            (Self::NotMeMailed, Ja) => {
                "パスワード再設定用のリンクを登録メールアドレスにお送りしました。新しいパスワードを設定してください。メールが届かない場合は、下のリンクから再送できます。"
            }
            (Self::NotMeMailed, En) => {
                "A link to reset your password has been sent to your address: please set a new password. If no mail arrives, the link below sends another."
            }
            (Self::NotMeMailFailed, Ja) => {
                "パスワード再設定用のメールを送れませんでした。下のリンクからもう一度お試しください。"
            }
            (Self::NotMeMailFailed, En) => {
                "The mail to reset your password could not be sent. Please try again with the link below."
            }
            (Self::NotMeResetLink, Ja) => "パスワードを再設定する",
            (Self::NotMeResetLink, En) => "Reset your password",
            (Self::ProfileTitle, Ja) => "プロフィール",
            (Self::ProfileTitle, En) => "Profile",
            (Self::ProfileLanguage, Ja) => "表示言語",
            (Self::ProfileLanguage, En) => "Language",
            (Self::ProfileSave, Ja) => "保存する",
            (Self::ProfileSave, En) => "Save",
            (Self::ProfileSaved, Ja) => "保存しました。",
            (Self::ProfileSaved, En) => "Saved.",
            (Self::AppsTitle, Ja) => "連携中のアプリ",
            (Self::AppsTitle, En) => "Connected apps",
            (Self::AppsLead, Ja) => {
                "あなたのアカウントでログインし、あなたの情報を利用できるアプリです。心当たりのないアプリや使わなくなったアプリは、アクセスを解除してください。"
            }
            (Self::AppsLead, En) => {
                "These apps can sign you in and use your information. Remove the access of any app you do not recognise or no longer use."
            }
            (Self::AppsNone, Ja) => "連携中のアプリはありません。",
            (Self::AppsNone, En) => "No app has access to your account.",
            (Self::AppsMaySee, Ja) => "利用できる情報",
            (Self::AppsMaySee, En) => "May see",
            (Self::AppsSince, Ja) => "連携開始",
            (Self::AppsSince, En) => "Connected since",
            (Self::AppsLastUsed, Ja) => "最終利用",
            (Self::AppsLastUsed, En) => "Last used",
            (Self::AppsRemove, Ja) => "アクセスを解除",
            (Self::AppsRemove, En) => "Remove access",
            (Self::AppsRemoveNote, Ja) => {
                "解除すると、そのアプリからログアウトされ、アプリはあなたの情報にアクセスできなくなります。再びそのアプリを使うと、あらためて連携されます。"
            }
            (Self::AppsRemoveNote, En) => {
                "Removing access signs you out of the app and ends its access to your information. Using the app again connects it anew."
            }
            (Self::AppsRemoved, Ja) => {
                "アプリのアクセスを解除し、そのアプリからログアウトしました。"
            }
            (Self::AppsRemoved, En) => {
                "The app's access was removed and you were signed out of it."
            }
            (Self::AppsNotFound, Ja) => {
                "このアプリは、あなたのアカウントと連携していません。何も変更していません。"
            }
            (Self::AppsNotFound, En) => {
                "This app is not connected to your account. Nothing was changed."
            }
            // Re-authentication
            (Self::ReauthNeeded, Ja) => {
                "この操作を続けるには、もう一度パスワードを入力してください。"
            }
            (Self::ReauthNeeded, En) => "To continue, please enter your password again.",
            // Email change (account/email.rs)
            (Self::EmailChangeTitle, Ja) => "メールアドレスの変更",
            (Self::EmailChangeTitle, En) => "Change your email address",
            (Self::EmailChangeLead, Ja) => {
                "新しいメールアドレスに確認用のリンクをお送りします。リンクから変更を確定するまで、ログインに使うアドレスは変わりません。変更すると、今のアドレスにもお知らせします。"
            }
            (Self::EmailChangeLead, En) => {
                "We send a confirmation link to the new address. The address you sign in with changes only when that link is used; the current address is told when it does."
            }
            (Self::EmailCurrentLabel, Ja) => "現在のメールアドレス",
            (Self::EmailCurrentLabel, En) => "Current email address",
            (Self::EmailNewLabel, Ja) => "新しいメールアドレス",
            (Self::EmailNewLabel, En) => "New email address",
            (Self::EmailChangeButton, Ja) => "確認用のリンクを送る",
            (Self::EmailChangeButton, En) => "Send the confirmation link",
            (Self::EmailChangeSame, Ja) => {
                "現在のメールアドレスと同じです。新しいアドレスを入力してください。"
            }
            (Self::EmailChangeSame, En) => "This is your current email address. Enter the new one.",
            (Self::EmailChangeSent, Ja) => {
                "新しいメールアドレスに確認用のリンクをお送りしました（{hours}時間有効）。リンクから変更を確定するまで、ログインに使うアドレスは変わりません。"
            }
            (Self::EmailChangeSent, En) => {
                "We sent a confirmation link to the new address (valid for {hours} hours). The address you sign in with changes only when that link is used."
            }
            (Self::EmailConfirmTitle, Ja) => "新しいメールアドレスの確認",
            (Self::EmailConfirmTitle, En) => "Confirm your new email address",
            (Self::EmailConfirmLead, Ja) => {
                "ログインに使うメールアドレスを、次のアドレスに変更します。"
            }
            (Self::EmailConfirmLead, En) => "The address you sign in with becomes:",
            (Self::EmailConfirmButton, Ja) => "変更を確定する",
            (Self::EmailConfirmButton, En) => "Confirm the change",
            (Self::EmailChanged, Ja) => {
                "メールアドレスを変更しました。これからは新しいアドレスでログインしてください。以前のアドレスにもお知らせしました。"
            }
            (Self::EmailChanged, En) => {
                "Your email address has been changed: sign in with the new one from now on. The previous address has been told."
            }
            (Self::EmailLinkInvalid, Ja) => {
                "このリンクは無効か、すでに使われたか、有効期限が切れています。何も変更していません。"
            }
            (Self::EmailLinkInvalid, En) => {
                "This link is not valid, has been used already, or has expired. Nothing was changed."
            }
            (Self::EmailLinkOtherAccount, Ja) => {
                "このリンクは、いまログインしているものとは別のアカウントのものです。何も変更していません。変更するアカウントでログインし直すか、ログアウトしてからリンクを開いてください。"
            }
            (Self::EmailLinkOtherAccount, En) => {
                "This link belongs to another account than the one signed in here. Nothing was changed. Sign in to the account it belongs to, or sign out, then open the link again."
            }
            (Self::EmailAddressCoolingDown, Ja) => {
                "このメールアドレスは、退会したアカウントで使われていたため、{until} まで登録できません。それ以降にお試しいただくか、別のアドレスをお使いください。メールアドレスは変更していません。"
            }
            (Self::EmailAddressCoolingDown, En) => {
                "This address belonged to an account that was deleted recently and cannot be used until {until}. Try again after that or use another address. Your address was not changed."
            }
            (Self::EmailAddressTaken, Ja) => {
                "このメールアドレスはすでに別のアカウントで使われているため、変更できません。何も変更していません。"
            }
            (Self::EmailAddressTaken, En) => {
                "This email address is already used by another account, so the change cannot be made. Nothing was changed."
            }
            (Self::EmailUndoTitle, Ja) => "メールアドレスの変更の取り消し",
            (Self::EmailUndoTitle, En) => "Undo the email change",
            (Self::EmailUndoLead, Ja) => {
                "このアカウントのログイン用メールアドレスが変更されました。お心当たりがない場合は、変更を取り消してください。取り消すと、"
            }
            (Self::EmailUndoLead, En) => {
                "The email address this account signs in with was changed. If you did not make that change, undo it. Undoing it:"
            }
            (Self::EmailUndoRestores, Ja) => {
                "ログイン用のメールアドレスが、このリンクをお送りした次のアドレスに戻ります。"
            }
            (Self::EmailUndoRestores, En) => {
                "gives the account back the address this link was sent to:"
            }
            (Self::EmailUndoSignsOut, Ja) => {
                "すべての端末とアプリからログアウトし、連携サービス・パスキー・二段階認証の設定を削除します。"
            }
            (Self::EmailUndoSignsOut, En) => {
                "signs the account out on every device and in every app, and removes its linked services, passkeys and two-step verification;"
            }
            (Self::EmailUndoResetFirst, Ja) => {
                "パスワードを再設定するまでログインできなくなります。再設定用のリンクは上のアドレスにお送りします。"
            }
            (Self::EmailUndoResetFirst, En) => {
                "keeps the account from signing in until its password is reset. The reset link goes to the address above."
            }
            (Self::EmailUndoChangedAgain, Ja) => {
                "このアカウントのアドレスは、その後さらに別のアドレスに変更されています。取り消すと、それらの変更もまとめて取り消され、上のアドレスに戻ります。"
            }
            (Self::EmailUndoChangedAgain, En) => {
                "The account's address has been changed again since. Undoing undoes those changes too: the account goes back to the address above."
            }
            (Self::EmailUndoButton, Ja) => "変更を取り消す",
            (Self::EmailUndoButton, En) => "Undo the change",
            (Self::EmailUndone, Ja) => {
                "メールアドレスを元に戻し、すべての端末とアプリからログアウトしました。パスワード再設定用のリンクをこのアドレスにお送りしました（{minutes}分間有効）。新しいパスワードを設定するまでログインできません。"
            }
            (Self::EmailUndone, En) => {
                "The email address is back, and the account has been signed out everywhere. We sent a password reset link to this address (valid for {minutes} minutes): the account cannot sign in until a new password is set."
            }
            (Self::EmailUndoTaken, Ja) => {
                "元のメールアドレスは現在、別のアカウントで使われているため、取り消せません。何も変更していません。このリンクは有効期限まで使えます。サポートにお問い合わせください。"
            }
            (Self::EmailUndoTaken, En) => {
                "The previous address is now used by another account, so the change cannot be undone. Nothing was changed, and this link keeps working until it expires. Please contact support."
            }
            // Password change (account/password.rs)
            (Self::PasswordChangeTitle, Ja) => "パスワードの変更",
            (Self::PasswordChangeTitle, En) => "Change your password",
            (Self::PasswordChangeLead, Ja) => {
                "現在のパスワードと、新しいパスワードを入力してください。新しいパスワードは8文字以上で、推測されにくいもの（メールアドレスを含まないもの）にしてください。"
            }
            (Self::PasswordChangeLead, En) => {
                "Enter your current password and a new one. Choose a new password of at least 8 characters that is hard to guess and does not contain your email address."
            }
            (Self::CurrentPasswordLabel, Ja) => "現在のパスワード",
            (Self::CurrentPasswordLabel, En) => "Current password",
            (Self::SignOutOthersLabel, Ja) => {
                "他のすべての端末からログアウトする（この端末はログインしたままです）"
            }
            (Self::SignOutOthersLabel, En) => {
                "Sign out all other devices (this one stays signed in)"
            }
            (Self::PasswordChangeButton, Ja) => "パスワードを変更する",
            (Self::PasswordChangeButton, En) => "Change the password",
            (Self::CurrentPasswordMissing, Ja) => "現在のパスワードを入力してください。",
            (Self::CurrentPasswordMissing, En) => "Enter your current password.",
            (Self::CurrentPasswordWrong, Ja) => {
                "現在のパスワードが正しくありません。パスワードは変更されていません。"
            }
            (Self::CurrentPasswordWrong, En) => {
                "Your current password is not correct. The password was not changed."
            }
            (Self::PasswordChangeThrottled, Ja) => {
                "現在のパスワードの入力に何度も失敗したため、パスワードの変更を一時的に受け付けていません。"
            }
            (Self::PasswordChangeThrottled, En) => {
                "Too many wrong current passwords: password changes are paused for a while."
            }
            (Self::PasswordSameAsCurrent, Ja) => {
                "新しいパスワードが現在のパスワードと同じです。別のパスワードにしてください。"
            }
            (Self::PasswordSameAsCurrent, En) => {
                "The new password is the same as the current one. Choose a different one."
            }
            (Self::PasswordChangedOthersOut, Ja) => {
                "パスワードを変更しました。他のすべての端末からログアウトしました。"
            }
            (Self::PasswordChangedOthersOut, En) => {
                "Your password was changed, and every other device was signed out."
            }
            (Self::PasswordChangedOthersKept, Ja) => {
                "パスワードを変更しました。他の端末はログインしたままです。"
            }
            (Self::PasswordChangedOthersKept, En) => {
                "Your password was changed. Other devices stay signed in."
            }
            (Self::NoPasswordToChange, Ja) => {
                "このアカウントにはパスワードが設定されていないため、変更するパスワードがありません。パスワードを設定するには、メールで設定用のリンクを受け取ってください。"
            }
            (Self::NoPasswordToChange, En) => {
                "This account has no password to change. To set one, ask for a link by mail."
            }
            (Self::SetPasswordLink, Ja) => "パスワードを設定する",
            (Self::SetPasswordLink, En) => "Set a password",
            // Freeze and support (admin/support.rs)
            (Self::AccountUnavailableContact, Ja) => {
                "このアカウントは現在ご利用いただけません。サポートにお問い合わせください。お問い合わせ先："
            }
            (Self::AccountUnavailableContact, En) => {
                "This account cannot be used at the moment. Please contact support:"
            }
            (Self::ResetRequiredSignIn, Ja) => {
                "このアカウントのメールアドレスは、持ち主の操作で元のアドレスに戻されました。安全のため、パスワードを再設定するまでログインできません。"
            }
            (Self::ResetRequiredSignIn, En) => {
                "The email address of this account was changed back by its owner. To keep the account safe, you cannot sign in until the password is reset."
            }
            (Self::ResultResetRequired, Ja) => "パスワードの再設定が必要",
            (Self::ResultResetRequired, En) => "password reset required",
            // Deletion (account/delete.rs)
            (Self::DeleteHeldByUndo, Ja) => {
                "メールアドレスを変更してから7日間は、変更前のアドレスに届いたリンクで変更を取り消せるよう、退会できません。{until} 以降に、もう一度お試しください。"
            }
            (Self::DeleteHeldByUndo, En) => {
                "For 7 days after an email change, the link sent to the previous address can undo it, so the account cannot be deleted yet. Please try again after {until}."
            }
            (Self::DeleteTitle, Ja) => "退会",
            (Self::DeleteTitle, En) => "Delete your account",
            (Self::DeleteLead, Ja) => {
                "退会すると、このアカウントは使えなくなります。手続きの前に、次の内容をご確認ください。"
            }
            (Self::DeleteLead, En) => {
                "Deleting your account ends it for good. Please read what happens before you go on."
            }
            (Self::DeleteAtOnce, Ja) => "退会するとすぐに",
            (Self::DeleteAtOnce, En) => "At once",
            (Self::DeleteSignInRefused, Ja) => "このアカウントではログインできなくなります。",
            (Self::DeleteSignInRefused, En) => "This account can no longer sign in.",
            (Self::DeleteDevicesSignedOut, Ja) => "すべての端末からログアウトします。",
            (Self::DeleteDevicesSignedOut, En) => "Every device signed in to it is signed out.",
            (Self::DeleteAppsTold, Ja) => {
                "連携しているアプリやサービスからもログアウトし、退会したことが伝えられます。"
            }
            (Self::DeleteAppsTold, En) => {
                "The apps and services you use it with sign you out and are told the account is gone."
            }
            (Self::DeleteAfterwards, Ja) => "その後",
            (Self::DeleteAfterwards, En) => "Afterwards",
            (Self::DeleteKept, Ja) => {
                "氏名、メールアドレス、パスワード、ログイン履歴などの個人情報は、退会から{days}日間保管したのち消去します。"
            }
            (Self::DeleteKept, En) => {
                "Your personal data (name, email address, password, sign-in history) is kept for {days} days after the deletion, then erased."
            }
            (Self::DeleteAgainAfter, Ja) => {
                "同じメールアドレスで新しく登録できるのは、退会から{days}日後です。"
            }
            (Self::DeleteAgainAfter, En) => {
                "The same email address can be used to sign up again {days} days after the deletion."
            }
            (Self::DeleteAgainAtOnce, Ja) => "同じメールアドレスで、すぐに新しく登録できます。",
            (Self::DeleteAgainAtOnce, En) => {
                "The same email address can be used to sign up again at once."
            }
            (Self::DeleteNoRestore, Ja) => {
                "退会したアカウントは元に戻せません。新しく登録しても別のアカウントになり、会員番号や連携、履歴は引き継がれません。"
            }
            (Self::DeleteNoRestore, En) => {
                "A deleted account cannot be restored. Signing up again makes a new account: its member number, connected apps and history do not carry over."
            }
            (Self::DeleteConfirmLabel, Ja) => {
                "確認のため、このアカウントのメールアドレスを入力してください"
            }
            (Self::DeleteConfirmLabel, En) => "To confirm, type this account's email address",
            (Self::DeleteButton, Ja) => "退会する",
            (Self::DeleteButton, En) => "Delete my account",
            (Self::DeleteConfirmMismatch, Ja) => {
                "入力されたメールアドレスが、このアカウントのものと一致しません。退会していません。"
            }
            (Self::DeleteConfirmMismatch, En) => {
                "The address you typed is not this account's. Your account was not deleted."
            }
            (Self::DeleteDone, Ja) => {
                "退会手続きが完了し、すべての端末からログアウトしました。確認のメールをお送りしました。ご利用ありがとうございました。"
            }
            (Self::DeleteDone, En) => {
                "Your account was deleted and every device signed out. We sent you a confirmation mail. Thank you for using Tobira."
            }
            (Self::DeleteAlreadyDone, Ja) => {
                "このアカウントは、すでに退会手続きが済んでいます。何も変更していません。"
            }
            (Self::DeleteAlreadyDone, En) => {
                "This account has already been deleted. Nothing was changed."
            }
            // Two-step results in the history (store/history.rs)
            (Self::ResultWrongCode, Ja) => "確認コードの誤り",
            (Self::ResultWrongCode, En) => "wrong verification code",
            (Self::ResultEnrolled, Ja) => "設定",
            (Self::ResultEnrolled, En) => "turned on",
            (Self::ResultRemoved, Ja) => "解除",
            (Self::ResultRemoved, En) => "turned off",
            // passkeys in the console (account/passkeys.rs)
            (Self::MethodPasskey, Ja) => "パスキー",
            (Self::MethodPasskey, En) => "Passkey",
            (Self::PasskeysTitle, Ja) => "パスキー",
            (Self::PasskeysTitle, En) => "Passkeys",
            (Self::PasskeysLead, Ja) => {
                "パスキーを登録すると、パスワードの代わりに端末の生体認証や画面ロックでログインできます。パスワードの後の二段階認証にも使えます。"
            }
            (Self::PasskeysLead, En) => {
                "With a passkey you sign in with your device's fingerprint, face or screen lock instead of a password. A passkey also serves as the second step after your password."
            }
            (Self::PasskeysUnavailable, Ja) => {
                "このサーバーではパスキーを利用できません（サーバーのアドレスがIPアドレスのため）。"
            }
            (Self::PasskeysUnavailable, En) => {
                "Passkeys are not available on this server (its address is an IP address)."
            }
            (Self::PasskeysNone, Ja) => "登録されているパスキーはありません。",
            (Self::PasskeysNone, En) => "You have no passkeys yet.",
            (Self::PasskeysCreated, Ja) => "登録日時",
            (Self::PasskeysCreated, En) => "Registered",
            (Self::PasskeysLastUsed, Ja) => "最終利用日時",
            (Self::PasskeysLastUsed, En) => "Last used",
            (Self::PasskeysNeverUsed, Ja) => "まだ使われていません",
            (Self::PasskeysNeverUsed, En) => "not used yet",
            (Self::PasskeysNameLabel, Ja) => "パスキーの名前",
            (Self::PasskeysNameLabel, En) => "Name of the passkey",
            (Self::PasskeysNameHint, Ja) => "例: 仕事用のノートPC（空欄なら自動で名前を付けます）",
            (Self::PasskeysNameHint, En) => {
                "For example: work laptop (left empty, one is chosen for you)"
            }
            (Self::PasskeysRename, Ja) => "名前を変更",
            (Self::PasskeysRename, En) => "Rename",
            (Self::PasskeysRemove, Ja) => "削除",
            (Self::PasskeysRemove, En) => "Remove",
            (Self::PasskeysAddHeading, Ja) => "パスキーを登録する",
            (Self::PasskeysAddHeading, En) => "Register a passkey",
            (Self::PasskeysAddButton, Ja) => "パスキーを登録",
            (Self::PasskeysAddButton, En) => "Register a passkey",
            (Self::PasskeysCreateLead, Ja) => {
                "ボタンを押し、ブラウザや端末の案内に従ってパスキーを作成してください。"
            }
            (Self::PasskeysCreateLead, En) => {
                "Press the button and follow your browser's or device's prompts to create the passkey."
            }
            (Self::PasskeysCreateButton, Ja) => "この端末でパスキーを作成",
            (Self::PasskeysCreateButton, En) => "Create the passkey on this device",
            (Self::PasskeysNeedsScript, Ja) => {
                "パスキーの登録には JavaScript が必要です。有効にしてからもう一度お試しください。"
            }
            (Self::PasskeysNeedsScript, En) => {
                "Registering a passkey needs JavaScript. Turn it on and try again."
            }
            (Self::PasskeysBrowserFailed, Ja) => {
                "パスキーを作成できませんでした。取り消されたか、この端末ではパスキーを使えない可能性があります。"
            }
            (Self::PasskeysBrowserFailed, En) => {
                "The passkey could not be created: it was cancelled, or this device cannot make passkeys."
            }
            (Self::PasskeysCancel, Ja) => "パスキーの一覧に戻る",
            (Self::PasskeysCancel, En) => "Back to your passkeys",
            (Self::PasskeysDefaultName, Ja) => "パスキー {n}",
            (Self::PasskeysDefaultName, En) => "Passkey {n}",
            (Self::PasskeysNameInvalid, Ja) => {
                "名前は64文字以内で入力してください（改行などの制御文字は使えません）。"
            }
            (Self::PasskeysNameInvalid, En) => {
                "A name is at most 64 characters, without line breaks or other control characters."
            }
            (Self::PasskeysExpired, Ja) => {
                "登録の有効期限が切れたか、すでに完了しています。もう一度「パスキーを登録」からやり直してください。"
            }
            (Self::PasskeysExpired, En) => {
                "This registration has expired or was finished already. Start again with \"Register a passkey\"."
            }
            (Self::PasskeysMalformed, Ja) => {
                "ブラウザからのパスキーの応答を読み取れませんでした。パスキーは登録されていません。"
            }
            (Self::PasskeysMalformed, En) => {
                "The browser's passkey answer could not be read. No passkey was registered."
            }
            (Self::PasskeysRefused, Ja) => {
                "パスキーを確認できなかったため、登録していません。このサイトのページから、もう一度お試しください。"
            }
            (Self::PasskeysRefused, En) => {
                "The passkey could not be verified, so it was not registered. Try again from this site's page."
            }
            (Self::PasskeysTaken, Ja) => "このパスキーはすでに登録されています。",
            (Self::PasskeysTaken, En) => "This passkey is registered already.",
            (Self::PasskeysTooMany, Ja) => {
                "登録できるパスキーは25個までです。使っていないパスキーを削除してから、もう一度お試しください。"
            }
            (Self::PasskeysTooMany, En) => {
                "An account can have at most 25 passkeys. Remove one you no longer use, then try again."
            }
            (Self::PasskeysNotFound, Ja) => {
                "そのパスキーは見つかりませんでした。何も変更していません。"
            }
            (Self::PasskeysNotFound, En) => "No such passkey. Nothing was changed.",
            (Self::PasskeysLastWayIn, Ja) => {
                "パスワードのないアカウントの最後のパスキーは削除できません。先に別のパスキーを登録してください。"
            }
            (Self::PasskeysLastWayIn, En) => {
                "The last passkey of an account without a password cannot be removed. Register another passkey first."
            }
            (Self::PasskeysDoneAdded, Ja) => "パスキーを登録しました。",
            (Self::PasskeysDoneAdded, En) => "Your passkey was registered.",
            (Self::PasskeysDoneRenamed, Ja) => "パスキーの名前を変更しました。",
            (Self::PasskeysDoneRenamed, En) => "The passkey was renamed.",
            (Self::PasskeysDoneRemoved, Ja) => "パスキーを削除しました。",
            (Self::PasskeysDoneRemoved, En) => "The passkey was removed.",
            // passkey sign-in (oidc/passkey.rs)
            (Self::PasskeySignInButton, Ja) => "パスキーでログイン",
            (Self::PasskeySignInButton, En) => "Sign in with a passkey",
            (Self::PasskeyOr, Ja) => "またはメールアドレスとパスワードでログイン",
            (Self::PasskeyOr, En) => "or sign in with your email address and password",
            (Self::PasskeyBrowserError, Ja) => {
                "パスキーを使えませんでした。もう一度お試しいただくか、パスワードでログインしてください。"
            }
            (Self::PasskeyBrowserError, En) => {
                "The passkey could not be used. Try again, or sign in with your password."
            }
            (Self::PasskeyExpired, Ja) => {
                "パスキーの確認の有効期限が切れたか、すでに使われています。もう一度お試しください。"
            }
            (Self::PasskeyExpired, En) => {
                "The passkey check expired or was already used. Please try again."
            }
            (Self::PasskeyRefused, Ja) => {
                "このパスキーではログインできませんでした。別の方法でログインしてください。"
            }
            (Self::PasskeyRefused, En) => {
                "This passkey could not sign you in. Please sign in another way."
            }
            (Self::PasskeyMalformed, Ja) => {
                "ブラウザからの応答を読み取れませんでした。もう一度お試しください。"
            }
            (Self::PasskeyMalformed, En) => {
                "Your browser's answer could not be read. Please try again."
            }
            (Self::PasskeySecondStepHeading, Ja) => "パスキー",
            (Self::PasskeySecondStepHeading, En) => "Passkey",
            (Self::PasskeySecondStepButton, Ja) => "パスキーで確認",
            (Self::PasskeySecondStepButton, En) => "Verify with a passkey",
            (Self::ResultPasskeyRefused, Ja) => "パスキーの拒否",
            (Self::ResultPasskeyRefused, En) => "passkey refused",
            // federated sign-in (oidc/federation.rs, login page)
            (Self::FedUnavailable, Ja) => {
                "{label}に接続できませんでした。しばらくしてからお試しいただくか、別の方法でログインしてください。"
            }
            (Self::FedUnavailable, En) => {
                "We could not reach {label}. Please try again later, or sign in another way."
            }
            (Self::FedCancelled, Ja) => "{label}でのログインをキャンセルしました。",
            (Self::FedCancelled, En) => "Signing in with {label} was cancelled.",
            (Self::FedRefused, Ja) => {
                "{label}から受け取った情報を確認できませんでした。もう一度お試しいただくか、別の方法でログインしてください。"
            }
            (Self::FedRefused, En) => {
                "We could not verify what {label} sent us. Please try again, or sign in another way."
            }
            (Self::FedMisconfigured, Ja) => {
                "{label}でのログインは現在ご利用いただけません。別の方法でログインしてください。"
            }
            (Self::FedMisconfigured, En) => {
                "Signing in with {label} is not available at the moment. Please sign in another way."
            }
            (Self::FedExpired, Ja) => {
                "ログインの有効期限が切れたか、すでに使われています。もう一度ログインしてください。"
            }
            (Self::FedExpired, En) => {
                "This sign-in has expired or has already been used. Please sign in again."
            }
            (Self::FedExpiredTitle, Ja) => "ログインを続けられません",
            (Self::FedExpiredTitle, En) => "This sign-in cannot continue",
            (Self::FedSignInAgain, Ja) => "ログイン画面に戻る",
            (Self::FedSignInAgain, En) => "Back to the sign-in page",
            (Self::FedAccountLink, Ja) => "アカウント管理に戻る",
            (Self::FedAccountLink, En) => "Back to your account",
            (Self::FedNoEmail, Ja) => {
                "{label}からメールアドレスを受け取れなかったため、ログインできませんでした。別の方法でログインしてください。"
            }
            (Self::FedNoEmail, En) => {
                "{label} did not share an email address with us, so you could not be signed in. Please sign in another way."
            }
            (Self::FedAddressInUse, Ja) => {
                "このメールアドレスで登録済みのアカウントがあります。{label}を連携するには、まずこのアカウントにいつもの方法でログインしてください。"
            }
            (Self::FedAddressInUse, En) => {
                "An account with this email address already exists. To link {label} to it, first sign in to that account the way you usually do."
            }
            (Self::FedCooldown, Ja) => {
                "このメールアドレスのアカウントは最近削除されたため、まだ新しいアカウントを作成できません。別の方法でログインしてください。"
            }
            (Self::FedCooldown, En) => {
                "An account with this email address was deleted recently, so a new one cannot be created yet. Please sign in another way."
            }
            (Self::FedOtherWays, Ja) => "または",
            (Self::FedOtherWays, En) => "or",
            (Self::FedLinkGone, Ja) => {
                "{label}に連携されたアカウントが見つかりませんでした。別の方法でログインしてください。"
            }
            (Self::FedLinkGone, En) => {
                "The account linked to {label} could not be found. Please sign in another way."
            }
            // END-F3-TEXT
            // linked accounts in the console (account/linked.rs)
            (Self::LinkedTitle, Ja) => "連携サービス",
            (Self::LinkedTitle, En) => "Linked accounts",
            (Self::LinkedLead, Ja) => {
                "連携したサービス（Google など）のアカウントで、パスワードなしで Tobira にログインできます。"
            }
            (Self::LinkedLead, En) => {
                "Sign in to Tobira without a password through an account you have at a linked service (Google and others)."
            }
            (Self::LinkedNone, Ja) => "連携しているサービスはありません。",
            (Self::LinkedNone, En) => "No service is linked yet.",
            (Self::LinkedEmail, Ja) => "サービスのメールアドレス",
            (Self::LinkedEmail, En) => "Address at the service",
            (Self::LinkedNoEmail, Ja) => "（受け取っていません）",
            (Self::LinkedNoEmail, En) => "(not shared)",
            (Self::LinkedCreated, Ja) => "連携日時",
            (Self::LinkedCreated, En) => "Linked",
            (Self::LinkedLastUsed, Ja) => "最終利用日時",
            (Self::LinkedLastUsed, En) => "Last used",
            (Self::LinkedNeverUsed, Ja) => "まだ使われていません",
            (Self::LinkedNeverUsed, En) => "not used yet",
            (Self::LinkedRemove, Ja) => "連携を解除",
            (Self::LinkedRemove, En) => "Unlink",
            (Self::LinkedAddHeading, Ja) => "サービスを連携する",
            (Self::LinkedAddHeading, En) => "Link a service",
            (Self::LinkedAddLead, Ja) => {
                "サービスのページでログインすると、このアカウントに連携されます。同じサービスの別のアカウントも連携できます。"
            }
            (Self::LinkedAddLead, En) => {
                "Sign in on the service's page to link it to this account. You can link a second account at the same service too."
            }
            (Self::LinkedAddButton, Ja) => "{name}を連携する",
            (Self::LinkedAddButton, En) => "Link {name}",
            (Self::LinkedNoProviders, Ja) => "このサーバーで連携できるサービスはありません。",
            (Self::LinkedNoProviders, En) => "No service can be linked on this server.",
            (Self::LinkedDoneLinked, Ja) => "{name}を連携しました。",
            (Self::LinkedDoneLinked, En) => "{name} is now linked.",
            (Self::LinkedDoneUnlinked, Ja) => "{name}の連携を解除しました。",
            (Self::LinkedDoneUnlinked, En) => "{name} is no longer linked.",
            (Self::LinkedAlready, Ja) => "すでに連携されています。",
            (Self::LinkedAlready, En) => "That account is linked already.",
            (Self::LinkedOtherAccount, Ja) => {
                "この{name}アカウントは別の Tobira アカウントに連携されています。連携は変更していません。"
            }
            (Self::LinkedOtherAccount, En) => {
                "That {name} account is linked to another Tobira account. Nothing was changed."
            }
            (Self::LinkedLastWayIn, Ja) => {
                "最後のログイン方法は解除できません。先にパスワードかパスキーを設定してください。"
            }
            (Self::LinkedLastWayIn, En) => {
                "The last way to sign in cannot be removed. Set a password or register a passkey first."
            }
            (Self::LinkedNotFound, Ja) => {
                "この連携は見つかりませんでした。すでに解除されている可能性があります。"
            }
            (Self::LinkedNotFound, En) => {
                "That link was not found. It may have been removed already."
            }
            (Self::LinkedUnknownProvider, Ja) => "このサービスは連携できません。",
            (Self::LinkedUnknownProvider, En) => "That service cannot be linked.",
            (Self::LinkedCancelled, Ja) => {
                "サービスのページでキャンセルされたため、連携しませんでした。"
            }
            (Self::LinkedCancelled, En) => {
                "Linking was cancelled on the service's page: nothing was linked."
            }
            (Self::LinkedUnavailable, Ja) => {
                "サービスに接続できなかったため、連携できませんでした。しばらくしてからもう一度お試しください。"
            }
            (Self::LinkedUnavailable, En) => {
                "The service could not be reached, so nothing was linked. Please try again later."
            }
            (Self::LinkedRefused, Ja) => {
                "サービスから受け取った情報を確認できなかったため、連携しませんでした。もう一度お試しください。"
            }
            (Self::LinkedRefused, En) => {
                "What the service sent could not be verified, so nothing was linked. Please try again."
            }
            (Self::LinkedMisconfigured, Ja) => "このサービスとの連携は現在ご利用いただけません。",
            (Self::LinkedMisconfigured, En) => {
                "Linking this service is not available at the moment."
            }
            (Self::LinkedSessionChanged, Ja) => {
                "連携を始めたときのログインが終了したか、別のアカウントに切り替わっているため、連携しませんでした。アカウント画面からもう一度お試しください。"
            }
            (Self::LinkedSessionChanged, En) => {
                "The sign-in that started linking has ended or another account is signed in now, so nothing was linked. Please start again from your account page."
            }
            (Self::MethodFedLinked, Ja) => "{name} を連携",
            (Self::MethodFedLinked, En) => "{name} linked",
            (Self::MethodFedUnlinked, Ja) => "{name} の連携を解除",
            (Self::MethodFedUnlinked, En) => "{name} unlinked",
            // END-F4-TEXT
            // store-side federation messages (ways in removed)
            // END-F2-TEXT
            // The second-step page (oidc/second_step.rs)
            (Self::SecondStepTitle, Ja) => "二段階認証",
            (Self::SecondStepTitle, En) => "Two-step verification",
            (Self::SecondStepLead, Ja) => {
                "パスワードを確認しました。ログインを完了するには、次のいずれかの方法で本人確認をしてください。"
            }
            (Self::SecondStepLead, En) => {
                "Your password is right. To finish signing in, confirm it is you in one of these ways."
            }
            (Self::TotpHeading, Ja) => "認証アプリ",
            (Self::TotpHeading, En) => "Authenticator app",
            (Self::TotpLabel, Ja) => "認証アプリに表示されている6桁のコード",
            (Self::TotpLabel, En) => "The 6-digit code shown in your authenticator app",
            (Self::VerifyCodeButton, Ja) => "確認する",
            (Self::VerifyCodeButton, En) => "Verify",
            (Self::EmailCodeHeading, Ja) => "メールで届く確認コード",
            (Self::EmailCodeHeading, En) => "Code by email",
            (Self::EmailCodeWillSend, Ja) => "{to} 宛てに確認コードをお送りします。",
            (Self::EmailCodeWillSend, En) => "We send a code to {to}.",
            (Self::EmailCodeSentTo, Ja) => {
                "{to} 宛てに確認コードを送信しました（{minutes}分間有効）。"
            }
            (Self::EmailCodeSentTo, En) => "We sent a code to {to} (valid for {minutes} minutes).",
            (Self::EmailCodeLabel, Ja) => "メールに記載された6桁のコード",
            (Self::EmailCodeLabel, En) => "The 6-digit code from the mail",
            (Self::EmailSendButton, Ja) => "確認コードを送信",
            (Self::EmailSendButton, En) => "Send a code",
            (Self::EmailResendButton, Ja) => "確認コードを再送信",
            (Self::EmailResendButton, En) => "Send a new code",
            (Self::EmailCodeResent, Ja) => {
                "新しい確認コードを送信しました。前にお送りしたコードは使えなくなりました。"
            }
            (Self::EmailCodeResent, En) => {
                "We sent a new code. The code sent before no longer works."
            }
            (Self::RecoveryHeading, Ja) => "リカバリーコード",
            (Self::RecoveryHeading, En) => "Recovery code",
            (Self::RecoveryLead, Ja) => {
                "スマートフォンをなくした場合など、ほかの方法を使えないときは、二段階認証を設定したときに保存したリカバリーコードを入力してください。各コードは1回だけ使えます。"
            }
            (Self::RecoveryLead, En) => {
                "If you cannot use the other ways (a lost phone, for example), enter one of the recovery codes you saved when you turned on two-step verification. Each code works once."
            }
            (Self::RecoveryLabel, Ja) => "リカバリーコード",
            (Self::RecoveryLabel, En) => "Recovery code",
            (Self::RememberDevice, Ja) => "この端末では{days}日間確認しない",
            (Self::RememberDevice, En) => "Don't ask again on this device for {days} days",
            (Self::OtherAccount, Ja) => "別のアカウントでログイン",
            (Self::OtherAccount, En) => "Sign in with another account",
            (Self::CodeWrong, Ja) => "確認コードが正しくありません（あと {left} 回）。",
            (Self::CodeWrong, En) => "The code is not correct ({left} tries left).",
            (Self::CodeExpired, Ja) => "コードの有効期限が切れました。もう一度送信してください。",
            (Self::CodeExpired, En) => "The code has expired. Send a new one.",
            (Self::CodeEmpty, Ja) => "確認コードを入力してください。",
            (Self::CodeEmpty, En) => "Enter the code.",
            (Self::CodeNotDigits, Ja) => "確認コードは6桁の数字です。",
            (Self::CodeNotDigits, En) => "The code is 6 digits.",
            (Self::CodeTooLong, Ja) => "入力されたコードが長すぎます。",
            (Self::CodeTooLong, En) => "The code you entered is too long.",
            (Self::MethodUnknown, Ja) => {
                "確認の方法が正しくありません。ページを再読み込みして、もう一度お試しください。"
            }
            (Self::MethodUnknown, En) => {
                "This way of verifying is not known. Reload the page and try again."
            }
            (Self::MethodNotEnrolled, Ja) => {
                "この確認方法は、このアカウントでは設定されていません。"
            }
            (Self::MethodNotEnrolled, En) => {
                "This way of verifying is not set up for this account."
            }
            (Self::SecondStepLocked, Ja) => {
                "確認コードの誤りが多すぎるため、このアカウントの二段階認証を一時的に停止しています。"
            }
            (Self::SecondStepLocked, En) => {
                "Too many wrong codes: two-step verification of this account is paused for a while."
            }
            (Self::EmailSendLimit, Ja) => {
                "確認コードの送信回数が上限に達しました。届いたコードを入力するか、最初からログインし直してください。"
            }
            (Self::EmailSendLimit, En) => {
                "No more codes can be sent for this sign-in. Enter the code you received, or sign in again from the start."
            }
            (Self::SecondStepVoid, Ja) => {
                "確認コードの誤りが多すぎたため、このログインは無効になりました。もう一度パスワードを入力してください。"
            }
            (Self::SecondStepVoid, En) => {
                "Too many wrong codes: this sign-in was cancelled. Enter your password again."
            }
            // Two-step verification in the console (account/two_step.rs)
            (Self::TwoStepTitle, Ja) => "二段階認証",
            (Self::TwoStepTitle, En) => "Two-step verification",
            (Self::TwoStepLead, Ja) => {
                "パスワードに加えてもう一つの確認をお願いすることで、パスワードが他人に知られても、アカウントにログインされにくくなります。"
            }
            (Self::TwoStepLead, En) => {
                "A second check after your password keeps your account safe even if someone learns the password."
            }
            (Self::TwoStepIsOn, Ja) => "二段階認証: オン",
            (Self::TwoStepIsOn, En) => "Two-step verification: on",
            (Self::TwoStepIsOff, Ja) => "二段階認証: オフ",
            (Self::TwoStepIsOff, En) => "Two-step verification: off",
            (Self::TwoStepSetUp, Ja) => "設定済み",
            (Self::TwoStepSetUp, En) => "Set up",
            (Self::TwoStepNotSetUp, Ja) => "未設定",
            (Self::TwoStepNotSetUp, En) => "Not set up",
            (Self::TwoStepTotpHeading, Ja) => "認証アプリ",
            (Self::TwoStepTotpHeading, En) => "Authenticator app",
            (Self::TwoStepTotpAbout, Ja) => {
                "Google Authenticator や Microsoft Authenticator などのアプリに表示される、30秒ごとに変わる6桁のコードを使います。いちばん安全な方法です。"
            }
            (Self::TwoStepTotpAbout, En) => {
                "Uses the 6-digit code that an app such as Google Authenticator or Microsoft Authenticator shows, new every 30 seconds. The safest way."
            }
            (Self::TwoStepTotpStart, Ja) => "認証アプリを設定する",
            (Self::TwoStepTotpStart, En) => "Set up an authenticator app",
            (Self::TwoStepTotpReplace, Ja) => "別の認証アプリに変更する",
            (Self::TwoStepTotpReplace, En) => "Move to another authenticator app",
            (Self::TwoStepTotpDisable, Ja) => "認証アプリを解除する",
            (Self::TwoStepTotpDisable, En) => "Remove the authenticator app",
            (Self::TwoStepEmailHeading, Ja) => "メールで届く確認コード",
            (Self::TwoStepEmailHeading, En) => "Codes sent by email",
            (Self::TwoStepEmailAbout, Ja) => {
                "ログインのたびに、登録メールアドレスに6桁のコードをお送りします。メールを読める人はコードも読めるため、認証アプリほど強くはありません。"
            }
            (Self::TwoStepEmailAbout, En) => {
                "Each sign-in sends a 6-digit code to your address. Anyone who can read your mail can read the code too, so it is weaker than an authenticator app."
            }
            (Self::TwoStepEmailEnable, Ja) => "メールの確認コードを使う",
            (Self::TwoStepEmailEnable, En) => "Use codes sent by email",
            (Self::TwoStepEmailDisable, Ja) => "メールの確認コードをやめる",
            (Self::TwoStepEmailDisable, En) => "Stop using codes sent by email",
            (Self::TwoStepRecoveryHeading, Ja) => "リカバリーコード",
            (Self::TwoStepRecoveryHeading, En) => "Recovery codes",
            (Self::TwoStepRecoveryAbout, Ja) => {
                "スマートフォンをなくしたときなど、確認コードを受け取れないときに1回ずつ使えるコードです。"
            }
            (Self::TwoStepRecoveryAbout, En) => {
                "Single-use codes for when you cannot get a verification code, such as when you lose your phone."
            }
            (Self::TwoStepRecoveryLeft, Ja) => "未使用のリカバリーコード",
            (Self::TwoStepRecoveryLeft, En) => "Unused recovery codes",
            (Self::TwoStepRecoveryLow, Ja) => {
                "リカバリーコードが残りわずかです。再発行して、新しいコードを保管してください。"
            }
            (Self::TwoStepRecoveryLow, En) => {
                "You are running out of recovery codes. Make new ones and keep them somewhere safe."
            }
            (Self::TwoStepRecoveryRegenerate, Ja) => "リカバリーコードを再発行する",
            (Self::TwoStepRecoveryRegenerate, En) => "Make new recovery codes",
            (Self::TwoStepRecoveryRegenerateNote, Ja) => {
                "再発行すると、これまでのコードはすべて使えなくなります。"
            }
            (Self::TwoStepRecoveryRegenerateNote, En) => "The codes you have now stop working.",
            (Self::TwoStepOffHeading, Ja) => "二段階認証をオフにする",
            (Self::TwoStepOffHeading, En) => "Turn off two-step verification",
            (Self::TwoStepOffAbout, Ja) => {
                "すべての確認方法とリカバリーコードを削除します。ログインに必要なのはパスワードだけになります。"
            }
            (Self::TwoStepOffAbout, En) => {
                "Removes every verification method and recovery code. Signing in will need your password only."
            }
            (Self::TwoStepOffButton, Ja) => "二段階認証をオフにする",
            (Self::TwoStepOffButton, En) => "Turn off two-step verification",
            (Self::TwoStepDoneTotpOn, Ja) => "認証アプリを登録しました。",
            (Self::TwoStepDoneTotpOn, En) => "Your authenticator app is set up.",
            (Self::TwoStepDoneTotpReplaced, Ja) => {
                "認証アプリを変更しました。以前のアプリのコードは使えません。"
            }
            (Self::TwoStepDoneTotpReplaced, En) => {
                "Your authenticator app was replaced. Codes from the previous app no longer work."
            }
            (Self::TwoStepDoneTotpOff, Ja) => "認証アプリの登録を解除しました。",
            (Self::TwoStepDoneTotpOff, En) => "The authenticator app was removed.",
            (Self::TwoStepDoneEmailOn, Ja) => "ログインの際に、メールで確認コードをお送りします。",
            (Self::TwoStepDoneEmailOn, En) => "Signing in will send you a code by email.",
            (Self::TwoStepDoneEmailOff, Ja) => "メールの確認コードの設定を解除しました。",
            (Self::TwoStepDoneEmailOff, En) => "Codes sent by email are no longer used.",
            (Self::TwoStepDoneOff, Ja) => "二段階認証をオフにしました。",
            (Self::TwoStepDoneOff, En) => "Two-step verification is off.",
            (Self::TwoStepEnrolTitle, Ja) => "認証アプリの設定",
            (Self::TwoStepEnrolTitle, En) => "Set up an authenticator app",
            (Self::TwoStepEnrolScan, Ja) => "認証アプリで、次のQRコードを読み取ってください。",
            (Self::TwoStepEnrolScan, En) => "Scan this QR code with your authenticator app.",
            (Self::TwoStepEnrolQrLabel, Ja) => "認証アプリに登録するQRコード",
            (Self::TwoStepEnrolQrLabel, En) => "QR code for your authenticator app",
            (Self::TwoStepEnrolKey, Ja) => {
                "読み取れない場合は、アプリにこのキーを入力してください（時間ベース）"
            }
            (Self::TwoStepEnrolKey, En) => {
                "If you cannot scan it, type this key into the app (time-based)"
            }
            (Self::TwoStepEnrolCode, Ja) => {
                "アプリに表示された6桁のコードを入力して、登録を完了してください。"
            }
            (Self::TwoStepEnrolCode, En) => "Enter the 6-digit code the app shows to finish.",
            (Self::TwoStepEnrolReplacing, Ja) => {
                "登録を完了すると、これまでの認証アプリのコードは使えなくなります。"
            }
            (Self::TwoStepEnrolReplacing, En) => {
                "Once you finish, codes from your current authenticator app stop working."
            }
            (Self::TwoStepEnrolExpires, Ja) => "10分以内に登録を完了してください。",
            (Self::TwoStepEnrolExpires, En) => "Finish within 10 minutes.",
            (Self::TwoStepCodeLabel, Ja) => "確認コード（6桁）",
            (Self::TwoStepCodeLabel, En) => "Verification code (6 digits)",
            (Self::TwoStepConfirm, Ja) => "確認して登録する",
            (Self::TwoStepConfirm, En) => "Verify and turn on",
            (Self::TwoStepCancel, Ja) => "やめる",
            (Self::TwoStepCancel, En) => "Cancel",
            (Self::TwoStepCodeMalformed, Ja) => "アプリに表示された6桁の数字を入力してください。",
            (Self::TwoStepCodeMalformed, En) => "Enter the 6 digits the app shows.",
            (Self::TwoStepCodeWrong, Ja) => {
                "コードが正しくありません。スマートフォンの時刻が正しいことを確認し、アプリに表示されている新しいコードを入力してください。"
            }
            (Self::TwoStepCodeWrong, En) => {
                "That code is not right. Check that your phone's clock is right, and enter the code the app shows now."
            }
            (Self::TwoStepLocked, Ja) => "確認コードの誤りが続いたため、しばらく受け付けません。",
            (Self::TwoStepLocked, En) => {
                "Too many wrong codes: codes are not accepted for a while."
            }
            (Self::TwoStepEnrolExpired, Ja) => {
                "設定の有効期限が切れたか、別の画面で設定が始められました。はじめからやり直してください。"
            }
            (Self::TwoStepEnrolExpired, En) => {
                "This setup expired or was started again elsewhere. Please start over."
            }
            (Self::TwoStepCodesTitle, Ja) => "リカバリーコード",
            (Self::TwoStepCodesTitle, En) => "Recovery codes",
            (Self::TwoStepCodesOn, Ja) => {
                "二段階認証を有効にしました。次回のログインから、パスワードの後に確認コードをお尋ねします。"
            }
            (Self::TwoStepCodesOn, En) => {
                "Two-step verification is on. From your next sign-in, you will be asked for a code after your password."
            }
            (Self::TwoStepCodesRenewed, Ja) => {
                "リカバリーコードを再発行しました。以前のコードは使えません。"
            }
            (Self::TwoStepCodesRenewed, En) => {
                "New recovery codes were made. The previous codes no longer work."
            }
            (Self::TwoStepCodesLead, Ja) => {
                "スマートフォンをなくしたときなど、確認コードを受け取れないときに、代わりに使えます。各コードは1回だけ使えます。"
            }
            (Self::TwoStepCodesLead, En) => {
                "Use one instead of a verification code when you cannot get one, such as when you lose your phone. Each code works once."
            }
            (Self::TwoStepCodesOnce, Ja) => {
                "このコードは今だけ表示されます。印刷するかダウンロードして、安全な場所に保管してください。"
            }
            (Self::TwoStepCodesOnce, En) => {
                "These codes are shown only now. Print or download them and keep them somewhere safe."
            }
            (Self::TwoStepCodesDownload, Ja) => "テキストファイルでダウンロード",
            (Self::TwoStepCodesDownload, En) => "Download as a text file",
            (Self::TwoStepCodesKept, Ja) => "保管しました",
            (Self::TwoStepCodesKept, En) => "I have kept them",
            (Self::TwoStepCodesFileHeading, Ja) => {
                "Tobira リカバリーコード（各コードは1回だけ使えます）"
            }
            (Self::TwoStepCodesFileHeading, En) => "Tobira recovery codes (each code works once)",
            (Self::TwoStepDownloadGone, Ja) => {
                "ダウンロードの有効期限が切れました。コードを保管していない場合は、リカバリーコードを再発行してください。"
            }
            (Self::TwoStepDownloadGone, En) => {
                "This download has expired. If you did not keep the codes, make new recovery codes."
            }
            (Self::MethodTotp, Ja) => "認証アプリ",
            (Self::MethodTotp, En) => "Authenticator app",
            (Self::MethodEmailCode, Ja) => "メールの確認コード",
            (Self::MethodEmailCode, En) => "Code by email",
            (Self::MethodRecoveryCode, Ja) => "リカバリーコード",
            (Self::MethodRecoveryCode, En) => "Recovery code",
            (Self::MethodTwoStep, Ja) => "二段階認証",
            (Self::MethodTwoStep, En) => "Two-step verification",
        }
    }
}

impl From<crate::domain::EmailError> for Msg {
    fn from(e: crate::domain::EmailError) -> Self {
        use crate::domain::EmailError;
        match e {
            EmailError::Empty => Self::EmailEmpty,
            EmailError::TooLong => Self::EmailTooLong,
            EmailError::Invalid => Self::EmailInvalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_are_negotiated_from_every_kind_of_preference_list() {
        assert_eq!(Lang::negotiate("en-US,en;q=0.9,ja;q=0.8"), Some(Lang::En));
        assert_eq!(Lang::negotiate("fr-FR, ja;q=0.5"), Some(Lang::Ja));
        assert_eq!(Lang::negotiate("de en"), Some(Lang::En));
        assert_eq!(Lang::negotiate("ja_JP.UTF-8"), Some(Lang::Ja));
        assert_eq!(Lang::negotiate("C.UTF-8"), None);
        assert_eq!(Lang::negotiate(""), None);
        assert_eq!(Lang::default(), Lang::Ja);
    }

    #[test]
    fn lock_ends_are_shown_rounded_up_in_the_pages_offset_with_the_date_on_another_day() {
        let jst = UtcOffset::from_hms(9, 0, 0).unwrap();
        let now = time::macros::datetime!(2026-12-04 06:30:00 UTC);
        let until = time::macros::datetime!(2026-12-04 06:41:10 UTC);
        assert_eq!(Lang::Ja.clock_time(until, now, jst), "15:42");
        let tomorrow = time::macros::datetime!(2026-12-04 15:10:00 UTC);
        assert_eq!(Lang::Ja.clock_time(tomorrow, now, jst), "12月5日 00:10");
        assert_eq!(Lang::En.clock_time(tomorrow, now, jst), "5 Dec 00:10");
        assert_eq!(
            Lang::Ja.try_again_after("15:42"),
            "しばらくしてからお試しください（15:42 以降）。"
        );
    }
}
