//! Huawei: a renewal creates its order unpaid (no token; read back by the
//! renewal orders created since), then pays it with PayOrders, whose repeat
//! the cloud refuses (CBC.99003106); order payments with coupons; auto-renew.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Months, NaiveDateTime, Utc};
use purser::adapters::huawei::Huawei;
use purser::domain::model::ExternalId;
use purser::domain::request::{Action, State};
use purser::engine::chatops::ReplyKind;
use purser::engine::executor::outcome_line;
use purser::ports::{Actions, Requests};
use serde_json::{Value, json};

use super::super::huawei::{AK, SK};
use super::super::mock::{self, Canned, Mock, by_route, hang, ok};
use super::{Rig, calls_in_the_log, daemon};
use crate::helpers::epoch;

const BALANCES: &str = "GET /v2/accounts/customer-accounts/balances";
const RESOURCES: &str = "POST /v2/orders/suscriptions/resources/query";
const ORDERS: &str = "GET /v2/orders/customer-orders";
const CHANGES: &str = "GET /v2/accounts/customer-accounts/account-change-records";
const RENEW: &str = "POST /v2/orders/subscriptions/resources/renew";
const RATE: &str = "POST /v2/bills/ratings/period-resources/renew-rate";
const PAY: &str = "POST /v3/orders/customer-orders/pay";
const COUPONS: &str = "GET /v2/orders/customer-orders/order-coupons";
const DISCOUNTS: &str = "GET /v2/orders/customer-orders/order-discounts";
const AUTO_ON: &str = "POST /v2/orders/subscriptions/resources/autorenew/r-web";
const AUTO_OFF: &str = "DELETE /v2/orders/subscriptions/resources/autorenew/r-web";

/// A new-purchase order waiting for payment, ¥800.
pub(super) const ORDER: &str = "CS2611010000ABCDE";
/// One month of r-web, in fen.
const MONTH_FEN: i64 = 60_000;

struct HwOrder {
    id: String,
    /// 1 new, 2 renewal.
    order_type: u8,
    /// 6 awaiting payment, 5 completed, 4 cancelled.
    status: u8,
    fen: i64,
    months: u32,
    created: DateTime<Utc>,
    /// The main resources it renews.
    resources: Vec<String>,
}

pub(super) struct HwResource {
    pub(super) expires: DateTime<Utc>,
    pub(super) auto: bool,
}

pub(super) struct Hw {
    pub(super) balance_fen: i64,
    pub(super) resources: BTreeMap<String, HwResource>,
    orders: Vec<HwOrder>,
    /// What was charged: one entry per order paid.
    pub(super) charges: Vec<String>,
    lose_next_renewal: bool,
    /// The next renewal's connection drops before the cloud acts on it.
    reset_next_renewal: bool,
    lose_next_payment: bool,
    coupon_bodies: Vec<Value>,
    /// Money paid in by a person: when, and how much in yuan.
    pub(super) recharges: Vec<(DateTime<Utc>, &'static str)>,
}

impl Hw {
    fn renewal_orders(&self) -> usize {
        self.orders.iter().filter(|o| o.order_type == 2).count()
    }

    fn web(&mut self) -> &mut HwResource {
        self.resources.get_mut("r-web").unwrap()
    }

    /// The resources paid orders renewed, each as often as it was.
    pub(super) fn renewed(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for o in self
            .orders
            .iter()
            .filter(|o| o.order_type == 2 && o.status == 5)
        {
            for r in &o.resources {
                *out.entry(r.clone()).or_default() += 1;
            }
        }
        out
    }

    /// A renewal as `RenewalResources` makes it: one unpaid order for the
    /// resources, or the error the cloud gives.
    pub(super) fn renew(
        &mut self,
        ids: &[String],
        months: u32,
        at: DateTime<Utc>,
    ) -> Result<String, Canned> {
        if ids.is_empty() || ids.len() > 10 {
            return Err(error(
                400,
                "CBC.0100",
                "resource_ids: 1 to 10 main resources",
            ));
        }
        if let Some(unknown) = ids.iter().find(|i| !self.resources.contains_key(*i)) {
            return Err(error(400, "CBC.0100", &format!("no resource {unknown}")));
        }
        let id = format!("CS-RENEW-{}", self.renewal_orders() + 1);
        self.orders.push(HwOrder {
            id: id.clone(),
            order_type: 2,
            status: 6,
            fen: MONTH_FEN * i64::from(months) * ids.len() as i64,
            months,
            created: at,
            resources: ids.to_vec(),
        });
        Ok(id)
    }

    /// A payment as `PayOrders` makes it; a paid or changed order is
    /// refused (CBC.99003106), never paid twice.
    pub(super) fn pay(&mut self, id: &str) -> Result<(), Canned> {
        let Some(o) = self.orders.iter().find(|o| o.id == id) else {
            return Err(error(400, "CBC.30000010", "订单不存在"));
        };
        if o.status != 6 {
            return Err(error(
                400,
                "CBC.99003106",
                "订单状态已发生变更,不能进行支付操作",
            ));
        }
        if self.balance_fen < o.fen {
            return Err(error(400, "CBC.99005003", "余额不足"));
        }
        let (fen, months, renews) = (o.fen, o.months, o.resources.clone());
        self.balance_fen -= fen;
        for r in renews {
            let r = self.resources.get_mut(&r).unwrap();
            r.expires = r.expires.checked_add_months(Months::new(months)).unwrap();
        }
        self.orders.iter_mut().find(|o| o.id == id).unwrap().status = 5;
        self.charges.push(format!("pay {id}"));
        Ok(())
    }

    fn resource_json(&self, id: &str) -> Value {
        let r = &self.resources[id];
        json!({"id": format!("8a7f-{id}"), "resource_id": id, "resource_name": id,
            "region_code": "cn-north-4", "service_type_code": "hws.service.type.ec2",
            "service_type_name": "弹性云服务器", "is_main_resource": 1, "status": 2,
            "expire_time": utc(r.expires), "expire_policy": if r.auto { 3 } else { 0 }})
    }
}

fn error(status: u16, code: &str, msg: &str) -> Canned {
    mock::reply(
        status,
        json!({"error_code": code, "error_msg": msg}).to_string(),
    )
}

fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub(super) fn sent_at(req: &mock::Req) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(req.header("x-sdk-date"), "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc()
}

fn order_json(o: &HwOrder) -> Value {
    json!({"order_id": o.id, "customer_id": "c", "service_type_code": "hws.service.type.ec2",
        "service_type_name": "弹性云服务器", "source_type": 1, "status": o.status,
        "order_type": o.order_type, "create_time": utc(o.created), "currency": "CNY",
        "amount_after_discount": o.fen, "official_amount": o.fen, "measure_id": 3})
}

/// Huawei's billing API over `resources` (each expiring in five days),
/// with ¥8,000 and one unpaid new-purchase order.
pub(super) async fn huawei_cloud_of(resources: &[&str]) -> (Mock, Arc<Mutex<Hw>>) {
    let m = Mock::start(epoch(), by_route(), mock::sdk_hmac(AK, SK)).await;
    let hw = Arc::new(Mutex::new(Hw {
        balance_fen: 800_000,
        resources: resources
            .iter()
            .map(|r| {
                (
                    (*r).to_owned(),
                    HwResource {
                        expires: epoch() + Duration::days(5),
                        auto: false,
                    },
                )
            })
            .collect(),
        orders: vec![HwOrder {
            id: ORDER.into(),
            order_type: 1,
            status: 6,
            fen: 80_000,
            months: 0,
            created: epoch() - Duration::days(1),
            resources: vec![],
        }],
        charges: vec![],
        lose_next_renewal: false,
        reset_next_renewal: false,
        lose_next_payment: false,
        coupon_bodies: vec![],
        recharges: vec![],
    }));
    let s = hw.clone();
    m.on(BALANCES, move |_, _| {
        let h = s.lock().unwrap();
        ok(
            json!({"account_balances": [{"account_id": "AT1", "account_type": 1,
            "amount": h.balance_fen, "currency": "CNY", "designated_amount": 0, "measure_id": 3}],
            "debt_amount": 0, "measure_id": 1, "currency": "CNY"})
            .to_string(),
        )
    });
    let s = hw.clone();
    m.on(RESOURCES, move |req, _| {
        let h = s.lock().unwrap();
        let body = req.json();
        // By order ("the resources of this order"), by id, or a page of all.
        let ids: Vec<String> = match (&body["order_id"], &body["resource_ids"]) {
            (Value::String(order), _) if !order.is_empty() => h
                .orders
                .iter()
                .find(|o| &o.id == order)
                .map(|o| o.resources.clone())
                .unwrap_or_default(),
            (_, Value::Array(ids)) if !ids.is_empty() => ids
                .iter()
                .filter_map(|i| i.as_str())
                .filter(|i| h.resources.contains_key(*i))
                .map(str::to_owned)
                .collect(),
            _ if body["offset"].as_u64().unwrap_or(0) == 0 => h.resources.keys().cloned().collect(),
            _ => vec![],
        };
        let data: Vec<Value> = ids.iter().map(|i| h.resource_json(i)).collect();
        ok(json!({"total_count": data.len(), "data": data}).to_string())
    });
    let s = hw.clone();
    m.on(ORDERS, move |req, _| {
        let h = s.lock().unwrap();
        let begin = req
            .param("create_time_begin")
            .map(|t| DateTime::parse_from_rfc3339(&t).unwrap().to_utc());
        let end = req
            .param("create_time_end")
            .map(|t| DateTime::parse_from_rfc3339(&t).unwrap().to_utc());
        let found: Vec<&HwOrder> = h
            .orders
            .iter()
            .filter(|o| {
                req.param("status")
                    .is_none_or(|s| s == o.status.to_string())
            })
            .filter(|o| req.param("order_id").is_none_or(|id| id == o.id))
            .filter(|o| {
                req.param("order_type")
                    .is_none_or(|t| t == o.order_type.to_string())
            })
            .filter(|o| begin.is_none_or(|b| o.created >= b))
            .filter(|o| end.is_none_or(|e| o.created <= e))
            .collect();
        let offset = req.param("offset").map_or(0, |o| o.parse().unwrap());
        let limit = req.param("limit").map_or(10, |l| l.parse().unwrap());
        let page: Vec<Value> = found
            .iter()
            .skip(offset)
            .take(limit)
            .map(|o| order_json(o))
            .collect();
        ok(json!({"total_count": found.len(), "order_infos": page}).to_string())
    });
    let s = hw.clone();
    m.on(
        &format!("GET {}", super::super::mock::DETAILS),
        move |req, _| {
            let h = s.lock().unwrap();
            let id = req.path.rsplit('/').next().unwrap_or_default();
            match h.orders.iter().find(|o| o.id == id) {
                // No deadline of its own: the documented seven days hold.
                Some(o) => {
                    ok(json!({"order_info": order_json(o), "order_line_items": []}).to_string())
                }
                None => super::super::mock::reply(
                    400,
                    json!({"error_code": "CBC.30000010", "error_msg": "invalid order"}).to_string(),
                ),
            }
        },
    );
    let s = hw.clone();
    m.on(CHANGES, move |req, _| {
        let h = s.lock().unwrap();
        let records: Vec<Value> = if req.param("trade_type").as_deref() == Some("RECHARGE") {
            h.recharges
                .iter()
                .map(|(at, yuan)| {
                    json!({"account_change_id": "rc1", "trade_detail_type": "RECHARGE",
                    "trade_time": utc(*at), "trade_id": "t1", "revenue_expense_type": "REVENUE",
                    "payment_channel_id": "1", "change_amount": yuan, "balance_after_change": "0"})
                })
                .collect()
        } else {
            vec![]
        };
        ok(
            json!({"total_count": records.len(), "currency": "CNY", "records": records})
                .to_string(),
        )
    });
    m.on(RATE, |req, _| {
        let body = req.json();
        let months = match body["period_type"].as_u64() {
            Some(2) => body["period_num"].as_i64().unwrap_or(0),
            Some(3) => 12 * body["period_num"].as_i64().unwrap_or(0),
            _ => return error(400, "CBC.0100", "period_type"),
        };
        // Yuan, as a string.
        let rates: Vec<Value> = body["resource_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| json!({"resource_id": id, "amount": format!("{}.00", MONTH_FEN * months / 100)}))
            .collect();
        ok(json!({"currency": "CNY", "renew_inquiry_results": rates, "fail_resource_infos": []})
            .to_string())
    });
    let s = hw.clone();
    m.on(RENEW, move |req, _| {
        let mut h = s.lock().unwrap();
        let body = req.json();
        if body["period_type"] != 2 {
            return error(400, "CBC.0100", "bad renewal");
        }
        if body["is_auto_pay"] != 0 {
            return error(400, "CBC.0100", "purser pays renewal orders itself");
        }
        if std::mem::take(&mut h.reset_next_renewal) {
            return mock::reset();
        }
        let months = body["period_num"].as_u64().unwrap() as u32;
        let ids: Vec<String> = body["resource_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_str().unwrap().to_owned())
            .collect();
        let id = match h.renew(&ids, months, sent_at(req)) {
            Ok(id) => id,
            Err(refused) => return refused,
        };
        if std::mem::take(&mut h.lose_next_renewal) {
            return hang();
        }
        ok(json!({"order_ids": [id], "fail_resource_infos": []}).to_string())
    });
    let s = hw.clone();
    m.on(PAY, move |req, _| {
        let mut h = s.lock().unwrap();
        let body = req.json();
        if body["use_coupon"] == "YES" {
            h.coupon_bodies.push(body.clone());
        }
        let id = body["order_id"].as_str().unwrap_or_default().to_owned();
        if let Err(refused) = h.pay(&id) {
            return refused;
        }
        if std::mem::take(&mut h.lose_next_payment) {
            return hang();
        }
        // Success is an empty body.
        ok("")
    });
    // As ListOrderCouponsByOrderId lists them: kinds 1 to 4, status 2 for
    // usable; one expired, one not yet activated.
    m.on(COUPONS, |req, _| {
        if req.param("order_id").as_deref() != Some(ORDER) {
            return ok(json!({"count": 0, "user_coupons": []}).to_string());
        }
        ok(json!({"count": 3, "user_coupons": [
            {"coupon_id": "CP-1", "coupon_type": 1, "status": 2, "measure_id": 1, "face_value": 100,
             "effective_time": "2026-10-01T00:00:00Z", "expire_time": "2026-12-31T15:59:59Z"},
            {"coupon_id": "CP-OLD", "coupon_type": 4, "status": 2, "measure_id": 1, "face_value": 50,
             "effective_time": "2026-09-01T00:00:00Z", "expire_time": "2026-10-31T15:59:59Z"},
            {"coupon_id": "CP-LATER", "coupon_type": 1, "status": 1, "measure_id": 1, "face_value": 80}],
            "coupon_max_use_quantity": []})
        .to_string())
    });
    m.on(DISCOUNTS, |_, _| ok(json!({"discounts": []}).to_string()));
    let s = hw.clone();
    m.on(AUTO_ON, move |_, _| {
        s.lock().unwrap().web().auto = true;
        ok("")
    });
    let s = hw.clone();
    m.on(AUTO_OFF, move |_, _| {
        s.lock().unwrap().web().auto = false;
        mock::reply(204, "")
    });
    (m, hw)
}

pub(super) async fn huawei_cloud() -> (Mock, Arc<Mutex<Hw>>) {
    huawei_cloud_of(&["r-web"]).await
}

fn charges(hw: &Arc<Mutex<Hw>>) -> Vec<String> {
    hw.lock().unwrap().charges.clone()
}

pub(super) fn huawei_account(m: &Mock) -> String {
    format!(
        r#"
[[providers]]
name = "huawei"
kind = "huawei"

[[accounts]]
id = "hw-prod"
provider = "huawei"
endpoint = "{url}"
credentials = {{ key_id = "file:hw-ak", secret = "file:hw-sk" }}
"#,
        url = m.url
    )
}

pub(super) const KEYS: [(&str, &str); 2] = [("hw-ak", AK), ("hw-sk", SK)];

async fn rig() -> (Rig, Arc<Mutex<Hw>>) {
    rig_of(&["r-web"]).await
}

async fn rig_of(resources: &[&str]) -> (Rig, Arc<Mutex<Hw>>) {
    let (m, hw) = huawei_cloud_of(resources).await;
    let account = huawei_account(&m);
    let rig = Rig::new(m, &account, &KEYS, |a, access, clock| {
        let access = super::super::accounts(&a.account, access);
        let mut h = Huawei::new(access, None, clock);
        super::super::quick(h.http_mut());
        ("huawei".to_owned(), Arc::new(h) as Arc<dyn Actions>)
    })
    .await;
    (rig, hw)
}

fn renew(months: u32) -> Action {
    Action::Renew {
        resources: vec![ExternalId::parse("r-web").unwrap()],
        months,
    }
}

pub(super) async fn rig_for_leases() -> (Rig, Arc<Mutex<Hw>>) {
    rig().await
}

fn renew_of(resources: &[&str], months: u32) -> Action {
    Action::Renew {
        resources: resources
            .iter()
            .map(|r| ExternalId::parse(r).unwrap())
            .collect(),
        months,
    }
}

/// The orders each request's answered payments name, from the audit log.
async fn paid_by(rig: &Rig) -> BTreeMap<u64, Vec<String>> {
    let mut out: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for e in rig.store.audit_log(None).await.unwrap() {
        let d: Value = serde_json::from_str(&e.detail).unwrap();
        if e.event == "answer" && d["call"] == "PayOrders" {
            out.entry(e.request.unwrap().0)
                .or_default()
                .push(d["result"]["order_id"].as_str().unwrap().to_owned());
        }
    }
    out
}

fn pay(coupons: &[&str]) -> Action {
    Action::Pay {
        orders: vec![ExternalId::parse(ORDER).unwrap()],
        coupons: coupons.iter().map(|c| (*c).to_owned()).collect(),
        discount: None,
        offered: vec![],
    }
}

#[tokio::test]
async fn from_chat_a_huawei_renewal_payment_and_auto_renew_change_each_charge_once() {
    let (m, hw) = huawei_cloud().await;
    let (_world, app, chat) = daemon(&huawei_account(&m), &KEYS, "").await;
    let say = async |name: &str, text: &str| super::say(&chat, name, text).await;

    let (kind, text) = say("rex", "renew r-web 1m before it lapses").await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
    assert!(text.contains("cost ¥600.00"), "priced by the cloud: {text}");
    assert!(
        text.contains("balance ¥8,000.00 → ¥7,400.00 after"),
        "{text}"
    );
    let (kind, text) = say("ana", "approve R1").await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
    assert!(
        text.starts_with("R1 approved. Done: r-web now expires 2026-12-06 00:00 UTC."),
        "{text}"
    );
    let (kind, _) = say("bo", "approve R1").await;
    assert_eq!(kind, ReplyKind::Refused, "a second approval does nothing");

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

    let (_, text) = say("rex", "autorenew r-web on").await;
    let (_, text2) = say("ana", "approve R3").await;
    assert!(
        text2.starts_with("R3 approved. Done: auto-renew turned on for r-web."),
        "{text}\n{text2}"
    );

    assert_eq!(
        charges(&hw),
        ["pay CS-RENEW-1".to_owned(), format!("pay {ORDER}")]
    );
    assert_eq!(hw.lock().unwrap().renewal_orders(), 1);
    assert!(hw.lock().unwrap().web().auto);
    assert_eq!(m.count(RENEW), 1);
    m.assert_clean();
    assert_eq!(
        calls_in_the_log(&*app.store).await,
        [
            "RenewalResources",
            "PayOrders",
            "PayOrders",
            "AutoRenewalResources"
        ]
    );
}

#[tokio::test]
async fn a_crash_at_any_write_of_a_renewal_creates_one_order_and_pays_it_once() {
    // executing; the renewal recorded, answered; the payment recorded,
    // answered; succeeded.
    for at in 1..=6 {
        for after_commit in [false, true] {
            let (rig, hw) = rig().await;
            let r = rig.approved(renew(1)).await;
            let case = format!("crash at write {at}, after commit: {after_commit}");
            let state = rig.crash_and_resume(r.id, at, after_commit).await;
            assert_eq!(state, State::Succeeded, "{case}");
            assert_eq!(charges(&hw), ["pay CS-RENEW-1"], "{case}");
            assert_eq!(hw.lock().unwrap().renewal_orders(), 1, "{case}");
            rig.mock.assert_clean();
        }
    }
}

#[tokio::test]
async fn lost_answers_to_the_renewal_and_to_the_payment_are_read_back() {
    let (rig, hw) = rig().await;
    {
        let mut h = hw.lock().unwrap();
        h.lose_next_renewal = true;
        h.lose_next_payment = true;
    }
    let r = rig.approved(renew(1)).await;
    let ran = rig.run(r.id).await;
    assert_eq!(ran.request.state, State::Succeeded);
    assert_eq!(rig.mock.count(RENEW), 1, "the renewal was not repeated");
    assert_eq!(rig.mock.count(PAY), 1, "nor the payment");
    assert_eq!(charges(&hw), ["pay CS-RENEW-1"]);
    let log = rig.store.audit_log(None).await.unwrap();
    let read_back = log
        .iter()
        .filter(|e| e.event == "answer")
        .filter(|e| serde_json::from_str::<Value>(&e.detail).unwrap()["read_back"] == true)
        .count();
    assert_eq!(read_back, 2);
}

#[tokio::test]
async fn an_order_paid_meanwhile_in_the_console_is_done_not_paid_again() {
    let (rig, hw) = rig().await;
    hw.lock().unwrap().orders[0].status = 5;
    let r = rig.approved(pay(&[])).await;
    let ran = rig.run(r.id).await;
    assert_eq!(ran.request.state, State::Succeeded);
    assert!(charges(&hw).is_empty());
    let log = rig.store.audit_log(None).await.unwrap();
    let answer: Value = log
        .iter()
        .find(|e| e.event == "answer")
        .map(|e| serde_json::from_str(&e.detail).unwrap())
        .unwrap();
    assert_eq!(answer["code"], "CBC.99003106", "{answer}");
}

#[tokio::test]
async fn refusals_fail_the_request_with_the_clouds_words_and_charge_nothing() {
    // Not enough money.
    let (rig, hw) = rig().await;
    hw.lock().unwrap().balance_fen = 100;
    let r = rig.approved(pay(&[])).await;
    let ran = rig.run(r.id).await;
    assert_eq!(ran.request.state, State::Failed);
    let progress = rig.store.progress(r.id).await.unwrap();
    assert_eq!(
        outcome_line(&ran.request, progress.as_ref(), None).as_deref(),
        Some("Failed, nothing more will be tried: PayOrders: CBC.99005003: PayOrders: 余额不足.")
    );

    // A period the cloud cannot renew for: nothing is sent.
    let r = rig.approved(renew(13)).await;
    let ran = rig.run(r.id).await;
    assert_eq!(ran.request.state, State::Failed);
    let progress = rig.store.progress(r.id).await.unwrap();
    let line = outcome_line(&ran.request, progress.as_ref(), None).unwrap();
    assert!(
        line.contains("renews for 1 to 11 months or 1 to 3 whole years, not 13 months"),
        "{line}"
    );
    assert_eq!(rig.mock.count(RENEW), 0);

    // A coupon the order cannot use.
    let r = rig.approved(pay(&["CP-9"])).await;
    let ran = rig.run(r.id).await;
    assert_eq!(ran.request.state, State::Failed);
    let progress = rig.store.progress(r.id).await.unwrap();
    let line = outcome_line(&ran.request, progress.as_ref(), None).unwrap();
    assert!(
        line.contains(&format!("does not offer coupon CP-9 for order {ORDER}")),
        "{line}"
    );
    assert!(charges(&hw).is_empty());
    rig.mock.assert_clean();
}

#[tokio::test]
async fn a_coupon_is_paid_with_the_code_payorders_gives_its_kind() {
    let (rig, hw) = rig().await;
    let r = rig.approved(pay(&["CP-1"])).await;
    assert_eq!(rig.run(r.id).await.request.state, State::Succeeded);
    let h = hw.lock().unwrap();
    assert_eq!(
        h.coupon_bodies,
        [
            json!({"order_id": ORDER, "use_coupon": "YES", "use_discount": "NO",
            "coupon_infos": [{"id": "CP-1", "type": 301}]})
        ]
    );
    assert_eq!(h.charges, [format!("pay {ORDER}")]);
}

#[tokio::test]
async fn auto_renew_off_is_read_back_by_the_expire_policy() {
    let (rig, hw) = rig().await;
    hw.lock().unwrap().web().auto = true;
    let r = rig
        .approved(Action::Autorenew {
            resource: ExternalId::parse("r-web").unwrap(),
            on: false,
        })
        .await;
    assert_eq!(rig.run(r.id).await.request.state, State::Succeeded);
    assert!(!hw.lock().unwrap().web().auto);
    assert_eq!(rig.mock.count(AUTO_OFF), 1);
    rig.mock.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_executors_racing_on_a_renewal_create_one_order() {
    let (rig, hw) = rig().await;
    let r = rig.approved(renew(1)).await;
    let a = rig.executor(std::sync::Arc::new(rig.store.clone()));
    let b = rig.executor(std::sync::Arc::new(rig.store.clone()));
    let (x, y) = tokio::join!(a.run(r.id), b.run(r.id));
    x.unwrap();
    y.unwrap();
    for _ in 0..3 {
        rig.later();
        a.run(r.id).await.unwrap();
    }
    assert_eq!(rig.state(r.id).await, State::Succeeded);
    assert_eq!(charges(&hw), ["pay CS-RENEW-1"]);
    assert_eq!(hw.lock().unwrap().renewal_orders(), 1);
    rig.mock.assert_clean();
}

#[tokio::test]
async fn renewals_in_flight_together_each_pay_only_the_order_for_their_own_resource() {
    let (rig, hw) = rig_of(&["r-a", "r-b"]).await;
    let r1 = rig.approved(renew_of(&["r-a"], 1)).await;
    let r2 = rig.approved(renew_of(&["r-b"], 1)).await;
    // R1's renewal goes through, its answer is lost, and its runner dies
    // before it records what it read back.
    hw.lock().unwrap().lose_next_renewal = true;
    let dying = Arc::new(super::Crashing::new(rig.store.clone(), 3, false));
    assert!(rig.executor(dying).run(r1.id).await.is_err());
    // Meanwhile R2's answer is lost too: two renewal orders of one service
    // type are now listed in its window.
    hw.lock().unwrap().lose_next_renewal = true;
    assert_eq!(rig.run(r2.id).await.request.state, State::Succeeded);
    rig.later();
    assert_eq!(rig.run(r1.id).await.request.state, State::Succeeded);
    let paid = paid_by(&rig).await;
    assert_eq!(paid[&r1.id.0], ["CS-RENEW-1"], "R1 pays its own order");
    assert_eq!(
        paid[&r2.id.0],
        ["CS-RENEW-2"],
        "and R2 its own, nothing else"
    );
    let h = hw.lock().unwrap();
    assert_eq!(h.charges, ["pay CS-RENEW-2", "pay CS-RENEW-1"]);
    assert_eq!(
        h.renewed(),
        BTreeMap::from([("r-a".into(), 1), ("r-b".into(), 1)])
    );
}

#[tokio::test]
async fn an_order_another_request_claimed_is_never_taken_for_a_lost_renewal() {
    let (rig, hw) = rig_of(&["r-a"]).await;
    // R1 renews r-a and pays its order.
    let r1 = rig.approved(renew_of(&["r-a"], 1)).await;
    assert_eq!(rig.run(r1.id).await.request.state, State::Succeeded);
    // R2 renews r-a again at once; its connection drops before the cloud
    // acts. R1's order (same resource, same minute) is not R2's.
    let r2 = rig.approved(renew_of(&["r-a"], 1)).await;
    hw.lock().unwrap().reset_next_renewal = true;
    let ran = rig.run(r2.id).await;
    assert_eq!(ran.request.state, State::Executing, "{:?}", ran.paused);
    let progress = rig.store.progress(r2.id).await.unwrap();
    let line = outcome_line(&ran.request, progress.as_ref(), ran.paused.as_ref()).unwrap();
    assert!(line.contains("not sent again before"), "{line}");
    assert_eq!(hw.lock().unwrap().renewal_orders(), 1);
    // Once a late effect can be ruled out, it is renewed again, once.
    rig.later();
    assert_eq!(rig.run(r2.id).await.request.state, State::Succeeded);
    let paid = paid_by(&rig).await;
    assert_eq!(paid[&r1.id.0], ["CS-RENEW-1"]);
    assert_eq!(paid[&r2.id.0], ["CS-RENEW-2"]);
    assert_eq!(
        hw.lock().unwrap().renewed()["r-a"],
        2,
        "two approved, two renewals"
    );
    rig.mock.assert_clean();
}

#[tokio::test]
async fn an_order_that_cannot_be_tied_to_the_request_leaves_it_for_a_person() {
    let (rig, hw) = rig_of(&["r-a", "r-x"]).await;
    let r = rig.approved(renew_of(&["r-a"], 1)).await;
    // The renewal's connection drops before the cloud acts, while someone
    // renews r-a together with r-x in the console.
    {
        let mut h = hw.lock().unwrap();
        h.reset_next_renewal = true;
        h.renew(&["r-a".into(), "r-x".into()], 1, epoch()).unwrap();
    }
    let ran = rig.run(r.id).await;
    assert_eq!(ran.request.state, State::Unclear);
    let progress = rig.store.progress(r.id).await.unwrap();
    let line = outcome_line(&ran.request, progress.as_ref(), None).unwrap();
    assert!(
        line.contains("renewal order CS-RENEW-1 renews r-a, r-x, more than the r-a asked for"),
        "{line}"
    );
    assert!(line.contains("`resolve R1 done`"), "{line}");
    assert!(
        hw.lock().unwrap().charges.is_empty(),
        "nothing paid on a guess"
    );
    // A sweep leaves it alone.
    rig.later();
    assert_eq!(rig.run(r.id).await.request.state, State::Unclear);
    assert_eq!(rig.mock.count(PAY), 0);
}

#[tokio::test]
async fn a_renewal_of_many_resources_makes_each_of_its_calls() {
    // 21 resources: three orders of at most ten, each paid; six calls in all.
    let ids: Vec<String> = (1..=21).map(|n| format!("r-{n:02}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let (rig, hw) = rig_of(&refs).await;
    hw.lock().unwrap().balance_fen = 2_000_000;
    let r = rig.approved(renew_of(&refs, 1)).await;
    let ran = rig.run(r.id).await;
    assert_eq!(
        ran.request.state,
        State::Succeeded,
        "{:?}",
        rig.store.progress(r.id).await
    );
    let h = hw.lock().unwrap();
    assert_eq!(h.charges.len(), 3);
    assert!(h.renewed().values().all(|n| *n == 1));
    assert_eq!(h.renewed().len(), 21);
}

#[tokio::test]
async fn from_chat_an_unclear_renewal_is_settled_by_an_approver_who_looked() {
    let (m, hw) = huawei_cloud_of(&["r-a", "r-x"]).await;
    let (_world, app, chat) = daemon(&huawei_account(&m), &KEYS, "").await;
    let say = async |name: &str, text: &str| super::say(&chat, name, text).await;
    let (_, text) = say("rex", "renew r-a 1m").await;
    assert!(text.starts_with("R1 opened"), "{text}");
    {
        let mut h = hw.lock().unwrap();
        h.reset_next_renewal = true;
        h.renew(&["r-a".into(), "r-x".into()], 1, epoch()).unwrap();
    }
    let (_, text) = say("ana", "approve R1").await;
    assert!(
        text.contains("purser cannot tell whether it was done"),
        "{text}"
    );
    let (kind, text) = say("rex", "resolve R1 done").await;
    assert_eq!(kind, ReplyKind::Refused, "a requester cannot: {text}");
    let (kind, text) = say("bo", "resolve R1 maybe").await;
    assert_eq!(kind, ReplyKind::Usage, "{text}");
    assert!(text.contains("say done"), "{text}");
    let (kind, text) = say("bo", "resolve R1 done paid CS-RENEW-1 in the console").await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
    assert!(text.starts_with("R1 is succeeded, on bo's word"), "{text}");
    let (kind, text) = say("bo", "resolve R1 failed").await;
    assert_eq!(kind, ReplyKind::Refused, "{text}");
    assert!(text.contains("R1 is succeeded"), "{text}");
    let log = app.store.audit_log(None).await.unwrap();
    let note: Value = log
        .iter()
        .rev()
        .find(|e| e.event == "note")
        .map(|e| serde_json::from_str(&e.detail).unwrap())
        .unwrap();
    assert_eq!(note["resolved"], "done");
    assert_eq!(note["note"], "paid CS-RENEW-1 in the console");
    assert!(hw.lock().unwrap().charges.is_empty(), "purser paid nothing");
}

#[tokio::test]
async fn from_chat_a_coupon_order_is_paid_with_its_coupon_and_an_expired_one_is_refused() {
    let (m, hw) = huawei_cloud().await;
    let (_world, app, chat) = daemon(&huawei_account(&m), &KEYS, "").await;
    let say = async |name: &str, text: &str| super::say(&chat, name, text).await;

    // Expired at the end of October: refused before anyone is asked.
    let (kind, text) = say("rex", &format!("pay {ORDER} coupon=CP-OLD")).await;
    assert_eq!(kind, ReplyKind::Refused, "{text}");
    assert!(
        text.contains("pay.offers") && text.contains("CP-OLD has expired"),
        "{text}"
    );
    // Not activated yet: the cloud does not offer it.
    let (kind, text) = say("rex", &format!("pay {ORDER} coupon=CP-LATER")).await;
    assert_eq!(kind, ReplyKind::Refused, "{text}");
    assert!(
        text.contains("not a coupon or discount the cloud offers"),
        "{text}"
    );
    assert!(charges(&hw).is_empty());

    let (kind, text) = say("rex", &format!("pay {ORDER} coupon=CP-1 month end")).await;
    assert_eq!(kind, ReplyKind::Done, "{text}");
    assert!(
        text.contains("coupon CP-1: voucher ¥100.00, until 2026-12-31 15:59 UTC"),
        "the card shows what the cloud said of it: {text}"
    );
    let (_, text) = say("bo", "approve R1").await;
    assert!(
        text.starts_with(&format!(
            "R1 approved. Done: {ORDER} paid from the balance."
        )),
        "{text}"
    );
    {
        let h = hw.lock().unwrap();
        assert_eq!(
            h.coupon_bodies,
            [
                json!({"order_id": ORDER, "use_coupon": "YES", "use_discount": "NO",
                "coupon_infos": [{"id": "CP-1", "type": 301}]})
            ]
        );
        assert_eq!(h.charges, [format!("pay {ORDER}")]);
    }
    m.assert_clean();
    app.stop().await;
}
