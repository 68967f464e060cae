//! Reading which application protocol a substream speaks from its first
//! bytes, as multistream-select negotiates it in plain text at the start of
//! every yamux substream: uvarint-length-prefixed lines, the header
//! `/multistream/1.0.0\n`, then the dialer's proposals and the listener's
//! answers (`na\n`, or the accepted protocol echoed back).
//!
//! Pure: bytes in, a protocol name (or nothing yet) out.

/// A negotiation line longer than this is not multistream-select.
const MAX_LINE: usize = 1024;
const HEADER: &[u8] = b"/multistream/1.0.0";
const NOT_AVAILABLE: &[u8] = b"na";

/// Splits a byte stream into multistream-select lines (without the `\n`).
#[derive(Debug, Default)]
struct Lines {
    buf: Vec<u8>,
    broken: bool,
}

impl Lines {
    /// Feeds `bytes`; returns the complete lines they finished, in order.
    fn feed(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if self.broken {
            return out;
        }
        self.buf.extend_from_slice(bytes);
        loop {
            let Some((len, prefix)) = uvarint(&self.buf) else {
                if self.buf.len() > 3 {
                    self.broken = true;
                }
                break;
            };
            if len == 0 || len > MAX_LINE {
                self.broken = true;
                break;
            }
            if self.buf.len() < prefix + len {
                break;
            }
            let line: Vec<u8> = self.buf[prefix..prefix + len].to_vec();
            self.buf.drain(..prefix + len);
            match line.split_last() {
                Some((b'\n', text)) => out.push(text.to_vec()),
                _ => {
                    self.broken = true;
                    break;
                }
            }
        }
        if self.broken {
            self.buf = Vec::new();
        }
        out
    }
}

/// An unsigned varint at the start of `bytes`: (value, bytes it took).
fn uvarint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, b) in bytes.iter().enumerate().take(3) {
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Finds the protocol in the listener's lines: the first that is neither the
/// header nor `na` (the accepted protocol, echoed).
#[derive(Debug, Default)]
pub(super) struct ListenerAnswer {
    lines: Lines,
    found: Option<String>,
}

impl ListenerAnswer {
    /// Feeds bytes the listener sent; returns the protocol once, when found.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> Option<String> {
        if self.found.is_some() {
            return None;
        }
        let found = self
            .lines
            .feed(bytes)
            .into_iter()
            .find(|l| l != HEADER && l != NOT_AVAILABLE)
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        self.found.clone_from(&found);
        found
    }

    /// Whether the protocol was found (later bytes need not be fed).
    pub(super) fn done(&self) -> bool {
        self.found.is_some() || self.lines.broken
    }
}

/// Finds the dialer's first proposal in the dialer's lines (what it expects
/// the stream to speak until the listener answers otherwise).
#[derive(Debug, Default)]
pub(super) struct DialerProposal {
    lines: Lines,
    found: bool,
}

impl DialerProposal {
    /// Feeds bytes the dialer sent; returns its first proposal once, when found.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> Option<String> {
        if self.done() {
            return None;
        }
        let found = self
            .lines
            .feed(bytes)
            .into_iter()
            .find(|l| l != HEADER)
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        self.found = found.is_some();
        found
    }

    /// Whether the proposal was found (later bytes need not be fed).
    pub(super) fn done(&self) -> bool {
        self.found || self.lines.broken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Vec<u8> {
        let mut out = vec![(text.len() + 1) as u8];
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
        out
    }

    #[test]
    fn listener_answer_skips_header_and_refusals_across_chunks() {
        let mut wire = line("/multistream/1.0.0");
        wire.extend(line("na"));
        wire.extend(line("/meshchat/sync/1"));
        wire.extend(b"payload bytes");
        let mut answer = ListenerAnswer::default();
        let mut found = Vec::new();
        for chunk in wire.chunks(3) {
            found.extend(answer.feed(chunk));
        }
        assert_eq!(found, vec!["/meshchat/sync/1".to_string()]);
        assert!(answer.done());
    }

    #[test]
    fn dialer_proposal_is_the_first_line_after_the_header() {
        let mut wire = line("/multistream/1.0.0");
        wire.extend(line("/meshsub/1.2.0"));
        wire.extend(line("/meshsub/1.1.0"));
        let mut proposal = DialerProposal::default();
        assert_eq!(proposal.feed(&wire[..5]), None);
        assert_eq!(proposal.feed(&wire[5..]).as_deref(), Some("/meshsub/1.2.0"));
        assert_eq!(proposal.feed(&line("/other")), None);
    }

    #[test]
    fn garbage_and_oversize_lines_find_nothing() {
        let mut answer = ListenerAnswer::default();
        assert_eq!(answer.feed(&[0xff, 0xff, 0xff, 0xff, 1, 2]), None);
        assert!(answer.done());
        let mut answer = ListenerAnswer::default();
        assert_eq!(answer.feed(&[0x80, 0x10, b'x']), None); // 2048 bytes announced
        assert!(answer.done());
        let mut answer = ListenerAnswer::default();
        assert_eq!(answer.feed(&[3, b'a', b'b', b'c']), None); // no newline
        assert!(answer.done());
    }
}
