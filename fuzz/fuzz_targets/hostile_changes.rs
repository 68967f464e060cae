//! Structured hostile changes on a real group: no panic, no divergence.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    meshchat_crdt::fuzzing::hostile_changes(data);
});
