//! Who consented: the account an ID token names.
//!
//! A consent that asks for `openid email` gets an ID token beside the access
//! token (OIDC Core §3.1.3.3). It came straight from the token
//! endpoint over TLS with the client's own credentials, so its signature
//! need not be checked: `iss`, `aud` and `exp` are enough (§3.1.3.7, item 6).
//! The account is its `email`, or, where the provider sends none (Microsoft
//! without the `email` claim), a `preferred_username` that is an address.
//!
//! The token is a bearer credential of its own: it is read here and dropped,
//! never stored, shown or logged. Nothing in it is trusted beyond the
//! account's name, and that only after the checks above.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::config::presets::Preset;

/// Largest ID token read; real ones are 1–2 KB.
pub const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;

/// Leeway for the clocks of mailform's host and the provider's.
const CLOCK_SKEW_SECS: i64 = 300;

/// The account an ID token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The account's address, when the token names one.
    pub email: Option<String>,
    /// The provider's stable id of the account.
    pub sub: String,
}

impl Identity {
    /// Whether this is `account` (addresses compare without regard to case).
    pub fn is(&self, account: &str) -> Option<bool> {
        self.email
            .as_deref()
            .map(|e| e.trim().eq_ignore_ascii_case(account.trim()))
    }
}

/// Which issuers a provider's ID tokens may name.
#[derive(Debug, Clone)]
pub struct Issuers {
    preset: Option<Preset>,
    /// The origins of the provider's own endpoints (authorization, token).
    origins: Vec<url::Origin>,
}

impl Issuers {
    pub fn new(preset: Option<Preset>, endpoints: &[&url::Url]) -> Self {
        Issuers {
            preset,
            origins: endpoints.iter().map(|u| u.origin()).collect(),
        }
    }

    /// Whether `iss` (with the token's `tid`) is the provider's.
    fn allows(&self, iss: &str, tid: Option<&str>) -> bool {
        let preset = match self.preset {
            // Google's documented issuers (OpenID discovery and the older form).
            Some(Preset::Google) => {
                iss == "https://accounts.google.com" || iss == "accounts.google.com"
            }
            // Microsoft's v2.0 issuer names the tenant (a GUID, even when the
            // endpoints say `common` or a domain), which the token repeats in `tid`.
            Some(Preset::Microsoft) => iss
                .strip_prefix("https://login.microsoftonline.com/")
                .and_then(|rest| rest.strip_suffix("/v2.0"))
                .is_some_and(|t| !t.is_empty() && Some(t) == tid),
            None => false,
        };
        // Any provider (a custom one, or a preset pointed elsewhere): the
        // issuer is the server its endpoints are on; on a preset's own
        // issuer host, only the preset's rule decides.
        let own_host = |u: &url::Url| match self.preset {
            Some(Preset::Google) => u.host_str() == Some("accounts.google.com"),
            Some(Preset::Microsoft) => u.host_str() == Some("login.microsoftonline.com"),
            None => false,
        };
        preset
            || url::Url::parse(iss).is_ok_and(|u| {
                matches!(u.scheme(), "https" | "http")
                    && !own_host(&u)
                    && self.origins.contains(&u.origin())
            })
    }
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    sub: Option<String>,
    email: Option<String>,
    preferred_username: Option<String>,
    tid: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The account an ID token from `issuers`' token endpoint names, for
/// `client_id`, at `now`; why not, in words that quote nothing of the token
/// but the claim names (and the issuer, which is no secret).
pub fn verify(
    id_token: &str,
    issuers: &Issuers,
    client_id: &str,
    now: DateTime<Utc>,
) -> Result<Identity, String> {
    use base64::Engine as _;
    if id_token.len() > MAX_ID_TOKEN_BYTES {
        return Err(format!(
            "the ID token is over {} KiB",
            MAX_ID_TOKEN_BYTES / 1024
        ));
    }
    let mut parts = id_token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the ID token is not a JWT (three dot-separated parts)".into());
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| "the ID token's claims are not base64url".to_string())?;
    let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| {
        "the ID token's claims are not a JSON object of the expected types".to_string()
    })?;
    let iss = claims.iss.ok_or("the ID token has no `iss`")?;
    if !issuers.allows(&iss, claims.tid.as_deref()) {
        return Err(format!(
            "the ID token was issued by `{}`, not by this provider",
            crate::diagnostic::shown(&iss)
        ));
    }
    let audience_ok = match claims.aud {
        Some(Audience::One(a)) => a == client_id,
        Some(Audience::Many(list)) => list.iter().any(|a| a == client_id),
        None => false,
    };
    if !audience_ok {
        return Err("the ID token was issued to another client (`aud`)".into());
    }
    let exp = claims.exp.ok_or("the ID token has no `exp`")?;
    if exp.saturating_add(CLOCK_SKEW_SECS) < now.timestamp() {
        return Err("the ID token has expired (`exp`): check this machine's clock".into());
    }
    let sub = claims
        .sub
        .filter(|s| !s.is_empty())
        .ok_or("the ID token has no `sub`")?;
    let email = claims
        .email
        .or(claims.preferred_username.filter(|u| u.contains('@')))
        .filter(|e| !e.trim().is_empty());
    Ok(Identity { email, sub })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn jwt(claims: &serde_json::Value) -> String {
        let enc = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.{}",
            enc(br#"{"alg":"ES256"}"#),
            enc(claims.to_string().as_bytes()),
            enc(b"signature")
        )
    }

    fn custom() -> Issuers {
        let token = url::Url::parse("https://127.0.0.1:8443/token").unwrap();
        Issuers::new(None, &[&token])
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn an_id_token_names_its_account() {
        let t = jwt(&serde_json::json!({
            "iss": "https://127.0.0.1:8443", "aud": "mailform", "exp": 1_800_000_100,
            "sub": "u1", "email": "Alice@Example.test"
        }));
        let id = verify(&t, &custom(), "mailform", now()).unwrap();
        assert_eq!(id.sub, "u1");
        assert_eq!(id.is("alice@example.test"), Some(true));
        assert_eq!(id.is("bob@example.test"), Some(false));
    }

    #[test]
    fn issuer_audience_and_expiry_are_checked() {
        let base = serde_json::json!({
            "iss": "https://127.0.0.1:8443", "aud": ["x", "mailform"], "exp": 1_800_000_100, "sub": "u1"
        });
        assert!(verify(&jwt(&base), &custom(), "mailform", now()).is_ok());
        let mut other_iss = base.clone();
        other_iss["iss"] = "https://evil.example".into();
        assert!(
            verify(&jwt(&other_iss), &custom(), "mailform", now())
                .unwrap_err()
                .contains("evil.example")
        );
        assert!(verify(&jwt(&base), &custom(), "another", now()).is_err());
        let mut expired = base.clone();
        expired["exp"] = 1_799_000_000.into();
        assert!(verify(&jwt(&expired), &custom(), "mailform", now()).is_err());
        let mut no_sub = base;
        no_sub.as_object_mut().unwrap().remove("sub");
        assert!(verify(&jwt(&no_sub), &custom(), "mailform", now()).is_err());
    }

    #[test]
    fn presets_name_their_issuers() {
        let google_token = url::Url::parse("https://oauth2.googleapis.com/token").unwrap();
        let google = Issuers::new(Some(Preset::Google), &[&google_token]);
        let claims = |iss: &str| {
            jwt(
                &serde_json::json!({"iss": iss, "aud": "c", "exp": 1_800_000_100, "sub": "1", "tid": "t-1"}),
            )
        };
        assert!(verify(&claims("https://accounts.google.com"), &google, "c", now()).is_ok());
        assert!(verify(&claims("https://accounts.example"), &google, "c", now()).is_err());
        let ms_token =
            url::Url::parse("https://login.microsoftonline.com/common/oauth2/v2.0/token").unwrap();
        let ms = Issuers::new(Some(Preset::Microsoft), &[&ms_token]);
        assert!(
            verify(
                &claims("https://login.microsoftonline.com/t-1/v2.0"),
                &ms,
                "c",
                now()
            )
            .is_ok()
        );
        assert!(
            verify(
                &claims("https://login.microsoftonline.com/t-2/v2.0"),
                &ms,
                "c",
                now()
            )
            .is_err()
        );
    }

    #[test]
    fn microsofts_preferred_username_stands_in_for_email() {
        let t = jwt(&serde_json::json!({
            "iss": "https://127.0.0.1:8443", "aud": "c", "exp": 1_800_000_100, "sub": "1",
            "preferred_username": "it-admin@contoso.example"
        }));
        let id = verify(&t, &custom(), "c", now()).unwrap();
        assert_eq!(id.email.as_deref(), Some("it-admin@contoso.example"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Any text: an answer in words or an identity, never a panic, and
        /// no error quotes the token.
        #[test]
        fn any_token_is_answered(text in "[A-Za-z0-9._=-]{0,300}") {
            if let Err(why) = verify(&text, &custom(), "mailform", now()) {
                proptest::prop_assert!(text.len() < 8 || !why.contains(&text));
            }
        }

        /// Any claims object: no panic.
        #[test]
        fn any_claims_are_answered(
            iss in proptest::option::of("[a-z:/.0-9]{0,30}"),
            exp in proptest::option::of(proptest::num::i64::ANY),
            email in proptest::option::of("\\PC{0,20}"),
        ) {
            let t = jwt(&serde_json::json!({"iss": iss, "aud": "mailform", "exp": exp, "sub": "s", "email": email}));
            let _ = verify(&t, &custom(), "mailform", now());
        }
    }
}
