//! Renewal prices from each cloud's own price inquiry, through `purser
//! check`: an auto-renewal the balance cannot cover alerts with the exact
//! quoted price; one it covers does not; a product with no inquiry falls
//! back to the ledger's last renewal charge.

use chrono::{DateTime, Duration, FixedOffset, Utc};
use serde_json::{Value, json};
use tokio::process::Command;

use super::mock::{self, Mock, by_header, by_route, expect, ok};
use super::{alibaba, huawei, tencent};

fn beijing(t: DateTime<Utc>) -> String {
    t.with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// ¥5,000.00 on the account; CVM ins-dear renews in 5 days for ¥5,200.50
/// (a yuan float), ins-cheap in 6 for ¥120.30; cdb-nopricing has no price
/// inquiry, and the ledger shows its last renewal at ¥6,000.00 (in fen).
async fn tencent(now: DateTime<Utc>) -> Mock {
    let m = Mock::start(
        now,
        by_header("x-tc-action"),
        mock::tc3(tencent::ID, tencent::KEY),
    )
    .await;
    m.always(
        "DescribeAccountBalance",
        ok(r#"{"Response":{"RealBalance":500000,"CashAccountBalance":500000,"FreezeAmount":0,"OweAmount":0,"CreditAmount":0,"RequestId":"r"}}"#),
    );
    let renew = move |id: &str, product: &str, days: i64| {
        json!({"ExpireTime": beijing(now + Duration::days(days)), "InstanceId": id, "InstanceName": "",
            "ProductCode": product, "SubProductCode": format!("sp_{product}"), "ProductName": product,
            "RegionCode": "ap-guangzhou", "RenewFlag": "NOTIFY_AND_AUTO_RENEW", "RenewPeriod": 1,
            "RenewPeriodUnit": "m", "Status": "NORMAL", "ProjectName": "默认项目"})
    };
    let all = [
        renew("ins-dear", "p_cvm", 5),
        renew("ins-cheap", "p_cvm", 6),
        renew("cdb-nopricing", "p_cdb", 7),
    ];
    m.on("DescribeRenewInstances", move |req, _| {
        let wanted = req.json()["InstanceIdList"].clone();
        let list: Vec<Value> = all
            .iter()
            .filter(|i| {
                wanted
                    .as_array()
                    .is_none_or(|w| w.contains(&i["InstanceId"]))
            })
            .cloned()
            .collect();
        ok(
            json!({"Response": {"InstanceList": list, "NextToken": null, "RequestId": "r"}})
                .to_string(),
        )
    });
    // One instance only CVM lists (renewal management does not): priced
    // in the region where CVM has it.
    let cvm_only = json!({"InstanceId": "ins-cvmonly", "InstanceName": "batch-1", "InstanceChargeType": "PREPAID",
        "ExpiredTime": (now + Duration::days(8)).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "RenewFlag": "NOTIFY_AND_AUTO_RENEW", "InstanceState": "RUNNING", "IsolatedSource": "NOTISOLATED",
        "Placement": {"Zone": "ap-guangzhou-3"}});
    m.on("DescribeInstances", move |req, _| {
        if let Err(e) = expect(req.header("x-tc-region") == "ap-guangzhou", "X-TC-Region") {
            return e;
        }
        let wanted = req.json()["InstanceIds"].clone();
        let set: Vec<Value> = [cvm_only.clone()]
            .into_iter()
            .filter(|i| {
                wanted
                    .as_array()
                    .is_none_or(|w| w.contains(&i["InstanceId"]))
            })
            .collect();
        ok(
            json!({"Response": {"TotalCount": set.len(), "InstanceSet": set, "RequestId": "r"}})
                .to_string(),
        )
    });
    m.on("InquiryPriceRenewInstances", |req, _| {
        let body = req.json();
        if let Err(e) = expect(
            body["InstanceChargePrepaid"]["Period"] == 1
                && req.header("x-tc-region") == "ap-guangzhou",
            "a one-month period in the instance's region",
        ) {
            return e;
        }
        let price = match body["InstanceIds"][0].as_str() {
            Some("ins-dear") => "5200.5",
            Some("ins-cheap") => "120.3",
            Some("ins-cvmonly") => "9000",
            other => return mock::reply(400, format!("no instance {other:?}")),
        };
        ok(format!(
            r#"{{"Response":{{"Price":{{"InstancePrice":{{"OriginalPrice":9999,"DiscountPrice":{price}}}}},"RequestId":"r"}}}}"#
        ))
    });
    m.on("DescribeDealsByCond", move |req, _| {
        let body = req.json();
        if body["Status"] == 1 {
            return ok(r#"{"Response":{"TotalCount":0,"Deals":[],"RequestId":"r"}}"#);
        }
        if let Err(e) = expect(body["ResourceId"] == "cdb-nopricing", "ResourceId") {
            return e;
        }
        // The newest quarter holds a purchase and a renewal.
        let end = chrono::NaiveDateTime::parse_from_str(
            body["EndTime"].as_str().unwrap_or_default(),
            "%Y-%m-%d %H:%M:%S",
        );
        let newest = end.is_ok_and(|e| e > (now - Duration::days(1)).naive_utc());
        let deals = if newest {
            json!([
                {"OrderId": "d-buy", "Status": 4, "RealTotalCost": 999900, "Action": "purchase",
                 "CreateTime": beijing(now - Duration::days(40)), "ProductCode": "p_cdb", "ResourceId": ["cdb-nopricing"]},
                {"OrderId": "d-renew", "Status": 4, "RealTotalCost": 600000, "Action": "renew",
                 "CreateTime": beijing(now - Duration::days(23)), "ProductCode": "p_cdb", "ResourceId": ["cdb-nopricing"]}
            ])
        } else {
            json!([])
        };
        ok(json!({"Response": {"TotalCount": 2, "Deals": deals, "RequestId": "r"}}).to_string())
    });
    m.always(
        "DescribeBillList",
        ok(r#"{"Response":{"Total":0,"DeductAmount":0,"TransactionList":[],"RequestId":"r"}}"#),
    );
    m
}

/// ¥5,000.00; ECS i-dear renews in 5 days for ¥5,100.25
/// (DescribeRenewalPrice), RDS rm-cheap in 6 for ¥300.50
/// (GetSubscriptionPrice).
async fn alibaba(now: DateTime<Utc>) -> Mock {
    let m = Mock::start(
        now,
        by_header("x-acs-action"),
        mock::acs3(alibaba::ID, alibaba::SECRET),
    )
    .await;
    let body = |data: Value| {
        json!({"Code": "Success", "Message": "Successful!", "RequestId": "r", "Success": true, "Data": data})
            .to_string()
    };
    m.always(
        "QueryAccountBalance",
        ok(body(
            json!({"AvailableAmount": "5,000.00", "AvailableCashAmount": "5,000.00",
            "CreditAmount": "0.00", "Currency": "CNY"}),
        )),
    );
    let instance = move |id: &str, product: &str, days: i64| {
        json!({"InstanceID": id, "ProductCode": product, "ProductType": product, "Region": "cn-hangzhou",
            "SubscriptionType": "Subscription", "EndTime": utc(now + Duration::days(days)),
            "RenewStatus": "AutoRenewal", "RenewalDuration": 1, "RenewalDurationUnit": "M",
            "Status": "Normal", "SubStatus": "Normal"})
    };
    let all = [instance("i-dear", "ecs", 5), instance("rm-cheap", "rds", 6)];
    m.on("QueryAvailableInstances", move |req, _| {
        let wanted = req.param("InstanceIDs");
        let list: Vec<Value> = all
            .iter()
            .filter(|i| wanted.as_deref().is_none_or(|w| i["InstanceID"] == w))
            .cloned()
            .collect();
        let n = list.len();
        ok(body(
            json!({"PageNum": 1, "PageSize": 300, "TotalCount": n, "InstanceList": list}),
        ))
    });
    m.on("DescribeRenewalPrice", |req, _| {
        if let Err(e) = expect(
            req.param("ResourceId").as_deref() == Some("i-dear")
                && req.param("Period").as_deref() == Some("1")
                && req.param("PriceUnit").as_deref() == Some("Month"),
            "ResourceId, Period and PriceUnit",
        ) {
            return e;
        }
        ok(r#"{"RequestId":"r","PriceInfo":{"Price":{"OriginalPrice":5600.0,"DiscountPrice":499.75,"TradePrice":5100.25,"Currency":"CNY"},"Rules":{"Rule":[]}}}"#)
    });
    m.on("GetSubscriptionPrice", move |req, _| {
        if let Err(e) = expect(
            req.param("OrderType").as_deref() == Some("Renewal")
                && req.param("InstanceId").as_deref() == Some("rm-cheap")
                && req.param("ProductCode").as_deref() == Some("rds")
                && req.param("ServicePeriodQuantity").as_deref() == Some("1")
                && req.param("ServicePeriodUnit").as_deref() == Some("Month"),
            "a renewal order's price for rm-cheap",
        ) {
            return e;
        }
        ok(r#"{"Code":"Success","Message":"Successful!","RequestId":"r","Success":true,"Data":{"Currency":"CNY","OriginalPrice":350.5,"DiscountPrice":50.0,"TradePrice":300.5,"Quantity":1,"ModuleDetails":{"ModuleDetail":[]},"PromotionDetails":{"PromotionDetail":[]}}}"#)
    });
    m.always(
        "QueryOrders",
        ok(body(json!({"HostName": "h", "PageNum": 1, "PageSize": 100, "TotalCount": 0, "OrderList": {"Order": []}}))),
    );
    m.always(
        "QueryAccountTransactions",
        ok(body(json!({"PageNum": 1, "PageSize": 100, "TotalCount": 0,
            "AccountTransactionsList": {"AccountTransactionsList": []}}))),
    );
    m
}

/// ¥5,000.00 in fen (measure_id 3); r-dear renews in 5 days for
/// ¥5,432.109876 (a decimal string), r-cheap in 6 for ¥99.99.
async fn huawei(now: DateTime<Utc>) -> Mock {
    let m = Mock::start(now, by_route(), mock::sdk_hmac(huawei::AK, huawei::SK)).await;
    m.always(
        "GET /v2/accounts/customer-accounts/balances",
        ok(json!({"account_balances": [
            {"account_id": "AT1", "account_type": 1, "amount": 500000, "currency": "CNY",
             "designated_amount": 0, "credit_amount": null, "measure_id": 3}],
            "debt_amount": 0, "measure_id": 1, "currency": "CNY"})
        .to_string()),
    );
    let resource = move |id: &str, days: i64| {
        json!({"id": format!("8a7f{id}"), "resource_id": id, "resource_name": id, "region_code": "cn-north-4",
            "service_type_code": "hws.service.type.ec2", "resource_type_code": "hws.resource.type.vm",
            "is_main_resource": 1, "status": 2, "effective_time": "2025-01-01T00:00:00Z",
            "expire_time": utc(now + Duration::days(days)), "expire_policy": 3})
    };
    let list = vec![resource("r-dear", 5), resource("r-cheap", 6)];
    m.on(
        "POST /v2/orders/suscriptions/resources/query",
        move |req, _| {
            let data = if req.json()["offset"].as_u64() == Some(0) {
                list.clone()
            } else {
                vec![]
            };
            ok(json!({"total_count": 2, "data": data}).to_string())
        },
    );
    m.on("POST /v2/bills/ratings/period-resources/renew-rate", |req, _| {
        let body = req.json();
        if let Err(e) = expect(
            body["period_type"] == 2 && body["period_num"] == 1,
            "one month",
        ) {
            return e;
        }
        let id = body["resource_ids"][0].as_str().unwrap_or_default().to_owned();
        let amount = match id.as_str() {
            "r-dear" => "5432.109876",
            "r-cheap" => "99.99",
            other => return mock::reply(400, format!("no resource {other}")),
        };
        ok(json!({"currency": "CNY", "renew_inquiry_results": [{"resource_id": id, "amount": amount}],
            "official_website_rating_result": {"official_website_amount": "6000.00"},
            "optional_discount_rating_results": [], "fail_resource_infos": []})
        .to_string())
    });
    m.always(
        "GET /v2/orders/customer-orders",
        ok(json!({"total_count": 0, "order_infos": []}).to_string()),
    );
    m.always(
        "GET /v2/accounts/customer-accounts/account-change-records",
        ok(json!({"total_count": 0, "currency": "CNY", "records": []}).to_string()),
    );
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_alerts_on_an_autorenewal_the_balance_cannot_cover_at_the_quoted_price() {
    let now = Utc::now();
    let (tc, ali, hw) = (tencent(now).await, alibaba(now).await, huawei(now).await);
    let dir = tempfile::tempdir().unwrap();
    for (file, value) in [
        ("tc-id", tencent::ID),
        ("tc-key", tencent::KEY),
        ("ali-id", alibaba::ID),
        ("ali-secret", alibaba::SECRET),
        ("hw-ak", huawei::AK),
        ("hw-sk", huawei::SK),
    ] {
        std::fs::write(dir.path().join(file), value).unwrap();
    }
    let config = format!(
        r#"
[store]
path = "prices.db"

[[providers]]
name = "tencent"
kind = "tencent"
[[providers]]
name = "alibaba"
kind = "alibaba"
[[providers]]
name = "huawei"
kind = "huawei"

[[accounts]]
id = "tc-prod"
provider = "tencent"
endpoint = "{tc}"
regions = ["ap-guangzhou"]
credentials = {{ key_id = "file:tc-id", secret = "file:tc-key" }}

[[accounts]]
id = "ali-prod"
provider = "alibaba"
endpoint = "{ali}"
credentials = {{ key_id = "file:ali-id", secret = "file:ali-secret" }}

[[accounts]]
id = "hw-prod"
provider = "huawei"
endpoint = "{hw}"
credentials = {{ key_id = "file:hw-ak", secret = "file:hw-sk", domain_id = "{domain}" }}

[rules.low_balance]
enabled = false
[rules.runway]
enabled = false

[[outputs]]
name = "console"
kind = "console"
"#,
        tc = tc.url,
        ali = ali.url,
        hw = hw.url,
        domain = huawei::DOMAIN,
    );
    let path = dir.path().join("prices.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_purser"))
        .args(["check", "--format", "json", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    for m in [&tc, &ali, &hw] {
        m.assert_clean();
    }
    let at_risk: Vec<(String, String)> = report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == "autorenew_at_risk")
        .map(|a| {
            (
                a["resource"].as_str().unwrap().to_owned(),
                a["summary"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let summary = |id: &str| {
        at_risk
            .iter()
            .find(|(r, _)| r == id)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("no autorenew_at_risk for {id}: {report:#}"))
    };
    let mut ids: Vec<&str> = at_risk.iter().map(|(r, _)| r.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "cdb-nopricing",
            "i-dear",
            "ins-cvmonly",
            "ins-dear",
            "r-dear"
        ],
        "only what the balance cannot cover: {report:#}"
    );
    assert!(summary("ins-dear").contains("for ¥5,200.50, but the available balance is ¥5,000.00"));
    assert!(summary("i-dear").contains("for ¥5,100.25"));
    assert!(summary("r-dear").contains("for ¥5,432.11"));
    let cdb = summary("cdb-nopricing");
    assert!(
        cdb.contains("no price inquiry for p_cdb") && cdb.contains("last renewal cost ¥6,000.00"),
        "{cdb}"
    );
    // The exact quotes, as the clouds gave them.
    let price = |id: &str| {
        report["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no resource {id}"))["renewal_price"]
            .clone()
    };
    assert_eq!(price("ins-dear"), "5200.50");
    assert_eq!(price("ins-cheap"), "120.30");
    assert_eq!(price("i-dear"), "5100.25");
    assert_eq!(price("rm-cheap"), "300.50");
    assert_eq!(price("r-dear"), "5432.109876");
    assert_eq!(price("r-cheap"), "99.99");
    assert_eq!(price("cdb-nopricing"), Value::Null);
    assert!(summary("ins-cvmonly").contains("for ¥9,000.00"));
    assert_eq!(tc.count("InquiryPriceRenewInstances"), 3);
    assert_eq!(
        hw.count("POST /v2/bills/ratings/period-resources/renew-rate"),
        2
    );
}

/// The daemon prices a due auto-renewal once, and keeps the price while
/// the expiry stands: the next poll asks the cloud again for nothing.
#[tokio::test]
async fn the_daemon_prices_once_and_keeps_the_price_while_the_expiry_stands() {
    use crate::helpers::{TestApp, epoch};
    use purser::ports::Clock;
    use std::sync::Arc;

    let now = epoch();
    let tc = tencent(now).await;
    let clock = Arc::new(purser::engine::clock::ManualClock::new(now));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tc-id"), tencent::ID).unwrap();
    std::fs::write(dir.path().join("tc-key"), tencent::KEY).unwrap();
    let path = dir.path().join("purser.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[store]
path = "{db}"

[scheduler]
schedule = "0 * * * * *"
jitter = "0s"

[[providers]]
name = "tencent"
kind = "tencent"

[[accounts]]
id = "tc-prod"
provider = "tencent"
endpoint = "{url}"
regions = ["ap-guangzhou"]
credentials = {{ key_id = "file:{id}", secret = "file:{key}" }}

[[outputs]]
name = "console"
kind = "console"
"#,
            db = dir.path().join("purser.db").display(),
            url = tc.url,
            id = dir.path().join("tc-id").display(),
            key = dir.path().join("tc-key").display(),
        ),
    )
    .unwrap();
    let app = TestApp::start(&path, clock.clone(), Default::default()).await;
    app.settle().await;
    assert_eq!(tc.count("InquiryPriceRenewInstances"), 3);
    let firing: Vec<String> = app
        .store
        .all_open_alerts()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.key.rule.as_str() == "autorenew_at_risk")
        .map(|a| a.key.resource.clone())
        .collect();
    assert_eq!(firing, ["ins-dear", "cdb-nopricing", "ins-cvmonly"]);
    let polls = tc.count("DescribeAccountBalance");
    for _ in 0..2 {
        app.advance(chrono::Duration::minutes(1)).await;
        tc.set_now(clock.now());
    }
    assert!(
        tc.count("DescribeAccountBalance") >= polls + 2,
        "polled again"
    );
    assert_eq!(
        tc.count("InquiryPriceRenewInstances"),
        3,
        "a kept price is not asked for again"
    );
    tc.assert_clean();
    app.stop().await;
}
