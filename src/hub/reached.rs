//! How far each user's inbox has reached a live session on this node: the
//! highest inbox `seq` handed to one of its sessions, live or in a login's
//! replay. Push asks it whether a stored direct message was received before
//! pushing it; in a cluster the marks are also shared through the broker.
//! Marks are forgotten after [`KEEP`] (push asks within seconds).

use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::protocol::Id;

/// How long a mark is kept after it last moved.
pub const KEEP: Duration = Duration::from_secs(600);

#[derive(Debug)]
struct Mark {
    seq: u64,
    at: Instant,
    shared: bool,
}

/// The marks of one node.
#[derive(Debug, Default)]
pub struct Reached {
    marks: DashMap<Id, Mark>,
}

impl Reached {
    /// `user`'s inbox reached a session up to `seq` (never moves back).
    pub fn mark(&self, user: &Id, seq: u64) {
        if let Some(mut m) = self.marks.get_mut(user) {
            if seq > m.seq {
                *m = Mark {
                    seq,
                    at: Instant::now(),
                    shared: false,
                };
            }
            return;
        }
        self.marks.insert(
            user.clone(),
            Mark {
                seq,
                at: Instant::now(),
                shared: false,
            },
        );
    }

    /// How far `user`'s inbox reached a session here (0: not known).
    pub fn get(&self, user: &Id) -> u64 {
        self.marks.get(user).map_or(0, |m| m.seq)
    }

    /// The marks that moved since the last call (to share them), and
    /// marks older than [`KEEP`] forgotten.
    pub fn unshared(&self) -> Vec<(Id, u64)> {
        let mut out = Vec::new();
        self.marks.retain(|user, m| {
            if !m.shared {
                m.shared = true;
                out.push((user.clone(), m.seq));
            }
            m.at.elapsed() < KEEP
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_move_forward_and_are_shared_once() {
        let r = Reached::default();
        let u = Id::parse("u").unwrap();
        assert_eq!(r.get(&u), 0);
        r.mark(&u, 5);
        r.mark(&u, 3);
        assert_eq!(r.get(&u), 5);
        assert_eq!(r.unshared(), vec![(u.clone(), 5)]);
        assert!(r.unshared().is_empty());
        r.mark(&u, 5);
        assert!(r.unshared().is_empty());
        r.mark(&u, 6);
        assert_eq!(r.unshared(), vec![(u.clone(), 6)]);
    }
}
