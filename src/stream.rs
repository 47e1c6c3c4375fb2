//! The connection under a mail session (lettre's SMTP, async-imap's IMAP):
//! TCP, then TLS done here (implicit, or on STARTTLS), and every byte the
//! server sends counted.
//!
//! lettre reads a reply line by line and checks a line's length only once
//! the line has ended: a server that never sends the line end makes it read
//! without limit (an endless `220` grew a process to gigabytes). Reads here
//! fail instead, past [`MAX_LINE`] bytes without a line end or [`MAX_REPLY`]
//! bytes since mailform last wrote (one reply), so memory stays flat
//! whatever the server sends. The counting is on the plain text: TLS is
//! below it, in this module, not in lettre.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::security::Security;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Where to log in: one mail server (SMTP or IMAP), with the trust it is
/// checked against.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// The provider whose `ca_file` is trusted (for hints).
    pub provider: String,
    pub ca_file: Option<std::path::PathBuf>,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) server_name: rustls::pki_types::ServerName<'static>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("server", &self.server())
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The endpoint, trusting the web's roots and the certificates in `ca_file`.
    pub fn new(
        host: &str,
        port: u16,
        security: Security,
        provider: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Endpoint, String> {
        let tls = crate::security::verifying_tls_config(ca_file, "ca_file")?;
        let server_name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| format!("TLS settings for {}: {e}", crate::diagnostic::shown(host)))?;
        Ok(Endpoint {
            host: host.to_string(),
            port,
            security,
            provider: provider.to_string(),
            ca_file: ca_file.map(std::path::Path::to_path_buf),
            tls: Arc::new(tls),
            server_name,
        })
    }

    /// `host:port`, as operators write it.
    pub fn server(&self) -> String {
        crate::security::server_name(&self.host, self.port)
    }

    /// What to try when the port and the security setting may not match.
    pub fn port_hint(&self, protocol: &Protocol) -> String {
        let (key, starttls_port, tls_port) =
            (protocol.key, protocol.starttls_port, protocol.tls_port);
        match self.security {
            Security::Tls => format!(
                "port {} may expect STARTTLS (usually {starttls_port}): try {key}.security = \"starttls\"",
                self.port
            ),
            Security::Starttls => format!(
                "if port {} expects TLS from the first byte (implicit TLS, usually {tls_port}), set {key}.security = \"tls\"",
                self.port
            ),
        }
    }

    /// A TLS failure in operators' terms: what happened, and what to try
    /// (`": …"`, or nothing).
    pub fn tls_words(&self, tls: &rustls::Error, protocol: &Protocol) -> (String, String) {
        use rustls::{CertificateError as C, Error as R};
        match tls {
            R::InvalidCertificate(C::UnknownIssuer) => (
                "the server's certificate is not signed by an authority mailform trusts"
                    .to_string(),
                match &self.ca_file {
                    Some(f) => format!(
                        " (nor by provider `{}`'s ca_file {}): is it the right server?",
                        self.provider,
                        f.display()
                    ),
                    None => format!(
                        ": if the server uses a private CA, set ca_file on provider `{}`",
                        self.provider
                    ),
                },
            ),
            R::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => (
                format!(
                    "the server's certificate is not valid for the name {}",
                    self.host
                ),
                format!(
                    ": set {}.host to a name the certificate carries",
                    protocol.key
                ),
            ),
            R::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => (
                "the server's certificate has expired".to_string(),
                String::new(),
            ),
            R::InvalidMessage(_) => (
                "the server did not answer in TLS (it sent plain text)".to_string(),
                format!(": {}", self.port_hint(protocol)),
            ),
            other => (other.to_string(), String::new()),
        }
    }
}

/// A mail protocol, for the words of hints: its config key and its
/// usual ports.
pub struct Protocol {
    pub key: &'static str,
    pub starttls_port: u16,
    pub tls_port: u16,
}

pub const SMTP: Protocol = Protocol {
    key: "smtp",
    starttls_port: 587,
    tls_port: 465,
};

pub const IMAP: Protocol = Protocol {
    key: "imap",
    starttls_port: 143,
    tls_port: 993,
};

/// XOAUTH2's initial client response (`user=…^Aauth=Bearer …^A^A`),
/// base64: as secret as the token it holds.
pub fn xoauth2(username: &str, token: &crate::secret::Secret) -> zeroize::Zeroizing<String> {
    use base64::Engine as _;
    let initial = zeroize::Zeroizing::new(format!(
        "user={username}\x01auth=Bearer {}\x01\x01",
        token.expose()
    ));
    zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(initial.as_bytes()))
}

/// The longest line a server may send (RFC 5321 §4.5.3.1.5 allows 512
/// bytes; real servers stay far below this).
pub const MAX_LINE: usize = 4 * 1024;

/// The most a server may send in answer to one command (a multi-line EHLO
/// reply is a few hundred bytes).
pub const MAX_REPLY: usize = 64 * 1024;

/// A server's answer was longer than [`MAX_LINE`] or [`MAX_REPLY`].
#[derive(Debug, thiserror::Error)]
#[error(
    "the server sent an over-long reply (over {} KiB in a line, or {} KiB in one answer)",
    MAX_LINE / 1024,
    MAX_REPLY / 1024
)]
pub struct OverLong;

enum Layer {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Between the two, while the handshake runs.
    Upgrading,
}

struct Shared {
    layer: Layer,
    /// Bytes since the last line end.
    line: usize,
    /// Bytes since mailform last wrote.
    reply: usize,
    /// The last bytes of the current line: an IMAP literal's size
    /// (`{N}` at a line's end) is read there before its bytes come.
    tail: [u8; TAIL],
}

/// How much of a line's end is kept to read a literal's size.
const TAIL: usize = 24;

/// Whether `tail` (a line's last bytes, line end included) announces an
/// IMAP literal (`{N}` or `{N+}`) larger than `room`: a reader that sizes
/// its buffer by it must not be asked to.
fn announces_too_much(tail: &[u8], room: usize) -> bool {
    let line = tail
        .strip_suffix(b"\n")
        .map_or(tail, |l| l.strip_suffix(b"\r").unwrap_or(l));
    let Some(inner) = line.strip_suffix(b"}") else {
        return false;
    };
    let inner = inner.strip_suffix(b"+").unwrap_or(inner);
    let Some(open) = inner.iter().rposition(|b| *b == b'{') else {
        return false;
    };
    let digits = &inner[open + 1..];
    !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<usize>().ok())
            .is_none_or(|n| n > room)
}

/// The stream lettre reads and writes.
pub struct Capped {
    shared: Arc<Mutex<Shared>>,
    peer: std::net::SocketAddr,
}

/// What the session keeps to upgrade the stream lettre holds.
#[derive(Clone)]
pub struct Handle(Arc<Mutex<Shared>>);

impl std::fmt::Debug for Capped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capped")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// A capped stream over `tcp`, and the handle that upgrades it to TLS.
pub fn capped(tcp: TcpStream) -> io::Result<(Capped, Handle)> {
    let peer = tcp.peer_addr()?;
    let shared = Arc::new(Mutex::new(Shared {
        layer: Layer::Plain(tcp),
        line: 0,
        reply: 0,
        tail: [0; TAIL],
    }));
    Ok((
        Capped {
            shared: Arc::clone(&shared),
            peer,
        },
        Handle(shared),
    ))
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // Nothing panics while holding it; a poisoned lock is still usable.
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Handle {
    /// The TLS handshake on the TCP connection, with `config` for
    /// `server_name`; what lettre reads from then on is decrypted.
    pub async fn upgrade(
        &self,
        config: Arc<rustls::ClientConfig>,
        server_name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<()> {
        let tcp = {
            let mut shared = lock(&self.0);
            match std::mem::replace(&mut shared.layer, Layer::Upgrading) {
                Layer::Plain(tcp) => tcp,
                other => {
                    shared.layer = other;
                    return Err(io::Error::other("the connection is already encrypted"));
                }
            }
        };
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await?;
        let mut shared = lock(&self.0);
        shared.layer = Layer::Tls(Box::new(tls));
        shared.line = 0;
        shared.reply = 0;
        Ok(())
    }

    /// Whether the handshake is done.
    pub fn is_encrypted(&self) -> bool {
        matches!(lock(&self.0).layer, Layer::Tls(_))
    }
}

impl lettre::transport::smtp::client::AsyncTokioStream for Capped {
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        Ok(self.peer)
    }
}

fn upgrading() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the TLS handshake is running")
}

impl AsyncRead for Capped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut shared = lock(&self.shared);
        // Never more than the answer may still hold (and one byte past it,
        // to tell that it was over), through a buffer of our own.
        let mut chunk = [0u8; 8 * 1024];
        let room = (MAX_REPLY + 1)
            .saturating_sub(shared.reply)
            .clamp(1, chunk.len())
            .min(buf.remaining());
        let mut limited = ReadBuf::new(&mut chunk[..room]);
        let poll = match &mut shared.layer {
            Layer::Plain(s) => Pin::new(s).poll_read(cx, &mut limited),
            Layer::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, &mut limited),
            Layer::Upgrading => return Poll::Ready(Err(upgrading())),
        };
        if let Poll::Ready(Ok(())) = poll {
            let got = limited.filled();
            for (i, &b) in got.iter().enumerate() {
                shared.tail.copy_within(1.., 0);
                shared.tail[TAIL - 1] = b;
                if b == b'\n' {
                    let kept = (shared.line + 1).min(TAIL);
                    let room = MAX_REPLY.saturating_sub(shared.reply + i + 1);
                    if announces_too_much(&shared.tail[TAIL - kept..], room) {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            OverLong,
                        )));
                    }
                }
                shared.line = if b == b'\n' { 0 } else { shared.line + 1 };
                if shared.line > MAX_LINE {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, OverLong)));
                }
            }
            shared.reply += got.len();
            if shared.reply > MAX_REPLY {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, OverLong)));
            }
            buf.put_slice(got);
        }
        poll
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut shared = lock(&self.shared);
        // A new command: a new answer may come.
        shared.reply = 0;
        match &mut shared.layer {
            Layer::Plain(s) => Pin::new(s).poll_write(cx, data),
            Layer::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
            Layer::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut shared = lock(&self.shared);
        match &mut shared.layer {
            Layer::Plain(s) => Pin::new(s).poll_flush(cx),
            Layer::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Layer::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut shared = lock(&self.shared);
        match &mut shared.layer {
            Layer::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Layer::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Layer::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

/// Whether `e`'s chain holds [`OverLong`].
pub fn is_over_long(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.downcast_ref::<OverLong>().is_some() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<io::Error>()
            && io
                .get_ref()
                .is_some_and(|i| i.downcast_ref::<OverLong>().is_some())
        {
            return true;
        }
        next = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_literal_larger_than_the_answer_may_be_is_refused_before_it_comes() {
        assert!(announces_too_much(
            b"* 1 FETCH (BODY[] {400000000}\r\n",
            64 * 1024
        ));
        assert!(announces_too_much(b"y {99999999999999999999999}\r\n", 10));
        assert!(announces_too_much(b"x {70000+}\r\n", 65_536));
        assert!(!announces_too_much(b"x {12}\r\n", 65_536));
        assert!(!announces_too_much(b"250 OK\r\n", 65_536));
        assert!(!announces_too_much(b"+ {}\r\n", 65_536));
    }
}
