//! Wiring the nodes together before the workload: contacts, the groups,
//! and (gossip fan-out) the random links between fellow members.

use std::collections::HashSet;

use futures::{stream, StreamExt};
use meshchat_node::{crdt::ChatId, Multiaddr};
use tokio::time::Instant;

use super::{nodes::SimNode, recorder::Recorder};
use crate::{
    scenario::{Fanout, Scenario},
    schedule::{NodeIx, Schedule},
};

/// Concurrent calls into nodes during setup.
const CONCURRENCY: usize = 32;

/// Why setup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A node refused a setup call.
    #[error("setting up node {ix}: {message}")]
    Node {
        /// Which node.
        ix: NodeIx,
        /// Why.
        message: String,
    },
    /// Not every member joined its group in time.
    #[error("{missing} of {total} group invitations were not accepted within {secs} s")]
    Joins {
        /// Invitations still unaccepted.
        missing: usize,
        /// All invitations.
        total: usize,
        /// The time allowed.
        secs: u64,
    },
}

/// Adds contacts, creates the groups and waits until every member joined.
/// Returns each group's chat id.
pub(super) async fn set_up(
    scenario: &Scenario,
    schedule: &Schedule,
    nodes: &[SimNode],
    recorder: &Recorder,
) -> Result<Vec<ChatId>, SetupError> {
    let relay_addrs = |ix: NodeIx| -> Vec<Multiaddr> {
        schedule.relay_of[ix]
            .map(|r| nodes[r].addr.clone())
            .into_iter()
            .collect()
    };
    let started = Instant::now();
    // Contacts: who knows whom (with address, and relay when pairwise).
    let mut contacts: HashSet<(NodeIx, NodeIx)> = HashSet::new();
    for group in &schedule.groups {
        match scenario.groups.fanout {
            Fanout::Pairwise => {
                for &a in &group.members {
                    for &b in &group.members {
                        if a != b {
                            contacts.insert((a, b));
                        }
                    }
                }
            }
            Fanout::Gossip => {
                // Members know the creator too, so its invitation is not a
                // message request from a stranger.
                for &b in &group.members[1..] {
                    contacts.insert((group.members[0], b));
                    contacts.insert((b, group.members[0]));
                }
            }
        }
    }
    let with_relays = scenario.groups.fanout == Fanout::Pairwise;
    let mut contacts: Vec<(NodeIx, NodeIx)> = contacts.into_iter().collect();
    contacts.sort_unstable();
    let results: Vec<Result<(), SetupError>> = stream::iter(contacts)
        .map(|(a, b)| {
            let relays = if with_relays {
                relay_addrs(b)
            } else {
                Vec::new()
            };
            let addr = nodes[b].addr.clone();
            async move {
                nodes[a]
                    .node
                    .contacts()
                    .add_with_relays(nodes[b].peer, None, vec![addr], relays)
                    .await
                    .map(|_| ())
                    .map_err(|e| SetupError::Node {
                        ix: a,
                        message: e.to_string(),
                    })
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect::<Result<(), _>>()?;
    tracing::info!(secs = started.elapsed().as_secs_f64(), "contacts added");
    // Gossip fan-out: each member connects to a few fellow members.
    let dials: Vec<Result<(), SetupError>> = stream::iter(schedule.initial_links.iter().copied())
        .map(|(a, b)| async move {
            nodes[a]
                .node
                .network()
                .dial(nodes[b].addr.clone())
                .await
                .map_err(|e| SetupError::Node {
                    ix: a,
                    message: e.to_string(),
                })
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    dials.into_iter().collect::<Result<(), _>>()?;
    tracing::info!(
        secs = started.elapsed().as_secs_f64(),
        "initial links dialled"
    );
    // Groups, created concurrently (each creator is a separate node).
    let created: Vec<Result<ChatId, SetupError>> = stream::iter(schedule.groups.iter().enumerate())
        .map(|(g, group)| async move {
            let creator = &nodes[group.members[0]];
            let members = group.members[1..].iter().map(|&m| nodes[m].peer).collect();
            creator
                .node
                .groups()
                .create(format!("group-{g}"), members)
                .await
                .map_err(|e| SetupError::Node {
                    ix: creator.ix,
                    message: e.to_string(),
                })
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let chats = created.into_iter().collect::<Result<Vec<ChatId>, _>>()?;
    tracing::info!(secs = started.elapsed().as_secs_f64(), "groups created");
    let wanted: Vec<(ChatId, NodeIx)> = schedule
        .groups
        .iter()
        .zip(&chats)
        .flat_map(|(g, chat)| g.members[1..].iter().map(move |&m| (*chat, m)))
        .collect();
    let limit = scenario.setup_limit(schedule.nodes());
    let deadline = Instant::now() + limit;
    let all_joined = recorder
        .wait_until(deadline, |r| wanted.iter().all(|w| r.joined.contains(w)))
        .await;
    tracing::info!(
        secs = started.elapsed().as_secs_f64(),
        all_joined,
        "joins done"
    );
    if !all_joined {
        let missing = recorder.with(|r| wanted.iter().filter(|w| !r.joined.contains(w)).count());
        return Err(SetupError::Joins {
            missing,
            total: wanted.len(),
            secs: limit.as_secs(),
        });
    }
    Ok(chats)
}
