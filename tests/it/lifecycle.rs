use std::collections::BTreeSet;

use chrono::Duration;

use crate::helpers::{Setup, World};

const BAD: &str = r#"
[[accounts]]
id = "acme"
balance = "¥2,000"
burn_per_day = "¥500"
report_spend = true
buckets = [{ name = "unallocated", kind = "unallocated", amount = "¥5,000" }]
entered = "-8d"

[[accounts.resources]]
id = "ins-manual"
product = "cvm"
expires_in = "5d"
renewal = "manual"

[[accounts.resources]]
id = "ins-auto"
product = "cvm"
expires_in = "5d"
renewal = "auto"
renewal_price = "¥9,000"

[[accounts.resources]]
id = "ins-failed"
product = "cvm"
expires_in = "-1d"
renewal = "auto"
status = "recovery"
renewal_price = "¥900"

[[accounts.orders]]
id = "order-1"
amount = "¥1,500"
created = "-6d"
deadline = "1d"

[[accounts]]
id = "blind"
balance = "¥1"
fail = "unauthorized"
"#;

const GOOD: &str = r#"
[[accounts]]
id = "acme"
balance = "¥100,000"
burn_per_day = "¥500"
report_spend = true

[[accounts.resources]]
id = "ins-manual"
product = "cvm"
expires_in = "200d"
renewal = "manual"

[[accounts.resources]]
id = "ins-auto"
product = "cvm"
expires_in = "200d"
renewal = "auto"
renewal_price = "¥9,000"

[[accounts.resources]]
id = "ins-failed"
product = "cvm"
expires_in = "200d"
renewal = "auto"
renewal_price = "¥900"

[[accounts]]
id = "blind"
balance = "¥50,000"
"#;

fn rules_with(
    hook_events: &[(String, String, String, String, String)],
    kind: &str,
) -> BTreeSet<String> {
    hook_events
        .iter()
        .filter(|e| e.0 == kind)
        .map(|e| e.1.clone())
        .collect()
}

const PEOPLE: &str = r#"
[[people]]
name = "rex"
role = "requester"
slack = "U0REX"

[[people]]
name = "ana"
role = "approver"
slack = "U0ANA"
"#;

#[tokio::test]
async fn every_rule_fires_and_resolves() {
    let (world, app) = World::running(
        BAD,
        Setup {
            accounts: &["acme", "blind"],
            rules: PEOPLE,
            ..Setup::default()
        },
    )
    .await;
    // A top-up approved, whose money will not show within Alipay's half hour.
    let chat = world.chat_ops(&app);
    let person = |user: &str| purser::engine::chatops::Asker {
        platform: "slack".into(),
        user: user.into(),
    };
    let asked = chat
        .handle(&person("U0REX"), "topup acme 2000 alipay")
        .await;
    assert!(asked.text().starts_with("R1 opened"), "{}", asked.text());
    let approved = chat.handle(&person("U0ANA"), "approve R1").await;
    assert!(
        approved.text().starts_with("R1 approved"),
        "{}",
        approved.text()
    );
    // Unallocated money is worth an alert once it has sat for an hour.
    assert!(!rules_with(&world.hook.events(), "firing").contains("unallocated_funds"));
    app.advance(Duration::minutes(61)).await;

    let fired = rules_with(&world.hook.events(), "firing");
    // Every rule about the accounts (delivery_failed, about purser's
    // outputs, and calendar_expiring, about its holiday file, have their
    // own tests).
    let all: BTreeSet<String> = purser::domain::rules::RuleName::ALL
        .iter()
        .filter(|r| {
            ![
                purser::domain::rules::RuleName::DeliveryFailed,
                purser::domain::rules::RuleName::CalendarExpiring,
            ]
            .contains(r)
        })
        .map(|r| r.as_str().to_owned())
        .collect();
    assert_eq!(fired, all, "every rule fires: {:#?}", world.hook.events());

    // The money arrives too: a poll sees it, the next sweep closes the task,
    // the next evaluation finds nothing late. A poll and a sweep due at the
    // same minute run in either order, so that takes up to three minutes.
    world.scenario(&GOOD.replace(
        "burn_per_day = \"¥500\"",
        "burn_per_day = \"¥500\"\ntopups = [{ at = \"61m\", amount = \"2000\" }]",
    ));
    for _ in 0..3 {
        app.advance(Duration::minutes(1)).await;
    }
    let resolved = rules_with(&world.hook.events(), "resolved");
    assert_eq!(
        resolved,
        all,
        "every rule resolves: {:#?}",
        world.hook.events()
    );

    // One firing and one resolved notice per alert, nothing more.
    let events = world.hook.events();
    let firing = events.iter().filter(|e| e.0 == "firing").count();
    let resolved = events.iter().filter(|e| e.0 == "resolved").count();
    assert_eq!(firing, resolved, "{events:#?}");
    assert_eq!(world.hook.rejected(), 0);
    assert_eq!(world.hook.unexpected(), 0);

    let open = app
        .store
        .all_alerts()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.resolved_at.is_none())
        .count();
    assert_eq!(open, 0);
    app.stop().await;
}

#[tokio::test]
async fn webhook_payload_is_documented_shape() {
    let (world, app) = World::running(
        BAD,
        Setup {
            accounts: &["acme", "blind"],
            ..Setup::default()
        },
    )
    .await;
    let low = world.hook.wait_for(|v| v["rule"] == "low_balance").await;
    for key in [
        "version",
        "id",
        "kind",
        "status",
        "fingerprint",
        "rule",
        "severity",
        "account",
        "summary",
        "labels",
        "started_at",
        "decided_at",
    ] {
        assert!(!low[key].is_null(), "{key} missing in {low}");
    }
    assert_eq!(low["version"], "1");
    assert_eq!(low["status"], "firing");
    assert_eq!(low["account"], "acme");
    assert_eq!(low["labels"]["env"], "prod");
    assert_eq!(low["fingerprint"].as_str().unwrap().len(), 16);
    app.stop().await;
}

fn balance_only(amount: &str) -> String {
    format!("[[accounts]]\nid = \"acme\"\nbalance = \"{amount}\"\n")
}

#[tokio::test]
async fn hysteresis_holds_at_the_threshold() {
    // One tier at ¥3,000 with a ¥200 margin: resolves only at ¥3,200 or more.
    let rules = r#"
[rules.low_balance]
tiers = [{ below = "3000", severity = "B" }]
margin = "200"
repeat = "never"
"#;
    let (world, app) = World::running(
        &balance_only("2950"),
        Setup {
            rules,
            ..Setup::default()
        },
    )
    .await;
    let count = |kind: &str| {
        world
            .hook
            .events()
            .iter()
            .filter(|e| e.1 == "low_balance" && e.0 == kind)
            .count()
    };
    assert_eq!(count("firing"), 1);

    // Hovering around the threshold, inside the margin: no flapping.
    for amount in ["3001", "2990", "3100", "3199.99", "2999"] {
        world.scenario(&balance_only(amount));
        app.advance(Duration::minutes(1)).await;
        assert_eq!((count("firing"), count("resolved")), (1, 0), "at {amount}");
    }

    world.scenario(&balance_only("3200"));
    app.advance(Duration::minutes(1)).await;
    assert_eq!((count("firing"), count("resolved")), (1, 1));
    app.stop().await;
}

#[tokio::test]
async fn tiers_escalate_and_resolve_once() {
    let (world, app) = World::running(&balance_only("2500"), Setup::default()).await;
    world.scenario(&balance_only("400"));
    app.advance(Duration::minutes(1)).await;
    world.scenario(&balance_only("90,000"));
    app.advance(Duration::minutes(1)).await;
    let events: Vec<(String, String)> = world
        .hook
        .received()
        .iter()
        .filter(|v| v["rule"] == "low_balance")
        .map(|v| {
            (
                v["kind"].as_str().unwrap().to_owned(),
                v["tier"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Warn fires, critical takes over, and one resolved notice closes the group.
    assert_eq!(
        events,
        vec![
            ("firing".to_owned(), "3000.00".to_owned()),
            ("firing".to_owned(), "500.00".to_owned()),
            ("resolved".to_owned(), "500.00".to_owned()),
        ]
    );
    let escalated = world
        .hook
        .wait_for(|v| v["tier"] == "500.00" && v["kind"] == "firing")
        .await;
    assert!(escalated["escalated_from"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn reminder_ladder_steps_fire_once_each() {
    let scenario = r#"
[[accounts]]
id = "acme"
balance = "¥90,000"

[[accounts.resources]]
id = "ins-web"
product = "cvm"
expires_in = "31d"
renewal = "manual"
"#;
    let (world, app) = World::running(scenario, Setup::default()).await;
    // Polled every six hours for 32 days: 128 polls.
    for _ in 0..128 {
        app.advance(Duration::hours(6)).await;
    }
    let steps: Vec<String> = world
        .hook
        .received()
        .iter()
        .filter(|v| v["rule"] == "expiring")
        .map(|v| {
            format!(
                "{} {}",
                v["kind"].as_str().unwrap(),
                v["tier"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            "firing 30d",
            "firing 15d",
            "firing 7d",
            "firing 3d",
            "firing 1d"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn still_firing_alerts_repeat_at_their_interval() {
    let rules = "[rules.low_balance]\nrepeat = \"4h\"\n";
    let (world, app) = World::running(
        &balance_only("2000"),
        Setup {
            rules,
            ..Setup::default()
        },
    )
    .await;
    for _ in 0..9 {
        app.advance(Duration::hours(1)).await;
    }
    let kinds: Vec<String> = world.hook.values("low_balance", "kind");
    assert_eq!(kinds, ["firing", "repeat", "repeat"]);
    app.stop().await;
}

#[tokio::test]
async fn pending_alerts_wait_before_firing() {
    let rules = "[rules.low_balance]\npending = \"10m\"\n";
    let (world, app) = World::running(
        &balance_only("2000"),
        Setup {
            rules,
            ..Setup::default()
        },
    )
    .await;
    assert!(world.hook.received().is_empty());
    // A condition that clears while pending is never announced.
    world.scenario(&balance_only("9000"));
    app.advance(Duration::minutes(5)).await;
    world.scenario(&balance_only("2000"));
    app.advance(Duration::minutes(5)).await;
    app.advance(Duration::minutes(5)).await;
    assert!(
        world.hook.received().is_empty(),
        "{:?}",
        world.hook.events()
    );
    app.advance(Duration::minutes(5)).await;
    assert_eq!(world.hook.events().len(), 1);
    app.stop().await;
}

/// purser's own alert: the holiday file no longer covers this year. It is
/// raised through the outputs under the account `purser` (and resolves at
/// the first sweep after a start with the file extended).
#[tokio::test]
async fn a_holiday_calendar_that_ran_out_is_raised_through_the_outputs() {
    let world = World::new(
        "[[accounts]]\nid = \"acme\"\nbalance = \"¥90,000\"\n",
        Setup {
            rules: "[calendar]\nholidays = \"old.toml\"\n",
            ..Setup::default()
        },
    )
    .await;
    std::fs::write(
        world.dir.path().join("old.toml"),
        "years = [2025]\n\n[[holiday]]\nname = \"National Day\"\noff = \"2025-10-01..2025-10-08\"\n",
    )
    .unwrap();
    let app = world.start().await;
    app.settle().await;
    let raised = world
        .hook
        .wait_for(|v| v["rule"] == "calendar_expiring" && v["kind"] == "firing")
        .await;
    assert_eq!(raised["account"], "purser");
    assert_eq!(raised["severity"], "C");
    let summary = raised["summary"].as_str().unwrap();
    assert!(
        summary.contains("old.toml covers 2025, not 2026") && summary.contains("add 2026"),
        "{summary}"
    );
    // Once each sweep, but a firing alert is said once.
    app.advance(Duration::minutes(3)).await;
    let firing = world
        .hook
        .received()
        .iter()
        .filter(|v| v["rule"] == "calendar_expiring" && v["kind"] == "firing")
        .count();
    assert_eq!(firing, 1);
    app.stop().await;
}

#[tokio::test]
async fn each_poll_carries_a_tally_and_the_forecast_is_what_every_poll_walked_gives() {
    use purser::domain::forecast::burn_rate;
    use purser::domain::model::{AccountId, Snapshot};
    use purser::ports::Clock;

    let (world, app) = World::running(&balance_only("10000"), Setup::default()).await;
    // Falls, a rise no top-up record explains (no spend), falls again.
    for amount in ["9900", "9750", "9800", "9600", "9550"] {
        world.scenario(&balance_only(amount));
        app.advance(Duration::minutes(20)).await;
    }
    let acme = AccountId::parse("acme").unwrap();
    let start = app.clock.now() - Duration::days(1);
    let history = app.store.history(&acme, start).await.unwrap();
    assert!(history.len() >= 6, "{} polls kept", history.len());
    let chain = history[0]
        .tally
        .as_ref()
        .expect("the first poll is tallied")
        .chain;
    assert!(
        history
            .iter()
            .all(|s| s.tally.is_some_and(|t| t.chain == chain)),
        "one chain of tallies: {history:?}"
    );
    let plain: Vec<Snapshot> = history
        .iter()
        .map(|s| Snapshot {
            tally: None,
            ..s.clone()
        })
        .collect();
    let (window, now) = (Duration::days(7), app.clock.now());
    let walked = burn_rate(&plain, window, now).expect("over an hour observed");
    // ¥100 + ¥150 + ¥200 + ¥50 spent.
    assert_eq!(
        history.last().unwrap().tally.unwrap().spent.to_string(),
        "500.00"
    );
    let views = app.store.views().await.unwrap();
    let forecast = views[&acme].forecast.as_ref().unwrap();
    assert_eq!(forecast.burn, walked);
    app.stop().await;
}
