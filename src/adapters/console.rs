//! Notices as readable lines on standard output (logs go to standard error).

use std::io::Write;

use async_trait::async_trait;

use crate::domain::alert::NoticeKind;
use crate::ports::{Notifier, SendError, StoredNotice};

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
        n.summary,
        n.fingerprint
    )
}

#[async_trait]
impl Notifier for Console {
    async fn send(&self, notice: &StoredNotice) -> Result<(), SendError> {
        let line = format_line(notice);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .map_err(|e| SendError::Retryable(format!("cannot write to standard output: {e}")))
    }
}
