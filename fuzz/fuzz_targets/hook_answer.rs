//! Fuzzes the connect, join and publish hooks' answers (status and body from the backend)
//! (`rtgate::fuzzing::hook_answer` says what must hold).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtgate::fuzzing::hook_answer(data));
