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
