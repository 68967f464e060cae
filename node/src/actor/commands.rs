//! Commands from `Node` handles: local writes, contacts, queries.

use super::{commit::Held, *};

impl Actor {
    pub(crate) async fn on_command(&mut self, command: Command) {
        match command {
            Command::Op { chat, op, reply } => match self.local_op(chat, op) {
                // Confirmed once the flush covering it succeeds.
                Ok(outcome) => self.commit.hold(Held::Local { outcome, reply }),
                Err(error) => {
                    let _ = reply.send(Err(error));
                }
            },
            Command::CreateGroup {
                name,
                members,
                reply,
            } => {
                let result = self.create_group(&name, &members).await;
                let _ = reply.send(result);
            }
            Command::GroupInfo { chat, reply } => {
                let result = match self.chats.group_info(&chat) {
                    Ok(Some(info)) => Ok(info),
                    Ok(None) => Err(NodeError::NotFound(chat.to_string())),
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(result);
            }
            Command::MessageInfo {
                chat,
                message,
                reply,
            } => {
                let result = match self.chats.message_info(&chat, &message) {
                    Ok(Some(info)) => Ok(info),
                    Ok(None) => Err(NodeError::NotFound(format!("message {message}"))),
                    Err(e) => Err(e.into()),
                };
                let _ = reply.send(result);
            }
            Command::Export { chat, dir, reply } => {
                let result = self.chats.export(&chat, &dir).map_err(|e| match e {
                    crate::chats::ExportError::UnknownChat(c) => NodeError::NotFound(c.to_string()),
                    crate::chats::ExportError::Store(s) => NodeError::Store(s),
                    other => NodeError::Io(other.to_string()),
                });
                let _ = reply.send(result);
            }
            Command::Disconnect { peer, reply } => {
                let _ = self.swarm.disconnect_peer_id(peer);
                let _ = reply.send(Ok(()));
            }
            Command::DirectChat { peer, reply } => {
                let result = self
                    .chats
                    .ensure_direct(peer, now_ms())
                    .map_err(NodeError::from);
                let _ = reply.send(result);
            }
            Command::Resolve { query, reply } => {
                let _ = reply.send(self.resolve(&query));
            }
            Command::AddContact {
                peer,
                name,
                addrs,
                relays,
                reply,
            } => {
                let result = self.add_contact(peer, name, addrs, relays);
                if let Ok(contact) = &result {
                    if !contact.blocked {
                        self.exempt_from_limits(contact.peer);
                    }
                }
                let result = self.contact_added(result).await;
                let _ = reply.send(result);
            }
            Command::Contacts { reply } => {
                let _ = reply.send(self.chats.store().contacts().map_err(Into::into));
            }
            Command::Chats { reply } => {
                let _ = reply.send(self.chats.summaries().map_err(Into::into));
            }
            Command::History {
                chat,
                limit,
                mark_read,
                reply,
            } => {
                let result = match self.chats.history(&chat, limit, mark_read) {
                    Ok(Some(entries)) => Ok(entries),
                    Ok(None) => Err(NodeError::NotFound(chat.to_string())),
                    Err(e) => Err(e.into()),
                };
                if let (true, Ok(entries)) = (mark_read, &result) {
                    let mut authors: Vec<PeerId> = entries
                        .iter()
                        .filter(|e| !e.outgoing)
                        .filter_map(|e| peer_id_of(&e.message.author))
                        .collect();
                    authors.sort();
                    authors.dedup();
                    for author in authors {
                        self.send_read_receipts(author);
                    }
                }
                let _ = reply.send(result);
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Dial { addr, reply } => {
                let result = self
                    .swarm
                    .dial(addr.clone())
                    .map_err(|e| NodeError::Invalid(format!("cannot dial {addr}: {e}")));
                if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                    self.remember_addrs(peer, [addr]);
                }
                let _ = reply.send(result);
            }
            Command::Social(command) => {
                use crate::social::SocialCommand as S;
                let contacts_change =
                    matches!(command, S::RemoveContact { .. } | S::SetBlocked { .. });
                self.on_social_command(command).await;
                if contacts_change {
                    self.sync_connection_gates();
                }
            }
            Command::Requests(command) => {
                let blocks = matches!(command, RequestCommand::Delete { block: true, .. });
                self.on_request_command(command).await;
                if blocks {
                    self.sync_connection_gates();
                }
            }
            Command::GossipScore { peer, reply } => {
                let _ = reply.send(Ok(self.swarm.behaviour().gossipsub.peer_score(&peer)));
            }
            Command::Shutdown { .. } => unreachable!("handled in run"),
        }
    }

    /// Applies a user's operation, writes it (unflushed) and sends it on at
    /// once: pushed to the peer, published to the group. It may leave
    /// before it is durable here: if this node crashes first, it restarts
    /// under a new actor epoch, and if the flush fails the chat takes one
    /// ([`crate::chats::Chats::local_write_lost`]), so the sequence number
    /// is never reused for another change.
    pub(crate) fn local_op(&mut self, chat: ChatId, op: ChatOp) -> Result<OpOutcome, NodeError> {
        let leaving = matches!(op, ChatOp::Leave);
        let outcome = self
            .chats
            .local_op(chat, op, now_ms())
            .map_err(|e| match e {
                LocalWriteError::UnknownChat(c) => NodeError::NotFound(c.to_string()),
                LocalWriteError::Write(w) => NodeError::Write(w),
                LocalWriteError::Store(s) => NodeError::Store(s),
            })?;
        if let Some(message) = &outcome.message {
            self.emit(Event::Message {
                chat,
                message: message.clone(),
                outgoing: true,
            });
        }
        if let Some(message) = &outcome.updated {
            self.emit(Event::MessageUpdated {
                chat,
                message: message.clone(),
            });
        }
        if outcome.is_group {
            if !self.outbox_reaches_every_member(chat, &outcome.push_to) {
                self.publish(chat, vec![outcome.change.clone()]);
            }
            if outcome.message.is_none() && outcome.updated.is_none() {
                self.emit(Event::GroupChanged { chat });
            }
            if leaving {
                self.leave_topic(chat);
                self.emit(Event::GroupLeft { chat });
            }
        }
        for key in &outcome.push_to {
            let Some(peer) = peer_id_of(key) else {
                continue;
            };
            if let Some(message) = &outcome.message {
                self.emit(Event::Delivery {
                    chat,
                    message: message.id,
                    peer,
                    state: DeliveryState::Pending,
                });
            }
            self.deliver_to(peer);
        }
        Ok(outcome)
    }

    async fn create_group(
        &mut self,
        name: &str,
        members: &[PublicKey],
    ) -> Result<ChatId, NodeError> {
        let (chat, _genesis, invited) = self
            .chats
            .create_group(name, members, now_ms())
            .await
            .map_err(|e| match e {
                LocalWriteError::UnknownChat(c) => NodeError::NotFound(c.to_string()),
                LocalWriteError::Write(w) => NodeError::Write(w),
                LocalWriteError::Store(s) => NodeError::Store(s),
            })?;
        self.join_topic(chat);
        self.emit(Event::GroupJoined { chat });
        for key in invited {
            if let Some(peer) = peer_id_of(&key) {
                self.deliver_to(peer);
            }
        }
        Ok(chat)
    }

    /// Pushes the outbox now if connected, else dials, and deposits at the
    /// peer's relays at once if no dial can start (or, later, when it fails).
    pub(crate) fn deliver_to(&mut self, peer: PeerId) {
        self.drive(crate::engine::Input::Outgoing(peer));
    }

    pub(crate) fn resolve(&mut self, query: &str) -> Result<ChatId, NodeError> {
        if let Ok(chat) = query.parse::<ChatId>() {
            return match self.chats.exists(&chat)? {
                true => Ok(chat),
                false => Err(NodeError::NotFound(query.to_owned())),
            };
        }
        let peer = match query.parse::<PeerId>() {
            Ok(peer) => peer,
            Err(_) => {
                let matches: Vec<Contact> = self
                    .chats
                    .store()
                    .contacts()?
                    .into_iter()
                    .filter(|c| c.name.as_deref() == Some(query))
                    .collect();
                match matches.as_slice() {
                    [] => {
                        return self
                            .group_named(query)?
                            .ok_or_else(|| NodeError::NotFound(query.to_owned()))
                    }
                    [one] => one.peer,
                    _ => return Err(NodeError::Ambiguous(query.to_owned())),
                }
            }
        };
        let key = public_key_of(&peer)
            .ok_or_else(|| NodeError::Invalid(format!("{peer} is not an Ed25519 peer id")))?;
        Ok(self.chats.ensure_direct(key, now_ms())?)
    }

    /// A group by exact name, when exactly one group has it.
    fn group_named(&mut self, name: &str) -> Result<Option<ChatId>, NodeError> {
        let found = self.chats.groups_named(name)?;
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            _ => Err(NodeError::Ambiguous(name.to_owned())),
        }
    }

    /// A contact is on disk before the caller hears of it (a crash must not
    /// turn it back into a stranger), and what it wrote while it was one (a
    /// direct message request) becomes its chat.
    pub(crate) async fn contact_added(
        &mut self,
        result: Result<Contact, NodeError>,
    ) -> Result<Contact, NodeError> {
        let contact = result?;
        self.chats.store().flush().await?;
        self.accept_direct_requests_from(contact.peer).await;
        if !contact.blocked && self.swarm.is_connected(&contact.peer) {
            // Online for them at once, not at our next heartbeat tick.
            self.greet_with_presence(contact.peer);
        }
        Ok(contact)
    }

    pub(crate) fn add_contact(
        &mut self,
        peer: PeerId,
        name: Option<String>,
        addrs: Vec<Multiaddr>,
        relays: Vec<Multiaddr>,
    ) -> Result<Contact, NodeError> {
        if let Some(bad) = relays.iter().find(|a| crate::config::peer_of(a).is_none()) {
            return Err(NodeError::Invalid(format!(
                "relay address {bad} must end with /p2p/<RELAY_PEER_ID>"
            )));
        }
        let key = public_key_of(&peer)
            .ok_or_else(|| NodeError::Invalid(format!("{peer} is not an Ed25519 peer id")))?;
        if let Some(bad) = addrs
            .iter()
            .find(|a| matches!(a.iter().last(), Some(Protocol::P2p(p)) if p != peer))
        {
            return Err(NodeError::Invalid(format!("{bad} belongs to another peer")));
        }
        let store = self.chats.store();
        let mut contact = store.contact(&key)?.unwrap_or(Contact {
            peer,
            name: None,
            addrs: Vec::new(),
            relays: Vec::new(),
            blocked: false,
        });
        for relay in relays {
            if !contact.relays.contains(&relay) {
                contact.relays.push(relay);
            }
        }
        if name.is_some() {
            contact.name = name;
        }
        for addr in addrs {
            if !contact.addrs.contains(&addr) {
                contact.addrs.push(addr);
            }
        }
        contact.addrs.truncate(MAX_ADDRS_PER_PEER);
        store.put_contact(&key, &contact)?;
        self.chats.ensure_direct(key, now_ms())?;
        self.remember_addrs(peer, contact.addrs.iter().cloned());
        self.drive(crate::engine::Input::Reach(peer));
        Ok(contact)
    }

    pub(crate) fn status(&self) -> Result<Status, NodeError> {
        Ok(Status {
            peer_id: *self.swarm.local_peer_id(),
            listen_addrs: self.listen_addrs.clone(),
            connected: self.swarm.connected_peers().copied().collect(),
            chats: self.chats.store().chats()?.len(),
            outbox: self.chats.store().outbox_len(),
            mailbox: self.mailbox.as_ref().map(|m| m.stats()),
            relay: self.mailbox.as_ref().map(|_| self.metrics.clone()),
            storage: self.storage.fault().cloned(),
            traffic: self.traffic.clone(),
        })
    }
}
