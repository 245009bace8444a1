//! Silences and acknowledgements through the store and the running daemon.

use chrono::Duration;
use purser::adapters::sqlite::SqliteStore;
use purser::domain::command::{AlertRef, Matcher};
use purser::domain::model::{Account, AccountId};
use purser::domain::routing::Routing;
use purser::ports::{AckOutcome, Clock, EndSilenceOutcome, NewSilence, Store};

use crate::helpers::{Setup, World};

const LOW: &str = r#"
[[accounts]]
id = "acme"
balance = "¥2,000"

[[accounts]]
id = "other"
balance = "¥2,000"
"#;

fn setup() -> Setup<'static> {
    Setup {
        accounts: &["acme", "other"],
        ..Setup::default()
    }
}

#[tokio::test]
async fn a_silence_holds_back_notices_until_it_is_ended() {
    let world = World::new(LOW, setup()).await;
    // Set before purser starts, as from another replica: the first poll finds it.
    let store = SqliteStore::open(&world.dir.path().join("purser.db"))
        .await
        .unwrap();
    let silence = store
        .add_silence(
            &NewSilence {
                matchers: Matcher::parse_list("account=acme,rule=low_balance").unwrap(),
                starts_at: world.clock.now(),
                ends_at: world.clock.now() + Duration::hours(2),
                created_by: "ana".into(),
                reason: Some("wire transfer sent".into()),
            },
            &[],
            &Routing::default(),
        )
        .await
        .unwrap();
    let app = world.start().await;
    app.settle().await;

    // "other" is told; "acme" is not, though its alert fires in the store.
    let events = world.hook.events();
    assert!(
        events
            .iter()
            .any(|e| e.2 == "other" && e.1 == "low_balance"),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| e.2 == "acme"), "{events:?}");
    let acme = app
        .store
        .open_alerts(&AccountId::parse("acme").unwrap())
        .await
        .unwrap();
    assert!(acme.iter().any(|a| a.key.rule.as_str() == "low_balance"));

    let listed = app.store.silences(world.clock.now()).await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&silence));
    assert_eq!(listed[0].matchers[0].to_string(), "account=acme");

    // Ended early: the next poll tells people, once.
    let ended = app
        .store
        .end_silence(silence.id, "bo", world.clock.now())
        .await
        .unwrap();
    assert!(matches!(&ended, EndSilenceOutcome::Ended(s) if s.ended_by.as_deref() == Some("bo")));
    let again = app
        .store
        .end_silence(silence.id, "bo", world.clock.now())
        .await
        .unwrap();
    assert!(
        matches!(again, EndSilenceOutcome::AlreadyOver(_)),
        "{again:?}"
    );
    assert_eq!(
        app.store
            .end_silence(999, "bo", world.clock.now())
            .await
            .unwrap(),
        EndSilenceOutcome::NotFound
    );
    app.advance(Duration::minutes(1)).await;
    let acme_notices = world
        .hook
        .events()
        .into_iter()
        .filter(|e| e.2 == "acme" && e.1 == "low_balance")
        .count();
    assert_eq!(acme_notices, 1);
    assert!(
        app.store
            .silences(world.clock.now())
            .await
            .unwrap()
            .is_empty()
    );
    app.stop().await;
}

#[tokio::test]
async fn an_acknowledgement_counts_once_and_needs_an_unambiguous_id() {
    let (world, app) = World::running(LOW, setup()).await;
    let open = app
        .store
        .open_alerts(&AccountId::parse("acme").unwrap())
        .await
        .unwrap();
    let fp = open[0].fingerprint.clone();
    let at = world.clock.now();

    let by_prefix = AlertRef::parse(&fp[..8]).unwrap();
    let acme = [Account {
        id: AccountId::parse("acme").unwrap(),
        provider: "sim".into(),
        site: "cn".into(),
        labels: Default::default(),
    }];
    let outputs = Routing::everywhere(&["hook".to_owned()]);
    let first = app
        .store
        .acknowledge(&by_prefix, "ana", at, &acme, &outputs)
        .await
        .unwrap();
    let AckOutcome::Acknowledged(a) = first else {
        panic!("{first:?}")
    };
    assert_eq!(a.acknowledged.as_ref().unwrap().by, "ana");
    // A second click, by anyone: nothing changes, and it says who was first.
    let second = app
        .store
        .acknowledge(&AlertRef::parse(&fp).unwrap(), "bo", at, &acme, &outputs)
        .await
        .unwrap();
    let AckOutcome::AlreadyAcknowledged(a) = second else {
        panic!("{second:?}")
    };
    assert_eq!(a.acknowledged.unwrap().by, "ana");

    let unknown = AlertRef::parse("ffffffffffffffff").unwrap();
    let none = app
        .store
        .acknowledge(&unknown, "ana", at, &acme, &outputs)
        .await
        .unwrap();
    assert_eq!(none, AckOutcome::NotFound);
    // Acknowledged: no repeat after the 4-hour interval.
    let before = world.hook.values("low_balance", "kind").len();
    app.advance(Duration::hours(5)).await;
    let kinds: Vec<String> = world
        .hook
        .received()
        .iter()
        .filter(|v| v["fingerprint"] == fp.as_str())
        .map(|v| v["kind"].as_str().unwrap().to_owned())
        .collect();
    // One acknowledged notice (queued with the ack; the second ack added
    // none), and no repeat.
    assert_eq!(kinds, ["firing", "acknowledged"], "{kinds:?}");
    assert!(
        world.hook.values("low_balance", "kind").len() > before,
        "other still repeats"
    );
    app.stop().await;
}
