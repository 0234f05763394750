//! Envelopes on Redis Pub/Sub: which channel a target listens on, and the
//! bytes of an envelope, `<seq|-> <u|r> <target> <exclude|-> <v|s|c|p>[ <traceparent>]\n<payload>`.
//! Channels carry the hash tag of their keys, so that in a Redis Cluster
//! the store's script can `SPUBLISH` to them in the slot it runs in.

use bytes::Bytes;

use crate::model::{
    Channel, Delivery, Envelope, OutFrame, Position, SessionId, Target, TraceParent,
};
use crate::protocol::Id;

/// The hash tag of a channel's keys: `{i:<user>}` or `{r:<room>}`.
pub(crate) fn tag(c: &Channel) -> String {
    match c {
        Channel::Inbox(u) => format!("{{i:{u}}}"),
        Channel::Room(r) => format!("{{r:{r}}}"),
    }
}

/// The Pub/Sub channel a target's envelopes travel on.
pub(crate) fn pubsub_channel(target: &Target) -> String {
    match target {
        Target::User(u) => format!("rtgate:{{i:{u}}}:ch"),
        Target::Room(r) => format!("rtgate:{{r:{r}}}:ch"),
    }
}

/// Whether envelopes for `target` travel in the same hash slot as the keys
/// of `channel` (so a script working on the channel may publish them).
pub(crate) fn same_slot(target: &Target, channel: &Channel) -> bool {
    matches!(
        (target, channel),
        (Target::User(u), Channel::Inbox(i)) | (Target::Room(u), Channel::Room(i)) if u == i
    )
}

/// An envelope as a Pub/Sub message: its channel and bytes.
pub(crate) fn encode(env: &Envelope) -> (String, Vec<u8>) {
    let (kind, id) = match &env.target {
        Target::User(u) => ("u", u),
        Target::Room(r) => ("r", r),
    };
    let seq = env
        .frame
        .position
        .as_ref()
        .map_or_else(|| "-".to_string(), |p| p.seq.to_string());
    let exclude = env
        .exclude
        .map_or_else(|| "-".to_string(), |s| format!("{:032x}", s.0));
    let how = match env.frame.how {
        Delivery::Volatile => "v",
        Delivery::Reliable => "s",
        Delivery::Control => "c",
        Delivery::Presence => "p",
    };
    let trace = env.trace.map_or_else(String::new, |t| format!(" {t}"));
    let mut msg = format!("{seq} {kind} {id} {exclude} {how}{trace}\n").into_bytes();
    msg.extend_from_slice(&env.frame.payload);
    (pubsub_channel(&env.target), msg)
}

/// Parses a Pub/Sub message back into an envelope; `None` if it is not one.
pub(crate) fn decode(msg: &[u8]) -> Option<Envelope> {
    let nl = msg.iter().position(|b| *b == b'\n')?;
    let head = std::str::from_utf8(&msg[..nl]).ok()?;
    let payload = Bytes::copy_from_slice(&msg[nl + 1..]);
    let mut f = head.split(' ');
    let seq = f.next()?;
    let kind = f.next()?;
    let target = Id::parse(f.next()?).ok()?;
    let exclude = match f.next()? {
        "-" => None,
        hex => Some(SessionId(u128::from_str_radix(hex, 16).ok()?)),
    };
    let how = match f.next()? {
        "v" => Delivery::Volatile,
        "s" => Delivery::Reliable,
        "c" => Delivery::Control,
        "p" => Delivery::Presence,
        _ => return None,
    };
    // Absent when traces are off (and from nodes that predate it).
    let trace = f.next().and_then(TraceParent::parse);
    let (target, channel) = match kind {
        "u" => (Target::User(target.clone()), Channel::Inbox(target)),
        "r" => (Target::Room(target.clone()), Channel::Room(target)),
        _ => return None,
    };
    let position = match seq {
        "-" => None,
        n => Some(Position {
            channel,
            seq: n.parse().ok()?,
        }),
    };
    Some(Envelope {
        target,
        exclude,
        frame: OutFrame::new(payload, how, position),
        trace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Id {
        Id::parse(s).unwrap()
    }

    #[test]
    fn envelopes_round_trip() {
        let sid = SessionId::new();
        let env = Envelope {
            target: Target::Room(id("r1")),
            exclude: Some(sid),
            frame: OutFrame::new(
                Bytes::from_static(br#"{"a":1}"#),
                Delivery::Reliable,
                Some(Position {
                    channel: Channel::Room(id("r1")),
                    seq: 42,
                }),
            ),
            trace: TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        };
        let (channel, wire) = encode(&env);
        assert_eq!(channel, "rtgate:{r:r1}:ch");
        let back = decode(&wire).unwrap();
        assert_eq!(back.target, env.target);
        assert_eq!(back.exclude, Some(sid));
        assert_eq!(back.frame.position, env.frame.position);
        assert_eq!(&back.frame.payload[..], br#"{"a":1}"#);
        assert_eq!(back.trace, env.trace);
        assert!(back.trace.is_some());

        let env = Envelope {
            target: Target::User(id("u")),
            exclude: None,
            frame: OutFrame::new(Bytes::from_static(b"x\ny"), Delivery::Volatile, None),
            trace: None,
        };
        let back = decode(&encode(&env).1).unwrap();
        assert!(back.frame.position.is_none() && back.exclude.is_none());
        assert_eq!(back.frame.how, Delivery::Volatile);
        assert_eq!(&back.frame.payload[..], b"x\ny");
        assert_eq!(back.trace, None);
        assert!(decode(b"garbage").is_none());
    }

    #[test]
    fn slots_follow_hash_tags() {
        assert!(same_slot(&Target::User(id("a")), &Channel::Inbox(id("a"))));
        assert!(!same_slot(&Target::User(id("b")), &Channel::Inbox(id("a"))));
        assert!(same_slot(&Target::Room(id("a")), &Channel::Room(id("a"))));
        assert!(!same_slot(&Target::Room(id("a")), &Channel::Inbox(id("a"))));
        assert_eq!(tag(&Channel::Inbox(id("a"))), "{i:a}");
    }
}
