//! Any bytes as a signed change, and as the Automerge change inside one.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        // A panic meshchat contains (Automerge's own, under `catch_unwind`)
        // is not a crash: keep the default hook from aborting on it. A panic
        // that escapes still aborts (libfuzzer-sys catches it at the top).
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| {
        meshchat_crdt::fuzzing::signed_change(data);
    }
);
