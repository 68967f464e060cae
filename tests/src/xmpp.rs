//! A minimal XMPP client over plain TCP, enough to drive an XMPP server as
//! a baseline on loopback: stream open, SASL PLAIN, resource binding, a
//! session if the server insists, presence, and raw stanzas both ways.
//!
//! Parsing is deliberately shallow: [`Splitter`] cuts the byte stream into
//! top-level elements by counting tags (no entities, CDATA or comments,
//! which a server such as prosody does not send; `>` inside attribute
//! values is escaped by it), and callers look into an element with
//! [`attr`] and plain substring checks. Every buffer is bounded.

use std::{
    fmt::Write as _,
    io::{self, ErrorKind},
    net::SocketAddr,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpStream,
    },
};

/// The longest element (or unparsed input) the client holds.
pub const MAX_ELEMENT: usize = 1 << 20;

const READ_CHUNK: usize = 64 * 1024;

/// What [`Splitter::next_item`] found at the front of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The server's `<stream:stream …>` header (and any `<?xml?>` before it).
    StreamOpen(String),
    /// A complete top-level element: a stanza, stream features, SASL.
    Element(String),
    /// `</stream:stream>`: the server closed the stream.
    StreamClose,
}

/// Cuts an XMPP byte stream into top-level elements; sans-I/O, bounded to
/// [`MAX_ELEMENT`] bytes of unparsed input.
#[derive(Debug, Default)]
pub struct Splitter {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out.
    start: usize,
}

impl Splitter {
    /// Appends bytes read from the socket; fails if that would hold more
    /// than [`MAX_ELEMENT`] bytes not yet handed out.
    pub fn push(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.len() + bytes.len() > MAX_ELEMENT {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                "xmpp: more than MAX_ELEMENT bytes without a complete element",
            ));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// The next complete item, or `None` until more bytes arrive.
    pub fn next_item(&mut self) -> io::Result<Option<Item>> {
        let rest = &self.buf[self.start..];
        let Some(first) = rest.iter().position(|b| !b.is_ascii_whitespace()) else {
            self.start = self.buf.len();
            return Ok(None);
        };
        let mut pos = first;
        let mut depth = 0usize;
        loop {
            let lt = rest[pos..].iter().position(|&b| b == b'<');
            let gap = &rest[pos..lt.map_or(rest.len(), |lt| pos + lt)];
            if depth == 0 && !gap.iter().all(u8::is_ascii_whitespace) {
                return Err(bad("text outside any element"));
            }
            let Some(lt) = lt else {
                return Ok(None);
            };
            let tag_start = pos + lt;
            let Some(gt) = rest[tag_start..].iter().position(|&b| b == b'>') else {
                return Ok(None);
            };
            let tag_end = tag_start + gt + 1;
            let tag = &rest[tag_start..tag_end];
            pos = tag_end;
            if tag.starts_with(b"<?") {
                // The XML declaration: part of the stream header.
                if depth != 0 {
                    return Err(bad("processing instruction inside an element"));
                }
                continue;
            }
            if tag.starts_with(b"<!") {
                return Err(bad("comments, CDATA and DTDs are not expected"));
            }
            if tag.starts_with(b"</") {
                if depth == 0 {
                    if tag.starts_with(b"</stream:stream") {
                        self.start += tag_end;
                        return Ok(Some(Item::StreamClose));
                    }
                    return Err(bad("closing tag with nothing open"));
                }
                depth -= 1;
            } else if tag.ends_with(b"/>") {
                // Self-closing: no change of depth.
            } else if depth == 0 && tag.starts_with(b"<stream:stream") {
                let header = text(&rest[first..tag_end])?;
                self.start += tag_end;
                return Ok(Some(Item::StreamOpen(header)));
            } else {
                depth += 1;
            }
            if depth == 0 {
                let element = text(&rest[first..tag_end])?;
                self.start += tag_end;
                return Ok(Some(Item::Element(element)));
            }
        }
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, format!("xmpp: {what}"))
}

fn text(bytes: &[u8]) -> io::Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| bad("not UTF-8"))
}

/// The value of attribute `name` on the first `<tag …>` in `element`
/// (entities left as they are).
pub fn attr<'a>(element: &'a str, tag: &str, name: &str) -> Option<&'a str> {
    let open = format!("<{tag}");
    let mut from = 0;
    let at = loop {
        let at = from + element[from..].find(&open)?;
        // `<tag` followed by whitespace, `/` or `>`: not `<tagger`.
        match element[at + open.len()..].chars().next() {
            Some(c) if c.is_whitespace() || c == '/' || c == '>' => break at,
            _ => from = at + open.len(),
        }
    };
    let tag_text = &element[at..at + element[at..].find('>')?];
    let mut rest = tag_text;
    while let Some(i) = rest.find(name) {
        let before = rest[..i].chars().last();
        let after = &rest[i + name.len()..];
        if before.is_some_and(char::is_whitespace) && after.starts_with('=') {
            let quote = after[1..].chars().next()?;
            let value = &after[2..];
            return value.find(quote).map(|end| &value[..end]);
        }
        rest = &rest[i + name.len()..];
    }
    None
}

/// The text between `<tag>` and `</tag>` in `element` (`tag` written
/// without attributes).
pub fn inner<'a>(element: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = element.find(&open)? + open.len();
    let end = start + element[start..].find(&close)?;
    Some(&element[start..end])
}

/// `s` with XML's five special characters escaped, for text and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 with padding (SASL PLAIN's encoding).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The reading half of a client: items in the order the server sent them.
#[derive(Debug)]
pub struct Reader {
    socket: OwnedReadHalf,
    splitter: Splitter,
    chunk: Box<[u8]>,
}

impl Reader {
    /// The next item already read, without touching the socket.
    pub fn buffered(&mut self) -> io::Result<Option<Item>> {
        self.splitter.next_item()
    }

    /// Reads from the socket once (at most 64 KiB); fails on end of stream.
    pub async fn read_more(&mut self) -> io::Result<()> {
        let n = self.socket.read(&mut self.chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "xmpp: server closed the connection",
            ));
        }
        self.splitter.push(&self.chunk[..n])
    }

    /// The next item, reading as needed.
    pub async fn next(&mut self) -> io::Result<Item> {
        loop {
            if let Some(item) = self.buffered()? {
                return Ok(item);
            }
            self.read_more().await?;
        }
    }

    /// The next top-level element; fails on a stream error or close.
    pub async fn element(&mut self) -> io::Result<String> {
        match self.next().await? {
            Item::Element(e) if e.starts_with("<stream:error") => {
                Err(io::Error::other(format!("xmpp stream error: {e}")))
            }
            Item::Element(e) => Ok(e),
            other => Err(io::Error::other(format!("xmpp: unexpected {other:?}"))),
        }
    }

    /// Reads until the server closes its stream or the connection.
    pub async fn until_closed(&mut self) -> io::Result<()> {
        loop {
            match self.next().await {
                Ok(Item::StreamClose) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

/// A logged-in client: its full JID, and the socket's two halves.
#[derive(Debug)]
pub struct Client {
    /// The full JID the server bound (`user@host/resource`).
    pub jid: String,
    /// Incoming items.
    pub reader: Reader,
    /// Where stanzas go; write whole stanzas with `write_all`.
    pub writer: OwnedWriteHalf,
    /// For ids of the client's own iqs.
    next_iq: u64,
}

impl Client {
    /// [`Client::connect`], then [`Client::available`]: a logged-in
    /// client the server routes messages to.
    pub async fn login(
        addr: SocketAddr,
        host: &str,
        user: &str,
        password: &str,
    ) -> io::Result<Self> {
        let mut client = Self::connect(addr, host, user, password).await?;
        client.available().await?;
        Ok(client)
    }

    /// Connects to `addr` (TCP, `nodelay`), authenticates as `user@host`
    /// with SASL PLAIN, binds a resource and starts a session if the server
    /// requires one. Not yet available: no presence sent.
    pub async fn connect(
        addr: SocketAddr,
        host: &str,
        user: &str,
        password: &str,
    ) -> io::Result<Self> {
        let socket = TcpStream::connect(addr).await?;
        socket.set_nodelay(true)?;
        let (read, writer) = socket.into_split();
        let mut client = Self {
            jid: String::new(),
            reader: Reader {
                socket: read,
                splitter: Splitter::default(),
                chunk: vec![0; READ_CHUNK].into_boxed_slice(),
            },
            writer,
            next_iq: 0,
        };
        let features = client.open_stream(host).await?;
        if !features.contains("<mechanism>PLAIN</mechanism>") {
            return Err(io::Error::other(format!(
                "xmpp: the server offers no SASL PLAIN: {features}"
            )));
        }
        let credentials = base64(format!("\0{user}\0{password}").as_bytes());
        client
            .send(&format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{credentials}</auth>"
            ))
            .await?;
        let outcome = client.reader.element().await?;
        if !outcome.starts_with("<success") {
            return Err(io::Error::other(format!("xmpp: SASL failed: {outcome}")));
        }
        let features = client.open_stream(host).await?;
        let bind = client
            .iq(
                "set",
                "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench</resource></bind>",
            )
            .await?;
        client.jid = inner(&bind, "jid")
            .ok_or_else(|| io::Error::other(format!("xmpp: no jid bound: {bind}")))?
            .to_owned();
        if let Some(session) = features
            .find("urn:ietf:params:xml:ns:xmpp-session")
            .map(|at| &features[at..])
        {
            let optional = session
                .split("</session>")
                .next()
                .unwrap_or("")
                .contains("<optional");
            if !optional {
                client
                    .iq(
                        "set",
                        "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>",
                    )
                    .await?;
            }
        }
        Ok(client)
    }

    /// Sends initial presence and returns once the server has answered a
    /// ping sent after it (it has processed the presence: the client is
    /// available). Anything arriving before that answer is skipped: when
    /// offline messages may be waiting, send `<presence/>` by hand and read
    /// them instead.
    pub async fn available(&mut self) -> io::Result<()> {
        self.send("<presence/>").await?;
        self.ping().await
    }

    /// Opens (or restarts) the stream to `host`; returns its features.
    async fn open_stream(&mut self, host: &str) -> io::Result<String> {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream to='{}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
            escape(host)
        ))
        .await?;
        match self.reader.next().await? {
            Item::StreamOpen(_) => {}
            other => {
                return Err(io::Error::other(format!(
                    "xmpp: expected a stream header, got {other:?}"
                )))
            }
        }
        let features = self.reader.element().await?;
        if !features.starts_with("<stream:features") {
            return Err(io::Error::other(format!(
                "xmpp: expected features, got {features}"
            )));
        }
        Ok(features)
    }

    /// Writes `xml` (whole stanzas) to the socket.
    pub async fn send(&mut self, xml: &str) -> io::Result<()> {
        self.writer.write_all(xml.as_bytes()).await
    }

    /// Sends an iq of `kind` with `payload` to the server and waits for its
    /// result, skipping anything else that arrives first; fails on an error
    /// answer.
    pub async fn iq(&mut self, kind: &str, payload: &str) -> io::Result<String> {
        self.next_iq += 1;
        let id = format!("iq{}", self.next_iq);
        let mut stanza = String::new();
        let _ = write!(stanza, "<iq type='{kind}' id='{id}'>{payload}</iq>");
        self.send(&stanza).await?;
        loop {
            let element = self.reader.element().await?;
            if element.starts_with("<iq") && attr(&element, "iq", "id") == Some(&id) {
                return match attr(&element, "iq", "type") {
                    Some("result") => Ok(element),
                    _ => Err(io::Error::other(format!("xmpp: iq failed: {element}"))),
                };
            }
        }
    }

    /// An XEP-0199 ping to the server: once answered, the server has
    /// processed everything this client sent before it (a session's stanzas
    /// are handled in order). Skips anything else that arrives first.
    pub async fn ping(&mut self) -> io::Result<()> {
        self.iq("get", "<ping xmlns='urn:xmpp:ping'/>")
            .await
            .map(drop)
    }

    /// Closes the stream and waits until the server has closed its side
    /// (it has then ended the session: the user is offline).
    pub async fn logout(mut self) -> io::Result<()> {
        self.send("<presence type='unavailable'/></stream:stream>")
            .await?;
        self.reader.until_closed().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(input: &[u8]) -> io::Result<Vec<Item>> {
        let mut s = Splitter::default();
        s.push(input)?;
        let mut out = Vec::new();
        while let Some(item) = s.next_item()? {
            out.push(item);
        }
        Ok(out)
    }

    #[test]
    fn splits_a_server_stream() {
        let input = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='x'>\
            <stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>\n\
            <success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/> \
            <message from='a@h/r' id='m1'><body>hi &amp; bye</body><request xmlns='urn:xmpp:receipts'/></message>\
            </stream:stream>";
        let items = split_all(input).expect("split");
        assert_eq!(items.len(), 5);
        assert!(
            matches!(&items[0], Item::StreamOpen(h) if h.starts_with("<?xml") && h.ends_with("id='x'>"))
        );
        assert!(
            matches!(&items[1], Item::Element(e) if e.starts_with("<stream:features") && e.ends_with("</stream:features>"))
        );
        assert_eq!(
            items[2],
            Item::Element("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>".into())
        );
        assert!(
            matches!(&items[3], Item::Element(e) if e.contains("<request xmlns='urn:xmpp:receipts'/>"))
        );
        assert_eq!(items[4], Item::StreamClose);
    }

    #[test]
    fn waits_for_the_rest_of_an_element_fed_byte_by_byte() {
        let input = b"<message id='m1'><body>x</body></message><iq id='2' type='result'/>";
        let mut s = Splitter::default();
        let mut out = Vec::new();
        for b in input {
            s.push(&[*b]).expect("push");
            while let Some(item) = s.next_item().expect("next") {
                out.push(item);
            }
        }
        assert_eq!(
            out,
            [
                Item::Element("<message id='m1'><body>x</body></message>".into()),
                Item::Element("<iq id='2' type='result'/>".into()),
            ]
        );
    }

    #[test]
    fn refuses_garbage() {
        for garbage in [
            &b"hello"[..],
            b"hello<message/>",
            b"</message>",
            b"<!-- comment -->",
            b"<a><![CDATA[x]]></a>",
            b"<message>x</message>trailing<iq/>",
        ] {
            assert!(
                split_all(garbage).is_err(),
                "{:?}",
                String::from_utf8_lossy(garbage)
            );
        }
        assert!(split_all(b"<message><body>\xff</body></message>").is_err());
    }

    #[test]
    fn bounds_unparsed_input() {
        let mut s = Splitter::default();
        s.push(b"<message><body>").expect("push");
        let big = vec![b'x'; MAX_ELEMENT];
        assert!(s.push(&big).is_err());
        // Handed-out bytes do not count against the bound.
        let mut s = Splitter::default();
        let element = format!("<body>{}</body>", "x".repeat(MAX_ELEMENT / 2));
        for _ in 0..4 {
            s.push(element.as_bytes()).expect("push");
            assert!(matches!(
                s.next_item().expect("next"),
                Some(Item::Element(_))
            ));
        }
    }

    #[test]
    fn reads_attributes_of_the_named_tag() {
        let m = "<message from='a@h/r' to=\"b@h\" id='m7'><received xmlns='urn:xmpp:receipts' id='m3'/></message>";
        assert_eq!(attr(m, "message", "id"), Some("m7"));
        assert_eq!(attr(m, "message", "to"), Some("b@h"));
        assert_eq!(attr(m, "received", "id"), Some("m3"));
        assert_eq!(attr(m, "received", "from"), None);
        assert_eq!(attr(m, "request", "id"), None);
        assert_eq!(attr("<iqx id='1'/><iq id='2'/>", "iq", "id"), Some("2"));
        assert_eq!(attr("<iq xid='1' id='2'/>", "iq", "id"), Some("2"));
        assert_eq!(
            inner("<iq><bind><jid>a@h/r</jid></bind></iq>", "jid"),
            Some("a@h/r")
        );
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(b"\0alice\0pw"), "AGFsaWNlAHB3");
    }

    #[test]
    fn escapes_the_five() {
        assert_eq!(
            escape("<a & 'b' \"c\">"),
            "&lt;a &amp; &apos;b&apos; &quot;c&quot;&gt;"
        );
    }
}
