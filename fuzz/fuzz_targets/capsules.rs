//! Fuzzes WebTransport capsules a client sends on the CONNECT stream, split into reads anywhere
//! (`rtgate::fuzzing::capsules` says what must hold).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtgate::fuzzing::capsules(data));
