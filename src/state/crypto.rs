//! Encryption of tokens at rest: ChaCha20-Poly1305 (ring), one random nonce per
//! seal. The caller passes associated data that binds the record to where it
//! belongs (the state's lineage, the asset, the token-binding fingerprint;
//! see `state::token_aad`), so a sealed record cannot be moved to another
//! asset or state, nor kept while the fields it was granted under are edited.
//! The key is 32 random bytes, kept base64-encoded in `.mailform/key` (mode
//! 0600) or given as `MAILFORM_KEY`.
//!
//! Secret bytes live only in `Zeroizing` buffers sized up front, so no
//! reallocation leaves a copy behind.
//!
//! A key has a short public *id* (a hash of it) recorded in the state file, so a
//! wrong key is reported as such before any decryption is attempted.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Bytes in a key.
pub const KEY_LEN: usize = 32;

use crate::digest::sha256_hex;

/// Why a key or a sealed record could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the key is not base64 of {KEY_LEN} bytes")]
    BadKey,
    #[error("the sealed token record is malformed")]
    Malformed,
    #[error(
        "the token record does not decrypt with this key (wrong key, or the state file was altered)"
    )]
    Open,
}

/// Ciphertext as stored in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// Base64 of the 12-byte nonce.
    pub nonce: String,
    /// Base64 of ciphertext and tag.
    pub ciphertext: String,
}

/// The token-encryption key.
pub struct Key {
    key: LessSafeKey,
    id: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key {{ id: {} }}", self.id)
    }
}

impl Key {
    /// A new random key and its base64 text (to be stored by the caller).
    pub fn generate() -> (Key, Zeroizing<String>) {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .expect("the system random source failed");
        let text = Zeroizing::new(B64.encode(bytes.as_ref()));
        (Key::from_bytes(bytes.as_ref()), text)
    }

    /// Reads a key from its base64 text.
    pub fn from_base64(text: &str) -> Result<Key, CryptoError> {
        // Decoded into a fixed buffer: a Vec could grow and leave copies.
        let mut bytes = Zeroizing::new([0u8; KEY_LEN * 2]);
        let n = B64
            .decode_slice(text.trim().as_bytes(), bytes.as_mut())
            .map_err(|_| CryptoError::BadKey)?;
        if n != KEY_LEN {
            return Err(CryptoError::BadKey);
        }
        Ok(Key::from_bytes(&bytes[..KEY_LEN]))
    }

    fn from_bytes(bytes: &[u8]) -> Key {
        let unbound =
            UnboundKey::new(&aead::CHACHA20_POLY1305, bytes).expect("key length is checked");
        let mut tagged = Zeroizing::new(b"mailform key id v1\0".to_vec());
        tagged.extend_from_slice(bytes);
        let id = sha256_hex(&tagged)[..16].to_string();
        Key {
            key: LessSafeKey::new(unbound),
            id,
        }
    }

    /// The key's public id, recorded in the state file.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Encrypts `plaintext`, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Sealed {
        let mut nonce = [0u8; aead::NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random source failed");
        let tag_len = aead::CHACHA20_POLY1305.tag_len();
        let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + tag_len));
        buf.extend_from_slice(plaintext);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut *buf,
            )
            .expect("ChaCha20-Poly1305 sealing cannot fail for in-memory sizes");
        Sealed {
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(buf.as_slice()),
        }
    }

    /// Decrypts a record sealed with `aad`.
    pub fn open(&self, aad: &[u8], sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let nonce: [u8; aead::NONCE_LEN] = B64
            .decode(&sealed.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(CryptoError::Malformed)?;
        let mut buf = Zeroizing::new(
            B64.decode(&sealed.ciphertext)
                .map_err(|_| CryptoError::Malformed)?,
        );
        let len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                buf.as_mut_slice(),
            )
            .map_err(|_| CryptoError::Open)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips() {
        let (key, _) = Key::generate();
        let sealed = key.seal(b"support", b"hello");
        assert_eq!(key.open(b"support", &sealed).unwrap().as_slice(), b"hello");
    }

    #[test]
    fn wrong_key_is_an_error_not_garbage() {
        let (a, _) = Key::generate();
        let (b, _) = Key::generate();
        assert_ne!(a.id(), b.id());
        let sealed = a.seal(b"support", b"hello");
        assert_eq!(b.open(b"support", &sealed), Err(CryptoError::Open));
    }

    #[test]
    fn a_record_cannot_move_to_another_asset() {
        let (key, _) = Key::generate();
        let sealed = key.seal(b"support", b"hello");
        assert_eq!(key.open(b"billing", &sealed), Err(CryptoError::Open));
    }

    #[test]
    fn tampering_is_detected() {
        let (key, _) = Key::generate();
        let mut sealed = key.seal(b"support", b"hello");
        let mut bytes = B64.decode(&sealed.ciphertext).unwrap();
        bytes[0] ^= 1;
        sealed.ciphertext = B64.encode(bytes);
        assert_eq!(key.open(b"support", &sealed), Err(CryptoError::Open));
        sealed.nonce = "not base64!".into();
        assert_eq!(key.open(b"support", &sealed), Err(CryptoError::Malformed));
    }

    #[test]
    fn key_text_round_trips_and_bad_text_is_refused() {
        let (key, text) = Key::generate();
        assert_eq!(Key::from_base64(&text).unwrap().id(), key.id());
        assert_eq!(
            Key::from_base64("c2hvcnQ=").unwrap_err(),
            CryptoError::BadKey
        );
        assert_eq!(Key::from_base64("%%%").unwrap_err(), CryptoError::BadKey);
        assert!(!format!("{key:?}").contains(text.as_str()));
    }
}
