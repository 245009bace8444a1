//! Two replicas of the daemon in one process, each with its own pool, clock
//! and outputs, on one PostgreSQL database: the leader is killed at random
//! points while it sends, and the survivor takes over. Every notice reaches
//! the receiver; one arrives twice only when its send was cut off by the
//! kill, with the same id, and each such repeat is counted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::Duration;
use purser::engine::clock::ManualClock;
use purser::engine::leadership::Role;
use purser::ports::Clock;

use crate::helpers::{Setup, TestApp, World};
use crate::postgres::Postgres;

/// A guard against a hang, not a wait.
const GUARD: std::time::Duration = std::time::Duration::from_secs(30);

const LEASE_SECS: i64 = 15;

/// The world's config on the database at `url`, as replica `name`.
pub(crate) fn replica_config(world: &World, url: &str, name: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(world.config_path()).unwrap();
    let start = text.find("[store]").unwrap();
    let end = start + text[start..].find("\n\n").unwrap();
    let text = format!(
        "{}[store]\nurl = \"{url}\"\npool = 4\n\n[ha]\nlease = \"{LEASE_SECS}s\"\nname = \"{name}\"{}",
        &text[..start],
        &text[end..]
    );
    let path = world.dir.path().join(format!("purser-{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `n` accounts, each low on money with two instances expiring: three
/// alerts apiece at the first poll.
fn scenario(n: usize, balance: &str, expiring: bool) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "[[accounts]]\nid = \"acct-{i:02}\"\nbalance = \"{balance}\"\n"
        ));
        if expiring {
            for r in ["a", "b"] {
                s.push_str(&format!(
                    "[[accounts.resources]]\nid = \"ins-{i:02}-{r}\"\nproduct = \"cvm\"\nexpires_in = \"5d\"\nrenewal = \"manual\"\n"
                ));
            }
        }
    }
    s
}

pub(crate) async fn start(path: &std::path::Path, clock: &Arc<ManualClock>) -> TestApp {
    TestApp::start(path, clock.clone(), Default::default()).await
}

/// Waits until `app` leads.
pub(crate) async fn leads(app: &TestApp) {
    let mut role = app.role.clone();
    tokio::time::timeout(GUARD, role.wait_for(|r| matches!(r, Role::Leader { .. })))
        .await
        .expect("never led")
        .unwrap();
}

/// Waits until `app` stands by under a leader it has read.
pub(crate) async fn stands_by(app: &TestApp) {
    let mut role = app.role.clone();
    tokio::time::timeout(
        GUARD,
        role.wait_for(|r| {
            matches!(
                r,
                Role::Standby {
                    leader: Some(_),
                    ..
                }
            )
        }),
    )
    .await
    .expect("never read who leads")
    .unwrap();
}

/// Keeps the leader's clock moving for `by`, a third of the lease at a
/// time, each step once its lease was renewed (as a running replica's
/// clock moves, never in one jump that reads as a pause).
pub(crate) async fn run_for(app: &TestApp, by: Duration) {
    let end = app.clock.now() + by;
    while app.clock.now() < end {
        app.clock.advance(Duration::seconds(LEASE_SECS / 3));
        let now = app.clock.now();
        let mut role = app.role.clone();
        tokio::time::timeout(
            GUARD,
            // Renewed at this step: an earlier renewal's lease may still
            // outlast `now`, and the clock must not run ahead of the elector.
            role.wait_for(|r| {
                matches!(r, Role::Leader { lead, .. }
                    if lead.expires_at >= now + Duration::seconds(LEASE_SECS))
            }),
        )
        .await
        .expect("the leader did not renew")
        .unwrap();
    }
}

/// The dead leader's lease, as the database holds it.
async fn lease_of(url: &str) -> purser::ports::Lead {
    let store = purser::adapters::postgres::PgStore::open(url, None, 1)
        .await
        .unwrap();
    let lead = store.leader().await.unwrap().expect("someone led");
    store.close().await;
    lead
}

/// Moves the standby's clock to a third of a lease past the dead leader's
/// expiry (its election wakes every third), and waits until it leads: the
/// lead moved within the lease and a third of the leader's last renewal.
pub(crate) async fn take_over(app: &TestApp, url: &str, dead: &str) {
    let lease = lease_of(url).await;
    assert_eq!(lease.holder, dead);
    app.clock
        .set(lease.expires_at + Duration::seconds(LEASE_SECS / 3));
    leads(app).await;
    let now = lease_of(url).await;
    assert_eq!(now.token, lease.token + 1, "the next fencing token");
}

/// Every notice queued was received at least once; any received twice was
/// cut off mid-send (counted by the replica that sent it again).
async fn every_notice_once_or_cut_off(world: &World, app: &TestApp, sent_again: u64) {
    let queued: BTreeSet<String> = app
        .store
        .outbox()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, n, delivered)| {
            assert!(delivered, "{} was never delivered", n.id);
            n.id
        })
        .collect();
    let mut times: BTreeMap<String, u64> = BTreeMap::new();
    for v in world.hook.received() {
        *times
            .entry(v["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let received: BTreeSet<String> = times.keys().cloned().collect();
    assert_eq!(received, queued, "what was queued is what arrived");
    let repeats: u64 = times.values().map(|n| n - 1).sum();
    assert!(
        repeats <= sent_again,
        "{repeats} notices arrived twice, but only {sent_again} sends were cut off: {times:?}"
    );
    assert!(times.values().all(|n| *n <= 2), "{times:?}");
    assert_eq!(world.hook.rejected(), 0);
}

/// A database, two accounts low on money with instances expiring, and
/// replica `a` leading on them, its first notices sent.
async fn two_accounts_led_by_a(test: &str) -> Option<(Postgres, String, World, TestApp)> {
    let pg = Postgres::start(test).await?;
    let url = pg.database().await;
    let world = World::new(
        &scenario(2, "¥2,000", true),
        Setup {
            accounts: &["acct-00", "acct-01"],
            ..Setup::default()
        },
    )
    .await;
    let a = start(&replica_config(&world, &url, "a"), &world.clock).await;
    leads(&a).await;
    a.settle().await;
    Some((pg, url, world, a))
}

/// A tiny deterministic generator: the kill points of one seed.
fn kill_points(seed: u64, n: usize, max: usize) -> Vec<usize> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            1 + (x >> 33) as usize % max
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_killed_mid_storm_is_replaced_and_every_notice_arrives() {
    let Some(pg) = Postgres::start("the_leader_killed_mid_storm").await else {
        return;
    };
    const ACCOUNTS: usize = 12;
    let names: Vec<String> = (0..ACCOUNTS).map(|i| format!("acct-{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for seed in [0x5eed_0001_u64, 0x5eed_0002] {
        let url = pg.database().await;
        let world = World::new(
            &scenario(ACCOUNTS, "¥2,000", true),
            Setup {
                accounts: &names,
                concurrency: 8,
                ..Setup::default()
            },
        )
        .await;
        let (path_a, path_b) = (
            replica_config(&world, &url, "a"),
            replica_config(&world, &url, "b"),
        );
        let [first, second] = kill_points(seed, 2, ACCOUNTS * 3)[..] else {
            unreachable!()
        };
        // a starts first and leads; b stands by on its own clock.
        let a = start(&path_a, &world.clock).await;
        leads(&a).await;
        let b_clock = Arc::new(ManualClock::new(world.clock.now() + Duration::seconds(1)));
        let b = start(&path_b, &b_clock).await;
        assert_eq!(b.role.borrow().name(), "standby");

        // a is killed once `first` notices of the storm have arrived.
        world.hook.wait_for_count(first).await;
        a.crash().await;
        take_over(&b, &url, "a").await;
        b.settle().await;
        let again = b.activity.get().sent_again;
        every_notice_once_or_cut_off(&world, &b, again).await;
        let wave = world.hook.received().len();
        assert!(wave >= ACCOUNTS * 3, "{wave} notices");

        // a comes back as a standby; everything resolves, and b is killed
        // in the middle of sending that.
        let a_clock = Arc::new(ManualClock::new(b_clock.now()));
        let a = start(&path_a, &a_clock).await;
        assert_eq!(a.role.borrow().name(), "standby");
        world.scenario(&scenario(ACCOUNTS, "¥900,000", false));
        let polled = tokio::spawn({
            let hook = world.hook.clone();
            async move { hook.wait_for_count(wave + second).await }
        });
        run_for(&b, Duration::seconds(60)).await;
        polled.await.unwrap();
        let again_b = b.activity.get().sent_again;
        b.crash().await;
        a_clock.set(b_clock.now());
        take_over(&a, &url, "b").await;
        a.settle().await;
        let again = again_b + a.activity.get().sent_again;
        every_notice_once_or_cut_off(&world, &a, again).await;
        let resolved = world
            .hook
            .received()
            .iter()
            .filter(|v| v["kind"] == "resolved")
            .map(|v| v["id"].as_str().unwrap().to_owned())
            .collect::<BTreeSet<_>>();
        assert_eq!(resolved.len(), ACCOUNTS * 3, "every alert resolved once");
        a.stop().await;
    }
}

/// A leader paused past its lease (its clock and work frozen) is replaced;
/// when it wakes, with a poll due at once by its clock, it writes nothing,
/// sends nothing, and stands by.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_leader_that_wakes_writes_and_sends_nothing() {
    let Some((_pg, url, world, a)) = two_accounts_led_by_a("a_paused_leader_that_wakes").await
    else {
        return;
    };
    let path_b = replica_config(&world, &url, "b");
    let before = world.hook.received().len();
    assert_eq!(before, 6);
    // a freezes; b takes over and carries on.
    let b_clock = Arc::new(ManualClock::new(world.clock.now()));
    let b = start(&path_b, &b_clock).await;
    take_over(&b, &url, "a").await;
    b.settle().await;
    assert_eq!(world.hook.received().len(), before, "nothing new to say");
    // The money runs lower; b, leading, polls a minute on and says so. a
    // wakes 90 s on, clocks in step, every poll of its overdue.
    world.scenario(&scenario(2, "¥10", true));
    run_for(&b, Duration::seconds(90)).await;
    b.settle().await;
    let told = world.hook.received().len();
    assert!(told > before, "b told of the lower balance");
    let woke_at = b_clock.now() + Duration::milliseconds(321);
    world.clock.set(woke_at);
    let mut role = a.role.clone();
    tokio::time::timeout(GUARD, role.wait_for(|r| r.name() == "standby"))
        .await
        .expect("the woken leader kept leading")
        .unwrap();
    // Nothing of a's after its lease: no poll recorded at its time.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let (theirs,): (i64,) = sqlx::query_as("SELECT count(*) FROM snapshots WHERE taken_at >= $1")
        .bind(woke_at - Duration::milliseconds(1))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(theirs, 0, "the woken replica wrote a poll");
    assert_eq!(world.hook.received().len(), told, "the woken replica sent");
    // b leads on, untouched.
    run_for(&b, Duration::seconds(10)).await;
    assert_eq!(b.role.borrow().name(), "leader");
    assert_eq!(a.role.borrow().name(), "standby");
    a.stop().await;
    b.stop().await;
}

/// The database lost mid-run: the leader's renewals fail, it stops its
/// leading work before its lease ends, and the process lives on; when the
/// database answers again it leads again, and what changed meanwhile is
/// said once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_lost_mid_run_stops_leading_work_until_it_answers_again() {
    let Some((pg, _url, world, a)) = two_accounts_led_by_a("the_database_lost_mid_run").await
    else {
        return;
    };
    let before = world.hook.received().len();
    if !pg.stop_server() {
        eprintln!("SKIPPED the_database_lost_mid_run: the server is not this test's to stop");
        return;
    }
    world.scenario(&scenario(2, "¥10", true));
    // A renewal fails; the next step finds the lead's end passed.
    let mut role = a.role.clone();
    a.clock.advance(Duration::seconds(LEASE_SECS / 3));
    tokio::time::timeout(
        GUARD,
        role.wait_for(|r| matches!(r, Role::Leader { failed, .. } if *failed > 0)),
    )
    .await
    .expect("the renewal never failed")
    .unwrap();
    a.clock.advance(Duration::seconds(LEASE_SECS / 3));
    tokio::time::timeout(GUARD, role.wait_for(|r| r.name() == "standby"))
        .await
        .expect("it kept leading without a lease")
        .unwrap();
    assert!(a.activity.get().store_failing.is_none(), "not a stop");
    // Back: it leads again and tells of the lower balance, once.
    pg.start_server();
    a.clock.advance(Duration::seconds(LEASE_SECS / 3));
    leads(&a).await;
    a.settle().await;
    let after = world.hook.received();
    assert!(
        after.len() > before,
        "nothing said after the database came back"
    );
    let ids: BTreeSet<&str> = after.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), after.len(), "a notice said twice");
    a.stop().await;
}

/// `/readyz` answers on every replica, with its role and the lease; two
/// replicas racing on one button press (an approval) record one decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_replica_is_ready_and_says_its_role_and_one_press_counts_once() {
    use purser::domain::request::{Decision, Verdict, Via};
    use purser::ports::Written;
    let Some(pg) = Postgres::start("every_replica_is_ready").await else {
        return;
    };
    let url = pg.database().await;
    let world = World::new(
        &scenario(1, "¥2,000", false),
        Setup {
            accounts: &["acct-00"],
            rules: "[http]\nlisten = \"127.0.0.1:0\"\n",
            ..Setup::default()
        },
    )
    .await;
    let a = start(&replica_config(&world, &url, "a"), &world.clock).await;
    leads(&a).await;
    let b = start(&replica_config(&world, &url, "b"), &world.clock).await;
    stands_by(&b).await;
    let ready = |app: &TestApp| {
        let url = format!("http://{}/readyz", app.http.unwrap());
        async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, body) = ready(&a).await;
    assert_eq!(status, 200);
    assert!(body.contains("role: leader\nreplica: a\n"), "{body}");
    assert!(body.contains("lease until: "), "{body}");
    let (status, body) = ready(&b).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("role: standby\nreplica: b\nleader: a\n"),
        "{body}"
    );

    // A request, and the same approval pressed on both at once.
    let r = a
        .store
        .open_request(&purser::ports::NewRequest {
            account: purser::domain::model::AccountId::parse("acct-00").unwrap(),
            action: purser::domain::request::Action::Topup {
                amount: purser::domain::money::Money::new(
                    100.into(),
                    purser::domain::money::Currency::Cny,
                ),
                method: purser::domain::request::PaymentMethod::Wire,
            },
            reason: None,
            cost: None,
            balance: None,
            tier: purser::domain::request::Tiers::defaults()
                .for_amount(None)
                .clone(),
            requested_by: "rex".into(),
            requested_at: world.clock.now(),
            expires_at: world.clock.now() + Duration::hours(1),
            origin: None,
        })
        .await
        .unwrap();
    let press = Decision {
        by: "ana".into(),
        role: "approver".into(),
        verdict: Verdict::Approve,
        at: world.clock.now(),
        via: Via {
            platform: "slack".into(),
            message: None,
        },
        second_factor: false,
        comment: None,
    };
    let (x, y) = tokio::join!(
        a.store.record_decision(r.id, r.version, &press, None),
        b.store.record_decision(r.id, r.version, &press, None),
    );
    let done = [x.unwrap(), y.unwrap()]
        .iter()
        .filter(|w| matches!(w, Written::Done(_)))
        .count();
    assert_eq!(done, 1);
    assert_eq!(
        b.store
            .request(r.id)
            .await
            .unwrap()
            .unwrap()
            .decisions
            .len(),
        1
    );
    a.stop().await;
    b.stop().await;
}

/// One replica alone, its clock jumping an hour at once (a pause, by its
/// lease): it gives the lead up, takes it again with the next token, and
/// carries on — the next poll is made and the change it finds is said.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lone_replica_paused_past_its_lease_leads_again_and_carries_on() {
    let Some((_pg, url, world, a)) = two_accounts_led_by_a("a_lone_replica_paused").await else {
        return;
    };
    let before = world.hook.received().len();
    world.scenario(&scenario(2, "¥900,000", false));
    for _ in 0..3 {
        a.clock.advance(Duration::hours(1));
        let now = a.clock.now();
        let mut role = a.role.clone();
        tokio::time::timeout(
            GUARD,
            role.wait_for(|r| matches!(r, Role::Leader { lead, .. } if lead.expires_at > now)),
        )
        .await
        .expect("never led again")
        .unwrap();
        a.settle().await;
    }
    assert!(lease_of(&url).await.token > 1, "the lead was taken again");
    assert!(
        world.hook.received().len() > before,
        "the resolutions were said"
    );
    a.stop().await;
}
