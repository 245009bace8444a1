//! Huawei Cloud BSS (customer operations), signed with SDK-HMAC-SHA256 (AK/SK):
//! balances by account type, subscription resources, orders awaiting payment
//! and account change records.
//!
//! Units: amounts are JSON numbers whose unit `measure_id` gives (1 yuan,
//! 2 jiao, 3 fen); change records are strings in yuan; times are UTC.

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};

use super::cloud::{
    self, Amount, Call, Failure, Http, MAX_PAGES, RateTable, Reply, Site, access_for, action_error,
    authority, done, external_id, malformed, no_such_call, parse, per_second, reported_spend, site,
    texts, utc_text, utc_time,
};
use super::signing::{canonical_query, huawei};
use crate::adapters::cloud::CloudAccess;
use crate::domain::model::{
    Account, AccountId, Balance, Bucket, BucketKind, Order, Recharge, RenewalMode, ReportedSpend,
    Resource, ResourceStatus, Snapshot,
};
use crate::domain::money::{Currency, Money};
use crate::domain::policy::Offer;
use crate::domain::request::Action;
use crate::ports::{
    ActionError, Actions, CallAnswer, Clock, CloudCall, LostCall, NextCall, Provider,
    ProviderError, ReadBack,
};

/// An unpaid order is cancelled after seven days.
const ORDER_WINDOW_DAYS: i64 = 7;
const LEDGER_DAYS: i64 = 7;
const PAGE: u64 = 100;

pub struct Huawei {
    http: Http,
    accounts: HashMap<AccountId, CloudAccess>,
}

impl Huawei {
    pub fn new(
        accounts: HashMap<AccountId, CloudAccess>,
        requests_per_second: Option<NonZeroU32>,
        clock: Arc<dyn Clock>,
    ) -> Huawei {
        // API Gateway's default is 200/s per API, but BSS is a shared global
        // service; a modest default keeps clear of APIGW.0308.
        let rps = requests_per_second.unwrap_or(per_second(20));
        Huawei {
            http: Http::new(RateTable::uniform(rps), clock),
            accounts,
        }
    }

    pub fn http_mut(&mut self) -> &mut Http {
        &mut self.http
    }

    async fn call(
        &self,
        access: &CloudAccess,
        intl: bool,
        method: &'static str,
        path: &'static str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Value, ProviderError> {
        let api = Api {
            name: path,
            method,
            path,
            permission: permission(path),
        };
        self.send(access, intl, &api, query, body, true).await
    }

    /// One signed call; `repeatable` as for `Http::call_with`.
    async fn send(
        &self,
        access: &CloudAccess,
        intl: bool,
        api: &Api<'_>,
        query: &[(&str, String)],
        body: Option<Value>,
        repeatable: bool,
    ) -> Result<Value, ProviderError> {
        let Api {
            name,
            method,
            path,
            permission,
        } = *api;
        let mut url = match &access.endpoint {
            Some(e) => e.clone(),
            None if intl => reqwest::Url::parse("https://bss-intl.myhuaweicloud.com/")
                .unwrap_or_else(|_| unreachable!()),
            None => reqwest::Url::parse("https://bss.myhuaweicloud.com/")
                .unwrap_or_else(|_| unreachable!()),
        };
        url.set_path(path);
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let encoded = canonical_query(&query);
        url.set_query((!encoded.is_empty()).then_some(encoded.as_str()));
        let host = authority(&url);
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let ak = access.key_id.expose();
        let sk = access.secret.expose();
        let build = || {
            let date = self.http.clock.now().format("%Y%m%dT%H%M%SZ").to_string();
            let mut headers = vec![
                ("Content-Type", "application/json"),
                ("Host", host.as_str()),
                ("X-Sdk-Date", date.as_str()),
            ];
            if let Some(d) = &access.domain_id {
                headers.push(("X-Domain-Id", d.as_str()));
            }
            let auth = huawei::authorization(
                ak,
                sk,
                &date,
                &huawei::Request {
                    method,
                    path,
                    query: &query,
                    headers: &headers,
                    body: &body,
                },
            );
            let mut req = match method {
                "POST" => self.http.client().post(url.clone()).body(body.clone()),
                "DELETE" => self.http.client().delete(url.clone()),
                _ => self.http.client().get(url.clone()),
            };
            for (k, v) in headers.iter().filter(|(k, _)| *k != "Host") {
                req = req.header(*k, *v);
            }
            req.header("Authorization", auth)
        };
        self.http
            .call_with(
                Call {
                    key_id: ak,
                    action: name,
                    permission,
                },
                &[ak, sk],
                build,
                |r| classify(name, r),
                repeatable,
            )
            .await
    }
}

/// A BSS operation: its name (for errors and the rate table), verb, path
/// and the IAM permission it needs.
#[derive(Clone, Copy)]
struct Api<'a> {
    name: &'static str,
    method: &'static str,
    path: &'a str,
    permission: &'static str,
}

/// The IAM permissions of every call purser makes to read an account: the
/// monitoring key's whole policy (deploy/policies/huawei-monitor.json).
pub const READ_PERMISSIONS: &[&str] = &[
    "billing:balance:view",
    "billing:order:view",
    "billing:subscription:view",
];

/// What the action key adds: renewals, paying orders, the auto-renew flag
/// (deploy/policies/huawei-actions.json).
pub const ACTION_PERMISSIONS: &[&str] = &["billing:order:pay", "billing:subscription:renew"];

/// The IAM permission each BSS path needs.
fn permission(path: &str) -> &'static str {
    if path.contains("/orders/suscriptions/") {
        "billing:subscription:view"
    } else if path.contains("/orders/") {
        "billing:order:view"
    } else {
        "billing:balance:view"
    }
}

fn classify(what: &str, reply: &Reply) -> Result<Value, Failure> {
    // PayOrders and the auto-renew calls answer success with an empty body.
    if (200..300).contains(&reply.status) && reply.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let value = cloud::json_or_status(reply)?;
    let code = value
        .get("error_code")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if (200..300).contains(&reply.status) && (code.is_empty() || code == "CBC.0000") {
        return Ok(value);
    }
    let message = value
        .get("error_msg")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let message = format!("{what}: {message}");
    Err(match code.as_str() {
        "APIGW.0301" if message.to_ascii_lowercase().contains("expire") => Failure::ClockSkew {
            code,
            allowed: "15 minutes",
        },
        // Never retried: five failures in a row lock the AK for five minutes.
        "APIGW.0301" | "CBC.0154" => Failure::Auth {
            code,
            message: format!(
                "{message} (a wrong AK/SK, or a clock more than 15 minutes off, is refused alike)"
            ),
        },
        "APIGW.0302" | "APIGW.0306" | "CBC.0151" | "CBC.0155" => Failure::Denied { code, message },
        "APIGW.0308" => Failure::Throttled {
            retry_after: reply.retry_after,
        },
        "CBC.0999" => Failure::Transient(message),
        "" if reply.status == 429 => Failure::Throttled {
            retry_after: reply.retry_after,
        },
        "" if reply.status == 401 => Failure::Auth {
            code: "HTTP 401".into(),
            message,
        },
        "" if reply.status == 403 => Failure::Denied {
            code: "HTTP 403".into(),
            message,
        },
        "" if reply.status >= 500 => Failure::Transient(format!("HTTP {}", reply.status)),
        "" => Failure::Malformed(format!("HTTP {} without error_code", reply.status)),
        _ if reply.status >= 500 => Failure::Transient(format!("{code}: {message}")),
        _ => Failure::Business { code, message },
    })
}

/// Yuan, jiao or fen, by `measure_id`.
/// A coupon's kind as ListOrderCouponsByOrderId lists it (1 voucher, 2
/// discount coupon, 3 product coupon, 4 cash coupon) as PayOrders names it
/// (301, 300, none, 302).
fn coupon_pay_type(kind: i64) -> Option<i64> {
    match kind {
        1 => Some(301),
        2 => Some(300),
        4 => Some(302),
        _ => None,
    }
}

fn coupon_kind(kind: i64) -> &'static str {
    match kind {
        1 => "voucher",
        2 => "discount coupon",
        3 => "product coupon",
        4 => "cash coupon",
        _ => "coupon",
    }
}

fn discount_kind(kind: i64) -> &'static str {
    match kind {
        0 => "promotion discount",
        1 => "contract discount",
        2 => "commercial discount",
        3 => "partner discount",
        609 => "price adjustment",
        _ => "discount",
    }
}

fn measured(amount: &Amount, measure_id: Option<u8>, currency: Currency) -> Result<Money, String> {
    let factor = match measure_id.unwrap_or(1) {
        1 => Decimal::ONE,
        2 => Decimal::new(1, 1),
        3 => Decimal::new(1, 2),
        other => {
            return Err(format!(
                "unknown measure_id {other}; known: 1 (yuan), 2 (jiao), 3 (fen)"
            ));
        }
    };
    let d = amount.decimal()?;
    Ok(Money::new(d * factor, currency).normalized())
}

#[derive(Deserialize)]
struct Balances {
    #[serde(default)]
    account_balances: Vec<AccountBalance>,
    debt_amount: Option<Amount>,
    measure_id: Option<u8>,
    currency: Option<String>,
}

#[derive(Deserialize)]
struct AccountBalance {
    account_type: u8,
    amount: Amount,
    currency: Option<String>,
    designated_amount: Option<Amount>,
    measure_id: Option<u8>,
}

#[derive(Deserialize)]
struct Resources {
    total_count: u64,
    #[serde(default)]
    data: Vec<RawResource>,
}

#[derive(Deserialize)]
struct RawResource {
    resource_id: String,
    resource_name: Option<String>,
    region_code: Option<String>,
    service_type_name: Option<String>,
    service_type_code: Option<String>,
    status: u8,
    expire_time: Option<String>,
    expire_policy: Option<u8>,
}

#[derive(Deserialize)]
struct Orders {
    total_count: Option<u64>,
    #[serde(default)]
    order_infos: Vec<RawOrder>,
}

#[derive(Deserialize)]
struct RawOrder {
    order_id: String,
    create_time: String,
    amount_after_discount: Option<Amount>,
    official_amount: Option<Amount>,
    measure_id: Option<u8>,
    service_type_name: Option<String>,
}

#[derive(Deserialize)]
struct ChangeRecords {
    total_count: Option<u64>,
    #[serde(default)]
    records: Vec<ChangeRecord>,
}

#[derive(Deserialize)]
struct ChangeRecord {
    trade_time: String,
    change_amount: Amount,
}

impl Huawei {
    async fn balance(
        &self,
        access: &CloudAccess,
        intl: bool,
        currency: Currency,
    ) -> Result<Balance, ProviderError> {
        const WHAT: &str = "ShowCustomerAccountBalances";
        let v = self
            .call(
                access,
                intl,
                "GET",
                "/v2/accounts/customer-accounts/balances",
                &[],
                None,
            )
            .await?;
        let b: Balances = parse(v, WHAT)?;
        let bad = malformed(WHAT);
        for code in b
            .account_balances
            .iter()
            .filter_map(|a| a.currency.as_deref())
            .chain(b.currency.as_deref())
        {
            if code.trim() != currency.code() {
                return Err(bad(format!(
                    "the account bills in {code}, but its site bills in {currency}"
                )));
            }
        }
        let mut cash = None;
        let mut credit = None;
        let mut buckets = Vec::new();
        for a in &b.account_balances {
            let amount = measured(&a.amount, a.measure_id, currency).map_err(&bad)?;
            match a.account_type {
                1 => {
                    cash = Some(amount);
                    if let Some(d) = &a.designated_amount {
                        let d = measured(d, a.measure_id, currency).map_err(&bad)?;
                        if !d.amount().is_zero() {
                            buckets.push(Bucket {
                                name: "designated".into(),
                                kind: BucketKind::Other,
                                amount: d,
                                entered_as_of: None,
                            });
                        }
                    }
                }
                2 => credit = Some(amount),
                5 => buckets.push(Bucket {
                    name: "bonus".into(),
                    kind: BucketKind::Coupon,
                    amount,
                    entered_as_of: None,
                }),
                7 => buckets.push(Bucket {
                    name: "deposit".into(),
                    kind: BucketKind::Other,
                    amount,
                    entered_as_of: None,
                }),
                other => buckets.push(Bucket {
                    name: format!("account type {other}"),
                    kind: BucketKind::Other,
                    amount,
                    entered_as_of: None,
                }),
            }
        }
        let available =
            cash.ok_or_else(|| bad("no cash account (account_type 1) in the answer".into()))?;
        let owed = b
            .debt_amount
            .as_ref()
            .map(|d| measured(d, b.measure_id, currency))
            .transpose()
            .map_err(&bad)?;
        Ok(Balance {
            available,
            cash,
            credit,
            frozen: None,
            owed,
            buckets,
            entered_as_of: None,
        })
    }

    async fn resources(
        &self,
        access: &CloudAccess,
        intl: bool,
    ) -> Result<Vec<Resource>, ProviderError> {
        const WHAT: &str = "ListPayPerUseCustomerResources";
        let mut out = Vec::new();
        let mut offset = 0u64;
        for _ in 0..MAX_PAGES {
            let body = json!({
                "only_main_resource": 1,
                "status_list": [2, 4, 5],
                "offset": offset,
                "limit": PAGE,
            });
            // The path's spelling ("suscriptions") is the API's own.
            let v = self
                .call(
                    access,
                    intl,
                    "POST",
                    "/v2/orders/suscriptions/resources/query",
                    &[],
                    Some(body),
                )
                .await?;
            let page: Resources = parse(v, WHAT)?;
            let got = page.data.len() as u64;
            for r in page.data {
                let bad = malformed(WHAT);
                let Some(expire) = r.expire_time.filter(|t| !t.is_empty()) else {
                    continue;
                };
                out.push(Resource {
                    id: external_id(&r.resource_id)?,
                    product: r
                        .service_type_name
                        .or(r.service_type_code)
                        .unwrap_or_default(),
                    region: r.region_code.filter(|x| !x.is_empty()),
                    name: r.resource_name.filter(|x| !x.is_empty()),
                    expires_at: utc_time(&expire).map_err(&bad)?,
                    renewal: match r.expire_policy {
                        Some(3) => RenewalMode::Auto,
                        // Deleted at expiry: set to lapse on purpose.
                        Some(2 | 5) => RenewalMode::ExpireWithoutRenewal,
                        _ => RenewalMode::Manual,
                    },
                    status: match r.status {
                        2 => ResourceStatus::Active,
                        4 => ResourceStatus::Recovery,
                        5 => ResourceStatus::Expired,
                        3 => ResourceStatus::Released,
                        other => return Err(bad(format!("unknown resource status {other}"))),
                    },
                    renewal_price: None,
                    renewal_months: None,
                    unpriced: None,
                });
            }
            offset += got;
            if got == 0 || offset >= page.total_count {
                break;
            }
        }
        Ok(out)
    }

    /// The order's own payment deadline (`pending_payment_end_time`), which
    /// a coupon or discount expiring sooner than the seven days moves.
    async fn pay_deadline(
        &self,
        access: &CloudAccess,
        intl: bool,
        order: &crate::domain::model::ExternalId,
    ) -> Result<Option<DateTime<Utc>>, ProviderError> {
        const WHAT: &str = "ShowCustomerOrderDetails";
        let path = format!("/v2/orders/customer-orders/details/{order}");
        let api = Api {
            name: WHAT,
            method: "GET",
            path: &path,
            permission: "billing:order:view",
        };
        let v = self.send(access, intl, &api, &[], None, true).await?;
        match v["order_info"]["pending_payment_end_time"].as_str() {
            Some(t) if !t.trim().is_empty() => Ok(Some(utc_time(t).map_err(malformed(WHAT))?)),
            _ => Ok(None),
        }
    }

    async fn unpaid(
        &self,
        access: &CloudAccess,
        intl: bool,
        currency: Currency,
        now: DateTime<Utc>,
    ) -> Result<Vec<Order>, ProviderError> {
        const WHAT: &str = "ListCustomerOrders";
        let mut out = Vec::new();
        let mut offset = 0u64;
        for _ in 0..MAX_PAGES {
            let query = [
                ("status", "6".to_owned()),
                ("limit", PAGE.to_string()),
                ("offset", offset.to_string()),
                ("create_time_begin", utc_text(now - Duration::days(30))),
                ("create_time_end", utc_text(now)),
            ];
            let v = self
                .call(
                    access,
                    intl,
                    "GET",
                    "/v2/orders/customer-orders",
                    &query,
                    None,
                )
                .await?;
            let page: Orders = parse(v, WHAT)?;
            let got = page.order_infos.len() as u64;
            for o in page.order_infos {
                let bad = malformed(WHAT);
                let created_at = utc_time(&o.create_time).map_err(&bad)?;
                let amount = o
                    .amount_after_discount
                    .as_ref()
                    .or(o.official_amount.as_ref())
                    .ok_or_else(|| bad(format!("order {} has no amount", o.order_id)))?;
                let id = external_id(&o.order_id)?;
                let pay_deadline = self
                    .pay_deadline(access, intl, &id)
                    .await?
                    .unwrap_or(created_at + Duration::days(ORDER_WINDOW_DAYS));
                out.push(Order {
                    id,
                    amount: measured(amount, o.measure_id, currency).map_err(&bad)?,
                    created_at,
                    pay_deadline: Some(pay_deadline),
                    description: o.service_type_name.unwrap_or_default(),
                });
            }
            offset += got;
            if got < PAGE || page.total_count.is_some_and(|t| offset >= t) {
                break;
            }
        }
        Ok(out)
    }

    /// Top-ups into the cash account, and what it paid out for consumption,
    /// over the ledger window.
    async fn ledger(
        &self,
        access: &CloudAccess,
        intl: bool,
        currency: Currency,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Recharge>, Option<ReportedSpend>), ProviderError> {
        let (paid_in, _) = self
            .changes(access, intl, currency, now, "RECHARGE")
            .await?;
        let recharges = paid_in
            .into_iter()
            .filter(|(_, amount)| !amount.is_negative())
            .map(|(at, amount)| Recharge { at, amount })
            .collect();
        // "DEDEUCT" is the API's own spelling.
        let (spent, complete) = self.changes(access, intl, currency, now, "DEDEUCT").await?;
        // A ledger cut short would understate the burn: better none, and the
        // balance's own fall instead.
        let spend = if complete {
            Some(
                reported_spend(spent.into_iter().map(|(_, m)| m), currency, LEDGER_DAYS)
                    .map_err(malformed("ListCustomerAccountChangeRecords"))?,
            )
        } else {
            None
        };
        Ok((recharges, spend))
    }

    /// Cash-account changes of one trade type over the ledger window, and
    /// whether they were all read.
    async fn changes(
        &self,
        access: &CloudAccess,
        intl: bool,
        currency: Currency,
        now: DateTime<Utc>,
        trade_type: &str,
    ) -> Result<(Vec<(DateTime<Utc>, Money)>, bool), ProviderError> {
        const WHAT: &str = "ListCustomerAccountChangeRecords";
        let mut out = Vec::new();
        let mut offset = 0u64;
        for _ in 0..MAX_PAGES {
            let query = [
                ("balance_type", "BALANCE_TYPE_DEBIT".to_owned()),
                ("trade_type", trade_type.to_owned()),
                (
                    "trade_time_begin",
                    utc_text(now - Duration::days(LEDGER_DAYS)),
                ),
                ("trade_time_end", utc_text(now)),
                ("limit", PAGE.to_string()),
                ("offset", offset.to_string()),
            ];
            let v = self
                .call(
                    access,
                    intl,
                    "GET",
                    "/v2/accounts/customer-accounts/account-change-records",
                    &query,
                    None,
                )
                .await?;
            let page: ChangeRecords = parse(v, WHAT)?;
            let got = page.records.len() as u64;
            for r in page.records {
                let bad = malformed(WHAT);
                out.push((
                    utc_time(&r.trade_time).map_err(&bad)?,
                    r.change_amount.major(currency).map_err(&bad)?,
                ));
            }
            offset += got;
            if got < PAGE || page.total_count.is_some_and(|t| offset >= t) {
                return Ok((out, true));
            }
        }
        Ok((out, false))
    }
}

#[async_trait]
impl Provider for Huawei {
    async fn poll(&self, account: &Account) -> Result<Snapshot, ProviderError> {
        let access = access_for(&self.accounts, account)?;
        let intl = account.site == "intl";
        let currency = if intl { Currency::Usd } else { Currency::Cny };
        let now = self.http.clock.now();
        let balance = self.balance(access, intl, currency).await?;
        let resources = self.resources(access, intl).await?;
        let orders = self.unpaid(access, intl, currency, now).await?;
        let (recharges, spend) = self.ledger(access, intl, currency, now).await?;
        Ok(Snapshot {
            taken_at: now,
            balance,
            resources,
            orders,
            spend,
            recharges,
        })
    }
}

// ---------------------------------------------------------------- actions

/// Main resources one renewal takes at most.
const RENEW_BATCH: usize = 10;
/// `PayOrders`: "the order state changed and it can no longer be paid".
const NOT_PAYABLE: &str = "CBC.99003106";

const RENEW: Api<'static> = Api {
    name: "RenewalResources",
    method: "POST",
    path: "/v2/orders/subscriptions/resources/renew",
    permission: "billing:subscription:renew",
};
const PAY: Api<'static> = Api {
    name: "PayOrders",
    method: "POST",
    path: "/v3/orders/customer-orders/pay",
    permission: "billing:order:pay",
};
const RENEW_RATE: Api<'static> = Api {
    name: "ListRenewRateOnPeriod",
    method: "POST",
    path: "/v2/bills/ratings/period-resources/renew-rate",
    permission: "billing:subscription:view",
};

/// Huawei renews by month (1–11) or by year (1–3): `(period_type, period_num)`.
fn period(months: u32) -> Option<(u8, u32)> {
    match months {
        1..=11 => Some((2, months)),
        12 | 24 | 36 => Some((3, months / 12)),
        _ => None,
    }
}

#[derive(Deserialize)]
struct OrderState {
    order_id: String,
    status: u8,
    #[serde(default)]
    order_type: Option<u8>,
    #[serde(default)]
    service_type_code: Option<String>,
    #[serde(default)]
    create_time: Option<String>,
}

#[derive(Deserialize)]
struct OrderStates {
    #[serde(default)]
    order_infos: Vec<OrderState>,
}

/// Order status 4: cancelled.
const CANCELLED: u8 = 4;

/// Ids as a sentence lists them.
fn list<'a>(ids: impl IntoIterator<Item = &'a String>) -> String {
    ids.into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Order status: 3 processing, 5 completed (paid), 6 awaiting payment.
fn paid(status: u8) -> bool {
    matches!(status, 3 | 5)
}

impl Huawei {
    /// The main resources `order` renews, as the subscription listing gives
    /// them for it.
    async fn resources_of_order(
        &self,
        ctx: &Site<'_>,
        order: &str,
    ) -> Result<BTreeSet<String>, ProviderError> {
        Ok(self
            .subscriptions(ctx, json!({"order_id": order}))
            .await?
            .into_iter()
            .map(|r| r.resource_id)
            .collect())
    }

    /// What a lost `RenewalResources` left: the renewal orders created since
    /// it was recorded whose resources are among those it asked for, each
    /// resource in exactly one; anything that touches them otherwise is for
    /// a person to sort out.
    async fn renewal_orders_of(
        &self,
        ctx: &Site<'_>,
        lost: LostCall<'_>,
    ) -> Result<ReadBack, ProviderError> {
        let p = &lost.call.params;
        let wanted: BTreeSet<String> = texts(&p["resource_ids"]).into_iter().collect();
        let services = texts(&p["service_types"]);
        let since = lost.since - Duration::minutes(1);
        let now = self.http.clock.now();
        let mut found = Vec::new();
        for page in 0..MAX_PAGES {
            let rows = self
                .orders(
                    ctx,
                    &[
                        ("order_type", "2".into()),
                        ("create_time_begin", utc_text(since)),
                        ("create_time_end", utc_text(now + Duration::minutes(1))),
                        ("limit", PAGE.to_string()),
                        ("offset", (u64::from(page) * PAGE).to_string()),
                    ],
                )
                .await?;
            let got = rows.len();
            found.extend(rows);
            if got < PAGE as usize {
                break;
            }
        }
        let mut ours: Vec<(String, BTreeSet<String>)> = Vec::new();
        let mut untold = Vec::new();
        for o in found {
            let created = o.create_time.as_deref().and_then(|t| utc_time(t).ok());
            let candidate = o.order_type.is_none_or(|t| t == 2)
                && o.status != CANCELLED
                && created.is_none_or(|t| t >= since)
                && (services.is_empty()
                    || o.service_type_code
                        .as_ref()
                        .is_none_or(|s| services.contains(s)))
                && !lost.claimed.contains(&o.order_id);
            if !candidate {
                continue;
            }
            let renews = self.resources_of_order(ctx, &o.order_id).await?;
            if renews.is_empty() {
                untold.push(o.order_id);
            } else if renews.is_subset(&wanted) {
                ours.push((o.order_id, renews));
            } else if !renews.is_disjoint(&wanted) {
                return Ok(ReadBack::Unclear(format!(
                    "renewal order {} renews {}, more than the {} asked for",
                    o.order_id,
                    list(&renews),
                    list(&wanted)
                )));
            }
        }
        for r in &wanted {
            let by: Vec<&str> = ours
                .iter()
                .filter(|(_, renews)| renews.contains(r))
                .map(|(id, _)| id.as_str())
                .collect();
            if by.len() > 1 {
                return Ok(ReadBack::Unclear(format!(
                    "renewal orders {} each renew {r}",
                    by.join(" and ")
                )));
            }
        }
        let covered: BTreeSet<&String> = ours.iter().flat_map(|(_, renews)| renews).collect();
        Ok(if covered.len() == wanted.len() {
            let ids: Vec<String> = ours.into_iter().map(|(id, _)| id).collect();
            ReadBack::Happened(CallAnswer {
                effects: ids.clone(),
                ..done(json!({"order_ids": ids, "read_back": true}))
            })
        } else if !covered.is_empty() {
            ReadBack::Unknown(format!(
                "renewal orders for {} are listed, not yet for the rest of {}",
                list(covered),
                list(&wanted)
            ))
        } else if !untold.is_empty() {
            ReadBack::Unclear(format!(
                "renewal order {} was created since, and the cloud does not list what it renews",
                untold.join(", ")
            ))
        } else {
            ReadBack::NotHappened
        })
    }

    async fn api(
        &self,
        ctx: &Site<'_>,
        api: &Api<'_>,
        query: &[(&str, String)],
        body: Option<Value>,
        repeatable: bool,
    ) -> Result<Value, ProviderError> {
        self.send(ctx.access, ctx.intl, api, query, body, repeatable)
            .await
    }

    /// Main resources by id, as the subscription listing has them.
    async fn resources_by_id(
        &self,
        ctx: &Site<'_>,
        ids: &[String],
    ) -> Result<Vec<RawResource>, ProviderError> {
        self.subscriptions(ctx, json!({"resource_ids": ids})).await
    }

    /// Main subscription resources matching `filter` (by ids, by order).
    async fn subscriptions(
        &self,
        ctx: &Site<'_>,
        mut filter: Value,
    ) -> Result<Vec<RawResource>, ProviderError> {
        filter["only_main_resource"] = json!(1);
        filter["limit"] = json!(PAGE);
        let v = self
            .call(
                ctx.access,
                ctx.intl,
                "POST",
                "/v2/orders/suscriptions/resources/query",
                &[],
                Some(filter),
            )
            .await?;
        Ok(parse::<Resources>(v, "ListPayPerUseCustomerResources")?.data)
    }

    /// Orders by id, or renewal orders created since a time.
    async fn orders(
        &self,
        ctx: &Site<'_>,
        query: &[(&str, String)],
    ) -> Result<Vec<OrderState>, ProviderError> {
        let v = self
            .call(
                ctx.access,
                ctx.intl,
                "GET",
                "/v2/orders/customer-orders",
                query,
                None,
            )
            .await?;
        Ok(parse::<OrderStates>(v, "ListCustomerOrders")?.order_infos)
    }

    async fn order(&self, ctx: &Site<'_>, id: &str) -> Result<Option<OrderState>, ProviderError> {
        let found = self
            .orders(ctx, &[("order_id", id.to_owned()), ("limit", "1".into())])
            .await?;
        Ok(found.into_iter().find(|o| o.order_id == id))
    }

    /// The `{id, type}` of each coupon or discount asked for, as the cloud
    /// lists them usable on `order`; one it does not list is refused.
    async fn usable(
        &self,
        ctx: &Site<'_>,
        order: &str,
        wanted: &[String],
        discount: bool,
    ) -> Result<Vec<Value>, ActionError> {
        if wanted.is_empty() {
            return Ok(vec![]);
        }
        let (path, list, id, kind, what) = if discount {
            (
                "/v2/orders/customer-orders/order-discounts",
                "discounts",
                "discount_id",
                "discount_type",
                "discount",
            )
        } else {
            (
                "/v2/orders/customer-orders/order-coupons",
                "user_coupons",
                "coupon_id",
                "coupon_type",
                "coupon",
            )
        };
        let api = Api {
            name: if discount {
                "ListOrderDiscounts"
            } else {
                "ListOrderCouponsByOrderId"
            },
            method: "GET",
            path,
            permission: "billing:order:view",
        };
        let v = self
            .api(ctx, &api, &[("order_id", order.to_owned())], None, true)
            .await
            .map_err(ActionError::NotSent)?;
        let offered = v[list].as_array().cloned().unwrap_or_default();
        wanted
            .iter()
            .map(|w| {
                let o = offered
                    .iter()
                    .find(|o| o[id].as_str() == Some(w.as_str()))
                    .ok_or_else(|| ActionError::Refused {
                        code: format!("{what} not usable"),
                        message: format!(
                            "the cloud does not offer {what} {w} for order {order} (used, expired, or not for this order)"
                        ),
                    })?;
                // Coupons are listed by kind (1-4) and paid with by another
                // code (300-303); discounts keep theirs.
                let code = if discount {
                    o[kind].as_i64()
                } else {
                    o[kind].as_i64().and_then(coupon_pay_type)
                };
                let code = code.ok_or_else(|| ActionError::Refused {
                    code: format!("{what} not usable"),
                    message: format!(
                        "{what} {w} is of a kind ({}) a payment cannot name",
                        o[kind]
                    ),
                })?;
                Ok(json!({"id": w, "type": code}))
            })
            .collect()
    }
}

#[async_trait]
impl Actions for Huawei {
    /// ListOrderCouponsByOrderId and ListOrderDiscounts: what the order can
    /// be paid with. A coupon not yet activated, or locked by another
    /// order, is not offered.
    async fn offers(
        &self,
        account: &Account,
        order: &crate::domain::model::ExternalId,
    ) -> Result<Option<Vec<Offer>>, ProviderError> {
        let ctx = site(&self.accounts, account)?;
        let query = [("order_id", order.to_string())];
        let coupons = self
            .api(
                &ctx,
                &Api {
                    name: "ListOrderCouponsByOrderId",
                    method: "GET",
                    path: "/v2/orders/customer-orders/order-coupons",
                    permission: "billing:order:view",
                },
                &query,
                None,
                true,
            )
            .await?;
        let bad = malformed("ListOrderCouponsByOrderId");
        let mut out = Vec::new();
        for c in coupons["user_coupons"].as_array().into_iter().flatten() {
            let Some(id) = c["coupon_id"].as_str() else {
                return Err(bad("a coupon without coupon_id".into()));
            };
            let locked = c["used_by_order_id"]
                .as_str()
                .is_some_and(|o| !o.is_empty() && o != order.as_str());
            if c["status"].as_i64() != Some(2) || locked {
                continue;
            }
            let kind = c["coupon_type"].as_i64().unwrap_or_default();
            let mut label = coupon_kind(kind).to_owned();
            if !c["face_value"].is_null() {
                let value: Amount = serde_json::from_value(c["face_value"].clone())
                    .map_err(|e| bad(format!("face_value: {e}")))?;
                let measure = c["measure_id"].as_u64().and_then(|m| u8::try_from(m).ok());
                if kind == 2 {
                    label.push_str(&format!(" {}", value.decimal().map_err(&bad)?));
                } else {
                    label.push_str(&format!(
                        " {}",
                        measured(&value, measure, ctx.currency).map_err(&bad)?
                    ));
                }
            }
            let expires_at = match c["expire_time"].as_str().filter(|t| !t.is_empty()) {
                Some(t) => Some(utc_time(t).map_err(&bad)?),
                None => None,
            };
            out.push(Offer {
                id: id.to_owned(),
                discount: false,
                expires_at,
                required: false,
                label,
            });
        }
        let discounts = self
            .api(
                &ctx,
                &Api {
                    name: "ListOrderDiscounts",
                    method: "GET",
                    path: "/v2/orders/customer-orders/order-discounts",
                    permission: "billing:order:view",
                },
                &query,
                None,
                true,
            )
            .await?;
        let bad = malformed("ListOrderDiscounts");
        for d in discounts["discounts"].as_array().into_iter().flatten() {
            let Some(id) = d["discount_id"].as_str() else {
                return Err(bad("a discount without discount_id".into()));
            };
            let kind = d["discount_type"].as_i64().unwrap_or(-1);
            let mut label = discount_kind(kind).to_owned();
            if let Some(v) = d["discount_value"].as_str().filter(|v| !v.is_empty()) {
                label.push_str(&format!(" {v}"));
            }
            out.push(Offer {
                id: id.to_owned(),
                discount: true,
                expires_at: None,
                required: kind == 609,
                label,
            });
        }
        Ok(Some(out))
    }

    /// Renewals are priced by ListRenewRateOnPeriod, in yuan, per main
    /// resource with what is attached to it.
    async fn quote(
        &self,
        account: &Account,
        action: &Action,
    ) -> Result<Option<Money>, ProviderError> {
        let Action::Renew { resources, months } = action else {
            return Ok(None);
        };
        let Some((period_type, period_num)) = period(*months) else {
            return Ok(None);
        };
        let ctx = site(&self.accounts, account)?;
        let bad = malformed(RENEW_RATE.name);
        let mut total = Money::zero(ctx.currency);
        for batch in resources.chunks(RENEW_BATCH) {
            let v = self
                .api(
                    &ctx,
                    &RENEW_RATE,
                    &[],
                    Some(json!({
                        "resource_ids": batch,
                        "period_type": period_type,
                        "period_num": period_num,
                        "include_relative_resources": true,
                    })),
                    true,
                )
                .await?;
            // A resource the inquiry could not price is named with the
            // cloud's reason; the sum would be short without it.
            if let Some(f) = v["fail_resource_infos"].as_array().and_then(|f| f.first()) {
                return Err(ProviderError::Rejected {
                    code: f["error_code"].as_str().unwrap_or("CBC").to_owned(),
                    message: format!(
                        "{}: {}",
                        f["resource_id"].as_str().unwrap_or("a resource"),
                        f["error_msg"].as_str().unwrap_or("not priced")
                    ),
                });
            }
            let rates = v["renew_inquiry_results"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if rates.len() < batch.len() {
                return Err(bad(format!(
                    "{} renew_inquiry_results for {} resources",
                    rates.len(),
                    batch.len()
                )));
            }
            for rate in rates {
                let rate: Amount = serde_json::from_value(rate["amount"].clone())
                    .map_err(|e| bad(format!("renew_inquiry_results amount: {e}")))?;
                let price = rate.major(ctx.currency).map_err(&bad)?;
                total = total.checked_add(&price).map_err(|e| bad(e.to_string()))?;
            }
        }
        Ok(Some(total))
    }

    async fn next(
        &self,
        account: &Account,
        action: &Action,
        done: &[(CloudCall, CallAnswer)],
    ) -> Result<NextCall, ProviderError> {
        let call = |name: &str, params: Value, repeatable: bool| {
            NextCall::Call(CloudCall {
                name: name.into(),
                params,
                repeatable,
            })
        };
        let paid = done.iter().filter(|(c, _)| c.name == PAY.name).count();
        Ok(match action {
            // The renewal order is created unpaid, then paid: a renewal has
            // no token, a payment of a paid order is refused.
            Action::Renew { resources, months } => {
                let renewals: Vec<_> = done.iter().filter(|(c, _)| c.name == RENEW.name).collect();
                let batches: Vec<_> = resources.chunks(RENEW_BATCH).collect();
                if let Some(batch) = batches.get(renewals.len()) {
                    let ctx = site(&self.accounts, account)?;
                    let ids: Vec<String> = batch.iter().map(|i| i.to_string()).collect();
                    let found = self.resources_by_id(&ctx, &ids).await?;
                    let services: BTreeSet<_> = found
                        .iter()
                        .filter_map(|r| r.service_type_code.clone())
                        .collect();
                    return Ok(call(
                        RENEW.name,
                        json!({"resource_ids": ids, "months": months, "service_types": services}),
                        false,
                    ));
                }
                let orders: Vec<String> = renewals
                    .iter()
                    .flat_map(|(_, a)| texts(&a.result["order_ids"]))
                    .collect();
                if let Some(order) = orders.get(paid) {
                    return Ok(call(PAY.name, json!({"order_id": order}), true));
                }
                let ctx = site(&self.accounts, account)?;
                let ids: Vec<String> = resources.iter().map(|i| i.to_string()).collect();
                let mut lines = Vec::new();
                for r in self.resources_by_id(&ctx, &ids).await? {
                    let at = r
                        .expire_time
                        .as_deref()
                        .map(utc_time)
                        .transpose()
                        .map_err(malformed("ListPayPerUseCustomerResources"))?;
                    if let Some(at) = at {
                        lines.push(format!(
                            "{} now expires {}",
                            r.resource_id,
                            at.format("%Y-%m-%d %H:%M UTC")
                        ));
                    }
                }
                NextCall::Done {
                    summary: lines.join(", "),
                    details: json!({"order_ids": orders}),
                }
            }
            Action::Pay {
                orders,
                coupons,
                discount,
                ..
            } => match orders.get(paid) {
                Some(order) => call(
                    PAY.name,
                    json!({
                        "order_id": order,
                        "coupons": coupons,
                        "discount": discount,
                        "of": orders.len(),
                    }),
                    true,
                ),
                None => NextCall::Done {
                    summary: format!(
                        "{} paid from the balance",
                        orders
                            .iter()
                            .map(|o| o.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    details: json!({"order_ids": orders}),
                },
            },
            Action::Autorenew { resource, on } => match done.first() {
                None => call(
                    if *on {
                        "AutoRenewalResources"
                    } else {
                        "CancelAutoRenewalResources"
                    },
                    json!({"resource_id": resource, "on": on}),
                    true,
                ),
                Some(_) => NextCall::Done {
                    summary: format!(
                        "auto-renew turned {} for {resource}",
                        if *on { "on" } else { "off" }
                    ),
                    details: json!({"resource_id": resource, "on": on}),
                },
            },
            Action::Topup { .. } | Action::Allocate { .. } => NextCall::ByHand(
                "Huawei Cloud takes money in the console only (online payment or bank transfer in Billing Center)".into(),
            ),
        })
    }

    async fn call(
        &self,
        account: &Account,
        call: &CloudCall,
        _key: &str,
    ) -> Result<CallAnswer, ActionError> {
        let ctx = site(&self.accounts, account).map_err(ActionError::NotSent)?;
        let p = &call.params;
        match call.name.as_str() {
            "RenewalResources" => {
                let months = p["months"].as_u64().unwrap_or(0);
                let Some((period_type, period_num)) = u32::try_from(months).ok().and_then(period)
                else {
                    return Err(ActionError::Refused {
                        code: "period".into(),
                        message: format!(
                            "Huawei Cloud renews for 1 to 11 months or 1 to 3 whole years, not {months} months"
                        ),
                    });
                };
                let body = json!({
                    "resource_ids": p["resource_ids"],
                    "period_type": period_type,
                    "period_num": period_num,
                    // Only the order: paying it is a separate, refusable step.
                    "is_auto_pay": 0,
                });
                let v = self
                    .api(&ctx, &RENEW, &[], Some(body), false)
                    .await
                    .map_err(action_error)?;
                let orders = texts(&v["order_ids"]);
                if let Some(f) = v["fail_resource_infos"].as_array().and_then(|f| f.first()) {
                    let left = if orders.is_empty() {
                        String::new()
                    } else {
                        format!(" (order {} was created and left unpaid)", orders.join(", "))
                    };
                    return Err(ActionError::Refused {
                        code: f["error_code"].as_str().unwrap_or(RENEW.name).to_owned(),
                        message: format!(
                            "{}: {}{left}",
                            f["resource_id"].as_str().unwrap_or_default(),
                            f["error_msg"].as_str().unwrap_or_default()
                        ),
                    });
                }
                if orders.is_empty() {
                    return Err(ActionError::Unknown(
                        "RenewalResources answered without an order id".into(),
                    ));
                }
                Ok(CallAnswer {
                    effects: orders.clone(),
                    ..done(json!({"order_ids": orders}))
                })
            }
            "PayOrders" => {
                let order = p["order_id"].as_str().unwrap_or_default();
                let coupons: Vec<String> = texts(&p["coupons"]);
                let discount: Vec<String> = p["discount"]
                    .as_str()
                    .map(str::to_owned)
                    .into_iter()
                    .collect();
                if (!coupons.is_empty() || !discount.is_empty()) && p["of"].as_u64() > Some(1) {
                    return Err(ActionError::Refused {
                        code: "coupon".into(),
                        message: "Huawei Cloud applies coupons and discounts per order: pay the orders one at a time to use them".into(),
                    });
                }
                let coupon_infos = self.usable(&ctx, order, &coupons, false).await?;
                let discount_infos = self.usable(&ctx, order, &discount, true).await?;
                let mut body = json!({
                    "order_id": order,
                    "use_coupon": if coupon_infos.is_empty() { "NO" } else { "YES" },
                    "use_discount": if discount_infos.is_empty() { "NO" } else { "YES" },
                });
                if !coupon_infos.is_empty() {
                    body["coupon_infos"] = json!(coupon_infos);
                }
                if !discount_infos.is_empty() {
                    body["discount_infos"] = json!(discount_infos);
                }
                // A lost answer is read back rather than repeated here: the
                // repeat of a payment that went through is refused.
                match self.api(&ctx, &PAY, &[], Some(body), false).await {
                    Ok(_) => Ok(done(json!({"order_id": order}))),
                    Err(ProviderError::Rejected { code, message }) if code == NOT_PAYABLE => {
                        // Paid already (by an earlier try, or in the console)
                        // is done; cancelled or expired is a refusal.
                        match self.order(&ctx, order).await {
                            Ok(Some(o)) if paid(o.status) => Ok(CallAnswer {
                                request_id: None,
                                code,
                                result: json!({"order_id": order, "already_paid": true}),
                                effects: Vec::new(),
                            }),
                            Ok(_) => Err(ActionError::Refused { code, message }),
                            Err(e) => Err(ActionError::Unknown(format!(
                                "{message}; the order could not be read: {e}"
                            ))),
                        }
                    }
                    Err(e) => Err(action_error(e)),
                }
            }
            "AutoRenewalResources" | "CancelAutoRenewalResources" => {
                let id = p["resource_id"].as_str().unwrap_or_default();
                let path = format!("/v2/orders/subscriptions/resources/autorenew/{id}");
                let api = Api {
                    name: if call.name == "AutoRenewalResources" {
                        "AutoRenewalResources"
                    } else {
                        "CancelAutoRenewalResources"
                    },
                    method: if call.name == "AutoRenewalResources" {
                        "POST"
                    } else {
                        "DELETE"
                    },
                    path: &path,
                    permission: "billing:subscription:renew",
                };
                self.api(&ctx, &api, &[], None, true)
                    .await
                    .map_err(action_error)?;
                Ok(done(json!({"resource_id": id, "on": p["on"]})))
            }
            other => Err(no_such_call(other)),
        }
    }

    async fn read_back(
        &self,
        account: &Account,
        lost: LostCall<'_>,
    ) -> Result<ReadBack, ProviderError> {
        let ctx = site(&self.accounts, account)?;
        let call = lost.call;
        let p = &call.params;
        Ok(match call.name.as_str() {
            // No token: a renewal order of these resources created since the
            // call was recorded is its effect, tied by the resources the
            // cloud lists for the order, never by its time or service alone.
            "RenewalResources" => self.renewal_orders_of(&ctx, lost).await?,
            "PayOrders" => {
                let id = p["order_id"].as_str().unwrap_or_default();
                match self.order(&ctx, id).await? {
                    Some(o) if paid(o.status) => {
                        ReadBack::Happened(done(json!({"order_id": id, "read_back": true})))
                    }
                    // Unpaid, or cancelled: a repeat is paid, or refused.
                    Some(o) if matches!(o.status, 4 | 6) => ReadBack::NotHappened,
                    Some(o) => ReadBack::Unknown(format!("order {id} is in state {}", o.status)),
                    None => ReadBack::Unknown(format!("order {id} is not listed")),
                }
            }
            "AutoRenewalResources" | "CancelAutoRenewalResources" => {
                let id = p["resource_id"].as_str().unwrap_or_default();
                let found = self.resources_by_id(&ctx, &[id.to_owned()]).await?;
                let on = found.first().and_then(|r| r.expire_policy) == Some(3);
                if on == (call.name == "AutoRenewalResources") {
                    ReadBack::Happened(done(json!({"resource_id": id, "on": on})))
                } else {
                    ReadBack::NotHappened
                }
            }
            other => ReadBack::Unknown(format!("no such call {other}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(text: &str) -> Amount {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn measure_ids_scale_exactly() {
        let c = Currency::Cny;
        assert_eq!(
            measured(&amount("20810.92"), Some(1), c)
                .unwrap()
                .amount_string(),
            "20810.92"
        );
        assert_eq!(
            measured(&amount("208109"), Some(2), c)
                .unwrap()
                .amount_string(),
            "20810.90"
        );
        assert_eq!(
            measured(&amount("2081092"), Some(3), c)
                .unwrap()
                .amount_string(),
            "20810.92"
        );
        assert_eq!(
            measured(&amount("5"), None, c).unwrap().amount_string(),
            "5.00"
        );
        assert!(
            measured(&amount("5"), Some(4), c)
                .unwrap_err()
                .contains("measure_id 4")
        );
    }

    #[test]
    fn renewal_periods_are_months_up_to_eleven_or_whole_years() {
        assert_eq!(period(1), Some((2, 1)));
        assert_eq!(period(11), Some((2, 11)));
        assert_eq!(period(12), Some((3, 1)));
        assert_eq!(period(36), Some((3, 3)));
        for months in [0, 13, 18, 48] {
            assert_eq!(period(months), None, "{months}");
        }
    }

    #[test]
    fn an_empty_success_is_an_empty_object_and_an_empty_failure_is_not() {
        let empty = |status| Reply {
            status,
            retry_after: None,
            body: b" ".to_vec(),
        };
        assert_eq!(classify("PayOrders", &empty(200)).unwrap(), json!({}));
        assert_eq!(classify("X", &empty(204)).unwrap(), json!({}));
        assert!(matches!(
            classify("PayOrders", &empty(502)),
            Err(Failure::Transient(_))
        ));
    }

    #[test]
    fn errors_are_classified() {
        let err = |status: u16, code: &str, msg: &str| {
            classify(
                "x",
                &Reply {
                    status,
                    retry_after: None,
                    body: format!(
                        r#"{{"error_code":"{code}","error_msg":"{msg}","request_id":"r"}}"#
                    )
                    .into_bytes(),
                },
            )
            .unwrap_err()
        };
        assert!(matches!(
            err(401, "APIGW.0301", "verify aksk signature fail"),
            Failure::Auth { .. }
        ));
        assert!(matches!(
            err(401, "APIGW.0301", "the request has expired"),
            Failure::ClockSkew { .. }
        ));
        assert!(matches!(
            err(429, "APIGW.0308", "throttled"),
            Failure::Throttled { .. }
        ));
        assert!(matches!(
            err(500, "CBC.0999", "other"),
            Failure::Transient(_)
        ));
        assert!(matches!(
            err(400, "CBC.0100", "bad"),
            Failure::Business { .. }
        ));
        assert!(matches!(
            err(403, "CBC.0151", "denied"),
            Failure::Denied { .. }
        ));
        // The old success marker.
        assert!(
            classify(
                "x",
                &Reply {
                    status: 200,
                    retry_after: None,
                    body: br#"{"error_code":"CBC.0000","x":1}"#.to_vec()
                }
            )
            .is_ok()
        );
    }
}
