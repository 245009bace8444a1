//! A top-up on each of the four clouds: no cloud's API takes money, so an
//! approved top-up is a payment task, closed by purser when it sees the money
//! arrive — the cloud's recharge record, or (on Azure, whose balance is
//! entered by hand) the balance rising by the amount.

use chrono::{DateTime, Duration, Utc};
use purser::domain::request::{RequestId, State};
use purser::ports::Clock;
use serde_json::json;

use super::super::azure_china::{CLIENT, SECRET, TOKEN_ROUTE, USAGE_ROUTE, entra_and_arm};
use super::super::mock::{Mock, by_route, ok};
use super::{calls_in_the_log, daemon, who};
use crate::helpers::{TestApp, epoch};
use purser::engine::chatops::ChatOps;

const AZURE_ADMIN: &str = r#"
[[people]]
name = "ops"
role = "admin"
slack = "U0OPS"
"#;

/// Time passes on purser and on the cloud alike (or it refuses signatures).
async fn pass(app: &TestApp, m: &Mock, by: Duration) {
    m.set_now(app.clock.now() + by);
    app.advance(by).await;
}

/// Asks for and approves a ¥2,000 Alipay top-up; returns the approval's text.
async fn ask(chat: &ChatOps, account: &str) -> String {
    let r = chat
        .handle(
            &who("rex"),
            &format!("topup {account} 2000 alipay for December"),
        )
        .await;
    assert!(r.text().starts_with("R1 opened"), "{}", r.text());
    chat.handle(&who("ana"), "approve R1").await.text()
}

async fn state(app: &TestApp) -> State {
    app.store
        .request(RequestId(1))
        .await
        .unwrap()
        .unwrap()
        .state
}

/// The task stays open until `arrive` happens, then closes with a receipt
/// naming how the money was seen; nothing was asked of the cloud.
async fn closes_when_the_money_arrives(
    chat: &ChatOps,
    app: &TestApp,
    m: &Mock,
    arrive: impl AsyncFnOnce(DateTime<Utc>),
    seen: &str,
) {
    assert_eq!(state(app).await, State::AwaitingPayment);
    pass(app, m, Duration::minutes(5)).await;
    assert_eq!(state(app).await, State::AwaitingPayment, "nothing arrived");

    arrive(app.clock.now()).await;
    // The next poll sees it; the sweep after closes the task.
    pass(app, m, Duration::minutes(1)).await;
    pass(app, m, Duration::minutes(1)).await;
    let text = chat.handle(&who("rex"), "request R1").await.text();
    assert!(text.starts_with("R1 · verified"), "{text}");
    let log = app.store.audit_log(None).await.unwrap();
    let receipt = log
        .iter()
        .find(|e| e.event == "receipt")
        .expect("a receipt");
    assert!(receipt.detail.contains(seen), "{}", receipt.detail);
    assert!(calls_in_the_log(&*app.store).await.is_empty());
    m.assert_clean();
}

#[tokio::test]
async fn on_tencent_a_top_up_closes_on_its_recharge_record() {
    let (m, tc) = super::tencent::tencent_cloud().await;
    let (_world, app, chat) = daemon(
        &super::tencent::tencent_account(&m),
        &super::tencent::KEYS,
        "",
    )
    .await;
    let text = ask(&chat, "tc-prod").await;
    assert!(
        text.starts_with("R1 approved. Pay ¥2,000.00 by Alipay quoting purser-r1-"),
        "{text}"
    );
    closes_when_the_money_arrives(
        &chat,
        &app,
        &m,
        async |now| {
            let mut t = tc.lock().unwrap();
            t.recharges.push((now, 200_000));
            t.balance_fen += 200_000;
        },
        "¥2,000.00 arrived at 2026-11-01 00:05 UTC",
    )
    .await;
}

#[tokio::test]
async fn on_alibaba_a_top_up_closes_on_its_payment_transaction() {
    let (m, ali) = super::alibaba::alibaba_cloud().await;
    let (_world, app, chat) = daemon(
        &super::alibaba::alibaba_account(&m),
        &super::alibaba::KEYS,
        "",
    )
    .await;
    let text = ask(&chat, "ali-prod").await;
    assert!(
        text.starts_with("R1 approved. Pay ¥2,000.00 by Alipay"),
        "{text}"
    );
    closes_when_the_money_arrives(
        &chat,
        &app,
        &m,
        async |now| {
            let mut a = ali.lock().unwrap();
            a.recharges.push((now, "2,000.00"));
            a.balance += 2_000;
        },
        "¥2,000.00 arrived at 2026-11-01 00:05 UTC",
    )
    .await;
}

#[tokio::test]
async fn on_huawei_a_top_up_closes_on_its_recharge_change_record() {
    let (m, hw) = super::huawei::huawei_cloud().await;
    let (_world, app, chat) =
        daemon(&super::huawei::huawei_account(&m), &super::huawei::KEYS, "").await;
    let text = ask(&chat, "hw-prod").await;
    assert!(
        text.starts_with("R1 approved. Pay ¥2,000.00 by Alipay"),
        "{text}"
    );
    closes_when_the_money_arrives(
        &chat,
        &app,
        &m,
        async |now| {
            let mut h = hw.lock().unwrap();
            h.recharges.push((now, "2000.00"));
            h.balance_fen += 200_000;
        },
        "¥2,000.00 arrived at 2026-11-01 00:05 UTC",
    )
    .await;
}

#[tokio::test]
async fn on_azure_china_a_top_up_closes_when_the_entered_balance_rises_by_it() {
    let m = Mock::start(epoch(), by_route(), entra_and_arm()).await;
    m.always(
        TOKEN_ROUTE,
        ok(r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"tok-1"}"#),
    );
    // Nothing used yet: the balance is what was entered.
    m.always(USAGE_ROUTE, ok(json!({"value": []}).to_string()));
    let account = format!(
        r#"
[[providers]]
name = "azure"
kind = "azure_china"

[[accounts]]
id = "azure-pia"
provider = "azure"
endpoint = "{url}"
credentials = {{ key_id = "file:az-client", secret = "file:az-secret", tenant = "tenant-0001", subscription = "sub-0001" }}
payee = {{ alipay = "the portal's Billing → Top up page", wire = "21Vianet Blue Cloud, account 1109 0000 0000 0000" }}
"#,
        url = m.url
    );
    let keys = [("az-client", CLIENT), ("az-secret", SECRET)];
    let (_world, app, chat) = daemon(&account, &keys, AZURE_ADMIN).await;
    let ops = purser::engine::chatops::Asker {
        platform: "slack".into(),
        user: "U0OPS".into(),
    };
    let set = chat.handle(&ops, "setbalance azure-pia 3000").await.text();
    assert!(
        set.starts_with("azure-pia's balance is now ¥3,000.00"),
        "{set}"
    );
    pass(&app, &m, Duration::minutes(1)).await;

    let text = ask(&chat, "azure-pia").await;
    assert!(
        text.starts_with("R1 approved. Pay ¥2,000.00 by Alipay to the portal's Billing → Top up page, quoting purser-r1-"),
        "{text}"
    );
    let card = chat.handle(&who("rex"), "request R1").await.text();
    assert!(
        card.ends_with("pay to: the portal's Billing → Top up page"),
        "{card}"
    );
    let chat2 = chat.clone();
    closes_when_the_money_arrives(
        &chat,
        &app,
        &m,
        async move |_| {
            // The portal shows the new balance; someone enters it.
            chat2.handle(&ops, "setbalance azure-pia 5000").await;
        },
        "the balance rose from ¥3,000.00 to ¥5,000.00",
    )
    .await;
}
