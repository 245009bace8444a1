//! Each cloud adapter against a loopback mock of its API that verifies every
//! signature independently and answers in the API's real shapes.

mod actions;
mod alibaba;
mod azure_china;
mod check;
mod huawei;
pub mod mock;
mod prices;
mod tencent;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use purser::adapters::cloud::CloudAccess;
use purser::adapters::cloud::{Http, RetryPolicy};
use purser::domain::model::{Account, AccountId};
use purser::engine::clock::ManualClock;
use purser::secret::Secret;

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 2, 0, 0).unwrap()
}

pub fn account(id: &str, site: &str) -> Account {
    Account {
        id: AccountId::parse(id).unwrap(),
        provider: "cloud".into(),
        site: site.into(),
        labels: Default::default(),
    }
}

pub fn access(mock: &mock::Mock, key_id: &str, secret: &str) -> CloudAccess {
    CloudAccess {
        key_id: Secret::from_value(key_id),
        secret: Secret::from_value(secret),
        endpoint: Some(mock.url.parse().unwrap()),
        regions: vec![],
        domain_id: None,
        tenant: None,
        subscription: None,
        billing_account: None,
    }
}

pub fn accounts(a: &Account, access: CloudAccess) -> HashMap<AccountId, CloudAccess> {
    HashMap::from([(a.id.clone(), access)])
}

pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(now()))
}

/// Retries without waiting (the backoff itself is unit-tested), and a short
/// per-request timeout for the tests that make the mock hang.
pub fn quick(http: &mut Http) {
    http.retry = RetryPolicy {
        attempts: 3,
        base: Duration::ZERO,
        cap: Duration::ZERO,
    };
    http.request_timeout = Duration::from_millis(300);
}
