//! The dead man's switch: an outside check (healthchecks.io, a self-hosted
//! Healthchecks or Uptime Kuma push monitor) that purser pings after every
//! cycle of polls, and that raises the alarm when the pings stop. By the
//! Healthchecks convention, a cycle that left accounts unread pings the
//! same URL with `/fail` appended.

use async_trait::async_trait;

use crate::ports::{Heartbeat, SendError};
use crate::secret::Secret;

/// How a ping is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    /// With a short text body naming the accounts not read.
    Post,
}

pub struct Pinger {
    client: reqwest::Client,
    /// The whole URL is a secret: its path is the check's token.
    url: Secret,
    method: Method,
}

impl Pinger {
    pub fn new(url: Secret, method: Method, timeout: std::time::Duration) -> Pinger {
        let client = super::http::client(timeout);
        Pinger {
            client,
            url,
            method,
        }
    }
}

/// `url` with `/fail` appended to its path (its query kept).
pub fn failing(url: &reqwest::Url) -> reqwest::Url {
    let mut failed = url.clone();
    let path = format!("{}/fail", url.path().trim_end_matches('/'));
    failed.set_path(&path);
    failed
}

#[async_trait]
impl Heartbeat for Pinger {
    async fn beat(&self, blind: &[String]) -> Result<(), SendError> {
        let url = reqwest::Url::parse(self.url.expose())
            .map_err(|_| SendError::refused("the heartbeat URL is not a URL"))?;
        let url = if blind.is_empty() { url } else { failing(&url) };
        let request = match self.method {
            Method::Get => self.client.get(url),
            Method::Post => {
                let body = if blind.is_empty() {
                    "every account was read\n".to_owned()
                } else {
                    format!("not read: {}\n", blind.join(", "))
                };
                self.client
                    .post(url)
                    .header("content-type", "text/plain; charset=utf-8")
                    .body(body)
            }
        };
        let response = request
            .send()
            .await
            .map_err(|e| SendError::transient(super::http::request_error(e)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(SendError::transient(format!(
                "the heartbeat check answered HTTP {status}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_ping_goes_to_the_same_check_with_fail_appended() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(
            failing(&u("https://hc-ping.com/0f2a")).as_str(),
            "https://hc-ping.com/0f2a/fail"
        );
        assert_eq!(
            failing(&u("https://hc.example/ping/abc/?rid=1")).as_str(),
            "https://hc.example/ping/abc/fail?rid=1"
        );
    }
}
