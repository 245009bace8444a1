//! Alibaba Cloud, BSS OpenAPI 2017-12-14, signed with ACS3-HMAC-SHA256:
//! balance, subscription instances, unpaid orders and incoming payments.
//!
//! Units: amounts are strings in the major unit of the account's currency,
//! possibly negative, possibly grouped (`"12,345.67"`); times are UTC.

mod actions;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::cloud::{
    self, Amount, Call, Failure, Http, MAX_PAGES, RateTable, Reply, access_for, authority,
    external_id, malformed, parse, per_second, period_months, reported_spend, utc_text, utc_time,
};
use super::signing::{acs3, canonical_query, sha256_hex};
use crate::adapters::cloud::CloudAccess;
use crate::domain::model::{
    Account, AccountId, Balance, Order, Recharge, RenewalMode, ReportedSpend, Resource,
    ResourceStatus, Snapshot,
};
use crate::domain::money::{Currency, Money};
use crate::ports::{Clock, Provider, ProviderError};

const VERSION: &str = "2017-12-14";
const LEDGER_DAYS: i64 = 7;
const PAGE_SIZE: u32 = 100;

pub struct Alibaba {
    http: Http,
    accounts: HashMap<AccountId, CloudAccess>,
}

impl Alibaba {
    pub fn new(
        accounts: HashMap<AccountId, CloudAccess>,
        requests_per_second: Option<NonZeroU32>,
        clock: Arc<dyn Clock>,
    ) -> Alibaba {
        // BSS publishes no QPS figure; stay well under any plausible limit.
        let rps = requests_per_second.unwrap_or(per_second(10));
        Alibaba {
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
        action: &'static str,
        params: &[(&str, String)],
    ) -> Result<Value, ProviderError> {
        self.send(access, intl, Service::Bss, action, params, true)
            .await
    }

    /// One signed call to `service`; `repeatable` as for `Http::call_with`.
    async fn send(
        &self,
        access: &CloudAccess,
        intl: bool,
        service: Service<'_>,
        action: &'static str,
        params: &[(&str, String)],
        repeatable: bool,
    ) -> Result<Value, ProviderError> {
        let mut url = match (&access.endpoint, service) {
            (Some(e), _) => e.clone(),
            (None, Service::Ecs(region)) => {
                reqwest::Url::parse(&format!("https://ecs.{region}.aliyuncs.com/"))
                    .map_err(|e| ProviderError::Malformed(format!("region {region:?}: {e}")))?
            }
            (None, Service::Bss) if intl => {
                reqwest::Url::parse("https://business.ap-southeast-1.aliyuncs.com/")
                    .unwrap_or_else(|_| unreachable!())
            }
            (None, Service::Bss) => reqwest::Url::parse("https://business.aliyuncs.com/")
                .unwrap_or_else(|_| unreachable!()),
        };
        let version = match service {
            Service::Bss => VERSION,
            Service::Ecs(_) => ECS_VERSION,
        };
        let query: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        // The query goes out exactly as it was signed.
        let encoded = canonical_query(&query);
        url.set_query((!encoded.is_empty()).then_some(encoded.as_str()));
        let host = authority(&url);
        let key_id = access.key_id.expose();
        let secret = access.secret.expose();
        let empty = sha256_hex(b"");
        let build = || {
            let date = utc_text(self.http.clock.now());
            let nonce = format!("{:016x}{:016x}", self.http.unique(), self.http.unique());
            let headers = [
                ("host", host.as_str()),
                ("x-acs-action", action),
                ("x-acs-version", version),
                ("x-acs-date", date.as_str()),
                ("x-acs-signature-nonce", nonce.as_str()),
                ("x-acs-content-sha256", empty.as_str()),
            ];
            let auth = acs3::authorization(
                key_id,
                secret,
                &acs3::Request {
                    method: "POST",
                    path: "/",
                    query: &query,
                    headers: &headers,
                    payload: b"",
                },
            );
            let mut req = self.http.client().post(url.clone());
            // reqwest sets Host from the URL, to the same value that was signed.
            for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
                req = req.header(*k, *v);
            }
            req.header("Authorization", auth)
        };
        self.http
            .call_with(
                Call {
                    key_id,
                    action,
                    permission: match service {
                        Service::Bss => permission(action),
                        Service::Ecs(_) => ecs_permission(action),
                    },
                },
                &[key_id, secret],
                build,
                |r| match service {
                    Service::Bss => classify(action, r),
                    Service::Ecs(_) => classify_plain(action, r),
                },
                repeatable,
            )
            .await
    }
}

/// Where a call goes: BSS, or ECS in a region.
#[derive(Clone, Copy)]
enum Service<'a> {
    Bss,
    Ecs(&'a str),
}

const ECS_VERSION: &str = "2014-05-26";

/// The RAM actions of every call purser makes to read an account: the
/// monitoring key's whole policy (deploy/policies/alibaba-monitor.json).
pub const READ_PERMISSIONS: &[&str] = &[
    "bss:DescribeAcccount",
    "bss:DescribeAcccountTransactions",
    "bss:DescribeInstances",
    "bss:DescribeOrder",
    "bss:DescribePrice",
    "ecs:DescribeRenewalPrice",
];

/// What the action key adds: renewals and the auto-renew flag
/// (deploy/policies/alibaba-actions.json).
pub const ACTION_PERMISSIONS: &[&str] = &[
    "bssapi:RenewInstance",
    "bssapi:SetRenewal",
    "ecs:RenewInstance",
];

/// The RAM action each API call needs (`bss:DescribeAcccount` has three c's).
fn permission(action: &str) -> &'static str {
    match action {
        "QueryAccountBalance" => "bss:DescribeAcccount",
        "QueryAvailableInstances" => "bss:DescribeInstances",
        "QueryOrders" | "GetOrderDetail" => "bss:DescribeOrder",
        "QueryAccountTransactions" => "bss:DescribeAcccountTransactions",
        "GetSubscriptionPrice" => "bss:DescribePrice",
        "RenewInstance" => "bssapi:RenewInstance",
        "SetRenewal" => "bssapi:SetRenewal",
        _ => "AliyunBSSReadOnlyAccess",
    }
}

fn ecs_permission(action: &str) -> &'static str {
    match action {
        "RenewInstance" => "ecs:RenewInstance",
        "DescribeRenewalPrice" => "ecs:DescribeRenewalPrice",
        _ => "AliyunECSReadOnlyAccess",
    }
}

/// Branch on `Code` and `Success`, never on the HTTP status: the docs disagree
/// on the status of the same error.
fn classify(action: &str, reply: &Reply) -> Result<Value, Failure> {
    let value = cloud::json_or_status(reply)?;
    let success = value.get("Success").and_then(Value::as_bool);
    if success == Some(true) && reply.status < 400 {
        return value.get("Data").cloned().ok_or_else(|| {
            Failure::Malformed(format!("{action}: a successful answer without Data"))
        });
    }
    Err(failure(action, reply, &value))
}

/// ECS answers without the `Success`/`Data` wrapper: a success is the
/// object itself, an error carries `Code`.
fn classify_plain(action: &str, reply: &Reply) -> Result<Value, Failure> {
    let value = cloud::json_or_status(reply)?;
    if reply.status < 400 && value.get("Code").is_none() {
        return Ok(value);
    }
    Err(failure(action, reply, &value))
}

fn failure(action: &str, reply: &Reply, value: &Value) -> Failure {
    let code = value
        .get("Code")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let message = value
        .get("Message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if code.is_empty() {
        return if reply.status >= 500 {
            Failure::Transient(format!("HTTP {}", reply.status))
        } else {
            Failure::Malformed(format!(
                "{action}: HTTP {} without Success or Code",
                reply.status
            ))
        };
    }
    let family = code.split('.').next().unwrap_or("");
    match family {
        "InvalidTimeStamp" if code == "InvalidTimeStamp.Expired" => Failure::ClockSkew {
            code,
            allowed: "15 minutes",
        },
        _ if matches!(
            code.as_str(),
            "Forbidden" | "Forbidden.RAM" | "NoPermission" | "NotAuthorized"
        ) =>
        {
            Failure::Denied {
                code,
                message: format!("{action}: {message}"),
            }
        }
        // Forbidden.RiskControl, Forbidden.UserVerification: the account, not the key.
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "IncompleteSignature" | "Forbidden" => {
            Failure::Auth {
                code,
                message: format!("{action}: {message}"),
            }
        }
        "Throttling" => Failure::Throttled {
            retry_after: reply.retry_after,
        },
        "InternalError" | "ServiceUnavailable" | "UndefinedError" => {
            Failure::Transient(format!("{code}: {message}"))
        }
        _ => Failure::Business {
            code,
            message: format!("{action}: {message}"),
        },
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AccountBalance {
    available_amount: Amount,
    available_cash_amount: Option<Amount>,
    credit_amount: Option<Amount>,
    currency: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Instances {
    total_count: u64,
    #[serde(default)]
    instance_list: Vec<Instance>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Instance {
    #[serde(rename = "InstanceID")]
    instance_id: String,
    #[serde(default)]
    product_code: String,
    product_type: Option<String>,
    region: Option<String>,
    end_time: Option<String>,
    renew_status: Option<String>,
    #[serde(default)]
    status: String,
    renewal_duration: Option<u64>,
    renewal_duration_unit: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Orders {
    total_count: Option<u64>,
    order_list: Option<OrderList>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OrderList {
    #[serde(default)]
    order: Vec<RawOrder>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawOrder {
    /// A string by type, a bare number in some examples.
    order_id: Amount,
    create_time: String,
    pretax_amount: Amount,
    #[serde(default)]
    order_type: String,
    #[serde(default)]
    product_code: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Transactions {
    total_count: Option<u64>,
    account_transactions_list: Option<TransactionList>,
}

#[derive(Deserialize)]
struct TransactionList {
    #[serde(rename = "AccountTransactionsList", default)]
    rows: Vec<Transaction>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Transaction {
    transaction_time: String,
    amount: Amount,
}

fn renewal(status: Option<&str>) -> Result<RenewalMode, String> {
    match status.unwrap_or("ManualRenewal") {
        "AutoRenewal" => Ok(RenewalMode::Auto),
        "ManualRenewal" => Ok(RenewalMode::Manual),
        "NotRenewal" => Ok(RenewalMode::ExpireWithoutRenewal),
        other => Err(format!("unknown RenewStatus {other:?}")),
    }
}

fn page(n: u32) -> (&'static str, String) {
    ("PageNum", n.to_string())
}

impl Alibaba {
    async fn balance(&self, access: &CloudAccess, intl: bool) -> Result<Balance, ProviderError> {
        let v = self.call(access, intl, "QueryAccountBalance", &[]).await?;
        let b: AccountBalance = parse(v, "QueryAccountBalance")?;
        let currency = Currency::from_code(b.currency.trim()).ok_or_else(|| {
            ProviderError::Malformed(format!(
                "QueryAccountBalance: the account bills in {:?}, which purser does not handle",
                b.currency
            ))
        })?;
        let bad = malformed("QueryAccountBalance");
        Ok(Balance {
            available: b.available_amount.major(currency).map_err(&bad)?,
            cash: b
                .available_cash_amount
                .map(|a| a.major(currency))
                .transpose()
                .map_err(&bad)?,
            credit: b
                .credit_amount
                .map(|a| a.major(currency))
                .transpose()
                .map_err(&bad)?,
            frozen: None,
            owed: None,
            buckets: Vec::new(),
            entered_as_of: None,
        })
    }

    async fn instances(
        &self,
        access: &CloudAccess,
        intl: bool,
    ) -> Result<Vec<Resource>, ProviderError> {
        let mut out = Vec::new();
        let mut seen = 0u64;
        for n in 1..=MAX_PAGES {
            let v = self
                .call(
                    access,
                    intl,
                    "QueryAvailableInstances",
                    &[
                        page(n),
                        ("PageSize", "300".into()),
                        ("SubscriptionType", "Subscription".into()),
                    ],
                )
                .await?;
            let p: Instances = parse(v, "QueryAvailableInstances")?;
            let got = p.instance_list.len();
            // Rows without an end time are skipped, so count rows, not results.
            seen += got as u64;
            for i in p.instance_list {
                let bad = malformed("QueryAvailableInstances");
                let Some(end) = i.end_time.filter(|t| !t.trim().is_empty()) else {
                    continue;
                };
                out.push(Resource {
                    id: external_id(&i.instance_id)?,
                    product: i.product_code,
                    region: i.region.filter(|r| !r.is_empty()),
                    name: None,
                    expires_at: utc_time(&end).map_err(&bad)?,
                    renewal: renewal(i.renew_status.as_deref()).map_err(&bad)?,
                    status: if i.status == "Expired" {
                        ResourceStatus::Expired
                    } else {
                        ResourceStatus::Active
                    },
                    renewal_price: None,
                    renewal_months: period_months(
                        i.renewal_duration,
                        i.renewal_duration_unit.as_deref(),
                    )
                    .map_err(&bad)?,
                    unpriced: None,
                });
            }
            if got == 0 || seen >= p.total_count {
                break;
            }
        }
        Ok(out)
    }

    async fn unpaid(
        &self,
        access: &CloudAccess,
        intl: bool,
        currency: Currency,
        now: DateTime<Utc>,
    ) -> Result<Vec<Order>, ProviderError> {
        let mut out = Vec::new();
        for n in 1..=MAX_PAGES {
            // The default window is the last hour only: ask for a month.
            let v = self
                .call(
                    access,
                    intl,
                    "QueryOrders",
                    &[
                        page(n),
                        ("PageSize", PAGE_SIZE.to_string()),
                        ("PaymentStatus", "Unpaid".into()),
                        ("CreateTimeStart", utc_text(now - Duration::days(30))),
                        ("CreateTimeEnd", utc_text(now)),
                    ],
                )
                .await?;
            let p: Orders = parse(v, "QueryOrders")?;
            let rows = p.order_list.map(|l| l.order).unwrap_or_default();
            let got = rows.len();
            for o in rows {
                let bad = malformed("QueryOrders");
                let created_at = utc_time(&o.create_time).map_err(&bad)?;
                out.push(Order {
                    id: external_id(o.order_id.text())?,
                    amount: o.pretax_amount.major(currency).map_err(&bad)?,
                    created_at,
                    // Neither the order nor the documentation gives one.
                    pay_deadline: None,
                    description: [o.order_type, o.product_code]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join(" "),
                });
            }
            if got < PAGE_SIZE as usize || p.total_count.is_some_and(|t| out.len() as u64 >= t) {
                break;
            }
        }
        Ok(out)
    }

    /// Money in (top-ups) and out (consumption) over the ledger window.
    async fn ledger(
        &self,
        access: &CloudAccess,
        intl: bool,
        currency: Currency,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Recharge>, Option<ReportedSpend>), ProviderError> {
        let (paid_in, _) = self
            .transactions(access, intl, currency, now, ("Payment", "Income"))
            .await?;
        let recharges = paid_in
            .into_iter()
            .filter(|(_, amount)| !amount.is_negative())
            .map(|(at, amount)| Recharge { at, amount })
            .collect();
        let (spent, complete) = self
            .transactions(access, intl, currency, now, ("Consumption", "Expense"))
            .await?;
        // A ledger cut short would understate the burn and overstate the runway:
        // better none, and the balance's own fall instead.
        let spend = if complete {
            Some(
                reported_spend(spent.into_iter().map(|(_, m)| m), currency, LEDGER_DAYS)
                    .map_err(malformed("QueryAccountTransactions"))?,
            )
        } else {
            None
        };
        Ok((recharges, spend))
    }

    /// Transactions of one type and direction over the ledger window, and
    /// whether they were all read.
    async fn transactions(
        &self,
        access: &CloudAccess,
        intl: bool,
        currency: Currency,
        now: DateTime<Utc>,
        (kind, flow): (&str, &str),
    ) -> Result<(Vec<(DateTime<Utc>, Money)>, bool), ProviderError> {
        let mut out = Vec::new();
        let mut seen = 0u64;
        for n in 1..=MAX_PAGES {
            let v = self
                .call(
                    access,
                    intl,
                    "QueryAccountTransactions",
                    &[
                        page(n),
                        ("PageSize", PAGE_SIZE.to_string()),
                        ("TransactionType", kind.into()),
                        ("TransactionFlow", flow.into()),
                        (
                            "CreateTimeStart",
                            utc_text(now - Duration::days(LEDGER_DAYS)),
                        ),
                        ("CreateTimeEnd", utc_text(now)),
                    ],
                )
                .await?;
            let p: Transactions = parse(v, "QueryAccountTransactions")?;
            let rows = p
                .account_transactions_list
                .map(|l| l.rows)
                .unwrap_or_default();
            let got = rows.len();
            seen += got as u64;
            for t in rows {
                let bad = malformed("QueryAccountTransactions");
                out.push((
                    utc_time(&t.transaction_time).map_err(&bad)?,
                    t.amount.major(currency).map_err(&bad)?,
                ));
            }
            if got < PAGE_SIZE as usize || p.total_count.is_some_and(|t| seen >= t) {
                return Ok((out, true));
            }
        }
        Ok((out, false))
    }
}

#[async_trait]
impl Provider for Alibaba {
    async fn poll(&self, account: &Account) -> Result<Snapshot, ProviderError> {
        let access = access_for(&self.accounts, account)?;
        let intl = account.site == "intl";
        let now = self.http.clock.now();
        let balance = self.balance(access, intl).await?;
        let currency = balance.available.currency();
        let resources = self.instances(access, intl).await?;
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
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn errors_are_classified_by_code_not_status() {
        let err = |status: u16, code: &str| {
            classify(
                "QueryAccountBalance",
                &reply(
                    status,
                    &format!(r#"{{"RequestId":"r","HostId":"business.aliyuncs.com","Code":"{code}","Message":"m"}}"#),
                ),
            )
            .unwrap_err()
        };
        assert!(matches!(
            err(400, "SignatureDoesNotMatch"),
            Failure::Auth { .. }
        ));
        assert!(matches!(
            err(404, "InvalidAccessKeyId.NotFound"),
            Failure::Auth { .. }
        ));
        assert!(matches!(err(403, "Forbidden.RAM"), Failure::Denied { .. }));
        assert!(matches!(err(400, "NoPermission"), Failure::Denied { .. }));
        assert!(matches!(
            err(403, "Forbidden.RiskControl"),
            Failure::Auth { .. }
        ));
        assert!(matches!(
            err(400, "InvalidTimeStamp.Expired"),
            Failure::ClockSkew { .. }
        ));
        assert!(matches!(
            err(400, "Throttling.User"),
            Failure::Throttled { .. }
        ));
        assert!(matches!(err(500, "InternalError"), Failure::Transient(_)));
        assert!(matches!(
            err(400, "NotApplicable"),
            Failure::Business { .. }
        ));
        // Success false with HTTP 200 is still an error.
        assert!(matches!(
            classify(
                "X",
                &reply(
                    200,
                    r#"{"Success":false,"Code":"InvalidOwner","Message":"m"}"#
                )
            ),
            Err(Failure::Business { .. })
        ));
    }

    #[test]
    fn official_balance_example_parses() {
        let data = classify(
            "QueryAccountBalance",
            &reply(
                200,
                r#"{"Code":"200","Message":"success","RequestId":"16176743-6DC7-4CB3-BB25-A13982D8DFAD","Success":true,
                "Data":{"AvailableAmount":"10000.00","CreditAmount":"0.00","MybankCreditAmount":"0.00","Currency":"CNY",
                "AvailableCashAmount":"10000.00","QuotaLimit":"10000.00\n"}}"#,
            ),
        )
        .unwrap();
        let b: AccountBalance = parse(data, "x").unwrap();
        assert_eq!(
            b.available_amount.major(Currency::Cny).unwrap().to_string(),
            "¥10,000.00"
        );
    }

    #[test]
    fn renew_statuses_map() {
        assert_eq!(renewal(Some("AutoRenewal")), Ok(RenewalMode::Auto));
        assert_eq!(
            renewal(Some("NotRenewal")),
            Ok(RenewalMode::ExpireWithoutRenewal)
        );
        assert!(renewal(Some("Sometimes")).is_err());
    }
}
