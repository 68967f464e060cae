//! The end-to-end encryption decoders: raw bytes, and valid key shares,
//! sealed changes and sealed boxes bent by the input (a bent record must
//! never open).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    meshchat_crdt::fuzzing::e2e_records(data);
});
