//! `purser_resource_expiry_timestamp_seconds`: one series per prepaid
//! resource, written out from each account's last poll at every scrape.
//!
//! A fleet holds hundreds of thousands of resources. As a family of
//! gauges each series was a label set in a hash map (held twice while the
//! map grew) plus a copy of its labels kept to remove it when it vanished:
//! about 50 MB at 200,000 resources. Here each is one row in its account's
//! list, and a vanished resource is simply not in the next list.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::domain::model::Resource;

const NAME: &str = "purser_resource_expiry_timestamp_seconds";
/// As the registry writes its own: ending in a full stop.
const HELP: &str = "When each prepaid resource expires, and how it renews.";

/// Each account's resources as its last poll showed them, each label set
/// once.
#[derive(Debug, Default)]
pub struct Expiries {
    by_account: Mutex<HashMap<Arc<str>, Arc<[Row]>>>,
    /// Product names, one copy each: a fleet has a few dozen.
    products: Mutex<HashSet<Arc<str>>>,
}

#[derive(Debug)]
struct Row {
    resource: Arc<str>,
    product: Arc<str>,
    renewal: &'static str,
    /// Seconds since the epoch; set in place when only the time changed.
    expires: AtomicI64,
}

impl Row {
    fn is(&self, r: &Resource) -> bool {
        *self.resource == *r.id.as_str()
            && *self.product == *r.product
            && self.renewal == r.renewal.as_str()
    }
}

impl Expiries {
    /// Shows `resources` as `account`'s, in place of what its last poll
    /// showed.
    pub fn show(&self, account: &str, resources: &[Resource]) {
        let before = lock(&self.by_account).get(account).cloned();
        if let Some(rows) = &before
            && rows.len() == resources.len()
            && rows.iter().zip(resources).all(|(row, r)| row.is(r))
        {
            // The same resources as the last poll, as most polls see.
            for (row, r) in rows.iter().zip(resources) {
                row.expires
                    .store(r.expires_at.timestamp(), Ordering::Relaxed);
            }
            return;
        }
        let known: HashMap<&str, &Row> = before
            .iter()
            .flat_map(|rows| rows.iter())
            .map(|row| (&*row.resource, row))
            .collect();
        // A cloud that lists a resource twice still gets one series: the
        // same labels twice would make Prometheus refuse the whole scrape.
        let mut seen = HashSet::new();
        let rows: Arc<[Row]> = resources
            .iter()
            .filter(|r| seen.insert((r.id.as_str(), r.product.as_str(), r.renewal.as_str())))
            .map(|r| {
                let (resource, product) = match known.get(r.id.as_str()) {
                    Some(row) if row.is(r) => (row.resource.clone(), row.product.clone()),
                    _ => (Arc::from(r.id.as_str()), self.product(&r.product)),
                };
                Row {
                    resource,
                    product,
                    renewal: r.renewal.as_str(),
                    expires: AtomicI64::new(r.expires_at.timestamp()),
                }
            })
            .collect();
        lock(&self.by_account).insert(Arc::from(account), rows);
    }

    fn product(&self, name: &str) -> Arc<str> {
        let mut products = lock(&self.products);
        match products.get(name) {
            Some(p) => p.clone(),
            None => {
                let p: Arc<str> = Arc::from(name);
                products.insert(p.clone());
                p
            }
        }
    }
}

impl Collector for Expiries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Taken out of the lock, so that polls are not held up by a scrape.
        let mut accounts: Vec<(Arc<str>, Arc<[Row]>)> = lock(&self.by_account)
            .iter()
            .filter(|(_, rows)| !rows.is_empty())
            .map(|(a, rows)| (a.clone(), rows.clone()))
            .collect();
        if accounts.is_empty() {
            return Ok(());
        }
        accounts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut metric = encoder.encode_descriptor(NAME, HELP, None, MetricType::Gauge)?;
        for (account, rows) in &accounts {
            for row in rows.iter() {
                let labels = [
                    ("account", &**account),
                    ("resource", &*row.resource),
                    ("product", &*row.product),
                    ("renewal", row.renewal),
                ];
                let series = metric.encode_family(&labels)?;
                ConstGauge::new(row.expires.load(Ordering::Relaxed)).encode(series)?;
            }
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere cannot leave it half-made.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{ExternalId, RenewalMode, ResourceStatus};
    use chrono::DateTime;

    fn resource(id: &str, at: i64) -> Resource {
        Resource {
            id: ExternalId::parse(id).unwrap(),
            product: "cvm".into(),
            region: None,
            name: None,
            expires_at: DateTime::from_timestamp(at, 0).unwrap(),
            renewal: RenewalMode::Auto,
            status: ResourceStatus::Active,
            renewal_price: None,
            renewal_months: None,
            unpriced: None,
        }
    }

    fn scraped(registry: &prometheus_client::registry::Registry) -> Vec<String> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text.lines()
            .filter(|l| l.starts_with(NAME))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_resource_listed_twice_is_one_series_and_one_gone_is_none() {
        let e = Arc::new(Expiries::default());
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(e.clone()));
        e.show(
            "acme",
            &[
                resource("ins-a", 100),
                resource("ins-a", 100),
                resource("ins-b", 200),
            ],
        );
        assert_eq!(
            scraped(&registry),
            [
                format!(
                    "{NAME}{{account=\"acme\",resource=\"ins-a\",product=\"cvm\",renewal=\"auto\"}} 100"
                ),
                format!(
                    "{NAME}{{account=\"acme\",resource=\"ins-b\",product=\"cvm\",renewal=\"auto\"}} 200"
                ),
            ]
        );
        e.show("acme", &[resource("ins-b", 300)]);
        assert_eq!(
            scraped(&registry),
            [format!(
                "{NAME}{{account=\"acme\",resource=\"ins-b\",product=\"cvm\",renewal=\"auto\"}} 300"
            )]
        );
    }
}
