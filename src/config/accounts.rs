//! `[[providers]]` and `[[accounts]]`: which clouds are read, and each
//! account as the engine watches it (a domain `AccountSpec`) with its
//! credentials put on its provider, for that provider's adapter alone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::rules::{build_rules, merge_rules};
use super::{Issues, RawConfig, S, dedup_from, default_cron, parse_cron, policy};
use crate::adapters::cloud::CloudAccess;
use crate::domain::account::AccountSpec;
use crate::domain::model::{Account, AccountId, Labels};
use crate::domain::money::Currency;
use crate::domain::policy::Policy;
use crate::domain::request::PaymentMethod;
use crate::domain::rules::RuleSet;
use crate::secret::Secret;

/// Each `[[providers]]` entry, checked; a name given twice is reported.
pub(super) fn build_providers(
    issues: &mut Issues<'_>,
    raw: &[RawProvider],
    base: &Path,
) -> Vec<ProviderConfig> {
    let mut names = HashSet::new();
    let mut providers = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let name = p.name.get_ref().clone();
        if !names.insert(name.clone()) {
            issues.at(
                &p.name,
                format!("providers[{i}].name"),
                format!("provider {name:?} is defined twice"),
            );
        }
        providers.extend(provider(issues, i, p, base));
    }
    providers
}

fn provider(
    issues: &mut Issues<'_>,
    i: usize,
    p: &RawProvider,
    base: &Path,
) -> Option<ProviderConfig> {
    let name = p.name.get_ref().clone();
    let concurrency = match &p.concurrency {
        None => 4,
        Some(c) => match usize::try_from(*c.get_ref()) {
            Ok(n) if n > 0 => n,
            _ => {
                issues.at(
                    c,
                    format!("providers[{i}].concurrency"),
                    "must be 1 or more",
                );
                1
            }
        },
    };
    let kind = match p.kind.get_ref().as_str() {
        "simulated" => match &p.scenario {
            Some(s) => {
                let scenario = base.join(s.get_ref());
                if issues.files && !scenario.is_file() {
                    issues.at(
                        s,
                        format!("providers[{i}].scenario"),
                        format!("there is no scenario file {}", scenario.display()),
                    );
                }
                ProviderKind::Simulated { scenario }
            }
            None => {
                issues.at(
                    &p.kind,
                    format!("providers[{i}].scenario"),
                    "a simulated provider needs a scenario file",
                );
                return None;
            }
        },
        other => match Cloud::ALL.iter().find(|(n, _)| *n == other) {
            Some((_, cloud)) => ProviderKind::Cloud {
                cloud: *cloud,
                requests_per_second: p.requests_per_second.as_ref().and_then(|r| {
                    let n = u32::try_from(*r.get_ref()).ok().and_then(NonZeroU32::new);
                    if n.is_none() {
                        issues.at(
                            r,
                            format!("providers[{i}].requests_per_second"),
                            "must be 1 or more",
                        );
                    }
                    n
                }),
            },
            None => {
                issues.at(
                    &p.kind,
                    format!("providers[{i}].kind"),
                    format!(
                        "unknown provider kind {other:?}; known: simulated, tencent, alibaba, huawei, azure_china"
                    ),
                );
                return None;
            }
        },
    };
    if let (ProviderKind::Simulated { .. }, Some(r)) = (&kind, &p.requests_per_second) {
        issues.at(
            r,
            format!("providers[{i}].requests_per_second"),
            "applies to cloud providers only",
        );
    }
    if let (ProviderKind::Cloud { .. }, Some(sc)) = (&kind, &p.scenario) {
        issues.at(
            sc,
            format!("providers[{i}].scenario"),
            "only a simulated provider reads a scenario file",
        );
    }
    Some(ProviderConfig {
        name,
        concurrency,
        kind,
        credentials: HashMap::new(),
    })
}

/// Each `[[accounts]]` entry with the rules and policy that apply to it;
/// its credentials go onto its provider.
pub(super) fn build_accounts(
    issues: &mut Issues<'_>,
    raw: &RawConfig,
    default_schedule: &Arc<cron::Schedule>,
    providers: &mut [ProviderConfig],
    base: &Path,
) -> Vec<AccountSpec> {
    let file = File {
        raw,
        default_schedule,
        providers,
        base,
    };
    let mut ids = HashSet::new();
    let mut shared = Shared::default();
    let read: Vec<_> = raw
        .accounts
        .iter()
        .enumerate()
        .filter_map(|(i, a)| account(issues, &file, i, a, &mut ids, &mut shared))
        .collect();
    let mut accounts = Vec::with_capacity(read.len());
    for (spec, access) in read {
        if let Some(access) = access
            && let Some(p) = providers
                .iter_mut()
                .find(|p| p.name == spec.account.provider)
        {
            p.credentials.insert(spec.account.id.clone(), access);
        }
        accounts.push(spec);
    }
    for (i, o) in raw.overrides.iter().enumerate() {
        for a in &o.accounts {
            if !ids.iter().any(|id| id.as_str() == a.get_ref()) {
                issues.at(
                    a,
                    format!("overrides[{i}].accounts"),
                    format!("no account {:?} is defined", a.get_ref()),
                );
            }
        }
    }
    accounts
}

/// The rules and policies already built, so that accounts with equal ones
/// share one: at 10,000 accounts, each its own copy held 15 MB.
#[derive(Default)]
struct Shared {
    rules: Vec<Arc<RuleSet>>,
    policies: Vec<Arc<Policy>>,
}

impl Shared {
    /// Past this many distinct values a new one is not kept for sharing, so
    /// that a file of many different overrides is not compared pairwise.
    const KEPT: usize = 64;

    fn share<T: PartialEq>(seen: &mut Vec<Arc<T>>, value: T) -> Arc<T> {
        if let Some(same) = seen.iter().find(|s| ***s == value) {
            return Arc::clone(same);
        }
        let value = Arc::new(value);
        if seen.len() < Self::KEPT {
            seen.push(Arc::clone(&value));
        }
        value
    }
}

/// What an account is read against: the rest of the file.
struct File<'a> {
    raw: &'a RawConfig,
    default_schedule: &'a Arc<cron::Schedule>,
    providers: &'a [ProviderConfig],
    base: &'a Path,
}

fn account(
    issues: &mut Issues<'_>,
    file: &File<'_>,
    i: usize,
    a: &RawAccount,
    ids: &mut HashSet<AccountId>,
    shared: &mut Shared,
) -> Option<(AccountSpec, Option<CloudAccess>)> {
    let File {
        raw,
        default_schedule,
        providers,
        base,
    } = *file;
    let id = match AccountId::parse(a.id.get_ref()) {
        Ok(id) => id,
        Err(e) => {
            issues.at(&a.id, format!("accounts[{i}].id"), e.to_string());
            return None;
        }
    };
    if !ids.insert(id.clone()) {
        issues.at(
            &a.id,
            format!("accounts[{i}].id"),
            format!("account {id} is defined twice"),
        );
    }
    if !raw
        .providers
        .iter()
        .any(|p| p.name.get_ref() == a.provider.get_ref())
    {
        issues.at(
            &a.provider,
            format!("accounts[{i}].provider"),
            format!(
                "no provider named {:?} in [[providers]]",
                a.provider.get_ref()
            ),
        );
    }
    let cloud = match providers.iter().find(|p| &p.name == a.provider.get_ref()) {
        Some(ProviderConfig {
            kind: ProviderKind::Cloud { cloud, .. },
            ..
        }) => Some(*cloud),
        _ => None,
    };
    let site = a
        .site
        .clone()
        .unwrap_or_else(|| cloud.map_or("cn", |c| c.sites()[0]).to_owned());
    if let Some(c) = cloud
        && !c.sites().contains(&site.as_str())
    {
        issues.nowhere(
            format!("accounts[{i}].site"),
            format!(
                "site {site:?} is not one of this cloud's: {}",
                c.sites().join(", ")
            ),
        );
    }
    let access = access(issues, a, i, cloud, base);
    let currency = match &a.currency {
        None => cloud.map_or(Currency::Cny, |c| c.site_currency(&site)),
        Some(c) => Currency::from_code(c.get_ref()).unwrap_or_else(|| {
            issues.at(
                c,
                format!("accounts[{i}].currency"),
                format!("unknown currency {:?}; known: CNY, USD", c.get_ref()),
            );
            Currency::Cny
        }),
    };
    let schedule = match &a.schedule {
        Some(s) => Arc::new(parse_cron(s.get_ref()).unwrap_or_else(|e| {
            issues.at(s, format!("accounts[{i}].schedule"), e);
            default_cron()
        })),
        None => Arc::clone(default_schedule),
    };
    let account = Account {
        id: id.clone(),
        provider: a.provider.get_ref().clone(),
        site,
        labels: a.labels.clone(),
    };
    let (rules, policy) = rules_and_policy(issues, raw, &account, cloud, currency);
    let payee = payee(issues, i, a);
    Some((
        AccountSpec {
            account,
            currency,
            schedule,
            rules: Shared::share(&mut shared.rules, rules),
            payee,
            policy: Shared::share(&mut shared.policies, policy),
        },
        access,
    ))
}

/// The `[rules]` and `[policy]` tables with every override that matches the
/// account (by id or labels) merged over them, in file order.
fn rules_and_policy(
    issues: &mut Issues<'_>,
    raw: &RawConfig,
    account: &Account,
    cloud: Option<Cloud>,
    currency: Currency,
) -> (RuleSet, Policy) {
    let id = &account.id;
    let mut merged = raw.rules.clone();
    let mut merged_policy = raw.policy.clone();
    for o in &raw.overrides {
        let by_account =
            o.accounts.is_empty() || o.accounts.iter().any(|x| x.get_ref() == id.as_str());
        let by_labels = o
            .labels
            .iter()
            .all(|(k, v)| account.labels.get(k) == Some(v));
        if by_account && by_labels {
            merge_rules(&mut merged, &o.rules);
            policy::merge(&mut merged_policy, &o.policy);
        }
    }
    let before = issues.list.len();
    let rules = build_rules(issues, &merged, currency);
    let policy = policy::resolve(issues, &merged_policy, cloud, currency);
    // The same bad value would be reported once per account; keep the first.
    dedup_from(&mut issues.list, before);
    (rules, policy)
}

fn payee(issues: &mut Issues<'_>, i: usize, a: &RawAccount) -> BTreeMap<PaymentMethod, String> {
    let mut payee = BTreeMap::new();
    for (method, text) in &a.payee {
        let at = format!("accounts[{i}].payee.{method}");
        match PaymentMethod::parse(method) {
            None => issues.at(
                text,
                at,
                format!(
                    "unknown payment method {method:?}; use {}",
                    PaymentMethod::ALL.map(|m| m.as_str()).join(", ")
                ),
            ),
            Some(_) if text.get_ref().trim().is_empty() => issues.at(text, at, "must not be empty"),
            Some(m) => {
                payee.insert(m, text.get_ref().trim().to_owned());
            }
        }
    }
    payee
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub concurrency: usize,
    pub kind: ProviderKind,
    /// The keys of the provider's accounts: they go to its adapter and
    /// nowhere else.
    pub credentials: HashMap<AccountId, CloudAccess>,
}

#[derive(Debug, Clone)]
pub enum ProviderKind {
    /// Accounts and their money come from a scenario file; see config/scenarios/.
    Simulated { scenario: PathBuf },
    /// A cloud's billing API. `requests_per_second` replaces the cloud's
    /// documented per-API limits (counted per key, as the clouds count them).
    Cloud {
        cloud: Cloud,
        requests_per_second: Option<NonZeroU32>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Tencent,
    Alibaba,
    Huawei,
    AzureChina,
}

impl Cloud {
    const ALL: [(&'static str, Cloud); 4] = [
        ("tencent", Cloud::Tencent),
        ("alibaba", Cloud::Alibaba),
        ("huawei", Cloud::Huawei),
        ("azure_china", Cloud::AzureChina),
    ];

    /// The sites each cloud has, the first being the default.
    pub fn sites(self) -> &'static [&'static str] {
        match self {
            Cloud::Tencent | Cloud::Alibaba | Cloud::Huawei => &["cn", "intl"],
            Cloud::AzureChina => &["cn"],
        }
    }

    /// The currency a site bills in.
    pub fn site_currency(self, site: &str) -> Currency {
        match site {
            "intl" => Currency::Usd,
            _ => Currency::Cny,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    pub(super) name: S,
    pub(super) kind: S,
    pub(super) concurrency: Option<Spanned<i64>>,
    pub(super) scenario: Option<S>,
    pub(super) requests_per_second: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    pub(super) id: S,
    pub(super) provider: S,
    pub(super) site: Option<String>,
    pub(super) currency: Option<S>,
    pub(super) schedule: Option<S>,
    #[serde(default)]
    pub(super) labels: Labels,
    pub(super) credentials: Option<Spanned<RawCredentials>>,
    pub(super) endpoint: Option<S>,
    #[serde(default)]
    pub(super) regions: Vec<String>,
    /// Where each payment method sends the money, for top-up instructions.
    #[serde(default)]
    pub(super) payee: BTreeMap<String, S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCredentials {
    pub(super) key_id: Option<S>,
    pub(super) secret: Option<S>,
    pub(super) domain_id: Option<String>,
    pub(super) tenant: Option<String>,
    pub(super) subscription: Option<String>,
    pub(super) billing_account: Option<String>,
}

/// A labelled, readable summary for `config check`.
/// An account's credentials, checked against what its cloud needs.
fn access(
    issues: &mut Issues<'_>,
    a: &RawAccount,
    i: usize,
    cloud: Option<Cloud>,
    base: &Path,
) -> Option<CloudAccess> {
    let key = |k: &str| format!("accounts[{i}].{k}");
    let Some(cloud) = cloud else {
        if let Some(c) = &a.credentials {
            issues.at(
                c,
                key("credentials"),
                "a simulated account has no credentials",
            );
        }
        if let Some(e) = &a.endpoint {
            issues.at(e, key("endpoint"), "a simulated account has no endpoint");
        }
        return None;
    };
    let Some(raw) = &a.credentials else {
        issues.at(
            &a.id,
            key("credentials"),
            "a cloud account needs credentials = { key_id = \"env:…\", secret = \"env:…\" }",
        );
        return None;
    };
    let creds = raw.get_ref();
    let mut secret = |field: &str, value: &Option<S>| match value {
        Some(v) => Secret::resolve(v.get_ref(), base)
            .map_err(|e| issues.at(v, key(&format!("credentials.{field}")), e))
            .ok(),
        None => {
            issues.at(
                raw,
                key(&format!("credentials.{field}")),
                "missing (\"env:NAME\" or \"file:PATH\")",
            );
            None
        }
    };
    let key_id = secret("key_id", &creds.key_id);
    let secret_value = secret("secret", &creds.secret);
    let endpoint = a
        .endpoint
        .as_ref()
        .and_then(|e| match reqwest::Url::parse(e.get_ref()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
            _ => {
                issues.at(e, key("endpoint"), "must be an http or https URL");
                None
            }
        });
    let mut only = |field: &str, present: bool, clouds: &str| {
        if present {
            issues.at(
                raw,
                key(&format!("credentials.{field}")),
                format!("is used by {clouds} accounts only"),
            );
        }
    };
    if cloud != Cloud::Huawei {
        only("domain_id", creds.domain_id.is_some(), "huawei");
    }
    if cloud != Cloud::AzureChina {
        only("tenant", creds.tenant.is_some(), "azure_china");
        only("subscription", creds.subscription.is_some(), "azure_china");
        only(
            "billing_account",
            creds.billing_account.is_some(),
            "azure_china",
        );
    }
    if cloud != Cloud::Tencent && !a.regions.is_empty() {
        issues.at(&a.id, key("regions"), "is used by tencent accounts only");
    }
    if cloud == Cloud::AzureChina {
        for (field, value) in [
            ("tenant", &creds.tenant),
            ("subscription", &creds.subscription),
        ] {
            if value.is_none() {
                issues.at(
                    raw,
                    key(&format!("credentials.{field}")),
                    "an azure_china account needs it",
                );
            }
        }
    }
    Some(CloudAccess {
        key_id: key_id?,
        secret: secret_value?,
        endpoint,
        regions: a.regions.clone(),
        domain_id: creds.domain_id.clone(),
        tenant: creds.tenant.clone(),
        subscription: creds.subscription.clone(),
        billing_account: creds.billing_account.clone(),
    })
}
