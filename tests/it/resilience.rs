use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Duration;
use purser::domain::model::{Account, Snapshot};
use purser::ports::{Provider, ProviderError};
use tokio::sync::Semaphore;

use crate::helpers::{Setup, World};

const LOW: &str = r#"
[[accounts]]
id = "acme"
balance = "¥2,000"
burn_per_day = "¥100"
report_spend = true

[[accounts.resources]]
id = "ins-web"
product = "cvm"
expires_in = "5d"
renewal = "manual"
"#;

#[tokio::test]
async fn a_restart_sends_nothing_twice() {
    let (world, app) = World::running(LOW, Setup::default()).await;
    let before = world.hook.received().len();
    assert!(before >= 2, "{:?}", world.hook.events());
    app.stop().await;

    world.clock.advance(Duration::minutes(3));
    let app = world.start().await;
    app.settle().await;
    app.advance(Duration::minutes(1)).await;
    assert_eq!(
        world.hook.received().len(),
        before,
        "{:?}",
        world.hook.events()
    );
    // And it did not forget: the alerts are still open, and resolve once.
    world.scenario("[[accounts]]\nid = \"acme\"\nbalance = \"¥90,000\"\n");
    app.advance(Duration::minutes(1)).await;
    let resolved = world
        .hook
        .events()
        .iter()
        .filter(|e| e.0 == "resolved")
        .count();
    assert_eq!(resolved, before);
    app.stop().await;
}

#[tokio::test]
async fn a_crash_between_commit_and_send_loses_nothing() {
    let world = World::new(LOW, Setup::default()).await;
    // The receiver is down for the first run: decisions are committed, not sent.
    world.hook.fail_next(usize::MAX);
    let app = world.start().await;
    app.settle().await;
    assert!(world.hook.received().is_empty());
    let decided = app.store.outbox().await.unwrap();
    assert!(decided.len() >= 2);
    assert!(decided.iter().all(|(_, _, delivered)| !delivered));
    app.crash().await;

    world.hook.fail_next(0);
    let app = world.start().await;
    // The retry falls due after the backoff.
    app.advance(Duration::seconds(10)).await;
    let got = world.hook.received();
    let ids: HashSet<&str> = got.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), got.len(), "a notice was delivered twice");
    let expected: HashSet<&str> = decided.iter().map(|(_, n, _)| n.id.as_str()).collect();
    assert_eq!(ids, expected);
    assert!(app.store.outbox().await.unwrap().iter().all(|(_, _, d)| *d));
    app.stop().await;
}

#[tokio::test]
async fn a_failed_delivery_is_retried_until_it_goes_through() {
    let world = World::new(LOW, Setup::default()).await;
    world.hook.fail_next(3);
    let app = world.start().await;
    app.settle().await;
    for _ in 0..6 {
        app.advance(Duration::seconds(40)).await;
    }
    let got = world.hook.received();
    let ids: HashSet<&str> = got.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), got.len());
    assert!(got.iter().any(|v| v["rule"] == "low_balance"));
    assert!(got.iter().any(|v| v["rule"] == "expiring"));
    app.stop().await;
}

/// A provider that does not answer for one account until released.
struct Stuck {
    inner: Arc<dyn Provider>,
    stuck: String,
    release: Arc<Semaphore>,
}

#[async_trait]
impl Provider for Stuck {
    async fn poll(&self, account: &Account) -> Result<Snapshot, ProviderError> {
        if account.id.as_str() == self.stuck {
            let _ = self.release.acquire().await;
        }
        self.inner.poll(account).await
    }
}

const THREE: &str = r#"
[[accounts]]
id = "slow"
balance = "¥2,000"

[[accounts]]
id = "broken"
balance = "¥2,000"
fail = "transport"

[[accounts]]
id = "fine"
balance = "¥2,000"
"#;

#[tokio::test]
async fn a_slow_or_failing_account_does_not_stall_the_others() {
    let setup = Setup {
        accounts: &["slow", "broken", "fine"],
        concurrency: 2,
        timeout: "1m",
        ..Setup::default()
    };
    let world = World::new(THREE, setup).await;
    let path = world.dir.path().join("scenario.toml");
    let sim = purser::startup::build_provider(
        &purser::config::ProviderKind::Simulated { scenario: path },
        &HashMap::new(),
        world.clock.clone(),
        None,
    );
    let release = Arc::new(Semaphore::new(0));
    let stuck: Arc<dyn Provider> = Arc::new(Stuck {
        inner: sim,
        stuck: "slow".into(),
        release: release.clone(),
    });
    let app = world
        .start_with(HashMap::from([("sim".to_owned(), stuck)]))
        .await;

    // While "slow" hangs, the others are read, judged and announced.
    world
        .hook
        .wait_for(|v| v["account"] == "fine" && v["rule"] == "low_balance")
        .await;
    world
        .hook
        .wait_for(|v| v["account"] == "broken" && v["rule"] == "poll_failed")
        .await;
    assert_eq!(app.activity.get().polls_in_flight, 1);

    // The poll timeout frees it: purser says it is blind to "slow".
    world.clock.advance(Duration::minutes(1));
    let blind = world
        .hook
        .wait_for(|v| v["account"] == "slow" && v["rule"] == "poll_failed")
        .await;
    assert!(
        blind["summary"]
            .as_str()
            .unwrap()
            .contains("no answer within"),
        "{blind}"
    );
    release.add_permits(Semaphore::MAX_PERMITS);
    app.stop().await;
}

#[tokio::test]
async fn garbage_keeps_the_last_good_snapshot_and_says_when_blind() {
    let scenario = r#"
[[accounts]]
id = "acme"
balance = "¥2,000"
outages = [{ from = "1m", until = "2h", error = "garbage" }]
"#;
    let (world, app) = World::running(scenario, Setup::default()).await;
    assert_eq!(world.hook.events().len(), 1, "{:?}", world.hook.events());

    // Unreadable for 29 minutes: the low-balance alert stays, nothing new is said.
    for _ in 0..29 {
        app.advance(Duration::minutes(1)).await;
    }
    assert_eq!(world.hook.events().len(), 1, "{:?}", world.hook.events());
    // At 30 minutes blind, purser says so; the balance alert is still open.
    app.advance(Duration::minutes(2)).await;
    let blind = world.hook.wait_for(|v| v["rule"] == "poll_failed").await;
    assert!(
        blind["summary"]
            .as_str()
            .unwrap()
            .contains("could not be understood"),
        "{blind}"
    );
    let open: Vec<String> = app
        .store
        .all_alerts()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.resolved_at.is_none())
        .map(|a| a.key.rule.as_str().to_owned())
        .collect();
    assert!(open.contains(&"low_balance".to_owned()), "{open:?}");

    // Readable again: the blind alert resolves.
    app.advance(Duration::hours(2)).await;
    world
        .hook
        .wait_for(|v| v["rule"] == "poll_failed" && v["kind"] == "resolved")
        .await;
    app.stop().await;
}

#[tokio::test]
async fn a_malformed_scenario_entry_spoils_only_its_account() {
    let scenario = r#"
[[accounts]]
id = "acme"
balance = "¥2,000"

[[accounts]]
id = "other"
balance = "5,00.0"
"#;
    let (world, app) = World::running(
        scenario,
        Setup {
            accounts: &["acme", "other"],
            ..Setup::default()
        },
    )
    .await;
    let blind = world
        .hook
        .wait_for(|v| v["account"] == "other" && v["rule"] == "poll_failed")
        .await;
    assert!(
        blind["summary"].as_str().unwrap().contains("5,00.0"),
        "{blind}"
    );
    world
        .hook
        .wait_for(|v| v["account"] == "acme" && v["rule"] == "low_balance")
        .await;
    app.stop().await;
}

/// A provider that panics for one account while `panicking` holds, as an
/// overflow deep in an adapter would.
struct Panicky {
    inner: Arc<dyn Provider>,
    account: String,
    panicking: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait]
impl Provider for Panicky {
    async fn poll(&self, account: &Account) -> Result<Snapshot, ProviderError> {
        if account.id.as_str() == self.account
            && self.panicking.load(std::sync::atomic::Ordering::SeqCst)
        {
            panic!("attempt to add with overflow");
        }
        self.inner.poll(account).await
    }
}

#[tokio::test]
async fn a_poll_that_panics_is_a_failed_poll_and_polling_goes_on() {
    let scenario = "[[accounts]]\nid = \"acme\"\nbalance = \"¥2,000\"\n\n[[accounts]]\nid = \"fine\"\nbalance = \"¥90,000\"\n";
    let world = World::new(
        scenario,
        Setup {
            accounts: &["acme", "fine"],
            ..Setup::default()
        },
    )
    .await;
    let sim = purser::startup::build_provider(
        &purser::config::ProviderKind::Simulated {
            scenario: world.dir.path().join("scenario.toml"),
        },
        &HashMap::new(),
        world.clock.clone(),
        None,
    );
    let panicking = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let provider: Arc<dyn Provider> = Arc::new(Panicky {
        inner: sim,
        account: "acme".into(),
        panicking: panicking.clone(),
    });
    let app = world
        .start_with(HashMap::from([("sim".to_owned(), provider)]))
        .await;
    app.settle().await;
    // Each minute's poll of acme panics: purser says at once that it is
    // blind (it never read acme), naming what went wrong, and keeps polling.
    for _ in 0..31 {
        app.advance(Duration::minutes(1)).await;
    }
    let blind = world
        .hook
        .wait_for(|v| v["account"] == "acme" && v["rule"] == "poll_failed")
        .await;
    let summary = blind["summary"].as_str().unwrap();
    assert!(
        summary.contains("attempt to add with overflow"),
        "{summary}"
    );
    assert_eq!(app.activity.get().polls_in_flight, 0);
    // Mended, acme is read again at the next tick: it was never dropped.
    panicking.store(false, std::sync::atomic::Ordering::SeqCst);
    app.advance(Duration::minutes(1)).await;
    world
        .hook
        .wait_for(|v| v["account"] == "acme" && v["rule"] == "low_balance")
        .await;
    world
        .hook
        .wait_for(|v| {
            v["account"] == "acme" && v["rule"] == "poll_failed" && v["kind"] == "resolved"
        })
        .await;
    app.stop().await;
}

#[tokio::test]
async fn an_expiry_beyond_any_date_in_the_cloud_answer_is_a_failed_poll_not_a_panic() {
    let scenario = r#"
[[accounts]]
id = "acme"
balance = "¥90,000"

[[accounts.resources]]
id = "ins-web"
product = "cvm"
expires_in = "99999999999999d"
renewal = "manual"
"#;
    let (world, app) = World::running(scenario, Setup::default()).await;
    for _ in 0..31 {
        app.advance(Duration::minutes(1)).await;
    }
    let blind = world.hook.wait_for(|v| v["rule"] == "poll_failed").await;
    let summary = blind["summary"].as_str().unwrap();
    assert!(summary.contains("99999999999999d"), "{summary}");
    assert!(summary.contains("never read successfully"), "{summary}");
    // Fixed, it is read at the next tick.
    world.scenario("[[accounts]]\nid = \"acme\"\nbalance = \"¥90,000\"\n");
    app.advance(Duration::minutes(1)).await;
    world
        .hook
        .wait_for(|v| v["rule"] == "poll_failed" && v["kind"] == "resolved")
        .await;
    app.stop().await;
}
