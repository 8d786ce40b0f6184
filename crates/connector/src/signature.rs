//! ConnectWise callback signatures (API.md §5.2): `x-content-signature` =
//! Base64(HMAC-SHA256(key = SHA-256(utf8(signing_key)), raw body)), the signing key fetched
//! from the callback's `Metadata.key_url` — which comes from an untrusted body and is only
//! fetched when [`key_url_allowed`] says so (DESIGN §4).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::connectwise::hosts::same_or_cloud_sibling;
use crate::ssrf::check_site_url;

type HmacSha256 = hmac::Hmac<Sha256>;

fn mac_for(signing_key: &str) -> HmacSha256 {
    let key = Sha256::digest(signing_key.as_bytes());
    HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length")
}

/// Base64(HMAC-SHA256(key = SHA-256(utf8(signing_key)), body)).
pub fn callback_signature(signing_key: &str, body: &[u8]) -> String {
    let mut mac = mac_for(signing_key);
    mac.update(body);
    B64.encode(mac.finalize().into_bytes())
}

/// Whether `header` (the `x-content-signature` value) is the signature of `body`; constant-time.
pub fn verify_callback_signature(signing_key: &str, body: &[u8], header: &str) -> bool {
    let Ok(sig) = B64.decode(header.trim()) else {
        return false;
    };
    let mut mac = mac_for(signing_key);
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Whether a callback's `key_url` may be fetched for an integration with this site URL:
/// https on the site's own host or its cloud sibling (`na.…` ↔ `api-na.…` within
/// `myconnectwise.net` / `connectwisedev.com`) on the default port, or — only with
/// `allow_private_hosts` — exactly the scheme, host and port of the site URL. Never with
/// credentials in the URL.
pub fn key_url_allowed(
    key_url: &str,
    site_url: &str,
    allow_private_hosts: bool,
) -> Result<(), String> {
    let key =
        url::Url::parse(key_url.trim()).map_err(|e| format!("key_url is not a valid URL: {e}"))?;
    let site = url::Url::parse(site_url.trim())
        .map_err(|e| format!("the integration's site URL is not a valid URL: {e}"))?;
    if !key.username().is_empty() || key.password().is_some() {
        return Err("key_url must not contain a user name or password".to_owned());
    }
    let key_host = key
        .host_str()
        .ok_or_else(|| "key_url has no host".to_owned())?;
    let site_host = site
        .host_str()
        .ok_or_else(|| "the integration's site URL has no host".to_owned())?;

    if allow_private_hosts
        && key.scheme() == site.scheme()
        && key_host.eq_ignore_ascii_case(site_host)
        && key.port_or_known_default() == site.port_or_known_default()
    {
        return Ok(());
    }
    if key.scheme() != "https" {
        return Err(format!("key_url must use https, not `{}`", key.scheme()));
    }
    if key.port_or_known_default() != Some(443) {
        return Err("key_url must use the default https port".to_owned());
    }
    if !same_or_cloud_sibling(key_host, site_host) {
        return Err(format!(
            "key_url host `{key_host}` is not this integration's ConnectWise host `{site_host}`"
        ));
    }
    // Never to a private address unless the integration allows it.
    check_site_url(key.as_str(), allow_private_hosts)
        .map(|_| ())
        .map_err(|e| format!("key_url refused: {e}"))
}

/// Default timeout for fetching a signing key.
pub const DEFAULT_KEY_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest signing-key response read.
pub const MAX_KEY_RESPONSE_BYTES: usize = 64 * 1024;
/// Most keys cached (the cache is cleared when full).
pub const MAX_CACHED_KEYS: usize = 1024;

/// Why a signing key could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFetchError {
    #[error("the callback's key_url is not allowed: {0}")]
    NotAllowed(String),
    #[error("the signing key could not be fetched: {0}")]
    Fetch(String),
}

/// Fetches callback signing keys (`{"signing_key": "…"}`) from allowed `key_url`s — no
/// redirects, a timeout, a 64 KiB cap, the `clientId` header — and caches them per URL.
pub struct SigningKeyFetcher {
    http: reqwest::Client,
    client_id: String,
    cache: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for SigningKeyFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyFetcher")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl SigningKeyFetcher {
    /// `timeout` bounds each fetch ([`DEFAULT_KEY_FETCH_TIMEOUT`] in production).
    /// `allow_private_hosts` lets the fetcher connect to private addresses at all (it must be
    /// true for a fetcher serving any integration so marked); per-URL checks are made by
    /// [`SigningKeyFetcher::signing_key`].
    pub fn new(
        client_id: impl Into<String>,
        timeout: Duration,
        allow_private_hosts: bool,
    ) -> Result<Self, String> {
        crate::install_crypto_provider();
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout);
        if let Some(r) = crate::ssrf::resolver_for(allow_private_hosts) {
            b = b.dns_resolver(r);
        }
        let http = b
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(SigningKeyFetcher {
            http,
            client_id: client_id.into(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The cached key for `key_url`, if any.
    pub fn cached(&self, key_url: &str) -> Option<String> {
        self.cache.lock().ok()?.get(key_url).cloned()
    }

    /// Drops the cached key for `key_url` (e.g. when a signature fails with it, before one
    /// re-fetch).
    pub fn forget(&self, key_url: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(key_url);
        }
    }

    /// The signing key at `key_url` (cached, else fetched) if [`key_url_allowed`] for this
    /// integration.
    pub async fn signing_key(
        &self,
        key_url: &str,
        site_url: &str,
        allow_private_hosts: bool,
    ) -> Result<String, KeyFetchError> {
        key_url_allowed(key_url, site_url, allow_private_hosts)
            .map_err(KeyFetchError::NotAllowed)?;
        if let Some(k) = self.cached(key_url) {
            return Ok(k);
        }
        let key = self.fetch(key_url).await?;
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= MAX_CACHED_KEYS {
                c.clear();
            }
            c.insert(key_url.to_owned(), key.clone());
        }
        Ok(key)
    }

    async fn fetch(&self, key_url: &str) -> Result<String, KeyFetchError> {
        let fetch_err = |m: String| KeyFetchError::Fetch(m);
        let mut resp = self
            .http
            .get(key_url)
            .header("clientId", &self.client_id)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                fetch_err(if e.is_timeout() {
                    "the key_url did not answer in time".to_owned()
                } else {
                    format!("the key_url could not be reached ({})", e.without_url())
                })
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(fetch_err(format!(
                "the key_url answered HTTP {}",
                status.as_u16()
            )));
        }
        if resp
            .content_length()
            .is_some_and(|l| l > MAX_KEY_RESPONSE_BYTES as u64)
        {
            return Err(fetch_err("the key_url answer is too large".to_owned()));
        }
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            fetch_err(if e.is_timeout() {
                "the key_url did not answer in time".to_owned()
            } else {
                "the key_url answer was cut off".to_owned()
            })
        })? {
            if body.len() + chunk.len() > MAX_KEY_RESPONSE_BYTES {
                return Err(fetch_err("the key_url answer is too large".to_owned()));
            }
            body.extend_from_slice(&chunk);
        }
        #[derive(serde::Deserialize)]
        struct KeyBody {
            signing_key: Option<String>,
        }
        let parsed: KeyBody = serde_json::from_slice(&body)
            .map_err(|_| fetch_err("the key_url answer is not the expected JSON".to_owned()))?;
        parsed
            .signing_key
            .filter(|k| !k.is_empty())
            .ok_or_else(|| fetch_err("the key_url answer has no signing_key".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors computed independently with Python:
    //   key = hashlib.sha256(b"test-signing-key").digest()
    //   base64.b64encode(hmac.new(key, body, hashlib.sha256).digest())
    const VECTORS: [(&str, &[u8], &str); 3] = [
        (
            "test-signing-key",
            br#"{"MessageId":"m1","Action":"updated","Type":"ticket","ID":42}"#,
            "WRZhcH8LnjWL7t8r4+cz2C3XMuLZUts5nGNSPPikBqg=",
        ),
        ("k", b"", "QdHBOXW1chBfS7oLRGpRknP1YhoHRkmapoAgLY87WHk="),
        (
            "s\u{e9}cr\u{e9}t",
            b"hello world",
            "Dn/4HoFGrtW3WVZBZ14euvmpH++O+s6b+LS3B+f4st8=",
        ),
    ];

    #[test]
    fn signature_vectors() {
        for (key, body, expected) in VECTORS {
            assert_eq!(callback_signature(key, body), expected, "key {key}");
            assert!(verify_callback_signature(key, body, expected));
            assert!(verify_callback_signature(
                key,
                body,
                &format!(" {expected}\n")
            ));
        }
    }

    #[test]
    fn signature_rejections() {
        let (key, body, sig) = VECTORS[0];
        assert!(!verify_callback_signature("other", body, sig));
        let mut tampered = body.to_vec();
        tampered[5] ^= 1;
        assert!(!verify_callback_signature(key, &tampered, sig));
        assert!(!verify_callback_signature(key, body, ""));
        assert!(!verify_callback_signature(key, body, "not base64 !!"));
        assert!(!verify_callback_signature(key, body, &sig[..20]));
    }

    #[test]
    fn key_url_rules_cloud() {
        let site = "https://na.myconnectwise.net";
        let ok = |u: &str| key_url_allowed(u, site, false);
        assert!(ok("https://na.myconnectwise.net/v2025_1//system/callbackkey/index.rails?companyName=X&id=1").is_ok());
        assert!(
            ok("https://api-na.myconnectwise.net/v4_6_release/system/callbackkey?id=1").is_ok()
        );
        assert!(ok("https://api-na.myconnectwise.net:443/k").is_ok());
        assert!(ok("http://api-na.myconnectwise.net/k").is_err());
        assert!(ok("https://api-na.myconnectwise.net:8443/k").is_err());
        assert!(ok("https://api-eu.myconnectwise.net/k").is_err());
        assert!(ok("https://na.myconnectwise.net.evil.com/k").is_err());
        assert!(ok("https://evil.com/k?na.myconnectwise.net").is_err());
        assert!(ok("https://u:p@na.myconnectwise.net/k").is_err());
        assert!(ok("https://127.0.0.1/k").is_err());
        assert!(ok("garbage").is_err());
        assert!(
            key_url_allowed(
                "https://staging.connectwisedev.com/k",
                "https://api-staging.connectwisedev.com",
                false
            )
            .is_ok()
        );
    }

    #[test]
    fn key_url_rules_private() {
        let site = "http://127.0.0.1:8080";
        assert!(
            key_url_allowed(
                "http://127.0.0.1:8080/v4_6_release/callbackkey?id=1",
                site,
                true
            )
            .is_ok()
        );
        assert!(key_url_allowed("http://127.0.0.1:8080/k", site, false).is_err());
        assert!(key_url_allowed("http://127.0.0.1:8081/k", site, true).is_err());
        assert!(key_url_allowed("https://127.0.0.1:8080/k", site, true).is_err());
        assert!(key_url_allowed("http://localhost:8080/k", site, true).is_err());
        assert!(key_url_allowed("http://10.0.0.1:8080/k", site, true).is_err());
        // On-prem https host, private network.
        assert!(key_url_allowed("https://cw.corp.local/k", "https://cw.corp.local", true).is_ok());
    }
}
