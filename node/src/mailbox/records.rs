//! Which signed profile records a node's DHT store keeps, when it is full,
//! and how fast one peer may hand it records.
//!
//! Keys are free to mint, so a valid signature says nothing about whether a
//! record deserves room. The store is capped; when it is full, a new record
//! takes the place of the least recently refreshed record of a peer that is
//! not a client of this relay (clients: peers that fetch their mail here,
//! hold a circuit reservation here or have mail waiting). Records of clients
//! are never pushed out by strangers' records, so junk from fresh keys only
//! churns other junk. Each source peer may put a limited number of records a
//! minute. The caller validates records (signature, canonical encoding,
//! version) before it asks this book.

use std::collections::{BTreeMap, HashMap};

use libp2p::PeerId;
use meshchat_crdt::PublicKey;

use super::{rate::RateLimiter, MailboxConfig};

/// Oldest records examined when looking for one to push out.
const EVICTION_SCAN: usize = 4096;

/// The book's verdict on a new record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Store it, after removing this record (if any) from the store.
    Store {
        /// The record to remove first.
        evict: Option<Vec<u8>>,
    },
    /// Do not store it.
    Refused(&'static str),
}

/// The records held, in the order they were last refreshed.
pub(crate) struct RecordBook {
    max_records: usize,
    puts: RateLimiter<PeerId>,
    next_seq: u64,
    /// record key → (refresh sequence number, the peer it describes)
    held: HashMap<Vec<u8>, (u64, PublicKey)>,
    /// refresh sequence number → record key, oldest first
    order: BTreeMap<u64, Vec<u8>>,
}

impl RecordBook {
    pub(crate) fn new(config: &MailboxConfig) -> Self {
        Self {
            max_records: usize::try_from(config.dht_max_records).unwrap_or(usize::MAX),
            puts: RateLimiter::new(config.dht_puts_per_source_per_minute),
            next_seq: 0,
            held: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// Counts a put from `source`; false if it is over its rate.
    pub(crate) fn admit_source(&mut self, source: PeerId, now_ms: i64) -> bool {
        self.puts.admit(source, now_ms).is_ok()
    }

    /// Whether a record for `key` (describing `owner`) may be stored, and
    /// what must go to make room.
    pub(crate) fn admit(
        &mut self,
        key: &[u8],
        owner: &PublicKey,
        is_client: impl Fn(&PublicKey) -> bool,
    ) -> Admission {
        if self.held.contains_key(key) || self.held.len() < self.max_records {
            return Admission::Store { evict: None };
        }
        let victim = self
            .order
            .iter()
            .take(EVICTION_SCAN)
            .find(|(_, k)| self.held.get(*k).is_some_and(|(_, o)| !is_client(o)))
            .map(|(seq, _)| *seq);
        let victim = match victim {
            Some(seq) => seq,
            // Full of clients' records: only another client makes room,
            // by pushing out the client record refreshed longest ago.
            None if is_client(owner) => match self.order.keys().next() {
                Some(seq) => *seq,
                None => return Admission::Refused("no room for DHT records"),
            },
            None => return Admission::Refused("the DHT store is full of clients' records"),
        };
        let evict = self.order.remove(&victim);
        if let Some(k) = &evict {
            self.held.remove(k);
        }
        Admission::Store { evict }
    }

    /// A record for `key` was stored or re-put unchanged: it is now the most
    /// recently refreshed.
    pub(crate) fn refreshed(&mut self, key: &[u8], owner: PublicKey) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some((old, _)) = self.held.insert(key.to_vec(), (seq, owner)) {
            self.order.remove(&old);
        }
        self.order.insert(seq, key.to_vec());
    }

    /// Records held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use meshchat_crdt::Identity;

    use super::*;

    fn book(max: u64) -> RecordBook {
        RecordBook::new(&MailboxConfig {
            dht_max_records: max,
            dht_puts_per_source_per_minute: 3,
            ..MailboxConfig::default()
        })
    }

    fn put(book: &mut RecordBook, owner: PublicKey, clients: &[PublicKey]) -> Admission {
        let key = owner.as_bytes().to_vec();
        let verdict = book.admit(&key, &owner, |p| clients.contains(p));
        if matches!(verdict, Admission::Store { .. }) {
            book.refreshed(&key, owner);
        }
        verdict
    }

    #[test]
    fn junk_from_fresh_keys_never_pushes_out_clients() {
        let mut book = book(4);
        let client = Identity::generate().public();
        let stranger = Identity::generate().public();
        let clients = [client];
        put(&mut book, client, &clients);
        put(&mut book, stranger, &clients);
        // A thousand fresh keys: they churn among themselves.
        for _ in 0..1000 {
            let junk = Identity::generate().public();
            assert!(matches!(
                put(&mut book, junk, &clients),
                Admission::Store { .. }
            ));
        }
        assert_eq!(book.len(), 4);
        assert!(book.held.contains_key(client.as_bytes().as_slice()));
        assert!(!book.held.contains_key(stranger.as_bytes().as_slice()));
    }

    #[test]
    fn a_refresh_keeps_a_record_and_the_oldest_goes() {
        let mut book = book(2);
        let (a, b, c) = (
            Identity::generate().public(),
            Identity::generate().public(),
            Identity::generate().public(),
        );
        put(&mut book, a, &[]);
        put(&mut book, b, &[]);
        // `a` republishes: now `b` is the least recently refreshed.
        book.refreshed(a.as_bytes(), a);
        assert_eq!(
            put(&mut book, c, &[]),
            Admission::Store {
                evict: Some(b.as_bytes().to_vec())
            }
        );
    }

    #[test]
    fn a_store_full_of_clients_refuses_strangers() {
        let mut book = book(2);
        let clients: Vec<PublicKey> = (0..3).map(|_| Identity::generate().public()).collect();
        put(&mut book, clients[0], &clients);
        put(&mut book, clients[1], &clients);
        let stranger = Identity::generate().public();
        assert!(matches!(
            put(&mut book, stranger, &clients),
            Admission::Refused(_)
        ));
        // Another client takes the oldest client's place.
        assert_eq!(
            put(&mut book, clients[2], &clients),
            Admission::Store {
                evict: Some(clients[0].as_bytes().to_vec())
            }
        );
    }

    #[test]
    fn each_source_has_a_rate() {
        let mut book = book(10);
        let (mallory, alice) = (PeerId::random(), PeerId::random());
        for _ in 0..3 {
            assert!(book.admit_source(mallory, 0));
        }
        assert!(!book.admit_source(mallory, 1));
        assert!(book.admit_source(alice, 1));
        assert!(book.admit_source(mallory, 60_000));
    }
}
