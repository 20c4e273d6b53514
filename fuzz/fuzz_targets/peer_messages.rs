//! Arbitrary bytes as every message a peer sends or the disk holds: each
//! decoder answers with a value or an error, never a panic, a hang or a
//! huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    ordo_executor::decode_untrusted(bytes);
});
