//! An account as purser watches it: who it is, what it bills in, when it is
//! polled, the rules its alerts follow and what its requests must pass. Its
//! credentials are not here: config hands them to the cloud's adapter alone.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::model::Account;
use super::money::Currency;
use super::policy::Policy;
use super::request::PaymentMethod;
use super::rules::RuleSet;

#[derive(Debug, Clone)]
pub struct AccountSpec {
    pub account: Account,
    pub currency: Currency,
    /// Shared by the accounts on the same schedule: a parsed schedule keeps
    /// every second, minute, hour, day and year it fires on.
    pub schedule: Arc<cron::Schedule>,
    /// Shared by the accounts whose rules are equal, as most are: the
    /// file's own or one override's.
    pub rules: Arc<RuleSet>,
    /// Per payment method, where the money goes (the bank account for a
    /// wire, the portal page for Alipay): shown with a top-up's task.
    pub payee: BTreeMap<PaymentMethod, String>,
    /// What requests on this account must pass before anyone is asked;
    /// shared, like the rules, by the accounts where it is equal.
    pub policy: Arc<Policy>,
}
