//! The HTTP side of the relay's one port: read one request head (size limit; the caller
//! applies the deadline), then either upgrade `GET /relay` to a WebSocket or answer and close.
//!
//! | path                         | answer                                                   |
//! | ---------------------------- | -------------------------------------------------------- |
//! | `/relay`                     | WebSocket upgrade (RFC 6455); the relay protocol         |
//! | `/healthz`                   | `200 ok`                                                 |
//! | `/metrics`                   | Prometheus text format 0.0.4                             |
//! | `/`, `/index.html`, `/pair`  | the web app's `index.html` (a pairing ticket is in the URL fragment, never sent) |
//! | `/sw.js`, any file of `web/dist` at its path | that file, `Cache-Control: no-cache`     |
//! | `/assets/NAME-HASH.EXT`      | content-addressed: cached a year, `immutable`            |
//! | anything else                | `404 not found`                                          |
//!
//! The web app's files come from [`crate::assets`], a table fixed at build time and searched by
//! the exact path (the query string cut off; nothing is percent-decoded or normalized, so `..`
//! and its encodings name nothing). `GET` and `HEAD` only. A client that accepts gzip gets the
//! embedded gzip bytes with `Content-Encoding: gzip`; any other gets the file inflated. Every
//! file has an ETag per representation, and `If-None-Match` naming it gets `304`.
//!
//! Every answer carries `X-Content-Type-Options`, `Referrer-Policy`, `Permissions-Policy`,
//! `Cross-Origin-Opener-Policy` and a Content-Security-Policy: the web app's ([`app_csp`]) on
//! its files (scripts too: a worker runs under the policy of its script's response), and
//! `default-src 'none'` on the relay's own text.
//!
//! One request per connection (`Connection: close`); request bodies are not read. Requests are
//! not logged, so neither paths nor query strings end up in the relay's output.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::limits::{RELAY_HTTP_MAX_HEADERS, RELAY_WS_PATH};
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::assets::{self, Asset};

/// On every response: no MIME sniffing, no `Referer` leaving the app, the camera for the
/// app's QR scanner and nothing for anyone else, and no opener shared with other origins.
const SECURITY_HEADERS: &str = "X-Content-Type-Options: nosniff\r\n\
    Referrer-Policy: no-referrer\r\n\
    Permissions-Policy: camera=(self)\r\n\
    Cross-Origin-Opener-Policy: same-origin\r\n";

/// The policy of the relay's own text answers: nothing runs, nothing loads, no framing.
const TEXT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// What the client asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// A WebSocket upgrade on the relay path, with its `Sec-WebSocket-Key`.
    Upgrade { key: String },
    /// A page; `head` is true for `HEAD` requests (headers only).
    Page { page: Page, head: bool },
    /// A method this path does not answer; `allow` lists those it does.
    NotAllowed { allow: &'static str },
    /// Something this server refuses, with the status line to answer.
    Bad(&'static str),
}

/// The pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Page {
    Healthz,
    Metrics,
    /// A file of the web app.
    Web(Web),
    NotFound,
}

/// A request for a file of the web app, with what its headers decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Web {
    pub asset: &'static Asset,
    /// The client accepts gzip: send the embedded bytes as they are.
    pub gzip: bool,
    /// `If-None-Match` names the ETag of the representation it would get: answer 304.
    pub not_modified: bool,
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
        let mut headers = [httparse::EMPTY_HEADER; RELAY_HTTP_MAX_HEADERS];
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

/// Every value of the header `name` (it may be sent on several lines).
fn headers<'a>(
    request: &'a httparse::Request<'_, '_>,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    request
        .headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .map(str::trim)
}

fn header<'a>(request: &'a httparse::Request<'_, '_>, name: &'a str) -> Option<&'a str> {
    headers(request, name).next()
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
            return Request::NotAllowed { allow: "GET" };
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
        return Request::NotAllowed { allow: "GET, HEAD" };
    }
    let page = match path {
        "/healthz" => Page::Healthz,
        "/metrics" => Page::Metrics,
        _ => match web_path(path).and_then(assets::find) {
            Some(asset) => {
                let gzip = accepts_gzip(headers(request, "accept-encoding"));
                let etag = if gzip {
                    asset.etag_gzip
                } else {
                    asset.etag_identity
                };
                let not_modified = none_match(headers(request, "if-none-match"), etag);
                Page::Web(Web {
                    asset,
                    gzip,
                    not_modified,
                })
            }
            None => Page::NotFound,
        },
    };
    Request::Page { page, head }
}

/// The table key for a request path: the app's entry points are `index.html`, everything else
/// is its own path without the leading `/`.
fn web_path(path: &str) -> Option<&str> {
    match path {
        "/" | "/pair" => Some("index.html"),
        _ => path.strip_prefix('/'),
    }
}

/// Whether `Accept-Encoding` (RFC 9110 §12.5.3) allows gzip: `gzip` (or `x-gzip`) with a
/// non-zero weight, or else `*` with one.
fn accepts_gzip<'a>(values: impl Iterator<Item = &'a str>) -> bool {
    let (mut gzip, mut any) = (None, None);
    for item in values.flat_map(|v| v.split(',')) {
        let mut params = item.split(';');
        let coding = params.next().unwrap_or("").trim();
        let weight = params.find_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("q")
                .then_some(value.trim())
        });
        // A weight is zero when it is `0`, `0.`, `0.0`… (RFC 9110 §12.4.2).
        let allowed = weight.is_none_or(|q| !q.bytes().all(|b| b == b'0' || b == b'.'));
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(allowed);
        } else if coding == "*" {
            any = Some(allowed);
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// Whether `If-None-Match` (RFC 9110 §13.1.2) names `etag` or is `*`, by weak comparison.
fn none_match<'a>(mut values: impl Iterator<Item = &'a str>, etag: &str) -> bool {
    values.any(|value| {
        value.split(',').any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
        })
    })
}

/// The `101 Switching Protocols` answer to an upgrade with `key`.
pub(crate) fn upgrade_response(key: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    )
}

/// The web app's Content-Security-Policy. The app loads only its own files, may compile its
/// wasm core, and connects only to this relay.
///
/// CSP3 makes `'self'` match the page's own host over `ws:`/`wss:` too (Chromium since 70,
/// Firefox), but WebKit followed only in 2022 (bugs 201591, 235873), and iPhones that have not
/// updated still block it. So `connect-src` also names `public_url`'s origin and its `ws`/`wss`
/// form: that keeps those phones working, and keeps the app working when it is opened at
/// another address than the public URL its pairing tickets name. A public URL that is not a
/// plain `http(s)://host[:port]` (or names no real host, like `0.0.0.0`) adds nothing.
pub(crate) fn app_csp(public_url: &str) -> String {
    let mut connect = String::from("'self'");
    if let Some((http, ws)) = origins(public_url) {
        let _ = write!(connect, " {http} {ws}");
    }
    format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data: blob:; connect-src {connect}; worker-src 'self'; \
         manifest-src 'self'; media-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; \
         form-action 'none'"
    )
}

/// `public_url`'s origin and its WebSocket form, if it is a plain `http(s)` URL of a real host.
fn origins(public_url: &str) -> Option<(String, String)> {
    let (scheme, rest) = public_url.split_once("://")?;
    let ws = match scheme.to_ascii_lowercase().as_str() {
        "http" => "ws",
        "https" => "wss",
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    // Host and port only (no userinfo), in characters a header value and a CSP source can hold.
    let plain = authority
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    let host = authority
        .rsplit_once(':')
        .map_or(authority.as_str(), |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) && !h.is_empty() {
                h
            } else {
                authority.as_str()
            }
        });
    let unspecified = matches!(host, "0.0.0.0" | "[::]" | "[0:0:0:0:0:0:0:0]");
    if authority.is_empty() || !plain || unspecified {
        return None;
    }
    Some((
        format!("{}://{authority}", scheme.to_ascii_lowercase()),
        format!("{ws}://{authority}"),
    ))
}

/// A whole response: status, headers, and the body (absent for `HEAD` and `304`, whose
/// `Content-Length` still gives the length a `GET` would get).
pub(crate) struct Response {
    status: &'static str,
    /// Header lines after the status line, each ending in CRLF; `Content-Length` and
    /// `Connection` are added when written.
    headers: String,
    body: Cow<'static, [u8]>,
    content_length: usize,
    send_body: bool,
}

impl Response {
    /// One of the relay's own text answers (health, metrics, errors): never cached, and under
    /// a policy that runs and loads nothing.
    pub(crate) fn text(status: &'static str, content_type: &str, body: String) -> Response {
        Response {
            status,
            headers: format!(
                "Content-Type: {content_type}\r\nCache-Control: no-store\r\n\
                 Content-Security-Policy: {TEXT_CSP}\r\n{SECURITY_HEADERS}"
            ),
            content_length: body.len(),
            body: Cow::Owned(body.into_bytes()),
            send_body: true,
        }
    }

    /// A file of the web app under the policy `csp` (see [`app_csp`]); `head`: headers only.
    pub(crate) fn web(web: Web, head: bool, csp: &str) -> Response {
        let Web {
            asset,
            gzip,
            not_modified,
        } = web;
        let status = if not_modified {
            "304 Not Modified"
        } else {
            "200 OK"
        };
        let send_body = !not_modified && !head;
        let (body, content_length, etag): (&'static [u8], usize, &str) = if gzip {
            (asset.gzip, asset.gzip.len(), asset.etag_gzip)
        } else if !send_body {
            (&[], asset.len, asset.etag_identity)
        } else {
            match asset.identity() {
                Some(body) => (body, body.len(), asset.etag_identity),
                None => {
                    return Response::text(
                        "500 Internal Server Error",
                        "text/plain; charset=utf-8",
                        "this file did not decompress\n".to_string(),
                    );
                }
            }
        };
        let mut headers = String::with_capacity(768);
        // A 304 carries what updates a cache, not what describes the (absent) body
        // (RFC 9110 §15.4.5).
        if !not_modified {
            let _ = write!(headers, "Content-Type: {}\r\n", asset.content_type);
            if gzip {
                headers.push_str("Content-Encoding: gzip\r\n");
            }
        }
        let _ = write!(
            headers,
            "Vary: Accept-Encoding\r\nETag: {etag}\r\nCache-Control: {}\r\n\
             Content-Security-Policy: {csp}\r\n{SECURITY_HEADERS}",
            asset.cache.header()
        );
        if asset.path == "sw.js" {
            // The worker is at the root, so `/` is its scope anyway; saying so keeps it
            // working if it is ever registered with an explicit scope.
            headers.push_str("Service-Worker-Allowed: /\r\n");
        }
        Response {
            status,
            headers,
            body: Cow::Borrowed(body),
            content_length,
            send_body,
        }
    }

    /// Add one header line.
    pub(crate) fn with_header(mut self, name: &str, value: &str) -> Response {
        let _ = write!(self.headers, "{name}: {value}\r\n");
        self
    }

    /// Headers only, as the answer to `HEAD`.
    pub(crate) fn head_only(mut self) -> Response {
        self.send_body = false;
        self
    }

    /// The status line's code and reason (`200 OK`).
    pub(crate) fn status(&self) -> &'static str {
        self.status
    }
}

/// Write a whole response and close the writing side.
pub(crate) async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    response: &Response,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {}\r\n{}Content-Length: {}\r\nConnection: close\r\n\r\n",
        response.status, response.headers, response.content_length
    );
    stream.write_all(head.as_bytes()).await?;
    if response.send_body {
        stream.write_all(&response.body).await?;
    }
    stream.flush().await?;
    stream.close().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<(Request, Vec<u8>), HeadError> {
        smol::block_on(read_request(&mut &bytes[..], 1024))
    }

    fn page(bytes: &[u8]) -> Page {
        match read(bytes) {
            Ok((Request::Page { page, .. }, _)) => page,
            other => panic!("not a page: {other:?}"),
        }
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
        assert_eq!(request, Request::NotAllowed { allow: "GET, HEAD" });
    }

    #[test]
    fn entry_points_serve_index_html() {
        for path in ["/", "/index.html", "/pair", "/pair?x=1", "/?q#f"] {
            let request = format!("GET {path} HTTP/1.1\r\n\r\n");
            match page(request.as_bytes()) {
                Page::Web(web) => assert_eq!(web.asset.path, "index.html", "{path}"),
                other => panic!("{path}: {other:?}"),
            }
        }
        for path in ["/pair/", "/pair/x", "//index.html", "/assets/../index.html"] {
            let request = format!("GET {path} HTTP/1.1\r\n\r\n");
            assert_eq!(page(request.as_bytes()), Page::NotFound, "{path}");
        }
    }

    #[test]
    fn accept_encoding() {
        let gzip = |value: &str| accepts_gzip(std::iter::once(value));
        assert!(gzip("gzip"));
        assert!(gzip("gzip, deflate, br, zstd"));
        assert!(gzip("br;q=1.0, GZIP;q=0.5"));
        assert!(gzip("x-gzip"));
        assert!(gzip("*"));
        assert!(gzip("gzip;q=0.001"));
        assert!(!gzip(""));
        assert!(!gzip("identity"));
        assert!(!gzip("br, deflate"));
        assert!(!gzip("gzip;q=0"));
        assert!(!gzip("gzip; q=0.000"));
        assert!(!gzip("*;q=0"));
        assert!(!gzip("gzip;q=0, *"), "an explicit gzip weight wins over *");
        assert!(gzip("*;q=0, gzip"));
        assert!(accepts_gzip(["br", "gzip"].into_iter()), "several lines");
    }

    #[test]
    fn if_none_match() {
        let tag = "\"0123\"";
        let matches = |value: &str| none_match(std::iter::once(value), tag);
        assert!(matches("\"0123\""));
        assert!(matches("W/\"0123\""));
        assert!(matches("\"x\", \"0123\""));
        assert!(matches("*"));
        assert!(!matches("\"0124\""));
        assert!(!matches("0123"));
        assert!(!matches(""));
    }

    #[test]
    fn the_app_policy_names_the_public_origin() {
        let csp = app_csp("https://relay.example.net");
        assert!(
            csp.contains("connect-src 'self' https://relay.example.net wss://relay.example.net;")
        );
        assert!(csp.starts_with("default-src 'none'; script-src 'self' 'wasm-unsafe-eval';"));
        assert!(
            app_csp("HTTP://127.0.0.1:8080/x")
                .contains("connect-src 'self' http://127.0.0.1:8080 ws://127.0.0.1:8080;")
        );
        assert!(app_csp("http://[::1]:80").contains("ws://[::1]:80;"));
        for odd in [
            "relay.example.net",
            "ftp://relay.example.net",
            "https://user@relay.example.net",
            "https://",
            "http://0.0.0.0:8080",
            "http://[::]:8080",
            "https://a b",
            "https://evil;script-src *",
            "https://x\r\nSet-Cookie: a",
        ] {
            assert!(
                app_csp(odd).contains("connect-src 'self'; worker-src"),
                "{odd}"
            );
        }
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
