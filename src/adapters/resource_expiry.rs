//! `purser_resource_expiry_timestamp_seconds`: one series per prepaid
//! resource, written out from each account's last poll at every scrape.
//!
//! A fleet holds hundreds of thousands of resources. As a family of
//! gauges each series was a label set in a hash map (held twice while the
//! map grew) plus a copy of its labels kept to remove it when it vanished:
//! about 50 MB at 200,000 resources. Here each is one row of 24 bytes in
//! its account's list, beside its id in the account's one string of ids,
//! and a vanished resource is simply not in the next list.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::domain::model::{RenewalMode, Resource};

const NAME: &str = "purser_resource_expiry_timestamp_seconds";
/// As the registry writes its own: ending in a full stop.
const HELP: &str = "When each prepaid resource expires, and how it renews.";

/// Each account's resources as its last poll showed them, each label set
/// once.
#[derive(Debug, Default)]
pub struct Expiries {
    by_account: Mutex<HashMap<Arc<str>, Arc<Listed>>>,
    products: Mutex<Products>,
}

/// Product names, one copy each (a fleet has a few dozen), numbered.
#[derive(Debug, Default)]
struct Products {
    names: Vec<Arc<str>>,
    numbers: HashMap<Arc<str>, u32>,
}

impl Products {
    fn number(&mut self, name: &str) -> Option<u32> {
        if let Some(&n) = self.numbers.get(name) {
            return Some(n);
        }
        // Four billion names would be four billion allocations first.
        let n = u32::try_from(self.names.len()).ok()?;
        let name: Arc<str> = Arc::from(name);
        self.names.push(name.clone());
        self.numbers.insert(name, n);
        Some(n)
    }
}

/// One account's series: its resource ids end to end in one string, and a
/// row of 24 bytes each.
#[derive(Debug)]
struct Listed {
    ids: Box<str>,
    rows: Box<[Row]>,
}

#[derive(Debug)]
struct Row {
    /// Seconds since the epoch; set in place when only the time changed.
    expires: AtomicI64,
    /// Where this row's id ends in `ids` (it starts where the last ended).
    id_end: usize,
    product: u32,
    renewal: RenewalMode,
}

impl Listed {
    fn series(&self) -> impl Iterator<Item = (&str, &Row)> {
        let mut start = 0;
        self.rows.iter().map(move |row| {
            let id = self.ids.get(start..row.id_end).unwrap_or_default();
            start = row.id_end;
            (id, row)
        })
    }

    /// Whether these are the same series as `resources` list, in order.
    fn same(&self, resources: &[Resource], products: &Products) -> bool {
        self.rows.len() == resources.len()
            && self.series().zip(resources).all(|((id, row), r)| {
                id == r.id.as_str()
                    && row.renewal == r.renewal
                    && products.numbers.get(r.product.as_str()) == Some(&row.product)
            })
    }
}

impl Expiries {
    /// Shows `resources` as `account`'s, in place of what its last poll
    /// showed.
    pub fn show(&self, account: &str, resources: &[Resource]) {
        let before = lock(&self.by_account).get(account).cloned();
        let mut products = lock(&self.products);
        if let Some(listed) = &before
            && listed.same(resources, &products)
        {
            // The same resources as the last poll, as most polls see.
            for (row, r) in listed.rows.iter().zip(resources) {
                row.expires
                    .store(r.expires_at.timestamp(), Ordering::Relaxed);
            }
            return;
        }
        // A cloud that lists a resource twice still gets one series: the
        // same labels twice would make Prometheus refuse the whole scrape.
        let mut seen = HashSet::new();
        let mut ids = String::new();
        let mut rows = Vec::with_capacity(resources.len());
        for r in resources {
            if !seen.insert((r.id.as_str(), r.product.as_str(), r.renewal)) {
                continue;
            }
            let Some(product) = products.number(&r.product) else {
                continue;
            };
            ids.push_str(r.id.as_str());
            rows.push(Row {
                expires: AtomicI64::new(r.expires_at.timestamp()),
                id_end: ids.len(),
                product,
                renewal: r.renewal,
            });
        }
        drop(products);
        let listed = Listed {
            ids: ids.into_boxed_str(),
            rows: rows.into_boxed_slice(),
        };
        lock(&self.by_account).insert(Arc::from(account), Arc::new(listed));
    }
}

impl Collector for Expiries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Taken out of the locks, so that polls are not held up by a scrape.
        let mut accounts: Vec<(Arc<str>, Arc<Listed>)> = lock(&self.by_account)
            .iter()
            .filter(|(_, listed)| !listed.rows.is_empty())
            .map(|(a, listed)| (a.clone(), listed.clone()))
            .collect();
        if accounts.is_empty() {
            return Ok(());
        }
        let products = lock(&self.products).names.clone();
        accounts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut metric = encoder.encode_descriptor(NAME, HELP, None, MetricType::Gauge)?;
        for (account, listed) in &accounts {
            for (id, row) in listed.series() {
                let product = usize::try_from(row.product)
                    .ok()
                    .and_then(|n| products.get(n))
                    .map_or("", |p| &**p);
                let labels = [
                    ("account", &**account),
                    ("resource", id),
                    ("product", product),
                    ("renewal", row.renewal.as_str()),
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
    use crate::domain::model::{ExternalId, ResourceStatus};
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

    #[test]
    fn a_new_expiry_is_set_in_place_and_a_new_product_or_mode_is_a_new_series() {
        let e = Arc::new(Expiries::default());
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(e.clone()));
        e.show("acme", &[resource("ins-a", 100), resource("ins-bb", 200)]);
        e.show("beta", &[resource("ins-c", 50)]);
        e.show("acme", &[resource("ins-a", 150), resource("ins-bb", 250)]);
        let series = |id: &str, product: &str, renewal: &str, account: &str, at: i64| {
            format!(
                "{NAME}{{account=\"{account}\",resource=\"{id}\",product=\"{product}\",renewal=\"{renewal}\"}} {at}"
            )
        };
        assert_eq!(
            scraped(&registry),
            [
                series("ins-a", "cvm", "auto", "acme", 150),
                series("ins-bb", "cvm", "auto", "acme", 250),
                series("ins-c", "cvm", "auto", "beta", 50),
            ]
        );
        let mut moved = resource("ins-bb", 250);
        moved.product = "cdb".into();
        let mut manual = resource("ins-a", 150);
        manual.renewal = RenewalMode::Manual;
        e.show("acme", &[manual, moved]);
        assert_eq!(
            scraped(&registry)[..2],
            [
                series("ins-a", "cvm", "manual", "acme", 150),
                series("ins-bb", "cdb", "auto", "acme", 250),
            ]
        );
    }
}
