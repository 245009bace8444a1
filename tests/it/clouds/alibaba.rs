use purser::adapters::alibaba::Alibaba;
use purser::domain::model::{RenewalMode, ResourceStatus};
use purser::ports::{Provider, ProviderError};
use serde_json::json;

use super::mock::{self, Mock, by_header, expect, ok};
use super::*;

pub(super) const ID: &str = "LTAImockmockmock0001";
pub(super) const SECRET: &str = "acs3-mock-secret-0123456789abcdef";

fn balance(available: &str) -> String {
    json!({"Code": "200", "Message": "success", "RequestId": "16176743-6DC7-4CB3-BB25-A13982D8DFAD", "Success": true,
        "Data": {"AvailableAmount": available, "CreditAmount": "0.00", "MybankCreditAmount": "0.00",
                 "Currency": "CNY", "AvailableCashAmount": available, "QuotaLimit": "10000.00\n"}})
    .to_string()
}

fn instance(id: &str, renew: &str, status: &str, end: &str) -> serde_json::Value {
    json!({"InstanceID": id, "ProductCode": "rds", "ProductType": "rds", "Region": "cn-hangzhou",
        "OwnerId": 325352345, "SubscriptionType": "Subscription", "CreateTime": "2025-09-08T16:00:00Z",
        "EndTime": end, "RenewStatus": renew, "RenewalDuration": 1, "RenewalDurationUnit": "M",
        "Status": status, "SubStatus": "Normal", "Seller": "123123123", "SellerId": 123123123})
}

pub(super) async fn alibaba_mock() -> Mock {
    let m = Mock::start(now(), by_header("x-acs-action"), mock::acs3(ID, SECRET)).await;
    m.always("QueryAccountBalance", ok(balance("12,345.67")));
    m.on("QueryAvailableInstances", |req, _| {
        if let Err(e) = expect(
            req.param("SubscriptionType").as_deref() == Some("Subscription"),
            "SubscriptionType",
        ) {
            return e;
        }
        // Two pages of one instance each.
        let page = req.param("PageNum").unwrap_or_default();
        let list = match page.as_str() {
            "1" => vec![instance(
                "rm-aaaa",
                "AutoRenewal",
                "Normal",
                "2026-11-30T16:00:00Z",
            )],
            "2" => vec![instance(
                "rm-bbbb",
                "NotRenewal",
                "Expired",
                "2026-11-20T04:04Z",
            )],
            _ => vec![],
        };
        ok(
            json!({"Code": "Success", "Message": "Successful!", "RequestId": "r", "Success": true,
            "Data": {"PageNum": page, "PageSize": 300, "TotalCount": 2, "InstanceList": list}})
            .to_string(),
        )
    });
    m.on("QueryOrders", |req, _| {
        if let Err(e) = expect(req.param("PaymentStatus").as_deref() == Some("Unpaid"), "PaymentStatus") {
            return e;
        }
        ok(json!({"Code": "Success", "Message": "Successful!", "RequestId": "r", "Success": true,
            "Data": {"HostName": "h", "PageNum": 1, "PageSize": 100, "TotalCount": 1, "OrderList": {"Order": [
                {"OrderId": 202657601410661_u64, "OrderType": "Renew", "PaymentStatus": "Unpaid",
                 "CreateTime": "2026-11-22T08:00:00Z", "ProductCode": "rds", "Currency": "CNY",
                 "PretaxGrossAmount": "1,200.00", "PretaxAmount": "1,080.50", "AfterTaxAmount": "1,080.50"}]}}})
        .to_string())
    });
    m.on("QueryAccountTransactions", |req, _| {
        let kind = req.param("TransactionType");
        let flow = req.param("TransactionFlow");
        if kind.as_deref() == Some("Consumption") {
            if let Err(e) = expect(flow.as_deref() == Some("Expense"), "TransactionFlow Expense") {
                return e;
            }
            // ¥3,500 over the 7-day window, with grouping: ¥500 a day.
            return ok(json!({"Code": "Success", "Message": "Successful!", "RequestId": "r", "Success": true,
                "Data": {"PageNum": 1, "PageSize": 100, "TotalCount": 2, "AccountTransactionsList": {"AccountTransactionsList": [
                    {"TransactionNumber": "c1", "TransactionTime": "2026-11-20T00:00:00Z", "TransactionFlow": "Expense",
                     "TransactionType": "Consumption", "TransactionChannel": "AccountBalance", "Amount": "1,400.00",
                     "Balance": "32,345.67"},
                    {"TransactionNumber": "c2", "TransactionTime": "2026-11-22T00:00:00Z", "TransactionFlow": "Expense",
                     "TransactionType": "Consumption", "TransactionChannel": "AccountBalance", "Amount": "2,100.00",
                     "Balance": "30,245.67"}]}}})
            .to_string());
        }
        if let Err(e) = expect(kind.as_deref() == Some("Payment") && flow.as_deref() == Some("Income"), "TransactionType") {
            return e;
        }
        ok(json!({"Code": "Success", "Message": "Successful!", "RequestId": "r", "Success": true,
            "Data": {"PageNum": 1, "PageSize": 100, "TotalCount": 1, "AccountTransactionsList": {"AccountTransactionsList": [
                {"TransactionNumber": "t1", "TransactionTime": "2026-11-21T03:00:00Z", "TransactionFlow": "Income",
                 "TransactionType": "Payment", "TransactionChannel": "BankTransfer", "Amount": "20,000.00",
                 "Balance": "32,345.67"}]}}})
        .to_string())
    });
    m
}

fn provider(m: &Mock, secret: &str) -> (Alibaba, purser::domain::model::Account) {
    let a = account("ali-prod", "cn");
    let mut p = Alibaba::new(accounts(&a, access(m, ID, secret)), None, clock());
    quick(p.http_mut());
    (p, a)
}

#[tokio::test]
async fn a_poll_reads_grouped_strings_pages_orders_and_payments() {
    let m = alibaba_mock().await;
    let (p, a) = provider(&m, SECRET);
    let s = p.poll(&a).await.unwrap();
    m.assert_clean();
    assert_eq!(s.balance.available.to_string(), "¥12,345.67");
    assert_eq!(m.count("QueryAvailableInstances"), 2);
    assert_eq!(s.resources.len(), 2);
    assert_eq!(s.resources[0].renewal, RenewalMode::Auto);
    let lapsed = &s.resources[1];
    assert_eq!(lapsed.renewal, RenewalMode::ExpireWithoutRenewal);
    assert_eq!(lapsed.status, ResourceStatus::Expired);
    // A time written without seconds.
    assert_eq!(lapsed.expires_at.to_rfc3339(), "2026-11-20T04:04:00+00:00");
    assert_eq!(s.orders[0].id.as_str(), "202657601410661");
    assert_eq!(s.orders[0].amount.to_string(), "¥1,080.50");
    assert_eq!(s.recharges[0].amount.to_string(), "¥20,000.00");
    // The cloud's own consumption records give the burn rate.
    let spend = s.spend.unwrap();
    assert_eq!(spend.per_day.to_string(), "¥500.00");
    assert_eq!(spend.over_days, 7);
    // Empty body, POST, query signed as sent.
    for r in m.seen() {
        assert_eq!(r.method, "POST");
        assert!(r.body.is_empty());
        assert_eq!(r.header("x-acs-version"), "2017-12-14");
    }
}

#[tokio::test]
async fn negative_balances_parse_and_bad_grouping_is_refused() {
    let m = alibaba_mock().await;
    m.always("QueryAccountBalance", ok(balance("-11.19")));
    let (p, a) = provider(&m, SECRET);
    assert_eq!(
        p.poll(&a).await.unwrap().balance.available.to_string(),
        "-¥11.19"
    );

    m.always("QueryAccountBalance", ok(balance("5,00.0")));
    let err = p.poll(&a).await.unwrap_err();
    assert!(matches!(err, ProviderError::Malformed(_)), "{err:?}");
    assert!(
        err.to_string().contains("5,00.0") && err.to_string().contains("thousands"),
        "{err}"
    );
    m.assert_clean();
}

#[tokio::test]
async fn throttling_backs_off_and_a_bad_signature_is_not_retried() {
    let m = alibaba_mock().await;
    m.on("QueryAccountBalance", |_, n| {
        if n < 2 {
            mock::reply(400, r#"{"RequestId":"r","Code":"Throttling.User","Message":"Request was denied due to user flow control."}"#)
        } else {
            ok(balance("100.00"))
        }
    });
    let (p, a) = provider(&m, SECRET);
    assert_eq!(
        p.poll(&a).await.unwrap().balance.available.amount_string(),
        "100.00"
    );
    assert_eq!(m.count("QueryAccountBalance"), 3);

    let wrong = "acs3-WRONG-secret-0123456789abcdef";
    let (p, a) = provider(&m, wrong);
    let before = m.hits();
    let err = p.poll(&a).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unauthorized(_)), "{err:?}");
    assert_eq!(m.hits() - before, 1);
    // The gateway echoes its string-to-sign; none of it reaches the error.
    let shown = err.to_string();
    assert!(shown.contains("SignatureDoesNotMatch"), "{shown}");
    assert!(
        !shown.contains("ACS3-HMAC-SHA256\n") && !shown.contains(wrong),
        "{shown}"
    );
}

#[tokio::test]
async fn a_skewed_clock_and_an_unknown_currency_are_explained() {
    let m = alibaba_mock().await;
    m.set_now(now() - chrono::Duration::minutes(20));
    let (p, a) = provider(&m, SECRET);
    let err = p.poll(&a).await.unwrap_err().to_string();
    assert!(
        err.contains("InvalidTimeStamp.Expired") && err.contains("15 minutes"),
        "{err}"
    );

    m.set_now(now());
    m.always(
        "QueryAccountBalance",
        ok(json!({"Success": true, "Code": "200", "Data": {"AvailableAmount": "5.00", "Currency": "JPY"}}).to_string()),
    );
    let err = p.poll(&a).await.unwrap_err().to_string();
    assert!(err.contains("JPY"), "{err}");
}
