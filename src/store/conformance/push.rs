//! The push side of every store ([`crate::store::PushStore`]):
//! registrations replaced by id, kept oldest first, cut to the limit by
//! dropping the oldest, removed one by one.

use std::sync::Arc;

use super::fixtures::*;
use crate::store::{MAX_REGISTRATIONS, Registration, Retention};

fn reg(id: &str, created: u64) -> Registration {
    Registration {
        id: id.into(),
        data: format!(r#"{{"apns":"{id}"}}"#),
        created,
    }
}

pub(super) async fn push_registrations_are_kept_per_user_up_to_the_limit(make: Make) {
    let f = make(Arc::new(Recorder::default()), Retention::default()).await;
    let store = f.store.clone();
    let (u, v) = (id("u"), id("v"));
    assert!(store.registrations(&u).await.unwrap().is_empty());
    store.add_registration(&u, reg("a", 10)).await.unwrap();
    store.add_registration(&u, reg("b", 20)).await.unwrap();
    store.add_registration(&v, reg("a", 5)).await.unwrap();
    // The same device again: its entry replaced, not a second one.
    let mut again = reg("a", 30);
    again.data = r#"{"apns":"a2"}"#.into();
    store.add_registration(&u, again.clone()).await.unwrap();
    assert_eq!(
        store.registrations(&u).await.unwrap(),
        vec![reg("b", 20), again]
    );
    assert_eq!(store.registrations(&v).await.unwrap(), vec![reg("a", 5)]);
    // Past the limit the oldest go.
    for n in 0..MAX_REGISTRATIONS as u64 {
        store
            .add_registration(&u, reg(&format!("n{n:02}"), 100 + n))
            .await
            .unwrap();
    }
    let ids: Vec<String> = store
        .registrations(&u)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let want: Vec<String> = (0..MAX_REGISTRATIONS).map(|n| format!("n{n:02}")).collect();
    assert_eq!(ids, want);
    assert!(store.remove_registration(&u, "n03".into()).await.unwrap());
    assert!(!store.remove_registration(&u, "n03".into()).await.unwrap());
    assert!(
        !store
            .remove_registration(&id("w"), "x".into())
            .await
            .unwrap()
    );
    assert_eq!(
        store.registrations(&u).await.unwrap().len(),
        MAX_REGISTRATIONS - 1
    );
    assert_eq!(store.registrations(&v).await.unwrap().len(), 1);
}

pub(super) async fn push_jobs_are_claimed_when_due_leased_and_finished(make: Make) {
    let f = make(Arc::new(Recorder::default()), Retention::default()).await;
    let store = f.store.clone();
    let lease = std::time::Duration::from_secs(30);
    let a = store.schedule_push(1_000, "a".into()).await.unwrap();
    let b = store.schedule_push(500, "b".into()).await.unwrap();
    let c = store.schedule_push(90_000, "c".into()).await.unwrap();
    assert!(store.claim_pushes(100, lease, 10).await.unwrap().is_empty());
    // Due first comes first; the limit holds; a claimed job is leased.
    let first = store.claim_pushes(2_000, lease, 1).await.unwrap();
    assert_eq!(
        (first[0].key.as_str(), first[0].body.as_str(), first[0].due),
        (b.as_str(), "b", 500)
    );
    let second = store.claim_pushes(2_000, lease, 10).await.unwrap();
    assert_eq!(
        second.iter().map(|j| j.key.clone()).collect::<Vec<_>>(),
        vec![a.clone()]
    );
    // A job not finished within its lease is due again.
    let again = store.claim_pushes(2_000 + 30_000, lease, 10).await.unwrap();
    let mut keys: Vec<String> = again.iter().map(|j| j.key.clone()).collect();
    keys.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(keys, want);
    store.finish_pushes(vec![a, b]).await.unwrap();
    let late = store.claim_pushes(u64::MAX / 2, lease, 10).await.unwrap();
    assert_eq!(
        late.iter().map(|j| j.key.clone()).collect::<Vec<_>>(),
        vec![c]
    );
}
