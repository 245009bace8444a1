//! Panics caught where a task would otherwise die with them: a panic is a
//! fault in purser, and it is turned into a failure that is reported, never
//! into a task that silently stops.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

/// What a panic said, as text.
pub fn panic_text(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Runs `work`, turning a panic inside it into `Err` with its text.
pub async fn caught<T>(work: impl Future<Output = T>) -> Result<T, String> {
    AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(|p| panic_text(p.as_ref()))
}

/// Runs `work` now, turning a panic inside it into `Err` with its text.
pub fn caught_now<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(work)).map_err(|p| panic_text(p.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_its_text() {
        assert_eq!(caught(async { 7 }).await, Ok(7));
        let n: Option<u32> = None;
        let r = caught(async move { n.map(|n| n + 1).unwrap_or_else(|| panic!("no {}", 7)) }).await;
        assert_eq!(r, Err("no 7".to_owned()));
        let r = caught(async { panic!("plain") }).await;
        assert_eq!(r, Err::<(), _>("plain".to_owned()));
    }
}
