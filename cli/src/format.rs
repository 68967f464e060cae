//! Human-readable output: times, names, delivery ticks, files and sizes, and
//! the one path every human line takes to the terminal ([`say!`],
//! [`terminal_safe`]).

use std::{borrow::Cow, collections::HashMap};

use meshchat_node::{
    crdt::{Attachment, BlobHash, MessageId, PublicKey},
    media::FileStatus,
    Contact, DeliveryState, HistoryEntry, PeerId,
};

/// Text made safe to print on a terminal: every control character (C0,
/// DEL, C1: escape sequences, carriage returns, newlines, backspaces, bells)
/// and every invisible direction override becomes a visible stand-in, so
/// text written by someone else can neither drive the terminal nor fake a
/// line of output. C0 characters show as their Unicode control pictures
/// (ESC as `␛`, a newline as `␤`), DEL as `␡`, the rest as `�`.
pub(crate) fn terminal_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_neutralising) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| match c {
                '\n' => '\u{2424}',
                '\0'..='\u{1f}' => char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'),
                '\u{7f}' => '\u{2421}',
                c if needs_neutralising(c) => '\u{fffd}',
                c => c,
            })
            .collect(),
    )
}

fn needs_neutralising(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // Bidirectional embeddings, overrides, isolates and marks: they
            // reorder what follows them on screen ("Trojan Source").
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            // Line and paragraph separators.
            | '\u{2028}' | '\u{2029}'
        )
}

/// Prints one line of human output on stdout, neutralised by
/// [`terminal_safe`]. Every human-output path of the CLI prints through this
/// (JSON output is printed exact: serde escapes control characters itself).
macro_rules! say {
    ($($arg:tt)*) => {
        println!("{}", $crate::format::terminal_safe(&format!($($arg)*)))
    };
}
pub(crate) use say;

/// [`say!`] on stderr.
macro_rules! say_err {
    ($($arg:tt)*) => {
        eprintln!("{}", $crate::format::terminal_safe(&format!($($arg)*)))
    };
}
pub(crate) use say_err;

/// `YYYY-MM-DD HH:MM:SS` (UTC) for milliseconds since the Unix epoch.
pub(crate) fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The first 8 hex digits of a message id: what `history` shows and what
/// commands accept.
pub(crate) fn short_id(id: &MessageId) -> String {
    id.to_string()[..8].to_owned()
}

/// One line of `history`: time, short id, author, reply, text, edits,
/// deletion, reactions and ticks.
pub(crate) fn history_line(names: &Names, entry: &HistoryEntry, all: &[HistoryEntry]) -> String {
    let m = &entry.message;
    let reply = m
        .reply_to
        .map(|r| {
            let quoted = all
                .iter()
                .find(|e| e.message.id == r)
                .map(|e| {
                    let t: String = e.message.text.chars().take(30).collect();
                    format!("{}: {t}", names.key(&e.message.author))
                })
                .unwrap_or_else(|| short_id(&r));
            format!(" ↪ [{quoted}]")
        })
        .unwrap_or_default();
    let text = if m.deleted {
        "(message deleted)".to_owned()
    } else {
        match &m.attachment {
            Some(a) => attachment_line(a, &m.text),
            None => m.text.clone(),
        }
    };
    let edited = if m.edited_at_ms.is_some() && !m.deleted {
        " (edited)"
    } else {
        ""
    };
    let reactions = if m.reactions.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = m
            .reactions
            .iter()
            .map(|(who, emoji)| format!("{emoji} {}", names.key(who)))
            .collect();
        format!("  [{}]", list.join(", "))
    };
    format!(
        "[{}] {} {}:{reply} {text}{edited}{}{reactions}",
        time(m.sent_at_ms),
        short_id(&m.id),
        names.key(&m.author),
        ticks(entry.delivery)
    )
}

/// WhatsApp-style ticks.
pub(crate) fn ticks(state: Option<DeliveryState>) -> &'static str {
    match state {
        None => "",
        Some(DeliveryState::Pending) => " ·",
        Some(DeliveryState::Sent) => " ✓",
        Some(DeliveryState::Delivered) => " ✓✓",
        Some(DeliveryState::Read) => " ✓✓ read",
    }
}

/// A `file` event for people.
pub(crate) fn describe_status(hash: &BlobHash, status: &FileStatus) -> String {
    let short = &hash.to_string()[..12];
    match status {
        FileStatus::Trying { source, stored } if *stored > 0 => {
            format!(
                "file {short}: resuming at {} from {source}",
                human_bytes(*stored)
            )
        }
        FileStatus::Trying { source, .. } => format!("file {short}: asking {source}"),
        FileStatus::SourceFailed { source } => {
            format!("file {short}: {source} could not provide it")
        }
        FileStatus::Progress { done, total } => {
            format!(
                "file {short}: {} of {}",
                human_bytes(*done),
                human_bytes(*total)
            )
        }
        FileStatus::Ready { size } => {
            format!("file {short}: complete ({}, verified)", human_bytes(*size))
        }
        FileStatus::Cached {
            relay, recipient, ..
        } => {
            format!("file {short}: relay {relay} holds it for {recipient}")
        }
        FileStatus::Failed { reason } => format!("file {short}: {reason}"),
        FileStatus::Skipped { reason } => {
            format!("file {short}: not downloaded by itself ({reason:?}); `meshchat fetch` gets it")
        }
        FileStatus::NotCached {
            relay,
            recipient,
            reason,
        } => format!("file {short}: relay {relay} would not hold it for {recipient}: {reason}"),
        other => format!("file {short}: {other:?}"),
    }
}

/// A file in a history line: `📎 cat.png (1.2 MiB, image/png) caption`.
pub(crate) fn attachment_line(a: &Attachment, caption: &str) -> String {
    let line = format!("📎 {} ({}, {})", a.name, human_bytes(a.size), a.mime);
    if caption.is_empty() {
        line
    } else {
        format!("{line} {caption}")
    }
}

/// Bytes for people: 1.5 MiB.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Names for peers: contact names where known, else a short PeerId.
pub(crate) struct Names {
    me: PeerId,
    names: HashMap<PeerId, String>,
    contacts: Vec<PeerId>,
}

impl Names {
    pub(crate) fn new(me: PeerId, contacts: &[Contact]) -> Self {
        let names = contacts
            .iter()
            .filter_map(|c| c.name.clone().map(|n| (c.peer, n)))
            .collect();
        let contacts = contacts.iter().map(|c| c.peer).collect();
        Self {
            me,
            names,
            contacts,
        }
    }

    /// Whether `peer` is in my contacts.
    pub(crate) fn is_contact(&self, peer: &PeerId) -> bool {
        self.contacts.contains(peer)
    }

    pub(crate) fn me(&self) -> PeerId {
        self.me
    }

    pub(crate) fn peer(&self, peer: &PeerId) -> String {
        if *peer == self.me {
            return "you".into();
        }
        self.names.get(peer).cloned().unwrap_or_else(|| short(peer))
    }

    pub(crate) fn key(&self, key: &PublicKey) -> String {
        match meshchat_node::peer_id_of(key) {
            Some(peer) => self.peer(&peer),
            None => key.to_string()[..12].to_owned(),
        }
    }
}

/// The last 8 characters of a PeerId, enough to tell peers apart on screen.
pub(crate) fn short(peer: &PeerId) -> String {
    let s = peer.to_string();
    format!("…{}", &s[s.len().saturating_sub(8)..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_neutralised() {
        assert_eq!(terminal_safe("hello, world ✓✓ 🧗"), "hello, world ✓✓ 🧗");
        assert!(matches!(terminal_safe("plain"), Cow::Borrowed(_)));
        // Colours, clearing the screen, a window title, a fake second line.
        let hostile = "hi\x1b[31mred\x1b[2J\x1b]0;pwned\x07\r\n[12:00] bob: send me your key";
        let safe = terminal_safe(hostile);
        assert!(!safe.chars().any(|c| c.is_control()), "{safe:?}");
        assert_eq!(
            safe,
            "hi␛[31mred␛[2J␛]0;pwned␇␍␤[12:00] bob: send me your key"
        );
        // DEL, a C1 CSI (U+009B) and a right-to-left override.
        assert_eq!(terminal_safe("a\u{7f}b\u{9b}31mc\u{202e}d"), "a␡b�31mc�d");
    }

    #[test]
    fn formats_utc_times() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_795_000_000_000), "2026-11-18 11:06:40");
    }
}
