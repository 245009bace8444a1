//! Huawei Cloud BSS (customer operations), signed with SDK-HMAC-SHA256 (AK/SK):
//! balances by account type, subscription resources, orders awaiting payment
//! and account change records.
//!
//! Units: amounts are JSON numbers whose unit `measure_id` gives (1 yuan,
//! 2 jiao, 3 fen); change records are strings in yuan; times are UTC.

mod actions;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};

use super::cloud::{
    self, Amount, Call, Failure, Http, MAX_PAGES, RateTable, Reply, access_for, authority,
    external_id, malformed, parse, per_second, reported_spend, utc_text, utc_time,
};
use super::signing::{canonical_query, huawei};
use crate::adapters::cloud::CloudAccess;
use crate::domain::model::{
    Account, AccountId, Balance, Bucket, BucketKind, Order, Recharge, RenewalMode, ReportedSpend,
    Resource, ResourceStatus, Snapshot,
};
use crate::domain::money::{Currency, Money};
use crate::ports::{Clock, Provider, ProviderError};

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
            tally: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::actions::period;
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
