//! Any bytes to every decoder that reads from the network or the control socket.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    meshchat_node::fuzzing::wire_decoders(data);
});
