//! Any bytes as a signed change, and as the Automerge change inside one.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    meshchat_crdt::fuzzing::signed_change(data);
});
