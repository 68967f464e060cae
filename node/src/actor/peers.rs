//! Reaching peers: addresses, dialling, redial with backoff.

use super::*;

impl Actor {
    pub(crate) fn remember_addrs(
        &mut self,
        peer: PeerId,
        addrs: impl IntoIterator<Item = Multiaddr>,
    ) {
        let known = self.addrs.entry(peer).or_default();
        for mut addr in addrs {
            // Drop only the trailing /p2p/<peer>: a circuit address keeps
            // its relay's /p2p/<relay> in the middle.
            if matches!(addr.iter().last(), Some(Protocol::P2p(p)) if p == peer) {
                addr.pop();
            }
            if !known.contains(&addr) {
                known.insert(0, addr);
            }
        }
        known.truncate(MAX_ADDRS_PER_PEER);
    }

    /// Dials `peer` at the addresses known for it (or looks it up in the
    /// DHT). Returns whether a dial is under way or a connection is up; a
    /// dial that fails later is reported as `OutgoingConnectionError`.
    pub(crate) fn dial_peer(&mut self, peer: PeerId) -> bool {
        if self.swarm.is_connected(&peer) {
            return true;
        }
        if peer == *self.swarm.local_peer_id() || self.is_blocked(&peer) {
            return false;
        }
        let addrs = self.addrs.get(&peer).cloned().unwrap_or_default();
        if addrs.is_empty() {
            // Ask the DHT; a found address is dialled by kad's routing update.
            self.swarm.behaviour_mut().kad.get_closest_peers(peer);
            return false;
        }
        let opts = DialOpts::peer_id(peer).addresses(addrs).build();
        match self.swarm.dial(opts) {
            Ok(()) => true,
            // Already being dialled: that dial reports.
            Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => true,
            Err(error) => {
                tracing::debug!(%peer, %error, "dial not started");
                false
            }
        }
    }

    /// Keeps a contact's stored addresses fresh with what it announces, so the
    /// side that was added by PeerId alone can reach back later.
    pub(crate) fn learn_contact_addrs(&mut self, peer: PeerId, announced: Vec<Multiaddr>) {
        let usable: Vec<Multiaddr> = announced
            .into_iter()
            .filter(|a| !crate::config::is_unspecified(a))
            .take(MAX_ADDRS_PER_PEER)
            .collect();
        self.remember_addrs(peer, usable.iter().cloned());
        let Some(key) = public_key_of(&peer) else {
            return;
        };
        let store = self.chats.store();
        if let Ok(Some(mut contact)) = store.contact(&key) {
            if contact.addrs != usable && !usable.is_empty() {
                contact.addrs = usable;
                if let Err(error) = store.put_contact(&key, &contact) {
                    tracing::warn!(%error, "cannot update contact addresses");
                }
            }
        }
    }
}

impl Actor {
    /// Brings the connection gates in line with the contacts: contacts (unless
    /// blocked) and configured relays are exempt from the shared connection
    /// limits, blocked peers cannot connect at all.
    pub(crate) fn sync_connection_gates(&mut self) {
        let mut wanted: HashSet<PeerId> = self.config.relay_peers().into_iter().collect();
        let mut blocked = HashSet::new();
        match self.chats.store().contacts() {
            Ok(contacts) => {
                for contact in contacts {
                    if contact.blocked {
                        blocked.insert(contact.peer);
                    } else {
                        wanted.insert(contact.peer);
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read contacts for the connection limits"),
        }
        let behaviour = self.swarm.behaviour_mut();
        for gone in self.limit_bypass.difference(&wanted) {
            behaviour.limits.remove_peer_id(gone);
        }
        for new in wanted.difference(&self.limit_bypass) {
            behaviour.limits.bypass_peer_id(new);
        }
        self.limit_bypass = wanted;
        let was_blocked: Vec<PeerId> = behaviour.blocked.blocked_peers().iter().copied().collect();
        for peer in was_blocked {
            if !blocked.contains(&peer) {
                behaviour.blocked.unblock_peer(peer);
            }
        }
        for peer in blocked {
            behaviour.blocked.block_peer(peer);
        }
    }

    /// Exempts one new contact from the shared connection limits.
    pub(crate) fn exempt_from_limits(&mut self, peer: PeerId) {
        if self.limit_bypass.insert(peer) {
            self.swarm.behaviour_mut().limits.bypass_peer_id(&peer);
        }
    }
}
