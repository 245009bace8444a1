//! Which outputs hear of an alert, by its labels, as Alertmanager routes do:
//! routes are tried in order, the first that matches takes the alert, and one
//! marked `continue` lets the next ones match too.

use super::command::Matcher;
use super::model::Account;
use super::rules::{AlertKey, RuleName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// All must hold; none matches every alert.
    pub matchers: Vec<Matcher>,
    pub outputs: Vec<String>,
    /// Keep trying the routes after this one when it matched.
    pub continue_matching: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    routes: Vec<Route>,
    /// Where an alert no route takes goes: the outputs no route names, or,
    /// when routes name them all, every output. Never nowhere.
    fallback: Vec<String>,
    all: Vec<String>,
}

impl Routing {
    /// Every alert to every output.
    pub fn everywhere(outputs: &[String]) -> Routing {
        Routing {
            routes: Vec::new(),
            fallback: outputs.to_vec(),
            all: outputs.to_vec(),
        }
    }

    pub fn new(routes: Vec<Route>, outputs: &[String]) -> Routing {
        let unrouted: Vec<String> = outputs
            .iter()
            .filter(|o| !routes.iter().any(|r| r.outputs.contains(o)))
            .cloned()
            .collect();
        Routing {
            routes,
            fallback: if unrouted.is_empty() {
                outputs.to_vec()
            } else {
                unrouted
            },
            all: outputs.to_vec(),
        }
    }

    /// The outputs for an alert with `key` and `severity` on `account`, each
    /// once, in the order the routes name them.
    ///
    /// That an output lost notices is never told to that output alone: it
    /// goes where the routes send it but there, or else to every other.
    pub fn outputs_for(&self, account: &Account, key: &AlertKey, severity: &str) -> Vec<String> {
        let out = self.routed(account, key, severity);
        if key.rule != RuleName::DeliveryFailed {
            return out;
        }
        let others: Vec<String> = out.into_iter().filter(|o| *o != key.resource).collect();
        if !others.is_empty() {
            return others;
        }
        self.all
            .iter()
            .filter(|o| **o != key.resource)
            .cloned()
            .collect()
    }

    fn routed(&self, account: &Account, key: &AlertKey, severity: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut matched = false;
        for r in &self.routes {
            if !r
                .matchers
                .iter()
                .all(|m| m.matches(|name| key.label(account, severity, name)))
            {
                continue;
            }
            matched = true;
            for o in &r.outputs {
                if !out.contains(o) {
                    out.push(o.clone());
                }
            }
            if !r.continue_matching {
                break;
            }
        }
        if matched { out } else { self.fallback.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rules::RuleName;
    use crate::domain::rules::tests::account;

    fn route(matchers: &str, outputs: &[&str], cont: bool) -> Route {
        Route {
            matchers: Matcher::parse_all(matchers).unwrap(),
            outputs: outputs.iter().map(|s| (*s).to_owned()).collect(),
            continue_matching: cont,
        }
    }

    fn key(rule: RuleName) -> AlertKey {
        AlertKey {
            rule,
            account: "acme".into(),
            resource: String::new(),
            tier: String::new(),
        }
    }

    fn names(outputs: &[&str]) -> Vec<String> {
        outputs.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn first_match_wins_unless_it_continues() {
        let all = names(&["console", "chat", "pager", "dev"]);
        let mut prod = account();
        prod.labels.insert("env".into(), "prod".into());
        let mut dev = account();
        dev.labels.insert("env".into(), "dev".into());
        let routing = Routing::new(
            vec![
                route("env=prod,severity=A", &["pager"], true),
                route("env=prod", &["chat"], false),
                route("env=dev", &["dev"], false),
                route("", &["chat"], false),
            ],
            &all,
        );
        let low = key(RuleName::LowBalance);
        assert_eq!(routing.outputs_for(&prod, &low, "A"), ["pager", "chat"]);
        assert_eq!(routing.outputs_for(&prod, &low, "B"), ["chat"]);
        assert_eq!(routing.outputs_for(&dev, &low, "A"), ["dev"]);
        let mut other = account();
        other.labels.insert("env".into(), "staging".into());
        assert_eq!(
            routing.outputs_for(&other, &low, "C"),
            ["chat"],
            "catch-all"
        );
    }

    #[test]
    fn an_alert_no_route_takes_goes_where_no_route_sends_or_everywhere() {
        let all = names(&["console", "chat"]);
        let acme = account();
        let low = key(RuleName::LowBalance);
        let routing = Routing::new(vec![route("rule=expiring", &["chat"], false)], &all);
        assert_eq!(routing.outputs_for(&acme, &low, "A"), ["console"]);
        assert_eq!(
            routing.outputs_for(&acme, &key(RuleName::Expiring), "C"),
            ["chat"]
        );
        let routing = Routing::new(
            vec![
                route("rule=expiring", &["chat"], false),
                route("rule=runway", &["console"], false),
            ],
            &all,
        );
        assert_eq!(routing.outputs_for(&acme, &low, "A"), all, "never nowhere");
        assert_eq!(Routing::everywhere(&all).outputs_for(&acme, &low, "A"), all);
    }

    #[test]
    fn routes_match_the_same_labels_as_silences() {
        let all = names(&["cn", "rest"]);
        let mut a = account();
        a.labels.insert("team".into(), "core".into());
        let routing = Routing::new(vec![route("provider!=sim,team=core", &["cn"], false)], &all);
        // The test account's provider is the simulated one.
        assert_eq!(
            routing.outputs_for(&a, &key(RuleName::LowBalance), "A"),
            ["rest"]
        );
    }
}
