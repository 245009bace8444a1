//! Outside pagers: PagerDuty's Events API v2 and Opsgenie's Alert API.
//!
//! Each occurrence of an alert is one incident there, keyed by
//! `purser-<fingerprint>-<started ms>` (PagerDuty's `dedup_key`, Opsgenie's
//! `alias`): a retried or repeated trigger lands on the same incident, and
//! acknowledge and resolve find it. The keys go in a header or the body,
//! never in an error or a log line.

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::domain::rules::Severity;
use crate::ports::{OutsidePager, PageMessage, PagerEvent, SendError};
use crate::secret::Secret;

/// The pause after a 429 that names none (no Retry-After): the first
/// step of the usual backoff.
const UNSAID_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

/// The incident's key on both services.
pub fn incident_key(page: &PageMessage) -> String {
    format!(
        "purser-{}-{}",
        page.fingerprint,
        page.started_at.timestamp_millis()
    )
}

fn client(timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("purser/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Sends one request and sorts the answer: 2xx delivered; 408, 429 and 5xx
/// worth another try; anything else refused for good, with what the service
/// said about it.
async fn post(
    service: &str,
    request: reqwest::RequestBuilder,
    body: &Value,
) -> Result<(), SendError> {
    let response = request.json(body).send().await.map_err(|e| {
        SendError::transient(format!("{service} request failed: {}", e.without_url()))
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let after = super::http::retry_after(response.headers(), UNSAID_PAUSE);
    // The service's own words help whoever fixes the config; they never hold
    // the key, which went in a header or in the body we sent.
    let said = response.text().await.unwrap_or_default();
    let said = super::cut(said.trim(), 300);
    let message = if said.is_empty() {
        format!("{service} answered HTTP {status}")
    } else {
        format!("{service} answered HTTP {status}: {said}")
    };
    if status.as_u16() == 429 {
        Err(SendError::rate_limited(message, after))
    } else if status.is_server_error() || status.as_u16() == 408 {
        Err(SendError::transient(message))
    } else {
        Err(SendError::refused(message))
    }
}

/// The lines both services show under the title.
fn details(page: &PageMessage) -> Value {
    json!({
        "account": page.account,
        "rule": page.rule.as_str(),
        "severity": page.severity.as_str(),
        "raised_at": page.raised_at.to_rfc3339(),
        "respond_by": page.due_text,
        "round": (page.round + 1).to_string(),
    })
}

fn title(page: &PageMessage) -> String {
    format!("[{}] {}: {}", page.severity, page.account, page.summary)
}

// ------------------------------------------------------------- PagerDuty

/// PagerDuty Events API v2: `POST /v2/enqueue` with the service
/// integration's routing key in the body.
pub struct PagerDuty {
    client: reqwest::Client,
    url: reqwest::Url,
    routing_key: Secret,
}

impl PagerDuty {
    pub fn new(url: reqwest::Url, routing_key: Secret, timeout: std::time::Duration) -> PagerDuty {
        PagerDuty {
            client: client(timeout),
            url,
            routing_key,
        }
    }

    /// The event as PagerDuty reads it.
    pub fn event(&self, page: &PageMessage) -> Value {
        let mut event = json!({
            "routing_key": self.routing_key.expose(),
            "event_action": page.event.as_str(),
            "dedup_key": incident_key(page),
        });
        if page.event == PagerEvent::Trigger {
            event["payload"] = json!({
                "summary": super::cut(&title(page), 1024),
                "source": super::cut(&page.account, 255),
                "severity": pagerduty_severity(page.severity),
                "timestamp": page.raised_at.to_rfc3339(),
                "component": page.rule.as_str(),
                "group": page.account,
                "class": page.rule.as_str(),
                "custom_details": details(page),
            });
            event["client"] = json!("purser");
        }
        event
    }
}

/// PagerDuty's four severities: A is critical, B an error, C a warning.
pub fn pagerduty_severity(s: Severity) -> &'static str {
    match s {
        Severity::A => "critical",
        Severity::B => "error",
        Severity::C => "warning",
    }
}

#[async_trait]
impl OutsidePager for PagerDuty {
    async fn send(&self, page: &PageMessage) -> Result<(), SendError> {
        let body = self.event(page);
        post("PagerDuty", self.client.post(self.url.clone()), &body).await
    }
}

// -------------------------------------------------------------- Opsgenie

/// Opsgenie's Alert API: create, acknowledge and close by alias, with an
/// API integration's key in `Authorization: GenieKey …`.
pub struct Opsgenie {
    client: reqwest::Client,
    /// The API's root, `https://api.opsgenie.com/` (or the EU one).
    base: reqwest::Url,
    api_key: Secret,
}

impl Opsgenie {
    pub fn new(base: reqwest::Url, api_key: Secret, timeout: std::time::Duration) -> Opsgenie {
        Opsgenie {
            client: client(timeout),
            base,
            api_key,
        }
    }

    /// Where the event goes and what it says.
    pub fn request(&self, page: &PageMessage) -> Result<(reqwest::Url, Value), SendError> {
        let bad_url = || SendError::refused("the Opsgenie URL cannot take a path");
        let mut url = self.base.clone();
        let alias = incident_key(page);
        {
            let mut path = url.path_segments_mut().map_err(|_| bad_url())?;
            path.pop_if_empty().push("v2").push("alerts");
            match page.event {
                PagerEvent::Trigger => {}
                PagerEvent::Acknowledge => {
                    path.push(&alias).push("acknowledge");
                }
                PagerEvent::Resolve => {
                    path.push(&alias).push("close");
                }
            }
        }
        let body = match page.event {
            PagerEvent::Trigger => json!({
                "message": super::cut(&title(page), 130),
                "alias": alias,
                "description": super::cut(&format!(
                    "{}\nRespond by {}.",
                    page.summary, page.due_text
                ), 15000),
                "priority": opsgenie_priority(page.severity),
                "source": "purser",
                "entity": super::cut(&page.account, 512),
                "tags": [page.rule.as_str(), format!("severity:{}", page.severity)],
                "details": details(page),
            }),
            PagerEvent::Acknowledge => {
                url.query_pairs_mut().append_pair("identifierType", "alias");
                json!({
                    "source": "purser",
                    "user": super::cut(page.acked_by.as_deref().unwrap_or("purser"), 100),
                    "note": "Acknowledged in chat",
                })
            }
            PagerEvent::Resolve => {
                url.query_pairs_mut().append_pair("identifierType", "alias");
                json!({
                    "source": "purser",
                    "user": "purser",
                    "note": "The condition cleared",
                })
            }
        };
        Ok((url, body))
    }
}

/// Opsgenie's P1–P5: A is P1, B P2, C P3.
pub fn opsgenie_priority(s: Severity) -> &'static str {
    match s {
        Severity::A => "P1",
        Severity::B => "P2",
        Severity::C => "P3",
    }
}

#[async_trait]
impl OutsidePager for Opsgenie {
    async fn send(&self, page: &PageMessage) -> Result<(), SendError> {
        let (url, body) = self.request(page)?;
        let request = self.client.post(url).header(
            "authorization",
            format!("GenieKey {}", self.api_key.expose()),
        );
        post("Opsgenie", request, &body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rules::RuleName;
    use chrono::TimeZone;

    fn page(event: PagerEvent) -> PageMessage {
        let at = chrono::Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        PageMessage {
            id: "p1".into(),
            fingerprint: "0123abcd".into(),
            started_at: at,
            account: "acme".into(),
            rule: RuleName::LowBalance,
            severity: Severity::A,
            summary: "balance ¥2,000.00 is below ¥3,000.00".into(),
            raised_at: at,
            due_at: at + chrono::Duration::hours(2),
            due_text: "Sun 01 Nov 10:00 CST".into(),
            person: None,
            why: "pd".into(),
            round: 0,
            event,
            acked_by: (event == PagerEvent::Acknowledge).then(|| "bo".to_owned()),
        }
    }

    #[test]
    fn pagerduty_trigger_carries_a_payload_and_the_others_only_the_key() {
        let pd = PagerDuty::new(
            "https://events.pagerduty.com/v2/enqueue".parse().unwrap(),
            Secret::for_tests("R0UTINGKEY"),
            std::time::Duration::from_secs(5),
        );
        let t = pd.event(&page(PagerEvent::Trigger));
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["dedup_key"], "purser-0123abcd-1793491200000");
        assert_eq!(t["payload"]["severity"], "critical");
        assert_eq!(t["payload"]["timestamp"], "2026-11-01T00:00:00+00:00");
        assert_eq!(
            t["payload"]["summary"],
            "[A] acme: balance ¥2,000.00 is below ¥3,000.00"
        );
        let r = pd.event(&page(PagerEvent::Resolve));
        assert_eq!(r["event_action"], "resolve");
        assert_eq!(r["dedup_key"], t["dedup_key"]);
        assert!(r.get("payload").is_none());
    }

    #[test]
    fn long_text_is_cut_to_each_services_limit() {
        let mut p = page(PagerEvent::Trigger);
        p.summary = "x".repeat(5000);
        let pd = PagerDuty::new(
            "http://127.0.0.1:1/".parse().unwrap(),
            Secret::for_tests("k"),
            std::time::Duration::from_secs(1),
        );
        let summary = pd.event(&p)["payload"]["summary"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(summary.chars().count(), 1024);
        assert!(summary.ends_with('…'));
        let og = Opsgenie::new(
            "https://api.opsgenie.com/".parse().unwrap(),
            Secret::for_tests("k"),
            std::time::Duration::from_secs(1),
        );
        let (_, body) = og.request(&p).unwrap();
        assert_eq!(body["message"].as_str().unwrap().chars().count(), 130);
    }

    #[test]
    fn opsgenie_acknowledges_and_closes_by_alias() {
        let og = Opsgenie::new(
            "https://api.eu.opsgenie.com".parse().unwrap(),
            Secret::for_tests("k"),
            std::time::Duration::from_secs(1),
        );
        let (url, body) = og.request(&page(PagerEvent::Trigger)).unwrap();
        assert_eq!(url.as_str(), "https://api.eu.opsgenie.com/v2/alerts");
        assert_eq!(body["priority"], "P1");
        assert_eq!(body["alias"], "purser-0123abcd-1793491200000");
        let (url, body) = og.request(&page(PagerEvent::Acknowledge)).unwrap();
        assert_eq!(
            url.as_str(),
            "https://api.eu.opsgenie.com/v2/alerts/purser-0123abcd-1793491200000/acknowledge?identifierType=alias"
        );
        assert_eq!(body["user"], "bo");
        let (url, _) = og.request(&page(PagerEvent::Resolve)).unwrap();
        assert!(url.path().ends_with("/close"), "{url}");
    }
}
