//! Requests from chat against the running daemon: asked, refused by policy
//! with the rule named, decided by people on different platforms, expired,
//! and written to an audit log whose chain verifies.

use purser::domain::audit;
use purser::engine::chatops::{Asker, ChatOps, ReplyKind};

use crate::helpers::{Setup, TestApp, World};

const SCENARIO: &str = r#"
[[accounts]]
id = "acme"
balance = "¥8,000"
burn_per_day = "100"

[[accounts.resources]]
id = "ins-web"
product = "cvm"
expires_in = "5d"
renewal = "manual"
renewal_price = "¥600"

[[accounts.orders]]
id = "20261101000123"
amount = "¥800"
created = "-1d"
deadline = "6d"

[[accounts.orders]]
id = "20261025000999"
amount = "¥300"
created = "-8d"
deadline = "-1d"
"#;

const PEOPLE: &str = r#"
[[people]]
name = "ria"
role = "approver"
slack = "U0RIA"

[[people]]
name = "ana"
role = "approver"
telegram = "1001"

[[people]]
name = "bo"
role = "approver"
discord = "2002"

[[people]]
name = "rex"
role = "requester"
slack = "U0REX"

[[people]]
name = "vic"
role = "viewer"
slack = "U0VIC"
"#;

async fn running() -> (World, TestApp, std::sync::Arc<ChatOps>) {
    running_with(PEOPLE).await
}

/// The daemon over the scenario, with `config` for people and settings.
async fn running_with(config: &str) -> (World, TestApp, std::sync::Arc<ChatOps>) {
    let world = World::new(
        SCENARIO,
        Setup {
            rules: config,
            ..Setup::default()
        },
    )
    .await;
    let app = world.start().await;
    app.settle().await;
    let chat = world.chat_ops(&app);
    (world, app, chat)
}

fn who(name: &str) -> Asker {
    let (platform, user) = match name {
        "ria" => ("slack", "U0RIA"),
        "ana" => ("telegram", "1001"),
        "bo" => ("discord", "2002"),
        "rex" => ("slack", "U0REX"),
        "vic" => ("slack", "U0VIC"),
        other => panic!("no {other}"),
    };
    Asker {
        platform: platform.into(),
        user: user.into(),
    }
}

async fn say(chat: &ChatOps, name: &str, text: &str) -> (ReplyKind, String) {
    let r = chat.handle(&who(name), text).await;
    (r.kind, r.text())
}

/// Each ask is refused by `name`'s reply starting as wanted.
async fn refused(chat: &ChatOps, name: &str, cases: &[(&str, &str)]) {
    for (ask, wanted) in cases {
        let (kind, text) = say(chat, name, ask).await;
        assert_eq!(kind, ReplyKind::Refused, "{ask}: {text}");
        assert!(text.starts_with(wanted), "{ask}:\n{text}\nwanted\n{wanted}");
    }
}

async fn verified(app: &TestApp) -> u64 {
    let log = app.store.audit_log(None).await.unwrap();
    let head = app.store.audit_head().await.unwrap();
    audit::verify(&log, head.as_ref().map(|(n, h)| (*n, h.as_str())))
        .unwrap_or_else(|e| panic!("{e}"))
        .entries
}

#[tokio::test]
async fn a_top_up_needs_someone_elses_approval_and_becomes_a_payment_task() {
    let (_world, app, chat) = running().await;
    let (kind, text) = say(&chat, "ria", "topup acme 1,000 alipay month-end run").await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
    assert!(
        text.starts_with("R1 opened: top up ¥1,000.00 by Alipay."),
        "{text}"
    );
    assert!(
        text.contains("balance ¥8,000.00 → ¥9,000.00 after"),
        "{text}"
    );
    assert!(text.contains("asked by ria: month-end run"), "{text}");
    assert!(
        text.contains("waiting for 1 more approval (not ria's)"),
        "{text}"
    );

    let (kind, text) = say(&chat, "ria", "approve R1").await;
    assert_eq!(kind, ReplyKind::Refused);
    assert!(
        text.contains("You asked for R1; someone else must approve it"),
        "{text}"
    );
    let (kind, text) = say(&chat, "vic", "approve R1").await;
    assert_eq!(kind, ReplyKind::Refused, "{text}");
    assert!(text.contains("approve needs the approver role"), "{text}");

    let (kind, text) = say(&chat, "ana", "approve r1").await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
    assert!(
        text.starts_with("R1 approved. Pay ¥1,000.00 by Alipay quoting purser-r1-"),
        "{text}"
    );
    assert!(text.contains("approved by ana (approver)"), "{text}");
    assert!(text.contains("on telegram"), "{text}");

    let (_, text) = say(&chat, "vic", "requests").await;
    assert!(text.starts_with("Open requests: 1"), "{text}");
    assert!(text.contains("R1 · awaiting payment · top up"), "{text}");

    let (_, text) = say(&chat, "bo", "approve R1").await;
    assert!(text.contains("R1 is awaiting payment"), "{text}");

    let events: Vec<String> = app
        .store
        .audit_log(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(
        events,
        ["requested", "approved", "state", "state", "note"],
        "asked, approved (approved), payment task (awaiting_payment) and its details"
    );
    assert_eq!(verified(&app).await, 5);
}

#[tokio::test]
async fn above_the_first_tier_two_distinct_approvers_are_needed_and_a_second_click_counts_once() {
    let (_world, app, chat) = running().await;
    let (_, text) = say(&chat, "rex", "topup acme 6,000 wire").await;
    assert!(text.contains("waiting for 2 more approvals"), "{text}");

    let (_, text) = say(&chat, "ana", "approve R1").await;
    assert!(
        text.starts_with("Your approval of R1 is counted; it needs 1 more approval."),
        "{text}"
    );
    let (_, text) = say(&chat, "ana", "approve R1").await;
    assert!(
        text.starts_with("You already decided on R1; a decision counts once."),
        "{text}"
    );
    let r = app
        .store
        .request(purser::domain::request::RequestId(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.decisions.len(), 1);

    let (_, text) = say(&chat, "bo", "approve R1").await;
    assert!(text.starts_with("R1 approved."), "{text}");
    assert!(
        text.contains("on telegram") && text.contains("on discord"),
        "{text}"
    );
}

#[tokio::test]
async fn policy_refuses_before_anyone_is_asked_naming_the_rule() {
    let (_world, app, chat) = running().await;
    let cases = [
        (
            "topup acme 999 alipay",
            "Not opened: a top-up by Alipay must be at least ¥1,000.00; ¥999.00 is less (policy: topup.minimum).",
        ),
        (
            "topup acme 4,000 wire",
            "Not opened: a top-up by wire transfer must be at least ¥5,000.00; ¥4,000.00 is less (policy: topup.minimum).",
        ),
        (
            "topup acme 2,000 wechat",
            "Not opened: this account does not take WeChat Pay; it takes alipay, unionpay, wire (policy: topup.methods).",
        ),
        (
            "topup acme $2,000 alipay",
            "Not opened: this account is paid and charged in CNY only; $2,000.00 is in USD (policy: currency).",
        ),
        (
            "renew ins-web 13",
            "Not opened: 13 months is not a renewal period this cloud takes; it takes 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 months (policy: renew.periods).",
        ),
        (
            "allocate acme 1,000 COC-1",
            "Not opened: the account has no contract \"COC-1\"; enter its balance first (setbalance <account> <amount> contract=<number>) (policy: allocate.contract).",
        ),
        (
            "renew ins-gone 1",
            "No account has resource ins-gone as last read.",
        ),
    ];
    refused(&chat, "rex", &cases).await;
    // A year at ¥600 a month fits in ¥8,000; thirteen of them would not.
    let (kind, text) = say(&chat, "rex", "renew ins-web 1y").await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
    assert!(
        text.contains("cost ¥7,200.00 · balance ¥8,000.00 → ¥800.00 after"),
        "{text}"
    );
    // The order past its deadline is no longer listed as unpaid by the
    // cloud's rules; the live one can be asked for.
    let (kind, text) = say(&chat, "rex", "pay 20261101000123").await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
    assert!(text.contains("cost ¥800.00"), "{text}");
    let (kind, text) = say(&chat, "rex", "pay 20261025000999").await;
    assert_eq!(kind, ReplyKind::Refused, "{text}");
    assert!(text.contains("(policy: pay.window)"), "{text}");

    let refused = app
        .store
        .audit_log(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event == "refused")
        .count();
    assert_eq!(refused, 7, "each policy refusal is audited");
    verified(&app).await;
}

#[tokio::test]
async fn an_undecided_request_expires_and_takes_no_late_approval() {
    let (_world, app, chat) = running().await;
    let (kind, text) = say(&chat, "rex", "autorenew ins-web on keep it").await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
    app.advance(chrono::Duration::hours(25)).await;
    let (kind, text) = say(&chat, "ana", "approve R1").await;
    assert_eq!(kind, ReplyKind::Refused);
    assert!(
        text.starts_with("R1 expired at 2026-11-02 00:00 UTC"),
        "{text}"
    );
    let (_, text) = say(&chat, "ana", "request R1").await;
    assert!(text.starts_with("R1 · expired"), "{text}");
    let (kind, text) = say(&chat, "rex", "cancel R1").await;
    assert_eq!(kind, ReplyKind::Refused);
    assert!(
        text.contains("R1 is expired and can no longer be cancelled"),
        "{text}"
    );
}

#[tokio::test]
async fn the_requester_or_an_approver_may_cancel_before_anything_is_charged() {
    let (_world, _app, chat) = running().await;
    say(&chat, "rex", "pay 20261101000123").await;
    let (kind, text) = say(&chat, "vic", "cancel R1").await;
    assert_eq!(kind, ReplyKind::Refused, "{text}");
    let (kind, text) = say(&chat, "rex", "cancel R1").await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
    assert!(
        text.starts_with("R1 cancelled: nothing will be charged for it."),
        "{text}"
    );
    let (_, text) = say(&chat, "ana", "approve R1").await;
    assert!(
        text.contains("R1 is cancelled; there is nothing left to decide"),
        "{text}"
    );
}

#[tokio::test]
async fn approved_renewal_payment_and_auto_renew_change_are_carried_out_once() {
    let (_world, app, chat) = running().await;
    let (_, text) = say(&chat, "rex", "renew ins-web 2m before the launch").await;
    assert!(text.contains("cost ¥1,200.00"), "{text}");
    let (kind, text) = say(&chat, "ana", "approve R1").await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
    assert!(
        text.starts_with(
            "R1 approved. Done: ins-web now expires 2027-01-06 00:00 UTC; charged ¥1,200.00."
        ),
        "{text}"
    );
    assert!(text.contains("succeeded"), "{text}");
    // A second click, from another platform, changes nothing.
    let (kind, text) = say(&chat, "bo", "approve R1").await;
    assert_eq!(kind, ReplyKind::Refused, "{text}");
    assert!(text.contains("R1 is succeeded"), "{text}");

    let (_, text) = say(&chat, "rex", "pay 20261101000123").await;
    assert!(text.starts_with("R2 opened"), "{text}");
    let (_, text) = say(&chat, "bo", "approve R2").await;
    assert!(
        text.starts_with("R2 approved. Done: 20261101000123 paid; charged ¥800.00."),
        "{text}"
    );
    let (_, text) = say(&chat, "rex", "autorenew ins-web on").await;
    assert!(text.starts_with("R3 opened"), "{text}");
    let (_, text) = say(&chat, "ria", "approve R3").await;
    assert!(
        text.starts_with("R3 approved. Done: auto-renew turned on for ins-web."),
        "{text}"
    );

    // The next poll shows it: ¥2,000 less, the order gone, auto-renew on.
    app.advance(chrono::Duration::minutes(5)).await;
    let (_, text) = say(&chat, "vic", "balance acme").await;
    assert!(text.contains("¥5,999.65"), "{text}");
    let (_, text) = say(&chat, "vic", "expiring 90").await;
    assert!(
        text.contains("ins-web · in 65 days · auto renewal · renewal ¥600.00 for 1 month"),
        "{text}"
    );

    let events: Vec<String> = app
        .store
        .audit_log(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.request == Some(purser::domain::request::RequestId(1)))
        .map(|e| e.event)
        .collect();
    assert_eq!(
        events,
        [
            "requested",
            "approved",
            "state",
            "state",
            "call",
            "answer",
            "state",
            "receipt"
        ]
    );
    verified(&app).await;
}

#[tokio::test]
async fn a_payment_task_is_closed_when_the_cloud_records_the_money_arriving() {
    let (world, app, chat) = running().await;
    say(&chat, "rex", "topup acme 2,000 alipay").await;
    let (_, text) = say(&chat, "ana", "approve R1").await;
    assert!(
        text.starts_with("R1 approved. Pay ¥2,000.00 by Alipay"),
        "{text}"
    );

    // An hour later nothing has arrived: the task stays open, and at half
    // an hour (Alipay's pace) it was said to be late.
    app.advance(chrono::Duration::hours(1)).await;
    let (_, text) = say(&chat, "vic", "request R1").await;
    assert!(text.contains("waiting for the payment"), "{text}");
    let late = world
        .hook
        .wait_for(|v| v["rule"] == "payment_late" && v["kind"] == "firing")
        .await;
    let summary = late["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("R1: ¥2,000.00 by Alipay approved at 2026-11-01 00:00 UTC has not arrived by 2026-11-01 00:30 UTC"),
        "{late}"
    );

    // The cloud records the recharge; the next poll sees it, the sweep after closes the task.
    world.scenario(&SCENARIO.replace(
        "burn_per_day = \"100\"",
        "burn_per_day = \"100\"\ntopups = [{ at = \"1h30m\", amount = \"2000\" }]",
    ));
    app.advance(chrono::Duration::hours(1)).await;
    app.advance(chrono::Duration::minutes(1)).await;
    let (_, text) = say(&chat, "vic", "request R1").await;
    assert!(text.starts_with("R1 · verified"), "{text}");
    let log = app.store.audit_log(None).await.unwrap();
    let receipt = log
        .iter()
        .find(|e| e.event == "receipt")
        .expect("a receipt");
    assert!(
        receipt
            .detail
            .contains("¥2,000.00 arrived at 2026-11-01 01:30 UTC"),
        "{}",
        receipt.detail
    );
    // Once it arrived, the late payment is over.
    app.advance(chrono::Duration::minutes(1)).await;
    world
        .hook
        .wait_for(|v| v["rule"] == "payment_late" && v["kind"] == "resolved")
        .await;
    verified(&app).await;
}

#[tokio::test]
async fn the_top_tier_needs_each_approvers_authenticator_code() {
    use purser::ports::Clock;
    const ANA: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    const ADA: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let people = format!(
        r#"{PEOPLE}
[[people]]
name = "ada"
role = "admin"
slack = "U0ADA"
totp = "file:ada.totp"
"#
    )
    .replace(
        "name = \"ana\"\nrole = \"approver\"\ntelegram = \"1001\"",
        "name = \"ana\"\nrole = \"approver\"\ntelegram = \"1001\"\ntotp = \"file:ana.totp\"",
    );
    let world = World::new(
        SCENARIO,
        Setup {
            rules: &people,
            ..Setup::default()
        },
    )
    .await;
    std::fs::write(world.dir.path().join("ana.totp"), ANA).unwrap();
    // As an app shows it: lower case, in groups.
    std::fs::write(
        world.dir.path().join("ada.totp"),
        "gezd gnbv gy3t qojq gezd gnbv gy3t qojq\n",
    )
    .unwrap();
    let app = world.start().await;
    app.settle().await;
    let chat = world.chat_ops(&app);
    let code = |secret: &str| {
        let bytes = purser::adapters::totp::secret_bytes(secret).unwrap();
        let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes).unwrap();
        totp.generate(app.clock.now().timestamp() as u64)
    };
    let ada = Asker {
        platform: "slack".into(),
        user: "U0ADA".into(),
    };

    let (_, text) = say(&chat, "rex", "topup acme 60,000 wire for the year").await;
    assert!(text.starts_with("R1 opened"), "{text}");
    let (kind, text) = say(&chat, "bo", "approve R1 123456").await;
    assert_eq!(kind, ReplyKind::Refused, "{text}");
    assert!(text.contains("you have none set up"), "{text}");
    let (kind, text) = say(&chat, "ana", "approve R1").await;
    assert_eq!(kind, ReplyKind::Refused, "no code: {text}");
    let wrong = if code(ANA) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (kind, text) = say(&chat, "ana", &format!("approve R1 {wrong}")).await;
    assert_eq!(kind, ReplyKind::Refused, "a wrong code: {text}");
    let (kind, text) = say(&chat, "ana", &format!("approve R1 {}", code(ANA))).await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
    assert!(text.contains("is counted"), "{text}");
    // Ana's code is hers: it does not pass for the admin.
    let r = chat
        .handle(&ada, &format!("approve R1 {}", code(ANA)))
        .await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    let r = chat
        .handle(&ada, &format!("approve R1 {}", code(ADA)))
        .await;
    assert!(
        r.text().starts_with("R1 approved. Pay ¥60,000.00 by wire"),
        "{}",
        r.text()
    );
    let request = app
        .store
        .request(purser::domain::request::RequestId(1))
        .await
        .unwrap()
        .unwrap();
    assert!(request.approvals().all(|d| d.second_factor));
    verified(&app).await;
}

#[tokio::test]
async fn the_team_sets_its_own_tiers_and_expiry() {
    let (_world, _app, chat) = running_with(&format!(
        "{PEOPLE}\n[approvals]\nexpire_after = \"2h\"\ntiers = [{{ above = \"0\", approvers = 2 }}]\n"
    ))
    .await;
    let (_, text) = say(&chat, "rex", "topup acme 1000 alipay").await;
    assert!(text.starts_with("R1 opened"), "{text}");
    let (_, card) = say(&chat, "vic", "request R1").await;
    assert!(card.contains("expires 2026-11-01 02:00 UTC"), "{card}");
    let (_, text) = say(&chat, "ana", "approve R1").await;
    assert!(
        text.contains("is counted"),
        "one approver is not enough now: {text}"
    );
    let (_, text) = say(&chat, "bo", "approve R1").await;
    assert!(text.starts_with("R1 approved."), "{text}");
}

#[tokio::test]
async fn the_teams_own_policy_applies_and_each_refusal_names_its_setting() {
    let (_world, _app, chat) = running_with(&format!(
        r#"{PEOPLE}
[policy]
caps = {{ per_request = "6,000", per_requester_day = "8,000" }}
roles = {{ pay = "approver" }}

[policy.topup]
methods = ["wire", "alipay"]
minimum = {{ alipay = "2,000" }}
"#
    ))
    .await;
    let cases = [
        (
            "topup acme 1,500 alipay",
            "Not opened: a top-up by Alipay must be at least ¥2,000.00; ¥1,500.00 is less (policy: topup.minimum).",
        ),
        (
            "topup acme 2,000 unionpay",
            "Not opened: this account does not take UnionPay online payment; it takes wire, alipay (policy: topup.methods).",
        ),
        (
            "topup acme 7,000 wire",
            "Not opened: ¥7,000.00 is above the cap of ¥6,000.00 per request (policy: caps.per_request).",
        ),
        (
            "renew ins-web 12",
            "Not opened: ¥7,200.00 is above the cap of ¥6,000.00 per request (policy: caps.per_request).",
        ),
        (
            "pay 20261101000123",
            "Not opened: asking for an order payment needs the approver role; you are requester (policy: roles).",
        ),
    ];
    refused(&chat, "rex", &cases).await;
    // No method named: the first listed, a wire transfer.
    let (kind, text) = say(&chat, "rex", "topup acme 5,000").await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
    assert!(text.contains("wire transfer"), "{text}");
    let (kind, text) = say(&chat, "rex", "topup acme 4,000 alipay").await;
    assert_eq!(kind, ReplyKind::Refused, "{text}");
    assert!(
        text.starts_with("Not opened: you already asked for ¥5,000.00 in the last 24 hours; ¥4,000.00 more would pass the cap of ¥8,000.00 (policy: caps.per_requester_day)."),
        "{text}"
    );
    // An approver may ask for a payment.
    let (kind, text) = say(&chat, "ria", "pay 20261101000123").await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
}

#[tokio::test]
async fn the_runway_of_an_account_in_arrears_says_what_it_owes() {
    let world = World::new(
        "[[accounts]]\nid = \"acme\"\nbalance = \"-¥11.19\"\nburn_per_day = \"100\"\n",
        Setup {
            rules: PEOPLE,
            ..Setup::default()
        },
    )
    .await;
    let app = world.start().await;
    app.settle().await;
    let chat = world.chat_ops(&app);
    let (_, text) = say(&chat, "vic", "runway acme").await;
    assert!(text.contains("acme · in arrears by ¥11.19"), "{text}");
    assert!(!text.contains("days at"), "{text}");
    let (_, text) = say(&chat, "vic", "balance acme").await;
    assert!(
        text.contains("-¥11.19") && text.contains("in arrears"),
        "{text}"
    );
    app.stop().await;
}

/// Contract money no API reads: entered by hand, allocated to, and the
/// allocation closed by the entry that shows it moved.
#[tokio::test]
async fn a_contract_balance_entered_by_hand_an_allocation_and_its_closing() {
    let world = World::new(
        r#"
[[accounts]]
id = "acme"
balance = "¥8,000"
buckets = [
    { name = "COC-2024-7891", kind = "contract", amount = "¥1,200" },
    { name = "unallocated", kind = "unallocated", amount = "¥5,000" },
]
"#,
        Setup {
            rules: PEOPLE,
            ..Setup::default()
        },
    )
    .await;
    let app = world.start().await;
    app.settle().await;
    let chat = world.chat_ops(&app);

    // A contract entered by hand replaces what the cloud showed, from the
    // next poll; a new one is added.
    let (kind, text) = say(&chat, "ria", "setbalance acme ¥900 contract=COC-2024-7891").await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
    assert!(
        text.starts_with("acme contract COC-2024-7891 is now ¥900.00 as of"),
        "{text}"
    );
    let (kind, text) = say(&chat, "ria", "setbalance acme -¥5 contract=COC-2024-7891").await;
    assert_eq!(kind, ReplyKind::Refused, "{text}");
    let (kind, _) = say(&chat, "vic", "setbalance acme ¥900 contract=COC-2024-7891").await;
    assert_eq!(kind, ReplyKind::Refused, "a viewer enters nothing");
    app.advance(chrono::Duration::minutes(1)).await;

    let (kind, text) = say(&chat, "rex", "allocate acme 1,000 COC-2024-7891").await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
    let (_, text) = say(&chat, "ana", "approve R1").await;
    assert!(
        text.starts_with(
            "R1 approved. Allocate ¥1,000.00 to contract COC-2024-7891 in the cloud's console"
        ),
        "{text}"
    );
    // Not moved yet: the task stays open.
    app.advance(chrono::Duration::minutes(2)).await;
    let (_, text) = say(&chat, "vic", "request R1").await;
    assert!(text.contains("waiting for the allocation"), "{text}");

    // Done in the console; the contract's new balance is entered.
    say(
        &chat,
        "ria",
        "setbalance acme ¥1,900 contract=COC-2024-7891",
    )
    .await;
    app.advance(chrono::Duration::minutes(1)).await;
    app.advance(chrono::Duration::minutes(1)).await;
    let (_, text) = say(&chat, "vic", "request R1").await;
    assert!(text.starts_with("R1 · verified"), "{text}");
    let log = app.store.audit_log(None).await.unwrap();
    let receipt = log
        .iter()
        .find(|e| e.event == "receipt")
        .expect("a receipt");
    assert!(
        receipt
            .detail
            .contains("contract COC-2024-7891 rose from ¥900.00 to ¥1,900.00"),
        "{}",
        receipt.detail
    );
    verified(&app).await;
    app.stop().await;
}
