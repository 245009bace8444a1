//! Tencent Cloud, API 3.0 (TC3-HMAC-SHA256): billing for the balance, renewable
//! instances, unpaid deals and the ledger; CVM for instance state per region.
//!
//! Units: the billing amounts are fen on the China site and US cents on the
//! international one, as JSON numbers that may be floats; times in billing are
//! naive Beijing time, CVM's are RFC 3339.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, FixedOffset, NaiveDateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::cloud::{
    self, Amount, Call, Failure, Http, MAX_PAGES, RateTable, Reply, Site, action_error, answered,
    authority, done, external_id as id, malformed as bad, moved_by_months, no_such_call, parse,
    per_second, period_months, reported_spend, site, texts,
};
use super::signing::tc3;
use crate::adapters::cloud::CloudAccess;
use crate::domain::model::{
    Account, AccountId, Balance, Charge, Order, Recharge, RenewalMode, ReportedSpend, Resource,
    ResourceStatus, Snapshot,
};
use crate::domain::money::Money;
use crate::domain::request::Action;
use crate::ports::{
    ActionError, Actions, CallAnswer, Clock, CloudCall, LostCall, NextCall, Provider,
    ProviderError, ReadBack,
};

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
        })
    }
}

// ---------------------------------------------------------------- actions

const CVM: &str = "p_cvm";

fn flag(on: bool) -> &'static str {
    if on {
        "NOTIFY_AND_AUTO_RENEW"
    } else {
        "NOTIFY_AND_MANUAL_RENEW"
    }
}

impl Tencent {
    /// One instance as renewal management lists it: its product and region.
    async fn renewable_one(
        &self,
        ctx: &Site<'_>,
        id: &str,
    ) -> Result<RenewInstance, ProviderError> {
        let v = self
            .call(
                ctx,
                "billing",
                "DescribeRenewInstances",
                None,
                json!({"MaxResults": 10, "InstanceIdList": [id]}),
            )
            .await?;
        let page: RenewInstances = parse(v, "DescribeRenewInstances")?;
        page.instance_list
            .into_iter()
            .find(|i| i.instance_id == id)
            .ok_or_else(|| ProviderError::Rejected {
                code: "ResourceNotFound".into(),
                message: format!("renewal management does not list {id}"),
            })
    }

    async fn cvm_one(
        &self,
        ctx: &Site<'_>,
        region: &str,
        id: &str,
    ) -> Result<CvmInstance, ProviderError> {
        let v = self
            .call(
                ctx,
                "cvm",
                "DescribeInstances",
                Some(region),
                json!({"InstanceIds": [id]}),
            )
            .await?;
        let page: CvmInstances = parse(v, "DescribeInstances")?;
        page.instance_set
            .into_iter()
            .find(|i| i.instance_id == id)
            .ok_or_else(|| ProviderError::Rejected {
                code: "InvalidInstanceId.NotFound".into(),
                message: format!("no instance {id} in {region}"),
            })
    }

    /// The configured region whose CVM lists `id`, if any.
    async fn cvm_region(&self, ctx: &Site<'_>, id: &str) -> Result<Option<String>, ProviderError> {
        for region in &ctx.access.regions {
            match self.cvm_one(ctx, region, id).await {
                Ok(_) => return Ok(Some(region.clone())),
                Err(ProviderError::Rejected { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Where `id` stands now, for a receipt.
    async fn expiry_line(&self, ctx: &Site<'_>, id: &str) -> Result<String, ProviderError> {
        let i = self.renewable_one(ctx, id).await?;
        let at = beijing_time(&i.expire_time).map_err(bad("DescribeRenewInstances"))?;
        Ok(format!(
            "{id} now expires {}",
            at.format("%Y-%m-%d %H:%M UTC")
        ))
    }

    /// Whether every order is paid (`Some(true)`), still unpaid
    /// (`Some(false)`), or neither (closed, expired: `None`).
    async fn deals_paid(
        &self,
        ctx: &Site<'_>,
        orders: &[String],
    ) -> Result<Option<bool>, ProviderError> {
        let now = self.http.clock.now();
        let mut paid = true;
        for id in orders {
            let query = |status: Value| {
                json!({
                    "StartTime": beijing_text(now - Duration::days(90)),
                    "EndTime": beijing_text(now),
                    "Limit": 10,
                    "Offset": 0,
                    "OrderId": id,
                    "StatusSet": status,
                })
            };
            let v = self
                .call(
                    ctx,
                    "billing",
                    "DescribeDealsByCond",
                    None,
                    query(json!([1, 12])),
                )
                .await?;
            let open: Deals = parse(v, "DescribeDealsByCond")?;
            if !open.deals.is_empty() {
                paid = false;
                continue;
            }
            let v = self
                .call(
                    ctx,
                    "billing",
                    "DescribeDealsByCond",
                    None,
                    query(json!([2, 3, 4])),
                )
                .await?;
            let done: Deals = parse(v, "DescribeDealsByCond")?;
            if done.deals.is_empty() {
                return Ok(None);
            }
        }
        Ok(Some(paid))
    }
}

#[async_trait]
impl Actions for Tencent {
    /// CVM renewals are priced by InquiryPriceRenewInstances, in yuan.
    async fn quote(
        &self,
        account: &Account,
        action: &Action,
    ) -> Result<Option<Money>, ProviderError> {
        let Action::Renew { resources, months } = action else {
            return Ok(None);
        };
        let ctx = site(&self.accounts, account)?;
        let mut total = Money::zero(ctx.currency);
        for id in resources {
            let region = match self.renewable_one(&ctx, id.as_str()).await {
                Ok(info) if info.product_code == CVM => info.region_code.unwrap_or_default(),
                Ok(_) => return Ok(None),
                // An instance CVM lists but renewal management does not:
                // found in the account's regions.
                Err(ProviderError::Rejected { .. }) => {
                    match self.cvm_region(&ctx, id.as_str()).await? {
                        Some(region) => region,
                        None => return Ok(None),
                    }
                }
                Err(e) => return Err(e),
            };
            let v = self
                .call(
                    &ctx,
                    "cvm",
                    "InquiryPriceRenewInstances",
                    Some(&region),
                    json!({"InstanceIds": [id], "InstanceChargePrepaid": {"Period": months}}),
                )
                .await?;
            let price: Amount =
                serde_json::from_value(v["Price"]["InstancePrice"]["DiscountPrice"].clone())
                    .map_err(|e| {
                        bad("InquiryPriceRenewInstances")(format!("DiscountPrice: {e}"))
                    })?;
            let price = price
                .major(ctx.currency)
                .map_err(bad("InquiryPriceRenewInstances"))?;
            total = total
                .checked_add(&price)
                .map_err(|e| bad("InquiryPriceRenewInstances")(e.to_string()))?;
        }
        Ok(Some(total))
    }

    /// The newest delivered renewal deal naming the resource, over the past
    /// year (in the quarters DescribeDealsByCond is asked for), in fen.
    async fn last_renewal(
        &self,
        account: &Account,
        resource: &Resource,
    ) -> Result<Option<Charge>, ProviderError> {
        let ctx = site(&self.accounts, account)?;
        let now = self.http.clock.now();
        for quarter in 0..4 {
            let end = now - Duration::days(90 * quarter);
            let v = self
                .call(
                    &ctx,
                    "billing",
                    "DescribeDealsByCond",
                    None,
                    json!({
                        "StartTime": beijing_text(end - Duration::days(90)),
                        "EndTime": beijing_text(end),
                        "Limit": 100,
                        "Offset": 0,
                        "ResourceId": resource.id,
                        "StatusSet": [2, 3, 4],
                    }),
                )
                .await?;
            let page: Deals = parse(v, "DescribeDealsByCond")?;
            let mut newest: Option<Charge> = None;
            for d in page.deals.into_iter().filter(|d| d.action == "renew") {
                let what = format!("DescribeDealsByCond {}", d.order_id);
                let at = beijing_time(&d.create_time).map_err(bad(&what))?;
                let Some(cost) = d.real_total_cost.as_ref().or(d.total_cost.as_ref()) else {
                    continue;
                };
                let amount = cost.minor(ctx.currency).map_err(bad(&what))?;
                if newest.is_none_or(|n| n.at < at) {
                    newest = Some(Charge { amount, at });
                }
            }
            if newest.is_some() {
                return Ok(newest);
            }
        }
        Ok(None)
    }

    async fn next(
        &self,
        account: &Account,
        action: &Action,
        done: &[(CloudCall, CallAnswer)],
    ) -> Result<NextCall, ProviderError> {
        let ctx = site(&self.accounts, account)?;
        let call = |name: &str, params: Value, repeatable: bool| {
            NextCall::Call(CloudCall {
                name: name.into(),
                params,
                repeatable,
            })
        };
        Ok(match action {
            Action::Renew { resources, months } => match resources.get(done.len()) {
                Some(id) => {
                    let info = self.renewable_one(&ctx, id.as_str()).await?;
                    let region = info.region_code.clone().unwrap_or_default();
                    if info.product_code == CVM {
                        // CVM renewal takes no token: what it must change is
                        // kept, to read back whether it did. An operation
                        // still in progress may move the expiry yet: the
                        // renewal waits until it has.
                        let i = self.cvm_one(&ctx, &region, id.as_str()).await?;
                        if i.latest_operation_state.as_deref() == Some("OPERATING") {
                            return Err(ProviderError::Rejected {
                                code: "OperationDenied.InstanceOperationInProgress".into(),
                                message: format!(
                                    "{id} still has an operation in progress ({}); the renewal waits for it",
                                    i.latest_operation.as_deref().unwrap_or("unknown")
                                ),
                            });
                        }
                        call(
                            "RenewInstances",
                            json!({
                                "Region": region,
                                "InstanceIds": [id],
                                "Period": months,
                                "RenewFlag": i.renew_flag.unwrap_or_else(|| flag(false).into()),
                                "Before": i.expired_time,
                            }),
                            false,
                        )
                    } else {
                        call(
                            "RenewInstance",
                            json!({
                                "ProductCode": info.product_code,
                                "SubProductCode": info.sub_product_code,
                                "RegionCode": region,
                                "InstanceId": id,
                                "Period": months,
                                "PeriodUnit": "m",
                                "Index": done.len(),
                            }),
                            true,
                        )
                    }
                }
                None => {
                    let mut lines = Vec::new();
                    for id in resources {
                        lines.push(self.expiry_line(&ctx, id.as_str()).await?);
                    }
                    NextCall::Done {
                        summary: lines.join(", "),
                        details: json!(done.iter().map(|(_, a)| a).collect::<Vec<_>>()),
                    }
                }
            },
            Action::Pay {
                orders, coupons, ..
            } => match done.first() {
                None => call(
                    "PayDeals",
                    json!({"OrderIds": orders, "AutoVoucher": 0, "VoucherIds": coupons}),
                    // A paid order is refused (FailedOperation.InvalidDeal).
                    true,
                ),
                Some((_, a)) => NextCall::Done {
                    summary: format!(
                        "{} paid from the balance",
                        texts(&a.result["OrderIds"]).join(", ")
                    ),
                    details: a.result.clone(),
                },
            },
            Action::Autorenew { resource, on } => match done.first() {
                None => {
                    let info = self.renewable_one(&ctx, resource.as_str()).await?;
                    call(
                        "SetRenewal",
                        json!({
                            "ProductCode": info.product_code,
                            "RegionCode": info.region_code.unwrap_or_default(),
                            "InstanceId": resource,
                            "RenewFlag": flag(*on),
                        }),
                        true,
                    )
                }
                Some((_, a)) => NextCall::Done {
                    summary: format!(
                        "auto-renew turned {} for {resource}",
                        if *on { "on" } else { "off" }
                    ),
                    details: a.result.clone(),
                },
            },
            Action::Topup { .. } | Action::Allocate { .. } => NextCall::ByHand(
                "Tencent Cloud takes money in the console only (online banking, WeChat Pay, Alipay, bank transfer)".into(),
            ),
        })
    }

    async fn call(
        &self,
        account: &Account,
        call: &CloudCall,
        key: &str,
    ) -> Result<CallAnswer, ActionError> {
        let ctx = site(&self.accounts, account).map_err(ActionError::NotSent)?;
        let p = &call.params;
        match call.name.as_str() {
            "RenewInstances" => {
                let region = p["Region"].as_str().unwrap_or_default().to_owned();
                let body = json!({
                    "InstanceIds": p["InstanceIds"],
                    "InstanceChargePrepaid": {"Period": p["Period"], "RenewFlag": p["RenewFlag"]},
                    "RenewPortableDataDisk": true,
                });
                let v = self
                    .call_with(&ctx, "cvm", "RenewInstances", Some(&region), body, false)
                    .await
                    .map_err(action_error)?;
                Ok(answered(&v, json!({})))
            }
            "RenewInstance" => {
                let index = p["Index"].as_u64().unwrap_or(0);
                let body = json!({
                    "ClientToken": format!("{key}-{index}"),
                    "ProductCode": p["ProductCode"],
                    "SubProductCode": p["SubProductCode"],
                    "RegionCode": p["RegionCode"],
                    "InstanceId": p["InstanceId"],
                    "Period": p["Period"],
                    "PeriodUnit": p["PeriodUnit"],
                });
                let v = self
                    .call(&ctx, "billing", "RenewInstance", None, body)
                    .await
                    .map_err(action_error)?;
                Ok(answered(&v, json!({"OrderIds": texts(&v["OrderIdList"])})))
            }
            "PayDeals" => {
                let mut body = json!({"OrderIds": p["OrderIds"], "AutoVoucher": 0});
                if p["VoucherIds"].as_array().is_some_and(|a| !a.is_empty()) {
                    body["VoucherIds"] = p["VoucherIds"].clone();
                }
                // A repeat of a payment that went through is refused as
                // InvalidDeal, which would read as a failure: a lost answer
                // is read back by the executor instead of retried here.
                let v = self
                    .call_with(&ctx, "billing", "PayDeals", None, body, false)
                    .await
                    .map_err(action_error)?;
                Ok(answered(
                    &v,
                    json!({"OrderIds": texts(&v["OrderIds"]), "BigDealIds": texts(&v["BigDealIds"])}),
                ))
            }
            "SetRenewal" => {
                let v = self
                    .call(&ctx, "billing", "SetRenewal", None, p.clone())
                    .await
                    .map_err(action_error)?;
                // The list holds the instances it failed on.
                if let Some(f) = v["InstanceList"].as_array().and_then(|l| l.first()) {
                    return Err(ActionError::Refused {
                        code: f["Code"].as_str().unwrap_or("SetRenewal").to_owned(),
                        message: f["Message"].as_str().unwrap_or_default().to_owned(),
                    });
                }
                Ok(answered(&v, json!({"RenewFlag": p["RenewFlag"]})))
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
            // No token: the expiry the call was to move tells. No other
            // request renews the instance meanwhile (the executor runs them
            // one after the other), so a move by the months asked is this
            // call's; a move by anything else is for a person to explain.
            "RenewInstances" => {
                let region = p["Region"].as_str().unwrap_or_default();
                let id = texts(&p["InstanceIds"])
                    .into_iter()
                    .next()
                    .unwrap_or_default();
                let i = self.cvm_one(&ctx, region, &id).await?;
                let time = |t: Option<&str>| {
                    t.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.to_utc())
                };
                let months = p["Period"].as_u64().and_then(|m| u32::try_from(m).ok());
                let renewing = i.latest_operation.as_deref() == Some("RenewInstances");
                match (time(i.expired_time.as_deref()), time(p["Before"].as_str())) {
                    (Some(now), Some(before)) if now > before => {
                        if months.is_some_and(|m| moved_by_months(before, now, m)) {
                            ReadBack::Happened(CallAnswer {
                                request_id: i.latest_operation_request_id.filter(|_| renewing),
                                code: "OK".into(),
                                result: json!({"ExpiredTime": i.expired_time}),
                                effects: Vec::new(),
                            })
                        } else {
                            ReadBack::Unclear(format!(
                                "{id}'s expiry moved from {} to {}, not by the {} month(s) asked (renewed in the console, or by auto-renew?)",
                                before.format("%Y-%m-%d %H:%M UTC"),
                                now.format("%Y-%m-%d %H:%M UTC"),
                                months.unwrap_or_default()
                            ))
                        }
                    }
                    _ if renewing && i.latest_operation_state.as_deref() == Some("OPERATING") => {
                        ReadBack::Unknown(format!("the renewal of {id} is still in progress"))
                    }
                    _ => ReadBack::NotHappened,
                }
            }
            // The client token makes a repeat return the first answer.
            "RenewInstance" => ReadBack::NotHappened,
            "PayDeals" => match self.deals_paid(&ctx, &texts(&p["OrderIds"])).await? {
                Some(true) => ReadBack::Happened(done(json!({"OrderIds": p["OrderIds"]}))),
                Some(false) => ReadBack::NotHappened,
                None => ReadBack::Unknown(
                    "an order is neither unpaid nor paid (closed or expired)".into(),
                ),
            },
            "SetRenewal" => {
                let id = p["InstanceId"].as_str().unwrap_or_default();
                let i = self.renewable_one(&ctx, id).await?;
                if Some(i.renew_flag.as_str()) == p["RenewFlag"].as_str() {
                    ReadBack::Happened(done(json!({"RenewFlag": i.renew_flag})))
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
