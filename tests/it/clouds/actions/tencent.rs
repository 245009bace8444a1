//! Tencent: CVM renewal (no token, read back by the instance), PayDeals and
//! SetRenewal.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Months, Utc};
use purser::adapters::tencent::Tencent;
use purser::domain::request::{Action, State};
use purser::engine::chatops::ReplyKind;
use purser::ports::{Actions, Requests};
use serde_json::{Value, json};

use super::super::mock::{self, Canned, Mock, by_header, hang, ok};
use super::super::tencent::{ID, KEY};
use super::{Rig, calls_in_the_log, daemon};
use crate::helpers::epoch;

// ---------------------------------------------------------------- a Tencent account that changes

const ORDER: &str = "20261101000123";
const PRICE_FEN: i64 = 60_000;

pub(super) struct Tc {
    pub(super) balance_fen: i64,
    expires: DateTime<Utc>,
    flag: String,
    order_paid: bool,
    /// Further orders bought together with it: id, cost in fen, and the
    /// deal status (1 unpaid, 4 delivered, 7 closed).
    others: Vec<(String, i64, i64)>,
    /// What was charged: one entry per renewal or payment made.
    charges: Vec<String>,
    /// The next renewal takes effect but its answer never comes.
    lose_next_answer: bool,
    /// The next payment takes effect but the gateway answers a 502 page.
    garble_next_payment: bool,
    /// Money paid in by a person: when, and how much in fen.
    pub(super) recharges: Vec<(DateTime<Utc>, i64)>,
}

fn beijing(t: DateTime<Utc>) -> String {
    (t + Duration::hours(8))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn response(body: Value) -> Canned {
    let mut body = body;
    body["RequestId"] = json!("req-0001");
    ok(json!({ "Response": body }).to_string())
}

fn error(code: &str, message: &str) -> Canned {
    ok(
        json!({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": "req-e"}})
            .to_string(),
    )
}

pub(super) async fn tencent_cloud() -> (Mock, Arc<Mutex<Tc>>) {
    let m = Mock::start(epoch(), by_header("x-tc-action"), mock::tc3(ID, KEY)).await;
    let tc = Arc::new(Mutex::new(Tc {
        balance_fen: 800_000,
        expires: epoch() + Duration::days(5),
        flag: "NOTIFY_AND_MANUAL_RENEW".into(),
        order_paid: false,
        others: vec![],
        charges: vec![],
        lose_next_answer: false,
        garble_next_payment: false,
        recharges: vec![],
    }));
    let s = tc.clone();
    m.on("DescribeAccountBalance", move |_, _| {
        let t = s.lock().unwrap();
        response(json!({"RealBalance": t.balance_fen, "CashAccountBalance": t.balance_fen}))
    });
    let s = tc.clone();
    m.on("DescribeRenewInstances", move |req, _| {
        let t = s.lock().unwrap();
        let ids = req.json()["InstanceIdList"].clone();
        if !ids.is_null() && ids != json!(["ins-web"]) {
            return response(json!({"InstanceList": [], "NextToken": null}));
        }
        response(json!({"InstanceList": [{
            "InstanceId": "ins-web", "InstanceName": "web", "ProductCode": "p_cvm",
            "SubProductCode": "sp_cvm_s1", "ProductName": "云服务器", "RegionCode": "ap-guangzhou",
            "RenewFlag": t.flag, "Status": "NORMAL", "ExpireTime": beijing(t.expires)}],
            "NextToken": null}))
    });
    let s = tc.clone();
    m.on("DescribeInstances", move |req, _| {
        let t = s.lock().unwrap();
        if let Err(e) = mock::expect(req.header("x-tc-region") == "ap-guangzhou", "X-TC-Region") {
            return e;
        }
        response(json!({"TotalCount": 1, "InstanceSet": [{
            "InstanceId": "ins-web", "InstanceName": "web", "InstanceChargeType": "PREPAID",
            "ExpiredTime": t.expires.to_rfc3339(), "RenewFlag": t.flag,
            "IsolatedSource": "NOTISOLATED", "LatestOperation": "RenewInstances",
            "LatestOperationState": "SUCCESS", "LatestOperationRequestId": "req-renew"}]}))
    });
    m.on("InquiryPriceRenewInstances", |req, _| {
        let period = req.json()["InstanceChargePrepaid"]["Period"]
            .as_i64()
            .unwrap_or(0);
        // Yuan, not fen.
        response(json!({"Price": {"InstancePrice": {
            "OriginalPrice": 2 * PRICE_FEN * period / 100,
            "DiscountPrice": PRICE_FEN * period / 100}}}))
    });
    let s = tc.clone();
    m.on("DescribeDealsByCond", move |req, _| {
        let t = s.lock().unwrap();
        let body = req.json();
        let status = if t.order_paid { 4 } else { 1 };
        let wanted = match (&body["Status"], &body["StatusSet"]) {
            (Value::Number(n), _) => n.as_i64() == Some(status),
            (_, Value::Array(set)) => set.iter().any(|v| v.as_i64() == Some(status)),
            _ => status == 4,
        };
        let wants = |status: i64| match (&body["Status"], &body["StatusSet"]) {
            (Value::Number(n), _) => n.as_i64() == Some(status),
            (_, Value::Array(set)) => set.iter().any(|v| v.as_i64() == Some(status)),
            _ => status == 4,
        };
        let mut deals = if wanted {
            vec![json!({"OrderId": ORDER, "BigDealId": "big-1", "Status": status, "RealTotalCost": 80_000,
                    "CreateTime": "2026-10-31 09:00:00", "ProductCode": "p_cvm", "Action": "purchase"})]
        } else {
            vec![]
        };
        for (id, fen, st) in &t.others {
            if wants(*st) && body["OrderId"].as_str().is_none_or(|o| o == id) {
                deals.push(json!({"OrderId": id, "BigDealId": "big-1", "Status": st, "RealTotalCost": fen,
                    "CreateTime": "2026-10-31 09:00:00", "ProductCode": "p_cbs", "Action": "purchase"}));
            }
        }
        if let Some(o) = body["OrderId"].as_str() {
            deals.retain(|d| d["OrderId"] == o);
        }
        let deals = json!(deals);
        response(json!({"TotalCount": deals.as_array().unwrap().len(), "Deals": deals}))
    });
    let s = tc.clone();
    m.on("DescribeBillList", move |req, _| {
        let t = s.lock().unwrap();
        if req.json()["PayType"][0] != "recharge" {
            return response(json!({"Total": 0, "TransactionList": [], "DeductAmount": 0}));
        }
        let rows: Vec<Value> = t
            .recharges
            .iter()
            .map(|(at, fen)| {
                json!({"OperationTime": beijing(*at), "ActionType": "recharge", "PayChannel": "支付宝",
                "OperationInfo": "充值", "Amount": fen, "Balance": t.balance_fen, "BillId": "b1",
                "Cash": t.balance_fen, "Incentive": 0, "Freezing": 0, "DeductMode": ""})
            })
            .collect();
        response(json!({"Total": rows.len(), "TransactionList": rows}))
    });
    let s = tc.clone();
    m.on("RenewInstances", move |req, _| {
        let mut t = s.lock().unwrap();
        let body = req.json();
        let period = body["InstanceChargePrepaid"]["Period"]
            .as_u64()
            .unwrap_or(0);
        if body["InstanceIds"] != json!(["ins-web"]) || period == 0 {
            return error("InvalidParameter", "bad renewal");
        }
        let cost = PRICE_FEN * period as i64;
        if t.balance_fen < cost {
            return error("InvalidAccount.InsufficientBalance", "余额不足");
        }
        t.balance_fen -= cost;
        t.expires = t
            .expires
            .checked_add_months(Months::new(period as u32))
            .unwrap();
        t.flag = body["InstanceChargePrepaid"]["RenewFlag"]
            .as_str()
            .unwrap()
            .to_owned();
        t.charges.push(format!("renew ins-web {period}m"));
        if std::mem::take(&mut t.lose_next_answer) {
            return hang();
        }
        response(json!({}))
    });
    let s = tc.clone();
    m.on("PayDeals", move |req, _| {
        let mut t = s.lock().unwrap();
        let ids: Vec<String> = req.json()["OrderIds"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if ids.len() > 1 {
            // One call pays them all or none: an order no longer unpaid
            // refuses the whole payment.
            let mut total = 0;
            for id in &ids {
                let unpaid = if id == ORDER {
                    !t.order_paid
                } else {
                    t.others.iter().any(|(o, _, st)| o == id && *st == 1)
                };
                if !unpaid {
                    return error(
                        "FailedOperation.InvalidDeal",
                        "订单状态错误，只有未支付订单才能支付",
                    );
                }
                total += if id == ORDER {
                    80_000
                } else {
                    t.others.iter().find(|(o, _, _)| o == id).map_or(0, |o| o.1)
                };
            }
            if t.balance_fen < total {
                return error("FailedOperation.BalanceInsufficient", "余额不足");
            }
            t.balance_fen -= total;
            for id in &ids {
                if id == ORDER {
                    t.order_paid = true;
                } else if let Some(o) = t.others.iter_mut().find(|(o, _, _)| o == id) {
                    o.2 = 4;
                }
                t.charges.push(format!("pay {id}"));
            }
            return response(json!({"OrderIds": ids, "BigDealIds": ["big-1"], "ResourceIds": []}));
        }
        if req.json()["OrderIds"] != json!([ORDER]) {
            return error("InvalidParameter", "unknown order");
        }
        if t.order_paid {
            return error(
                "FailedOperation.InvalidDeal",
                "订单状态错误，只有未支付订单才能支付",
            );
        }
        t.order_paid = true;
        t.balance_fen -= 80_000;
        t.charges.push(format!("pay {ORDER}"));
        if std::mem::take(&mut t.garble_next_payment) {
            return mock::reply(502, "<html>502 Bad Gateway</html>");
        }
        response(json!({"OrderIds": [ORDER], "BigDealIds": ["big-1"], "ResourceIds": ["ins-web"]}))
    });
    let s = tc.clone();
    m.on("SetRenewal", move |req, _| {
        let mut t = s.lock().unwrap();
        let body = req.json();
        if body["ProductCode"] != "p_cvm" || body["RegionCode"] != "ap-guangzhou" {
            return error("InvalidParameter", "product or region");
        }
        t.flag = body["RenewFlag"].as_str().unwrap_or_default().to_owned();
        response(json!({"InstanceList": []}))
    });
    (m, tc)
}

fn charges(tc: &Arc<Mutex<Tc>>) -> Vec<String> {
    tc.lock().unwrap().charges.clone()
}

// ---------------------------------------------------------------- from chat, through the daemon

/// The account on the mock, as config, its keys read from files.
pub(super) fn tencent_account(m: &Mock) -> String {
    format!(
        r#"
[[providers]]
name = "tencent"
kind = "tencent"

[[accounts]]
id = "tc-prod"
provider = "tencent"
endpoint = "{url}"
regions = ["ap-guangzhou"]
credentials = {{ key_id = "file:tc-id", secret = "file:tc-key" }}
"#,
        url = m.url
    )
}

pub(super) const KEYS: [(&str, &str); 2] = [("tc-id", ID), ("tc-key", KEY)];

#[tokio::test]
async fn from_chat_a_tencent_renewal_payment_and_auto_renew_change_each_charge_once() {
    let (m, tc) = tencent_cloud().await;
    let (_world, app, chat) = daemon(&tencent_account(&m), &KEYS, "").await;
    let say = async |name: &str, text: &str| super::say(&chat, name, text).await;

    let (kind, text) = say("rex", "renew ins-web 1m expires next week").await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
    assert!(text.contains("cost ¥600.00"), "priced by the cloud: {text}");
    assert!(
        text.contains("balance ¥8,000.00 → ¥7,400.00 after"),
        "{text}"
    );
    let (kind, text) = say("ana", "approve R1").await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
    assert!(
        text.starts_with("R1 approved. Done: ins-web now expires 2026-12-06 00:00 UTC."),
        "{text}"
    );
    // The same approver again, and another: nothing more happens.
    let (kind, _) = say("ana", "approve R1").await;
    assert_eq!(kind, ReplyKind::Refused);
    let (kind, _) = say("bo", "approve R1").await;
    assert_eq!(kind, ReplyKind::Refused);

    let (_, text) = say("rex", &format!("pay {ORDER}")).await;
    assert!(text.starts_with("R2 opened"), "{text}");
    assert!(text.contains("cost ¥800.00"), "{text}");
    let (_, text) = say("bo", "approve R2").await;
    assert!(
        text.starts_with(&format!(
            "R2 approved. Done: {ORDER} paid from the balance."
        )),
        "{text}"
    );

    let (_, text) = say("rex", "autorenew ins-web on").await;
    assert!(text.starts_with("R3 opened"), "{text}");
    let (_, text) = say("ana", "approve R3").await;
    assert!(
        text.starts_with("R3 approved. Done: auto-renew turned on for ins-web."),
        "{text}"
    );

    assert_eq!(charges(&tc), ["renew ins-web 1m", &format!("pay {ORDER}")]);
    assert_eq!(tc.lock().unwrap().flag, "NOTIFY_AND_AUTO_RENEW");
    assert_eq!(m.count("RenewInstances"), 1);
    assert_eq!(m.count("PayDeals"), 1);
    m.assert_clean();

    // The trail: each call recorded before it was made, with the key.
    let calls = calls_in_the_log(&*app.store).await;
    let log = app.store.audit_log(None).await.unwrap();
    assert_eq!(calls, ["RenewInstances", "PayDeals", "SetRenewal"]);
    let receipts = log.iter().filter(|e| e.event == "receipt").count();
    assert_eq!(receipts, 3);
}

async fn rig() -> (Rig, Arc<Mutex<Tc>>) {
    let (m, tc) = tencent_cloud().await;
    let account = tencent_account(&m);
    let rig = Rig::new(m, &account, &KEYS, |a, access, clock| {
        let access = super::super::accounts(&a.account, access);
        let mut t = Tencent::new(access, None, clock);
        super::super::quick(t.http_mut());
        ("tencent".to_owned(), Arc::new(t) as Arc<dyn Actions>)
    })
    .await;
    (rig, tc)
}

fn renew_one_month() -> Action {
    Action::Renew {
        resources: vec![purser::domain::model::ExternalId::parse("ins-web").unwrap()],
        months: 1,
    }
}

fn pay_the_order() -> Action {
    Action::Pay {
        orders: vec![purser::domain::model::ExternalId::parse(ORDER).unwrap()],
        coupons: vec![],
        discount: None,
        offered: vec![],
    }
}

#[tokio::test]
async fn a_crash_at_any_write_resumes_without_a_second_charge() {
    // approve→executing, the call recorded, its answer recorded, succeeded.
    for at in 1..=4 {
        for after_commit in [false, true] {
            let (rig, tc) = rig().await;
            let r = rig.approved(renew_one_month()).await;
            let case = format!("crash at write {at}, after commit: {after_commit}");
            let state = rig.crash_and_resume(r.id, at, after_commit).await;
            assert_eq!(state, State::Succeeded, "{case}");
            assert_eq!(charges(&tc), ["renew ins-web 1m"], "{case}");
            rig.mock.assert_clean();
        }
    }
}

#[tokio::test]
async fn a_lost_answer_is_read_back_not_repeated() {
    let (rig, tc) = rig().await;
    tc.lock().unwrap().lose_next_answer = true;
    let r = rig.approved(renew_one_month()).await;
    let ran = rig.run(r.id).await;
    assert_eq!(ran.request.state, State::Succeeded);
    assert_eq!(charges(&tc), ["renew ins-web 1m"]);
    assert_eq!(rig.mock.count("RenewInstances"), 1, "no blind retry");
    let log = rig.store.audit_log(None).await.unwrap();
    let read_back = log
        .iter()
        .find(|e| e.event == "answer")
        .map(|e| serde_json::from_str::<Value>(&e.detail).unwrap()["read_back"].clone());
    assert_eq!(read_back, Some(json!(true)));
}

#[tokio::test]
async fn a_garbled_answer_to_a_payment_is_read_back_not_taken_for_a_refusal() {
    let (rig, tc) = rig().await;
    tc.lock().unwrap().garble_next_payment = true;
    let r = rig.approved(pay_the_order()).await;
    let ran = rig.run(r.id).await;
    // Retried, the payment would be refused as already paid and the
    // request failed; read back, the order shows paid.
    assert_eq!(ran.request.state, State::Succeeded);
    assert_eq!(rig.mock.count("PayDeals"), 1);
    assert_eq!(charges(&tc), [format!("pay {ORDER}")]);
    rig.mock.assert_clean();
}

#[tokio::test]
async fn a_refusal_fails_the_request_and_charges_nothing() {
    let (rig, tc) = rig().await;
    tc.lock().unwrap().balance_fen = 100;
    let r = rig.approved(renew_one_month()).await;
    let ran = rig.run(r.id).await;
    assert_eq!(ran.request.state, State::Failed);
    let progress = rig.store.progress(r.id).await.unwrap();
    let line = purser::engine::executor::outcome_line(&ran.request, progress.as_ref(), None);
    assert_eq!(
        line.as_deref(),
        Some(
            "Failed, nothing more will be tried: RenewInstances: InvalidAccount.InsufficientBalance: RenewInstances: 余额不足."
        )
    );
    assert!(charges(&tc).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_executors_racing_on_one_request_charge_once() {
    for action in [renew_one_month(), pay_the_order()] {
        let (rig, tc) = rig().await;
        let r = rig.approved(action).await;
        let a = rig.executor(Arc::new(rig.store.clone()));
        let b = rig.executor(Arc::new(rig.store.clone()));
        let (x, y) = tokio::join!(a.run(r.id), b.run(r.id));
        x.unwrap();
        y.unwrap();
        // Whichever lost left it to the winner; a later sweep finds it done.
        rig.later();
        a.run(r.id).await.unwrap();
        assert_eq!(rig.state(r.id).await, State::Succeeded);
        assert_eq!(charges(&tc).len(), 1, "{:?}", charges(&tc));
        rig.mock.assert_clean();
    }
}

/// A combined payment is one PayDeals call: all paid, or, when one of the
/// orders was paid in the console or closed meanwhile, none.
#[tokio::test]
async fn a_combined_payment_is_one_call_that_pays_all_or_none() {
    let ids = |list: &[&str]| -> Vec<purser::domain::model::ExternalId> {
        list.iter()
            .map(|o| purser::domain::model::ExternalId::parse(o).unwrap())
            .collect()
    };
    let pay = |list: &[&str]| Action::Pay {
        orders: ids(list),
        coupons: vec![],
        discount: None,
        offered: vec![],
    };
    // Three unpaid orders: one call pays them all.
    let (first, tc) = rig().await;
    tc.lock().unwrap().others = vec![
        ("20261101000124".into(), 20_000, 1),
        ("20261101000125".into(), 30_000, 1),
    ];
    let r = first
        .approved(pay(&[ORDER, "20261101000124", "20261101000125"]))
        .await;
    assert_eq!(first.run(r.id).await.request.state, State::Succeeded);
    assert_eq!(first.mock.count("PayDeals"), 1, "one call");
    assert_eq!(
        charges(&tc),
        [
            format!("pay {ORDER}"),
            "pay 20261101000124".to_owned(),
            "pay 20261101000125".to_owned()
        ]
    );
    assert_eq!(tc.lock().unwrap().balance_fen, 800_000 - 130_000);
    first.mock.assert_clean();

    // Approved while all three were unpaid; then one was paid in the
    // console and one closed. The one call is refused whole: nothing paid.
    let (second, tc) = rig().await;
    tc.lock().unwrap().others = vec![
        ("20261101000124".into(), 20_000, 1),
        ("20261101000125".into(), 30_000, 1),
    ];
    let r = second
        .approved(pay(&[ORDER, "20261101000124", "20261101000125"]))
        .await;
    {
        let mut t = tc.lock().unwrap();
        t.others[0].2 = 4;
        t.others[1].2 = 7;
    }
    let ran = second.run(r.id).await;
    assert_eq!(ran.request.state, State::Failed);
    assert_eq!(second.mock.count("PayDeals"), 1);
    assert!(charges(&tc).is_empty(), "none paid");
    assert_eq!(tc.lock().unwrap().balance_fen, 800_000);
    let progress = second.store.progress(r.id).await.unwrap();
    let line =
        purser::engine::executor::outcome_line(&ran.request, progress.as_ref(), None).unwrap();
    assert!(line.contains("InvalidDeal"), "{line}");
    second.mock.assert_clean();
}
