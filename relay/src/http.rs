//! The HTTP side of the relay's one port: read one request head (size limit; the caller
//! applies the deadline), then either upgrade `GET /relay` to a WebSocket or answer a page
//! and close.
//!
//! | path       | answer                                                             |
//! | ---------- | ------------------------------------------------------------------ |
//! | `/relay`   | WebSocket upgrade (RFC 6455); the relay protocol runs on it        |
//! | `/healthz` | `200 ok`                                                           |
//! | `/metrics` | Prometheus text format 0.0.4                                       |
//! | `/`        | placeholder page until the web app exists                          |
//! | `/pair`    | placeholder page (the ticket is in the URL fragment, never sent)   |
//!
//! One request per connection (`Connection: close`); request bodies are not read.

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use muxagent_proto::limits::RELAY_WS_PATH;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Headers read at most.
const MAX_HEADERS: usize = 32;

/// What the client asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// A WebSocket upgrade on the relay path, with its `Sec-WebSocket-Key`.
    Upgrade { key: String },
    /// A page; `head` is true for `HEAD` requests (headers only).
    Page { page: Page, head: bool },
    /// Something this server refuses, with the status line to answer.
    Bad(&'static str),
}

/// The pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Page {
    Healthz,
    Metrics,
    Home,
    Pair,
    NotFound,
}

/// Why no request was read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The connection closed or failed before a whole head arrived.
    Io,
    /// The head was over the limit or not HTTP.
    Invalid(&'static str),
}

/// Read one request head of at most `max_len` bytes. Returns it parsed, plus any bytes read
/// past its end (the first WebSocket frames of an eager client).
pub(crate) async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    max_len: usize,
) -> Result<(Request, Vec<u8>), HeadError> {
    let mut buf = vec![0u8; max_len];
    let mut filled = 0;
    loop {
        let n = stream
            .read(&mut buf[filled..])
            .await
            .map_err(|_| HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Io);
        }
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf[..filled]) {
            Ok(httparse::Status::Complete(len)) => {
                let parsed = classify(&request);
                return Ok((parsed, buf[len..filled].to_vec()));
            }
            Ok(httparse::Status::Partial) if filled < max_len => continue,
            Ok(httparse::Status::Partial) => {
                return Err(HeadError::Invalid("431 Request Header Fields Too Large"));
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HeadError::Invalid("431 Request Header Fields Too Large"));
            }
            Err(_) => return Err(HeadError::Invalid("400 Bad Request")),
        }
    }
}

fn header<'a>(request: &'a httparse::Request<'_, '_>, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::trim)
}

fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

fn classify(request: &httparse::Request<'_, '_>) -> Request {
    let method = request.method.unwrap_or("");
    let full_path = request.path.unwrap_or("/");
    let path = full_path.split(['?', '#']).next().unwrap_or("/");
    let head = method == "HEAD";
    if path == RELAY_WS_PATH {
        if method != "GET" {
            return Request::Bad("405 Method Not Allowed");
        }
        let upgrade = has_token(header(request, "upgrade"), "websocket");
        let connection = has_token(header(request, "connection"), "upgrade");
        let version = header(request, "sec-websocket-version") == Some("13");
        let key = header(request, "sec-websocket-key").filter(|k| !k.is_empty() && k.len() <= 64);
        return match (upgrade && connection && version, key) {
            (true, Some(key)) => Request::Upgrade {
                key: key.to_string(),
            },
            _ => Request::Bad("426 Upgrade Required"),
        };
    }
    if method != "GET" && !head {
        return Request::Bad("405 Method Not Allowed");
    }
    let page = match path {
        "/healthz" => Page::Healthz,
        "/metrics" => Page::Metrics,
        "/" | "/index.html" => Page::Home,
        "/pair" => Page::Pair,
        _ => Page::NotFound,
    };
    Request::Page { page, head }
}

/// The `101 Switching Protocols` answer to an upgrade with `key`.
pub(crate) fn upgrade_response(key: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    )
}

/// Write a whole response and close the writing side.
pub(crate) async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.flush().await?;
    stream.close().await
}

/// The placeholder page for `/` and `/pair`.
pub(crate) fn placeholder(page: Page, public_url: &str) -> String {
    let what = match page {
        Page::Pair => {
            "This is a pairing link. The muxagent web app that opens it is not served yet: \
             pair from a terminal with <code>muxagent ctl pair</code> and this link."
        }
        _ => "This relay routes end-to-end-encrypted traffic between your devices and machines.",
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>muxagent relay</title><style>body{{font-family:system-ui,sans-serif;\
         max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.5}}</style></head>\
         <body><h1>muxagent relay</h1><p>{what}</p><p>Relay URL: <code>{}</code></p>\
         </body></html>\n",
        escape(public_url)
    )
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<(Request, Vec<u8>), HeadError> {
        smol::block_on(read_request(&mut &bytes[..], 1024))
    }

    #[test]
    fn upgrade_and_pages() {
        let upgrade = b"GET /relay HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
            Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nextra";
        let (request, rest) = read(upgrade).unwrap_or((Request::Bad(""), Vec::new()));
        assert_eq!(
            request,
            Request::Upgrade {
                key: "dGhlIHNhbXBsZSBub25jZQ==".into()
            }
        );
        assert_eq!(rest, b"extra");
        assert!(
            upgrade_response("dGhlIHNhbXBsZSBub25jZQ==").contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        let (request, _) =
            read(b"GET /healthz?x=1 HTTP/1.1\r\n\r\n").unwrap_or((Request::Bad(""), Vec::new()));
        assert_eq!(
            request,
            Request::Page {
                page: Page::Healthz,
                head: false
            }
        );
        let (request, _) =
            read(b"GET /relay HTTP/1.1\r\n\r\n").unwrap_or((Request::Bad(""), Vec::new()));
        assert_eq!(request, Request::Bad("426 Upgrade Required"));
        let (request, _) =
            read(b"POST / HTTP/1.1\r\n\r\n").unwrap_or((Request::Bad(""), Vec::new()));
        assert_eq!(request, Request::Bad("405 Method Not Allowed"));
    }

    #[test]
    fn oversized_and_garbage_heads() {
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(2000));
        assert!(
            matches!(read(long.as_bytes()), Err(HeadError::Invalid(s)) if s.starts_with("431"))
        );
        assert!(matches!(
            read(b"\x16\x03\x01garbage\r\n\r\n"),
            Err(HeadError::Invalid(_))
        ));
        assert!(matches!(read(b"GET / HT"), Err(HeadError::Io)));
    }
}
