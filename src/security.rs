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
