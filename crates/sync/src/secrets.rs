//! Secrets at rest: ChaCha20-Poly1305 under a master key. A sealed value is
//! `v1:<key id>:<nonce b64>:<ciphertext b64>`; the key id lets the master key rotate (old keys
//! stay loadable for reading while new writes use the current one). The plain value never
//! reaches logs, errors or `Debug`.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::Aead;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("sealed secret is malformed")]
    Malformed,
    #[error("sealed with key {0:?}, which is not loaded")]
    UnknownKey(String),
    #[error("secret does not decrypt with its key (wrong master key or tampered value)")]
    Decrypt,
    #[error("master key must be 32 bytes, base64-encoded")]
    BadKey,
}

/// Holds the master keys by id; seals with the current one.
#[derive(Clone)]
pub struct SecretBox {
    keys: HashMap<String, [u8; 32]>,
    current: String,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl SecretBox {
    pub fn new(key_id: &str, key: [u8; 32]) -> Self {
        let mut keys = HashMap::new();
        keys.insert(key_id.to_string(), key);
        Self {
            keys,
            current: key_id.to_string(),
        }
    }

    /// Parses a base64 32-byte key.
    pub fn from_base64(key_id: &str, b64: &str) -> Result<Self, SecretError> {
        Ok(Self::new(key_id, decode_key(b64)?))
    }

    /// Adds an older key, still accepted for reading.
    pub fn with_old_key(mut self, key_id: &str, key: [u8; 32]) -> Self {
        self.keys.insert(key_id.to_string(), key);
        self
    }

    pub fn current_key_id(&self) -> &str {
        &self.current
    }

    pub fn seal(&self, plain: &str) -> String {
        let key = self.keys[&self.current];
        let cipher = ChaCha20Poly1305::new(&key.into());
        let nonce_bytes: [u8; 12] = rand::random();
        let ct = cipher
            .encrypt(&nonce_bytes.into(), plain.as_bytes())
            .expect("encryption with a valid key cannot fail");
        format!(
            "v1:{}:{}:{}",
            self.current,
            B64.encode(nonce_bytes),
            B64.encode(ct)
        )
    }

    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let mut parts = sealed.splitn(4, ':');
        let (Some("v1"), Some(kid), Some(nonce), Some(ct)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SecretError::Malformed);
        };
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| SecretError::UnknownKey(kid.to_string()))?;
        let nonce: [u8; 12] = B64
            .decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(SecretError::Malformed)?;
        let ct = B64.decode(ct).map_err(|_| SecretError::Malformed)?;
        let cipher = ChaCha20Poly1305::new(&(*key).into());
        let plain = cipher
            .decrypt(&nonce.into(), ct.as_ref())
            .map_err(|_| SecretError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| SecretError::Decrypt)
    }
}

pub fn decode_key(b64: &str) -> Result<[u8; 32], SecretError> {
    B64.decode(b64.trim())
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or(SecretError::BadKey)
}

/// A new random master key, base64-encoded.
pub fn generate_key() -> String {
    let key: [u8; 32] = rand::random();
    B64.encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_again_and_does_not_contain_the_plain_text() {
        let b = SecretBox::from_base64("k1", &generate_key()).unwrap();
        let sealed = b.seal("my-private-key");
        assert!(!sealed.contains("my-private-key"));
        assert!(sealed.starts_with("v1:k1:"));
        assert_eq!(b.open(&sealed).unwrap(), "my-private-key");
    }

    #[test]
    fn rotation_keeps_old_values_readable_and_a_wrong_key_fails_loudly() {
        let old = SecretBox::new("k1", [1; 32]);
        let sealed = old.seal("s3cret");
        let rotated = SecretBox::new("k2", [2; 32]).with_old_key("k1", [1; 32]);
        assert_eq!(rotated.open(&sealed).unwrap(), "s3cret");
        assert!(rotated.seal("x").starts_with("v1:k2:"));
        let wrong = SecretBox::new("k1", [9; 32]);
        assert!(matches!(wrong.open(&sealed), Err(SecretError::Decrypt)));
        assert!(matches!(
            SecretBox::new("k3", [3; 32]).open(&sealed),
            Err(SecretError::UnknownKey(_))
        ));
        assert!(matches!(old.open("garbage"), Err(SecretError::Malformed)));
    }
}
