use purser::adapters::huawei::Huawei;
use purser::domain::model::{BucketKind, RenewalMode, ResourceStatus};
use purser::ports::{Provider, ProviderError};
use serde_json::json;

use super::mock::{self, Mock, by_route, expect, ok};
use super::*;

pub(super) const AK: &str = "HWMOCKAKMOCKAKMOCK01";
pub(super) const SK: &str = "huawei-mock-sk-0123456789abcdefghijkl";
pub(super) const DOMAIN: &str = "0123456789abcdef0123456789abcdef";

const BALANCES: &str = "GET /v2/accounts/customer-accounts/balances";
const RESOURCES: &str = "POST /v2/orders/suscriptions/resources/query";
const ORDERS: &str = "GET /v2/orders/customer-orders";
const CHANGES: &str = "GET /v2/accounts/customer-accounts/account-change-records";

fn resource(id: &str, status: u8, policy: u8, expire: &str) -> serde_json::Value {
    json!({"id": format!("8a7f{id}"), "resource_id": id, "resource_name": format!("ecs-{id}"),
        "region_code": "cn-north-4", "service_type_code": "hws.service.type.ec2",
        "resource_type_code": "hws.resource.type.vm", "resource_type_name": "云主机", "service_type_name": "弹性云服务器",
        "resource_spec_code": "s6.large.2.linux", "project_id": "0a1b2c", "product_id": "00301-x",
        "parent_resource_id": null, "is_main_resource": 1, "status": status,
        "effective_time": "2025-01-01T00:00:00Z", "expire_time": expire, "expire_policy": policy,
        "product_spec_desc": "...", "spec_size": null, "spec_size_measure_id": null,
        "update_time": "2025-01-01T00:00:05Z"})
}

pub(super) async fn huawei_mock() -> Mock {
    let m = Mock::start(now(), by_route(), mock::sdk_hmac(AK, SK)).await;
    m.on(BALANCES, |req, _| {
        if let Err(e) = expect(req.header("x-domain-id") == DOMAIN, "X-Domain-Id") {
            return e;
        }
        // Cash in fen (measure_id 3), credit in jiao (2), bonus in yuan.
        ok(json!({"account_balances": [
            {"account_id": "AT001017264D6E9FF7", "account_type": 1, "amount": 2081092, "currency": "CNY",
             "designated_amount": 1499998, "credit_amount": null, "measure_id": 3},
            {"account_id": "AT0010172651FAC4D2", "account_type": 2, "amount": 50000, "currency": "CNY",
             "designated_amount": 0, "credit_amount": 100000, "measure_id": 2},
            {"account_id": "AT00101726BONUS", "account_type": 5, "amount": 88.8, "currency": "CNY",
             "designated_amount": 0, "credit_amount": null, "measure_id": 1}],
            "debt_amount": 0, "measure_id": 1, "currency": "CNY"})
        .to_string())
    });
    m.on(RESOURCES, |req, _| {
        let body = req.json();
        if let Err(e) = expect(body["only_main_resource"] == 1, "only_main_resource") {
            return e;
        }
        let data = match body["offset"].as_u64() {
            Some(0) => vec![
                resource("r-auto", 2, 3, "2026-12-01T15:59:59Z"),
                resource("r-frozen", 4, 0, "2026-11-20T15:59:59Z"),
            ],
            Some(2) => vec![resource("r-delete", 2, 2, "2027-01-01T00:00:00Z")],
            _ => vec![],
        };
        ok(json!({"total_count": 3, "data": data}).to_string())
    });
    m.on(ORDERS, |req, _| {
        if let Err(e) = expect(req.param("status").as_deref() == Some("6"), "status=6") {
            return e;
        }
        ok(json!({"total_count": 1, "order_infos": [
            {"order_id": "CS1911151234ABCDE", "customer_id": "c", "service_type_code": "hws.service.type.ec2",
             "service_type_name": "弹性云服务器", "source_type": 1, "status": 6, "order_type": 2,
             "create_time": "2026-11-20T08:00:00Z", "currency": "CNY",
             "amount_after_discount": 1234.5, "official_amount": 1500, "measure_id": 1}]})
        .to_string())
    });
    // The order's details give no deadline of its own.
    m.always(
        "GET /v2/orders/customer-orders/details/{order_id}",
        ok(
            json!({"order_info": {"order_id": "CS1911151234ABCDE", "status": 6, "order_type": 2,
            "create_time": "2026-11-20T08:00:00Z", "currency": "CNY", "measure_id": 1},
            "order_line_items": []})
            .to_string(),
        ),
    );
    m.on(CHANGES, |req, _| {
        if req.param("trade_type").as_deref() == Some("DEDEUCT") {
            // ¥2,800 paid out of cash over the 7-day window: ¥400 a day.
            return ok(json!({"total_count": 2, "currency": "CNY", "records": [
                {"account_change_id": "d1", "trade_detail_type": "DEDEUCT", "trade_time": "2026-11-20T02:00:00Z",
                 "trade_id": "o1", "revenue_expense_type": "EXPENSE", "change_amount": "-700.00",
                 "balance_after_change": "20110.92"},
                {"account_change_id": "d2", "trade_detail_type": "DEDEUCT", "trade_time": "2026-11-22T02:00:00Z",
                 "trade_id": "o2", "revenue_expense_type": "EXPENSE", "change_amount": "-2100.00",
                 "balance_after_change": "18010.92"}]})
            .to_string());
        }
        if let Err(e) = expect(req.param("trade_type").as_deref() == Some("RECHARGE"), "trade_type") {
            return e;
        }
        ok(json!({"total_count": 1, "currency": "CNY", "records": [
            {"account_change_id": "x", "trade_detail_type": "RECHARGE", "trade_time": "2026-11-19T02:00:00Z",
             "trade_id": "t", "revenue_expense_type": "REVENUE", "change_amount": "10000.00",
             "balance_after_change": "20810.92"}]})
        .to_string())
    });
    m
}

fn provider(m: &Mock, sk: &str) -> (Huawei, purser::domain::model::Account) {
    let a = account("hw-prod", "cn");
    let mut acc = access(m, AK, sk);
    acc.domain_id = Some(DOMAIN.into());
    let mut p = Huawei::new(accounts(&a, acc), None, clock());
    quick(p.http_mut());
    (p, a)
}

#[tokio::test]
async fn a_poll_reads_measured_amounts_resources_orders_and_recharges() {
    let m = huawei_mock().await;
    let (p, a) = provider(&m, SK);
    let s = p.poll(&a).await.unwrap();
    m.assert_clean();
    assert_eq!(s.balance.available.to_string(), "¥20,810.92");
    assert_eq!(s.balance.credit.unwrap().to_string(), "¥5,000.00");
    assert_eq!(s.balance.owed.unwrap().to_string(), "¥0.00");
    let designated = s
        .balance
        .buckets
        .iter()
        .find(|b| b.name == "designated")
        .unwrap();
    assert_eq!(designated.amount.to_string(), "¥14,999.98");
    let bonus = s
        .balance
        .buckets
        .iter()
        .find(|b| b.kind == BucketKind::Coupon)
        .unwrap();
    assert_eq!(bonus.amount.to_string(), "¥88.80");

    assert_eq!(m.count(RESOURCES), 2, "two pages");
    assert_eq!(s.resources.len(), 3);
    assert_eq!(s.resources[0].renewal, RenewalMode::Auto);
    assert_eq!(s.resources[1].status, ResourceStatus::Recovery);
    assert_eq!(s.resources[2].renewal, RenewalMode::ExpireWithoutRenewal);

    let o = &s.orders[0];
    assert_eq!(o.amount.to_string(), "¥1,234.50");
    assert_eq!(
        o.pay_deadline.unwrap() - o.created_at,
        chrono::Duration::days(7),
        "no deadline of its own: the documented seven days"
    );
    assert_eq!(s.recharges[0].amount.to_string(), "¥10,000.00");
    assert_eq!(s.spend.unwrap().per_day.to_string(), "¥400.00");
    for r in m.seen() {
        assert!(
            r.header("authorization").contains("x-domain-id"),
            "X-Domain-Id is signed"
        );
    }
}

#[tokio::test]
async fn a_bad_signature_locks_nothing_and_leaks_nothing() {
    let m = huawei_mock().await;
    let wrong = "huawei-WRONG-sk-0123456789abcdefghijk";
    let (p, a) = provider(&m, wrong);
    let err = p.poll(&a).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unauthorized(_)), "{err:?}");
    // Five failures in a row lock the AK: one attempt only.
    assert_eq!(m.hits(), 1);
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("APIGW.0301"), "{shown}");
    assert!(
        !shown.contains(AK) && !shown.contains("x-sdk-date") && !shown.contains(wrong),
        "{shown}"
    );
}

#[tokio::test]
async fn unknown_units_throttling_and_empty_lists() {
    let m = huawei_mock().await;
    m.always(
        BALANCES,
        ok(json!({"account_balances": [{"account_type": 1, "amount": 5, "currency": "CNY", "measure_id": 9}],
            "debt_amount": 0, "measure_id": 1, "currency": "CNY"}).to_string()),
    );
    let (p, a) = provider(&m, SK);
    let err = p.poll(&a).await.unwrap_err().to_string();
    assert!(err.contains("measure_id 9"), "{err}");

    m.on(BALANCES, |_, n| {
        if n == 0 {
            mock::reply(429, r#"{"error_code":"APIGW.0308","error_msg":"The throttling threshold has been reached","request_id":"r"}"#)
        } else {
            ok(r#"{"account_balances":[{"account_type":1,"amount":0,"currency":"CNY","measure_id":1}],"debt_amount":12.5,"measure_id":1,"currency":"CNY"}"#)
        }
    });
    m.always(RESOURCES, ok(r#"{"total_count":0,"data":[]}"#));
    m.always(ORDERS, ok(r#"{"total_count":0,"order_infos":[]}"#));
    m.always(
        CHANGES,
        ok(r#"{"total_count":0,"currency":"CNY","records":[]}"#),
    );
    let s = p.poll(&a).await.unwrap();
    m.assert_clean();
    assert_eq!(s.balance.available.to_string(), "¥0.00");
    assert_eq!(s.balance.owed.unwrap().to_string(), "¥12.50");
    assert!(s.resources.is_empty() && s.orders.is_empty() && s.recharges.is_empty());
}

/// A ledger longer than purser will page through gives no spend figure rather
/// than a partial one, which would understate the burn and overstate runway.
#[tokio::test]
async fn a_ledger_cut_short_gives_no_spend_figure() {
    let m = huawei_mock().await;
    let full_page: Vec<serde_json::Value> = (0..100)
        .map(|i| {
            json!({"account_change_id": format!("d{i}"), "trade_detail_type": "DEDEUCT",
                "trade_time": "2026-11-20T02:00:00Z", "trade_id": "o", "revenue_expense_type": "EXPENSE",
                "change_amount": "-1.00", "balance_after_change": "1.00"})
        })
        .collect();
    let page =
        json!({"total_count": 10_000_000, "currency": "CNY", "records": full_page}).to_string();
    m.on(CHANGES, move |req, _| {
        if req.param("trade_type").as_deref() == Some("DEDEUCT") {
            ok(page.clone())
        } else {
            ok(r#"{"total_count":0,"currency":"CNY","records":[]}"#)
        }
    });
    let a = account("hw-prod", "cn");
    let mut acc = access(&m, AK, SK);
    acc.domain_id = Some(DOMAIN.into());
    let mut p = Huawei::new(
        accounts(&a, acc),
        std::num::NonZeroU32::new(1_000_000),
        clock(),
    );
    quick(p.http_mut());
    let s = p.poll(&a).await.unwrap();
    assert!(s.spend.is_none(), "{:?}", s.spend);
    assert_eq!(
        m.count(CHANGES),
        1 + purser::adapters::cloud::MAX_PAGES as usize,
        "one page of recharges, then as many pages as purser reads"
    );
}

#[tokio::test]
async fn a_coupon_expiring_sooner_moves_an_orders_deadline() {
    let m = huawei_mock().await;
    // The order's own deadline, three days after it was placed.
    m.always(
        "GET /v2/orders/customer-orders/details/{order_id}",
        ok(json!({"order_info": {"order_id": "CS1911151234ABCDE", "status": 6,
            "create_time": "2026-11-20T08:00:00Z", "pending_payment_end_time": "2026-11-23T08:00:00Z"}})
        .to_string()),
    );
    let (p, a) = provider(&m, SK);
    let s = p.poll(&a).await.unwrap();
    m.assert_clean();
    assert_eq!(
        s.orders[0].pay_deadline.unwrap().to_rfc3339(),
        "2026-11-23T08:00:00+00:00"
    );
}
