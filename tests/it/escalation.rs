//! An unacknowledged alert walks its chain against a loopback mock of
//! Slack's Web API: the channel first, then a direct message to whoever is on
//! call, then the secondary; a restart mid-chain pages nobody twice; the
//! acknowledgement pressed in the direct message stops the chain. A pager
//! step speaks PagerDuty's Events API and Opsgenie's Alert API to loopback
//! mocks of each.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Duration;
use chrono::SubsecRound;
use purser::adapters::pagers::{Opsgenie, PagerDuty};
use purser::domain::rules::{RuleName, Severity};
use purser::engine::chatops::{Asker, ReplyKind};
use purser::ports::{Clock, OutsidePager, PageMessage, PagerEvent, SendError};
use purser::secret::Secret;
use serde_json::json;

use crate::chat_api::{Call, ChatApi, slack_form, slack_interaction};
use crate::helpers::{Setup, TestApp, World};

const SECRET: &str = "slack-signing-secret-for-tests";
const TOKEN: &str = "xoxb-test-token";

async fn slack_mock() -> (Arc<ChatApi>, std::net::SocketAddr) {
    let posted = AtomicUsize::new(0);
    ChatApi::start(move |c| match c.path.as_str() {
        "/api/chat.postMessage" => {
            let n = posted.fetch_add(1, Ordering::SeqCst) + 1;
            let channel = c.body["channel"].as_str().unwrap_or("C0OPS").to_owned();
            (
                200,
                json!({"ok": true, "channel": channel, "ts": format!("1700000000.{n:06}")}),
            )
        }
        _ => (200, json!({"ok": true})),
    })
    .await
}

const CHAIN: &str = r#"
[escalation.A]
steps = [
  { after = "15m", notify = ["oncall:ops"] },
  { after = "30m", notify = ["secondary:ops"] },
  { after = "1h", notify = ["person:lead"] },
]
"#;

/// Slack at `addr`, three people, one weekly rotation, and `chain`.
fn config(addr: std::net::SocketAddr, chain: &str) -> String {
    format!(
        r#"
[http]
listen = "127.0.0.1:0"

[slack]
mode = "http"
signing_secret = "file:slack.secret"

[rules.low_balance]
tiers = [{{ below = "3,000", severity = "A" }}]

[[people]]
name = "ana"
role = "approver"
slack = "U0ANA"

[[people]]
name = "bo"
role = "requester"
slack = "U0BO"

[[people]]
name = "lead"
role = "admin"
slack = "U0LEAD"

[[outputs]]
name = "ops"
kind = "slack"
channel = "C0OPS"
token = "file:slack.token"
api = "http://{addr}/api"

[[schedules]]
name = "ops"
rotation = "weekly"
handoff = "mon 10:00"
start = "2026-10-26"
people = ["ana", "bo"]
{chain}"#
    )
}

/// `user` presses Acknowledge in a direct message; the HTTP status.
async fn ack_in_dm(
    app: &TestApp,
    world: &World,
    mock: std::net::SocketAddr,
    user: &str,
    fingerprint: &str,
) -> u16 {
    let payload = json!({"type": "block_actions", "user": {"id": user},
        "trigger_id": format!("trigger-{user}"),
        "actions": [{"action_id": "ack", "value": fingerprint}],
        "response_url": format!("http://{mock}/respond"),
        "container": {"message_ts": "1700000000.000004", "channel_id": format!("D{user}")},
        "message": {"ts": "1700000000.000004", "blocks": []}});
    slack_interaction(
        app.http.unwrap(),
        SECRET,
        world.clock.now().timestamp(),
        &slack_form(&payload),
    )
    .await
}

fn to(calls: &[Call], channel: &str) -> Vec<Call> {
    calls
        .iter()
        .filter(|c| c.body["channel"] == channel && c.body["thread_ts"].is_null())
        .cloned()
        .collect()
}

fn thread_lines(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| !c.body["thread_ts"].is_null())
        .map(|c| c.body["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn an_unacknowledged_a_alert_walks_from_channel_to_dm_and_stops_at_the_ack() {
    let (mock, addr, world, app) = started(CHAIN, "A").await;
    // Sunday 1 November, 08:00 in Beijing: A's clock runs on a day off.
    let calls = mock.wait("POST", "/api/chat.postMessage", 1).await;
    assert_eq!(
        to(&calls, "C0OPS").len(),
        1,
        "step 1: the alert in its channel"
    );
    let open = app.store.open_escalations().await.unwrap();
    assert_eq!(open.len(), 1);
    let fingerprint = open[0].fingerprint.clone();
    // Kept at the store's precision, the millisecond.
    assert_eq!(
        open[0].due_at,
        (world.clock.now() + Duration::hours(2)).trunc_subsecs(3)
    );

    app.advance(Duration::minutes(14)).await;
    assert!(to(&mock.calls("POST", "/api/chat.postMessage"), "U0ANA").is_empty());
    app.advance(Duration::minutes(1)).await;
    let calls = mock.wait("POST", "/api/chat.postMessage", 3).await;
    let dm = to(&calls, "U0ANA");
    assert_eq!(dm.len(), 1, "ana, on call, is paged directly: {calls:?}");
    let text = dm[0].body["text"].as_str().unwrap();
    assert!(
        text.contains("ana, you are paged as on call for ops"),
        "{text}"
    );
    assert!(text.contains("Respond by Sun 01 Nov 10:00 CST"), "{text}");
    let button = &dm[0].body["blocks"][1]["elements"][0];
    assert_eq!(
        (button["action_id"].as_str(), button["value"].as_str()),
        (Some("ack"), Some(fingerprint.as_str()))
    );
    assert_eq!(
        thread_lines(&calls),
        [
            "Paged ana (on call for ops) — not acknowledged after 15m; respond by Sun 01 Nov 10:00 CST"
        ],
        "the channel sees the step"
    );

    // A crash and a restart mid-chain: nobody already paged is paged again.
    app.crash().await;
    world.clock.advance(Duration::minutes(5));
    let app = world.start().await;
    app.settle().await;
    assert_eq!(
        to(&mock.calls("POST", "/api/chat.postMessage"), "U0ANA").len(),
        1
    );
    app.advance(Duration::minutes(10)).await;
    let calls = mock.wait("POST", "/api/chat.postMessage", 5).await;
    assert_eq!(to(&calls, "U0BO").len(), 1, "the secondary at 30 minutes");
    assert_eq!(to(&calls, "U0ANA").len(), 1);

    // bo acknowledges from the direct message itself.
    assert_eq!(
        ack_in_dm(&app, &world, addr, "U0BO", &fingerprint).await,
        200
    );
    mock.wait("POST", "/respond", 1).await;
    app.settle().await;
    app.advance(Duration::hours(2)).await;
    let calls = mock.calls("POST", "/api/chat.postMessage");
    assert!(
        to(&calls, "U0LEAD").is_empty(),
        "the chain stopped: {calls:?}"
    );
    let done = app
        .store
        .escalations_since(world.clock.now() - Duration::days(1))
        .await
        .unwrap();
    assert_eq!(done[0].acked_by.as_deref(), Some("bo"));
    assert!(
        done[0].acked_at.unwrap() <= done[0].due_at,
        "within the 2-hour target"
    );
    // The report a team lead reads, from the store the daemon keeps.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_purser"))
        .args([
            "report",
            "sla",
            "--since",
            "2026-11-01",
            "--until",
            "2026-11-02",
        ])
        .arg("--config")
        .arg(world.config_path())
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &report["severities"][0];
    assert_eq!(
        (&a["severity"], &a["raised"], &a["within"], &a["median"]),
        (&json!("A"), &json!(1), &json!(1), &json!("30m")),
        "{report}"
    );
    app.stop().await;
}

const PD_KEY: &str = "R0UTINGKEY0123456789abcdef012345";
const OG_KEY: &str = "6f1c2d3e-opsgenie-integration-key";

/// PagerDuty's Events API and Opsgenie's Alert API on one loopback port,
/// answering as each does; PagerDuty throttles the first event.
async fn pager_mock() -> (Arc<ChatApi>, std::net::SocketAddr) {
    let events = AtomicUsize::new(0);
    ChatApi::start(move |c| {
        if c.path == "/v2/enqueue" {
            if events.fetch_add(1, Ordering::SeqCst) == 0 {
                return (
                    429,
                    json!({"status": "throttle exceeded", "message": "Requests for this service are arriving too quickly. Please retry later."}),
                );
            }
            return (
                202,
                json!({"status": "success", "message": "Event processed", "dedup_key": c.body["dedup_key"]}),
            );
        }
        (
            202,
            json!({"result": "Request will be processed", "took": 0.01, "requestId": "43a29c5c-3dbf-4fa4-9c26-f4f71023e120"}),
        )
    })
    .await
}

/// The chain reaches PagerDuty and Opsgenie after the on-call's direct
/// message; the acknowledgement in chat and the resolve follow the same
/// incident there, found by its key.
#[tokio::test]
async fn a_pager_step_triggers_pagerduty_and_opsgenie_then_acknowledges_and_resolves_them() {
    let (pagers, pagers_addr) = pager_mock().await;
    let chain = format!(
        r#"
[[pagers]]
name = "pd"
kind = "pagerduty"
routing_key = "file:pd.key"
url = "http://{pagers_addr}/v2/enqueue"

[[pagers]]
name = "og"
kind = "opsgenie"
api_key = "file:og.key"
url = "http://{pagers_addr}/"

[escalation.A]
steps = [
  {{ after = "15m", notify = ["oncall:ops"] }},
  {{ after = "30m", notify = ["pager:pd", "pager:og"] }},
]
"#
    );
    let (slack_mock, slack_addr, world, app) =
        started_with(&chain, "A", &[("pd.key", PD_KEY), ("og.key", OG_KEY)]).await;
    let fingerprint = app.store.open_escalations().await.unwrap()[0]
        .fingerprint
        .clone();
    app.advance(Duration::minutes(15)).await;
    slack_mock.wait("POST", "/api/chat.postMessage", 3).await;
    assert!(pagers.calls("POST", "/v2/enqueue").is_empty());

    app.advance(Duration::minutes(15)).await;
    let created = pagers.wait("POST", "/v2/alerts", 1).await;
    assert_eq!(
        created[0].authorization.as_deref(),
        Some(format!("GenieKey {OG_KEY}").as_str())
    );
    let alert = &created[0].body;
    let key = alert["alias"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("purser-{fingerprint}-")), "{key}");
    assert_eq!(alert["priority"], "P1");
    assert_eq!(
        alert["message"],
        "[A] acme: available balance ¥2,000.00 is below ¥3,000.00"
    );
    assert!(
        alert["description"]
            .as_str()
            .unwrap()
            .contains("Respond by Sun 01 Nov 10:00 CST"),
        "{alert}"
    );
    // PagerDuty throttled the first try (429, no Retry-After): it is sent
    // again after a pause of 5 s.
    assert_eq!(pagers.wait("POST", "/v2/enqueue", 1).await.len(), 1);
    app.advance(Duration::seconds(5)).await;
    let events = pagers.wait("POST", "/v2/enqueue", 2).await;
    assert_eq!(events[0].body, events[1].body, "the same event, retried");
    let trigger = &events[1].body;
    assert_eq!(trigger["routing_key"], PD_KEY);
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], key.as_str());
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["source"], "acme");
    let lines = thread_lines(&slack_mock.calls("POST", "/api/chat.postMessage"));
    assert!(
        lines.iter().any(|l| l.starts_with("Paged pd, og — ")),
        "the channel sees the pager step: {lines:?}"
    );

    // Acknowledged in chat: both services hear it, on the same incident.
    assert_eq!(
        ack_in_dm(&app, &world, slack_addr, "U0ANA", &fingerprint).await,
        200
    );
    let events = pagers.wait("POST", "/v2/enqueue", 3).await;
    assert_eq!(events[2].body["event_action"], "acknowledge");
    assert_eq!(events[2].body["dedup_key"], key.as_str());
    assert!(events[2].body.get("payload").is_none());
    let acked = pagers
        .wait("POST", &format!("/v2/alerts/{key}/acknowledge"), 1)
        .await;
    assert_eq!(acked[0].query, "identifierType=alias");
    assert_eq!(acked[0].body["user"], "ana");

    // The money arrives: the incident is resolved there too.
    world.scenario("[[accounts]]\nid = \"acme\"\nbalance = \"¥9,000\"\n");
    app.advance(Duration::minutes(1)).await;
    let events = pagers.wait("POST", "/v2/enqueue", 4).await;
    assert_eq!(events[3].body["event_action"], "resolve");
    assert_eq!(events[3].body["dedup_key"], key.as_str());
    let closed = pagers
        .wait("POST", &format!("/v2/alerts/{key}/close"), 1)
        .await;
    assert_eq!(closed[0].query, "identifierType=alias");
    app.advance(Duration::hours(1)).await;
    assert_eq!(pagers.calls("POST", "/v2/enqueue").len(), 4, "nothing more");
    assert_eq!(pagers.calls("POST", "/v2/alerts").len(), 1);
    app.stop().await;
}

fn page(event: PagerEvent) -> PageMessage {
    let at = crate::helpers::epoch();
    PageMessage {
        id: "p1".into(),
        fingerprint: "0123abcd".into(),
        started_at: at,
        account: "acme".into(),
        rule: RuleName::LowBalance,
        severity: Severity::B,
        summary: "balance is low".into(),
        raised_at: at,
        due_at: at + Duration::hours(4),
        due_text: "Mon 02 Nov 13:00 CST".into(),
        person: None,
        why: "pd".into(),
        round: 0,
        event,
        acked_by: None,
    }
}

/// A refused event is not retried, says what the service said, and never
/// shows the key it carried.
#[tokio::test]
async fn a_refused_page_is_permanent_and_keeps_the_key_out_of_the_error() {
    let (_api, addr) = ChatApi::start(|c| {
        if c.path == "/busy/v2/enqueue" {
            (
                429,
                json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly"}),
            )
        } else if c.path == "/v2/enqueue" {
            (
                400,
                json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["'payload.summary' is missing or blank"]}),
            )
        } else {
            (
                401,
                json!({"message": "Could not authenticate", "took": 0.0, "requestId": "r"}),
            )
        }
    })
    .await;
    let timeout = std::time::Duration::from_secs(5);
    let pd = PagerDuty::new(
        format!("http://{addr}/v2/enqueue").parse().unwrap(),
        Secret::from_value(PD_KEY),
        timeout,
    );
    let e = pd.send(&page(PagerEvent::Trigger)).await.unwrap_err();
    let SendError::Refused { what: text, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(
        text.contains("HTTP 400") && text.contains("payload.summary"),
        "{text}"
    );
    assert!(!text.contains(PD_KEY));
    let og = Opsgenie::new(
        format!("http://{addr}/").parse().unwrap(),
        Secret::from_value(OG_KEY),
        timeout,
    );
    let e = og.send(&page(PagerEvent::Resolve)).await.unwrap_err();
    assert!(matches!(e, SendError::Refused { .. }), "{e:?}");
    assert!(!e.to_string().contains(OG_KEY), "{e}");
    // Nobody listening: worth another try.
    let gone = PagerDuty::new(
        "http://127.0.0.1:9/v2/enqueue".parse().unwrap(),
        Secret::from_value(PD_KEY),
        timeout,
    );
    let e = gone.send(&page(PagerEvent::Trigger)).await.unwrap_err();
    assert!(matches!(e, SendError::Transient { .. }), "{e:?}");
    // Throttled: a pause, not a failure (5 s where no Retry-After is given).
    let busy = PagerDuty::new(
        format!("http://{addr}/busy/v2/enqueue").parse().unwrap(),
        Secret::from_value(PD_KEY),
        timeout,
    );
    let e = busy.send(&page(PagerEvent::Trigger)).await.unwrap_err();
    assert!(
        matches!(&e, SendError::RateLimited { retry_after, what }
            if retry_after.as_secs() == 5 && what.contains("too quickly")),
        "{e:?}"
    );
}

fn slack_user(user: &str) -> Asker {
    Asker {
        platform: "slack".into(),
        user: user.into(),
    }
}

/// `oncall` names who answers now and next; a swap made in chat is stored,
/// audited, shown, and the next page goes to the person swapped in;
/// `escalations` shows where the chain stands.
#[tokio::test]
async fn a_swap_made_in_chat_routes_the_page_and_is_shown_and_audited() {
    let (mock, _, world, app) = started(CHAIN, "A").await;
    let chat = world.chat_ops(&app);
    let ask = |user: &'static str, text: &'static str| {
        let chat = chat.clone();
        async move { chat.handle(&slack_user(user), text).await }
    };

    let r = ask("U0ANA", "oncall").await;
    assert_eq!(
        r.lines,
        ["ops: ana until Mon 02 Nov 10:00 CST · next bo until Mon 09 Nov 10:00 CST · secondary bo"]
    );
    let r = ask("U0ANA", "escalations").await;
    assert_eq!(r.title, "Escalations open: 1");
    assert!(
        r.lines[0].contains("step 0 of 3 taken; next oncall:ops at Sun 01 Nov 08:15 CST; respond by Sun 01 Nov 10:00 CST"),
        "{:?}",
        r.lines
    );

    // ana is busy: bo takes the next eight hours.
    let r = ask("U0BO", "oncall override ops bo now 8h swap with ana").await;
    assert_eq!(r.kind, ReplyKind::Done, "{}", r.text());
    assert_eq!(
        r.title,
        "Override #1: bo is on call for ops from Sun 01 Nov 08:00 CST until Sun 01 Nov 16:00 CST, covering ana."
    );
    assert_eq!(
        r.lines,
        [
            "ops: bo (covering ana) until Sun 01 Nov 16:00 CST · next ana until Mon 02 Nov 10:00 CST · secondary ana"
        ]
    );
    app.advance(Duration::minutes(15)).await;
    let calls = mock.wait("POST", "/api/chat.postMessage", 3).await;
    assert_eq!(to(&calls, "U0BO").len(), 1, "bo, swapped in, is paged");
    assert!(to(&calls, "U0ANA").is_empty());
    let r = ask("U0ANA", "escalations").await;
    assert!(
        r.lines[0].contains("step 1 of 3 taken; next secondary:ops at Sun 01 Nov 08:30 CST"),
        "{:?}",
        r.lines
    );

    let audit = app.store.audit_log(None).await.unwrap();
    let entry = audit.last().unwrap();
    assert_eq!((entry.actor.as_str(), entry.event.as_str()), ("bo", "note"));
    let detail: serde_json::Value = serde_json::from_str(&entry.detail).unwrap();
    assert_eq!(
        (
            &detail["oncall_override"],
            &detail["person"],
            &detail["reason"]
        ),
        (&json!(1), &json!("bo"), &json!("swap with ana"))
    );

    // Mistakes: each refused with what is wrong, nothing stored.
    for (user, text, says) in [
        (
            "U0BO",
            "oncall override ops ana now 1h",
            "Putting someone else on call needs the approver role; you are requester.",
        ),
        (
            "U0ANA",
            "oncall override ops zed now 1h",
            "Nobody is named \"zed\"; people: ana, bo, lead.",
        ),
        (
            "U0ANA",
            "oncall override night ana now 1h",
            "No schedule is named \"night\"; schedules: ops.",
        ),
        (
            "U0ANA",
            "oncall override ops ana 2026-11-03 2026-11-02",
            "The override would end (Mon 02 Nov 00:00 CST) before it starts (Tue 03 Nov 00:00 CST).",
        ),
        (
            "U0ANA",
            "oncall override ops ana 2026-10-01 2026-10-02",
            "That is over already: it ended Fri 02 Oct 00:00 CST.",
        ),
        (
            "U0ANA",
            "oncall override ops ana 2026-11-20 2027-03-01",
            "An override may last at most 90 days; change the rotation in the config for longer.",
        ),
    ] {
        let r = ask(user, text).await;
        assert_eq!(
            (r.kind, r.title.as_str()),
            (ReplyKind::Refused, says),
            "{text}"
        );
    } // A span too long, however long, is refused before anything is computed.
    for text in [
        "oncall override ops ana now 100d",
        "oncall override ops ana now 99999999999999d",
    ] {
        let r = ask("U0ANA", text).await;
        assert_eq!(r.kind, ReplyKind::Usage, "{text}");
        assert!(
            r.title
                .starts_with("until: an override may last at most 90d; change the rotation"),
            "{text}: {}",
            r.title
        );
    }

    for (text, says) in [
        (
            "oncall override ops",
            "give the schedule, the person, from and until",
        ),
        ("oncall override ops ana now", "until: missing"),
        (
            "oncall override ops ana tomorrow 8h",
            "from: \"tomorrow\" is not a date",
        ),
        ("oncall override ops ana now 5,00h", "until:"),
        ("oncall override ops ana now now", "\"now\" is a start"),
        ("oncall ops extra", "unexpected \"extra\""),
    ] {
        let r = ask("U0ANA", text).await;
        assert_eq!(r.kind, ReplyKind::Usage, "{text}: {}", r.text());
        assert!(r.title.contains(says), "{text}: {}", r.title);
    }
    assert_eq!(
        app.store.overrides(world.clock.now()).await.unwrap().len(),
        1
    );
    app.stop().await;
}

/// Acknowledged but still firing an hour later: the chain walks again, the
/// acknowledgement runs out so it can be given again, and the second one
/// stops the new round; the response target is judged on the first.
#[tokio::test]
async fn an_acknowledged_alert_still_firing_escalates_again_and_can_be_acknowledged_again() {
    let chain = r#"
[escalation.A]
steps = [{ after = "15m", notify = ["oncall:ops"] }]
after_ack = "1h"
"#;
    let (mock, addr, world, app) = started(chain, "A").await;
    let fingerprint = app.store.open_escalations().await.unwrap()[0]
        .fingerprint
        .clone();
    app.advance(Duration::minutes(15)).await;
    mock.wait("POST", "/api/chat.postMessage", 3).await;
    assert_eq!(
        ack_in_dm(&app, &world, addr, "U0ANA", &fingerprint).await,
        200
    );
    let answers = mock.wait("POST", "/respond", 1).await;
    assert!(
        answers[0].raw.contains("Acknowledged"),
        "{}",
        answers[0].raw
    );
    app.settle().await;
    let first = app.store.open_escalations().await.unwrap()[0].clone();
    assert_eq!(first.acked_by.as_deref(), Some("ana"));

    // An hour on, still firing: the channel hears it, ana is paged again.
    app.advance(Duration::hours(1)).await;
    app.advance(Duration::minutes(15)).await;
    let calls = mock
        .wait_until("POST", "/api/chat.postMessage", |c| {
            to(c, "U0ANA").len() >= 2
        })
        .await
        .expect("ana paged again");
    let lines = thread_lines(&calls);
    assert!(
        lines
            .iter()
            .any(|l| l == "Still firing after ana acknowledged it: escalating again (round 2)"),
        "{lines:?}"
    );
    let alert = &app.store.all_open_alerts().await.unwrap()[0];
    assert!(alert.acknowledged.is_none(), "the acknowledgement ran out");

    // The second acknowledgement is taken, and stops the new round.
    assert_eq!(
        ack_in_dm(&app, &world, addr, "U0ANA", &fingerprint).await,
        200
    );
    let answers = mock.wait("POST", "/respond", 2).await;
    assert!(
        answers[1].raw.contains("Acknowledged") && !answers[1].raw.contains("Already"),
        "{}",
        answers[1].raw
    );
    app.settle().await;
    let e = app.store.open_escalations().await.unwrap()[0].clone();
    assert_eq!(e.phase.as_str(), "acknowledged");
    assert_eq!(
        (e.round, e.acked_at),
        (1, first.acked_at),
        "judged on the first"
    );
    app.stop().await;
}

/// Slack mocked, `config` with `chain` and the alert at `severity` loaded,
/// purser started and settled.
async fn started(
    chain: &str,
    severity: &str,
) -> (Arc<ChatApi>, std::net::SocketAddr, World, TestApp) {
    started_with(chain, severity, &[]).await
}

/// As [`started`], with more secret files beside the config.
async fn started_with(
    chain: &str,
    severity: &str,
    files: &[(&str, &str)],
) -> (Arc<ChatApi>, std::net::SocketAddr, World, TestApp) {
    let (mock, addr) = slack_mock().await;
    let world = World::new(
        "[[accounts]]\nid = \"acme\"\nbalance = \"¥2,000\"\n",
        Setup {
            rules: &config(addr, chain).replace(
                "severity = \"A\" }]",
                &format!("severity = \"{severity}\" }}]"),
            ),
            ..Setup::default()
        },
    )
    .await;
    for (file, text) in [("slack.secret", SECRET), ("slack.token", TOKEN)]
        .iter()
        .chain(files)
    {
        std::fs::write(world.dir.path().join(file), text).unwrap();
    }
    let app = world.start().await;
    app.settle().await;
    (mock, addr, world, app)
}

/// A B alert raised on a Sunday waits for working hours: its clock starts
/// Monday 09:00, its 30-minute step falls at 09:30, its 4-hour target at 13:00.
#[tokio::test]
async fn a_b_alert_on_a_sunday_pages_in_monday_working_hours() {
    let chain = r#"
[escalation.B]
steps = [{ after = "30m", notify = ["oncall:ops"] }]
"#;
    let (mock, _, _world, app) = started(chain, "B").await;
    let e = app.store.open_escalations().await.unwrap()[0].clone();
    assert_eq!(e.severity.as_str(), "B");
    // Sunday 08:00 Beijing; Monday 13:00 is 05:00 UTC.
    assert_eq!(e.due_at.to_rfc3339(), "2026-11-02T05:00:00+00:00");
    app.advance(Duration::hours(25)).await; // Monday 09:00
    app.advance(Duration::minutes(29)).await;
    assert!(to(&mock.calls("POST", "/api/chat.postMessage"), "U0ANA").is_empty());
    app.advance(Duration::minutes(1)).await;
    let calls = mock
        .wait_until("POST", "/api/chat.postMessage", |c| {
            !to(c, "U0ANA").is_empty()
        })
        .await
        .expect("ana paged at 09:30");
    let text = to(&calls, "U0ANA")[0].body["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains("Respond by Mon 02 Nov 13:00 CST"), "{text}");
    assert!(
        thread_lines(&calls)
            .iter()
            .any(|l| l.contains("not acknowledged after 30m of working time")),
        "{:?}",
        thread_lines(&calls)
    );
    app.stop().await;
}

/// The alert resolves after the first page: nobody else is paged, and the
/// escalation is closed.
#[tokio::test]
async fn a_resolved_alert_stops_its_chain() {
    let (mock, _, world, app) = started(CHAIN, "A").await;
    app.advance(Duration::minutes(15)).await;
    mock.wait("POST", "/api/chat.postMessage", 3).await;
    world.scenario("[[accounts]]\nid = \"acme\"\nbalance = \"¥9,000\"\n");
    app.advance(Duration::minutes(1)).await;
    assert!(app.store.open_escalations().await.unwrap().is_empty());
    app.advance(Duration::hours(2)).await;
    let calls = mock.calls("POST", "/api/chat.postMessage");
    assert!(to(&calls, "U0BO").is_empty() && to(&calls, "U0LEAD").is_empty());
    let done = app
        .store
        .escalations_since(crate::helpers::epoch())
        .await
        .unwrap();
    assert_eq!(done[0].phase.as_str(), "resolved");
    assert!(done[0].acked_at.is_none());
    app.stop().await;
}

/// A silence holds the chain: nobody is paged while it lasts; when it ends
/// with the alert still firing, the chain takes the steps that fell due.
#[tokio::test]
async fn a_silence_holds_the_chain_until_it_ends() {
    let (mock, _, world, app) = started(CHAIN, "A").await;
    let r = world
        .chat_ops(&app)
        .handle(&slack_user("U0ANA"), "silence account=acme 40m maintenance")
        .await;
    assert_eq!(r.kind, ReplyKind::Done, "{}", r.text());
    app.advance(Duration::minutes(35)).await;
    let calls = mock.calls("POST", "/api/chat.postMessage");
    assert!(
        to(&calls, "U0ANA").is_empty() && to(&calls, "U0BO").is_empty(),
        "{calls:?}"
    );
    app.advance(Duration::minutes(5)).await;
    app.advance(Duration::minutes(1)).await;
    let calls = mock
        .wait_until("POST", "/api/chat.postMessage", |c| {
            !to(c, "U0ANA").is_empty() && !to(c, "U0BO").is_empty()
        })
        .await
        .expect("the chain resumes when the silence ends");
    assert!(
        to(&calls, "U0LEAD").is_empty(),
        "the 1h step is not due yet"
    );
    app.stop().await;
}

/// After the first pass of a spell, the escalator reads the alerts written
/// since its last pass, not every open alert and chain: an acknowledgement
/// is taken up by such a pass. Every ten minutes it checks what it holds
/// against the marks of everything, and reads no more when they agree.
#[tokio::test]
async fn passes_read_what_changed_and_check_everything_every_ten_minutes() {
    use crate::operate::{by_label, get, parse};
    let chain = format!("{CHAIN}\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let (mock, addr, world, app) = started(&chain, "A").await;
    let passes = || async {
        let (_, text) = get(app.metrics.unwrap(), "/metrics").await;
        by_label(&parse(&text), "purser_escalator_passes", "read")
    };
    let open = app.store.open_escalations().await.unwrap();
    assert_eq!(open.len(), 1, "the chain is raised");
    assert_eq!(passes().await.get("all"), Some(&1.0));

    app.advance(Duration::minutes(2)).await;
    assert_eq!(
        ack_in_dm(&app, &world, addr, "U0ANA", &open[0].fingerprint).await,
        200
    );
    mock.wait("POST", "/respond", 1).await;
    app.settle().await;
    let open = app.store.open_escalations().await.unwrap();
    assert_eq!(
        open[0].phase,
        purser::domain::escalation::Phase::Acknowledged
    );
    let seen = passes().await;
    assert_eq!(seen.get("all"), Some(&1.0), "{seen:?}");
    assert!(seen.get("changes").is_some_and(|n| *n >= 1.0), "{seen:?}");

    app.advance(Duration::minutes(9)).await;
    let seen = passes().await;
    assert_eq!(seen.get("checked"), Some(&1.0), "the ten-minute check");
    assert_eq!(seen.get("all"), Some(&1.0), "held as the store has it");
    app.advance(Duration::minutes(5)).await;
    let calls = mock.calls("POST", "/api/chat.postMessage");
    assert!(to(&calls, "U0ANA").is_empty(), "acknowledged: {calls:?}");
    app.stop().await;
}

/// An acknowledgement written with a number the escalator has already read
/// past (as a commit that came in late would be) is missed by the reads of
/// changes; the ten-minute check finds the alert's mark moved, everything
/// is read again, and the chain stops before its first page.
#[tokio::test]
async fn a_write_the_reads_of_changes_missed_is_found_by_the_check() {
    use crate::operate::{by_label, get, parse};
    use purser::domain::escalation::Phase;
    let chain = format!("{CHAIN}\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let (mock, _, world, app) = started(&chain, "A").await;
    assert_eq!(app.store.open_escalations().await.unwrap().len(), 1);
    let db = world.dir.path().join("purser.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query(
        "UPDATE alerts SET acked_by = 'U0ANA', acked_at = started_at, changed = 0
         WHERE state = 'firing'",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    app.advance(Duration::minutes(2)).await;
    let open = app.store.open_escalations().await.unwrap();
    assert_eq!(open[0].phase, Phase::Walking, "a read of changes misses it");
    app.advance(Duration::minutes(9)).await;
    let open = app.store.open_escalations().await.unwrap();
    assert_eq!(open[0].phase, Phase::Acknowledged, "the check found it");
    let (_, text) = get(app.metrics.unwrap(), "/metrics").await;
    let passes = by_label(&parse(&text), "purser_escalator_passes", "read");
    assert_eq!(passes.get("all"), Some(&2.0), "{passes:?}");
    assert_eq!(passes.get("checked"), None, "{passes:?}");
    app.advance(Duration::minutes(10)).await;
    let calls = mock.calls("POST", "/api/chat.postMessage");
    assert!(to(&calls, "U0ANA").is_empty(), "nobody paged: {calls:?}");
    app.stop().await;
}

/// A silence ended early lets the chain it held go at once, not when the
/// silence would have ended.
#[tokio::test]
async fn a_silence_ended_early_lets_the_held_chain_go_at_once() {
    let (mock, _, world, app) = started(CHAIN, "A").await;
    let chat = world.chat_ops(&app);
    let r = chat
        .handle(&slack_user("U0ANA"), "silence account=acme 40m maintenance")
        .await;
    assert_eq!(r.kind, ReplyKind::Done, "{}", r.text());
    let id = r
        .text()
        .split_once('#')
        .and_then(|(_, rest)| rest.split(' ').next())
        .expect("the reply names the silence")
        .to_owned();
    // The 15-minute step fell due at 15: held.
    app.advance(Duration::minutes(20)).await;
    let calls = mock.calls("POST", "/api/chat.postMessage");
    assert!(to(&calls, "U0ANA").is_empty(), "{calls:?}");
    // As a slash command, so that the running daemon hears of it.
    let body = crate::chat::form(
        "U0BO",
        &format!("unsilence {id}"),
        "http://127.0.0.1:9/unused",
    );
    let sent = crate::chat::post_signed(&app, &body, world.clock.now().timestamp(), SECRET).await;
    assert!(
        sent.status == 200 && sent.body.contains(&format!("Silence #{id} ended")),
        "{} {}",
        sent.status,
        sent.body
    );
    app.settle().await;
    let calls = mock.calls("POST", "/api/chat.postMessage");
    assert_eq!(
        to(&calls, "U0ANA").len(),
        1,
        "the on-call person is paged as the silence ends: {calls:?}"
    );
    assert!(to(&calls, "U0BO").is_empty(), "the 30m step is not due yet");
    app.stop().await;
}

/// Two replicas on PostgreSQL; the leader dies just as its escalation pages
/// PagerDuty. The survivor takes over and the page is not lost: it arrives
/// once, or twice only when the first send was cut off before it was
/// recorded, with the same dedup key, and that repeat is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_goes_once_though_the_leader_dies_while_paging() {
    use crate::replicas::{leads, replica_config, run_for, start, take_over};
    let Some(pg) = crate::postgres::Postgres::start("a_page_goes_once").await else {
        return;
    };
    let url = pg.database().await;
    let (pagers, pagers_addr) = ChatApi::start(|_| {
        (
            202,
            json!({"status": "success", "message": "Event processed"}),
        )
    })
    .await;
    let chain = format!(
        r#"
[[pagers]]
name = "pd"
kind = "pagerduty"
routing_key = "file:pd.key"
url = "http://{pagers_addr}/v2/enqueue"

[escalation.A]
steps = [{{ after = "15m", notify = ["pager:pd"] }}]
"#
    );
    let (_slack, addr) = slack_mock().await;
    let world = World::new(
        "[[accounts]]\nid = \"acme\"\nbalance = \"¥2,000\"\n",
        Setup {
            rules: &config(addr, &chain),
            ..Setup::default()
        },
    )
    .await;
    for (file, text) in [
        ("slack.secret", SECRET),
        ("slack.token", TOKEN),
        ("pd.key", PD_KEY),
    ] {
        std::fs::write(world.dir.path().join(file), text).unwrap();
    }
    let a = start(&replica_config(&world, &url, "a"), &world.clock).await;
    leads(&a).await;
    a.settle().await;
    assert_eq!(a.store.open_escalations().await.unwrap().len(), 1);
    let b_clock = Arc::new(purser::engine::clock::ManualClock::new(world.clock.now()));
    let b = start(&replica_config(&world, &url, "b"), &b_clock).await;

    // a walks the chain to the pager step and dies as the page goes out.
    let paged = tokio::spawn({
        let pagers = pagers.clone();
        async move { pagers.wait("POST", "/v2/enqueue", 1).await }
    });
    let walking = run_for(&a, Duration::minutes(15) + Duration::seconds(5));
    tokio::select! {
        _ = walking => {}
        _ = async { paged.await.unwrap() } => {}
    }
    pagers.wait("POST", "/v2/enqueue", 1).await;
    a.crash().await;
    b_clock.set(world.clock.now());
    take_over(&b, &url, "a").await;
    b.settle().await;
    run_for(&b, Duration::minutes(1)).await;
    b.settle().await;

    let triggers: Vec<String> = pagers
        .calls("POST", "/v2/enqueue")
        .iter()
        .filter(|c| c.body["event_action"] == "trigger")
        .map(|c| c.body["dedup_key"].as_str().unwrap().to_owned())
        .collect();
    assert!(!triggers.is_empty(), "the page was lost");
    assert!(
        triggers.iter().all(|k| *k == triggers[0]),
        "one incident: {triggers:?}"
    );
    let again = b.activity.get().sent_again;
    assert!(
        triggers.len() as u64 <= 1 + again,
        "{} triggers, {again} cut off",
        triggers.len()
    );
    b.stop().await;
}
