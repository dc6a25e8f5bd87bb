//! Fuzzes the RESP request parser: no panic on any bytes, arguments never
//! larger than the input, and the same result whether the input arrives
//! whole or in chunks (see `chorus_server::resp::parse::fuzz_check`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    chorus_server::resp::parse::fuzz_check(data);
});
