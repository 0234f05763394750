//! WebTransport flow control for one session (draft-13 and later): the
//! credit the server grants a client that speaks it, and the client's limits
//! on what the server sends, which the server honours. Pure bookkeeping:
//! the session sends the capsules this returns.

use bytes::Bytes;

use super::capsule::{self, Capsule};
use super::negotiate::ClientSettings;

/// Bytes a client may send ahead of the server's reading (its frames are
/// bounded by the frame limit and its rate limit, so this is never the
/// brake); more is granted as it is read.
const RECV_WINDOW: u64 = 4 << 20;
/// Bidirectional streams a client may open: the session's one.
const CLIENT_BIDI_STREAMS: u64 = 1;

/// One session's flow-control state.
#[derive(Debug)]
pub(super) struct Flow {
    /// The server grants credit (the client speaks flow control).
    grants: bool,
    /// The limit last granted, and the bytes read from the client so far.
    granted: u64,
    read: u64,
    /// The client's limits on the server, if it set any.
    limits: Option<SendLimits>,
}

#[derive(Debug)]
struct SendLimits {
    max_data: u64,
    sent: u64,
    max_uni: u64,
    opened_uni: u64,
    /// The limits at which a blocked capsule was last sent (one per limit).
    told_data: Option<u64>,
    told_uni: Option<u64>,
}

/// Whether bytes may be sent now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Credit {
    /// Counted: send them.
    Granted,
    /// Over the client's limit: wait for its `WT_MAX_DATA` (having sent it
    /// this `WT_DATA_BLOCKED` capsule, if any).
    Blocked(Option<Bytes>),
}

impl Flow {
    /// The state for a client with these SETTINGS.
    pub(super) fn new(client: &ClientSettings) -> Self {
        Flow {
            grants: client.flow_control,
            granted: 0,
            read: 0,
            limits: client.limits.map(|l| SendLimits {
                max_data: l.max_data,
                sent: 0,
                max_uni: l.max_streams_uni,
                opened_uni: 0,
                told_data: None,
                told_uni: None,
            }),
        }
    }

    /// The capsules that follow the 200: the client's one bidirectional
    /// stream and its first data window. A strict client opens no stream
    /// before it has them.
    pub(super) fn opening_grants(&mut self) -> Vec<Bytes> {
        if !self.grants {
            return Vec::new();
        }
        self.granted = RECV_WINDOW;
        vec![
            capsule::max_streams_bidi(CLIENT_BIDI_STREAMS),
            capsule::max_data(self.granted),
        ]
    }

    /// `n` bytes read from the client's streams; a new `WT_MAX_DATA` once
    /// half the window is used.
    pub(super) fn on_read(&mut self, n: u64) -> Option<Bytes> {
        self.read += n;
        (self.grants && self.granted.saturating_sub(self.read) < RECV_WINDOW / 2)
            .then(|| self.grant())
    }

    fn grant(&mut self) -> Bytes {
        self.granted = self.read + RECV_WINDOW;
        capsule::max_data(self.granted)
    }

    /// A capsule from the client: its limits move (never back), and a
    /// client blocked on ours gets a fresh grant.
    pub(super) fn on_capsule(&mut self, c: &Capsule) -> Option<Bytes> {
        match (c, &mut self.limits) {
            (Capsule::MaxData(v), Some(l)) => l.max_data = l.max_data.max(*v),
            (Capsule::MaxStreamsUni(v), Some(l)) => l.max_uni = l.max_uni.max(*v),
            (Capsule::DataBlocked(_), _) if self.grants => return Some(self.grant()),
            _ => {}
        }
        None
    }

    /// Counts `n` bytes about to be sent on the session's streams.
    pub(super) fn take_data(&mut self, n: u64) -> Credit {
        let Some(l) = &mut self.limits else {
            return Credit::Granted;
        };
        if l.sent + n <= l.max_data {
            l.sent += n;
            return Credit::Granted;
        }
        let tell = (l.told_data != Some(l.max_data)).then(|| {
            l.told_data = Some(l.max_data);
            capsule::data_blocked(l.max_data)
        });
        Credit::Blocked(tell)
    }

    /// Counts a unidirectional stream about to be opened: `Ok` if the
    /// client allows one more, else `Err` with the `WT_STREAMS_BLOCKED`
    /// capsule to send (once per limit).
    pub(super) fn take_uni(&mut self) -> Result<(), Option<Bytes>> {
        let Some(l) = &mut self.limits else {
            return Ok(());
        };
        if l.opened_uni < l.max_uni {
            l.opened_uni += 1;
            return Ok(());
        }
        Err((l.told_uni != Some(l.max_uni)).then(|| {
            l.told_uni = Some(l.max_uni);
            capsule::streams_blocked_uni(l.max_uni)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::webtransport::negotiate::{ClientLimits, Draft};

    fn safari() -> ClientSettings {
        ClientSettings {
            draft: Draft::Draft13,
            flow_control: true,
            limits: Some(ClientLimits {
                max_data: 100,
                max_streams_uni: 2,
            }),
        }
    }

    #[test]
    fn a_client_without_flow_control_gets_no_capsules_and_no_limits() {
        let mut f = Flow::new(&ClientSettings {
            draft: Draft::Draft02,
            flow_control: false,
            limits: None,
        });
        assert!(f.opening_grants().is_empty());
        assert_eq!(f.on_read(RECV_WINDOW * 3), None);
        assert_eq!(f.take_data(u64::MAX / 2), Credit::Granted);
        assert_eq!(f.take_uni(), Ok(()));
    }

    #[test]
    fn grants_open_the_stream_and_follow_what_is_read() {
        let mut f = Flow::new(&safari());
        let opening = f.opening_grants();
        assert_eq!(
            opening,
            vec![capsule::max_streams_bidi(1), capsule::max_data(RECV_WINDOW)]
        );
        assert_eq!(f.on_read(RECV_WINDOW / 2 - 1), None);
        assert_eq!(
            f.on_read(2),
            Some(capsule::max_data(RECV_WINDOW / 2 + 1 + RECV_WINDOW))
        );
        assert_eq!(
            f.on_capsule(&Capsule::DataBlocked(7)),
            Some(capsule::max_data(RECV_WINDOW / 2 + 1 + RECV_WINDOW))
        );
    }

    #[test]
    fn the_clients_limits_hold_until_it_raises_them() {
        let mut f = Flow::new(&safari());
        assert_eq!(f.take_data(60), Credit::Granted);
        assert_eq!(
            f.take_data(60),
            Credit::Blocked(Some(capsule::data_blocked(100)))
        );
        assert_eq!(
            f.take_data(60),
            Credit::Blocked(None),
            "told once per limit"
        );
        assert_eq!(f.on_capsule(&Capsule::MaxData(90)), None);
        assert_eq!(
            f.take_data(60),
            Credit::Blocked(None),
            "a lower limit is ignored"
        );
        f.on_capsule(&Capsule::MaxData(200));
        assert_eq!(f.take_data(60), Credit::Granted);
        assert_eq!((f.take_uni(), f.take_uni()), (Ok(()), Ok(())));
        assert_eq!(f.take_uni(), Err(Some(capsule::streams_blocked_uni(2))));
        assert_eq!(f.take_uni(), Err(None));
        f.on_capsule(&Capsule::MaxStreamsUni(3));
        assert_eq!(f.take_uni(), Ok(()));
    }
}
