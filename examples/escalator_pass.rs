//! Measures the escalator at a fleet's worst: ALERTS alerts firing at once,
//! each walking its chain, on a SQLite file. Prints the wall and CPU time of
//! the passes that matter:
//!
//! - the pass that raises every chain;
//! - a pass with nothing changed (what an unrelated outbox write costs);
//! - a pass after one alert is acknowledged;
//! - a pass that reads every alert and chain (a spell's first);
//! - a pass that checks every alert's and chain's mark (the safety net
//!   every ten minutes);
//! - the pass at which every chain's first step falls due at once.
//!
//!     cargo run --release --example escalator_pass -- [ALERTS]
//!
//! Default: 10,000 alerts on 10,000 accounts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use process::cpu_seconds;
use purser::adapters::sqlite::SqliteStore;
use purser::config::Config;
use purser::domain::alert::{Alert, AlertState, Changes};
use purser::domain::command::AlertRef;
use purser::domain::rules::{AlertKey, RuleName, Severity};
use purser::engine::activity::Activity;
use purser::engine::clock::SystemClock;
use purser::engine::escalator::{Escalator, Passes};
use purser::engine::leadership::Gate;
use purser::ports::{NoMeter, Store};
use purser::startup::escalation_settings;

#[path = "support/process.rs"]
mod process;

/// Runs `times` passes at `now`, and prints their mean wall and CPU time.
/// `fresh`: each pass begins a spell, reading everything.
async fn measure(
    what: &str,
    escalator: &Escalator,
    passes: &mut Passes,
    now: DateTime<Utc>,
    times: u32,
    fresh: bool,
) {
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    for _ in 0..times {
        if fresh {
            *passes = Passes::default();
        }
        escalator.walk(passes, now).await.unwrap();
    }
    let n = f64::from(times);
    println!(
        "{what:<44} wall {:>9.3} ms, cpu {:>9.3} ms per pass ({times} passes)",
        wall.elapsed().as_secs_f64() * 1000.0 / n,
        (cpu_seconds() - cpu) * 1000.0 / n,
    );
}

#[tokio::main]
async fn main() {
    let alerts: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let mut config = String::from(
        "[store]\npath = \"bench.db\"\n\
         [[outputs]]\nname = \"ops\"\nkind = \"slack\"\nchannel = \"C0OPS\"\ntoken = \"file:slack.token\"\n\
         [[people]]\nname = \"ana\"\nrole = \"approver\"\nslack = \"U0ANA\"\n\
         [[people]]\nname = \"bo\"\nrole = \"approver\"\nslack = \"U0BO\"\n\
         [response.A]\nwithin = \"4h\"\nclock = \"always\"\n\
         [[schedules]]\nname = \"ops\"\nrotation = \"weekly\"\nhandoff = \"mon 10:00\"\n\
         start = \"2026-10-26\"\npeople = [\"ana\", \"bo\"]\n\
         [escalation.A]\nsteps = [\n\
         { after = \"15m\", notify = [\"oncall:ops\"] },\n\
         { after = \"30m\", notify = [\"secondary:ops\"] },\n]\n\
         [[providers]]\nname = \"sim\"\nkind = \"simulated\"\nscenario = \"scenario.toml\"\n",
    );
    let mut scenario = String::new();
    for a in 0..alerts {
        writeln!(
            config,
            "[[accounts]]\nid = \"acct-{a:05}\"\nprovider = \"sim\""
        )
        .unwrap();
        writeln!(
            scenario,
            "[[accounts]]\nid = \"acct-{a:05}\"\nbalance = \"100\""
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("scenario.toml"), scenario).unwrap();
    // Read, never used: the bench sends nothing.
    std::fs::write(dir.path().join("slack.token"), "xoxb-bench").unwrap();
    let config =
        Config::parse(&config, &dir.path().join("bench.toml")).unwrap_or_else(|e| panic!("{e}"));
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("bench.db"))
            .await
            .unwrap(),
    );
    let routing = Arc::new(config.routing());
    let accounts: HashMap<String, _> = config
        .accounts
        .iter()
        .map(|a| (a.account.id.to_string(), a.account.clone()))
        .collect();

    // Monday 2 November 2026, 09:00 UTC: every alert fires at once.
    let t0 = Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap();
    let setup = Instant::now();
    let mut first = None;
    for a in config.accounts.iter() {
        let key = AlertKey {
            rule: RuleName::LowBalance,
            account: a.account.id.to_string(),
            resource: String::new(),
            tier: "0".into(),
        };
        let alert = Alert {
            fingerprint: key.fingerprint(),
            key,
            severity: Severity::A,
            rank: 0,
            state: AlertState::Firing,
            summary: "balance 100.00 CNY is below 3,000.00 CNY".into(),
            started_at: t0,
            fired_at: Some(t0),
            last_notified_at: Some(t0),
            resolved_at: None,
            acknowledged: None,
        };
        first.get_or_insert_with(|| alert.fingerprint.clone());
        let changes = Changes {
            alerts: vec![alert],
            notices: Vec::new(),
        };
        store.apply(&a.account, &changes, &routing).await.unwrap();
    }
    println!(
        "{alerts} alerts firing, stored in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let escalator = Escalator {
        store: store.clone(),
        escalations: store.clone(),
        clock: Arc::new(SystemClock),
        settings: Arc::new(escalation_settings(&config)),
        accounts: Arc::new(accounts),
        routing: routing.clone(),
        direct: HashMap::new(),
        pagers: HashMap::new(),
        written: Arc::new(tokio::sync::Notify::new()),
        activity: Activity::new(),
        gate: Gate::sole(),
        meter: Arc::new(NoMeter),
    };
    let mut passes = Passes::default();
    let at = |m: i64| t0 + Duration::minutes(m);
    measure(
        "raise every chain",
        &escalator,
        &mut passes,
        at(1),
        1,
        false,
    )
    .await;
    measure("nothing changed", &escalator, &mut passes, at(2), 20, false).await;
    let alert = AlertRef::parse(&first.unwrap()).unwrap();
    store
        .acknowledge(
            &alert,
            "ana",
            at(3),
            &config
                .accounts
                .iter()
                .map(|a| a.account.clone())
                .collect::<Vec<_>>(),
            &routing,
        )
        .await
        .unwrap();
    measure(
        "one alert acknowledged",
        &escalator,
        &mut passes,
        at(3),
        1,
        false,
    )
    .await;
    measure(
        "nothing changed, again",
        &escalator,
        &mut passes,
        at(4),
        20,
        false,
    )
    .await;
    measure(
        "every alert and chain read",
        &escalator,
        &mut passes,
        at(4),
        10,
        true,
    )
    .await;
    measure(
        "the ten-minute check of every mark",
        &escalator,
        &mut passes,
        at(14),
        1,
        false,
    )
    .await;
    measure(
        "every first step due at once",
        &escalator,
        &mut passes,
        at(15),
        1,
        false,
    )
    .await;
    measure(
        "nothing changed, after the steps",
        &escalator,
        &mut passes,
        at(16),
        20,
        false,
    )
    .await;
}
