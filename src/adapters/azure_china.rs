//! Azure operated by 21Vianet. No API reads a Pay-in-advance balance, so the
//! balance is the last one a person entered (`purser balance set`), less the
//! cost the Consumption usage API reports since; the same daily costs give the
//! burn rate. An EA billing account's balance is read directly when configured.
//!
//! Authentication is OAuth2 client credentials against the China cloud's
//! Entra ID (`login.chinacloudapi.cn`); amounts are decimal numbers in yuan.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

use super::cloud::{
    self, Amount, Call, Failure, Http, MAX_PAGES, RateTable, Reply, access_for, malformed, parse,
    per_second,
};
use super::signing::canonical_query;
use crate::adapters::cloud::CloudAccess;
use crate::domain::forecast::estimate_from_entry;
use crate::domain::model::{Account, AccountId, Balance, ReportedSpend, Snapshot};
use crate::domain::money::{Currency, Money};
use crate::ports::{BalanceEntries, Clock, Provider, ProviderError};

const LOGIN: &str = "https://login.chinacloudapi.cn";
const MANAGEMENT: &str = "https://management.chinacloudapi.cn";
const SCOPE: &str = "https://management.chinacloudapi.cn/.default";
const USAGE_API: &str = "2019-10-01";
const BALANCE_API: &str = "2024-08-01";
/// Days of usage averaged for the burn rate.
const SPEND_DAYS: i64 = 7;

pub struct AzureChina {
    http: Http,
    accounts: HashMap<AccountId, CloudAccess>,
    entries: Option<Arc<dyn BalanceEntries>>,
    tokens: Mutex<HashMap<AccountId, (String, DateTime<Utc>)>>,
}

impl AzureChina {
    pub fn new(
        accounts: HashMap<AccountId, CloudAccess>,
        requests_per_second: Option<NonZeroU32>,
        clock: Arc<dyn Clock>,
        entries: Option<Arc<dyn BalanceEntries>>,
    ) -> AzureChina {
        let rps = requests_per_second.unwrap_or(per_second(10));
        AzureChina {
            http: Http::new(RateTable::uniform(rps), clock),
            accounts,
            entries,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    pub fn http_mut(&mut self) -> &mut Http {
        &mut self.http
    }

    fn base(access: &CloudAccess, default: &str) -> String {
        access.endpoint.as_ref().map_or(default.to_owned(), |e| {
            e.as_str().trim_end_matches('/').to_owned()
        })
    }

    async fn token(&self, id: &AccountId, access: &CloudAccess) -> Result<String, ProviderError> {
        let now = self.http.clock.now();
        {
            let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((t, until)) = tokens.get(id)
                && *until > now
            {
                return Ok(t.clone());
            }
        }
        let tenant = access.tenant.as_deref().unwrap_or_default();
        let url = format!("{}/{tenant}/oauth2/v2.0/token", Self::base(access, LOGIN));
        let client_id = access.key_id.expose();
        let secret = access.secret.expose();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", SCOPE),
        ];
        let v = self
            .http
            .call(
                Call {
                    key_id: client_id,
                    action: "token",
                    permission: "a client secret for this app registration",
                },
                &[client_id, secret],
                || self.http.client().post(&url).form(&form),
                |r| classify("token", r),
            )
            .await?;
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
            expires_in: Amount,
        }
        let t: Token = parse(v, "token")?;
        let lifetime = t
            .expires_in
            .decimal()
            .ok()
            .and_then(|d| i64::try_from(d.trunc()).ok())
            .unwrap_or(300)
            .clamp(0, 86_400);
        // Renew five minutes early, so a poll never starts on a dying token.
        let until = now + Duration::seconds((lifetime - 300).max(0));
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), (t.access_token.clone(), until));
        Ok(t.access_token)
    }

    async fn get(
        &self,
        access: &CloudAccess,
        what: &str,
        url: &str,
        token: &str,
    ) -> Result<Value, ProviderError> {
        self.http
            .call(
                Call {
                    key_id: access.key_id.expose(),
                    action: what,
                    permission: if what.contains("balances") {
                        "Microsoft.Consumption/balances/read (enrollment reader)"
                    } else {
                        "Microsoft.Consumption/usageDetails/read (Cost Management Reader)"
                    },
                },
                &[access.secret.expose()],
                || self.http.client().get(url).bearer_auth(token),
                |r| classify(what, r),
            )
            .await
    }

    /// Cost per UTC day from `from` until now.
    async fn daily_costs(
        &self,
        access: &CloudAccess,
        token: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(NaiveDate, Money)>, ProviderError> {
        const WHAT: &str = "usageDetails";
        let subscription = access.subscription.as_deref().unwrap_or_default();
        let filter = format!("properties/usageStart ge '{from}' and properties/usageEnd le '{to}'");
        // Encoded by hand: spaces as %20, which every server reads as a space
        // (form encoding's '+' is not).
        let query = canonical_query(&[
            ("$filter".to_owned(), filter),
            ("$top".to_owned(), "1000".to_owned()),
            ("api-version".to_owned(), USAGE_API.to_owned()),
        ]);
        let mut url = format!(
            "{}/subscriptions/{subscription}/providers/Microsoft.Consumption/usageDetails?{query}",
            Self::base(access, MANAGEMENT)
        );
        let mut by_day: BTreeMap<NaiveDate, Decimal> = BTreeMap::new();
        let bad = malformed(WHAT);
        for _ in 0..MAX_PAGES {
            let v = self.get(access, WHAT, &url, token).await?;
            let page: UsagePage = parse(v, WHAT)?;
            for row in page.value {
                let p = row.properties;
                let cost = p
                    .cost_in_billing_currency
                    .or(p.cost)
                    .or(p.pretax_cost)
                    .ok_or_else(|| bad("a usage row without cost".into()))?
                    .decimal()
                    .map_err(&bad)?;
                if let Some(code) = p
                    .billing_currency
                    .or(p.billing_currency_code)
                    .or(p.currency)
                    && code.trim() != "CNY"
                {
                    return Err(bad(format!("usage billed in {code:?}, expected CNY")));
                }
                let day = p
                    .date
                    .or(p.usage_start)
                    .ok_or_else(|| bad("a usage row without date".into()))?;
                let day = cloud::utc_time(&day)
                    .map(|t| t.date_naive())
                    .or_else(|_| NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d"))
                    .map_err(|_| bad(format!("usage date {day:?}")))?;
                let sum = by_day.entry(day).or_default();
                *sum = sum
                    .checked_add(cost)
                    .ok_or_else(|| bad(format!("usage on {day} adds up beyond any bill")))?;
            }
            match page.next_link.filter(|l| !l.is_empty()) {
                Some(next) => url = next,
                None => break,
            }
        }
        Ok(by_day
            .into_iter()
            .map(|(d, c)| (d, Money::new(c, Currency::Cny)))
            .collect())
    }

    async fn ea_balance(
        &self,
        access: &CloudAccess,
        token: &str,
        billing_account: &str,
    ) -> Result<Money, ProviderError> {
        const WHAT: &str = "Consumption balances";
        let url = format!(
            "{}/providers/Microsoft.Billing/billingAccounts/{billing_account}/providers/Microsoft.Consumption/balances?api-version={BALANCE_API}",
            Self::base(access, MANAGEMENT)
        );
        let v = self.get(access, WHAT, &url, token).await?;
        let b: EaBalance = parse(v, WHAT)?;
        let bad = malformed(WHAT);
        if let Some(c) = &b.properties.currency
            && c.trim() != "CNY"
        {
            return Err(bad(format!(
                "the billing account is in {:?}, expected CNY",
                c.trim()
            )));
        }
        b.properties
            .ending_balance
            .major(Currency::Cny)
            .map_err(&bad)
    }
}

fn classify(what: &str, reply: &Reply) -> Result<Value, Failure> {
    if reply.status == 429 {
        return Err(Failure::Throttled {
            retry_after: reply.retry_after,
        });
    }
    if reply.status >= 500 {
        return Err(Failure::Transient(format!("{what}: HTTP {}", reply.status)));
    }
    let value = cloud::json(reply)?;
    if (200..300).contains(&reply.status) {
        return Ok(value);
    }
    // ARM: {"error": {"code", "message"}}; Entra ID: {"error": "...", "error_description": "..."}.
    let (code, message) = match value.get("error") {
        Some(Value::Object(e)) => (
            e.get("code")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            e.get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        ),
        Some(Value::String(code)) => (
            code.clone(),
            value
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("")
                .to_owned(),
        ),
        _ => (format!("HTTP {}", reply.status), String::new()),
    };
    let message = format!("{what}: {message}");
    Err(match reply.status {
        400 if code == "invalid_client" || code == "unauthorized_client" => {
            Failure::Auth { code, message }
        }
        401 => Failure::Auth { code, message },
        403 => Failure::Denied { code, message },
        _ => Failure::Business { code, message },
    })
}

#[derive(Deserialize)]
struct UsagePage {
    #[serde(default)]
    value: Vec<UsageRow>,
    #[serde(rename = "nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct UsageRow {
    properties: UsageProperties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageProperties {
    date: Option<String>,
    usage_start: Option<String>,
    cost: Option<Amount>,
    cost_in_billing_currency: Option<Amount>,
    pretax_cost: Option<Amount>,
    billing_currency: Option<String>,
    billing_currency_code: Option<String>,
    currency: Option<String>,
}

#[derive(Deserialize)]
struct EaBalance {
    properties: EaBalanceProperties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EaBalanceProperties {
    currency: Option<String>,
    ending_balance: Amount,
}

fn no_entry(account: &Account) -> ProviderError {
    ProviderError::Rejected {
        code: "NoBalanceEntered".into(),
        message: format!(
            "no API reads a Pay-in-advance balance: enter the portal's figure with \
             `purser balance set {} <amount>`",
            account.id
        ),
    }
}

#[async_trait]
impl Provider for AzureChina {
    async fn poll(&self, account: &Account) -> Result<Snapshot, ProviderError> {
        let access = access_for(&self.accounts, account)?;
        let now = self.http.clock.now();
        let entry = match &self.entries {
            Some(store) => store
                .latest_balance_entry(&account.id)
                .await
                .map_err(|e| ProviderError::Transport(e.to_string()))?,
            None => None,
        };
        if entry.is_none() && access.billing_account.is_none() {
            return Err(no_entry(account));
        }
        let token = self.token(&account.id, access).await?;
        let today = now.date_naive();
        let spend_from = today - Duration::days(SPEND_DAYS);
        let from = entry
            .as_ref()
            .map_or(spend_from, |e| e.as_of.date_naive().min(spend_from));
        let costs = self.daily_costs(access, &token, from, today).await?;
        let (available, entered_as_of) = match (&access.billing_account, &entry) {
            (Some(ba), _) => (self.ea_balance(access, &token, ba).await?, None),
            (None, Some(e)) => (
                estimate_from_entry(e, &costs, now).map_err(|e| {
                    ProviderError::Malformed(format!("estimating the balance: {e}"))
                })?,
                Some(e.as_of),
            ),
            (None, None) => return Err(no_entry(account)),
        };
        // Whole days only: today's figure is still growing.
        let full = costs
            .iter()
            .filter(|(d, _)| *d >= spend_from && *d < today)
            .try_fold(Decimal::ZERO, |sum, (_, c)| sum.checked_add(c.amount()))
            .ok_or_else(|| {
                ProviderError::Malformed("the daily costs add up beyond any bill".into())
            })?;
        let spend = ReportedSpend {
            per_day: Money::new(full / Decimal::from(SPEND_DAYS), Currency::Cny).round_to_minor(),
            over_days: SPEND_DAYS as u32,
        };
        Ok(Snapshot {
            taken_at: now,
            balance: Balance {
                entered_as_of,
                ..Balance::available_only(available)
            },
            resources: Vec::new(),
            orders: Vec::new(),
            spend: Some(spend),
            recharges: Vec::new(),
            tally: None,
        })
    }
}
