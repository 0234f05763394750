//! Fuzzes a client's HTTP/3 SETTINGS, then its flow-control capsules against the server's sends
//! (`rtgate::fuzzing::settings_and_flow` says what must hold).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtgate::fuzzing::settings_and_flow(data));
