//! How both stores keep a snapshot: its balance part on every row, and its
//! resources and orders (the inventory, which rarely changes from one poll
//! to the next) once per account for each different content, named by the
//! content's digest. A fleet polled every 15 minutes keeps a week of
//! balances without a week of copies of the same resource lists, and
//! judging reads the small part only. The stores differ only in SQL.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::model::{Order, Resource, Snapshot};
use crate::ports::{Judging, StoreError, Window};

/// A snapshot as it is written.
pub(crate) struct Split<'a> {
    /// The snapshot without its resources and orders (JSON).
    pub balance: String,
    /// Names the resources and orders: the same content, the same name.
    pub digest: String,
    inventory: InventoryRef<'a>,
}

impl Split<'_> {
    /// The resources and orders as stored: `{"resources": […], "orders":
    /// […]}`. Encoded only when asked, since most polls find theirs kept.
    pub fn inventory(&self) -> Result<String, StoreError> {
        serde_json::to_string(&self.inventory).map_err(corrupt)
    }
}

#[derive(Serialize)]
struct BalancePart<'a> {
    taken_at: &'a chrono::DateTime<chrono::Utc>,
    balance: &'a crate::domain::model::Balance,
    #[serde(skip_serializing_if = "Option::is_none")]
    spend: &'a Option<crate::domain::model::ReportedSpend>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    recharges: &'a Vec<crate::domain::model::Recharge>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tally: &'a Option<crate::domain::model::Tally>,
}

#[derive(Serialize, Hash)]
struct InventoryRef<'a> {
    resources: &'a [Resource],
    orders: &'a [Order],
}

/// A stored inventory, decoded.
#[derive(Clone, Deserialize)]
pub(crate) struct Inventory {
    #[serde(default)]
    resources: Vec<Resource>,
    #[serde(default)]
    orders: Vec<Order>,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("a stored snapshot does not decode: {e}"))
}

pub(crate) fn split(snapshot: &Snapshot) -> Result<Split<'_>, StoreError> {
    // Every field named, so that a field added to snapshots is placed here
    // (or the build fails) rather than silently left unstored.
    let Snapshot {
        taken_at,
        balance,
        resources,
        orders,
        spend,
        recharges,
        tally,
    } = snapshot;
    let balance = serde_json::to_string(&BalancePart {
        taken_at,
        balance,
        spend,
        recharges,
        tally,
    })
    .map_err(corrupt)?;
    let inventory = InventoryRef { resources, orders };
    // Gathered first, then hashed at once: `Hash` writes a field at a time,
    // a few bytes each, and the digest's own buffering of that many small
    // writes cost more than the hashing.
    let mut bytes = ContentHasher(Vec::with_capacity(4096));
    inventory.hash(&mut bytes);
    Ok(Split {
        balance,
        digest: hex::encode(Sha256::digest(&bytes.0)),
        inventory,
    })
}

/// What `Hash` writes of a value, for SHA-256 to name its content
/// without encoding it first (`Hash` writes lengths before collections and
/// ends strings with a byte UTF-8 never uses, so different contents write
/// different bytes). The bytes depend on the build's integer widths and
/// byte order: a build that writes them differently names the same content
/// anew, which costs one more kept copy, never a wrong one.
struct ContentHasher(Vec<u8>);

impl Hasher for ContentHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    fn finish(&self) -> u64 {
        let d = Sha256::digest(&self.0);
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }
}

/// The snapshot from its balance part, with its resources and orders when
/// the inventory was read (judging reads only the newest one's).
pub(crate) fn join(balance: &str, inventory: Option<Inventory>) -> Result<Snapshot, StoreError> {
    let mut snapshot: Snapshot = serde_json::from_str(balance).map_err(corrupt)?;
    if let Some(Inventory { resources, orders }) = inventory {
        snapshot.resources = resources;
        snapshot.orders = orders;
    }
    Ok(snapshot)
}

/// Decodes inventories read alongside snapshots, each different one once:
/// a history of a week shares a handful.
#[derive(Default)]
pub(crate) struct Inventories {
    seen: HashMap<String, Inventory>,
}

impl Inventories {
    /// The inventory stored as `body` under `digest` (`None` when the row
    /// named none, or it was not read).
    pub(crate) fn get(
        &mut self,
        digest: Option<&str>,
        body: Option<&str>,
    ) -> Result<Option<Inventory>, StoreError> {
        let (Some(digest), Some(body)) = (digest, body) else {
            return Ok(None);
        };
        if let Some(known) = self.seen.get(digest) {
            return Ok(Some(known.clone()));
        }
        let decoded: Inventory = serde_json::from_str(body).map_err(corrupt)?;
        self.seen.insert(digest.to_owned(), decoded.clone());
        Ok(Some(decoded))
    }
}

/// Judging's reads put together, one per window in order: each window's
/// own snapshots (put in time order here rather than by a sort of a whole
/// chunk's rows in the store), and its account's open alerts and lost
/// notices, taken by the account's last window and copied for any before.
pub(crate) fn judgings(
    windows: &[Window<'_>],
    histories: Vec<Vec<Snapshot>>,
    mut by_account: HashMap<&str, Judging>,
) -> Vec<Judging> {
    let mut left: HashMap<&str, usize> = HashMap::new();
    for w in windows {
        *left.entry(w.account.as_str()).or_default() += 1;
    }
    let mut out = Vec::with_capacity(windows.len());
    for (w, mut history) in windows.iter().zip(histories) {
        history.sort_by_key(|s| s.taken_at);
        let id = w.account.as_str();
        let last = left.get_mut(id).is_some_and(|n| {
            *n -= 1;
            *n == 0
        });
        let judging = if last {
            by_account.remove(id)
        } else {
            by_account.get(id).cloned()
        }
        .unwrap_or_default();
        out.push(Judging { history, ..judging });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{
        Balance, Bucket, BucketKind, ExternalId, Recharge, RenewalMode, ReportedSpend,
        ResourceStatus,
    };
    use crate::domain::money::{Currency, Money};
    use chrono::{Duration, TimeZone, Utc};
    use rust_decimal::Decimal;

    fn cny(v: &str) -> Money {
        Money::new(v.parse::<Decimal>().unwrap(), Currency::Cny)
    }

    fn full() -> Snapshot {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let mut balance = Balance::available_only(cny("1234.56"));
        balance.cash = Some(cny("1000"));
        balance.buckets.push(Bucket {
            name: "COC-1".into(),
            kind: BucketKind::Contract,
            amount: cny("50"),
            entered_as_of: Some(at),
        });
        Snapshot {
            taken_at: at,
            balance,
            resources: vec![Resource {
                id: ExternalId::parse("ins-1").unwrap(),
                product: "cvm".into(),
                region: Some("ap-shanghai".into()),
                name: None,
                expires_at: at + Duration::days(3),
                renewal: RenewalMode::Auto,
                status: ResourceStatus::Active,
                renewal_months: Some(1),
                renewal_price: Some(cny("900")),
                unpriced: None,
            }],
            orders: vec![Order {
                id: ExternalId::parse("ord-7").unwrap(),
                amount: cny("300"),
                created_at: at - Duration::days(1),
                pay_deadline: Some(at + Duration::days(2)),
                description: "renewal".into(),
            }],
            spend: Some(ReportedSpend {
                per_day: cny("12.5"),
                over_days: 7,
            }),
            recharges: vec![Recharge {
                at: at - Duration::hours(2),
                amount: cny("500"),
            }],
            tally: None,
        }
    }

    #[test]
    fn a_snapshot_split_and_joined_is_the_same_snapshot() {
        let s = full();
        let stored = split(&s).unwrap();
        let inventory: Inventory = serde_json::from_str(&stored.inventory().unwrap()).unwrap();
        assert_eq!(join(&stored.balance, Some(inventory)).unwrap(), s);
    }

    #[test]
    fn the_balance_part_alone_is_the_snapshot_without_its_lists() {
        let s = full();
        let stored = split(&s).unwrap();
        assert!(!stored.balance.contains("ins-1") && !stored.balance.contains("ord-7"));
        let thin = join(&stored.balance, None).unwrap();
        assert_eq!(
            thin,
            Snapshot {
                resources: Vec::new(),
                orders: Vec::new(),
                ..s
            }
        );
    }

    #[test]
    fn the_same_lists_have_the_same_digest_and_any_change_another() {
        let s = full();
        let a = split(&s).unwrap();
        let mut later = s.clone();
        later.taken_at += Duration::hours(1);
        later.balance.available = cny("1200");
        assert_eq!(split(&later).unwrap().digest, a.digest);
        later.resources[0].renewal = RenewalMode::Manual;
        assert_ne!(split(&later).unwrap().digest, a.digest);
        assert_eq!(a.digest.len(), 64);
    }

    #[test]
    fn contents_that_differ_only_in_where_a_text_ends_have_different_digests() {
        let s = full();
        let variants: Vec<Snapshot> = [
            |_: &mut Snapshot| {},
            |s: &mut Snapshot| {
                s.resources[0].product = "cv".into();
                s.resources[0].region = Some(format!(
                    "m{}",
                    s.resources[0].region.as_deref().unwrap_or("")
                ));
            },
            |s: &mut Snapshot| s.resources[0].name = Some("a".into()),
            |s: &mut Snapshot| s.resources[0].name = Some(String::new()),
            |s: &mut Snapshot| s.orders.clear(),
            |s: &mut Snapshot| s.resources.push(s.resources[0].clone()),
            |s: &mut Snapshot| s.orders[0].description.push(' '),
            |s: &mut Snapshot| s.resources[0].renewal_months = None,
        ]
        .iter()
        .map(|change| {
            let mut v = s.clone();
            change(&mut v);
            v
        })
        .collect();
        for (i, v) in variants.iter().enumerate().skip(1) {
            assert_ne!(v, &s, "variant {i} changes nothing");
        }
        let digests: std::collections::HashSet<String> =
            variants.iter().map(|v| split(v).unwrap().digest).collect();
        assert_eq!(digests.len(), variants.len());
    }

    #[test]
    fn a_stored_body_that_does_not_decode_is_named_corrupt() {
        assert!(matches!(
            join("{\"taken_at\": 5}", None),
            Err(StoreError::Corrupt(_))
        ));
        let mut seen = Inventories::default();
        assert!(matches!(
            seen.get(Some("d"), Some("[1, 2")),
            Err(StoreError::Corrupt(_))
        ));
        assert!(seen.get(Some("d"), None).unwrap().is_none());
    }
}
