//! Who is online: when this node last heard from each peer, by its own clock
//! (a peer's wrong clock cannot move what you see), and who is online now.
//! Sans-I/O: the actor feeds it heartbeats, disconnections and ticks.

use std::collections::HashMap;

use meshchat_crdt::PublicKey;
use serde::{Deserialize, Serialize};

/// Who may see this node's online status and last seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LastSeenPrivacy {
    /// Contacts and members of shared groups this node is connected to.
    #[default]
    Everyone,
    /// Contacts only.
    Contacts,
    /// Nobody; and, as in WhatsApp, this node then sees nobody's either.
    Nobody,
}

impl std::str::FromStr for LastSeenPrivacy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "everyone" => Ok(Self::Everyone),
            "contacts" => Ok(Self::Contacts),
            "nobody" => Ok(Self::Nobody),
            other => Err(format!(
                "unknown last-seen privacy {other:?}: use everyone, contacts or nobody"
            )),
        }
    }
}

/// What the user may see of a peer's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LastSeen {
    /// Heard from within the presence window.
    Online {
        /// When it was last heard from (this node's clock).
        since_ms: i64,
    },
    /// Not online; `at_ms` is when it was last heard from, if ever.
    Offline {
        /// Last heard (this node's clock), if ever.
        at_ms: Option<i64>,
    },
    /// This node's own last-seen privacy is `nobody`, so others' are hidden too.
    Hidden,
}

/// A presence change worth telling the UI about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    CameOnline(PublicKey),
    WentOffline { peer: PublicKey, last_seen_ms: i64 },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    last_heard_ms: i64,
    last_seq: u64,
    online: bool,
    /// The seq of its goodbye, until its connection closes: a heartbeat
    /// with a seq at or below it was sent before the goodbye and overtaken
    /// by it (requests travel on separate streams), so it is ignored.
    left_at_seq: Option<u64>,
}

/// In-memory presence of peers heard from during this run.
#[derive(Debug, Default)]
pub(crate) struct PresenceBook {
    peers: HashMap<PublicKey, Entry>,
    window_ms: i64,
}

impl PresenceBook {
    /// A peer is offline when not heard from for `window_ms`.
    pub(crate) fn new(window_ms: i64) -> Self {
        Self {
            peers: HashMap::new(),
            window_ms,
        }
    }

    /// A verified heartbeat from `peer` arrived at `now_ms`. Returns the
    /// change it makes, if any; replays of older heartbeats change nothing.
    /// When `peer` was last heard from (a heartbeat this book accepted).
    pub(crate) fn last_heard_ms(&self, peer: &PublicKey) -> Option<i64> {
        self.peers.get(peer).map(|entry| entry.last_heard_ms)
    }

    pub(crate) fn heard(
        &mut self,
        peer: PublicKey,
        seq: u64,
        leaving: bool,
        now_ms: i64,
    ) -> Option<Change> {
        let entry = self.peers.entry(peer).or_insert(Entry {
            last_heard_ms: now_ms,
            last_seq: 0,
            online: false,
            left_at_seq: None,
        });
        if entry.left_at_seq.is_some_and(|left| seq <= left) {
            return None;
        }
        // A restarted peer counts from 1 again: accept a lower seq after the
        // peer was seen offline, refuse it while it is online (a replay).
        if entry.online && seq <= entry.last_seq {
            return None;
        }
        entry.last_seq = seq;
        entry.last_heard_ms = now_ms;
        if leaving {
            entry.left_at_seq = Some(seq);
        }
        match (entry.online, leaving) {
            (false, false) => {
                entry.online = true;
                Some(Change::CameOnline(peer))
            }
            (true, true) => {
                entry.online = false;
                Some(Change::WentOffline {
                    peer,
                    last_seen_ms: now_ms,
                })
            }
            _ => None,
        }
    }

    /// The last connection to `peer` closed.
    pub(crate) fn disconnected(&mut self, peer: &PublicKey) -> Option<Change> {
        let entry = self.peers.get_mut(peer)?;
        // A restarted peer counts from 1 again, on a new connection.
        entry.left_at_seq = None;
        if !entry.online {
            return None;
        }
        entry.online = false;
        Some(Change::WentOffline {
            peer: *peer,
            last_seen_ms: entry.last_heard_ms,
        })
    }

    /// Peers not heard from within the window go offline.
    pub(crate) fn expire(&mut self, now_ms: i64) -> Vec<Change> {
        let mut changes = Vec::new();
        for (peer, entry) in &mut self.peers {
            if entry.online && now_ms - entry.last_heard_ms > self.window_ms {
                entry.online = false;
                changes.push(Change::WentOffline {
                    peer: *peer,
                    last_seen_ms: entry.last_heard_ms,
                });
            }
        }
        changes
    }

    /// What is known this run; `None` when nothing was heard since start.
    pub(crate) fn get(&self, peer: &PublicKey) -> Option<LastSeen> {
        self.peers.get(peer).map(|e| match e.online {
            true => LastSeen::Online {
                since_ms: e.last_heard_ms,
            },
            false => LastSeen::Offline {
                at_ms: Some(e.last_heard_ms),
            },
        })
    }

    /// Forgets everything (privacy switched to `nobody`).
    pub(crate) fn clear(&mut self) {
        self.peers.clear();
    }
}

#[cfg(test)]
mod tests {
    use meshchat_crdt::Identity;

    use super::*;

    #[test]
    fn online_then_offline_by_silence_with_the_last_heard_time() {
        let bob = Identity::generate().public();
        let mut book = PresenceBook::new(2_500);
        assert_eq!(
            book.heard(bob, 1, false, 1_000),
            Some(Change::CameOnline(bob))
        );
        assert_eq!(book.heard(bob, 2, false, 2_000), None);
        assert!(book.expire(4_000).is_empty());
        assert_eq!(
            book.expire(4_600),
            vec![Change::WentOffline {
                peer: bob,
                last_seen_ms: 2_000
            }]
        );
        assert_eq!(
            book.get(&bob),
            Some(LastSeen::Offline { at_ms: Some(2_000) })
        );
    }

    #[test]
    fn replays_do_not_extend_presence_but_restarts_do() {
        let bob = Identity::generate().public();
        let mut book = PresenceBook::new(2_500);
        book.heard(bob, 5, false, 1_000);
        assert_eq!(book.heard(bob, 5, false, 2_000), None);
        assert_eq!(book.get(&bob), Some(LastSeen::Online { since_ms: 1_000 }));
        // Leaving, then a restarted node counting from 1 on a new connection.
        assert!(book.heard(bob, 6, true, 3_000).is_some());
        book.disconnected(&bob);
        assert_eq!(
            book.heard(bob, 1, false, 9_000),
            Some(Change::CameOnline(bob))
        );
    }

    #[test]
    fn a_heartbeat_overtaken_by_the_goodbye_does_not_bring_it_back() {
        let bob = Identity::generate().public();
        let mut book = PresenceBook::new(2_500);
        book.heard(bob, 5, false, 1_000);
        assert!(book.heard(bob, 7, true, 2_000).is_some());
        // Sent before the goodbye, processed after it (another stream).
        assert_eq!(book.heard(bob, 6, false, 2_001), None);
        assert_eq!(book.last_heard_ms(&bob), Some(2_000));
        assert_eq!(
            book.get(&bob),
            Some(LastSeen::Offline { at_ms: Some(2_000) })
        );
    }

    #[test]
    fn disconnection_is_offline_at_once() {
        let bob = Identity::generate().public();
        let mut book = PresenceBook::new(60_000);
        book.heard(bob, 1, false, 1_000);
        assert_eq!(
            book.disconnected(&bob),
            Some(Change::WentOffline {
                peer: bob,
                last_seen_ms: 1_000
            })
        );
        assert_eq!(book.disconnected(&bob), None);
    }
}
