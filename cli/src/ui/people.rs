//! The app's own reads, composed from the control API's operations: who is
//! who (`ui_people`: keys, PeerIds, names, contact or not, online) and my
//! invite as a QR code (`ui_invite_qr`).

use std::collections::BTreeMap;

use meshchat_node::{
    control::{self, ControlError, ControlRequest},
    crdt::PublicKey,
    Node, PeerId,
};
use serde_json::{json, Value};

type Answer = Result<Value, ControlError>;

/// The key (as JSON shows it) of a PeerId.
fn key_of(peer: &PeerId) -> Option<String> {
    let key = meshchat_node::public_key_of(peer)?;
    serde_json::to_value(key).ok()?.as_str().map(str::to_owned)
}

fn peer_of(key: &str) -> Option<PeerId> {
    let key: PublicKey = serde_json::from_value(Value::String(key.to_owned())).ok()?;
    meshchat_node::peer_id_of(&key)
}

/// `{me: {peer, key, name}, people: [{key, peer, name, contact, blocked,
/// presence}]}`: my contacts, whoever has a direct chat with me and whoever
/// sent me a message request. A
/// stranger's name is their profile's, and `contact` is false (the page
/// shows "~Name").
pub(crate) async fn people(node: &Node) -> Answer {
    let status = control::call(node, ControlRequest::NetworkStatus).await?;
    let me: PeerId = status["peer_id"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| ControlError {
            code: "internal".into(),
            message: "no peer id".into(),
        })?;
    let my_key = key_of(&me).unwrap_or_default();
    let contacts = control::call(node, ControlRequest::ContactsList).await?;
    let chats = control::call(node, ControlRequest::ChatsList).await?;
    let mut people: BTreeMap<String, Value> = BTreeMap::new();
    for contact in contacts.as_array().into_iter().flatten() {
        let Some(peer) = contact["peer"]
            .as_str()
            .and_then(|p| p.parse::<PeerId>().ok())
        else {
            continue;
        };
        let Some(key) = key_of(&peer) else { continue };
        people.insert(
            key.clone(),
            json!({
                "key": key, "peer": peer.to_string(), "name": contact["name"],
                "contact": true, "blocked": contact["blocked"],
            }),
        );
    }
    for chat in chats.as_array().into_iter().flatten() {
        let Some(direct) = chat["kind"].get("Direct") else {
            continue;
        };
        for side in ["a", "b"] {
            let Some(key) = direct[side].as_str() else {
                continue;
            };
            if key == my_key || people.contains_key(key) {
                continue;
            }
            let Some(peer) = peer_of(key) else { continue };
            people.insert(
                key.to_owned(),
                json!({
                    "key": key, "peer": peer.to_string(), "name": null,
                    "contact": false, "blocked": false,
                }),
            );
        }
    }
    // Whoever sent a message request, so the request can show their name.
    let requests = control::call(node, ControlRequest::ContactsRequests).await?;
    for request in requests.as_array().into_iter().flatten() {
        let Some(key) = request["from"].as_str() else {
            continue;
        };
        if key == my_key || people.contains_key(key) {
            continue;
        }
        let Some(peer) = peer_of(key) else { continue };
        people.insert(
            key.to_owned(),
            json!({
                "key": key, "peer": peer.to_string(), "name": null,
                "contact": false, "blocked": false,
            }),
        );
    }
    let mut my_name = Value::Null;
    let mut my_profile = Value::Null;
    if let Ok(mine) = control::call(node, ControlRequest::ProfilesGet { peer: None }).await {
        my_name = mine
            .pointer("/profile/name")
            .cloned()
            .unwrap_or(Value::Null);
        my_profile = mine.get("profile").cloned().unwrap_or(Value::Null);
    }
    for person in people.values_mut() {
        let peer = person["peer"].as_str().unwrap_or_default().to_owned();
        let profile = control::call(
            node,
            ControlRequest::ProfilesGet {
                peer: Some(peer.clone()),
            },
        )
        .await
        .ok()
        .and_then(|p| p.get("profile").cloned())
        .unwrap_or(Value::Null);
        let presence = control::call(node, ControlRequest::ProfilesLastSeen { peer })
            .await
            .unwrap_or(Value::Null);
        person["profile"] = profile;
        person["presence"] = presence;
    }
    Ok(json!({
        "me": { "peer": me.to_string(), "key": my_key, "name": my_name, "profile": my_profile },
        "people": people.into_values().collect::<Vec<_>>(),
    }))
}

/// `{invite, size, modules}`: my invite string and its QR code as rows of
/// dark (1) and light (0) modules, drawn by the page.
pub(crate) async fn invite_qr(node: &Node) -> Answer {
    let invite = control::call(node, ControlRequest::ContactsInvite).await?;
    let text = invite["invite"].as_str().unwrap_or_default().to_owned();
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| ControlError {
        code: "internal".into(),
        message: format!("QR code: {e}"),
    })?;
    let size = code.width();
    let modules: String = code
        .to_colors()
        .iter()
        .map(|c| if *c == qrcode::Color::Dark { '1' } else { '0' })
        .collect();
    Ok(json!({ "invite": text, "size": size, "modules": modules }))
}
