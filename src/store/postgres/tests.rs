use super::*;
use crate::config::state_url::SslMode;

#[test]
fn lock_keys_differ_by_schema_and_name() {
    let a = advisory_key(&["mailform state lock", "mailform", "default"]);
    assert_eq!(
        a,
        advisory_key(&["mailform state lock", "mailform", "default"])
    );
    assert_ne!(
        a,
        advisory_key(&["mailform state lock", "mailform", "prod"])
    );
    assert_ne!(
        a,
        advisory_key(&["mailform state lock", "other", "default"])
    );
    // The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert_ne!(
        advisory_key(&["x", "ab", "c"]),
        advisory_key(&["x", "a", "bc"])
    );
}

#[test]
fn tls_settings_for_each_mode() {
    assert!(tls_config(SslMode::VerifyFull, None).is_ok());
    assert!(tls_config(SslMode::Require, None).is_ok());
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("ca.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let e = tls_config(SslMode::VerifyFull, Some(&junk)).unwrap_err();
    assert!(e.contains("is not a PEM certificate file"), "{e}");
}
