//! `meshchat profile …`, `invite`, `last-seen`, `privacy`, `typing`, and the
//! contact commands beyond add/list (remove, block, unblock, verify).

use anyhow::Result;
use clap::Subcommand;
use meshchat_node::{
    control::ControlRequest, DataDir, LastSeen, LastSeenPrivacy, PeerProfile, SafetyNumberReport,
};

use crate::{
    client::{connect, print_json},
    format::{self, say, say_err},
};

#[derive(Debug, Subcommand)]
pub(crate) enum ProfileCommand {
    /// Change your name, status or picture (contacts see the change at once; "" clears).
    Set {
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// "About" status line.
        #[arg(long)]
        status: Option<String>,
        /// A picture file for your profile (anyone may fetch it, like WhatsApp's default).
        #[arg(long, value_name = "PATH")]
        avatar: Option<std::path::PathBuf>,
    },
    /// Download a profile picture (yours, or a contact's) to a file.
    Picture {
        /// PeerId or contact name (default: you).
        peer: Option<String>,
        /// File to write.
        #[arg(long, value_name = "PATH")]
        out: std::path::PathBuf,
    },
    /// Show your profile, or a contact's.
    Show {
        /// PeerId or contact name (default: you).
        peer: Option<String>,
    },
}

pub(crate) async fn profile(dir: &DataDir, command: ProfileCommand, json: bool) -> Result<()> {
    let mut client = connect(dir).await?;
    let (request, whose) = match command {
        ProfileCommand::Set {
            name,
            status,
            avatar,
        } => {
            if name.is_none() && status.is_none() && avatar.is_none() {
                anyhow::bail!("nothing to change: give --name, --status and/or --avatar");
            }
            let avatar_path = avatar
                .map(|p| std::path::absolute(&p).unwrap_or(p))
                .filter(|p| !p.as_os_str().is_empty());
            (
                ControlRequest::ProfilesSet {
                    name,
                    status,
                    avatar: None,
                    avatar_path,
                },
                None,
            )
        }
        ProfileCommand::Picture { peer, out } => {
            let out = std::path::absolute(&out).unwrap_or(out);
            let result = client
                .call_raw(ControlRequest::ProfilesSavePicture { peer, out })
                .await?;
            if json {
                return print_json(&result);
            }
            say!(
                "Wrote {} ({} bytes).",
                result["path"].as_str().unwrap_or("?"),
                result["size"]
            );
            return Ok(());
        }
        ProfileCommand::Show { peer } => {
            let whose = peer.clone();
            (ControlRequest::ProfilesGet { peer }, whose)
        }
    };
    let profile: Option<PeerProfile> = client.call(request).await?;
    if json {
        return print_json(&profile);
    }
    let Some(PeerProfile { peer, profile }) = profile else {
        say!(
            "No profile known for {} yet; it arrives when they connect (or from the DHT).",
            whose.unwrap_or_else(|| "you".into())
        );
        return Ok(());
    };
    say!("PeerId:  {peer}");
    say!("Name:    {}", profile.name.as_deref().unwrap_or("-"));
    say!("Status:  {}", profile.status.as_deref().unwrap_or("-"));
    if let Some(avatar) = &profile.avatar {
        say!("Picture: blob {avatar}");
    }
    for relay in &profile.relays {
        say!("Relay:   {relay}");
    }
    say!(
        "Updated: {} (version {})",
        format::time(profile.updated_at_ms),
        profile.version
    );
    Ok(())
}

pub(crate) async fn invite(dir: &DataDir, qr: bool, json: bool) -> Result<()> {
    let mut client = connect(dir).await?;
    let result = client.call_raw(ControlRequest::ContactsInvite).await?;
    if json {
        return print_json(&result);
    }
    let text = result["invite"].as_str().unwrap_or_default();
    if qr {
        print_qr(text, qrcode::EcLevel::L);
    }
    say!("{text}");
    say_err!("Give this to a contact; they add you with `meshchat contacts add <INVITE>`.");
    Ok(())
}

/// `meshchat contacts verify NAME`: the safety number, as a QR code (the 60
/// digits, numeric mode) and as 3 lines of 4 groups.
pub(crate) async fn verify(dir: &DataDir, peer: String, qr: bool, json: bool) -> Result<()> {
    let mut client = connect(dir).await?;
    let report: SafetyNumberReport = client
        .call(ControlRequest::ContactsVerify { peer: peer.clone() })
        .await?;
    if json {
        return print_json(&report);
    }
    if qr {
        // Our own digits only: nothing a peer wrote reaches the raw output.
        print_qr(&report.digits, qrcode::EcLevel::M);
    }
    say!("Safety number with {peer}:");
    let groups: Vec<&str> = report.safety_number.split(' ').collect();
    for line in groups.chunks(4) {
        say!("    {}", line.join(" "));
    }
    if report.their_encryption_key.is_none() {
        say_err!("(their encryption key is not known yet: mail to them is not sealed)");
    }
    say_err!(
        "Compare it with theirs, in person or on a call; if it differs, someone may be in between."
    );
    Ok(())
}

pub(crate) async fn last_seen(dir: &DataDir, peer: Option<String>, json: bool) -> Result<()> {
    let mut client = connect(dir).await?;
    let Some(peer) = peer else {
        return every_last_seen(&mut client, json).await;
    };
    let seen: LastSeen = client
        .call(ControlRequest::ProfilesLastSeen { peer: peer.clone() })
        .await?;
    if json {
        return print_json(&seen);
    }
    say!("{}", describe_last_seen(&seen, now_ms()));
    Ok(())
}

/// `meshchat last-seen` with no argument: every contact's presence.
async fn every_last_seen(
    client: &mut meshchat_node::control::ControlClient,
    json: bool,
) -> Result<()> {
    let contacts: Vec<meshchat_node::Contact> = client.call(ControlRequest::ContactsList).await?;
    if contacts.is_empty() && !json {
        say!("No contacts yet. Add one with `meshchat contacts add <INVITE>`.");
    }
    let now = now_ms();
    for contact in contacts {
        let seen: LastSeen = client
            .call(ControlRequest::ProfilesLastSeen {
                peer: contact.peer.to_string(),
            })
            .await?;
        if json {
            print_json(&serde_json::json!({
                "peer": contact.peer, "name": contact.name, "last_seen": seen,
            }))?;
        } else {
            let name = contact
                .name
                .clone()
                .unwrap_or_else(|| format::short(&contact.peer));
            say!("{name:<20} {}", describe_last_seen(&seen, now));
        }
    }
    Ok(())
}

/// "online", "last seen 5 minutes ago (2026-11-27 10:00:00)", …
pub(crate) fn describe_last_seen(seen: &LastSeen, now_ms: i64) -> String {
    match seen {
        LastSeen::Online { .. } => "online".into(),
        LastSeen::Offline { at_ms: Some(at) } => format!(
            "last seen {} ({} UTC)",
            ago(now_ms.saturating_sub(*at)),
            format::time(*at)
        ),
        LastSeen::Offline { at_ms: None } => "never seen online".into(),
        LastSeen::Hidden => {
            "hidden (your last-seen privacy is `nobody`; change it with `meshchat privacy --last-seen contacts`)".into()
        }
    }
}

fn ago(ms: i64) -> String {
    let secs = ms / 1000;
    let (n, unit) = match secs {
        s if s < 60 => return "just now".into(),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) async fn privacy(
    dir: &DataDir,
    last_seen: Option<LastSeenPrivacy>,
    json: bool,
) -> Result<()> {
    let mut client = connect(dir).await?;
    let request = match last_seen {
        Some(last_seen) => ControlRequest::ProfilesSetLastSeenPrivacy { last_seen },
        None => ControlRequest::ProfilesLastSeenPrivacy,
    };
    let result = client.call_raw(request).await?;
    if json {
        return print_json(&result);
    }
    let now = result["last_seen"].as_str().unwrap_or("?");
    say!("Last seen and online: {now}");
    if now == "nobody" {
        say!("As in WhatsApp, you don't see others' last seen either.");
    }
    Ok(())
}

/// Prints `text` as a QR code in the terminal, or says why it cannot.
fn print_qr(text: &str, level: qrcode::EcLevel) {
    match qrcode::QrCode::with_error_correction_level(text, level) {
        Ok(code) => println!(
            "{}",
            code.render::<qrcode::render::unicode::Dense1x2>()
                .quiet_zone(true)
                .build()
        ),
        Err(e) => say_err!("(no QR code: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_seen_reads_like_a_messenger() {
        let now = 1_000_000_000;
        assert_eq!(
            describe_last_seen(&LastSeen::Online { since_ms: now }, now),
            "online"
        );
        let five_min = describe_last_seen(
            &LastSeen::Offline {
                at_ms: Some(now - 5 * 60_000),
            },
            now,
        );
        assert!(
            five_min.starts_with("last seen 5 minutes ago ("),
            "{five_min}"
        );
        assert!(describe_last_seen(&LastSeen::Hidden, now).starts_with("hidden"));
    }
}
