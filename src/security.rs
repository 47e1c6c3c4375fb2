//! How an SMTP connection is encrypted: the one piece of vocabulary that the
//! config, the state and the SMTP probe all speak, kept here, below all of
//! them, so that none of them imports another for it.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Adds an accepted alias to an enum's schema, so that editors accept what
/// mailform accepts (serde aliases are invisible to schemars).
pub(crate) fn with_alias(schema: &mut schemars::Schema, alias: &str, of: &str) {
    if let Some(serde_json::Value::Array(variants)) = schema.get_mut("oneOf") {
        variants.push(serde_json::json!({
            "const": alias,
            "description": format!("Alias of \"{of}\"."),
            "type": "string",
        }));
    } else if let Some(serde_json::Value::Array(names)) = schema.get_mut("enum") {
        names.push(alias.into());
    }
}

fn ssl_alias(schema: &mut schemars::Schema) {
    with_alias(schema, "ssl", "tls");
}

/// `security`: how the SMTP connection is encrypted. Plaintext is not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(transform = ssl_alias)]
pub enum Security {
    /// Plain connect, then STARTTLS before anything else (port 587).
    Starttls,
    /// Implicit TLS from the first byte (port 465); "ssl" is accepted as an alias.
    #[serde(alias = "ssl")]
    Tls,
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Security::Starttls => "starttls",
            Security::Tls => "tls",
        })
    }
}

/// `host:port` as operators write it (an IPv6 address in brackets): how an
/// SMTP server is named in messages and in recorded checks.
pub fn server_name(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Whether `host` is a loopback host, where plain `http://` is allowed.
pub fn is_loopback_host<S: AsRef<str>>(host: &url::Host<S>) -> bool {
    match host {
        url::Host::Domain(d) => d.as_ref().eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// The CA certificates in a `ca_file` (PEM, one or more): what the
/// provider's and the state database's connections trust besides the web's
/// roots. The error says what is wrong with the file, in words.
pub fn ca_certificates(
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    const NOT_PEM: &str =
        "is not a PEM certificate file (expected -----BEGIN CERTIFICATE----- blocks)";
    let pem = crate::files::read(path, crate::files::MAX_CA_FILE, crate::files::Links::Follow)
        .map_err(|e| format!("cannot be read: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| NOT_PEM.to_string())?;
    if certs.is_empty() {
        return Err(NOT_PEM.to_string());
    }
    Ok(certs)
}

/// rustls settings that check the server's certificate against the web's
/// roots plus the certificates in `ca_file` (ring, rustls's safe protocol
/// versions). `what` names the file's setting in errors, e.g. `ca_file`.
pub fn verifying_tls_config(
    ca_file: Option<&std::path::Path>,
    what: &str,
) -> Result<rustls::ClientConfig, String> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let bad = |why: String| format!("{what} {} {why}", path.display());
        for cert in ca_certificates(path).map_err(bad)? {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// What a set of extra trust roots is, for state: `sha256:` and the hex
/// SHA-256 of the certificates (DER, in order), so that comments and line
/// breaks in the PEM file do not count as a change.
pub fn trust_digest(certs: &[rustls::pki_types::CertificateDer<'_>]) -> String {
    let mut all = Vec::new();
    for c in certs {
        all.extend_from_slice(c.as_ref());
    }
    format!("sha256:{}", crate::digest::sha256_hex(&all))
}

/// The rustls error somewhere in `e`'s chain (inside an `io::Error`).
pub fn rustls_error<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    let mut next: Option<&'e (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        // An I/O error's `source` skips the error it wraps: walk into it.
        next = match err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// The kind of the first I/O error in `e`'s chain.
pub fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        next = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_ca_file_holds_pem_certificates_or_says_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem();
        std::fs::write(&path, format!("# our CA\n{cert}{cert}")).unwrap();
        assert_eq!(super::ca_certificates(&path).unwrap().len(), 2);
        for junk in [
            String::new(),
            "not a certificate".to_string(),
            cert[..cert.len() / 2].to_string(),
            cert.replace("CERTIFICATE", "PRIVATE KEY"),
        ] {
            std::fs::write(&path, &junk).unwrap();
            let e = super::ca_certificates(&path).unwrap_err();
            assert!(e.contains("is not a PEM certificate file"), "{junk:?}: {e}");
        }
        let e = super::ca_certificates(&dir.path().join("missing.pem")).unwrap_err();
        assert!(e.starts_with("cannot be read"), "{e}");
    }
}
