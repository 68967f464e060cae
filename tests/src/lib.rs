//! integration tests crate
