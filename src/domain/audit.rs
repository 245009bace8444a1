//! The audit trail: every request, policy decision, approval, call to a
//! cloud, state change and receipt, appended in order, each entry sealed
//! with the hash of the one before. Editing or deleting an entry breaks the
//! chain from there on; [`verify`] finds where.

use std::fmt;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::request::RequestId;

/// What happened, as stored in the `event` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A request passed policy and was stored.
    Requested,
    /// Policy refused a request before anyone was asked.
    Refused,
    Approved,
    Denied,
    /// A request moved from one state to another.
    State,
    /// A call to a cloud is about to be made (with the idempotency key).
    Call,
    /// The cloud's answer: request id, code, what it said.
    Answer,
    /// Money seen arriving, or a cloud's receipt for a charge.
    Receipt,
    /// Anything else worth keeping (a reminder sent, a reconciliation).
    Note,
}

impl Event {
    pub const ALL: [Event; 9] = [
        Event::Requested,
        Event::Refused,
        Event::Approved,
        Event::Denied,
        Event::State,
        Event::Call,
        Event::Answer,
        Event::Receipt,
        Event::Note,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Requested => "requested",
            Event::Refused => "refused",
            Event::Approved => "approved",
            Event::Denied => "denied",
            Event::State => "state",
            Event::Call => "call",
            Event::Answer => "answer",
            Event::Receipt => "receipt",
            Event::Note => "note",
        }
    }

    pub fn parse(text: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entry before it is sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub at: DateTime<Utc>,
    /// Who: a person's name, or `purser` for what purser did by itself.
    pub actor: String,
    pub event: Event,
    pub request: Option<RequestId>,
    /// The details as JSON text, kept byte for byte as sealed.
    pub detail: String,
}

impl NewEntry {
    pub fn new(
        at: DateTime<Utc>,
        actor: impl Into<String>,
        event: Event,
        request: Option<RequestId>,
        detail: serde_json::Value,
    ) -> NewEntry {
        NewEntry {
            at,
            actor: actor.into(),
            event,
            request,
            detail: detail.to_string(),
        }
    }
}

/// A sealed entry, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1, 2, 3, … with no gaps.
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    /// As stored; an unknown word is itself a sign of tampering.
    pub event: String,
    pub request: Option<RequestId>,
    pub detail: String,
    /// The previous entry's hash ([`GENESIS`] for the first).
    pub prev: String,
    pub hash: String,
}

/// What the first entry's `prev` is.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash sealing an entry: SHA-256 over its fields, each length-prefixed
/// so that no two different entries hash alike, and the previous hash.
pub fn hash(
    seq: u64,
    at: DateTime<Utc>,
    actor: &str,
    event: &str,
    request: Option<RequestId>,
    detail: &str,
    prev: &str,
) -> String {
    let mut h = Sha256::new();
    let request = request.map(|r| r.0.to_string()).unwrap_or_default();
    let fields = [
        seq.to_string(),
        at.timestamp_millis().to_string(),
        actor.to_owned(),
        event.to_owned(),
        request,
        detail.to_owned(),
        prev.to_owned(),
    ];
    for f in &fields {
        h.update(f.len().to_string().as_bytes());
        h.update(b":");
        h.update(f.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// Seals `new` as the entry after `last` (or the first, when `None`).
pub fn seal(last: Option<(u64, &str)>, new: NewEntry) -> Entry {
    let (seq, prev) = match last {
        Some((seq, hash)) => (seq + 1, hash.to_owned()),
        None => (1, GENESIS.to_owned()),
    };
    let event = new.event.as_str().to_owned();
    let hash = hash(
        seq,
        new.at,
        &new.actor,
        &event,
        new.request,
        &new.detail,
        &prev,
    );
    Entry {
        seq,
        at: new.at,
        actor: new.actor,
        event,
        request: new.request,
        detail: new.detail,
        prev,
        hash,
    }
}

/// Where a chain breaks, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("entry {seq} was changed: its contents no longer match its seal")]
    Edited { seq: u64 },
    #[error("entry {expected} is missing (the next entry is {found}): entries were deleted")]
    Gap { expected: u64, found: u64 },
    #[error(
        "entry {seq} does not follow the entry before it: an entry before it was changed or replaced"
    )]
    Unlinked { seq: u64 },
    #[error(
        "the log ends at entry {found} but {expected} entries were written: the last were deleted"
    )]
    Truncated { expected: u64, found: u64 },
    #[error("the log's last entry is not the one last written: it was replaced")]
    HeadMismatch,
    #[error("entry {seq} records an unknown event {event:?}")]
    UnknownEvent { seq: u64, event: String },
}

/// What a sound chain ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    /// The last entry's hash: write it down elsewhere to pin the log.
    pub head: String,
}

/// Checks `entries` (in `seq` order) link up from the first, and end at
/// `head` — the count and last hash kept apart from the entries, which is
/// what shows a deletion at the end.
pub fn verify(entries: &[Entry], head: Option<(u64, &str)>) -> Result<Verified, Broken> {
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_owned();
    for e in entries {
        if e.seq != expected_seq {
            return Err(Broken::Gap {
                expected: expected_seq,
                found: e.seq,
            });
        }
        if Event::parse(&e.event).is_none() {
            return Err(Broken::UnknownEvent {
                seq: e.seq,
                event: e.event.clone(),
            });
        }
        let sealed = hash(
            e.seq, e.at, &e.actor, &e.event, e.request, &e.detail, &e.prev,
        );
        if sealed != e.hash {
            return Err(Broken::Edited { seq: e.seq });
        }
        if e.prev != prev {
            return Err(Broken::Unlinked { seq: e.seq });
        }
        prev = e.hash.clone();
        expected_seq += 1;
    }
    let count = expected_seq - 1;
    if let Some((n, hash)) = head {
        if n != count {
            return Err(Broken::Truncated {
                expected: n,
                found: count,
            });
        }
        if n > 0 && hash != prev {
            return Err(Broken::HeadMismatch);
        }
    }
    Ok(Verified {
        entries: count,
        head: prev,
    })
}

/// The columns of an export, in order.
pub const COLUMNS: [&str; 8] = [
    "seq", "at", "actor", "event", "request", "detail", "prev", "hash",
];

/// RFC 4180 CSV with a header row; every field quoted, quotes doubled, so a
/// detail's commas, quotes and line breaks stay inside its cell.
pub fn to_csv(entries: &[Entry]) -> String {
    let quote = |f: &str| format!("\"{}\"", f.replace('"', "\"\""));
    let mut out = COLUMNS.map(quote).join(",");
    out.push_str("\r\n");
    for e in entries {
        let row = [
            e.seq.to_string(),
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            e.actor.clone(),
            e.event.clone(),
            e.request.map(|r| r.to_string()).unwrap_or_default(),
            e.detail.clone(),
            e.prev.clone(),
            e.hash.clone(),
        ];
        out.push_str(&row.iter().map(|f| quote(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

/// One JSON object per entry; the detail as the JSON it was written as.
pub fn to_json(entries: &[Entry]) -> serde_json::Value {
    serde_json::Value::Array(
        entries
            .iter()
            .map(|e| {
                let detail = serde_json::from_str(&e.detail)
                    .unwrap_or_else(|_| serde_json::Value::String(e.detail.clone()));
                serde_json::json!({
                    "seq": e.seq,
                    "at": e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "actor": e.actor,
                    "event": e.event,
                    "request": e.request.map(|r| r.to_string()),
                    "detail": detail,
                    "prev": e.prev,
                    "hash": e.hash,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_every_field_and_doubles_quotes() {
        let e = seal(
            None,
            NewEntry {
                at: DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
                actor: "ana".into(),
                event: Event::Approved,
                request: Some(RequestId(7)),
                detail: r#"{"comment":"ok, \"go\"\nnow"}"#.into(),
            },
        );
        let csv = to_csv(std::slice::from_ref(&e));
        let mut lines = csv.split("\r\n");
        assert_eq!(
            lines.next(),
            Some(r#""seq","at","actor","event","request","detail","prev","hash""#)
        );
        let row = lines.next().unwrap();
        assert!(
            row.starts_with(r#""1","2026-09-21T14:13:20.000Z","ana","approved","R7","{""comment"":""ok, \""go\""\nnow""}","#),
            "{row}"
        );
        let json = to_json(&[e]);
        assert_eq!(json[0]["detail"]["comment"], "ok, \"go\"\nnow");
        assert_eq!(json[0]["request"], "R7");
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + s, 0).unwrap()
    }

    fn chain(n: usize) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for i in 0..n {
            let last = out.last().map(|e| (e.seq, e.hash.as_str()));
            let new = NewEntry::new(
                t(i as i64),
                "ana",
                Event::State,
                Some(RequestId(1)),
                serde_json::json!({"from": "requested", "to": "approved", "i": i}),
            );
            let e = seal(last, new);
            out.push(e);
        }
        out
    }

    fn head(c: &[Entry]) -> Option<(u64, &str)> {
        c.last().map(|e| (e.seq, e.hash.as_str()))
    }

    #[test]
    fn a_sound_chain_verifies() {
        let c = chain(5);
        let v = verify(&c, head(&c)).unwrap();
        assert_eq!(v.entries, 5);
        assert_eq!(v.head, c[4].hash);
        assert_eq!(c[0].prev, GENESIS);
        assert_eq!(verify(&[], Some((0, GENESIS))).unwrap().entries, 0);
    }

    #[test]
    fn an_edited_entry_is_found() {
        let mut c = chain(5);
        c[2].detail = c[2].detail.replace("approved", "denied");
        assert_eq!(verify(&c, head(&c)), Err(Broken::Edited { seq: 3 }));
        let mut c = chain(5);
        c[1].actor = "mallory".into();
        assert_eq!(verify(&c, None), Err(Broken::Edited { seq: 2 }));
    }

    #[test]
    fn an_entry_edited_and_resealed_breaks_the_next_link() {
        let mut c = chain(5);
        c[2].detail = "{}".into();
        c[2].hash = hash(
            c[2].seq,
            c[2].at,
            &c[2].actor,
            &c[2].event,
            c[2].request,
            &c[2].detail,
            &c[2].prev,
        );
        assert_eq!(verify(&c, None), Err(Broken::Unlinked { seq: 4 }));
    }

    #[test]
    fn deleted_entries_are_found_in_the_middle_and_at_the_end() {
        let c = chain(5);
        let h = head(&c).map(|(n, h)| (n, h.to_owned()));
        let mut middle = c.clone();
        middle.remove(1);
        assert_eq!(
            verify(&middle, None),
            Err(Broken::Gap {
                expected: 2,
                found: 3
            })
        );
        let mut end = c.clone();
        end.pop();
        let h = h.as_ref().map(|(n, s)| (*n, s.as_str()));
        assert_eq!(
            verify(&end, h),
            Err(Broken::Truncated {
                expected: 5,
                found: 4
            })
        );
    }

    #[test]
    fn fields_cannot_be_shifted_between_each_other() {
        let a = hash(1, t(0), "ab", "c", None, "{}", GENESIS);
        let b = hash(1, t(0), "a", "bc", None, "{}", GENESIS);
        assert_ne!(a, b);
    }
}
