//! The desktop app as its users and its attackers meet it: real daemons on
//! loopback serving the web UI; the security checks spoken to over raw
//! HTTP, and two people chatting through headless Chromium pages.
//!
//! The browser tests need Chromium (`apt-get install -y chromium`, or
//! `MESHCHAT_CHROME=/path/to/chrome`); without one they say so loudly and
//! pass as skipped. CI installs it (`.ci/run`).

// Test helpers outside `#[test]` functions panic on setup failures too.
#![allow(clippy::unwrap_used)]

mod chat;
mod http;
mod people;
mod relay;
mod support;
