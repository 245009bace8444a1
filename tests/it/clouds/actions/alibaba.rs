//! Alibaba: renewals carry the request's key as ClientToken (ECS
//! RenewInstance, BSS RenewInstance for other products), so a lost answer is
//! repeated and the repeat answers the first renewal; SetRenewal; orders
//! have no payment API and become a task closed when the order is paid.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Months, Utc};
use purser::adapters::alibaba::Alibaba;
use purser::domain::model::ExternalId;
use purser::domain::request::{Action, State};
use purser::engine::chatops::ReplyKind;
use purser::engine::executor::outcome_line;
use purser::ports::{Actions, Clock, Requests};
use serde_json::{Value, json};

use super::super::alibaba::{ID, SECRET};
use super::super::mock::{self, Canned, Mock, hang, ok};
use super::{Rig, calls_in_the_log, daemon};
use crate::helpers::epoch;

const ORDER: &str = "211203740590001";
const MONTH: i64 = 600;

struct Inst {
    id: &'static str,
    product: &'static str,
    end: DateTime<Utc>,
    renew: &'static str,
}

pub(super) struct Ali {
    pub(super) balance: i64,
    instances: Vec<Inst>,
    order_paid: bool,
    /// Client token → the first answer's order id, and when it was given.
    /// Alibaba documents no window for tokens: this cloud forgets them
    /// after half an hour.
    tokens: HashMap<String, (String, DateTime<Utc>)>,
    /// Renewal orders: id, instance, when made (each paid as it was made).
    renewals: Vec<(String, String, DateTime<Utc>)>,
    charges: Vec<String>,
    lose_next_renewal: bool,
    /// Money paid in by a person: when, and how much as the API writes it.
    pub(super) recharges: Vec<(DateTime<Utc>, &'static str)>,
}

fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn bss(data: Value) -> Canned {
    ok(
        json!({"Code": "Success", "Message": "Successful!", "RequestId": "bss-req",
        "Success": true, "Data": data})
        .to_string(),
    )
}

fn bss_error(code: &str, message: &str) -> Canned {
    mock::reply(
        400,
        json!({"Code": code, "Message": message, "RequestId": "bss-e", "Success": false})
            .to_string(),
    )
}

fn ecs_error(code: &str, message: &str) -> Canned {
    mock::reply(
        403,
        json!({"Code": code, "Message": message, "RequestId": "ecs-e"}).to_string(),
    )
}

/// BSS and ECS share action names: the key is the action, prefixed `ecs:`
/// for ECS's API version.
fn keyed() -> Box<dyn Fn(&mock::Req) -> String + Send + Sync> {
    Box::new(|req| match req.header("x-acs-version") {
        "2014-05-26" => format!("ecs:{}", req.header("x-acs-action")),
        _ => req.header("x-acs-action").to_owned(),
    })
}

/// When a request was signed (the cloud's clock, near enough).
fn sent_at(req: &mock::Req) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(req.header("x-acs-date"))
        .unwrap()
        .to_utc()
}

/// How long this cloud remembers a client token.
const TOKEN_WINDOW: Duration = Duration::minutes(30);

/// A renewal: charged once per token while the cloud remembers it,
/// answered alike on a repeat.
fn renew(
    a: &mut Ali,
    id: &str,
    months: u32,
    token: &str,
    at: DateTime<Utc>,
) -> Result<String, (String, String)> {
    if let Some((order, when)) = a.tokens.get(token)
        && at - *when < TOKEN_WINDOW
    {
        return Ok(order.clone());
    }
    let cost = MONTH * i64::from(months);
    if a.balance < cost {
        return Err((
            "InvalidAccountStatus.NotEnoughBalance".into(),
            "Your account does not have enough balance.".into(),
        ));
    }
    let Some(i) = a.instances.iter_mut().find(|i| i.id == id) else {
        return Err(("InvalidInstanceId.NotFound".into(), id.into()));
    };
    i.end = i.end.checked_add_months(Months::new(months)).unwrap();
    a.balance -= cost;
    a.charges.push(format!("renew {id} {months}m"));
    let order = format!("2026110{}", a.renewals.len() + 1);
    a.tokens.insert(token.to_owned(), (order.clone(), at));
    a.renewals.push((order.clone(), id.to_owned(), at));
    Ok(order)
}

pub(super) async fn alibaba_cloud() -> (Mock, Arc<Mutex<Ali>>) {
    let m = Mock::start(epoch(), keyed(), mock::acs3(ID, SECRET)).await;
    let inst = |id, product| Inst {
        id,
        product,
        end: epoch() + Duration::days(5),
        renew: "ManualRenewal",
    };
    let ali = Arc::new(Mutex::new(Ali {
        balance: 8_000,
        instances: vec![
            inst("i-web", "ecs"),
            inst("slb-front", "slb"),
            inst("rm-db", "rds"),
        ],
        order_paid: false,
        tokens: HashMap::new(),
        renewals: vec![],
        charges: vec![],
        lose_next_renewal: false,
        recharges: vec![],
    }));
    let s = ali.clone();
    m.on("QueryAccountBalance", move |_, _| {
        let a = s.lock().unwrap();
        let text = format!("{}.00", a.balance);
        bss(json!({"AvailableAmount": text, "AvailableCashAmount": text,
            "CreditAmount": "0.00", "Currency": "CNY"}))
    });
    let s = ali.clone();
    m.on("QueryAvailableInstances", move |req, _| {
        let a = s.lock().unwrap();
        let wanted = req.param("InstanceIDs");
        let first_page = req.param("PageNum").is_none_or(|p| p == "1");
        let list: Vec<Value> = a
            .instances
            .iter()
            .filter(|i| wanted.as_deref().map_or(first_page, |w| w == i.id))
            .map(|i| {
                json!({"InstanceID": i.id, "ProductCode": i.product, "ProductType": "",
                "Region": "cn-hangzhou", "SubscriptionType": "Subscription",
                "EndTime": utc(i.end), "RenewStatus": i.renew, "Status": "Normal"})
            })
            .collect();
        bss(json!({"TotalCount": list.len(), "InstanceList": list}))
    });
    let s = ali.clone();
    m.on("QueryOrders", move |req, _| {
        let a = s.lock().unwrap();
        let time = |name: &str| {
            req.param(name)
                .map(|t| DateTime::parse_from_rfc3339(&t).unwrap().to_utc())
        };
        if req.param("OrderType").as_deref() == Some("Renew") {
            let (from, to) = (time("CreateTimeStart"), time("CreateTimeEnd"));
            let orders: Vec<Value> = a
                .renewals
                .iter()
                .filter(|(_, _, at)| from.is_none_or(|f| *at >= f) && to.is_none_or(|t| *at <= t))
                .map(|(order, _, at)| {
                    json!({"OrderId": order, "OrderType": "Renew", "PaymentStatus": "Paid",
                    "CreateTime": utc(*at), "ProductCode": "ecs", "Currency": "CNY",
                    "PretaxAmount": "600.00"})
                })
                .collect();
            return bss(json!({"TotalCount": orders.len(), "OrderList": {"Order": orders}}));
        }
        let orders = if a.order_paid {
            json!([])
        } else {
            json!([{"OrderId": ORDER, "OrderType": "New", "PaymentStatus": "Unpaid",
                "CreateTime": utc(epoch() - Duration::hours(2)), "ProductCode": "ecs",
                "Currency": "CNY", "PretaxAmount": "800.00"}])
        };
        bss(json!({"TotalCount": orders.as_array().unwrap().len(), "OrderList": {"Order": orders}}))
    });
    let s = ali.clone();
    m.on("QueryAccountTransactions", move |req, _| {
        let a = s.lock().unwrap();
        let rows: Vec<Value> = if req.param("TransactionType").as_deref() == Some("Payment") {
            a.recharges
                .iter()
                .map(|(at, amount)| {
                    json!({"TransactionNumber": "p1", "TransactionTime": utc(*at),
                    "TransactionFlow": "Income", "TransactionType": "Payment",
                    "TransactionChannel": "Alipay", "Amount": amount, "Balance": "0.00"})
                })
                .collect()
        } else {
            vec![]
        };
        bss(json!({"TotalCount": rows.len(), "AccountTransactionsList": {"AccountTransactionsList": rows}}))
    });
    m.on("ecs:DescribeRenewalPrice", |req, _| {
        let period: i64 = req.param("Period").unwrap().parse().unwrap();
        if req.param("PriceUnit").as_deref() != Some("Month") {
            return ecs_error("InvalidPriceUnit", "PriceUnit");
        }
        // A JSON number, in yuan.
        ok(json!({"RequestId": "p", "PriceInfo": {"Price": {"OriginalPrice": 2 * MONTH * period,
            "DiscountPrice": MONTH * period, "TradePrice": (MONTH * period) as f64, "Currency": "CNY"}}})
        .to_string())
    });
    let s = ali.clone();
    m.on("ecs:RenewInstance", move |req, _| {
        let mut a = s.lock().unwrap();
        let (Some(id), Some(period), Some(token)) = (
            req.param("InstanceId"),
            req.param("Period"),
            req.param("ClientToken"),
        ) else {
            return ecs_error("MissingParameter", "InstanceId, Period, ClientToken");
        };
        if req.param("PeriodUnit").as_deref() != Some("Month") {
            return ecs_error("InvalidPeriodUnit", "PeriodUnit");
        }
        match renew(&mut a, &id, period.parse().unwrap(), &token, sent_at(req)) {
            Ok(order) => {
                if std::mem::take(&mut a.lose_next_renewal) {
                    return hang();
                }
                ok(json!({"OrderId": order, "RequestId": "ecs-renew"}).to_string())
            }
            Err((code, message)) => ecs_error(&code, &message),
        }
    });
    let s = ali.clone();
    m.on("RenewInstance", move |req, _| {
        let mut a = s.lock().unwrap();
        let (Some(id), Some(months), Some(token)) = (
            req.param("InstanceId"),
            req.param("RenewPeriod"),
            req.param("ClientToken"),
        ) else {
            return bss_error("MissingParameter", "InstanceId, RenewPeriod, ClientToken");
        };
        if req.param("ProductCode").as_deref() != Some("slb") {
            return bss_error("NotSupported", "use the product's own API");
        }
        match renew(&mut a, &id, months.parse().unwrap(), &token, sent_at(req)) {
            // The doc's example has the id as a bare number.
            Ok(order) => bss(json!({"OrderId": order.parse::<u64>().unwrap()})),
            Err((code, message)) => bss_error(&code, &message),
        }
    });
    let s = ali.clone();
    m.on("GetOrderDetail", move |req, _| {
        let a = s.lock().unwrap();
        let id = req.param("OrderId").unwrap_or_default();
        let orders: Vec<Value> = a
            .renewals
            .iter()
            .filter(|(order, _, _)| *order == id)
            .map(|(order, instance, at)| {
                json!({"OrderId": order, "SubOrderId": format!("{order}-1"), "OrderType": "Renew",
                "PaymentStatus": "Paid", "CreateTime": utc(*at), "ProductCode": "ecs",
                "InstanceIDs": instance, "Region": "cn-hangzhou", "Currency": "CNY",
                "PretaxAmount": "600.00"})
            })
            .collect();
        bss(json!({"TotalCount": orders.len(), "OrderList": {"Order": orders}}))
    });
    let s = ali.clone();
    m.on("SetRenewal", move |req, _| {
        let mut a = s.lock().unwrap();
        let status = req.param("RenewalStatus").unwrap_or_default();
        if status == "AutoRenewal" && req.param("RenewalPeriod").is_none() {
            return bss_error("MissingRenewalPeriod", "RenewalPeriod");
        }
        let ids = req.param("InstanceIDs").unwrap_or_default();
        for i in a.instances.iter_mut().filter(|i| i.id == ids) {
            i.renew = if status == "AutoRenewal" {
                "AutoRenewal"
            } else {
                "ManualRenewal"
            };
        }
        ok(
            json!({"Code": "Success", "Message": "Successful!", "RequestId": "r", "Success": true})
                .to_string(),
        )
    });
    (m, ali)
}

fn charges(a: &Arc<Mutex<Ali>>) -> Vec<String> {
    a.lock().unwrap().charges.clone()
}

pub(super) fn alibaba_account(m: &Mock) -> String {
    format!(
        r#"
[[providers]]
name = "alibaba"
kind = "alibaba"

[[accounts]]
id = "ali-prod"
provider = "alibaba"
endpoint = "{url}"
credentials = {{ key_id = "file:ali-id", secret = "file:ali-secret" }}
"#,
        url = m.url
    )
}

pub(super) const KEYS: [(&str, &str); 2] = [("ali-id", ID), ("ali-secret", SECRET)];

async fn rig() -> (Rig, Arc<Mutex<Ali>>) {
    let (m, ali) = alibaba_cloud().await;
    let account = alibaba_account(&m);
    let rig = Rig::new(m, &account, &KEYS, |a, access, clock| {
        let access = super::super::accounts(&a.account, access);
        let mut x = Alibaba::new(access, None, clock);
        super::super::quick(x.http_mut());
        ("alibaba".to_owned(), Arc::new(x) as Arc<dyn Actions>)
    })
    .await;
    (rig, ali)
}

fn renew_month(id: &str) -> Action {
    Action::Renew {
        resources: vec![ExternalId::parse(id).unwrap()],
        months: 1,
    }
}

#[tokio::test]
async fn from_chat_an_alibaba_renewal_auto_renew_change_and_order_payment_task_each_happen_once() {
    let (m, ali) = alibaba_cloud().await;
    let (_world, app, chat) = daemon(&alibaba_account(&m), &KEYS, "").await;
    let say = async |name: &str, text: &str| super::say(&chat, name, text).await;

    let (kind, text) = say("rex", "renew i-web 1m").await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
    assert!(text.contains("cost ¥600.00"), "priced by the cloud: {text}");
    let (_, text) = say("ana", "approve R1").await;
    assert!(
        text.starts_with("R1 approved. Done: i-web now expires 2026-12-06 00:00 UTC."),
        "{text}"
    );
    let (kind, _) = say("ana", "approve R1").await;
    assert_eq!(kind, ReplyKind::Refused);

    let (_, text) = say("rex", "autorenew i-web on").await;
    assert!(text.starts_with("R2 opened"), "{text}");
    let (_, text) = say("bo", "approve R2").await;
    assert!(
        text.starts_with("R2 approved. Done: auto-renew turned on for i-web."),
        "{text}"
    );

    // No API pays an order: approved, it is a task for a person…
    let (_, text) = say("rex", &format!("pay {ORDER}")).await;
    assert!(text.starts_with("R3 opened"), "{text}");
    let (_, text) = say("ana", "approve R3").await;
    assert!(text.starts_with("R3 approved."), "{text}");
    assert!(text.contains("no API that pays an order"), "{text}");
    assert_eq!(
        app.store.request(r3()).await.unwrap().unwrap().state,
        State::AwaitingPayment
    );
    // …closed once the order leaves the unpaid list.
    ali.lock().unwrap().order_paid = true;
    for step in [Duration::hours(1), Duration::hours(1), Duration::minutes(1)] {
        // The cloud's clock moves with purser's, or it refuses the signatures.
        m.set_now(app.clock.now() + step);
        app.advance(step).await;
    }
    let (_, text) = say("rex", "request R3").await;
    assert!(text.starts_with("R3 · verified"), "{text}");

    assert_eq!(charges(&ali), ["renew i-web 1m"]);
    assert_eq!(ali.lock().unwrap().instances[0].renew, "AutoRenewal");
    m.assert_clean();
    assert_eq!(
        calls_in_the_log(&*app.store).await,
        ["RenewInstance", "SetRenewal"]
    );
}

fn r3() -> purser::domain::request::RequestId {
    purser::domain::request::RequestId(3)
}

#[tokio::test]
async fn a_lost_answer_is_repeated_with_the_same_client_token_and_charged_once() {
    let (rig, ali) = rig().await;
    ali.lock().unwrap().lose_next_renewal = true;
    let r = rig.approved(renew_month("i-web")).await;
    let ran = rig.run(r.id).await;
    assert_eq!(ran.request.state, State::Succeeded);
    assert_eq!(rig.mock.count("ecs:RenewInstance"), 2, "repeated");
    assert_eq!(charges(&ali), ["renew i-web 1m"], "charged once");
    let tokens: Vec<String> = rig
        .mock
        .seen()
        .iter()
        .filter(|q| q.header("x-acs-action") == "RenewInstance")
        .map(|q| q.param("ClientToken").unwrap())
        .collect();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0], tokens[1]);
    assert_eq!(tokens[0], format!("{}-0", r.key));
    rig.mock.assert_clean();
}

#[tokio::test]
async fn a_crash_at_any_write_resumes_without_a_second_charge() {
    for at in 1..=4 {
        for after_commit in [false, true] {
            let (rig, ali) = rig().await;
            let r = rig.approved(renew_month("i-web")).await;
            let case = format!("crash at write {at}, after commit: {after_commit}");
            let state = rig.crash_and_resume(r.id, at, after_commit).await;
            assert_eq!(state, State::Succeeded, "{case}");
            assert_eq!(charges(&ali), ["renew i-web 1m"], "{case}");
            rig.mock.assert_clean();
        }
    }
}

#[tokio::test]
async fn other_products_renew_through_bss_and_rds_is_a_task() {
    let (rig, ali) = rig().await;
    let r = rig.approved(renew_month("slb-front")).await;
    let ran = rig.run(r.id).await;
    assert_eq!(ran.request.state, State::Succeeded);
    let progress = rig.store.progress(r.id).await.unwrap();
    assert_eq!(
        outcome_line(&ran.request, progress.as_ref(), None).as_deref(),
        Some("Done: slb-front now expires 2026-12-06 00:00 UTC.")
    );
    assert_eq!(charges(&ali), ["renew slb-front 1m"]);
    assert_eq!(rig.mock.count("RenewInstance"), 1);

    let r = rig.approved(renew_month("rm-db")).await;
    let ran = rig.run(r.id).await;
    assert_eq!(ran.request.state, State::AwaitingPayment);
    let progress = rig.store.progress(r.id).await.unwrap().unwrap();
    assert!(
        progress["task"]["by_hand"]
            .as_str()
            .unwrap()
            .contains("RDS console"),
        "{progress}"
    );
    assert_eq!(charges(&ali).len(), 1);
    rig.mock.assert_clean();
}

#[tokio::test]
async fn not_enough_balance_fails_with_the_clouds_words() {
    let (rig, ali) = rig().await;
    ali.lock().unwrap().balance = 100;
    let r = rig.approved(renew_month("i-web")).await;
    let ran = rig.run(r.id).await;
    assert_eq!(ran.request.state, State::Failed);
    let progress = rig.store.progress(r.id).await.unwrap();
    assert_eq!(
        outcome_line(&ran.request, progress.as_ref(), None).as_deref(),
        Some(
            "Failed, nothing more will be tried: RenewInstance: InvalidAccountStatus.NotEnoughBalance: RenewInstance: Your account does not have enough balance."
        )
    );
    assert!(charges(&ali).is_empty());
    // A period the API does not take is refused before anything is sent.
    let r = rig
        .approved(Action::Renew {
            resources: vec![ExternalId::parse("slb-front").unwrap()],
            months: 10,
        })
        .await;
    assert_eq!(rig.run(r.id).await.request.state, State::Failed);
    assert_eq!(rig.mock.count("RenewInstance"), 0);
}

#[tokio::test]
async fn after_a_long_interruption_a_renewal_is_read_back_from_its_orders_not_repeated_on_its_token()
 {
    let (rig, ali) = rig().await;
    let r = rig.approved(renew_month("i-web")).await;
    // The renewal goes through, its answer is lost, and the runner dies
    // before it records anything more.
    ali.lock().unwrap().lose_next_renewal = true;
    let dying = Arc::new(super::Crashing::new(rig.store.clone(), 3, false));
    assert!(rig.executor(dying).run(r.id).await.is_err());
    assert_eq!(charges(&ali), ["renew i-web 1m"]);
    let sent = rig.mock.count("ecs:RenewInstance");
    // Two hours later the cloud has forgotten the token: a repeat would
    // renew again. Its renewal order, created since the call, shows it was done.
    rig.clock.advance(Duration::hours(2));
    rig.mock.set_now(rig.clock.now());
    let ran = rig.run(r.id).await;
    assert_eq!(ran.request.state, State::Succeeded, "{:?}", ran.paused);
    assert_eq!(charges(&ali), ["renew i-web 1m"], "renewed once");
    assert_eq!(rig.mock.count("ecs:RenewInstance"), sent, "not sent again");
    rig.mock.assert_clean();
}

#[tokio::test]
async fn after_a_long_interruption_a_renewal_that_did_not_happen_is_made_once() {
    let (rig, ali) = rig().await;
    let r = rig.approved(renew_month("i-web")).await;
    // The runner records the renewal and dies before sending it.
    let dying = Arc::new(super::Crashing::new(rig.store.clone(), 2, true));
    assert!(rig.executor(dying).run(r.id).await.is_err());
    rig.clock.advance(Duration::hours(2));
    rig.mock.set_now(rig.clock.now());
    let ran = rig.run(r.id).await;
    assert_eq!(ran.request.state, State::Succeeded, "{:?}", ran.paused);
    assert_eq!(charges(&ali), ["renew i-web 1m"]);
    // The instance and its renewal orders were read before the repeat.
    assert_eq!(rig.mock.count("QueryOrders"), 1);
    rig.mock.assert_clean();
}
