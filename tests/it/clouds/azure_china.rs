use std::sync::Arc;

use chrono::Duration;
use purser::adapters::azure_china::AzureChina;
use purser::adapters::sqlite::SqliteStore;
use purser::domain::model::BalanceEntry;
use purser::domain::money::{Currency, Money};
use purser::ports::{BalanceEntries, Provider, ProviderError};
use serde_json::json;

use super::mock::{self, Mock, Verifier, by_route, ok};
use super::*;

pub(super) const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
pub(super) const SECRET: &str = "azure-mock-client-secret-0123456789";
const TENANT: &str = "tenant-0001";
const SUB: &str = "sub-0001";
pub(super) const TOKEN_ROUTE: &str = "POST /tenant-0001/oauth2/v2.0/token";
pub(super) const USAGE_ROUTE: &str =
    "GET /subscriptions/sub-0001/providers/Microsoft.Consumption/usageDetails";

/// Entra ID checks the client secret; ARM checks the bearer token.
pub(super) fn entra_and_arm() -> Verifier {
    Box::new(|req, _| {
        if req.path.ends_with("/oauth2/v2.0/token") {
            let form = String::from_utf8_lossy(&req.body).into_owned();
            let good = form.contains("grant_type=client_credentials")
                && form.contains(&format!("client_id={CLIENT}"))
                && form.contains(&format!("client_secret={SECRET}"))
                && form.contains("scope=https%3A%2F%2Fmanagement.chinacloudapi.cn%2F.default");
            return if good {
                Ok(())
            } else {
                Err(mock::reply(
                    401,
                    r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x"}"#,
                ))
            };
        }
        if req.header("authorization") == "Bearer tok-1" {
            Ok(())
        } else {
            Err(mock::reply(
                401,
                r#"{"error":{"code":"InvalidAuthenticationToken","message":"The access token is invalid."}}"#,
            ))
        }
    })
}

fn usage_row(date: &str, cost: &str) -> serde_json::Value {
    json!({"id": "x", "name": "y", "type": "Microsoft.Consumption/usageDetails", "kind": "legacy",
        "properties": {"date": date, "cost": cost.parse::<serde_json::Number>().unwrap(),
                       "billingCurrency": "CNY", "meterId": "m"}})
}

pub(super) async fn azure_mock() -> Mock {
    let m = Mock::start(now(), by_route(), entra_and_arm()).await;
    m.always(
        TOKEN_ROUTE,
        ok(r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"tok-1"}"#),
    );
    let next = format!(
        "{}subscriptions/sub-0001/providers/Microsoft.Consumption/usageDetails?page=2",
        m.url
    );
    m.on(USAGE_ROUTE, move |req, _| {
        if req.param("page").as_deref() == Some("2") {
            // Today (2026-11-23) so far: two hours of the day have passed.
            return ok(json!({"value": [usage_row("2026-11-23T00:00:00Z", "20.00")]}).to_string());
        }
        let filter = req.param("$filter").unwrap_or_default();
        if !filter.contains("properties/usageStart ge '2026-11-16'") {
            return mock::reply(400, format!("unexpected filter {filter}"));
        }
        let mut rows: Vec<_> = (16..=22)
            .map(|d| usage_row(&format!("2026-11-{d}T00:00:00Z"), "240.00"))
            .collect();
        rows.push(usage_row("2026-11-22T00:00:00Z", "0.5"));
        ok(json!({"value": rows, "nextLink": next}).to_string())
    });
    m
}

async fn setup(
    m: &Mock,
    secret: &str,
) -> (
    AzureChina,
    purser::domain::model::Account,
    SqliteStore,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("p.db")).await.unwrap();
    let a = account("azure-pia", "cn");
    let mut acc = access(m, CLIENT, secret);
    acc.tenant = Some(TENANT.into());
    acc.subscription = Some(SUB.into());
    let entries: Arc<dyn BalanceEntries> = Arc::new(store.clone());
    let mut p = AzureChina::new(accounts(&a, acc), None, clock(), Some(entries));
    quick(p.http_mut());
    (p, a, store, dir)
}

#[tokio::test]
async fn the_entered_balance_less_usage_since_gives_balance_and_runway() {
    let m = azure_mock().await;
    let (p, a, store, _dir) = setup(&m, SECRET).await;

    // Without an entry there is nothing honest to report.
    let err = p.poll(&a).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Rejected { code, .. } if code == "NoBalanceEntered"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("purser balance set azure-pia"),
        "{err}"
    );

    // Entered at noon UTC on the 21st: half of the 21st, all of the 22nd
    // (240.50) and today's 20.00 so far are spent since.
    store
        .record_balance_entry(
            &a.id,
            &BalanceEntry {
                bucket: None,
                amount: Money::parse("10,000.00", Currency::Cny).unwrap(),
                as_of: now() - Duration::hours(38),
                entered_by: "ops-lead".into(),
                entered_at: now() - Duration::hours(30),
            },
        )
        .await
        .unwrap();
    let s = p.poll(&a).await.unwrap();
    m.assert_clean();
    // 10,000 − 120 − 240.50 − 20 = 9,619.50
    assert_eq!(s.balance.available.to_string(), "¥9,619.50");
    // Seven whole days: (7 × 240 + 0.5) / 7
    let spend = s.spend.unwrap();
    assert_eq!(spend.per_day.to_string(), "¥240.07");
    assert_eq!(m.count(USAGE_ROUTE), 2, "the nextLink page is followed");

    // The token is cached: a second poll does not ask for another.
    p.poll(&a).await.unwrap();
    assert_eq!(m.count(TOKEN_ROUTE), 1);
}

#[tokio::test]
async fn a_wrong_client_secret_is_refused_without_echo() {
    let m = azure_mock().await;
    let wrong = "azure-WRONG-client-secret-012345678";
    let (p, a, store, _dir) = setup(&m, wrong).await;
    store
        .record_balance_entry(
            &a.id,
            &BalanceEntry {
                bucket: None,
                amount: Money::parse("100", Currency::Cny).unwrap(),
                as_of: now(),
                entered_by: "x".into(),
                entered_at: now(),
            },
        )
        .await
        .unwrap();
    let err = p.poll(&a).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unauthorized(_)), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(
        shown.contains("invalid_client") && shown.contains("AADSTS7000215"),
        "{shown}"
    );
    assert!(!shown.contains(wrong), "{shown}");
    assert_eq!(m.hits(), 1);
}

#[tokio::test]
async fn an_ea_billing_account_balance_is_read_directly() {
    let m = azure_mock().await;
    m.always(
        "GET /providers/Microsoft.Billing/billingAccounts/ea-123/providers/Microsoft.Consumption/balances",
        ok(json!({"id": "x", "name": "balanceSummary", "type": "Microsoft.Consumption/balances",
            "properties": {"currency": "CNY  ", "beginningBalance": 30000, "endingBalance": 25432.1,
                           "newPurchases": 0, "adjustments": 0, "utilized": 4567.9}}).to_string()),
    );
    let a = account("azure-ea", "cn");
    let mut acc = access(&m, CLIENT, SECRET);
    acc.tenant = Some(TENANT.into());
    acc.subscription = Some(SUB.into());
    acc.billing_account = Some("ea-123".into());
    let mut p = AzureChina::new(accounts(&a, acc), None, clock(), None);
    quick(p.http_mut());
    let s = p.poll(&a).await.unwrap();
    m.assert_clean();
    assert_eq!(s.balance.available.to_string(), "¥25,432.10");
}
