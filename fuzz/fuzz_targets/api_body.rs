//! Fuzzes bodies of the server API's control endpoints (disconnect, join/leave, broadcast)
//! (`rtgate::fuzzing::api_body` says what must hold).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtgate::fuzzing::api_body(data));
