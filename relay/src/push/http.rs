//! One push over HTTP/1.1: resolve, connect, TLS (rustls with the system's roots, as the relay's
//! client does), write the request, read the response's status line and headers, close.
//!
//! Written by hand over `httparse` (which the relay's server side already uses) rather than
//! with hyper's client: a push is one POST whose answer is a status code and at most a
//! `Retry-After`, on a fresh connection (`Connection: close`), so the whole exchange is ~100
//! lines, and hyper would bring `http`, `http-body`, `tokio` traits and an executor adapter for
//! it. Nothing of the response body is read.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::limits::RELAY_PUSH_RESPONSE_HEAD_MAX_LEN;
use futures_rustls::TlsConnector;
use muxagent_proto::frame::PushUrgency;
use rustls_pki_types::ServerName;
use smol::Async;
use smol::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::endpoint::{Target, is_public};
use crate::time::until;

/// What the push service answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub status: u16,
    /// `Retry-After` in seconds, when given as such (an HTTP date is ignored: the backoff
    /// applies).
    pub retry_after: Option<u64>,
}

/// Why a push did not get an answer.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The service's name did not resolve.
    Resolve(io::Error),
    /// A default service's name resolved to no public address.
    NotPublic,
    /// No address took the TCP connection in time, or at all.
    Connect(io::Error),
    /// The TLS handshake failed (or no root certificates were found).
    Tls(String),
    /// Writing the request or reading the answer failed.
    Io(io::Error),
    /// The answer was not an HTTP/1.x response head of at most
    /// [`RELAY_PUSH_RESPONSE_HEAD_MAX_LEN`] bytes.
    BadResponse,
}

impl Failure {
    /// What to log: nothing of the endpoint beyond its origin (which the caller adds).
    pub(crate) fn describe(&self) -> String {
        match self {
            Failure::Resolve(e) => format!("cannot resolve: {e}"),
            Failure::NotPublic => "resolves to no public address".to_string(),
            Failure::Connect(e) => format!("cannot connect: {e}"),
            Failure::Tls(e) => format!("TLS failed: {e}"),
            Failure::Io(e) => format!("the exchange failed: {e}"),
            Failure::BadResponse => "the answer was not an HTTP response".to_string(),
        }
    }
}

/// A push's request head (RFC 8030 §5, RFC 8292 §3, RFC 8188 body).
pub(crate) struct Head<'a> {
    pub target: &'a Target,
    /// `vapid t=…, k=…`.
    pub authorization: &'a str,
    pub urgency: PushUrgency,
    /// Base64url without padding.
    pub topic: Option<&'a str>,
    pub ttl_secs: u32,
    pub body_len: usize,
}

impl Head<'_> {
    /// The request line and headers, ready to write.
    pub(crate) fn encode(&self) -> String {
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Encoding: aes128gcm\r\n\
             Content-Type: application/octet-stream\r\nTTL: {}\r\nUrgency: {}\r\n",
            self.target.path,
            self.target.host_header(),
            self.authorization,
            self.ttl_secs,
            match self.urgency {
                PushUrgency::Normal => "normal",
                PushUrgency::High => "high",
            },
        );
        if let Some(topic) = self.topic {
            head.push_str("Topic: ");
            head.push_str(topic);
            head.push_str("\r\n");
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body_len
        ));
        head
    }
}

/// POST `head` and `body` to `target` and read the answer's head. The caller bounds the whole
/// exchange in time; `connect_timeout` bounds the TCP connection alone.
pub(crate) async fn post(
    target: &Target,
    tls: Option<&TlsConnector>,
    head: &[u8],
    body: &[u8],
    connect_timeout: Duration,
) -> Result<Answer, Failure> {
    let mut addrs: Vec<SocketAddr> = smol::net::resolve((target.host.as_str(), target.port))
        .await
        .map_err(Failure::Resolve)?;
    if !target.explicit {
        addrs.retain(|addr| is_public(addr.ip()));
        if addrs.is_empty() {
            return Err(Failure::NotPublic);
        }
    }
    let tcp = until(std::time::Instant::now() + connect_timeout, connect(&addrs))
        .await
        .ok_or_else(|| {
            Failure::Connect(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection timed out",
            ))
        })??;
    let _ = tcp.get_ref().set_nodelay(true);
    if target.tls {
        let connector = tls.ok_or_else(|| Failure::Tls("no TLS configuration".into()))?;
        let name =
            ServerName::try_from(target.host.clone()).map_err(|e| Failure::Tls(e.to_string()))?;
        let mut stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| Failure::Tls(e.to_string()))?;
        exchange(&mut stream, head, body).await
    } else {
        let mut stream = tcp;
        exchange(&mut stream, head, body).await
    }
}

async fn connect(addrs: &[SocketAddr]) -> Result<Async<std::net::TcpStream>, Failure> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    for addr in addrs {
        match Async::<std::net::TcpStream>::connect(*addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(Failure::Connect(last))
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    head: &[u8],
    body: &[u8],
) -> Result<Answer, Failure> {
    stream.write_all(head).await.map_err(Failure::Io)?;
    stream.write_all(body).await.map_err(Failure::Io)?;
    stream.flush().await.map_err(Failure::Io)?;
    let answer = read_answer(stream).await?;
    // Best effort: the service may already have closed its side.
    let _ = stream.close().await;
    Ok(answer)
}

/// Read until a whole response head has arrived, and parse it.
async fn read_answer<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Answer, Failure> {
    let mut buf = vec![0u8; RELAY_PUSH_RESPONSE_HEAD_MAX_LEN];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            return Err(Failure::BadResponse);
        }
        let read = stream.read(&mut buf[filled..]).await.map_err(Failure::Io)?;
        if read == 0 {
            return Err(Failure::BadResponse);
        }
        filled += read;
        if let Some(answer) = parse_answer(&buf[..filled])? {
            return Ok(answer);
        }
    }
}

/// The answer in `bytes`, `None` while its head is incomplete.
fn parse_answer(bytes: &[u8]) -> Result<Option<Answer>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(bytes) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(_)) => {
            let status = response.code.ok_or(Failure::BadResponse)?;
            if status < 200 {
                // We send no `Expect`, so an interim answer is not a push service's.
                return Err(Failure::BadResponse);
            }
            let retry_after = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("retry-after"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            Ok(Some(Answer {
                status,
                retry_after,
            }))
        }
        Err(_) => Err(Failure::BadResponse),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let parse = |text: &str| parse_answer(text.as_bytes()).ok().flatten();
        assert_eq!(
            parse("HTTP/1.1 201 Created\r\nLocation: x\r\n\r\n"),
            Some(Answer {
                status: 201,
                retry_after: None
            })
        );
        assert_eq!(
            parse("HTTP/1.1 429 Too Many\r\nretry-after: 7\r\n\r\nbody"),
            Some(Answer {
                status: 429,
                retry_after: Some(7)
            })
        );
        assert_eq!(
            parse("HTTP/1.1 503 x\r\nRetry-After: Fri, 31 Dec 1999 23:59:59 GMT\r\n\r\n")
                .map(|a| a.retry_after),
            Some(None)
        );
        assert!(matches!(parse_answer(b"HTTP/1.1 200 OK\r\n"), Ok(None)));
        assert!(parse_answer(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.1 100 Continue\r\n\r\n").is_err());
    }

    #[test]
    fn the_request_head() {
        let target = Target {
            tls: true,
            host: "fcm.googleapis.com".into(),
            port: 443,
            path: "/fcm/send/abc".into(),
            explicit: false,
        };
        let head = Head {
            target: &target,
            authorization: "vapid t=a.b.c, k=K",
            urgency: PushUrgency::High,
            topic: Some("AAAAAAAAAAAAAAAAAAAAAA"),
            ttl_secs: 60,
            body_len: 5,
        }
        .encode();
        assert_eq!(
            head,
            "POST /fcm/send/abc HTTP/1.1\r\nHost: fcm.googleapis.com\r\n\
             Authorization: vapid t=a.b.c, k=K\r\nContent-Encoding: aes128gcm\r\n\
             Content-Type: application/octet-stream\r\nTTL: 60\r\nUrgency: high\r\n\
             Topic: AAAAAAAAAAAAAAAAAAAAAA\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
        );
    }
}
