//! Routes decide which outputs hear of an alert, by its labels.

use crate::helpers::{Setup, World};

const LOW: &str = r#"
[[accounts]]
id = "acme"
balance = "¥2,000"

[[accounts]]
id = "other"
balance = "¥2,000"
"#;

#[tokio::test]
async fn alerts_go_where_their_routes_send_them() {
    let world = World::new(
        LOW,
        Setup {
            accounts: &["acme", "other"],
            rules: r#"
[[outputs]]
name = "console"
kind = "console"

[[routes]]
matchers = "account=acme,severity!=C"
outputs = ["hook"]

[[routes]]
outputs = ["console"]
"#,
            ..Setup::default()
        },
    )
    .await;
    let app = world.start().await;
    app.settle().await;
    let events = world.hook.events();
    assert!(!events.is_empty());
    assert!(
        events
            .iter()
            .all(|(kind, _, account, _, _)| kind == "firing" && account == "acme"),
        "only acme's alerts reach the hook: {events:?}"
    );

    app.stop().await;
}
