//! What a sender-key rotation costs in CPU, with real meshchat nodes on
//! loopback. A rotation costs each member one key request for every other
//! member's new key (asked of the member that passed the frame on, which
//! answers it): in a group of n members where everyone rotates (a removal),
//! each member makes n - 1 requests and, on average, answers as many. So
//! its share is (n - 1) times the CPU of one request made and answered,
//! plus drawing its own key. Two measurements:
//!
//! 1. **One key request, made and answered**: a bare libp2p client
//!    speaking `/meshchat/sync/1` (a member of the group) asks a real node
//!    for the group's current sender key, one request in flight, many
//!    times; then the same client asks a bare request-response swarm with
//!    the same codec, which answers at once (the floor). CPU per request,
//!    both ends (one process). Printed with the member's share for
//!    n = 1,024 (the `big-group` simulation's size) against the issue's
//!    bound of 1 s.
//! 2. **A whole rotation round, as an upper bound**: two real nodes (ann
//!    and ben) in a group with a third member that has no node. Each
//!    rotating round ann removes the third member (her next frame is
//!    sealed under a new key), writes a message that ben receives by gossip
//!    (asking ann for the key), and adds the member back; each baseline round
//!    ann renames the group twice and writes a message. The difference also
//!    holds the membership work of a removal and a join (ann offers the
//!    absent member its invitation again, looks it up, ...), so it bounds a
//!    rotation's cost from above.
//!
//! CPU is the process's user + system time (`/proc/self/stat`; everything
//! runs in this process) in 10 ms ticks, over enough work that a tick is
//! noise. The two kinds of rounds alternate in chunks, so drift in the
//! machine's load falls on both.
//!
//! Run: `cargo bench -p meshchat-tests --bench key_rotation`
//!
//! Environment (optional): `MESHCHAT_BENCH_REQUESTS` key requests (default
//! 5,000), `MESHCHAT_BENCH_ROUNDS` rounds of each kind (default 100: every
//! round adds metadata changes, and a longer run measures the growing
//! metadata document more than the rotation), `MESHCHAT_BENCH_CHUNKS`
//! alternations (default 4).
//!
//! Timings are printed, never asserted.

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::{
    request_response::{self, ProtocolSupport},
    swarm::SwarmEvent,
};
use meshchat_node::{
    crdt::{ChatId, Identity, KeyId},
    protocol::{decode_frame, GossipMessage, Inbound, Request, Response, SyncCodec, SYNC_PROTOCOL},
    Event, NodeConfig, PeerId,
};
use meshchat_tests::{
    gossip::GossipMember,
    net::{bare_swarm, keypair_of, listen},
    BareClient, Net, Peer, WAIT,
};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU time of this process.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may hold spaces, in parentheses).
    let after = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // Linux reports them in USER_HZ, 100 per second on every platform it runs on.
    Duration::from_millis(ticks * 10)
}

struct Group {
    ann: Peer,
    ben: Peer,
    chat: ChatId,
    absent: PeerId,
}

impl Group {
    async fn message_reaches_ben(&mut self, text: String) {
        self.ann
            .node
            .chats()
            .send(self.chat, &text)
            .await
            .expect("send");
        self.ben
            .wait_for("the message", |e| match e {
                Event::Message { message, .. } if message.text == text => Some(()),
                _ => None,
            })
            .await;
    }

    async fn rotating_round(&mut self, i: usize) {
        let groups = self.ann.node.groups();
        groups
            .remove_member(self.chat, self.absent)
            .await
            .expect("remove");
        self.message_reaches_ben(format!("rotated {i}")).await;
        self.ann
            .node
            .groups()
            .add_member(self.chat, self.absent)
            .await
            .expect("add");
    }

    async fn baseline_round(&mut self, i: usize) {
        self.ann
            .node
            .groups()
            .rename(self.chat, format!("a{i}"))
            .await
            .expect("rename");
        self.message_reaches_ben(format!("kept {i}")).await;
        self.ann
            .node
            .groups()
            .rename(self.chat, format!("b{i}"))
            .await
            .expect("rename");
    }

    async fn gossip_received_by_ben(&self) -> u64 {
        self.ben
            .node
            .network()
            .status()
            .await
            .expect("status")
            .traffic
            .received_by_gossip
    }
}

/// CPU per key request made and answered by a real node (see the module
/// doc, 1), and a sample answer for the bare baseline.
async fn key_request_cpu(requests: usize) -> (Duration, Response) {
    let ann = Peer::start_with("ann", NodeConfig::loopback()).await;
    let (kim, asker) = (Identity::generate(), Identity::generate());
    let members = [&kim, &asker]
        .map(|m| meshchat_node::peer_id_of(&m.public()).expect("peer id"))
        .to_vec();
    let chat = ann
        .node
        .groups()
        .create("keys", members)
        .await
        .expect("create");
    // Kim listens on the topic for a frame: its key id is what is asked.
    let mut kim = GossipMember::join(kim, chat, &ann).await;
    let key_id = loop {
        ann.node.chats().send(chat, "a frame").await.expect("send");
        if let Some(message) = kim.next_message(Duration::from_secs(2)).await {
            match decode_frame::<GossipMessage>(&message.data) {
                Ok(GossipMessage::Sealed(sealed)) => break sealed.key_id,
                other => panic!("not a sealed frame: {other:?}"),
            }
        }
    };
    let mut client = BareClient::connect(asker, SyncCodec, &ann).await;
    let ask = Request::Key { chat, key_id };
    let mut answer = None;
    for _ in 0..100 {
        let got = client.request(Inbound::Request(ask.clone())).await;
        assert!(matches!(got, Ok(Response::Key { .. })), "{got:?}");
        answer = got.ok();
    }
    let cpu = process_cpu();
    for _ in 0..requests {
        let got = client.request(Inbound::Request(ask.clone())).await;
        assert!(matches!(got, Ok(Response::Key { .. })), "{got:?}");
    }
    let spent = process_cpu() - cpu;
    drop((kim, client));
    ann.stop().await;
    (spent / requests as u32, answer.expect("an answer"))
}

/// The same requests answered by a bare libp2p swarm with the same codec
/// (TCP, Noise, yamux on loopback) that returns `answer` at once: the floor.
async fn bare_request_cpu(requests: usize, answer: Response) -> Duration {
    let server = Identity::generate();
    let mut swarm = bare_swarm(keypair_of(&server), Net::Loopback, WAIT * 3, |_| {
        request_response::Behaviour::with_codec(
            SyncCodec,
            [(SYNC_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default(),
        )
    });
    let addr = listen(&mut swarm, Net::Loopback).await;
    let serving = tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            }) = swarm.select_next_some().await
            {
                let _ = swarm.behaviour_mut().send_response(channel, answer.clone());
            }
        }
    });
    let mut client = BareClient::dial(
        Identity::generate(),
        SyncCodec,
        SYNC_PROTOCOL,
        Net::Loopback,
        addr,
        WAIT,
    )
    .await;
    let ask = Request::Key {
        chat: ChatId::from_bytes([1; 32]),
        key_id: KeyId::from_bytes([2; 16]),
    };
    for _ in 0..100 {
        client
            .request(Inbound::Request(ask.clone()))
            .await
            .expect("bare answer");
    }
    let cpu = process_cpu();
    for _ in 0..requests {
        client
            .request(Inbound::Request(ask.clone()))
            .await
            .expect("bare answer");
    }
    let spent = process_cpu() - cpu;
    serving.abort();
    spent / requests as u32
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    meshchat_tests::init_tracing();
    let requests = env_usize("MESHCHAT_BENCH_REQUESTS", 5000);
    let (per_request, answer) = key_request_cpu(requests).await;
    let bare = bare_request_cpu(requests, answer).await;
    let share = per_request.as_secs_f64() * 1023.0;
    println!("key rotation: CPU, both ends in this process");
    println!(
        "  one key request made and answered ({requests} in a row): meshchat {:.0} us, bare request-response {:.0} us, {:.2}x",
        per_request.as_secs_f64() * 1e6,
        bare.as_secs_f64() * 1e6,
        per_request.as_secs_f64() / bare.as_secs_f64()
    );
    println!(
        "  a member's share when all 1,024 members of a group rotate: 1,023 x that = {share:.2} s (bound: 1 s; bare floor {:.2} s)",
        bare.as_secs_f64() * 1023.0
    );

    let rounds = env_usize("MESHCHAT_BENCH_ROUNDS", 100);
    let chunks = env_usize("MESHCHAT_BENCH_CHUNKS", 4).max(1);
    let per_chunk = rounds.div_ceil(chunks);

    let ann = Peer::start_with("ann", NodeConfig::loopback()).await;
    let mut ben = Peer::start_with("ben", NodeConfig::loopback()).await;
    ann.add(&ben).await;
    let absent_identity = Identity::generate();
    let absent = meshchat_node::peer_id_of(&absent_identity.public()).expect("peer id");
    let chat = ann
        .node
        .groups()
        .create("rotation", vec![ben.peer_id(), absent])
        .await
        .expect("create");
    ben.wait_for("the invitation", |e| {
        matches!(e, Event::GroupJoined { chat: c } if *c == chat).then_some(())
    })
    .await;
    let mut group = Group {
        ann,
        ben,
        chat,
        absent,
    };
    // Warm up: the mesh, ann's first key, ben's first key request.
    for i in 0..20 {
        group.message_reaches_ben(format!("warm {i}")).await;
    }

    let (mut rotating, mut baseline) = (Duration::ZERO, Duration::ZERO);
    let (mut rotating_wall, mut baseline_wall) = (Duration::ZERO, Duration::ZERO);
    let gossip_before = group.gossip_received_by_ben().await;
    let mut done = 0;
    while done < rounds {
        let n = per_chunk.min(rounds - done);
        let (cpu, wall) = (process_cpu(), Instant::now());
        for i in done..done + n {
            group.baseline_round(i).await;
        }
        baseline += process_cpu() - cpu;
        baseline_wall += wall.elapsed();
        let (cpu, wall) = (process_cpu(), Instant::now());
        for i in done..done + n {
            group.rotating_round(i).await;
        }
        rotating += process_cpu() - cpu;
        rotating_wall += wall.elapsed();
        done += n;
    }
    let by_gossip = group.gossip_received_by_ben().await - gossip_before;

    let per = |total: Duration| total.as_secs_f64() * 1e3 / rounds as f64;
    let (rot_ms, base_ms) = (per(rotating), per(baseline));
    println!("  whole rounds, {rounds} of each kind (an upper bound: the membership work too)");
    println!("  {:<38} {:>10} {:>10}", "", "CPU/round", "wall/round");
    println!(
        "  {:<38} {:>8.2}ms {:>8.2}ms",
        "baseline (2 renames + 1 message)",
        base_ms,
        per(baseline_wall)
    );
    println!(
        "  {:<38} {:>8.2}ms {:>8.2}ms",
        "rotating (remove + add + 1 message)",
        rot_ms,
        per(rotating_wall)
    );
    println!(
        "  rotating / baseline: {:.2}x; difference {:.2} ms per rotation",
        rot_ms / base_ms,
        rot_ms - base_ms
    );
    println!("  changes ben received by gossip while measuring: {by_gossip}");
    group.ann.stop().await;
    group.ben.stop().await;
}
