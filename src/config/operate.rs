//! `[metrics]` and `[heartbeat]`: how the people who run purser see it,
//! and the outside check that notices when it stops.

use serde::Deserialize;

use super::{Issues, S, duration};
use crate::secret::Secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    listen: S,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeartbeat {
    url: S,
    method: Option<S>,
    timeout: Option<S>,
}

/// `/metrics`, `/healthz` and `/readyz` on an address of their own, so
/// that they need not be public with the chat endpoints.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    /// The check's ping URL: a secret, since its path is the check's token.
    pub url: Secret,
    pub method: crate::adapters::heartbeat::Method,
    pub timeout: std::time::Duration,
}

pub(super) fn metrics(issues: &mut Issues<'_>, raw: &RawMetrics) -> Option<MetricsConfig> {
    super::address(issues, "metrics.listen", &raw.listen).map(|listen| MetricsConfig { listen })
}

pub(super) fn heartbeat(
    issues: &mut Issues<'_>,
    raw: &RawHeartbeat,
    base: &std::path::Path,
) -> Option<HeartbeatConfig> {
    use crate::adapters::heartbeat::Method;
    let method = match raw.method.as_ref().map(|m| m.get_ref().as_str()) {
        None | Some("post") => Method::Post,
        Some("get") => Method::Get,
        Some(other) => {
            let m = raw.method.as_ref().unwrap_or(&raw.url);
            issues.at(
                m,
                "heartbeat.method",
                format!("unknown method {other:?}; known: post, get"),
            );
            Method::Post
        }
    };
    let timeout = duration(
        issues,
        "heartbeat.timeout",
        raw.timeout.as_ref(),
        chrono::Duration::seconds(10),
    )
    .to_std()
    .unwrap_or(std::time::Duration::from_secs(10));
    let url = match Secret::resolve(raw.url.get_ref(), base) {
        Ok(url) => url,
        Err(e) => {
            issues.at(
                &raw.url,
                "heartbeat.url",
                format!("{e} (the ping URL's path is the check's token)"),
            );
            return None;
        }
    };
    match reqwest::Url::parse(url.expose()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Some(HeartbeatConfig {
            url,
            method,
            timeout,
        }),
        // The value is a secret: it is not repeated.
        _ => {
            issues.at(
                &raw.url,
                "heartbeat.url",
                format!("{} does not hold an http or https URL", raw.url.get_ref()),
            );
            None
        }
    }
}
