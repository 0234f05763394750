//! What a login replays, decided without I/O from the store's answer for
//! each channel (one message read after the client's position): replay
//! from where, or nothing and from which seq live frames are new, which
//! channels could not be recovered, and the inbox's latest seq. The login
//! reads the answers; this decides, so the rules are tested without a
//! store or a socket.

use crate::model::Channel;
use crate::store::{Page, StoreError};

/// The replay decided for a login.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Channels to replay, each from its position, one after the other.
    pub(super) replay: Vec<(Channel, u64)>,
    /// Channels with nothing to replay, and the seq up to which live frames
    /// are ones the client already holds.
    pub(super) held: Vec<(Channel, u64)>,
    /// Channels whose history no longer reaches the client's position
    /// (trimmed by retention, or reset): reported to the client.
    pub(super) unrecovered: Vec<String>,
    /// The inbox's latest seq, for the login reply.
    pub(super) inbox_seq: u64,
    /// A store failure: the replay is incomplete.
    pub(super) failed: Option<StoreError>,
}

/// Decides from each channel's position and the store's answer to reading
/// one message after it.
pub(super) fn plan(
    inbox: &Channel,
    probes: impl IntoIterator<Item = (Channel, u64, Result<Page, StoreError>)>,
) -> Plan {
    let mut p = Plan::default();
    for (channel, since, probe) in probes {
        let probe = match probe {
            Ok(probe) => probe,
            Err(e) => {
                p.failed = Some(e);
                continue;
            }
        };
        if channel == *inbox {
            p.inbox_seq = probe.latest;
        }
        if since > probe.latest {
            // The client holds positions the channel never reached: it was
            // reset (forgotten by retention when idle, or rolled back by a
            // Redis failover). What it has now is replayed from the start,
            // and the reset is reported.
            p.unrecovered.push(channel.to_string());
            match probe.latest > 0 {
                true => p.replay.push((channel, 0)),
                false => p.held.push((channel, 0)),
            }
            continue;
        }
        if probe.gap {
            p.unrecovered.push(channel.to_string());
        }
        match probe.messages.is_empty() {
            // Nothing to replay: live frames up to `since` are ones the
            // client already holds.
            true => p.held.push((channel, since)),
            false => p.replay.push((channel, since)),
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Id;

    fn room(r: &str) -> Channel {
        Channel::Room(Id::parse(r).unwrap())
    }

    fn page(latest: u64, first: Option<u64>, gap: bool) -> Result<Page, StoreError> {
        let messages = first
            .map(|s| serde_json::value::RawValue::from_string(format!("{{\"seq\":{s}}}")).unwrap())
            .into_iter()
            .collect();
        Ok(Page {
            latest,
            messages,
            last: first.unwrap_or(0),
            gap,
        })
    }

    #[test]
    fn a_channel_with_news_is_replayed_and_one_without_holds_its_position() {
        let inbox = Channel::Inbox(Id::parse("ann").unwrap());
        let p = plan(
            &inbox,
            [
                (inbox.clone(), 4, page(9, Some(5), false)),
                (room("quiet"), 7, page(7, None, false)),
            ],
        );
        assert_eq!(p.replay, [(inbox.clone(), 4)]);
        assert_eq!(p.held, [(room("quiet"), 7)], "live frames up to 7 are held");
        assert_eq!(p.inbox_seq, 9);
        assert!(p.unrecovered.is_empty() && p.failed.is_none());
    }

    #[test]
    fn history_trimmed_past_the_position_is_replayed_and_reported() {
        let inbox = Channel::Inbox(Id::parse("ann").unwrap());
        let p = plan(&inbox, [(room("busy"), 2, page(500, Some(400), true))]);
        assert_eq!(p.replay, [(room("busy"), 2)]);
        assert_eq!(p.unrecovered, ["room:busy"]);
    }

    #[test]
    fn a_channel_reset_below_the_position_is_replayed_from_the_start() {
        let inbox = Channel::Inbox(Id::parse("ann").unwrap());
        let p = plan(
            &inbox,
            [
                // Rolled back to 3 while the client holds 10.
                (room("rolled"), 10, page(3, None, false)),
                // Forgotten entirely.
                (inbox.clone(), 6, page(0, None, false)),
            ],
        );
        assert_eq!(p.replay, [(room("rolled"), 0)]);
        assert_eq!(p.held, [(inbox.clone(), 0)]);
        assert_eq!(p.unrecovered, ["room:rolled", "inbox"]);
        assert_eq!(p.inbox_seq, 0);
    }

    #[test]
    fn a_store_failure_leaves_the_others_planned() {
        let inbox = Channel::Inbox(Id::parse("ann").unwrap());
        let p = plan(
            &inbox,
            [
                (room("a"), 0, Err(StoreError::Unavailable("down".into()))),
                (room("b"), 0, page(2, Some(1), false)),
            ],
        );
        assert!(p.failed.is_some());
        assert_eq!(p.replay, [(room("b"), 0)]);
    }
}
