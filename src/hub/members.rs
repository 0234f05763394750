//! The sessions of one user or one room on this node. Most users hold one
//! session, so one member is kept inline (no allocation: a map of one
//! costs a 288-byte table per logged-in user); a second member turns it
//! into a map keyed by session id, so rooms of thousands join and leave in
//! constant time.

use std::collections::HashMap;

use super::SessionHandle;
use crate::model::SessionId;

/// The member sessions of one key of the hub.
#[derive(Debug, Default)]
pub(super) enum Members {
    /// No member (only between creating an entry and inserting into it).
    #[default]
    Empty,
    /// One member, inline.
    One(SessionHandle),
    /// Two or more, by session id.
    Many(HashMap<SessionId, SessionHandle>),
}

impl Members {
    /// Adds (or replaces) a member.
    pub(super) fn insert(&mut self, handle: SessionHandle) {
        match self {
            Members::Empty => *self = Members::One(handle),
            Members::One(one) if one.id == handle.id => *one = handle,
            Members::One(_) => {
                let Members::One(one) = std::mem::take(self) else {
                    unreachable!("matched One above");
                };
                *self = Members::Many(HashMap::from([(one.id, one), (handle.id, handle)]));
            }
            Members::Many(map) => {
                map.insert(handle.id, handle);
            }
        }
    }

    /// Removes a member if present; a map left with one member goes back
    /// inline.
    pub(super) fn remove(&mut self, id: &SessionId) {
        match self {
            Members::One(one) if one.id == *id => *self = Members::Empty,
            Members::Many(map) => {
                map.remove(id);
                if map.len() == 1 {
                    let one = map.drain().map(|(_, h)| h).next();
                    *self = one.map_or(Members::Empty, Members::One);
                }
            }
            _ => {}
        }
    }

    /// How many members.
    pub(super) fn len(&self) -> usize {
        match self {
            Members::Empty => 0,
            Members::One(_) => 1,
            Members::Many(map) => map.len(),
        }
    }

    /// Whether there is no member.
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every member, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &SessionHandle> {
        let (one, many) = match self {
            Members::Empty => (None, None),
            Members::One(h) => (Some(h), None),
            Members::Many(map) => (None, Some(map.values())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::hub::queue;
    use crate::protocol::Id;

    fn handle() -> SessionHandle {
        let (tx, _rx) = queue::bounded(1);
        SessionHandle {
            id: SessionId::new(),
            user: Id::parse("u").unwrap(),
            tx,
            closer: Arc::default(),
            direct: None,
        }
    }

    fn ids(m: &Members) -> Vec<SessionId> {
        let mut v: Vec<_> = m.iter().map(|h| h.id).collect();
        v.sort();
        v
    }

    #[test]
    fn grows_from_inline_to_a_map_and_back() {
        let (a, b, c) = (handle(), handle(), handle());
        let mut m = Members::default();
        assert!(m.is_empty());
        m.insert(a.clone());
        m.insert(a.clone());
        assert!(matches!(m, Members::One(_)));
        assert_eq!(ids(&m), vec![a.id]);
        m.insert(b.clone());
        m.insert(c.clone());
        assert!(matches!(m, Members::Many(_)));
        let mut all = vec![a.id, b.id, c.id];
        all.sort();
        assert_eq!(ids(&m), all);
        m.remove(&b.id);
        assert_eq!(m.len(), 2);
        m.remove(&a.id);
        assert!(matches!(m, Members::One(ref h) if h.id == c.id));
        m.remove(&a.id);
        assert_eq!(m.len(), 1, "removing an absent member changes nothing");
        m.remove(&c.id);
        assert!(m.is_empty());
        assert_eq!(m.iter().count(), 0);
    }
}
