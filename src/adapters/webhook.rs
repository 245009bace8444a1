//! The generic webhook: one signed JSON POST per notice.
//!
//! Body: the notice as JSON (see README, "Webhook payload"). Headers:
//! `X-Purser-Timestamp` (Unix seconds), `X-Purser-Signature` (`v1=` + hex
//! HMAC-SHA256 of `{timestamp}.{body}` keyed with the shared secret), and
//! `X-Purser-Notice-Id`, the same on every retry of one notice so that
//! receivers can drop duplicates.

use std::sync::Arc;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::ports::{Clock, Notifier, SendError, StoredNotice};
use crate::secret::Secret;

/// The pause after a 429 that names none (no Retry-After): the first
/// step of the usual backoff.
const UNSAID_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Secret,
    clock: Arc<dyn Clock>,
}

#[derive(Serialize)]
struct Payload<'a> {
    version: &'static str,
    #[serde(flatten)]
    notice: &'a StoredNotice,
}

/// `v1=` + hex HMAC-SHA256 over `{timestamp}.{body}`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature the way a receiver should: constant-time, and refusing
/// timestamps more than `tolerance_secs` away from `now`.
pub fn verify(
    secret: &str,
    timestamp: i64,
    body: &[u8],
    signature: &str,
    now: i64,
    tolerance_secs: i64,
) -> bool {
    if (now - timestamp).abs() > tolerance_secs {
        return false;
    }
    let Some(hex_sig) = signature.strip_prefix("v1=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

impl Webhook {
    pub fn new(
        url: reqwest::Url,
        secret: Secret,
        timeout: std::time::Duration,
        clock: Arc<dyn Clock>,
    ) -> Webhook {
        let client = super::http::client(timeout);
        Webhook {
            client,
            url,
            secret,
            clock,
        }
    }
}

#[async_trait]
impl Notifier for Webhook {
    async fn send(&self, notice: &StoredNotice) -> Result<(), SendError> {
        let body = serde_json::to_vec(&Payload {
            version: "1",
            notice,
        })
        .map_err(|e| SendError::refused(format!("cannot encode notice: {e}")))?;
        let timestamp = self.clock.now().timestamp();
        let signature = sign(self.secret.expose(), timestamp, &body);
        let response = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("x-purser-timestamp", timestamp.to_string())
            .header("x-purser-signature", signature)
            .header("x-purser-notice-id", &notice.id)
            .body(body)
            .send()
            .await
            // The URL may carry a token (some receivers put one in the query): leave it out.
            .map_err(|e| {
                SendError::transient(format!("webhook request failed: {}", e.without_url()))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let message = format!("webhook answered HTTP {status}");
        if status.as_u16() == 429 {
            let after = super::http::retry_after(response.headers(), UNSAID_PAUSE);
            Err(SendError::rate_limited(message, after))
        } else if status.is_server_error() || status.as_u16() == 408 {
            Err(SendError::transient(message))
        } else {
            Err(SendError::refused(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip() {
        let sig = sign("s3cret", 1_700_000_000, b"{\"a\":1}");
        assert!(sig.starts_with("v1=") && sig.len() == 67);
        assert!(verify(
            "s3cret",
            1_700_000_000,
            b"{\"a\":1}",
            &sig,
            1_700_000_010,
            300
        ));
        assert!(
            !verify(
                "s3cret",
                1_700_000_000,
                b"{\"a\":2}",
                &sig,
                1_700_000_010,
                300
            ),
            "tampered body"
        );
        assert!(
            !verify(
                "other",
                1_700_000_000,
                b"{\"a\":1}",
                &sig,
                1_700_000_010,
                300
            ),
            "wrong secret"
        );
        assert!(
            !verify(
                "s3cret",
                1_700_000_000,
                b"{\"a\":1}",
                &sig,
                1_700_000_400,
                300
            ),
            "stale"
        );
        assert!(!verify(
            "s3cret",
            1_700_000_000,
            b"{\"a\":1}",
            "v1=zz",
            1_700_000_000,
            300
        ));
    }

    #[test]
    fn known_vector() {
        // Computed independently: printf '1700000000.{}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            sign("key", 1_700_000_000, b"{}"),
            "v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }
}
