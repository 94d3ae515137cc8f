//! Pub/Sub delivers at least once: however often a message comes, one file and one row, and
//! a redelivery writes neither again.

use std::os::unix::fs::MetadataExt;

use crate::support::*;

/// What would change if a file were written again: its inode, and its times.
fn identity(path: &std::path::Path) -> (u64, i64, i64, i64, i64) {
    let m = std::fs::metadata(path).unwrap();
    (
        m.ino(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

#[tokio::test]
async fn a_redelivered_message_is_acked_as_a_duplicate_and_written_once() {
    let app = spawn_app().await;
    let object = "output/order/2026/11/25/09/14/order_20261125091403_1000001.json";

    let first = json_body(app.push_fixture("order.json").await, "/push", 200).await;
    let file = identity(&app.landing_root().join(object));
    let row = app.query("SELECT rowid, received_at FROM \"order\"");
    let second = json_body(app.push_fixture("order.json").await, "/push", 200).await;

    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["landing_uri"], first["landing_uri"]);
    assert_eq!(app.landed_objects(), [object]);
    assert_eq!(
        identity(&app.landing_root().join(object)),
        file,
        "the file was not written again"
    );
    assert_eq!(
        app.query("SELECT rowid, received_at FROM \"order\""),
        row,
        "the row was not written again"
    );
    app.stop().await;
}

#[tokio::test]
async fn concurrent_redeliveries_still_write_one_file_and_one_row() {
    let app = spawn_app().await;

    let pushes = (0..20).map(|_| app.push_fixture("inventory.json"));
    let responses = futures::future::join_all(pushes).await;

    let mut fresh = 0;
    for response in responses {
        let ack = json_body(response, "/push", 200).await;
        if ack["duplicate"] == false {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "exactly one delivery stores the message");
    assert_eq!(app.landed_objects().len(), 1);
    assert_eq!(app.count("inventory"), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_redelivered_poison_message_keeps_one_dead_letter() {
    let app = spawn_app().await;

    for _ in 0..3 {
        let ack = json_body(app.push_fixture("invalid-order.json").await, "/push", 200).await;
        assert_eq!(ack["outcome"], "dead_lettered");
    }

    assert_eq!(
        app.landed_objects(),
        vec!["output/_dead_letter/2026/11/25/09/15/1000004.json".to_string()]
    );
    assert_eq!(app.count("dead_letter"), 1);
    assert_eq!(app.count("order"), 0);
    app.stop().await;
}
