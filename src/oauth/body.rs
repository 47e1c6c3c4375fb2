//! What a provider's error answer says (RFC 6749 §5.2), read by the
//! transport (for `-v`) and by the error classes alike.

/// The `error` and `error_description` of an RFC 6749 §5.2 error body.
pub(super) fn error_body(body: &[u8]) -> Option<(String, Option<String>)> {
    #[derive(serde::Deserialize)]
    struct Body {
        error: String,
        error_description: Option<String>,
    }
    serde_json::from_slice::<Body>(body)
        .ok()
        .map(|b| (b.error, b.error_description))
}
