//! Tencent Cloud, API 3.0 (TC3-HMAC-SHA256): billing for the balance, renewable
//! instances, unpaid deals and the ledger; CVM for instance state per region.
//!
//! Units: the billing amounts are fen on the China site and US cents on the
//! international one, as JSON numbers that may be floats; times in billing are
//! naive Beijing time, CVM's are RFC 3339.

mod actions;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, FixedOffset, NaiveDateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::cloud::{
    self, Amount, Call, Failure, Http, MAX_PAGES, RateTable, Reply, Site, authority,
    external_id as id, malformed as bad, parse, per_second, period_months, reported_spend, site,
};
use super::signing::tc3;
use crate::adapters::cloud::CloudAccess;
use crate::domain::model::{
    Account, AccountId, Balance, Order, Recharge, RenewalMode, ReportedSpend, Resource,
    ResourceStatus, Snapshot,
};
use crate::domain::money::Money;
use crate::ports::{Clock, Provider, ProviderError};

const BILLING_VERSION: &str = "2018-07-09";
const CVM_VERSION: &str = "2017-03-12";

/// The CAM actions of every call purser makes to read an account (balance,
/// bills, renewals due, orders, instances, renewal prices): the monitoring
/// key's whole policy (deploy/policies/tencent-monitor.json).
pub const READ_PERMISSIONS: &[&str] = &[
    "billing:DescribeAccountBalance",
    "billing:DescribeBillList",
    "billing:DescribeDealsByCond",
    "billing:DescribeRenewInstances",
    "cvm:DescribeInstances",
    "cvm:InquiryPriceRenewInstances",
];

/// What the action key adds: renewals, paying orders, the auto-renew flag
/// (deploy/policies/tencent-actions.json). Paying from the balance also
/// needs `finance:trade`.
pub const ACTION_PERMISSIONS: &[&str] = &[
    "billing:PayDeals",
    "billing:RenewInstance",
    "billing:SetRenewal",
    "cvm:RenewInstances",
    "finance:trade",
];
/// How far back the ledger is read for top-ups and spend.
const LEDGER_DAYS: i64 = 7;

pub struct Tencent {
    http: Http,
    accounts: HashMap<AccountId, CloudAccess>,
}

impl Tencent {
    pub fn new(
        accounts: HashMap<AccountId, CloudAccess>,
        requests_per_second: Option<NonZeroU32>,
        clock: Arc<dyn Clock>,
    ) -> Tencent {
        let rates = match requests_per_second {
            Some(n) => RateTable::uniform(n),
            None => RateTable {
                // Documented limits, per API (shared by the root account and its sub-users).
                default: per_second(20),
                per_action: HashMap::from([
                    ("DescribeInstances", per_second(40)),
                    ("RenewInstances", per_second(10)),
                    ("InquiryPriceRenewInstances", per_second(10)),
                ]),
            },
        };
        Tencent {
            http: Http::new(rates, clock),
            accounts,
        }
    }

    /// For tests: how calls are retried.
    pub fn http_mut(&mut self) -> &mut Http {
        &mut self.http
    }
}

/// The API host of `service` for the account's site, or the configured
/// endpoint.
fn endpoint(ctx: &Site<'_>, service: &str) -> reqwest::Url {
    if let Some(e) = &ctx.access.endpoint {
        return e.clone();
    }
    let host = if ctx.intl {
        format!("https://{service}.intl.tencentcloudapi.com/")
    } else {
        format!("https://{service}.tencentcloudapi.com/")
    };
    reqwest::Url::parse(&host).unwrap_or_else(|_| unreachable!("a fixed URL parses"))
}

impl Tencent {
    async fn call(
        &self,
        ctx: &Site<'_>,
        service: &str,
        action: &'static str,
        region: Option<&str>,
        params: Value,
    ) -> Result<Value, ProviderError> {
        self.call_with(ctx, service, action, region, params, true)
            .await
    }

    async fn call_with(
        &self,
        ctx: &Site<'_>,
        service: &str,
        action: &'static str,
        region: Option<&str>,
        params: Value,
        repeatable: bool,
    ) -> Result<Value, ProviderError> {
        let url = endpoint(ctx, service);
        let host = authority(&url);
        let body = params.to_string().into_bytes();
        let version = if service == "cvm" {
            CVM_VERSION
        } else {
            BILLING_VERSION
        };
        let key_id = ctx.access.key_id.expose();
        let secret = ctx.access.secret.expose();
        let build = || {
            let timestamp = self.http.clock.now().timestamp();
            let auth = tc3::authorization(
                key_id,
                secret,
                &tc3::Request {
                    method: "POST",
                    query: "",
                    content_type: "application/json",
                    host: &host,
                    action: Some(action),
                    payload: &body,
                    service,
                    timestamp,
                },
            );
            let mut req = self
                .http
                .client()
                .post(url.clone())
                .header("Content-Type", "application/json")
                .header("X-TC-Action", action)
                .header("X-TC-Version", version)
                .header("X-TC-Timestamp", timestamp.to_string())
                .header("Authorization", auth)
                .body(body.clone());
            if let Some(r) = region {
                req = req.header("X-TC-Region", r);
            }
            req
        };
        let permission = format!("{service}:{action}");
        self.http
            .call_with(
                Call {
                    key_id,
                    action,
                    permission: &permission,
                },
                &[key_id, secret],
                build,
                |reply| classify(action, reply),
                repeatable,
            )
            .await
    }
}

/// Errors come in the body, usually with HTTP 200.
fn classify(action: &str, reply: &Reply) -> Result<Value, Failure> {
    let value = cloud::json_or_status(reply)?;
    let Some(response) = value.get("Response").filter(|r| r.is_object()) else {
        return Err(Failure::Malformed(format!(
            "{action}: HTTP {} without a Response object",
            reply.status
        )));
    };
    let Some(error) = response.get("Error") else {
        return Ok(response.clone());
    };
    let code = error
        .get("Code")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let message = error
        .get("Message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let family = code.split('.').next().unwrap_or("");
    Err(match (family, code.as_str()) {
        (_, "AuthFailure.SignatureExpire") => Failure::ClockSkew {
            code,
            allowed: "5 minutes",
        },
        (
            _,
            "UnauthorizedOperation"
            | "UnauthorizedOperation.CamNoAuth"
            | "AuthFailure.UnauthorizedOperation",
        ) => Failure::Denied {
            code,
            message: format!("{action}: {message}"),
        },
        // The rest: a wrong or disabled key, or the account (real-name checks).
        ("AuthFailure" | "UnauthorizedOperation", _) => Failure::Auth {
            code,
            message: format!("{action}: {message}"),
        },
        ("RequestLimitExceeded", _) => Failure::Throttled {
            retry_after: reply.retry_after,
        },
        ("InternalError" | "ServiceUnavailable", _) => {
            Failure::Transient(format!("{code}: {message}"))
        }
        _ => Failure::Business {
            code,
            message: format!("{action}: {message}"),
        },
    })
}

// ---------------------------------------------------------------- answers

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AccountBalance {
    real_balance: Amount,
    cash_account_balance: Option<Amount>,
    credit_amount: Option<Amount>,
    freeze_amount: Option<Amount>,
    owe_amount: Option<Amount>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RenewInstances {
    #[serde(default)]
    instance_list: Vec<RenewInstance>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RenewInstance {
    instance_id: String,
    #[serde(default)]
    product_code: String,
    #[serde(default)]
    sub_product_code: String,
    #[serde(default)]
    product_name: String,
    region_code: Option<String>,
    instance_name: Option<String>,
    status: String,
    renew_flag: String,
    expire_time: String,
    renew_period: Option<u64>,
    renew_period_unit: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CvmInstances {
    #[serde(default)]
    instance_set: Vec<CvmInstance>,
    total_count: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CvmInstance {
    instance_id: String,
    instance_name: Option<String>,
    expired_time: Option<String>,
    renew_flag: Option<String>,
    isolated_source: Option<String>,
    latest_operation: Option<String>,
    latest_operation_state: Option<String>,
    latest_operation_request_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Deals {
    #[serde(default)]
    deals: Vec<Deal>,
    total_count: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Deal {
    order_id: String,
    real_total_cost: Option<Amount>,
    total_cost: Option<Amount>,
    create_time: String,
    #[serde(default)]
    product_code: String,
    #[serde(default)]
    action: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BillList {
    #[serde(default)]
    transaction_list: Vec<BillTransaction>,
    deduct_amount: Option<Amount>,
    total: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BillTransaction {
    action_type: String,
    amount: Amount,
    operation_time: String,
}

fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| unreachable!())
}

/// `2025-07-06 23:59:59` (optionally with `.941`), naive Beijing time.
pub fn beijing_time(text: &str) -> Result<DateTime<Utc>, String> {
    let naive = NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%.f")
        .map_err(|e| format!("{text:?} is not a `yyyy-MM-dd HH:mm:ss` time ({e})"))?;
    beijing()
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("{text:?} is not a valid Beijing time"))
}

fn beijing_text(t: DateTime<Utc>) -> String {
    t.with_timezone(&beijing())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn renewal(flag: &str) -> Result<RenewalMode, String> {
    match flag {
        "NOTIFY_AND_AUTO_RENEW" => Ok(RenewalMode::Auto),
        "NOTIFY_AND_MANUAL_RENEW" => Ok(RenewalMode::Manual),
        "DISABLE_NOTIFY_AND_MANUAL_RENEW" => Ok(RenewalMode::ExpireWithoutRenewal),
        other => Err(format!("unknown RenewFlag {other:?}")),
    }
}

// ---------------------------------------------------------------- the poll

impl Tencent {
    async fn balance(&self, ctx: &Site<'_>) -> Result<Balance, ProviderError> {
        let v = self
            .call(ctx, "billing", "DescribeAccountBalance", None, json!({}))
            .await?;
        let b: AccountBalance = parse(v, "DescribeAccountBalance")?;
        let c = ctx.currency;
        let opt = |a: &Option<Amount>, field: &str| -> Result<Option<Money>, ProviderError> {
            a.as_ref()
                .map(|a| a.minor(c).map_err(bad(field)))
                .transpose()
        };
        Ok(Balance {
            available: b.real_balance.minor(c).map_err(bad("RealBalance"))?,
            cash: opt(&b.cash_account_balance, "CashAccountBalance")?,
            credit: opt(&b.credit_amount, "CreditAmount")?,
            frozen: opt(&b.freeze_amount, "FreezeAmount")?,
            owed: opt(&b.owe_amount, "OweAmount")?,
            buckets: Vec::new(),
            entered_as_of: None,
        })
    }

    async fn renewable(&self, ctx: &Site<'_>) -> Result<Vec<Resource>, ProviderError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut params = json!({"MaxResults": 100});
            if let Some(t) = &token {
                params["NextToken"] = json!(t);
            }
            let v = self
                .call(ctx, "billing", "DescribeRenewInstances", None, params)
                .await?;
            let page: RenewInstances = parse(v, "DescribeRenewInstances")?;
            for i in page.instance_list {
                let what = format!("DescribeRenewInstances {}", i.instance_id);
                out.push(Resource {
                    id: id(&i.instance_id)?,
                    product: if i.product_name.is_empty() {
                        i.product_code
                    } else {
                        i.product_name
                    },
                    region: i.region_code.filter(|r| !r.is_empty()),
                    name: i.instance_name.filter(|n| !n.is_empty()),
                    expires_at: beijing_time(&i.expire_time).map_err(bad(&what))?,
                    renewal: renewal(&i.renew_flag).map_err(bad(&what))?,
                    status: match i.status.as_str() {
                        "NORMAL" => ResourceStatus::Active,
                        "ISOLATED" => ResourceStatus::Recovery,
                        other => {
                            return Err(bad(&what)(format!("unknown Status {other:?}")));
                        }
                    },
                    renewal_price: None,
                    renewal_months: period_months(i.renew_period, i.renew_period_unit.as_deref())
                        .map_err(bad(&what))?,
                    unpriced: None,
                });
            }
            match page.next_token.filter(|t| !t.is_empty()) {
                Some(t) if token.as_ref() != Some(&t) => token = Some(t),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Prepaid CVM instances in one region: what billing lists, plus whether an
    /// instance was isolated for arrears or at expiry.
    async fn cvm(&self, ctx: &Site<'_>, region: &str) -> Result<Vec<Resource>, ProviderError> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        for _ in 0..MAX_PAGES {
            let params = json!({
                "Offset": offset,
                "Limit": 100,
                "Filters": [{"Name": "instance-charge-type", "Values": ["PREPAID"]}],
            });
            let v = self
                .call(ctx, "cvm", "DescribeInstances", Some(region), params)
                .await?;
            let page: CvmInstances = parse(v, "DescribeInstances")?;
            let n = page.instance_set.len() as u64;
            for i in page.instance_set {
                let what = format!("DescribeInstances {}", i.instance_id);
                let Some(expired) = i.expired_time else {
                    continue;
                };
                let expires_at = DateTime::parse_from_rfc3339(&expired)
                    .map_err(|e| bad(&what)(format!("ExpiredTime {expired:?}: {e}")))?
                    .with_timezone(&Utc);
                let isolated = matches!(i.isolated_source.as_deref(), Some("ARREAR" | "EXPIRE"));
                out.push(Resource {
                    id: id(&i.instance_id)?,
                    product: "CVM".into(),
                    region: Some(region.to_owned()),
                    name: i.instance_name.filter(|n| !n.is_empty()),
                    expires_at,
                    renewal: renewal(i.renew_flag.as_deref().unwrap_or("NOTIFY_AND_MANUAL_RENEW"))
                        .map_err(bad(&what))?,
                    status: if isolated {
                        ResourceStatus::Recovery
                    } else {
                        ResourceStatus::Active
                    },
                    renewal_price: None,
                    renewal_months: None,
                    unpriced: None,
                });
            }
            offset += n;
            if n == 0 || offset >= page.total_count {
                break;
            }
        }
        Ok(out)
    }

    async fn unpaid(
        &self,
        ctx: &Site<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Order>, ProviderError> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        for _ in 0..MAX_PAGES {
            let params = json!({
                "StartTime": beijing_text(now - Duration::days(90)),
                "EndTime": beijing_text(now),
                "Limit": 100,
                "Offset": offset,
                "Status": 1,
            });
            let v = self
                .call(ctx, "billing", "DescribeDealsByCond", None, params)
                .await?;
            let page: Deals = parse(v, "DescribeDealsByCond")?;
            let n = page.deals.len() as u64;
            for d in page.deals {
                let what = format!("DescribeDealsByCond {}", d.order_id);
                let created_at = beijing_time(&d.create_time).map_err(bad(&what))?;
                let cost = d
                    .real_total_cost
                    .as_ref()
                    .filter(|a| a.decimal().is_ok_and(|v| !v.is_zero()))
                    .or(d.total_cost.as_ref())
                    .ok_or_else(|| bad(&what)("no RealTotalCost or TotalCost".into()))?;
                out.push(Order {
                    id: id(&d.order_id)?,
                    amount: cost.minor(ctx.currency).map_err(bad(&what))?,
                    created_at,
                    // Neither the deal nor the documentation gives one.
                    pay_deadline: None,
                    description: [d.action, d.product_code]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join(" "),
                });
            }
            offset += n;
            if n == 0 || page.total_count.is_some_and(|t| offset >= t) || n < 100 {
                break;
            }
        }
        Ok(out)
    }

    /// Top-ups over the ledger window, and the spend the cloud recorded in it.
    async fn ledger(
        &self,
        ctx: &Site<'_>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Recharge>, Option<ReportedSpend>), ProviderError> {
        let window = |pay_type: &str, offset: u64, limit: u64| {
            json!({
                "StartTime": beijing_text(now - Duration::days(LEDGER_DAYS)),
                "EndTime": beijing_text(now),
                "Offset": offset,
                "Limit": limit,
                "PayType": [pay_type],
            })
        };
        let mut recharges = Vec::new();
        let mut offset = 0u64;
        for _ in 0..MAX_PAGES {
            let v = self
                .call(
                    ctx,
                    "billing",
                    "DescribeBillList",
                    None,
                    window("recharge", offset, 100),
                )
                .await?;
            let page: BillList = parse(v, "DescribeBillList")?;
            let n = page.transaction_list.len() as u64;
            for t in page.transaction_list {
                if t.action_type != "recharge" {
                    continue;
                }
                let amount = t
                    .amount
                    .minor(ctx.currency)
                    .map_err(bad("DescribeBillList Amount"))?;
                if amount.is_negative() {
                    continue;
                }
                recharges.push(Recharge {
                    at: beijing_time(&t.operation_time).map_err(bad("DescribeBillList"))?,
                    amount,
                });
            }
            offset += n;
            if n == 0 || n < 100 || page.total.is_some_and(|t| offset >= t) {
                break;
            }
        }
        let v = self
            .call(
                ctx,
                "billing",
                "DescribeBillList",
                None,
                window("deduct", 0, 1),
            )
            .await?;
        let deducted: BillList = parse(v, "DescribeBillList")?;
        let spend = match deducted.deduct_amount {
            Some(a) => Some(
                reported_spend(
                    [a.minor(ctx.currency).map_err(bad("DeductAmount"))?],
                    ctx.currency,
                    LEDGER_DAYS,
                )
                .map_err(bad("DeductAmount"))?,
            ),
            None => None,
        };
        Ok((recharges, spend))
    }
}

#[async_trait]
impl Provider for Tencent {
    async fn poll(&self, account: &Account) -> Result<Snapshot, ProviderError> {
        let ctx = site(&self.accounts, account)?;
        let access = ctx.access;
        let now = self.http.clock.now();
        let balance = self.balance(&ctx).await?;
        let mut resources = self.renewable(&ctx).await?;
        for region in &access.regions {
            // CVM's view wins for instances both list: it knows why one is isolated.
            for r in self.cvm(&ctx, region).await? {
                match resources.iter_mut().find(|x| x.id == r.id) {
                    Some(existing) => {
                        existing.expires_at = r.expires_at;
                        existing.renewal = r.renewal;
                        if r.status == ResourceStatus::Recovery {
                            existing.status = ResourceStatus::Recovery;
                        }
                    }
                    None => resources.push(r),
                }
            }
        }
        let orders = self.unpaid(&ctx, now).await?;
        let (recharges, spend) = self.ledger(&ctx, now).await?;
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
    use super::*;
    use crate::domain::money::Currency;

    fn reply(body: &str) -> Reply {
        Reply {
            status: 200,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn beijing_times_are_utc_plus_eight() {
        assert_eq!(
            beijing_time("2025-07-06 23:59:59").unwrap().to_rfc3339(),
            "2025-07-06T15:59:59+00:00"
        );
        assert_eq!(
            beijing_time("2020-07-08 15:52:30.941")
                .unwrap()
                .timestamp_millis()
                % 1000,
            941
        );
        assert!(beijing_time("2025-07-06T23:59:59Z").is_err());
        let t = beijing_time("2025-01-01 08:00:00").unwrap();
        assert_eq!(beijing_text(t), "2025-01-01 08:00:00");
    }

    #[test]
    fn errors_are_classified_by_code() {
        let err = |code: &str| {
            classify(
                "DescribeAccountBalance",
                &reply(&format!(
                    r#"{{"Response":{{"Error":{{"Code":"{code}","Message":"m"}},"RequestId":"r"}}}}"#
                )),
            )
            .unwrap_err()
        };
        assert!(matches!(
            err("AuthFailure.SignatureFailure"),
            Failure::Auth { .. }
        ));
        assert!(matches!(
            err("UnauthorizedOperation.CamNoAuth"),
            Failure::Denied { .. }
        ));
        assert!(matches!(
            err("AuthFailure.UnauthorizedOperation"),
            Failure::Denied { .. }
        ));
        assert!(matches!(
            err("UnauthorizedOperation.NotCertification"),
            Failure::Auth { .. }
        ));
        assert!(matches!(
            err("AuthFailure.SignatureExpire"),
            Failure::ClockSkew { .. }
        ));
        assert!(matches!(
            err("RequestLimitExceeded.UinLimitExceeded"),
            Failure::Throttled { .. }
        ));
        assert!(matches!(err("InternalError"), Failure::Transient(_)));
        assert!(matches!(
            err("FailedOperation.BalanceInsufficient"),
            Failure::Business { .. }
        ));
        assert!(matches!(
            classify("X", &reply(r#"{"Foo":1}"#)),
            Err(Failure::Malformed(_))
        ));
    }

    #[test]
    fn official_balance_examples_parse_exactly() {
        // The older doc example: Uin as a string, a Balance at odds with RealBalance.
        let v = classify(
            "DescribeAccountBalance",
            &reply(
                r#"{"Response":{"Uin":"90961","RealBalance":9647442,"CashAccountBalance":1299806668,
                "IncomeIntoAccountBalance":0,"PresentAccountBalance":209512,"FreezeAmount":1290368738,
                "OweAmount":0,"RequestId":"1323","IsAllowArrears":true,"IsCreditLimited":true,
                "Balance":-6188426,"CreditAmount":200,"CreditBalance":-6188226,"RealCreditBalance":-6188226}}"#,
            ),
        )
        .unwrap();
        let b: AccountBalance = parse(v, "x").unwrap();
        assert_eq!(
            b.real_balance.minor(Currency::Cny).unwrap().to_string(),
            "¥96,474.42"
        );
        assert_eq!(
            b.freeze_amount
                .unwrap()
                .minor(Currency::Cny)
                .unwrap()
                .amount_string(),
            "12903687.38"
        );
    }
}
