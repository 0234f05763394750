//! Entry points for the cargo-fuzz targets in `fuzz/`: each feeds bytes to
//! a parser of untrusted input that is not public API, and checks what must
//! hold whatever the bytes (no panic, and the invariants named below). Not
//! part of rtgate's API.

use crate::transport::webtransport::fuzzing as wt;

/// WebTransport capsules from a client, split into reads where the input
/// says: the reader never panics and never takes more than it was given.
pub fn capsules(data: &[u8]) {
    wt::capsules(data);
}

/// A client's HTTP/3 SETTINGS (varint pairs) read for the draft it speaks,
/// then flow-control capsules from it against the server's sends: the
/// server never counts more sent than the client allowed.
pub fn settings_and_flow(data: &[u8]) {
    wt::settings_and_flow(data);
}

/// A hook's answer: the first byte picks the hook and the status, the rest
/// is the body. Never panics; a publish rewrite never leaves a body over
/// the frame limit.
pub fn hook_answer(data: &[u8]) {
    crate::hooks::fuzz_answer(data);
}

/// A body of the server API's control endpoints (`/api/disconnect`,
/// `/api/join`, `/api/broadcast`), as their extractor reads it.
pub fn api_body(data: &[u8]) {
    crate::api::fuzz_body(data);
}
