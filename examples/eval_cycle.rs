//! Measures evaluation cycles of the real engine: every account polled from
//! the simulated provider, its snapshot stored, its rules evaluated and its
//! alert changes committed, on a SQLite file, or on PostgreSQL when
//! `PURSER_STORE_URL` names an empty database (then as the one replica,
//! leading under a lease renewed as the clock moves).
//!
//!     cargo run --release --example eval_cycle -- [ACCOUNTS] [RESOURCES_PER_ACCOUNT] [CYCLES]
//!
//! Defaults: 10,000 accounts with 20 resources each (200,000 resources),
//! three hourly cycles. More cycles measure judging with a deeper history
//! (the runway window is 7 days: 168 hourly snapshots an account).
//! Prints wall and CPU time per cycle and the process's peak resident memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant, SystemTime};

use chrono::{Duration, TimeZone, Utc};
use process::{cpu_seconds, peak_rss_mib};
use purser::config::Config;
use purser::engine::clock::ManualClock;
use purser::ports::Clock;
use purser::startup::Application;

#[path = "support/process.rs"]
mod process;

fn scenario(accounts: usize, per_account: usize) -> String {
    let mut s = String::from("epoch = \"2026-11-01T00:00:00Z\"\n");
    for a in 0..accounts {
        // Balances from ¥200 to ¥60,000, so some accounts run low.
        let balance = 200 + (a * 7919) % 60_000;
        let burn = 50 + (a * 31) % 900;
        writeln!(s, "\n[[accounts]]\nid = \"acct-{a:05}\"\nbalance = \"{balance}\"\nburn_per_day = \"{burn}\"\nreport_spend = true").unwrap();
        for r in 0..per_account {
            let days = 1 + (a * 13 + r * 17) % 400;
            let renewal = if r % 3 == 0 { "auto" } else { "manual" };
            let price = 100 + (r * 97) % 5000;
            writeln!(
                s,
                "[[accounts.resources]]\nid = \"ins-{a:05}-{r:03}\"\nproduct = \"cvm\"\nexpires_in = \"{days}d\"\nrenewal = \"{renewal}\"\nrenewal_price = \"{price}\""
            )
            .unwrap();
        }
    }
    s
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let accounts: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let per_account: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let cycles: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let scenario_path = dir.path().join("scenario.toml");
    std::fs::write(&scenario_path, scenario(accounts, per_account)).unwrap();
    // An old mtime: the provider trusts size and mtime and skips re-hashing.
    let old = SystemTime::now() - StdDuration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&scenario_path)
        .unwrap()
        .set_modified(old)
        .unwrap();

    let mut config = format!(
        "[store]\npath = \"{}\"\n[scheduler]\nschedule = \"0 0 * * * *\"\njitter = \"0s\"\n\
         [[providers]]\nname = \"sim\"\nkind = \"simulated\"\nscenario = \"scenario.toml\"\nconcurrency = 64\n",
        dir.path().join("bench.db").display()
    );
    let replica = std::env::var_os("PURSER_STORE_URL").is_some();
    if replica {
        config.push_str("[ha]\nlease = \"10m\"\n");
    }
    for a in 0..accounts {
        writeln!(
            config,
            "[[accounts]]\nid = \"acct-{a:05}\"\nprovider = \"sim\""
        )
        .unwrap();
    }
    let config =
        Config::parse(&config, &dir.path().join("bench.toml")).unwrap_or_else(|e| panic!("{e}"));

    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
    ));
    let app = Application::build(config, clock.clone(), Default::default())
        .await
        .unwrap();
    let activity = app.activity();
    let store = app.store();
    let mut role = app.role();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    println!(
        "{accounts} accounts, {} resources, on {}",
        accounts * per_account,
        if replica { "PostgreSQL" } else { "SQLite" }
    );
    for cycle in 1..=cycles {
        if cycle > 1 {
            if replica {
                // A minute at a time, each once the lease was renewed within
                // the last third of its term (10 min): an hour in one jump
                // would read as a pause, and the lead would be given up.
                for _ in 0..60 {
                    clock.advance(Duration::minutes(1));
                    let fresh = clock.now() + Duration::seconds(400);
                    role.wait_for(|r| {
                        matches!(r, purser::engine::leadership::Role::Leader { lead, .. } if lead.expires_at > fresh)
                    })
                    .await
                    .unwrap();
                }
            } else {
                clock.advance(Duration::hours(1));
            }
        }
        let t = clock.now();
        let (wall, cpu) = (Instant::now(), cpu_seconds());
        activity
            .subscribe()
            .wait_for(|s| s.quiet_at(t))
            .await
            .unwrap();
        println!(
            "cycle {cycle}: wall {:.2} s, cpu {:.2} s, peak RSS {:.0} MiB",
            wall.elapsed().as_secs_f64(),
            cpu_seconds() - cpu,
            peak_rss_mib()
        );
    }
    let alerts = store.all_alerts().await.unwrap();
    println!("alerts recorded: {}", alerts.len());
    if !replica {
        // The store's file and its write-ahead log, as they stand.
        let size: u64 = ["bench.db", "bench.db-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.path().join(f)).ok())
            .map(|m| m.len())
            .sum();
        println!("store file: {:.0} MiB", size as f64 / 1048576.0);
    }
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
