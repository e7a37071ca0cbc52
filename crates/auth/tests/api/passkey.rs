//! A software passkey for the tests, standing in for the browser and its authenticator:
//! it reads a page's `data-options` (what `static/passkey.js` hands to WebAuthn), runs the
//! ceremony with webauthn-authenticator-rs's `SoftPasskey` at the app's origin, and gives
//! back the JSON the script would post in the form's `credential` field.
//!
//! The soft passkey has no resident keys, so two unsigned parts of a ceremony are
//! simulated (the server's challenge, origin and signature checks still run for real):
//! registration clears `requireResidentKey` (it refuses the ceremony otherwise), and a
//! usernameless sign-in names the credential in `allowCredentials` and answers with the
//! member's user handle, as a discoverable credential would.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use url::Url;
use uuid::Uuid;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::{
    CreationChallengeResponse, RequestChallengeResponse, WebauthnCError,
};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

use crate::helpers::{Page, TestApp};

/// A registered credential: what the script posts, and the credential's id.
pub struct Registered {
    /// The `credential` field's value.
    pub json: String,
    /// The credential id.
    pub cred_id: Vec<u8>,
}

impl Registered {
    /// The credential id as Tobira stores it (base64url, unpadded).
    pub fn cred_id_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.cred_id)
    }
}

/// One software authenticator, used from one origin.
pub struct SoftKey {
    key: SoftPasskey,
    origin: Url,
}

impl SoftKey {
    /// A fresh authenticator that reports user verification, used at the app's origin.
    pub fn new(app: &TestApp) -> Self {
        Self::at(&app.issuer())
    }

    /// A fresh authenticator (user verification reported) used at `origin`, e.g. another
    /// site's `http://localhost:1`.
    pub fn at(origin: &str) -> Self {
        Self {
            key: SoftPasskey::new(true),
            origin: Url::parse(origin).expect("origin URL"),
        }
    }

    /// Uses this authenticator from another origin from now on (a phishing site's page).
    pub fn move_to(&mut self, origin: &str) {
        self.origin = Url::parse(origin).expect("origin URL");
    }

    /// Creates a credential for `options` (the JSON of a `data-passkey="register"` form,
    /// HTML already unescaped, as `options_of` returns it).
    pub fn register(&mut self, options: &str) -> Registered {
        self.try_register(options)
            .expect("the soft passkey registers")
    }

    /// Like `register`, with the authenticator's refusal (an excluded credential, an IP
    /// origin, …) as an error.
    pub fn try_register(&mut self, options: &str) -> Result<Registered, WebauthnCError> {
        let mut options: Value = serde_json::from_str(options).expect("creation options JSON");
        // The soft passkey cannot keep resident keys and refuses when one is required; the
        // flag is not signed, so clearing it changes nothing the server checks.
        if let Some(sel) = options["publicKey"]["authenticatorSelection"].as_object_mut() {
            sel.insert("requireResidentKey".into(), Value::Bool(false));
        }
        let ccr: CreationChallengeResponse =
            serde_json::from_value(options).expect("CreationChallengeResponse");
        let reg = self.key.do_registration(self.origin.clone(), ccr)?;
        Ok(Registered {
            json: serde_json::to_string(&reg).expect("JSON"),
            cred_id: reg.raw_id.clone(),
        })
    }

    /// Answers `options` (the JSON of a `data-passkey="assert"` or `"signin"` form) with
    /// the credentials it names in `allowCredentials`; the JSON the script posts.
    pub fn assert(&mut self, options: &str) -> String {
        self.try_assert(options).expect("the soft passkey signs")
    }

    pub fn try_assert(&mut self, options: &str) -> Result<String, WebauthnCError> {
        let options: Value = serde_json::from_str(options).expect("request options JSON");
        self.answer(options, None)
    }

    /// A usernameless sign-in, as a discoverable credential answers it: the credential
    /// `cred_id` signs, and the answer carries the user handle `handle`.
    pub fn sign_in_as(&mut self, options: &str, cred_id: &[u8], handle: Uuid) -> String {
        self.try_sign_in_as(options, cred_id, handle)
            .expect("the soft passkey signs")
    }

    pub fn try_sign_in_as(
        &mut self,
        options: &str,
        cred_id: &[u8],
        handle: Uuid,
    ) -> Result<String, WebauthnCError> {
        let mut options: Value = serde_json::from_str(options).expect("request options JSON");
        // The browser would find the credential itself; the soft passkey needs its id.
        options["publicKey"]["allowCredentials"] = serde_json::json!([
            { "type": "public-key", "id": URL_SAFE_NO_PAD.encode(cred_id) }
        ]);
        self.answer(options, Some(handle))
    }

    fn answer(&mut self, options: Value, handle: Option<Uuid>) -> Result<String, WebauthnCError> {
        let rcr: RequestChallengeResponse =
            serde_json::from_value(options).expect("RequestChallengeResponse");
        let mut resp = self.key.do_authentication(self.origin.clone(), rcr)?;
        if let Some(handle) = handle {
            // Not signed: a resident credential returns the handle it was made with.
            resp.response.user_handle = Some(handle.as_bytes().to_vec());
        }
        Ok(serde_json::to_string(&resp).expect("JSON"))
    }
}

/// The `data-options` JSON of the page's `data-passkey="{kind}"` form, HTML-unescaped;
/// `None` when the page has no such form.
pub fn options_of(page: &Page, kind: &str) -> Option<String> {
    let form = page.body.find(&format!(r#"data-passkey="{kind}""#))?;
    let tag_start = page.body[..form].rfind('<')?;
    let tag_end = form + page.body[form..].find('>')?;
    let tag = &page.body[tag_start..tag_end];
    let at = tag.find("data-options=")? + "data-options=".len();
    let quote = tag[at..].chars().next()?;
    let value = &tag[at + 1..];
    let end = value.find(quote)?;
    Some(unescape_html(&value[..end]))
}

/// Undoes askama's HTML escaping of an attribute value.
pub fn unescape_html(text: &str) -> String {
    text.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Whether the page offers any passkey ceremony (a form for the script, or the script).
pub fn offers_passkeys(page: &Page) -> bool {
    page.body.contains("data-passkey=") || page.body.contains("/static/passkey.js")
}

#[cfg(test)]
mod tests {
    use super::unescape_html;

    #[test]
    fn askama_escaped_options_come_back_as_the_json() {
        let escaped = "{&#34;a&#34;:&#34;&lt;b&gt; &amp;amp; &#39;c&#39;&#34;}";
        assert_eq!(unescape_html(escaped), r#"{"a":"<b> &amp; 'c'"}"#);
    }
}
