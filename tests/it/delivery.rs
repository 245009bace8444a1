//! Delivery under failing outputs: each output on its own, and nothing lost
//! silently — a notice an output never takes is kept as failed, said through
//! the other outputs (delivery_failed), shown by `purser outbox list`, and
//! sent again with `purser outbox retry`.

use std::process::Command;

use chrono::Duration;

use crate::helpers::{Hook, Setup, World};

const LOW: &str = "[[accounts]]\nid = \"acme\"\nbalance = \"¥2,000\"\n";

/// A webhook output named `name` at `hook`.
fn webhook(name: &str, url: &str, extra: &str) -> String {
    format!(
        "\n[[outputs]]\nname = \"{name}\"\nkind = \"webhook\"\nurl = \"{url}\"\nsecret = \"file:hook.secret\"\n{extra}\n"
    )
}

#[tokio::test]
async fn an_output_that_hangs_holds_up_no_other() {
    // A server that takes connections and never answers.
    let tarpit = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tarpit.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            let (c, _) = tarpit.accept().await.unwrap();
            open.push(c);
        }
    });
    let outputs = webhook("stuck", &format!("http://{addr}/hook"), "timeout = \"10m\"");
    let world = World::new(
        LOW,
        Setup {
            rules: &outputs,
            ..Setup::default()
        },
    )
    .await;
    let app = world.start().await;
    // The notices for the working webhook arrive while the other hangs on
    // the first one: the alert, and when the money comes, its resolution.
    world.hook.wait_for(|v| v["rule"] == "low_balance").await;
    world.scenario("[[accounts]]\nid = \"acme\"\nbalance = \"¥90,000\"\n");
    world.clock.advance(Duration::minutes(1));
    world
        .hook
        .wait_for(|v| v["rule"] == "low_balance" && v["kind"] == "resolved")
        .await;
    held.abort();
    app.crash().await;
}

#[tokio::test]
async fn a_notice_an_output_never_takes_is_kept_said_elsewhere_and_sent_again() {
    let backup = Hook::start().await;
    let outputs = webhook("backup", &format!("http://{}/hook", backup.addr), "");
    let world = World::new(
        LOW,
        Setup {
            rules: &outputs,
            ..Setup::default()
        },
    )
    .await;
    backup.use_clock(world.clock.clone());
    world.hook.fail_next(usize::MAX);
    let app = world.start().await;
    app.settle().await;
    // Five attempts, 5 + 10 + 20 + 40 s apart: then the hook is given up on.
    for _ in 0..4 {
        app.advance(Duration::seconds(40)).await;
    }
    let said = backup
        .wait_for(|v| v["rule"] == "delivery_failed" && v["kind"] == "firing")
        .await;
    assert_eq!(said["account"], "acme");
    assert_eq!(said["resource"], "hook");
    let summary = said["summary"].as_str().unwrap();
    assert!(
        summary.contains("1 notice(s) about this account never reached hook"),
        "{summary}"
    );
    assert!(summary.contains("low_balance"), "{summary}");
    assert!(summary.contains("purser outbox retry"), "{summary}");
    assert!(
        world.hook.received().is_empty(),
        "never told to the output that failed"
    );

    // A person sees it, and sends it again once the hook works.
    let list = purser(&["outbox", "list", "--failed"], &world);
    assert!(list.contains("hook"), "{list}");
    assert!(list.contains("failed"), "{list}");
    assert!(list.contains("low_balance firing"), "{list}");
    assert!(list.contains("HTTP 500"), "{list}");
    assert!(!list.contains("will retry"), "{list}");
    world.hook.fail_next(0);
    let done = purser(&["outbox", "retry", "--all"], &world);
    assert!(
        done.starts_with("1 failed notice(s) queued again"),
        "{done}"
    );
    app.advance(Duration::minutes(1)).await;
    world.hook.wait_for(|v| v["rule"] == "low_balance").await;
    // The next poll sees nothing lost any more.
    app.advance(Duration::minutes(1)).await;
    backup
        .wait_for(|v| v["rule"] == "delivery_failed" && v["kind"] == "resolved")
        .await;
    assert_eq!(
        purser(&["outbox", "list", "--failed"], &world),
        "No failed notices.\n"
    );
    app.stop().await;
}

fn purser(args: &[&str], world: &World) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_purser"))
        .args(args)
        .arg("--config")
        .arg(world.config_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
