//! Commands that talk to a running daemon over its control socket, plus the
//! offline ones (`init`, and `id` when no daemon runs).

use anyhow::{Context, Result};
use meshchat_node::{
    control::{ClientError, ControlClient, ControlRequest, WatchItem},
    ChatSummary, Contact, DataDir, Event, HistoryEntry, Multiaddr, NodeConfig, PeerId, Protocol,
    Sent, Status,
};
use serde::Serialize;

use crate::format::{self, say, say_err, Names};

pub(crate) fn print_json(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

pub(crate) async fn connect(dir: &DataDir) -> Result<ControlClient> {
    if !dir.is_initialised() {
        anyhow::bail!(
            "{} has no identity: run `meshchat init` first",
            dir.root().display()
        );
    }
    Ok(ControlClient::connect(dir.root(), &dir.socket_path()).await?)
}

pub(crate) async fn names(client: &mut ControlClient) -> Result<Names> {
    let status: Status = client.call(ControlRequest::NetworkStatus).await?;
    let contacts: Vec<Contact> = client.call(ControlRequest::ContactsList).await?;
    Ok(Names::new(status.peer_id, &contacts))
}

pub(crate) fn init(dir: &DataDir, name: Option<String>, json: bool) -> Result<()> {
    let identity = dir
        .init(name.as_deref(), &NodeConfig::default())
        .with_context(|| format!("cannot initialise {}", dir.root().display()))?;
    let peer = meshchat_node::peer_id_of(&identity.public()).context("identity key")?;
    if json {
        print_json(&serde_json::json!({ "peer_id": peer, "data_dir": dir.root() }))
    } else {
        say!("Created {}", dir.root().display());
        say!("Your PeerId: {peer}");
        say!("Next: start the daemon with `meshchat daemon`, then share `meshchat id`.");
        Ok(())
    }
}

pub(crate) async fn id(dir: &DataDir, json: bool) -> Result<()> {
    let (peer, addrs, running) = match ControlClient::connect(dir.root(), &dir.socket_path()).await
    {
        Ok(mut client) => {
            let status: Status = client.call(ControlRequest::NetworkStatus).await?;
            (status.peer_id, status.listen_addrs, true)
        }
        Err(ClientError::NoDaemon(_)) => {
            let identity = dir.identity()?;
            let peer = meshchat_node::peer_id_of(&identity.public()).context("identity key")?;
            let addrs: Vec<Multiaddr> = dir
                .config()?
                .listen
                .into_iter()
                .map(|a| a.with(Protocol::P2p(peer)))
                .collect();
            (peer, addrs, false)
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        return print_json(&serde_json::json!({
            "peer_id": peer, "addrs": addrs, "daemon_running": running
        }));
    }
    say!("PeerId: {peer}");
    if running {
        say!("Addresses (give one to your contacts):");
    } else {
        say!("Configured addresses (the daemon is not running; start it with `meshchat daemon`):");
    }
    for addr in addrs {
        say!("  {addr}");
    }
    Ok(())
}

pub(crate) async fn status(dir: &DataDir, json: bool) -> Result<()> {
    let mut client = connect(dir).await?;
    let status: Status = client.call(ControlRequest::NetworkStatus).await?;
    if json {
        return print_json(&status);
    }
    let names = names(&mut client).await?;
    say!("PeerId:      {}", status.peer_id);
    say!("Listening:   {}", status.listen_addrs.len());
    for addr in &status.listen_addrs {
        say!("  {addr}");
    }
    say!("Connected:   {}", status.connected.len());
    for peer in &status.connected {
        say!("  {} ({peer})", names.peer(peer));
    }
    say!("Chats:       {}", status.chats);
    say!("Undelivered: {}", status.outbox);
    if let Some(fault) = &status.storage {
        say!("Storage:     {fault}");
    }
    Ok(())
}

pub(crate) async fn contacts_add(
    dir: &DataDir,
    peer: String,
    name: Option<String>,
    addrs: Vec<Multiaddr>,
    relays: Vec<Multiaddr>,
    json: bool,
) -> Result<()> {
    let request = if meshchat_node::invite::Invite::looks_like_one(&peer) {
        ControlRequest::ContactsAddInvite { invite: peer, name }
    } else {
        let peer: PeerId = peer.parse().map_err(|_| {
            anyhow::anyhow!(
                "{peer:?} is neither an invite (MC1:…) nor a PeerId; ask your contact for `meshchat invite`"
            )
        })?;
        ControlRequest::ContactsAdd {
            peer,
            name,
            addrs,
            relays,
        }
    };
    let mut client = connect(dir).await?;
    let contact: Contact = client.call(request).await?;
    if json {
        return print_json(&contact);
    }
    say!(
        "Added {} ({}) with {} address(es).",
        contact.name.as_deref().unwrap_or("contact"),
        contact.peer,
        contact.addrs.len()
    );
    if contact.addrs.is_empty() {
        say!("No address given: meshchat will look them up on the local network and the DHT.");
    }
    Ok(())
}

pub(crate) async fn contacts_list(dir: &DataDir, json: bool) -> Result<()> {
    let mut client = connect(dir).await?;
    let contacts: Vec<Contact> = client.call(ControlRequest::ContactsList).await?;
    if json {
        for contact in &contacts {
            print_json(contact)?;
        }
        return Ok(());
    }
    if contacts.is_empty() {
        say!("No contacts yet. Add one with `meshchat contacts add <INVITE>` (they print it with `meshchat invite`).");
    }
    for contact in contacts {
        say!(
            "{:<16} {}{}",
            contact.name.as_deref().unwrap_or("-"),
            contact.peer,
            if contact.blocked { "  (blocked)" } else { "" }
        );
        for addr in contact.addrs {
            say!("{:<16}   {addr}", "");
        }
    }
    Ok(())
}

pub(crate) async fn send(
    dir: &DataDir,
    to: String,
    text: String,
    reply_to: Option<String>,
    json: bool,
) -> Result<()> {
    let mut client = connect(dir).await?;
    let sent: Sent = client
        .call(ControlRequest::ChatsSend { to, text, reply_to })
        .await?;
    if json {
        return print_json(&sent);
    }
    say!("{}", sent.message.id);
    Ok(())
}

pub(crate) async fn chats(dir: &DataDir, json: bool) -> Result<()> {
    let mut client = connect(dir).await?;
    let chats: Vec<ChatSummary> = client.call(ControlRequest::ChatsList).await?;
    if json {
        for chat in &chats {
            print_json(chat)?;
        }
        return Ok(());
    }
    if chats.is_empty() {
        say!("No chats yet. Start one with `meshchat send <PEER_ID|NAME> <TEXT>`.");
    }
    let names = names(&mut client).await?;
    let me = meshchat_node::public_key_of(&names.me());
    for chat in chats {
        let title = match (&chat.name, me) {
            (Some(name), _) => format!("# {name}"),
            (None, Some(me)) => chat
                .kind
                .peer_of(&me)
                .map(|p| names.key(&p))
                .unwrap_or_default(),
            (None, None) => String::new(),
        };
        let last = chat
            .last
            .as_ref()
            .map(|m| format!("{}: {}", names.key(&m.author), preview(m)))
            .unwrap_or_default();
        let unread = if chat.unread > 0 {
            format!("({} new)", chat.unread)
        } else {
            String::new()
        };
        let peer = me
            .and_then(|me| chat.kind.peer_of(&me))
            .and_then(|key| meshchat_node::peer_id_of(&key));
        // Someone not in my contacts shows by their profile's name, marked
        // `~` (and `send`/`history` take that name).
        let title = match peer {
            Some(peer) if chat.name.is_none() && !names.is_contact(&peer) => client
                .call::<Option<meshchat_node::PeerProfile>>(ControlRequest::ProfilesGet {
                    peer: Some(peer.to_string()),
                })
                .await
                .ok()
                .flatten()
                .and_then(|p| p.profile.name)
                .map(|name| format!("~{name}"))
                .unwrap_or(title),
            _ => title,
        };
        let online = match peer {
            Some(peer) => matches!(
                client
                    .call::<meshchat_node::LastSeen>(ControlRequest::ProfilesLastSeen {
                        peer: peer.to_string()
                    })
                    .await,
                Ok(meshchat_node::LastSeen::Online { .. })
            ),
            None => false,
        };
        say!(
            "{}  {} {:<18} {:>9}  {}",
            &chat.id.to_string()[..12],
            if online { "●" } else { " " },
            title,
            unread,
            last
        );
    }
    Ok(())
}

fn preview(m: &meshchat_node::crdt::Message) -> String {
    if m.deleted {
        "(deleted)".into()
    } else {
        m.text.chars().take(60).collect()
    }
}

pub(crate) async fn history(
    dir: &DataDir,
    chat: String,
    limit: Option<usize>,
    json: bool,
) -> Result<()> {
    let mut client = connect(dir).await?;
    let entries: Vec<HistoryEntry> = client
        .call(ControlRequest::ChatsHistory { chat, limit })
        .await?;
    if json {
        for entry in &entries {
            print_json(entry)?;
        }
        return Ok(());
    }
    let names = names(&mut client).await?;
    for entry in &entries {
        say!("{}", format::history_line(&names, entry, &entries));
    }
    Ok(())
}

pub(crate) async fn watch(dir: &DataDir, json: bool) -> Result<()> {
    let mut client = connect(dir).await?;
    let names = names(&mut client).await?;
    let mut events = client.watch().await?;
    if !json {
        say_err!("Watching events; Ctrl-C to stop.");
    }
    while let Some(item) = events.next().await {
        match item? {
            WatchItem::Event(event) if json => print_json(&event)?,
            WatchItem::Event(event) => say!("{}", describe(&names, &event)),
            WatchItem::Lagged(n) if json => print_json(&serde_json::json!({ "lagged": n }))?,
            WatchItem::Lagged(n) => say!("({n} events skipped: output fell behind)"),
        }
    }
    if !json {
        say_err!("The daemon stopped.");
    }
    Ok(())
}

fn describe(names: &Names, event: &Event) -> String {
    match event {
        Event::Message { message, .. } => format!(
            "[{}] {}: {}",
            format::time(message.sent_at_ms),
            names.key(&message.author),
            match &message.attachment {
                Some(a) => format::attachment_line(a, &message.text),
                None => message.text.clone(),
            }
        ),
        Event::Delivery {
            message,
            peer,
            state,
            ..
        } => format!(
            "message {message} → {}:{}",
            names.peer(peer),
            format::ticks(Some(*state))
        ),
        Event::PeerConnected { peer } => format!("{} is connected", names.peer(peer)),
        Event::PeerDisconnected { peer } => format!("{} disconnected", names.peer(peer)),
        Event::Rejected { peer, reason } => {
            format!("refused data from {}: {reason}", names.peer(peer))
        }
        Event::Listening { addr } => format!("listening on {addr}"),
        Event::MessageUpdated { message, .. } => format!(
            "{} changed message {}: {}",
            names.key(&message.author),
            format::short_id(&message.id),
            if message.deleted {
                "(deleted)"
            } else {
                &message.text
            }
        ),
        Event::GroupChanged { chat } => format!("group {} changed", &chat.to_string()[..12]),
        Event::GroupJoined { chat } => format!("joined group {}", &chat.to_string()[..12]),
        Event::GroupLeft { chat } => format!("no longer in group {}", &chat.to_string()[..12]),
        Event::Presence {
            peer, online: true, ..
        } => format!("{} is online", names.peer(peer)),
        Event::Presence {
            peer,
            online: false,
            last_seen_ms,
        } => format!(
            "{} went offline (last seen {} UTC)",
            names.peer(peer),
            format::time(*last_seen_ms)
        ),
        Event::Typing { chat, peer, .. } => format!(
            "{} is typing… (chat {})",
            names.peer(peer),
            &chat.to_string()[..12]
        ),
        Event::ProfileChanged { peer } => format!("{} updated their profile", names.peer(peer)),
        Event::File { hash, status, .. } => format::describe_status(hash, status),
        Event::Storage { message, .. } => message.clone(),
        other => format!("{other:?}"),
    }
}

pub(crate) async fn stop(dir: &DataDir, json: bool) -> Result<()> {
    let mut client = connect(dir).await?;
    client.call_raw(ControlRequest::Shutdown).await?;
    if json {
        print_json(&serde_json::json!({ "stopped": true }))
    } else {
        say!("The daemon is stopping.");
        Ok(())
    }
}

/// Runs a request whose result needs no formatting beyond a confirmation.
pub(crate) async fn simple(
    dir: &DataDir,
    request: ControlRequest,
    done: &str,
    json: bool,
) -> Result<()> {
    let mut client = connect(dir).await?;
    let result = client.call_raw(request).await?;
    if json {
        print_json(&result)
    } else {
        say!("{done}");
        Ok(())
    }
}

pub(crate) async fn export(
    dir: &DataDir,
    chat: String,
    out: std::path::PathBuf,
    json: bool,
) -> Result<()> {
    let out = std::path::absolute(&out).unwrap_or(out);
    let mut client = connect(dir).await?;
    let summary: meshchat_node::ExportSummary = client
        .call(ControlRequest::ChatsExport {
            chat,
            dir: out.clone(),
        })
        .await?;
    if json {
        return print_json(&summary);
    }
    say!("Wrote {} messages to {}:", summary.messages, out.display());
    for file in summary.files {
        say!("  {file}");
    }
    Ok(())
}

pub(crate) async fn message_info(
    dir: &DataDir,
    chat: String,
    message: String,
    json: bool,
) -> Result<()> {
    let mut client = connect(dir).await?;
    let info: meshchat_node::MessageInfo = client
        .call(ControlRequest::ChatsMessageInfo { chat, message })
        .await?;
    if json {
        return print_json(&info);
    }
    let names = names(&mut client).await?;
    say!(
        "[{}] {} {}: {}",
        format::time(info.message.sent_at_ms),
        format::short_id(&info.message.id),
        names.key(&info.message.author),
        info.message.text
    );
    if info.recipients.is_empty() {
        say!("No delivery is tracked for this message.");
    }
    for r in &info.recipients {
        let state = format!("{:?}", r.state).to_lowercase();
        let held = if r.held_by.is_empty() {
            String::new()
        } else {
            let until = r.held_by.iter().map(|(_, t)| *t).max().unwrap_or(0);
            format!(
                " (held by {} relay{} until {})",
                r.held_by.len(),
                if r.held_by.len() == 1 { "" } else { "s" },
                &format::time(until)[..10]
            )
        };
        say!(
            "  {:<16} {state}{}{held}",
            names.key(&r.peer),
            format::ticks(Some(r.state))
        );
    }
    Ok(())
}
