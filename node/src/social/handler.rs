//! Profiles (signed, versioned, pushed to contacts and published in the DHT),
//! blocking, presence heartbeats and typing indicators.

use std::{collections::HashSet, time::Duration};

use libp2p::{kad, Multiaddr, PeerId};
use meshchat_crdt::{ChatId, PublicKey};

use super::{
    invitable,
    invite::Invite,
    presence::{Change, LastSeen, LastSeenPrivacy},
    records::{peer_of_profile_key, profile_dht_key, Heartbeat, Profile, SignedProfile},
    PeerProfile, ProfileUpdate, SocialCommand,
};
use crate::{
    actor::Actor,
    clock::now_ms,
    direct::notice_wire::Notice,
    events::Event,
    keys::{peer_id_of, public_key_of},
    reply::NodeError,
    store::Contact,
};

/// How long a typing indicator lasts unless renewed.
const TYPING_EXPIRES_MS: u64 = 6_000;
/// First wait between two DHT lookups of one peer's profile; doubles up to
/// [`MAX_LOOKUP_INTERVAL`] while nothing is found.
const LOOKUP_INTERVAL: Duration = Duration::from_secs(5);
const MAX_LOOKUP_INTERVAL: Duration = Duration::from_secs(600);

impl Actor {
    pub(crate) async fn on_social_command(&mut self, command: SocialCommand) {
        match command {
            SocialCommand::SetProfile { update, reply } => {
                let _ = reply.send(self.set_profile(update).await);
            }
            SocialCommand::Profile { peer, reply } => {
                let result = self.peer_profile(peer);
                let _ = reply.send(result);
            }
            SocialCommand::Invite { reply } => {
                let _ = reply.send(self.invite());
            }
            SocialCommand::RemoveContact { peer, reply } => {
                let result = key_of(&peer).and_then(|key| {
                    let store = self.chats.store();
                    match store.contact(&key)? {
                        // Removing a blocked contact keeps it on the block list.
                        Some(c) if c.blocked => {
                            let kept = Contact {
                                name: None,
                                addrs: Vec::new(),
                                relays: Vec::new(),
                                ..c
                            };
                            store.put_contact(&key, &kept)?;
                            Ok(true)
                        }
                        _ => Ok(store.remove_contact(&key)?),
                    }
                });
                let result = match result {
                    Ok(removed) => self
                        .chats
                        .store()
                        .flush()
                        .await
                        .map(|()| removed)
                        .map_err(NodeError::from),
                    Err(error) => Err(error),
                };
                let _ = reply.send(result);
            }
            SocialCommand::SetBlocked {
                peer,
                blocked,
                reply,
            } => {
                let _ = reply.send(self.set_blocked(peer, blocked).await);
            }
            SocialCommand::LastSeen { peer, reply } => {
                let _ = reply.send(self.last_seen(peer));
            }
            SocialCommand::SetPrivacy { privacy, reply } => {
                let _ = reply.send(self.set_privacy(privacy).await);
            }
            SocialCommand::Privacy { reply } => {
                let _ = reply.send(Ok(self.social.privacy));
            }
            SocialCommand::Typing { chat, reply } => {
                let _ = reply.send(self.send_typing(chat));
            }
            SocialCommand::AddFromInvite {
                invite,
                name,
                reply,
            } => {
                let result = self.add_contact(
                    invite.peer,
                    name.or(invite.name),
                    invite.addrs,
                    invite.relays,
                );
                if let (Ok(_), Some(key)) = (&result, public_key_of(&invite.peer)) {
                    let _ = self.keep_tokens(invite.peer, key, invite.tokens);
                    if let Some(device_key) = invite.encryption_key {
                        if let Err(error) = crate::mailbox::sealing::keep_invite_key(
                            self.chats.store(),
                            &key,
                            device_key,
                        ) {
                            tracing::warn!(%error, "cannot keep the invite's encryption key");
                        }
                    }
                }
                let result = self.contact_added(result).await;
                let _ = reply.send(result);
            }
        }
    }

    // ----- profiles -----

    /// Makes sure the node's own profile exists and lists the configured
    /// relays and the device's current encryption key (a change of either is
    /// a new version).
    pub(crate) fn ensure_own_profile(
        &mut self,
        name: Option<String>,
    ) -> Result<(), crate::store::StoreError> {
        let me = self.chats.me();
        let current = self
            .chats
            .store()
            .profile(&me)?
            .and_then(|s| s.verify().ok());
        let relays = self.config.relays.clone();
        let encryption_key = Some(self.chats.device_keys().current().public());
        let next = match current {
            Some(p) if p.relays == relays && p.encryption_key == encryption_key => return Ok(()),
            Some(p) => Profile {
                relays,
                encryption_key,
                version: p.version + 1,
                updated_at_ms: now_ms(),
                ..p
            },
            None => Profile {
                name,
                relays,
                encryption_key,
                version: 1,
                updated_at_ms: now_ms(),
                ..Profile::default()
            },
        };
        match next.sign(self.chats.identity()) {
            Ok(signed) => self.chats.store().put_profile(&signed),
            Err(error) => {
                tracing::warn!(%error, "cannot sign own profile");
                Ok(())
            }
        }
    }

    fn own_profile(&self) -> Option<SignedProfile> {
        self.chats.store().profile(&self.chats.me()).ok().flatten()
    }

    async fn set_profile(&mut self, update: ProfileUpdate) -> Result<PeerProfile, NodeError> {
        let current = self
            .own_profile()
            .and_then(|s| s.verify().ok())
            .unwrap_or_default();
        let field = |new: Option<String>, old: Option<String>| match new {
            None => old,
            Some(s) if s.is_empty() => None,
            Some(s) => Some(s),
        };
        let next = Profile {
            name: field(update.name, current.name),
            status: field(update.status, current.status),
            avatar: field(update.avatar, current.avatar),
            relays: self.config.relays.clone(),
            updated_at_ms: now_ms(),
            version: current.version + 1,
            encryption_key: Some(self.chats.device_keys().current().public()),
        };
        let signed = next
            .sign(self.chats.identity())
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
        self.chats.store().put_profile(&signed)?;
        self.chats.store().flush().await?;
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            if self.shares_profile_with(&peer) {
                self.send_notice(peer, Notice::Profile(signed.clone()));
            }
        }
        self.publish_profile();
        self.emit(Event::ProfileChanged {
            peer: *self.swarm.local_peer_id(),
        });
        Ok(PeerProfile {
            peer: *self.swarm.local_peer_id(),
            profile: next,
        })
    }

    fn peer_profile(&mut self, peer: Option<PeerId>) -> Result<Option<PeerProfile>, NodeError> {
        let peer = peer.unwrap_or(*self.swarm.local_peer_id());
        let key = key_of(&peer)?;
        let held = self.chats.store().profile(&key)?;
        if peer != *self.swarm.local_peer_id() {
            // Refresh in the background: from the peer when connected, else the DHT.
            if self.swarm.is_connected(&peer) {
                self.send_notice(peer, Notice::GetProfile);
            } else if held.is_none() {
                self.lookup_profile(key);
            }
        }
        Ok(held
            .and_then(|s| s.verify().ok())
            .map(|profile| PeerProfile { peer, profile }))
    }

    /// Keeps `signed` if it verifies and is newer than what is held.
    /// Returns whether it was new.
    pub(crate) fn accept_profile(&mut self, signed: SignedProfile) -> bool {
        let Ok(profile) = signed.verify() else {
            tracing::debug!(peer = %signed.peer, "refused a profile with a bad signature");
            return false;
        };
        let store = self.chats.store();
        let held = store
            .profile(&signed.peer)
            .ok()
            .flatten()
            .and_then(|s| s.verify().ok())
            .map_or(0, |p| p.version);
        if profile.version <= held || signed.peer == self.chats.me() {
            return false;
        }
        if let Err(error) = store.put_profile(&signed) {
            tracing::warn!(%error, "cannot store a profile");
            return false;
        }
        if let Some(peer) = peer_id_of(&signed.peer) {
            self.emit(Event::ProfileChanged { peer });
        }
        true
    }

    /// Puts the own profile in the DHT (the relays, in Kademlia server mode,
    /// hold it for senders looking for this node's mailbox).
    pub(crate) fn publish_profile(&mut self) {
        let Some(signed) = self.own_profile() else {
            return;
        };
        let record = kad::Record::new(profile_dht_key(&signed.peer), signed.to_bytes());
        if let Err(error) = self
            .swarm
            .behaviour_mut()
            .kad
            .put_record(record, kad::Quorum::One)
        {
            tracing::debug!(%error, "cannot publish the profile yet");
        }
    }

    /// Asks the DHT for `key`'s profile, backing off while nothing is found.
    pub(crate) fn lookup_profile(&mut self, key: PublicKey) {
        let now = tokio::time::Instant::now();
        let wait = match self.social.looked_up.get(&key) {
            Some((next, _)) if *next > now => return,
            Some((_, wait)) => (*wait * 2).min(MAX_LOOKUP_INTERVAL),
            None => LOOKUP_INTERVAL,
        };
        self.social.looked_up.insert(key, (now + wait, wait));
        let id = self
            .swarm
            .behaviour_mut()
            .kad
            .get_record(kad::RecordKey::new(&profile_dht_key(&key)));
        self.social.lookups.insert(id, key);
    }

    pub(crate) fn on_kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetRecord(result),
                step,
                ..
            } => {
                if let Ok(kad::GetRecordOk::FoundRecord(found)) = result {
                    if let Ok((signed, _)) = SignedProfile::from_bytes(&found.record.value) {
                        let wanted = self.social.lookups.get(&id) == Some(&signed.peer);
                        if wanted {
                            self.social.looked_up.remove(&signed.peer);
                        }
                        if wanted && self.accept_profile(signed) {
                            // Mail for this peer may now have somewhere to go.
                            self.deposit_now(None);
                        }
                    }
                }
                if step.last {
                    self.social.lookups.remove(&id);
                }
            }
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => self.on_put_record(source, record),
            kad::Event::RoutingUpdated {
                peer, addresses, ..
            } => {
                self.remember_addrs(peer, addresses.into_vec());
            }
            _ => {}
        }
    }

    /// Kademlia stores only what this node validated: signed profile records
    /// in their canonical encoding, newer than the one held, under their
    /// signer's key, within a per-source rate and the record cap (see
    /// [`crate::mailbox::RecordBook`]). A peer that republishes the record
    /// held refreshes it.
    fn on_put_record(&mut self, source: PeerId, record: kad::Record) {
        if !self.records.admit_source(source, now_ms()) {
            tracing::debug!(%source, "DHT puts over the per-source rate");
            return;
        }
        let verdict = peer_of_profile_key(record.key.as_ref())
            .ok_or_else(|| "a DHT record that is not a profile".to_string())
            .and_then(|claimed| {
                let (signed, profile) = SignedProfile::from_record_bytes(&record.value)
                    .map_err(|e| format!("an invalid profile record: {e}"))?;
                if signed.peer == claimed {
                    Ok((claimed, profile))
                } else {
                    Err("a profile record filed under another peer's key".to_string())
                }
            });
        let (claimed, profile) = match verdict {
            Ok(ok) => ok,
            Err(reason) => {
                tracing::debug!(%source, %reason, "refused a DHT record");
                self.emit(Event::Rejected {
                    peer: source,
                    reason: format!("refused {reason}"),
                });
                return;
            }
        };
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let held = kad::store::RecordStore::get(store, &record.key).map(|r| r.value.clone());
        if let Some(held) = held {
            let version = SignedProfile::from_bytes(&held).map_or(0, |(_, p)| p.version);
            if held == record.value {
                // Republished unchanged: still wanted.
                self.records.refreshed(record.key.as_ref(), claimed);
                return;
            }
            if profile.version <= version {
                return;
            }
        }
        let mailbox = self.mailbox.as_ref();
        let admission = self.records.admit(record.key.as_ref(), &claimed, |peer| {
            mailbox.is_some_and(|m| m.is_client(peer))
        });
        let evict = match admission {
            crate::mailbox::Admission::Store { evict } => evict,
            crate::mailbox::Admission::Refused(reason) => {
                tracing::debug!(%source, reason, "no room for a DHT record");
                return;
            }
        };
        let store = self.swarm.behaviour_mut().kad.store_mut();
        if let Some(old) = evict {
            kad::store::RecordStore::remove(store, &kad::RecordKey::from(old));
        }
        let key = record.key.clone();
        match kad::store::RecordStore::put(store, record) {
            Ok(()) => {
                self.records.refreshed(key.as_ref(), claimed);
                if let Some(peer) = peer_id_of(&claimed) {
                    self.emit(Event::ProfileRecordStored { peer });
                }
            }
            Err(error) => tracing::debug!(%error, "DHT record store refused a record"),
        }
    }

    /// Relays known for `key`: from the contact entry and its profile.
    pub(crate) fn relays_of(&self, key: &PublicKey) -> Vec<Multiaddr> {
        let store = self.chats.store();
        let mut relays = store
            .contact(key)
            .ok()
            .flatten()
            .map(|c| c.relays)
            .unwrap_or_default();
        if let Some(profile) = store
            .profile(key)
            .ok()
            .flatten()
            .and_then(|s| s.verify().ok())
        {
            for relay in profile.relays {
                if !relays.contains(&relay) {
                    relays.push(relay);
                }
            }
        }
        relays
    }

    fn invite(&self) -> Result<Invite, NodeError> {
        let profile = self.own_profile().and_then(|s| s.verify().ok());
        Ok(Invite {
            peer: *self.swarm.local_peer_id(),
            name: profile.and_then(|p| p.name),
            addrs: invitable(&self.listen_addrs),
            relays: self.config.relays.clone(),
            tokens: self.invite_tokens(),
            encryption_key: Some(self.chats.device_keys().current().public()),
        })
    }

    // ----- contacts and blocking -----

    /// Who is sent this node's profile as it changes: contacts, and peers
    /// this node has a direct chat with (people who added it).
    fn shares_profile_with(&self, peer: &PeerId) -> bool {
        let Some(key) = public_key_of(peer) else {
            return false;
        };
        let store = self.chats.store();
        match store.contact(&key) {
            Ok(Some(contact)) => !contact.blocked,
            _ => {
                let chat = ChatId::direct(&self.chats.me(), &key);
                matches!(self.chats.exists(&chat), Ok(true))
            }
        }
    }

    pub(crate) fn is_blocked(&self, peer: &PeerId) -> bool {
        public_key_of(peer).is_some_and(|key| self.chats.store().is_blocked(&key))
    }

    pub(crate) async fn set_blocked(
        &mut self,
        peer: PeerId,
        blocked: bool,
    ) -> Result<(), NodeError> {
        let key = key_of(&peer)?;
        let store = self.chats.store();
        let mut contact = store.contact(&key)?.unwrap_or(Contact {
            peer,
            name: None,
            addrs: Vec::new(),
            relays: Vec::new(),
            blocked: false,
        });
        contact.blocked = blocked;
        store.put_contact(&key, &contact)?;
        store.flush().await?;
        if blocked {
            let _ = self.swarm.disconnect_peer_id(peer);
            if let Some(Change::WentOffline { .. }) = self.social.presence.disconnected(&key) {
                // Nothing shown about a blocked peer, not even that it left.
            }
        } else {
            self.drive(crate::engine::Input::Reach(peer));
        }
        Ok(())
    }

    // ----- presence -----

    /// Who gets this node's heartbeats: contacts not blocked, and with
    /// privacy `everyone` also members of the groups this node is in.
    fn presence_audience(&mut self) -> HashSet<PublicKey> {
        let mut audience = HashSet::new();
        if self.social.privacy == LastSeenPrivacy::Nobody {
            return audience;
        }
        let contacts = self.chats.store().contacts().unwrap_or_default();
        let blocked: HashSet<PublicKey> = contacts
            .iter()
            .filter(|c| c.blocked)
            .filter_map(|c| public_key_of(&c.peer))
            .collect();
        audience.extend(
            contacts
                .iter()
                .filter(|c| !c.blocked)
                .filter_map(|c| public_key_of(&c.peer)),
        );
        if self.social.privacy == LastSeenPrivacy::Everyone {
            for chat in self.chats.my_groups().unwrap_or_default() {
                if let Ok(Some(replica)) = self.chats.replica(&chat) {
                    audience.extend(replica.members().into_keys());
                }
            }
        }
        audience.retain(|k| !blocked.contains(k));
        audience.remove(&self.chats.me());
        audience
    }

    /// Whether one peer is in the audience (without building the whole set).
    fn in_presence_audience(&mut self, peer: &PeerId) -> bool {
        let Some(key) = public_key_of(peer) else {
            return false;
        };
        match (self.social.privacy, self.chats.store().contact(&key)) {
            (LastSeenPrivacy::Nobody, _) => false,
            (_, Ok(Some(contact))) => !contact.blocked,
            (LastSeenPrivacy::Contacts, _) => false,
            (LastSeenPrivacy::Everyone, _) => {
                let groups = self.chats.my_groups().unwrap_or_default();
                groups.iter().any(
                    |chat| matches!(self.chats.replica(chat), Ok(Some(r)) if r.is_member(&key)),
                )
            }
        }
    }

    /// Heartbeat tick: tell the audience this node is online; mark silent
    /// peers offline.
    pub(crate) fn presence_tick(&mut self) {
        if self.social.privacy != LastSeenPrivacy::Nobody {
            self.social.heartbeat_seq += 1;
            let beat = Heartbeat::new(self.chats.identity(), self.social.heartbeat_seq, false);
            let audience = self.presence_audience();
            let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
            for peer in peers {
                if public_key_of(&peer).is_some_and(|k| audience.contains(&k)) {
                    self.send_notice(peer, Notice::Heartbeat(beat));
                }
            }
        }
        for change in self.social.presence.expire(now_ms()) {
            self.emit_presence(change);
        }
    }

    /// Tells `peer` this node is online now, if it is in the audience (on a
    /// new connection, and when it becomes a contact on a live one, so it
    /// need not wait for the next heartbeat tick).
    pub(crate) fn greet_with_presence(&mut self, peer: PeerId) {
        if self.social.privacy != LastSeenPrivacy::Nobody && self.in_presence_audience(&peer) {
            self.social.heartbeat_seq += 1;
            let beat = Heartbeat::new(self.chats.identity(), self.social.heartbeat_seq, false);
            self.send_notice(peer, Notice::Heartbeat(beat));
        }
    }

    /// A connection to `peer` opened: greet it with presence and profile.
    pub(crate) fn on_social_connected(&mut self, peer: PeerId) {
        self.greet_with_presence(peer);
        if self.shares_profile_with(&peer) {
            if let Some(own) = self.own_profile() {
                self.send_notice(peer, Notice::Profile(own));
            }
        }
        // And ask contacts for theirs, which covers a contact that has not
        // added this node back.
        let is_contact = public_key_of(&peer)
            .is_some_and(|k| matches!(self.chats.store().contact(&k), Ok(Some(c)) if !c.blocked));
        if is_contact {
            self.send_notice(peer, Notice::GetProfile);
        }
        if self.config.relay_peers().contains(&peer) {
            self.publish_profile();
        }
        self.hand_out_tokens_to(peer);
    }

    pub(crate) fn on_social_disconnected(&mut self, peer: PeerId) {
        if let Some(key) = public_key_of(&peer) {
            if let Some(change) = self.social.presence.disconnected(&key) {
                self.emit_presence(change);
            }
        }
    }

    /// Before shutting down: tell the audience this node is leaving.
    pub(crate) fn say_goodbye(&mut self) -> usize {
        if self.social.privacy == LastSeenPrivacy::Nobody {
            return 0;
        }
        self.social.heartbeat_seq += 1;
        let beat = Heartbeat::new(self.chats.identity(), self.social.heartbeat_seq, true);
        let audience = self.presence_audience();
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let mut sent = 0;
        for peer in peers {
            if public_key_of(&peer).is_some_and(|k| audience.contains(&k)) {
                self.send_notice(peer, Notice::Heartbeat(beat));
                sent += 1;
            }
        }
        sent
    }

    pub(crate) fn on_heartbeat(&mut self, from: PublicKey, beat: Heartbeat) {
        if self.social.privacy == LastSeenPrivacy::Nobody || beat.peer != from {
            return;
        }
        if beat.verify().is_err() {
            tracing::debug!(peer = %from, "heartbeat with a bad signature");
            return;
        }
        let now = now_ms();
        let change = self
            .social
            .presence
            .heard(from, beat.seq, beat.leaving, now);
        // Only a beat the book took counts (not a replay, nor one overtaken
        // by the goodbye): what is stored matches what the events said.
        if self.social.presence.last_heard_ms(&from) == Some(now) {
            if let Err(error) = self.chats.store().set_last_seen(&from, now) {
                tracing::debug!(%error, "cannot record last seen");
            }
        }
        if let Some(change) = change {
            self.emit_presence(change);
        }
    }

    fn emit_presence(&self, change: Change) {
        let (key, online, last_seen_ms) = match change {
            Change::CameOnline(key) => (key, true, now_ms()),
            Change::WentOffline { peer, last_seen_ms } => (peer, false, last_seen_ms),
        };
        if let Some(peer) = peer_id_of(&key) {
            self.emit(Event::Presence {
                peer,
                online,
                last_seen_ms,
            });
        }
    }

    fn last_seen(&self, peer: PeerId) -> Result<LastSeen, NodeError> {
        if self.social.privacy == LastSeenPrivacy::Nobody {
            return Ok(LastSeen::Hidden);
        }
        let key = key_of(&peer)?;
        if let Some(seen) = self.social.presence.get(&key) {
            return Ok(seen);
        }
        Ok(LastSeen::Offline {
            at_ms: self.chats.store().last_seen(&key)?,
        })
    }

    async fn set_privacy(&mut self, privacy: LastSeenPrivacy) -> Result<(), NodeError> {
        self.chats.store().set_last_seen_privacy(privacy)?;
        self.chats.store().flush().await?;
        self.social.privacy = privacy;
        if privacy == LastSeenPrivacy::Nobody {
            self.social.presence.clear();
        }
        Ok(())
    }

    // ----- typing -----

    fn send_typing(&mut self, chat: ChatId) -> Result<(), NodeError> {
        let me = self.chats.me();
        let members: Vec<PublicKey> = match self.chats.replica(&chat)? {
            Some(replica) => replica.members().into_keys().collect(),
            None => return Err(NodeError::NotFound(chat.to_string())),
        };
        for key in members.into_iter().filter(|k| *k != me) {
            let Some(peer) = peer_id_of(&key) else {
                continue;
            };
            if self.swarm.is_connected(&peer) && !self.chats.store().is_blocked(&key) {
                self.send_notice(peer, Notice::Typing { chat });
            }
        }
        Ok(())
    }

    pub(crate) fn on_typing(&mut self, peer: PeerId, from: PublicKey, chat: ChatId) {
        let member = matches!(self.chats.replica(&chat), Ok(Some(r)) if r.is_member(&from));
        if member {
            self.emit(Event::Typing {
                chat,
                peer,
                expires_ms: TYPING_EXPIRES_MS,
            });
        }
    }
}

fn key_of(peer: &PeerId) -> Result<PublicKey, NodeError> {
    public_key_of(peer)
        .ok_or_else(|| NodeError::Invalid(format!("{peer} is not an Ed25519 peer id")))
}
