//! Many renewals on two accounts of each cloud in flight at once, under the
//! faults clouds and hosts bring: answers lost after the cloud acted,
//! connections reset before it did, effects applied minutes after the call
//! timed out, and the runner killed at random points — mid-call, and at any
//! write, before or after it commits. Each cloud is a stateful model that
//! keeps its documented rules for repeats: Tencent's CVM renewal has no token
//! (and shows an operation in progress), Alibaba's client token is honoured
//! for a while, Huawei's renewal creates an unpaid order and PayOrders
//! refuses a paid one. In the end every approved renewal renewed each of its
//! resources exactly once, none was lost, and no request paid for another's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Months, NaiveDateTime, Utc};
use purser::adapters::alibaba::Alibaba;
use purser::adapters::huawei::Huawei;
use purser::adapters::sqlite::SqliteStore;
use purser::adapters::tencent::Tencent;
use purser::domain::audit;
use purser::domain::model::{AccountId, ExternalId};
use purser::domain::money::{Currency, Money};
use purser::domain::request::{Action, Decision, RequestId, State, Tiers, Verdict, Via};
use purser::engine::clock::ManualClock;
use purser::engine::executor::Executor;
use purser::ports::{Actions, Clock, NewRequest, Requests, Written};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::super::mock::{self, Canned, Mock, by_header, by_route, hang, ok, reset};
use super::Crashing;
use crate::helpers::epoch;

// ---------------------------------------------------------------- faults

/// xorshift64*: the same seed, the same storm.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What becomes of a change a cloud receives.
enum Fate {
    /// Done and answered.
    Answer,
    /// Done; the answer never comes.
    Lose,
    /// The connection drops before the cloud acts.
    Reset,
    /// Accepted; the cloud acts this much later, and the answer never comes.
    Late(Duration),
    /// Done; the runner is killed while it waits for the answer.
    Kill,
}

struct Faults {
    rng: Rng,
    /// Resets per resource: at most two, so that no call is refused its
    /// effect five times (that would fail the request, rightly).
    resets: HashMap<String, u32>,
    kill: Arc<Notify>,
}

impl Faults {
    fn fate(&mut self, what: &str, late: bool) -> Fate {
        match self.rng.below(100) {
            0..=49 => Fate::Answer,
            50..=64 => Fate::Lose,
            65..=76 => {
                let n = self.resets.entry(what.to_owned()).or_default();
                if *n < 2 {
                    *n += 1;
                    Fate::Reset
                } else {
                    Fate::Answer
                }
            }
            77..=88 if late => Fate::Late(Duration::seconds(10 + self.rng.below(230) as i64)),
            _ => Fate::Kill,
        }
    }

    /// The answer `f` gives after acting (or not): hang, reset or `answer`.
    fn answer(&self, f: &Fate, answer: Canned) -> Canned {
        match f {
            Fate::Answer => answer,
            Fate::Reset => reset(),
            Fate::Lose | Fate::Late(_) => hang(),
            Fate::Kill => {
                self.kill.notify_waiters();
                hang()
            }
        }
    }
}

type Shared = Arc<Mutex<Faults>>;

/// Checks signatures as the cloud does, but freshness against the time the
/// request was signed: a killed runner's last request may still be on the
/// wire when the storm's clock has moved on (a real kill closes it at once).
fn signed_when_sent(
    verify: mock::Verifier,
    sent: fn(&mock::Req) -> DateTime<Utc>,
) -> mock::Verifier {
    Box::new(move |req, _| verify(req, sent(req)))
}

fn start_expiry() -> DateTime<Utc> {
    epoch() + Duration::days(5)
}

fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn months_on(t: DateTime<Utc>, months: u32) -> DateTime<Utc> {
    t.checked_add_months(Months::new(months)).unwrap()
}

/// What one account's cloud renewed: per resource, the months of each renewal.
type Renewed = Arc<Mutex<BTreeMap<String, Vec<u32>>>>;

/// Makes a cloud act on what it accepted and had not acted on by a time:
/// clouds act whether or not anyone asks them.
type CatchUp = Box<dyn Fn(DateTime<Utc>) + Send + Sync>;

// ---------------------------------------------------------------- Tencent CVM

struct TcState {
    expires: BTreeMap<String, DateTime<Utc>>,
    /// Renewals accepted and not applied yet: (due, instance, months).
    late: Vec<(DateTime<Utc>, String, u32)>,
    renewed: Renewed,
}

impl TcState {
    fn apply(&mut self, id: &str, months: u32) {
        let e = self.expires.get_mut(id).unwrap();
        *e = months_on(*e, months);
        self.renewed
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_default()
            .push(months);
    }

    fn catch_up(&mut self, now: DateTime<Utc>) {
        let (due, later): (Vec<_>, Vec<_>) = self.late.drain(..).partition(|(at, _, _)| *at <= now);
        self.late = later;
        for (_, id, months) in due {
            self.apply(&id, months);
        }
    }

    /// The instances `ids` (a JSON list) names that exist, with their expiry.
    fn known<'a>(&self, ids: &'a Value) -> Vec<(&'a str, DateTime<Utc>)> {
        ids.as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i.as_str())
            .filter_map(|i| self.expires.get(i).map(|e| (i, *e)))
            .collect()
    }
}

fn tc_now(req: &mock::Req) -> DateTime<Utc> {
    DateTime::from_timestamp(req.header("x-tc-timestamp").parse().unwrap(), 0).unwrap()
}

fn tc_ok(mut body: Value) -> Canned {
    body["RequestId"] = json!("req-storm");
    ok(json!({ "Response": body }).to_string())
}

async fn tencent(ids: &[String], faults: Shared) -> (Mock, Renewed, CatchUp) {
    let m = Mock::start(
        epoch(),
        by_header("x-tc-action"),
        signed_when_sent(
            mock::tc3(super::super::tencent::ID, super::super::tencent::KEY),
            tc_now,
        ),
    )
    .await;
    let renewed = Renewed::default();
    let s = Arc::new(Mutex::new(TcState {
        expires: ids.iter().map(|i| (i.clone(), start_expiry())).collect(),
        late: vec![],
        renewed: renewed.clone(),
    }));
    let st_end = s.clone();
    let st = s.clone();
    m.on("DescribeRenewInstances", move |req, _| {
        let mut t = st.lock().unwrap();
        t.catch_up(tc_now(req));
        let body = req.json();
        let rows: Vec<Value> = t
            .known(&body["InstanceIdList"])
            .into_iter()
            .map(|(i, e)| {
                json!({"InstanceId": i, "InstanceName": i, "ProductCode": "p_cvm",
                "SubProductCode": "sp_cvm_s1", "RegionCode": "ap-guangzhou",
                "RenewFlag": "NOTIFY_AND_MANUAL_RENEW", "Status": "NORMAL",
                "ExpireTime": (e + Duration::hours(8)).format("%Y-%m-%d %H:%M:%S").to_string()})
            })
            .collect();
        tc_ok(json!({"InstanceList": rows, "NextToken": null}))
    });
    let st = s.clone();
    m.on("DescribeInstances", move |req, _| {
        let mut t = st.lock().unwrap();
        t.catch_up(tc_now(req));
        let body = req.json();
        let rows: Vec<Value> = t
            .known(&body["InstanceIds"])
            .into_iter()
            .map(|(i, e)| {
                // A renewal accepted and not applied shows as in progress.
                let operating = t.late.iter().any(|(_, id, _)| id == i);
                json!({"InstanceId": i, "InstanceName": i, "InstanceChargeType": "PREPAID",
                "ExpiredTime": e.to_rfc3339(), "RenewFlag": "NOTIFY_AND_MANUAL_RENEW",
                "LatestOperation": "RenewInstances",
                "LatestOperationState": if operating { "OPERATING" } else { "SUCCESS" },
                "LatestOperationRequestId": "req-renew"})
            })
            .collect();
        tc_ok(json!({"TotalCount": rows.len(), "InstanceSet": rows}))
    });
    m.on("RenewInstances", move |req, _| {
        let mut t = s.lock().unwrap();
        let now = tc_now(req);
        t.catch_up(now);
        let body = req.json();
        let id = body["InstanceIds"][0].as_str().unwrap().to_owned();
        let months = body["InstanceChargePrepaid"]["Period"].as_u64().unwrap() as u32;
        if body["InstanceIds"].as_array().unwrap().len() != 1 || !t.expires.contains_key(&id) {
            return tc_ok(json!({"Error": {"Code": "InvalidParameter", "Message": "instances"}}));
        }
        let mut f = faults.lock().unwrap();
        let fate = f.fate(&id, true);
        match fate {
            Fate::Answer | Fate::Lose | Fate::Kill => t.apply(&id, months),
            Fate::Late(d) => t.late.push((now + d, id, months)),
            Fate::Reset => {}
        }
        f.answer(&fate, tc_ok(json!({})))
    });
    (
        m,
        renewed,
        Box::new(move |now| st_end.lock().unwrap().catch_up(now)),
    )
}

// ---------------------------------------------------------------- Alibaba ECS

/// How long this cloud remembers a client token (Alibaba documents none).
const TOKEN_WINDOW: Duration = Duration::minutes(30);

struct AliOrder {
    id: String,
    instance: String,
    months: u32,
    created: DateTime<Utc>,
    /// When the cloud renews and pays it.
    due: DateTime<Utc>,
    paid: bool,
}

struct AliState {
    ends: BTreeMap<String, DateTime<Utc>>,
    /// Token → (order, when given).
    tokens: HashMap<String, (String, DateTime<Utc>)>,
    orders: Vec<AliOrder>,
    renewed: Renewed,
}

impl AliState {
    fn catch_up(&mut self, now: DateTime<Utc>) {
        for o in self.orders.iter_mut().filter(|o| !o.paid && o.due <= now) {
            o.paid = true;
            let e = self.ends.get_mut(&o.instance).unwrap();
            *e = months_on(*e, o.months);
            self.renewed
                .lock()
                .unwrap()
                .entry(o.instance.clone())
                .or_default()
                .push(o.months);
        }
    }
}

fn ali_now(req: &mock::Req) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(req.header("x-acs-date"))
        .unwrap()
        .to_utc()
}

fn bss(data: Value) -> Canned {
    ok(
        json!({"Code": "Success", "Message": "Successful!", "RequestId": "bss-storm",
        "Success": true, "Data": data})
        .to_string(),
    )
}

async fn alibaba(ids: &[String], faults: Shared) -> (Mock, Renewed, CatchUp) {
    let keyed: mock::Keyer = Box::new(|req| match req.header("x-acs-version") {
        "2014-05-26" => format!("ecs:{}", req.header("x-acs-action")),
        _ => req.header("x-acs-action").to_owned(),
    });
    let m = Mock::start(
        epoch(),
        keyed,
        signed_when_sent(
            mock::acs3(super::super::alibaba::ID, super::super::alibaba::SECRET),
            ali_now,
        ),
    )
    .await;
    let renewed = Renewed::default();
    let s = Arc::new(Mutex::new(AliState {
        ends: ids.iter().map(|i| (i.clone(), start_expiry())).collect(),
        tokens: HashMap::new(),
        orders: vec![],
        renewed: renewed.clone(),
    }));
    let st_end = s.clone();
    let st = s.clone();
    m.on("QueryAvailableInstances", move |req, _| {
        let mut a = st.lock().unwrap();
        a.catch_up(ali_now(req));
        let wanted = req.param("InstanceIDs").unwrap_or_default();
        let list: Vec<Value> = a
            .ends
            .iter()
            .filter(|(i, _)| wanted.split(',').any(|w| w == *i))
            .map(|(i, end)| {
                json!({"InstanceID": i, "ProductCode": "ecs", "ProductType": "",
                "Region": "cn-hangzhou", "SubscriptionType": "Subscription",
                "EndTime": utc(*end), "RenewStatus": "ManualRenewal", "Status": "Normal"})
            })
            .collect();
        bss(json!({"TotalCount": list.len(), "InstanceList": list}))
    });
    let st = s.clone();
    m.on("QueryOrders", move |req, _| {
        let mut a = st.lock().unwrap();
        let now = ali_now(req);
        a.catch_up(now);
        let time = |n: &str| {
            req.param(n)
                .map(|t| DateTime::parse_from_rfc3339(&t).unwrap().to_utc())
        };
        let (from, to) = (time("CreateTimeStart"), time("CreateTimeEnd"));
        let rows: Vec<Value> = a
            .orders
            .iter()
            .filter(|o| from.is_none_or(|f| o.created >= f) && to.is_none_or(|t| o.created <= t))
            .map(|o| {
                json!({"OrderId": o.id, "OrderType": "Renew",
                "PaymentStatus": if o.paid { "Paid" } else { "Unpaid" },
                "CreateTime": utc(o.created), "ProductCode": "ecs", "Currency": "CNY",
                "PretaxAmount": "600.00"})
            })
            .collect();
        bss(json!({"TotalCount": rows.len(), "OrderList": {"Order": rows}}))
    });
    let st = s.clone();
    m.on("GetOrderDetail", move |req, _| {
        let mut a = st.lock().unwrap();
        let now = ali_now(req);
        a.catch_up(now);
        let wanted = req.param("OrderId").unwrap_or_default();
        let rows: Vec<Value> = a
            .orders
            .iter()
            .filter(|o| o.id == wanted)
            .map(|o| {
                json!({"OrderId": o.id, "SubOrderId": format!("{}-1", o.id), "OrderType": "Renew",
                "PaymentStatus": if o.paid { "Paid" } else { "Unpaid" },
                "CreateTime": utc(o.created), "ProductCode": "ecs", "InstanceIDs": o.instance,
                "Region": "cn-hangzhou", "Currency": "CNY", "PretaxAmount": "600.00"})
            })
            .collect();
        bss(json!({"TotalCount": rows.len(), "OrderList": {"Order": rows}}))
    });
    m.on("ecs:RenewInstance", move |req, _| {
        let mut a = s.lock().unwrap();
        let now = ali_now(req);
        a.catch_up(now);
        let id = req.param("InstanceId").unwrap();
        let months: u32 = req.param("Period").unwrap().parse().unwrap();
        let token = req.param("ClientToken").unwrap();
        if !a.ends.contains_key(&id) || req.param("PeriodUnit").as_deref() != Some("Month") {
            return mock::reply(400, json!({"Code": "InvalidParameter"}).to_string());
        }
        // A token it remembers gets the first answer, and changes nothing.
        if let Some((order, at)) = a.tokens.get(&token).cloned()
            && now - at < TOKEN_WINDOW
        {
            return ok(json!({"OrderId": order, "RequestId": "ecs-storm"}).to_string());
        }
        let mut f = faults.lock().unwrap();
        let fate = f.fate(&id, true);
        let due = match fate {
            Fate::Reset => return f.answer(&fate, ok("")),
            Fate::Late(d) => now + d,
            _ => now,
        };
        let order = format!("2026{:06}", a.orders.len() + 1);
        a.tokens.insert(token, (order.clone(), now));
        a.orders.push(AliOrder {
            id: order.clone(),
            instance: id,
            months,
            created: now,
            due,
            paid: false,
        });
        a.catch_up(now);
        f.answer(
            &fate,
            ok(json!({"OrderId": order, "RequestId": "ecs-storm"}).to_string()),
        )
    });
    (
        m,
        renewed,
        Box::new(move |now| st_end.lock().unwrap().catch_up(now)),
    )
}

// ---------------------------------------------------------------- Huawei

struct HwOrder {
    id: String,
    resources: Vec<String>,
    months: u32,
    created: DateTime<Utc>,
    /// 6 awaiting payment, 5 completed.
    status: u8,
}

struct HwState {
    expires: BTreeMap<String, DateTime<Utc>>,
    orders: Vec<HwOrder>,
    /// Renewals accepted and not made yet: (due, resources, months).
    late: Vec<(DateTime<Utc>, Vec<String>, u32)>,
    renewed: Renewed,
}

impl HwState {
    fn create(&mut self, resources: Vec<String>, months: u32, at: DateTime<Utc>) -> String {
        let id = format!("CS-STORM-{}", self.orders.len() + 1);
        self.orders.push(HwOrder {
            id: id.clone(),
            resources,
            months,
            created: at,
            status: 6,
        });
        id
    }

    fn catch_up(&mut self, now: DateTime<Utc>) {
        let (due, later): (Vec<_>, Vec<_>) = self.late.drain(..).partition(|(at, _, _)| *at <= now);
        self.late = later;
        for (at, resources, months) in due {
            self.create(resources, months, at);
        }
    }

    fn pay(&mut self, id: &str) -> Result<(), Canned> {
        let Some(o) = self.orders.iter_mut().find(|o| o.id == id) else {
            return Err(hw_error("CBC.30000010", "订单不存在"));
        };
        if o.status != 6 {
            return Err(hw_error(
                "CBC.99003106",
                "订单状态已发生变更,不能进行支付操作",
            ));
        }
        o.status = 5;
        let (resources, months) = (o.resources.clone(), o.months);
        for r in resources {
            let e = self.expires.get_mut(&r).unwrap();
            *e = months_on(*e, months);
            self.renewed
                .lock()
                .unwrap()
                .entry(r)
                .or_default()
                .push(months);
        }
        Ok(())
    }
}

fn hw_error(code: &str, msg: &str) -> Canned {
    mock::reply(
        400,
        json!({"error_code": code, "error_msg": msg}).to_string(),
    )
}

fn hw_now(req: &mock::Req) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(req.header("x-sdk-date"), "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc()
}

/// Which orders each Huawei account's requests paid, and what those renew.
type HwOrders = Arc<Mutex<HwState>>;

async fn huawei(ids: &[String], faults: Shared) -> (Mock, Renewed, HwOrders) {
    let m = Mock::start(
        epoch(),
        by_route(),
        signed_when_sent(
            mock::sdk_hmac(super::super::huawei::AK, super::super::huawei::SK),
            hw_now,
        ),
    )
    .await;
    let renewed = Renewed::default();
    let s = Arc::new(Mutex::new(HwState {
        expires: ids.iter().map(|i| (i.clone(), start_expiry())).collect(),
        orders: vec![],
        late: vec![],
        renewed: renewed.clone(),
    }));
    let st = s.clone();
    m.on(
        "POST /v2/orders/suscriptions/resources/query",
        move |req, _| {
            let mut h = st.lock().unwrap();
            h.catch_up(hw_now(req));
            let body = req.json();
            let ids: Vec<String> = match (&body["order_id"], &body["resource_ids"]) {
                (Value::String(order), _) => h
                    .orders
                    .iter()
                    .find(|o| &o.id == order)
                    .map(|o| o.resources.clone())
                    .unwrap_or_default(),
                (_, Value::Array(ids)) => ids
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect(),
                _ => vec![],
            };
            let data: Vec<Value> = ids
                .iter()
                .filter_map(|i| h.expires.get(i).map(|e| (i, e)))
                .map(|(i, e)| {
                    json!({"id": format!("sub-{i}"), "resource_id": i, "resource_name": i,
                "region_code": "cn-north-4", "service_type_code": "hws.service.type.ec2",
                "is_main_resource": 1, "status": 2, "expire_time": utc(*e), "expire_policy": 0})
                })
                .collect();
            ok(json!({"total_count": data.len(), "data": data}).to_string())
        },
    );
    let st = s.clone();
    m.on(
        &format!("GET {}", super::super::mock::DETAILS),
        move |req, _| {
            let h = st.lock().unwrap();
            let id = req.path.rsplit('/').next().unwrap_or_default();
            match h.orders.iter().find(|o| o.id == id) {
                Some(o) => ok(json!({"order_info": {"order_id": o.id, "status": o.status,
                    "create_time": utc(o.created)}})
                .to_string()),
                None => super::super::mock::reply(
                    400,
                    json!({"error_code": "CBC.30000010", "error_msg": "invalid order"}).to_string(),
                ),
            }
        },
    );
    let st = s.clone();
    m.on("GET /v2/orders/customer-orders", move |req, _| {
        let mut h = st.lock().unwrap();
        h.catch_up(hw_now(req));
        let time = |n: &str| {
            req.param(n)
                .map(|t| DateTime::parse_from_rfc3339(&t).unwrap().to_utc())
        };
        let (from, to) = (time("create_time_begin"), time("create_time_end"));
        let found: Vec<Value> = h
            .orders
            .iter()
            .filter(|o| req.param("order_id").is_none_or(|id| id == o.id))
            .filter(|o| from.is_none_or(|f| o.created >= f) && to.is_none_or(|t| o.created <= t))
            .map(|o| {
                json!({"order_id": o.id, "service_type_code": "hws.service.type.ec2",
                "status": o.status, "order_type": 2, "create_time": utc(o.created),
                "currency": "CNY", "amount_after_discount": 600, "measure_id": 1})
            })
            .collect();
        let offset: usize = req.param("offset").map_or(0, |o| o.parse().unwrap());
        let limit: usize = req.param("limit").map_or(10, |l| l.parse().unwrap());
        let page: Vec<&Value> = found.iter().skip(offset).take(limit).collect();
        ok(json!({"total_count": found.len(), "order_infos": page}).to_string())
    });
    let st = s.clone();
    let fs = faults.clone();
    m.on(
        "POST /v2/orders/subscriptions/resources/renew",
        move |req, _| {
            let mut h = st.lock().unwrap();
            let now = hw_now(req);
            h.catch_up(now);
            let body = req.json();
            let ids: Vec<String> = body["resource_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap().to_owned())
                .collect();
            let months = body["period_num"].as_u64().unwrap() as u32;
            if body["is_auto_pay"] != 0 || ids.iter().any(|i| !h.expires.contains_key(i)) {
                return hw_error("CBC.0100", "bad renewal");
            }
            let mut f = fs.lock().unwrap();
            let fate = f.fate(&ids.join(","), true);
            let order = match fate {
                Fate::Reset => return f.answer(&fate, ok("")),
                Fate::Late(d) => {
                    h.late.push((now + d, ids, months));
                    return hang();
                }
                _ => h.create(ids, months, now),
            };
            f.answer(
                &fate,
                ok(json!({"order_ids": [order], "fail_resource_infos": []}).to_string()),
            )
        },
    );
    let st = s.clone();
    m.on("POST /v3/orders/customer-orders/pay", move |req, _| {
        let mut h = st.lock().unwrap();
        h.catch_up(hw_now(req));
        let id = req.json()["order_id"].as_str().unwrap().to_owned();
        let mut f = faults.lock().unwrap();
        let fate = f.fate(&id, false);
        if let Fate::Reset = fate {
            return f.answer(&fate, ok(""));
        }
        if let Err(refused) = h.pay(&id) {
            return refused;
        }
        f.answer(&fate, ok(""))
    });
    (m, renewed, s)
}

// ---------------------------------------------------------------- the storm

/// Requests as (resources by index, months) on each account.
const PLAN: [(&[usize], u32); 7] = [
    (&[0], 1),
    (&[1], 2),
    (&[0, 1], 1),
    (&[2], 3),
    (&[2], 1),
    (&[3], 1),
    (&[0, 2, 3], 2),
];

async fn approve(
    store: &dyn Requests,
    account: &str,
    action: Action,
    at: DateTime<Utc>,
) -> RequestId {
    let cost = Money::new(Decimal::from(600), Currency::Cny);
    let r = store
        .open_request(&NewRequest {
            account: AccountId::parse(account).unwrap(),
            action,
            reason: None,
            cost: Some(cost),
            balance: None,
            tier: Tiers::defaults().for_amount(Some(&cost)).clone(),
            requested_by: "rex".into(),
            requested_at: at,
            expires_at: at + Duration::hours(24),
            origin: None,
        })
        .await
        .unwrap();
    let decision = Decision {
        by: "ana".into(),
        role: "approver".into(),
        verdict: Verdict::Approve,
        at,
        via: Via {
            platform: "telegram".into(),
            message: None,
        },
        second_factor: false,
        comment: None,
    };
    match store
        .record_decision(r.id, r.version, &decision, Some(State::Approved))
        .await
        .unwrap()
    {
        Written::Done(r) => r.id,
        other => panic!("{other:?}"),
    }
}

fn config(urls: &BTreeMap<&str, String>) -> String {
    let mut c = String::from(
        "[store]\npath = \"p.db\"\n\n\
         [[providers]]\nname = \"tencent\"\nkind = \"tencent\"\n\n\
         [[providers]]\nname = \"alibaba\"\nkind = \"alibaba\"\n\n\
         [[providers]]\nname = \"huawei\"\nkind = \"huawei\"\n",
    );
    for (account, url) in urls {
        let provider = match &account[..2] {
            "tc" => "tencent",
            "al" => "alibaba",
            _ => "huawei",
        };
        let regions = if provider == "tencent" {
            "regions = [\"ap-guangzhou\"]\n"
        } else {
            ""
        };
        c.push_str(&format!(
            "\n[[accounts]]\nid = \"{account}\"\nprovider = \"{provider}\"\nendpoint = \"{url}\"\n\
             {regions}credentials = {{ key_id = \"file:{provider}-id\", secret = \"file:{provider}-key\" }}\n"
        ));
    }
    c
}

/// Each provider's adapter, given its accounts' credentials.
fn adapters(
    providers: &[purser::config::ProviderConfig],
    clock: Arc<ManualClock>,
) -> HashMap<String, Arc<dyn Actions>> {
    let of = |provider: &str| {
        providers
            .iter()
            .find(|p| p.name == provider)
            .map(|p| p.credentials.clone())
            .unwrap_or_default()
    };
    let fast = |http: &mut purser::adapters::cloud::Http| {
        super::super::quick(http);
        http.request_timeout = std::time::Duration::from_millis(80);
    };
    // The clouds' rate limits are paced in real time; these mocks have none.
    let rps = std::num::NonZeroU32::new(10_000);
    let mut t = Tencent::new(of("tencent"), rps, clock.clone());
    fast(t.http_mut());
    let mut a = Alibaba::new(of("alibaba"), rps, clock.clone());
    fast(a.http_mut());
    let mut h = Huawei::new(of("huawei"), rps, clock);
    fast(h.http_mut());
    HashMap::from([
        ("tencent".to_owned(), Arc::new(t) as Arc<dyn Actions>),
        ("alibaba".to_owned(), Arc::new(a) as Arc<dyn Actions>),
        ("huawei".to_owned(), Arc::new(h) as Arc<dyn Actions>),
    ])
}

/// Where the storm's requests are kept: one SQLite file (one runner at a
/// time, as one daemon), or a PostgreSQL database, where each round runs two
/// replicas' runners at once, each on its own connections.
enum Backend<'a> {
    Sqlite,
    Postgres(&'a str),
}

impl Backend<'_> {
    async fn open(&self, dir: &std::path::Path) -> Arc<dyn Requests> {
        match self {
            Backend::Sqlite => Arc::new(SqliteStore::open(&dir.join("p.db")).await.unwrap()),
            Backend::Postgres(url) => Arc::new(
                purser::adapters::postgres::PgStore::open(url, None, 4)
                    .await
                    .unwrap(),
            ),
        }
    }

    fn runners(&self) -> usize {
        match self {
            Backend::Sqlite => 1,
            Backend::Postgres(_) => 2,
        }
    }
}

async fn storm(seed: u64, backend: Backend<'_>) {
    let kill = Arc::new(Notify::new());
    let faults: Shared = Arc::new(Mutex::new(Faults {
        rng: Rng(seed),
        resets: HashMap::new(),
        kill: kill.clone(),
    }));
    let mut rng = Rng(seed.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15);
    let names = ["tc-1", "tc-2", "ali-1", "ali-2", "hw-1", "hw-2"];
    let resources =
        |account: &str| -> Vec<String> { (1..=4).map(|n| format!("{account}-r{n}")).collect() };
    let mut mocks = Vec::new();
    let mut renewed: BTreeMap<&str, Renewed> = BTreeMap::new();
    let mut huawei_orders: BTreeMap<&str, HwOrders> = BTreeMap::new();
    let mut catch_ups: Vec<CatchUp> = Vec::new();
    let mut urls = BTreeMap::new();
    for name in names {
        let ids = resources(name);
        let (m, r) = match &name[..2] {
            "tc" => {
                let (m, r, c) = tencent(&ids, faults.clone()).await;
                catch_ups.push(c);
                (m, r)
            }
            "al" => {
                let (m, r, c) = alibaba(&ids, faults.clone()).await;
                catch_ups.push(c);
                (m, r)
            }
            _ => {
                let (m, r, o) = huawei(&ids, faults.clone()).await;
                huawei_orders.insert(name, o);
                (m, r)
            }
        };
        urls.insert(name, m.url.clone());
        renewed.insert(name, r);
        mocks.push(m);
    }

    let dir = tempfile::tempdir().unwrap();
    for (file, key) in [
        ("tencent-id", super::super::tencent::ID),
        ("tencent-key", super::super::tencent::KEY),
        ("alibaba-id", super::super::alibaba::ID),
        ("alibaba-key", super::super::alibaba::SECRET),
        ("huawei-id", super::super::huawei::AK),
        ("huawei-key", super::super::huawei::SK),
    ] {
        std::fs::write(dir.path().join(file), key).unwrap();
    }
    std::fs::write(dir.path().join("purser.toml"), config(&urls)).unwrap();
    let cfg = purser::config::Config::load(&dir.path().join("purser.toml")).unwrap();
    let accounts = cfg.accounts.clone();
    let clock = Arc::new(ManualClock::new(epoch()));
    let actions = adapters(&cfg.providers, clock.clone());
    let store = backend.open(dir.path()).await;

    // Every request approved at once: 42 renewals, some of the same resources.
    let mut asked: Vec<(RequestId, &str, Vec<String>, u32)> = Vec::new();
    for name in names {
        let ids = resources(name);
        for (picks, months) in PLAN {
            let these: Vec<String> = picks.iter().map(|i| ids[*i].clone()).collect();
            let action = Action::Renew {
                resources: these
                    .iter()
                    .map(|r| ExternalId::parse(r).unwrap())
                    .collect(),
                months,
            };
            let id = approve(&*store, name, action, clock.now()).await;
            asked.push((id, name, these, months));
        }
    }

    // Runners come and go: each is a process that may be killed mid-call or
    // die at a write, and the next one starts a little later.
    for round in 0.. {
        if round == 600 {
            let mut stuck = Vec::new();
            for (id, ..) in &asked {
                let r = store.request(*id).await.unwrap().unwrap();
                if !matches!(r.state, State::Succeeded) {
                    stuck.push(format!(
                        "{id} {}: {:?}",
                        r.state,
                        store.progress(*id).await.unwrap()
                    ));
                }
            }
            panic!(
                "seed {seed}: the storm did not settle:\n{}",
                stuck.join("\n")
            );
        }
        let mut open = Vec::new();
        for (id, ..) in &asked {
            let state = store.request(*id).await.unwrap().unwrap().state;
            if matches!(state, State::Approved | State::Executing) {
                open.push(*id);
            }
        }
        if open.is_empty() {
            break;
        }
        for i in (1..open.len()).rev() {
            open.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let crash_at = if rng.below(3) == 0 {
            1 + rng.below(30) as usize
        } else {
            usize::MAX
        };
        // One runner per replica, each a process of its own (on PostgreSQL,
        // its own connections), on the open requests in its own order; a
        // death or a kill ends the round for all.
        let mut runners = Vec::new();
        let mut deaths = Vec::new();
        for n in 0..backend.runners() {
            let inner: Arc<dyn Requests> = match &backend {
                Backend::Sqlite => store.clone(),
                Backend::Postgres(_) => backend.open(dir.path()).await,
            };
            let process = Arc::new(Crashing::over(
                inner,
                if n == 0 { crash_at } else { usize::MAX },
                rng.below(2) == 0,
            ));
            deaths.push(process.died());
            let mut order = open.clone();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            runners.push((
                Executor::new(process, accounts.clone(), actions.clone(), clock.clone()),
                order,
            ));
        }
        let runs = futures_util::future::join_all(
            runners
                .iter()
                .flat_map(|(runner, order)| order.iter().map(move |id| runner.run(*id))),
        );
        let died = futures_util::future::select_all(deaths.iter().map(|d| Box::pin(d.notified())));
        tokio::select! {
            _ = runs => {}
            _ = kill.notified() => {}
            _ = died => {}
        }
        drop(runners);
        clock.advance(Duration::seconds(5 + rng.below(400) as i64));
    }

    // What the clouds accepted late they have acted on by now. (Huawei's
    // late renewals only create orders, which nobody pays.)
    for c in &catch_ups {
        c(clock.now() + Duration::hours(1));
    }

    // Every approved renewal was carried out, once.
    let mut expected: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (id, _, these, months) in &asked {
        let r = store.request(*id).await.unwrap().unwrap();
        assert_eq!(
            r.state,
            State::Succeeded,
            "seed {seed}: {id}: {:?}",
            store.progress(*id).await.unwrap()
        );
        for res in these {
            expected.entry(res.clone()).or_default().push(*months);
        }
    }
    for (name, r) in &renewed {
        let mut got = r.lock().unwrap().clone();
        for months in got.values_mut() {
            months.sort_unstable();
        }
        let want: BTreeMap<String, Vec<u32>> = expected
            .iter()
            .filter(|(res, _)| res.starts_with(&format!("{name}-")))
            .map(|(res, m)| {
                let mut m = m.clone();
                m.sort_unstable();
                (res.clone(), m)
            })
            .collect();
        assert_eq!(
            got, want,
            "seed {seed}: {name} renewed each resource once per renewal"
        );
    }
    // On Huawei, each request paid orders for its own resources only, and
    // for all of them.
    let log = store.audit_log(None).await.unwrap();
    let head = store.audit_head().await.unwrap();
    audit::verify(&log, head.as_ref().map(|(n, h)| (*n, h.as_str()))).unwrap();
    for (id, name, these, _) in asked.iter().filter(|a| a.1.starts_with("hw")) {
        let orders = huawei_orders[name].lock().unwrap();
        let paid: BTreeSet<String> = log
            .iter()
            .filter(|e| e.request == Some(*id) && e.event == "answer")
            .map(|e| serde_json::from_str::<Value>(&e.detail).unwrap())
            .filter(|d| d["call"] == "PayOrders")
            .flat_map(|d| {
                let order = d["result"]["order_id"].as_str().unwrap().to_owned();
                orders
                    .orders
                    .iter()
                    .find(|o| o.id == order)
                    .unwrap()
                    .resources
                    .clone()
            })
            .collect();
        let mine: BTreeSet<String> = these.iter().cloned().collect();
        assert_eq!(paid, mine, "seed {seed}: {id} paid for its own resources");
    }
    for m in &mocks {
        m.assert_clean();
    }
}

#[tokio::test]
async fn a_storm_of_renewals_charges_each_approved_renewal_exactly_once() {
    for seed in [0x5eed_0001, 0x5eed_0002, 0x5eed_0003] {
        storm(seed, Backend::Sqlite).await;
    }
}

/// The same storm with two replicas carrying the requests out at once on
/// PostgreSQL, each killed at random as before.
#[tokio::test]
async fn a_storm_of_renewals_on_two_replicas_charges_each_exactly_once() {
    let Some(pg) = crate::postgres::Postgres::start("a_storm_of_renewals_on_two_replicas").await
    else {
        return;
    };
    for seed in [0x5eed_0011, 0x5eed_0012] {
        storm(seed, Backend::Postgres(&pg.database().await)).await;
    }
}
