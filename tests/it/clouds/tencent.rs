use purser::adapters::tencent::Tencent;
use purser::domain::model::{RenewalMode, ResourceStatus};
use purser::ports::{Clock, Provider, ProviderError};
use serde_json::json;

use super::mock::{self, Mock, Req, by_header, expect, ok};
use super::*;

pub(super) const ID: &str = "AKIDmockmockmockmockmockmockmock0001";
pub(super) const KEY: &str = "tc3-mock-secret-key-0123456789abc";

/// The older official example: Uin as a string, a Balance at odds with RealBalance.
const BALANCE: &str = r#"{"Response":{"Uin":"90961","RealBalance":9647442,"CashAccountBalance":1299806668,
  "IncomeIntoAccountBalance":0,"PresentAccountBalance":209512,"FreezeAmount":1290368738,"OweAmount":0,
  "RequestId":"1323","IsAllowArrears":true,"IsCreditLimited":true,"Balance":-6188426,"CreditAmount":200,
  "CreditBalance":-6188226,"RealCreditBalance":-6188226}}"#;

fn renew_page(req: &Req) -> String {
    match req.json()["NextToken"].as_str() {
        None => json!({"Response": {"InstanceList": [
            {"ExpireTime": "2025-07-06 23:59:59", "InstanceId": "std_storage-20241106185002290002691-0",
             "InstanceName": "", "ProductCode": "p_cos", "ProductName": "COS 对象存储", "ProjectName": "默认项目",
             "RegionCode": "ap-others", "RenewFlag": "DISABLE_NOTIFY_AND_MANUAL_RENEW", "RenewPeriod": 1,
             "RenewPeriodUnit": "m", "Status": "NORMAL", "SubProductCode": "sp_cos_pkg_std_new"}],
            "NextToken": "page-2", "RequestId": "r1"}})
        .to_string(),
        Some("page-2") => json!({"Response": {"InstanceList": [
            {"ExpireTime": "2026-11-30 12:00:00", "InstanceId": "ins-r8hr2upy", "InstanceName": "web-1",
             "ProductCode": "p_cvm", "ProductName": "云服务器", "RegionCode": "ap-guangzhou",
             "RenewFlag": "NOTIFY_AND_AUTO_RENEW", "Status": "NORMAL"}],
            "NextToken": null, "RequestId": "r2"}})
        .to_string(),
        Some(other) => panic!("unexpected NextToken {other}"),
    }
}

/// A mock answering every call of a poll with the documented shapes.
pub(super) async fn tencent_mock(key: &'static str) -> Mock {
    let m = Mock::start(now(), by_header("x-tc-action"), mock::tc3(ID, key)).await;
    m.always("DescribeAccountBalance", ok(BALANCE));
    m.on("DescribeRenewInstances", |req, _| ok(renew_page(req)));
    m.on("DescribeInstances", |req, _| {
        if let Err(e) = expect(req.header("x-tc-region") == "ap-guangzhou", "X-TC-Region") {
            return e;
        }
        ok(json!({"Response": {"TotalCount": 1, "InstanceSet": [
            {"InstanceId": "ins-r8hr2upy", "InstanceName": "web-1", "InstanceChargeType": "PREPAID",
             "ExpiredTime": "2026-11-30T04:00:00+00:00", "RenewFlag": "NOTIFY_AND_AUTO_RENEW",
             "InstanceState": "STOPPED", "IsolatedSource": "EXPIRE"}], "RequestId": "r"}})
        .to_string())
    });
    m.on("DescribeDealsByCond", |req, _| {
        if let Err(e) = expect(req.json()["Status"] == 1, "Status 1 (unpaid)") {
            return e;
        }
        ok(json!({"Response": {"TotalCount": 1, "Deals": [
            {"GoodsCategoryId": 100019, "TimeSpan": 1, "Policy": 100, "Status": 1, "RealTotalCost": 17000,
             "BigDealId": "20220214710000851640801", "OrderId": "20220214710000851640811", "Action": "purchase",
             "Currency": "CNY", "TimeUnit": "m", "CreateTime": "2026-11-22 09:30:00", "ProductCode": "p_cvm",
             "ResourceId": ["ins-abscde"]}], "RequestId": "r"}})
        .to_string())
    });
    m.on("DescribeBillList", |req, _| {
        let body = req.json();
        match body["PayType"][0].as_str() {
            Some("recharge") => ok(json!({"Response": {"Total": 1, "RechargeAmount": 5000000, "TransactionList": [
                {"OperationTime": "2026-11-20 15:52:30.941", "ActionType": "recharge", "PayChannel": "银行转账",
                 "OperationInfo": "充值", "Amount": 5000000, "Balance": 9647442, "BillId": "b1",
                 "Cash": 9647442, "Incentive": 0, "Freezing": 0, "DeductMode": ""}], "RequestId": "r"}})
            .to_string()),
            // A float in fen: 700 yuan over the 7-day window.
            Some("deduct") => ok(r#"{"Response":{"Total":40,"DeductAmount":70000.0,"TransactionList":[],"RequestId":"r"}}"#),
            other => mock::reply(400, format!("unexpected PayType {other:?}")),
        }
    });
    m
}

fn provider(m: &Mock, key: &str) -> (Tencent, purser::domain::model::Account) {
    let a = account("tc-prod", "cn");
    let mut acc = access(m, ID, key);
    acc.regions = vec!["ap-guangzhou".into()];
    let mut t = Tencent::new(accounts(&a, acc), None, clock());
    quick(t.http_mut());
    (t, a)
}

#[tokio::test]
async fn a_poll_reads_balance_resources_orders_and_ledger() {
    let m = tencent_mock(KEY).await;
    let (t, a) = provider(&m, KEY);
    let s = t.poll(&a).await.unwrap();
    m.assert_clean();

    assert_eq!(s.balance.available.to_string(), "¥96,474.42");
    assert_eq!(s.balance.cash.unwrap().amount_string(), "12998066.68");
    assert_eq!(s.balance.frozen.unwrap().amount_string(), "12903687.38");
    assert_eq!(s.balance.credit.unwrap().amount_string(), "2.00");

    // Two pages of renewable instances, CVM's view merged in.
    assert_eq!(m.count("DescribeRenewInstances"), 2);
    assert_eq!(s.resources.len(), 2);
    let cos = &s.resources[0];
    assert_eq!(cos.renewal, RenewalMode::ExpireWithoutRenewal);
    // Beijing 23:59:59 is 15:59:59 UTC.
    assert_eq!(cos.expires_at.to_rfc3339(), "2025-07-06T15:59:59+00:00");
    let cvm = &s.resources[1];
    assert_eq!(cvm.id.as_str(), "ins-r8hr2upy");
    assert_eq!(cvm.renewal, RenewalMode::Auto);
    assert_eq!(cvm.status, ResourceStatus::Recovery, "isolated at expiry");

    assert_eq!(s.orders.len(), 1);
    assert_eq!(s.orders[0].amount.to_string(), "¥170.00");
    assert_eq!(
        s.orders[0].created_at.to_rfc3339(),
        "2026-11-22T01:30:00+00:00"
    );

    assert_eq!(s.recharges.len(), 1);
    assert_eq!(s.recharges[0].amount.to_string(), "¥50,000.00");
    assert_eq!(s.spend.unwrap().per_day.to_string(), "¥100.00");

    // Every request was signed with x-tc-action and dated by the injected clock.
    for r in m.seen() {
        assert_eq!(r.header("x-tc-timestamp"), now().timestamp().to_string());
        assert!(
            r.header("authorization")
                .contains("SignedHeaders=content-type;host;x-tc-action")
        );
    }
}

#[tokio::test]
async fn negative_balances_owed_amounts_and_credit_lines_in_float_fen() {
    let m = tencent_mock(KEY).await;
    m.always(
        "DescribeAccountBalance",
        ok(r#"{"Response":{"Balance":0,"CashAccountBalance":0.0,"CreditAmount":10000000000,"CreditBalance":9999987655,
           "FreezeAmount":0,"IncomeIntoAccountBalance":0,"OweAmount":12345.0,"PresentAccountBalance":0,
           "RealBalance":-12345.0,"RealCreditBalance":9999987655,"TempCredit":0,"Uin":600000561284,"RequestId":"r"}}"#),
    );
    let (t, a) = provider(&m, KEY);
    let s = t.poll(&a).await.unwrap();
    m.assert_clean();
    assert_eq!(s.balance.available.to_string(), "-¥123.45");
    assert_eq!(s.balance.owed.unwrap().to_string(), "¥123.45");
    assert_eq!(s.balance.credit.unwrap().to_string(), "¥100,000,000.00");
}

#[tokio::test]
async fn empty_lists_are_an_empty_account() {
    let m = tencent_mock(KEY).await;
    m.always(
        "DescribeRenewInstances",
        ok(r#"{"Response":{"InstanceList":[],"NextToken":null,"RequestId":"r"}}"#),
    );
    m.always(
        "DescribeInstances",
        ok(r#"{"Response":{"TotalCount":0,"InstanceSet":[],"RequestId":"r"}}"#),
    );
    m.always(
        "DescribeDealsByCond",
        ok(r#"{"Response":{"TotalCount":0,"Deals":[],"RequestId":"r"}}"#),
    );
    m.always(
        "DescribeBillList",
        ok(r#"{"Response":{"Total":0,"TransactionList":[],"RequestId":"r"}}"#),
    );
    let (t, a) = provider(&m, KEY);
    let s = t.poll(&a).await.unwrap();
    m.assert_clean();
    assert!(s.resources.is_empty() && s.orders.is_empty() && s.recharges.is_empty());
    assert!(s.spend.is_none());
}

#[tokio::test]
async fn throttling_is_retried_and_then_succeeds() {
    let m = tencent_mock(KEY).await;
    m.on("DescribeAccountBalance", |_, n| {
        if n == 0 {
            ok(r#"{"Response":{"Error":{"Code":"RequestLimitExceeded","Message":"Your current request times equals to `21` in a second"},"RequestId":"r"}}"#)
        } else {
            ok(BALANCE)
        }
    });
    let (t, a) = provider(&m, KEY);
    let s = t.poll(&a).await.unwrap();
    m.assert_clean();
    assert_eq!(m.count("DescribeAccountBalance"), 2);
    assert_eq!(s.balance.available.amount_string(), "96474.42");
}

#[tokio::test]
async fn a_wrong_key_is_refused_once_and_never_echoed() {
    let m = tencent_mock(KEY).await;
    let wrong = "tc3-WRONG-secret-key-0123456789ab";
    let (t, a) = provider(&m, wrong);
    let err = t.poll(&a).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unauthorized(_)), "{err:?}");
    assert!(
        err.to_string().contains("AuthFailure.SignatureFailure"),
        "{err}"
    );
    assert_eq!(m.hits(), 1, "auth failures are not retried");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(wrong) && !shown.contains(KEY), "{shown}");
}

#[tokio::test]
async fn a_skewed_clock_is_explained() {
    let m = tencent_mock(KEY).await;
    m.set_now(now() + chrono::Duration::minutes(7));
    let (t, a) = provider(&m, KEY);
    let err = t.poll(&a).await.unwrap_err().to_string();
    assert!(
        err.contains("AuthFailure.SignatureExpire") && err.contains("clock"),
        "{err}"
    );
    assert!(err.contains("5 minutes"), "{err}");
}

#[tokio::test]
async fn garbage_is_malformed_not_a_zero_balance() {
    let m = tencent_mock(KEY).await;
    m.always(
        "DescribeAccountBalance",
        ok(r#"{"Response":{"RealBalance":"lots","RequestId":"r"}}"#),
    );
    let (t, a) = provider(&m, KEY);
    let err = t.poll(&a).await.unwrap_err();
    assert!(matches!(err, ProviderError::Malformed(_)), "{err:?}");

    m.always("DescribeAccountBalance", ok("<html>gateway</html>"));
    let err = t.poll(&a).await.unwrap_err();
    assert!(matches!(err, ProviderError::Malformed(_)), "{err:?}");
    assert!(err.to_string().contains("not JSON"), "{err}");
}

#[tokio::test]
async fn a_hung_answer_times_out_after_capped_retries() {
    let m = tencent_mock(KEY).await;
    m.always("DescribeAccountBalance", mock::hang());
    let (t, a) = provider(&m, KEY);
    let err = t.poll(&a).await.unwrap_err();
    assert!(matches!(err, ProviderError::Timeout(_)), "{err:?}");
    assert_eq!(
        m.count("DescribeAccountBalance"),
        3,
        "three attempts in all"
    );
}

#[tokio::test]
async fn business_errors_are_surfaced_as_such() {
    let m = tencent_mock(KEY).await;
    m.always(
        "DescribeDealsByCond",
        ok(r#"{"Response":{"Error":{"Code":"UnauthorizedOperation.NotCertification","Message":"real-name verification needed"},"RequestId":"r"}}"#),
    );
    let (t, a) = provider(&m, KEY);
    let err = t.poll(&a).await.unwrap_err();
    // CAM and verification refusals are about the key's rights: an operator must act.
    assert!(matches!(err, ProviderError::Unauthorized(_)), "{err:?}");
    m.always(
        "DescribeDealsByCond",
        ok(r#"{"Response":{"Error":{"Code":"FailedOperation.SummaryDataNotReady","Message":"not ready"},"RequestId":"r"}}"#),
    );
    let err = t.poll(&a).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Rejected { code, .. } if code == "FailedOperation.SummaryDataNotReady"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_missing_permission_is_named() {
    let m = tencent_mock(KEY).await;
    m.always(
        "DescribeRenewInstances",
        ok(r#"{"Response":{"Error":{"Code":"UnauthorizedOperation.CamNoAuth","Message":"you are not authorized to perform operation (billing:DescribeRenewInstances)"},"RequestId":"r"}}"#),
    );
    let (t, a) = provider(&m, KEY);
    let err = t.poll(&a).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unauthorized(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("needs the permission billing:DescribeRenewInstances"),
        "{err}"
    );
    assert_eq!(m.count("DescribeRenewInstances"), 1, "never retried");
}

/// The daemon, not just the adapter: a key that loses a permission between two
/// polls alerts on the next poll, not after the 30-minute blindness grace.
#[tokio::test]
async fn a_refused_key_alerts_on_the_next_poll() {
    use crate::helpers::{Setup, World};
    let world = World::new(
        "[[accounts]]\nid = \"acme\"\nbalance = \"1\"\n",
        Setup::default(),
    )
    .await;
    let m = tencent_mock(KEY).await;
    m.set_now(world.clock.now());
    let a = account("acme", "cn");
    let mut t = Tencent::new(accounts(&a, access(&m, ID, KEY)), None, world.clock.clone());
    quick(t.http_mut());
    let app = world
        .start_with(HashMap::from([(
            "sim".to_owned(),
            Arc::new(t) as Arc<dyn Provider>,
        )]))
        .await;
    app.settle().await;
    assert!(world.hook.values("poll_failed", "kind").is_empty());

    m.always(
        "DescribeAccountBalance",
        ok(r#"{"Response":{"Error":{"Code":"AuthFailure.UnauthorizedOperation","Message":"CAM denied"},"RequestId":"r"}}"#),
    );
    world.clock.advance(chrono::Duration::minutes(1));
    m.set_now(world.clock.now());
    let alert = world
        .hook
        .wait_for(|v| v["rule"] == "poll_failed" && v["kind"] == "firing")
        .await;
    let summary = alert["summary"].as_str().unwrap();
    assert!(summary.contains("refuses purser's key"), "{summary}");
    assert!(
        summary.contains("billing:DescribeAccountBalance"),
        "{summary}"
    );
    assert!(!summary.contains(KEY), "{summary}");
    app.stop().await;
}
