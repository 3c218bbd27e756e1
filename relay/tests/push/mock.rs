//! A push service on 127.0.0.1 for the tests: it reads each POST (head with `httparse`, body
//! by `Content-Length`), hands it to the test, and answers as scripted — a status (with a
//! `Retry-After`), or never (it holds the connection open and says nothing). Plain HTTP, or
//! TLS with a certificate made in the test.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::CertificateDer;

/// How the service answers one request.
#[derive(Clone, Copy, Debug)]
pub enum Reply {
    /// This status, with this `Retry-After` (seconds) if any.
    Status(u16, Option<u64>),
    /// Nothing, ever: the connection stays open.
    Hang,
}

/// One request as the service read it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct MockPush {
    pub port: u16,
    tls: bool,
    requests: smol::channel::Receiver<Received>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
}

struct State {
    script: Mutex<VecDeque<Reply>>,
    default: Reply,
    requests: smol::channel::Sender<Received>,
    /// Connections the service never answers, kept open.
    held: Mutex<Vec<Box<dyn Send>>>,
    accepted: Arc<AtomicUsize>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl MockPush {
    /// Answer with `script` in order, then `default` for ever.
    pub fn start(script: &[Reply], default: Reply) -> MockPush {
        Self::start_with(script, default, None)
    }

    /// Over TLS for `localhost`; returns the certificate to trust.
    pub fn start_tls(script: &[Reply], default: Reply) -> (MockPush, CertificateDer<'static>) {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
        let cert = certified.cert.der().clone();
        let key = rustls_pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
            .expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .expect("server config");
        (
            Self::start_with(script, default, Some(Arc::new(config))),
            cert,
        )
    }

    fn start_with(
        script: &[Reply],
        default: Reply,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> MockPush {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the mock push service");
        let port = listener.local_addr().expect("address").port();
        let (tx, rx) = smol::channel::unbounded();
        let accepted = Arc::new(AtomicUsize::new(0));
        let tls_on = tls.is_some();
        let state = Arc::new(State {
            script: Mutex::new(script.iter().copied().collect()),
            default,
            requests: tx,
            held: Mutex::new(Vec::new()),
            accepted: accepted.clone(),
            tls,
        });
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                state.accepted.fetch_add(1, Ordering::Relaxed);
                let state = state.clone();
                std::thread::spawn(move || serve(&state, stream));
            }
        });
        MockPush {
            port,
            tls: tls_on,
            requests: rx,
            accepted,
        }
    }

    /// `scheme://127.0.0.1:PORT` (`https://localhost:PORT` over TLS), for `--push-origin`.
    pub fn origin(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.port)
        } else {
            format!("http://127.0.0.1:{}", self.port)
        }
    }

    /// An endpoint on this service.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// The next request the service read.
    pub async fn next(&self) -> Received {
        super::common::within("a request at the push service", self.requests.recv())
            .await
            .expect("the mock push service runs")
    }

    /// Requests read so far and not taken by [`Self::next`].
    pub fn pending(&self) -> usize {
        self.requests.len()
    }
}

fn serve(state: &Arc<State>, tcp: TcpStream) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    match &state.tls {
        None => exchange(state, tcp),
        Some(config) => {
            let Ok(connection) = rustls::ServerConnection::new(config.clone()) else {
                return;
            };
            exchange(state, rustls::StreamOwned::new(connection, tcp));
        }
    }
}

fn exchange<S: Read + Write + Send + 'static>(state: &Arc<State>, mut stream: S) {
    let Some(received) = read_request(&mut stream) else {
        return;
    };
    let _ = state.requests.send_blocking(received);
    let reply = state
        .script
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop_front()
        .unwrap_or(state.default);
    match reply {
        Reply::Hang => state
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(stream)),
        Reply::Status(status, retry_after) => {
            let retry = retry_after.map_or(String::new(), |s| format!("Retry-After: {s}\r\n"));
            let answer = format!(
                "HTTP/1.1 {status} Scripted\r\n{retry}Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(answer.as_bytes());
            let _ = stream.flush();
        }
    }
}

fn read_request<S: Read>(stream: &mut S) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).ok()?;
        if read == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..read]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head_len) = request.parse(&buf).ok()? {
            let headers: Vec<(String, String)> = request
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).to_string(),
                    )
                })
                .collect();
            let len: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let method = request.method.unwrap_or("").to_string();
            let path = request.path.unwrap_or("").to_string();
            let mut body = buf[head_len..].to_vec();
            while body.len() < len {
                let read = stream.read(&mut chunk).ok()?;
                if read == 0 {
                    return None;
                }
                body.extend_from_slice(&chunk[..read]);
            }
            return Some(Received {
                method,
                path,
                headers,
                body,
            });
        }
    }
}
