//! One runner carries a request out at a time, under a lease on its row
//! that it renews while it works: a runner that dies is taken over within
//! a minute, and one that is alive, however slow its cloud, never is.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Duration;
use purser::domain::model::{Account, ExternalId};
use purser::domain::request::{Action, State};
use purser::engine::executor::Paused;
use purser::ports::{
    ActionError, Actions, CallAnswer, Clock, CloudCall, LostCall, NextCall, ProviderError, ReadBack,
};
use tokio::sync::Notify;

use super::Crashing;
use super::huawei::rig_for_leases;

/// A cloud whose calls wait at a gate: the runner making one stays busy.
struct Gated {
    inner: Arc<dyn Actions>,
    entered: Arc<Notify>,
    open: Arc<Notify>,
}

#[async_trait]
impl Actions for Gated {
    async fn next(
        &self,
        account: &Account,
        action: &Action,
        done: &[(CloudCall, CallAnswer)],
    ) -> Result<NextCall, ProviderError> {
        self.inner.next(account, action, done).await
    }
    async fn call(
        &self,
        account: &Account,
        call: &CloudCall,
        key: &str,
    ) -> Result<CallAnswer, ActionError> {
        self.entered.notify_one();
        self.open.notified().await;
        self.inner.call(account, call, key).await
    }
    async fn read_back(
        &self,
        account: &Account,
        lost: LostCall<'_>,
    ) -> Result<ReadBack, ProviderError> {
        self.inner.read_back(account, lost).await
    }
}

fn pay() -> Action {
    Action::Pay {
        orders: vec![ExternalId::parse(super::huawei::ORDER).unwrap()],
        coupons: vec![],
        discount: None,
        offered: vec![],
    }
}

#[tokio::test]
async fn a_runner_that_died_mid_call_is_taken_over_within_a_minute() {
    let (rig, hw) = rig_for_leases().await;
    let r = rig.approved(pay()).await;
    // It records the payment as under way (write 2) and dies before sending it.
    let dying = Arc::new(Crashing::new(rig.store.clone(), 2, true));
    assert!(rig.executor(dying).run(r.id).await.is_err());
    let restarted = rig.executor(Arc::new(rig.store.clone()));
    let ran = restarted.run(r.id).await.unwrap().unwrap();
    assert_eq!(ran.paused, Some(Paused::Elsewhere), "its lease still runs");
    // Half a minute later the dead runner's lease has lapsed: the payment
    // is read back (not made), made once, and done.
    rig.clock.advance(Duration::seconds(31));
    rig.mock.set_now(rig.clock.now());
    let ran = restarted.run(r.id).await.unwrap().unwrap();
    assert_eq!(ran.request.state, State::Succeeded, "{:?}", ran.paused);
    assert_eq!(hw.lock().unwrap().charges.len(), 1);
    rig.mock.assert_clean();
}

#[tokio::test]
async fn a_live_runner_keeps_its_lease_however_long_its_call_takes() {
    let (rig, hw) = rig_for_leases().await;
    let r = rig.approved(pay()).await;
    let entered = Arc::new(Notify::new());
    let open = Arc::new(Notify::new());
    let store = Arc::new(Crashing::healthy(rig.store.clone()));
    let mut holds = store.holds();
    let slow = rig.executor_with(store, |inner| {
        Arc::new(Gated {
            inner,
            entered: entered.clone(),
            open: open.clone(),
        }) as Arc<dyn Actions>
    });
    let running = tokio::spawn(async move { slow.run(r.id).await });
    entered.notified().await;
    let other = rig.executor(Arc::new(rig.store.clone()));
    // Five minutes of a call that does not return: the runner renews its
    // lease every ten seconds, and another runner finds it held each time.
    for step in 1..=30 {
        rig.clock.advance(Duration::seconds(10));
        holds.wait_for(|n| *n > step).await.unwrap();
        let ran = other.run(r.id).await.unwrap().unwrap();
        assert_eq!(ran.paused, Some(Paused::Elsewhere), "after {step}0 s");
    }
    open.notify_one();
    let ran = running.await.unwrap().unwrap().unwrap();
    assert_eq!(ran.request.state, State::Succeeded);
    assert_eq!(hw.lock().unwrap().charges.len(), 1, "paid once");
    // Done, its lease is given up: nothing waits on it.
    let ran = other.run(r.id).await.unwrap().unwrap();
    assert_eq!((ran.request.state, ran.paused), (State::Succeeded, None));
}
