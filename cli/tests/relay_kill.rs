//! A relay killed with SIGKILL in the middle of a stream of deposits, then
//! restarted: every deposit it acknowledged is still there, once.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::{
    collections::HashSet,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

use libp2p::Multiaddr;
use meshchat_node::{
    crdt::Identity,
    mailbox::DeliveryToken,
    protocol::{Inbound, MailboxRequest, MailboxResponse},
};
use meshchat_tests::{net::strip_p2p, MailboxClient};

fn start_relay(dir: &Path, listen: &str) -> (Child, Multiaddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshchat"))
        .arg("--data-dir")
        .arg(dir)
        .args(["relay", "--listen", listen, "--json"])
        .env("MESHCHAT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr = ready["addrs"][0].as_str().unwrap().parse().unwrap();
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_deposit_survives_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("relay");
    // One sender deposits hundreds a minute here: lift the per-token rate.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("relay.toml"),
        "deposits_per_token_per_minute = 1000000\n",
    )
    .unwrap();
    let (mut relay, addr) = start_relay(&dir, "/ip4/127.0.0.1/tcp/0");
    let relay_id = match addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
        _ => panic!("relay address without /p2p"),
    };
    let (alice, bob) = (Identity::generate(), Identity::generate());
    let relay_key = meshchat_node::public_key_of(&relay_id).unwrap();
    let token = DeliveryToken::issue(&bob, Some(relay_key), None, i64::MAX);
    let mut sender = MailboxClient::to_relay(alice, addr.clone()).await;

    // Deposit a stream; kill the relay while deposits are in flight.
    let mut acknowledged = HashSet::new();
    let mut killed = false;
    for i in 0u32..400 {
        if i == 150 {
            // Several deposits in flight at the moment of the kill.
            for j in 0..5u32 {
                sender.send(Inbound::Request(MailboxRequest::Deposit {
                    recipient: bob.public(),
                    envelope: format!("inflight-{j}").into_bytes(),
                    token: Some(token.clone()),
                }));
            }
            relay.kill().unwrap();
            relay.wait().unwrap();
            killed = true;
        }
        let envelope = format!("envelope-{i}").into_bytes();
        let request = MailboxRequest::Deposit {
            recipient: bob.public(),
            envelope: envelope.clone(),
            token: Some(token.clone()),
        };
        match sender.ask(request).await {
            Some(MailboxResponse::Deposited(receipt)) => {
                receipt.verify().unwrap();
                acknowledged.insert(envelope);
            }
            _ if killed => break,
            other => panic!("deposit {i} failed before the kill: {other:?}"),
        }
    }
    assert_eq!(acknowledged.len(), 150);

    // Restart on the same address; bob fetches everything.
    let listen = strip_p2p(addr);
    let (mut relay, addr) = start_relay(&dir, &listen.to_string());
    let mut reader = MailboxClient::to_relay(bob, addr).await;
    let fetched = reader.fetch_all().await;
    let unique: HashSet<Vec<u8>> = fetched.iter().cloned().collect();
    assert_eq!(unique.len(), fetched.len(), "an envelope is stored twice");
    for envelope in &acknowledged {
        assert!(
            unique.contains(envelope),
            "acknowledged deposit lost: {}",
            String::from_utf8_lossy(envelope)
        );
    }
    relay.kill().unwrap();
    relay.wait().unwrap();
}
