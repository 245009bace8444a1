//! Runway charts for chat outputs: which alerts' messages carry one, and
//! each account's chart from what the store holds (the chart's data is
//! `domain::forecast::RunwayChart`). Each platform's adapter draws it, or not.

use std::sync::Arc;

use crate::domain::account::AccountSpec;
use crate::domain::alert::NoticeKind;
use crate::domain::forecast::{RunwayChart, runway_chart};
use crate::domain::rules::RuleName;
use crate::ports::{Clock, Store, StoreError, StoredNotice};

/// The account whose chart a new message of `notices` should carry: one
/// that fires about money running out (low balance or runway).
pub fn wanted(notices: &[StoredNotice]) -> Option<&str> {
    notices
        .iter()
        .find(|n| {
            n.kind == NoticeKind::Firing
                && matches!(n.rule, RuleName::LowBalance | RuleName::Runway)
        })
        .map(|n| n.account.as_str())
}

/// Reads runway charts for chat outputs.
pub struct Charts {
    pub store: Arc<dyn Store>,
    pub accounts: Arc<Vec<Arc<AccountSpec>>>,
    pub clock: Arc<dyn Clock>,
}

impl Charts {
    /// `account`'s chart now; none for an account not configured or never read.
    pub async fn runway(&self, account: &str) -> Result<Option<RunwayChart>, StoreError> {
        let Some(a) = self
            .accounts
            .iter()
            .find(|a| a.account.id.to_string() == account)
        else {
            return Ok(None);
        };
        let now = self.clock.now();
        let history = self
            .store
            .history(&a.account.id, now - a.rules.runway.window)
            .await?;
        Ok(runway_chart(
            a.account.id.as_str(),
            a.rules.runway.window,
            &history,
            now,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::alert_view::tests::notice;

    #[test]
    fn only_a_firing_money_alert_wants_a_chart() {
        let mut expiring = notice(NoticeKind::Firing);
        assert_eq!(wanted(std::slice::from_ref(&expiring)), None);
        let mut low = notice(NoticeKind::Firing);
        low.rule = RuleName::LowBalance;
        low.account = "beta".into();
        assert_eq!(wanted(&[expiring.clone(), low.clone()]), Some("beta"));
        low.kind = NoticeKind::Resolved;
        assert_eq!(wanted(&[expiring.clone(), low.clone()]), None);
        expiring.rule = RuleName::Runway;
        assert_eq!(wanted(&[low, expiring]), Some("acme"));
    }
}
