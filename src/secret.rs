//! Secret values (client secrets, access and refresh tokens).
//!
//! A [`Secret`] cannot leak by formatting: `Debug` and `Display` print
//! `[redacted]`, and the memory is zeroized on drop (via `secrecy`). The only
//! way to the value is [`Secret::expose`], so every use is greppable.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// What formatting prints instead of a secret.
pub const REDACTED: &str = "[redacted]";

#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    /// The secret value. Call only where it is sent or sealed, never to print.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Secret::new("ya29.super-secret");
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{:?}", Some(s.clone())), "Some([redacted])");
        assert_eq!(s.expose(), "ya29.super-secret");
    }
}
