//! Which WebTransport draft a client speaks, read from its HTTP/3 SETTINGS,
//! and the one set of SETTINGS the server announces to every client.
//!
//! Browsers speak different drafts of draft-ietf-webtrans-http3: Chromium
//! and Firefox announce draft-02 (`0x2b603742`), Safari 26.4+ the
//! draft-07..14 `WT_MAX_SESSIONS` identifiers (`0xc671706a`, `0x14e9cd29`)
//! with flow-control limits, and draft-15/16 clients `WT_ENABLED`
//! (`0x2c7cf000`). The server's SETTINGS go out before the client's arrive
//! (RFC 9114 section 7.2.4.2 forbids waiting for them), so one set serves
//! all: every identifier a browser requires, and none that only announces
//! something optional (see docs/webtransport.md for why each is there).

/// draft-02 `SETTINGS_ENABLE_WEBTRANSPORT` (sent by h3 itself).
const ENABLE_WEBTRANSPORT_02: u64 = 0x2b60_3742;
/// draft-07..12 `SETTINGS_WEBTRANSPORT_MAX_SESSIONS`; Safari requires it.
const WT_MAX_SESSIONS_07: u64 = 0xc671_706a;
/// draft-13/14 `SETTINGS_WT_MAX_SESSIONS`.
const WT_MAX_SESSIONS_13: u64 = 0x14e9_cd29;
/// draft-15+ `SETTINGS_WT_ENABLED`.
const WT_ENABLED_15: u64 = 0x2c7c_f000;
/// RFC 9297 `SETTINGS_H3_DATAGRAM`, and the identifier of its drafts that
/// older Chromium sent.
const H3_DATAGRAM: u64 = 0x33;
const H3_DATAGRAM_DRAFT04: u64 = 0xff_d277;
/// `SETTINGS_WT_INITIAL_MAX_DATA` and `..._MAX_STREAMS_UNI` / `_BIDI`.
const WT_INITIAL_MAX_DATA: u64 = 0x2b61;
const WT_INITIAL_MAX_STREAMS_UNI: u64 = 0x2b64;
const WT_INITIAL_MAX_STREAMS_BIDI: u64 = 0x2b65;

/// SETTINGS the server sends beyond those h3 sends itself (`0x6`, `0x8`=1,
/// `0x33`=1, `0x2b603742`=1, `0x2b603743`=1 and a GREASE entry).
pub(super) const ANNOUNCED: [(u64, u64); 2] = [(WT_MAX_SESSIONS_07, 1), (WT_ENABLED_15, 1)];

/// The newest WebTransport draft a client announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Draft {
    /// draft-02: `SETTINGS_ENABLE_WEBTRANSPORT` (Chromium, Firefox).
    Draft02,
    /// draft-07..12: `SETTINGS_WEBTRANSPORT_MAX_SESSIONS` `0xc671706a`.
    Draft07,
    /// draft-13/14: `SETTINGS_WT_MAX_SESSIONS` `0x14e9cd29` (Safari 26.4+).
    Draft13,
    /// draft-15 and later: `SETTINGS_WT_ENABLED`.
    Draft15,
}

impl Draft {
    /// The name reported to the client and in logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Draft::Draft02 => "draft-02",
            Draft::Draft07 => "draft-07",
            Draft::Draft13 => "draft-13",
            Draft::Draft15 => "draft-15",
        }
    }
}

/// The limits a client set on what the server sends, where it announced
/// them (WebTransport flow control).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ClientLimits {
    /// Bytes the server may send on the session's streams.
    pub max_data: u64,
    /// Unidirectional streams the server may open.
    pub max_streams_uni: u64,
}

/// What the client's SETTINGS say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ClientSettings {
    /// The newest draft it announced.
    pub draft: Draft,
    /// It speaks WebTransport flow control: the server grants it credit with
    /// capsules (a client that does not ignores them, as RFC 9297 says).
    pub flow_control: bool,
    /// The limits it announced, which the server honours; `None` when it
    /// announced none (then nothing limits the server).
    pub limits: Option<ClientLimits>,
}

/// Reads a client's SETTINGS (`get` returns a setting's value); `None`
/// unless they enable WebTransport and HTTP datagrams.
pub(super) fn client(get: impl Fn(u64) -> Option<u64>) -> Option<ClientSettings> {
    let on = |id| get(id).is_some_and(|v| v >= 1);
    let draft = if get(WT_ENABLED_15) == Some(1) {
        Draft::Draft15
    } else if on(WT_MAX_SESSIONS_13) {
        Draft::Draft13
    } else if on(WT_MAX_SESSIONS_07) {
        Draft::Draft07
    } else if get(ENABLE_WEBTRANSPORT_02) == Some(1) {
        Draft::Draft02
    } else {
        return None;
    };
    if !on(H3_DATAGRAM) && !on(H3_DATAGRAM_DRAFT04) {
        return None;
    }
    let initial = [
        WT_INITIAL_MAX_DATA,
        WT_INITIAL_MAX_STREAMS_UNI,
        WT_INITIAL_MAX_STREAMS_BIDI,
    ];
    let announced_limits = initial.iter().any(|id| get(*id).is_some());
    Some(ClientSettings {
        draft,
        flow_control: announced_limits || draft >= Draft::Draft15,
        limits: announced_limits.then(|| ClientLimits {
            max_data: get(WT_INITIAL_MAX_DATA).unwrap_or(0),
            max_streams_uni: get(WT_INITIAL_MAX_STREAMS_UNI).unwrap_or(0),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(u64, u64)]) -> impl Fn(u64) -> Option<u64> + '_ {
        move |id| pairs.iter().find(|(k, _)| *k == id).map(|(_, v)| *v)
    }

    #[test]
    fn each_browser_is_read_as_the_draft_it_speaks() {
        let chromium = [(0x2b60_3742, 1), (0x33, 1), (0x2b60_3743, 1)];
        let c = client(settings(&chromium)).unwrap();
        assert_eq!(
            (c.draft, c.flow_control, c.limits),
            (Draft::Draft02, false, None)
        );
        // Safari 26.4-26.6 as reported: no draft-02 setting.
        let safari = [
            (0x33, 1),
            (0xc671_706a, 1),
            (0x14e9_cd29, 1),
            (0x2b61, 8 << 20),
            (0x2b64, 100),
            (0x2b65, 100),
        ];
        let s = client(settings(&safari)).unwrap();
        assert_eq!(s.draft, Draft::Draft13);
        assert!(s.flow_control);
        assert_eq!(
            s.limits,
            Some(ClientLimits {
                max_data: 8 << 20,
                max_streams_uni: 100
            })
        );
        let d16 = client(settings(&[(0x2c7c_f000, 1), (0x33, 1)])).unwrap();
        assert_eq!(
            (d16.draft, d16.flow_control, d16.limits),
            (Draft::Draft15, true, None)
        );
        let d07 = client(settings(&[(0xc671_706a, 4), (0xff_d277, 1)])).unwrap();
        assert_eq!(d07.draft, Draft::Draft07);
    }

    #[test]
    fn without_webtransport_or_datagrams_there_is_no_session() {
        assert_eq!(client(settings(&[(0x33, 1)])), None);
        assert_eq!(client(settings(&[(0x2b60_3742, 1)])), None);
        assert_eq!(client(settings(&[(0x2b60_3742, 0), (0x33, 1)])), None);
        assert_eq!(client(settings(&[(0x2c7c_f000, 2), (0x33, 1)])), None);
    }
}
