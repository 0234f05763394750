//! The one fan-out rule, as a pure function: a room message goes to the
//! room's member sessions except the sending session; a direct message goes
//! to every session of the recipient, and a copy without `seq` (it is not in
//! their inbox) to the sender's other sessions. The local dispatcher, the
//! volatile path and the Redis store all route by this plan's output.

use bytes::Bytes;

use super::{Channel, Delivery, Envelope, OutFrame, Position, SessionId, Target, TraceParent};
use crate::protocol::Delivered;

/// The deliveries of one message.
///
/// `message.seq` set means a stored message at that seq of `channel`;
/// unset means a volatile one. `payload` is `message` serialized (the caller
/// has it already: the store serializes once to store it). `origin` is the
/// sending session, `None` for the server API. `trace` travels with every
/// envelope, so that delivery on any node joins the message's trace.
pub fn plan(
    message: &Delivered,
    payload: Bytes,
    channel: &Channel,
    origin: Option<SessionId>,
    trace: Option<TraceParent>,
) -> Vec<Envelope> {
    let stored = message.seq.is_some();
    let how = if stored {
        Delivery::Reliable
    } else {
        Delivery::Volatile
    };
    let position = message.seq.map(|seq| Position {
        channel: channel.clone(),
        seq,
    });
    let frame = OutFrame::new(payload, how, position);
    match channel {
        Channel::Room(room) => vec![Envelope {
            target: Target::Room(room.clone()),
            exclude: origin,
            frame,
            trace,
        }],
        Channel::Inbox(user) => {
            let sender = &message.send_user_id;
            let copy = (sender != user).then(|| {
                // A stored message's copy has no seq; a volatile one is the same frame.
                let payload = if stored {
                    Delivered {
                        seq: None,
                        ..message.clone()
                    }
                    .to_bytes()
                } else {
                    frame.payload.clone()
                };
                Envelope {
                    target: Target::User(sender.clone()),
                    exclude: origin,
                    frame: OutFrame::new(payload, how, None),
                    trace,
                }
            });
            let main = Envelope {
                target: Target::User(user.clone()),
                exclude: None,
                frame,
                trace,
            };
            std::iter::once(main).chain(copy).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Id;

    fn id(s: &str) -> Id {
        Id::parse(s).unwrap()
    }

    fn message(from: &str, seq: Option<u64>) -> Delivered {
        Delivered {
            msg_type: 3,
            send_user_id: id(from),
            received_user_id: None,
            room_id: None,
            biz_type: None,
            biz_opt_module: None,
            msg_body: None,
            msg_id: "m1".into(),
            seq,
            ts: 1,
            volatile: seq.is_none(),
            latest: None,
            chat: None,
        }
    }

    #[test]
    fn room_goes_to_members_minus_the_sending_session() {
        let origin = SessionId::new();
        let m = message("alice", Some(7));
        let room = Channel::Room(id("r"));
        let out = plan(&m, m.to_bytes(), &room, Some(origin), None);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].target, Target::Room(id("r")));
        assert_eq!(out[0].exclude, Some(origin));
        assert_eq!(
            out[0].frame.position,
            Some(Position {
                channel: room,
                seq: 7
            })
        );
        assert_eq!(out[0].frame.how, Delivery::Reliable);
    }

    #[test]
    fn direct_goes_to_every_recipient_session_and_a_seqless_copy_to_the_sender() {
        let origin = SessionId::new();
        let m = message("alice", Some(3));
        let out = plan(
            &m,
            m.to_bytes(),
            &Channel::Inbox(id("bob")),
            Some(origin),
            None,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].target, Target::User(id("bob")));
        assert_eq!(out[0].exclude, None);
        assert_eq!(out[0].frame.position.as_ref().unwrap().seq, 3);
        assert_eq!(out[1].target, Target::User(id("alice")));
        assert_eq!(out[1].exclude, Some(origin));
        assert!(out[1].frame.position.is_none());
        let copy: Delivered = serde_json::from_slice(&out[1].frame.payload).unwrap();
        assert_eq!((copy.seq, copy.msg_id.as_str()), (None, "m1"));
    }

    #[test]
    fn a_message_to_oneself_has_no_copy() {
        let m = message("alice", Some(1));
        let out = plan(&m, m.to_bytes(), &Channel::Inbox(id("alice")), None, None);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn volatile_frames_travel_as_datagrams_and_share_one_payload() {
        let m = message("alice", None);
        let out = plan(&m, m.to_bytes(), &Channel::Inbox(id("bob")), None, None);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|e| e.frame.how == Delivery::Volatile));
        assert!(out.iter().all(|e| e.frame.position.is_none()));
        assert_eq!(out[0].frame.payload, out[1].frame.payload);
    }
}
