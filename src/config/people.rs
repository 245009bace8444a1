//! `[[people]]` and `[approvals]`: who may ask and decide, how they prove
//! it, and which amounts need how many approvers.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use chrono::Duration;
use rust_decimal::Decimal;
use serde::Deserialize;
use toml::Spanned;

use super::{Issues, OutputConfig, S, duration, shows_requests};
use crate::domain::money::{Currency, Money};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct ApprovalsConfig {
    pub tiers: crate::domain::request::Tiers,
    /// A request nobody decides within this expires.
    pub expire_after: Duration,
    /// The outputs where each request is shown with Approve and Deny
    /// buttons, and its changes told.
    pub channels: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PersonConfig {
    pub name: String,
    pub role: crate::domain::command::Role,
    /// (platform, user id): `slack`, `discord`, `telegram`.
    pub identities: Vec<(String, String)>,
    /// The base32 TOTP secret of their authenticator app, for approvals
    /// that need a second factor.
    pub totp: Option<Secret>,
    /// For an outside pager (Opsgenie takes the e-mail as the user's name).
    pub phone: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApprovals {
    expire_after: Option<S>,
    channels: Option<Spanned<Vec<S>>>,
    tiers: Option<Spanned<Vec<RawApprovalTier>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApprovalTier {
    above: S,
    approvers: u8,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    second_factor: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPerson {
    name: S,
    role: S,
    slack: Option<S>,
    discord: Option<S>,
    telegram: Option<S>,
    /// `env:NAME` or `file:PATH`: never the secret itself.
    totp: Option<S>,
    /// For an outside pager: how it reaches them.
    phone: Option<S>,
    email: Option<S>,
}

/// The approval tiers (amounts in each account's own currency) and expiry;
/// the defaults when not given.
pub(super) fn build_approvals(
    issues: &mut Issues<'_>,
    raw: Option<&RawApprovals>,
    outputs: &[OutputConfig],
) -> ApprovalsConfig {
    use crate::domain::request::{Tier, Tiers, default_ttl};
    let expire_after = duration(
        issues,
        "approvals.expire_after",
        raw.and_then(|r| r.expire_after.as_ref()),
        default_ttl(),
    );
    if expire_after <= Duration::zero()
        && let Some(v) = raw.and_then(|r| r.expire_after.as_ref())
    {
        issues.at(v, "approvals.expire_after", "must be longer than zero");
    }
    let channels = approval_channels(issues, raw.and_then(|r| r.channels.as_ref()), outputs);
    let Some(list) = raw.and_then(|r| r.tiers.as_ref()) else {
        return ApprovalsConfig {
            tiers: Tiers::defaults(),
            expire_after,
            channels,
        };
    };
    let mut tiers = Vec::new();
    for (i, t) in list.get_ref().iter().enumerate() {
        let key = format!("approvals.tiers[{i}].above");
        if let Some(above) = bare_amount(issues, &key, &t.above) {
            tiers.push(Tier {
                above,
                approvers: t.approvers,
                admin: t.admin,
                second_factor: t.second_factor,
            });
        }
    }
    let tiers = match Tiers::new(tiers) {
        Ok(t) => t,
        Err(e) => {
            issues.at(list, "approvals.tiers", e);
            Tiers::defaults()
        }
    };
    ApprovalsConfig {
        tiers,
        expire_after,
        channels,
    }
}

/// The outputs named, each one that can show a request; by default, every
/// output that can.
fn approval_channels(
    issues: &mut Issues<'_>,
    raw: Option<&Spanned<Vec<S>>>,
    outputs: &[OutputConfig],
) -> Vec<String> {
    let Some(list) = raw else {
        return outputs
            .iter()
            .filter(|o| shows_requests(&o.kind))
            .map(|o| o.name.clone())
            .collect();
    };
    let mut names = Vec::new();
    for name in list.get_ref() {
        let key = "approvals.channels";
        match outputs.iter().find(|o| &o.name == name.get_ref()) {
            None => issues.at(
                name,
                key,
                format!("no output named {:?} in [[outputs]]", name.get_ref()),
            ),
            Some(o) if !shows_requests(&o.kind) => issues.at(
                name,
                key,
                format!(
                    "output {:?} cannot show a request with Approve and Deny buttons; name a slack, discord, telegram or console output",
                    o.name
                ),
            ),
            Some(o) if names.contains(&o.name) => {}
            Some(o) => names.push(o.name.clone()),
        }
    }
    names
}

/// An amount written without a currency, since it applies in each
/// account's own.
pub(super) fn bare_amount(issues: &mut Issues<'_>, key: &str, value: &S) -> Option<Decimal> {
    let text = value.get_ref();
    match (
        Money::parse(text, Currency::Cny),
        Money::parse(text, Currency::Usd),
    ) {
        (Ok(a), Ok(b)) if a.currency() == b.currency() => {
            issues.at(
                value,
                key,
                format!("{text:?} names a currency; write the amount alone, as it applies in each account's own currency"),
            );
            None
        }
        (Ok(a), Ok(_)) => Some(a.amount()),
        (Err(e), _) | (_, Err(e)) => {
            issues.at(value, key, e.to_string());
            None
        }
    }
}

pub(super) fn build_people(
    issues: &mut Issues<'_>,
    base: &Path,
    raw: &[RawPerson],
) -> Vec<PersonConfig> {
    let mut names: HashSet<String> = HashSet::new();
    let mut seen: HashMap<(String, String), String> = HashMap::new();
    let mut out = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let name = p.name.get_ref().trim().to_owned();
        if name.is_empty() {
            issues.at(&p.name, format!("people[{i}].name"), "must not be empty");
        } else if !names.insert(name.clone()) {
            issues.at(
                &p.name,
                format!("people[{i}].name"),
                format!("{name:?} is listed twice"),
            );
        }
        let role = crate::domain::command::Role::parse(p.role.get_ref().trim());
        if role.is_none() {
            issues.at(
                &p.role,
                format!("people[{i}].role"),
                format!(
                    "unknown role {:?}; use viewer, requester, approver or admin",
                    p.role.get_ref()
                ),
            );
        }
        let mut identities = Vec::new();
        for (platform, id) in [
            ("slack", &p.slack),
            ("discord", &p.discord),
            ("telegram", &p.telegram),
        ] {
            let Some(id) = id else { continue };
            let user = id.get_ref().trim().to_owned();
            if user.is_empty() {
                issues.at(id, format!("people[{i}].{platform}"), "must not be empty");
                continue;
            }
            if let Some(other) = seen.insert((platform.to_owned(), user.clone()), name.clone()) {
                issues.at(
                    id,
                    format!("people[{i}].{platform}"),
                    format!("{user:?} already belongs to {other:?}"),
                );
            }
            identities.push((platform.to_owned(), user));
        }
        // Without a chat identity a person acts from the terminal only
        // (`purser ask --as NAME`).
        let totp = p.totp.as_ref().and_then(|t| {
            let at = format!("people[{i}].totp");
            let secret = Secret::resolve(t.get_ref(), base)
                .map_err(|e| issues.at(t, at.clone(), e))
                .ok()?;
            match crate::adapters::totp::secret_bytes(secret.expose()) {
                Ok(_) => Some(secret),
                Err(e) => {
                    issues.at(t, at, e);
                    None
                }
            }
        });
        if let Some(role) = role {
            let text = |v: &Option<S>| {
                v.as_ref()
                    .map(|v| v.get_ref().trim().to_owned())
                    .filter(|v| !v.is_empty())
            };
            if let Some(e) = &p.email
                && !e.get_ref().contains('@')
            {
                issues.at(e, format!("people[{i}].email"), "not an e-mail address");
            }
            out.push(PersonConfig {
                name,
                role,
                identities,
                totp,
                phone: text(&p.phone),
                email: text(&p.email),
            });
        }
    }
    out
}
