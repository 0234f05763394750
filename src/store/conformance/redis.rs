//! Redis-only behaviour, on a real redis-server.

use std::sync::Arc;

use super::fixtures::{Recorder, id, redis, redis_skipped, request};
use crate::model::Channel;
use crate::store::Retention;

/// The `msgId` index entry is written after the append script (it lives in
/// another slot). A node that died in between left a stored message no
/// receipt or amendment could find; the sender, never acked, resends, and
/// the duplicate's answer now writes the entry.
#[tokio::test]
async fn a_resend_restores_the_msg_id_index_entry_a_crash_lost() {
    if redis_skipped("a_resend_restores_the_msg_id_index_entry_a_crash_lost") {
        return;
    }
    let f = redis(Arc::new(Recorder::default()), Retention::default()).await;
    let store = f.store.clone();
    let room = Channel::Room(id("lost"));
    let first = store
        .append(request(room.clone(), 1, Some("c1")))
        .await
        .unwrap();
    // What a crash between the append and the index write leaves.
    let url = f.redis_url.clone().expect("a Redis fixture");
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let removed: i64 = redis::cmd("DEL")
        .arg("rtgate:mid:m1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(removed, 1, "the entry was there");
    assert!(store.locate(vec!["m1".into()]).await.unwrap().is_empty());
    // The resend: the original ack, and the entry is back.
    let again = store
        .append(request(room.clone(), 1, Some("c1")))
        .await
        .unwrap();
    assert_eq!(
        (again.msg_id.as_str(), again.seq),
        (first.msg_id.as_str(), first.seq)
    );
    let found = store.locate(vec!["m1".into()]).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!((&found[0].channel, found[0].seq), (&room, first.seq));
}
