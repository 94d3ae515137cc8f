//! Pub/Sub delivers at least once: however often a message comes, one file and one row.

use crate::helpers::*;

#[tokio::test]
async fn a_redelivered_message_is_acked_as_a_duplicate_and_written_once() {
    let app = spawn_app().await;

    let first = json_body(app.push_fixture("order.json").await, "/push", 200).await;
    let second = json_body(app.push_fixture("order.json").await, "/push", 200).await;

    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["landing_uri"], first["landing_uri"]);
    assert_eq!(app.landed_objects().len(), 1);
    assert_eq!(app.count("order"), 1);
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
