//! Each account's request policy: its cloud's documented rules as defaults
//! (seed documents and the providers' references), for the team to tighten.

use std::collections::{BTreeMap, HashMap};

use chrono::Duration;
use rust_decimal::Decimal;

use super::{Cloud, Config, ProviderKind};
use crate::domain::model::AccountId;
use crate::domain::money::Currency;
use crate::domain::policy::{Amounts, Caps, MethodRule, Policy};
use crate::domain::request::PaymentMethod;

fn method(method: PaymentMethod, minimum: i64, settles_within: Duration) -> MethodRule {
    MethodRule {
        method,
        minimum: Decimal::from(minimum),
        multiple: None,
        settles_within,
    }
}

/// Online payments show within the half hour the clouds ask people to
/// wait; a wire transfer is confirmed days later.
fn online(m: PaymentMethod, minimum: i64) -> MethodRule {
    method(m, minimum, Duration::minutes(30))
}

fn wire(minimum: i64) -> MethodRule {
    method(PaymentMethod::Wire, minimum, Duration::days(5))
}

/// A cloud's documented rules; `None` is the simulated provider, which
/// follows the strictest portal's (the 21Vianet one) so the demo shows them.
pub fn defaults(cloud: Option<Cloud>, currency: Currency) -> Policy {
    use PaymentMethod::*;
    // No documented minimum: the smallest amount there is.
    let any = 0;
    let (topup, allocate, renew_months, combined_payment, coupons, discounts) = match cloud {
        // Seed 000: Alipay and UnionPay from ¥1,000, wire from ¥5,000; no
        // resources or orders by API.
        None | Some(Cloud::AzureChina) => (
            vec![online(Alipay, 1_000), online(Unionpay, 1_000), wire(5_000)],
            None,
            (1..=12).collect(),
            false,
            0,
            0,
        ),
        // Seed 001: Alipay and UnionPay (no credit cards through Alipay),
        // bank transfer; one coupon per order. BSS RenewInstance takes 1–9,
        // 12, 24 or 36 months. Orders have no payment API.
        Some(Cloud::Alibaba) => (
            vec![online(Alipay, any), online(Unionpay, any), wire(any)],
            None,
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 24, 36],
            false,
            1,
            0,
        ),
        // Online banking, WeChat Pay, Alipay, bank transfer; managed
        // services take ¥1,000 and multiples of ¥1,000 per contract (seed
        // 003). CVM renews 1–12, 24, 36, 48 or 60 months; PayDeals pays
        // orders together with one voucher.
        Some(Cloud::Tencent) => (
            vec![
                online(OnlineBanking, any),
                online(Wechat, any),
                online(Alipay, any),
                wire(any),
            ],
            Some(Amounts {
                minimum: Decimal::from(1_000),
                multiple: Some(Decimal::from(1_000)),
            }),
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 24, 36, 48, 60],
            true,
            1,
            0,
        ),
        // Seed 002 and PayOrders: up to 3 coupons, one discount (the kinds
        // exclude each other), combined payment; renewals of 1–11 months
        // or 1–3 years.
        Some(Cloud::Huawei) => (
            vec![
                online(Alipay, any),
                online(OnlineBanking, any),
                online(Wechat, any),
                online(Unionpay, any),
                wire(any),
            ],
            None,
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 24, 36],
            true,
            3,
            1,
        ),
    };
    Policy {
        currency,
        topup,
        allocate,
        renew_months,
        combined_payment,
        coupons_per_order: coupons,
        discounts_per_order: discounts,
        require_funds: true,
        caps: Caps::default(),
        roles: BTreeMap::new(),
    }
}

impl Config {
    /// Every account's policy.
    pub fn policies(&self) -> HashMap<AccountId, Policy> {
        self.accounts
            .iter()
            .map(|a| {
                let cloud = self
                    .providers
                    .iter()
                    .find(|p| p.name == a.account.provider)
                    .and_then(|p| match p.kind {
                        ProviderKind::Cloud { cloud, .. } => Some(cloud),
                        ProviderKind::Simulated { .. } => None,
                    });
                (a.account.id.clone(), defaults(cloud, a.currency))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_documents_rules_are_the_defaults() {
        let azure = defaults(Some(Cloud::AzureChina), Currency::Cny);
        let min = |p: &Policy, m| p.method(m).map(|r| r.minimum);
        assert_eq!(
            min(&azure, PaymentMethod::Alipay),
            Some(Decimal::from(1_000))
        );
        assert_eq!(min(&azure, PaymentMethod::Wire), Some(Decimal::from(5_000)));
        assert!(azure.method(PaymentMethod::Wechat).is_none());
        let ali = defaults(Some(Cloud::Alibaba), Currency::Cny);
        assert!(ali.method(PaymentMethod::CreditCard).is_none());
        assert_eq!(ali.coupons_per_order, 1);
        let tencent = defaults(Some(Cloud::Tencent), Currency::Cny);
        assert_eq!(
            tencent.allocate.as_ref().and_then(|a| a.multiple),
            Some(Decimal::from(1_000))
        );
        let huawei = defaults(Some(Cloud::Huawei), Currency::Cny);
        assert_eq!(huawei.discounts_per_order, 1);
        assert!(huawei.renew_months.contains(&36) && !huawei.renew_months.contains(&13));
    }
}
