//! Notices as readable lines on standard output (logs go to standard error).

use std::io::Write;

use async_trait::async_trait;

use crate::domain::alert::NoticeKind;
use crate::domain::request::Request;
use crate::engine::request_view::RequestView;
use crate::ports::{MessageRef, Notifier, RequestMessages, SendError, StoredNotice};

pub struct Console;

/// One line per notice: when, what happened, severity, rule, where, and why.
pub fn format_line(n: &StoredNotice) -> String {
    let what = match n.kind {
        NoticeKind::Firing if n.escalated_from.is_some() => "ESCALATED",
        NoticeKind::Firing => "FIRING",
        NoticeKind::Repeat => "STILL FIRING",
        NoticeKind::Resolved => "RESOLVED",
        NoticeKind::Acknowledged => "ACKNOWLEDGED",
        NoticeKind::Silenced => "SILENCED",
        NoticeKind::Paged => "PAGED",
    };
    let target = if n.resource.is_empty() {
        n.account.clone()
    } else {
        format!("{}/{}", n.account, n.resource)
    };
    format!(
        "{} {what} [{}] {} {target}: {} (fingerprint {})",
        n.decided_at.format("%Y-%m-%d %H:%M:%SZ"),
        n.severity,
        n.rule,
        n.paged.as_deref().unwrap_or(&n.summary),
        n.fingerprint
    )
}

#[async_trait]
impl Notifier for Console {
    async fn send(&self, notice: &StoredNotice) -> Result<(), SendError> {
        let line = format_line(notice);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .map_err(|e| SendError::transient(format!("cannot write to standard output: {e}")))
    }
}

fn print(line: &str) -> Result<(), SendError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .map_err(|e| SendError::transient(format!("cannot write to standard output: {e}")))
}

/// A request as a line when it is opened, and a line each time its state
/// changes; the console has no buttons (decide with `approve` in chat).
#[async_trait]
impl RequestMessages for Console {
    async fn post_request(&self, r: &Request) -> Result<Option<MessageRef>, SendError> {
        let v = RequestView::of(r);
        print(&format!("REQUEST {}", v.fallback))?;
        Ok(Some(MessageRef {
            channel: "console".into(),
            message: r.id.to_string(),
        }))
    }

    async fn edit_request(&self, _at: &MessageRef, _r: &Request) -> Result<(), SendError> {
        Ok(())
    }

    async fn reply_request(&self, _at: &MessageRef, text: &str) -> Result<(), SendError> {
        print(&format!("REQUEST {text}"))
    }
}
