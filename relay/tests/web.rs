//! The web app over HTTP: a relay on 127.0.0.1 serves every file of `web/dist` (read here at
//! test time, so any build of the web app passes), with the right types, caching, ETags,
//! encodings and security headers, and nothing outside its table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod common;

use std::io::Read as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};

use common::{TestRelay, config, within};
use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};

const HTML_CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self'; img-src 'self' data: blob:; \
    connect-src 'self' https://relay.example.net wss://relay.example.net; worker-src 'self'; \
    manifest-src 'self'; media-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'none'";

/// A parsed HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        let mut found = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let value = found.next().map(|(_, v)| v.as_str());
        assert!(found.next().is_none(), "{name} sent twice");
        value
    }

    fn content_length(&self) -> usize {
        self.header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Content-Length in {:?}", self.headers))
    }
}

/// Send `head` (a whole request head) and read the response until the relay closes.
async fn exchange(addr: SocketAddr, head: &str) -> Reply {
    within("an HTTP exchange", async {
        let mut stream = smol::Async::<TcpStream>::connect(addr)
            .await
            .expect("tcp connect");
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes).await;
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&bytes)));
        let head = std::str::from_utf8(&bytes[..end]).expect("ASCII head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(':').expect("header line");
                (name.to_string(), value.trim().to_string())
            })
            .collect();
        Reply {
            status,
            headers,
            body: bytes[end + 4..].to_vec(),
        }
    })
    .await
}

async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: relay\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    exchange(addr, &head).await
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(addr, "GET", path, headers).await
}

const GZIP: (&str, &str) = ("Accept-Encoding", "gzip, deflate, br, zstd");

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist")
}

/// Every file the relay should serve: `/`-separated paths under web/dist, without the `.gz`
/// siblings, hidden files and `.br` files.
fn dist_files() -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("web/dist is readable") {
            let entry = entry.expect("dir entry");
            let name = entry.file_name().to_string_lossy().to_string();
            // SOURCE is the build's record of what it was built from, not part of the app.
            if name.starts_with('.')
                || name.ends_with(".gz")
                || name.ends_with(".br")
                || (prefix.is_empty() && name == "SOURCE")
            {
                continue;
            }
            let path = format!("{prefix}{name}");
            if entry.path().is_dir() {
                walk(&entry.path(), &format!("{path}/"), out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&dist(), "", &mut files);
    files.sort();
    files
}

fn expected_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map_or("", |(_, ext)| ext) {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "webmanifest" => "application/manifest+json",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        other => panic!("web/dist/{path}: no expected type for .{other}"),
    }
}

/// The headers every answer carries, whoever asked for what.
fn assert_security_headers(reply: &Reply, what: &str) {
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("permissions-policy", "camera=(self)"),
        ("cross-origin-opener-policy", "same-origin"),
        ("connection", "close"),
    ] {
        assert_eq!(reply.header(name), Some(value), "{what}: {name}");
    }
    let csp = reply.header("content-security-policy").unwrap_or("");
    assert!(csp.starts_with("default-src 'none'"), "{what}: CSP {csp:?}");
}

async fn start() -> (TestRelay, tempfile::TempDir) {
    let temp = tempfile::tempdir().expect("temp dir");
    let mut config = config(temp.path());
    config.public_url = Some("https://relay.example.net".into());
    (TestRelay::start_with(config).await, temp)
}

#[test]
fn every_file_is_served_byte_exact_in_both_encodings() {
    smol::block_on(async {
        let (relay, _temp) = start().await;
        let files = dist_files();
        for required in ["index.html", "sw.js", "manifest.webmanifest"] {
            assert!(files.iter().any(|f| f == required), "web/dist/{required}");
        }
        assert!(
            files.iter().any(|f| f.starts_with("assets/")),
            "web/dist/assets/"
        );
        for unshipped in ["/SOURCE", "/SOURCE.gz"] {
            assert_eq!(
                get(relay.addr, unshipped, &[GZIP]).await.status,
                404,
                "{unshipped}"
            );
        }
        for path in &files {
            let data = std::fs::read(dist().join(path)).expect("read the file");
            let url = format!("/{path}");

            let gzipped = get(relay.addr, &url, &[GZIP]).await;
            assert_eq!(gzipped.status, 200, "{path}");
            assert_eq!(gzipped.header("content-encoding"), Some("gzip"), "{path}");
            assert_eq!(gzipped.header("vary"), Some("Accept-Encoding"), "{path}");
            assert_eq!(gzipped.content_length(), gzipped.body.len(), "{path}");
            assert_eq!(gunzip(&gzipped.body), data, "{path}: gunzipped body");
            if let Ok(gz) = std::fs::read(dist().join(format!("{path}.gz"))) {
                assert_eq!(
                    gzipped.body, gz,
                    "{path}: the web build's own .gz, as it is"
                );
            }
            assert_eq!(gzipped.header("content-type"), Some(expected_type(path)));

            let plain = get(relay.addr, &url, &[]).await;
            assert_eq!(plain.status, 200, "{path}");
            assert_eq!(plain.header("content-encoding"), None, "{path}");
            assert_eq!(plain.header("vary"), Some("Accept-Encoding"), "{path}");
            assert_eq!(plain.content_length(), data.len(), "{path}");
            assert_eq!(plain.body, data, "{path}: identity body");
            assert_eq!(plain.header("content-type"), Some(expected_type(path)));

            let (gz_tag, plain_tag) = (gzipped.header("etag"), plain.header("etag"));
            assert!(
                gz_tag.is_some_and(|t| t.starts_with('"') && t.len() > 10),
                "{path}"
            );
            assert!(
                plain_tag.is_some() && plain_tag != gz_tag,
                "{path}: one tag each"
            );

            let cache = if path.starts_with("assets/") {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            };
            assert_eq!(gzipped.header("cache-control"), Some(cache), "{path}");
            assert_eq!(plain.header("cache-control"), Some(cache), "{path}");
            assert_eq!(gzipped.header("content-security-policy"), Some(HTML_CSP));
            assert_security_headers(&gzipped, path);
            assert_security_headers(&plain, path);
        }
        relay.stop().await;
    });
}

#[test]
fn entry_points_types_and_caching() {
    smol::block_on(async {
        let (relay, _temp) = start().await;
        let index = std::fs::read(dist().join("index.html")).expect("index.html");
        for path in ["/", "/index.html", "/pair", "/pair?v=1", "/?utm=x"] {
            let reply = get(relay.addr, path, &[GZIP]).await;
            assert_eq!(reply.status, 200, "{path}");
            assert_eq!(gunzip(&reply.body), index, "{path} serves index.html");
            assert_eq!(
                reply.header("content-type"),
                Some("text/html; charset=utf-8")
            );
            assert_eq!(reply.header("cache-control"), Some("no-cache"));
            assert_eq!(reply.header("content-security-policy"), Some(HTML_CSP));
        }

        let sw = get(relay.addr, "/sw.js", &[GZIP]).await;
        assert_eq!(sw.header("service-worker-allowed"), Some("/"));
        assert_eq!(
            sw.header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(sw.header("cache-control"), Some("no-cache"));
        let manifest = get(relay.addr, "/manifest.webmanifest", &[GZIP]).await;
        assert_eq!(
            manifest.header("content-type"),
            Some("application/manifest+json")
        );
        assert_eq!(manifest.header("service-worker-allowed"), None);

        // Identity only when gzip is refused, however it is said.
        for refusal in ["identity", "gzip;q=0", "br", "*;q=0", ""] {
            let reply = get(relay.addr, "/", &[("Accept-Encoding", refusal)]).await;
            assert_eq!(reply.header("content-encoding"), None, "{refusal:?}");
            assert_eq!(reply.body, index, "{refusal:?}");
        }
        for accept in ["gzip", "GZIP;q=0.5", "x-gzip", "*"] {
            let reply = get(relay.addr, "/", &[("Accept-Encoding", accept)]).await;
            assert_eq!(reply.header("content-encoding"), Some("gzip"), "{accept:?}");
        }
        relay.stop().await;
    });
}

#[test]
fn without_a_public_url_the_policy_names_the_listening_origin() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let reply = get(relay.addr, "/", &[GZIP]).await;
        let csp = reply.header("content-security-policy").unwrap_or("");
        let origin = relay.addr.to_string();
        assert!(
            csp.contains(&format!(
                "connect-src 'self' http://{origin} ws://{origin};"
            )),
            "{csp}"
        );
        relay.stop().await;
    });
}

#[test]
fn a_matching_etag_gets_304_without_a_body() {
    smol::block_on(async {
        let (relay, _temp) = start().await;
        let asset = dist_files()
            .into_iter()
            .find(|f| f.starts_with("assets/"))
            .expect("web/dist/assets/");
        for path in ["/", &format!("/{asset}"), "/sw.js"] {
            let first = get(relay.addr, path, &[GZIP]).await;
            let tag = first.header("etag").expect("an ETag").to_string();
            for sent in [tag.clone(), format!("W/{tag}"), format!("\"other\", {tag}")] {
                let again = get(relay.addr, path, &[GZIP, ("If-None-Match", &sent)]).await;
                assert_eq!(again.status, 304, "{path} {sent}");
                assert!(again.body.is_empty(), "{path}: a 304 has no body");
                assert_eq!(again.header("etag"), Some(tag.as_str()));
                assert_eq!(again.header("cache-control"), first.header("cache-control"));
                assert_eq!(again.header("vary"), Some("Accept-Encoding"));
                assert_eq!(again.content_length(), first.body.len(), "{path}");
                assert_security_headers(&again, path);
            }
            let changed = get(relay.addr, path, &[GZIP, ("If-None-Match", "\"stale\"")]).await;
            assert_eq!(changed.status, 200, "{path}");
            assert_eq!(changed.body, first.body);
            // The gzip tag names the gzip bytes: a client that gets identity gets them anew.
            let plain = get(relay.addr, path, &[("If-None-Match", &tag)]).await;
            assert_eq!(plain.status, 200, "{path}");
            let plain_tag = plain.header("etag").expect("an ETag").to_string();
            let again = get(relay.addr, path, &[("If-None-Match", &plain_tag)]).await;
            assert_eq!(again.status, 304, "{path}");
            let head = request(relay.addr, "HEAD", path, &[("If-None-Match", "*")]).await;
            assert_eq!(head.status, 304, "{path}");
        }
        relay.stop().await;
    });
}

#[test]
fn head_has_no_body_but_the_length() {
    smol::block_on(async {
        let (relay, _temp) = start().await;
        let index = std::fs::read(dist().join("index.html")).expect("index.html");
        let gz = get(relay.addr, "/", &[GZIP]).await;
        let head = request(relay.addr, "HEAD", "/", &[GZIP]).await;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(head.content_length(), gz.body.len());
        assert_eq!(head.header("etag"), gz.header("etag"));
        assert_eq!(head.header("content-encoding"), Some("gzip"));
        let head = request(relay.addr, "HEAD", "/pair", &[]).await;
        assert!(head.body.is_empty());
        assert_eq!(head.content_length(), index.len());
        let missing = request(relay.addr, "HEAD", "/nope", &[]).await;
        assert_eq!(missing.status, 404);
        assert!(missing.body.is_empty());
        relay.stop().await;
    });
}

#[test]
fn nothing_outside_the_table_is_served() {
    smol::block_on(async {
        let (relay, _temp) = start().await;
        let unknown = get(relay.addr, "/nope", &[GZIP]).await;
        assert_eq!(unknown.status, 404);
        assert_eq!(unknown.body, b"not found\n");
        assert_eq!(
            unknown.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(unknown.header("content-encoding"), None);
        assert_security_headers(&unknown, "404");
        for path in [
            "/..",
            "/../Cargo.toml",
            "/../../relay/Cargo.toml",
            "/assets/../index.html",
            "/assets/../../web/dist/index.html",
            "/./index.html",
            "//index.html",
            "/%2e%2e/Cargo.toml",
            "/%2E%2E%2FCargo.toml",
            "/assets/%2e%2e/index.html",
            "/%69ndex.html",
            "/index%2ehtml",
            "/index.html%00",
            "/index.html/",
            "/index.html.gz",
            "/assets/app-0123abcd.js.gz",
            "/INDEX.HTML",
            "/assets",
            "/assets/",
            "/..%5c..%5cCargo.toml",
            "/..\\..\\Cargo.toml",
            "/index.html;.js",
            "/pair/",
            "/pair/../index.html",
            "http://relay/../Cargo.toml",
            "*",
            "/build.rs",
            "/src/lib.rs",
        ] {
            let reply = get(relay.addr, path, &[GZIP]).await;
            assert!(
                matches!(reply.status, 400 | 404),
                "{path}: {} {:?}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
            assert_eq!(reply.header("content-encoding"), None, "{path}");
        }
        let post = request(relay.addr, "POST", "/", &[]).await;
        assert_eq!(post.status, 405);
        assert_eq!(post.header("allow"), Some("GET, HEAD"));
        assert_security_headers(&post, "405");
        let put = request(relay.addr, "PUT", "/relay", &[]).await;
        assert_eq!(put.status, 405);
        assert_eq!(put.header("allow"), Some("GET"));
        relay.stop().await;
    });
}

#[test]
fn the_relays_own_pages_keep_their_answers() {
    smol::block_on(async {
        let (relay, _temp) = start().await;
        let health = get(relay.addr, "/healthz", &[GZIP]).await;
        assert_eq!((health.status, health.body.as_slice()), (200, &b"ok\n"[..]));
        assert_eq!(health.header("cache-control"), Some("no-store"));
        assert_eq!(
            health.header("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'")
        );
        assert_security_headers(&health, "/healthz");
        let metrics = get(relay.addr, "/metrics", &[]).await;
        assert_eq!(metrics.status, 200);
        assert_security_headers(&metrics, "/metrics");
        let upgrade_without_headers = get(relay.addr, "/relay", &[]).await;
        assert_eq!(upgrade_without_headers.status, 426);
        relay.stop().await;
    });
}

#[test]
fn metrics_are_served_only_where_the_operator_says() {
    smol::block_on(async {
        // By default nowhere: the public port answers as for any unknown path.
        let temp = tempfile::tempdir().expect("temp dir");
        let mut hidden = config(temp.path());
        hidden.metrics = muxagent_relay::MetricsAccess::Hidden;
        let relay = TestRelay::start_with(hidden).await;
        assert_eq!(relay.metrics_addr, None);
        assert_eq!(get(relay.addr, "/metrics", &[]).await.status, 404);
        assert_eq!(get(relay.addr, "/healthz", &[]).await.status, 200);
        relay.stop().await;

        // --metrics-bind: a listener of its own, that serves /metrics and nothing else.
        let temp = tempfile::tempdir().expect("temp dir");
        let mut own = config(temp.path());
        own.metrics = muxagent_relay::MetricsAccess::Listen(([127, 0, 0, 1], 0).into());
        let relay = TestRelay::start_with(own).await;
        let metrics_addr = relay.metrics_addr.expect("a metrics listener");
        assert_ne!(metrics_addr, relay.addr);
        assert_eq!(get(relay.addr, "/metrics", &[]).await.status, 404);
        let metrics = get(metrics_addr, "/metrics", &[]).await;
        assert_eq!(metrics.status, 200);
        let body = String::from_utf8_lossy(&metrics.body);
        assert!(body.contains("relay_accepted_total"), "{body}");
        for path in ["/", "/healthz", "/relay", "/metrics/x"] {
            assert_eq!(get(metrics_addr, path, &[]).await.status, 404, "{path}");
        }
        relay.stop().await;
    });
}

#[test]
fn metrics_count_web_answers_by_status() {
    smol::block_on(async {
        let (relay, _temp) = start().await;
        let series = |status: &str| format!("relay_web_responses_total{{status=\"{status}\"}}");
        let tag = get(relay.addr, "/", &[GZIP])
            .await
            .header("etag")
            .expect("an ETag")
            .to_string();
        get(relay.addr, "/sw.js", &[]).await;
        get(relay.addr, "/", &[GZIP, ("If-None-Match", &tag)]).await;
        get(relay.addr, "/missing", &[]).await;
        get(relay.addr, "/healthz", &[]).await;
        assert_eq!(relay.metric(&series("200")).await, 2);
        assert_eq!(relay.metric(&series("304")).await, 1);
        assert_eq!(relay.metric(&series("404")).await, 1);
        assert_eq!(relay.metric(&series("500")).await, 0);
        relay.stop().await;
    });
}
