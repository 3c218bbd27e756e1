//! The listening side: [`Relay::bind`] opens the registry and the socket; [`Relay::run`]
//! accepts connections until the shutdown future resolves, then shuts down gracefully.
//!
//! Per accepted TCP connection: caps (total, per source prefix, and on connections that have not
//! logged in) are checked before any TLS work; then one task runs TLS, reads the HTTP request
//! head, and either answers a page or upgrades to the relay's WebSocket ([`crate::conn`]) over
//! the metered byte stream ([`crate::meter`]). The login deadline runs from accept, TLS and HTTP
//! included.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::limits::{
    RELAY_ACCEPT_BACKOFF_MS, RELAY_ADMISSION_IPV6_PREFIX_LEN, RELAY_ADMISSION_PREFIXES,
    RELAY_IPV4_PREFIX_LEN, RELAY_IPV6_PREFIX_LEN, RELAY_REGISTRY_RATE_ACCOUNTS,
    RELAY_REGISTRY_RATE_PREFIXES,
};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Bytes;
use async_tungstenite::tungstenite::protocol::Role as WsRole;
use muxagent_proto::frame::{Frame, Restarting, SignedEntry};
use muxagent_proto::identity::Fingerprint;
use smol::future::FutureExt as _;
use smol::io::AsyncWriteExt as _;
use smol::{Async, Executor, Timer};

use crate::admission::{Admission, AdmissionLimits};
use crate::bucket::Windows;
use crate::config::{Limits, MetricsAccess, RelayConfig};
use crate::conn;
use crate::error::RelayError;
use crate::http::{self, Page, Request, Response};
use crate::log::{Record, RegistryLog};
use crate::meter::Metered;
use crate::metrics::{CapReason, ConnKind, Disconnect, HttpKind, Metrics, Sizes, WebStatus};
use crate::outbox::Pool;
use crate::push::PushService;
use crate::registry::Caps;
use crate::router::{Router, RouterLimits, encode};
use crate::stream::Stream;
use crate::time::until;

/// State shared by every connection of one relay.
pub(crate) struct Shared {
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    pub router: Router,
    log: Arc<Mutex<RegistryLog>>,
    /// Serializes registry changes: check, append + sync, apply.
    pub registry_writes: smol::lock::Mutex<()>,
    tls: Option<futures_rustls::TlsAcceptor>,
    public_url: String,
    /// The web app's Content-Security-Policy (it names the public URL's origin).
    web_csp: String,
    next_conn: AtomicU64,
    shutting_down: AtomicBool,
    caps: Mutex<Counts>,
    /// Bytes queued for every receiver together ([`Limits::queue_bytes_total`]).
    pub queued: Arc<Pool>,
    /// Registry requests per source prefix ([`RELAY_REGISTRY_REQUESTS_PER_PREFIX_PER_MIN`]).
    pub registry_rate: Mutex<Windows<IpAddr>>,
    /// Registry requests per account ([`Limits::registry_requests_per_account_per_hour`]).
    pub account_rate: Mutex<Windows<Fingerprint>>,
    /// How fast keys enter the registry.
    pub admission: Mutex<Admission>,
    /// Web Push: the VAPID key, subscriptions, the push queue.
    pub push: Arc<PushService>,
    /// Whether the public listener answers `/metrics` ([`MetricsAccess::Public`]).
    metrics_public: bool,
}

/// Connections counted against the caps.
#[derive(Default)]
struct Counts {
    total: usize,
    /// Connections that have not logged in yet.
    unauthenticated: usize,
    per_prefix: HashMap<IpAddr, usize>,
}

/// The source prefix a peer counts under for the per-source caps: its /24 (IPv4, an
/// IPv4-mapped IPv6 address included) or its /64 (IPv6), as the network address.
pub(crate) fn source_prefix(ip: IpAddr) -> IpAddr {
    let v4 = |ip: Ipv4Addr| {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(RELAY_IPV4_PREFIX_LEN))
            .unwrap_or(0);
        IpAddr::V4(Ipv4Addr::from_bits(ip.to_bits() & mask))
    };
    match ip {
        IpAddr::V4(ip) => v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(mapped) => v4(mapped),
            None => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(RELAY_IPV6_PREFIX_LEN))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from_bits(ip.to_bits() & mask))
            }
        },
    }
}

/// Rewrite the registry log as the router's accounts, off the async threads.
async fn compact(log: &Arc<Mutex<RegistryLog>>, router: &Router) -> Result<(), String> {
    let accounts = router.snapshot();
    let log = log.clone();
    smol::unblock(move || {
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .compact(accounts)
    })
    .await
}

impl Shared {
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// The `Restarting` frame for one connection: its hint takes its own share of
    /// [`Limits::restart_spread`], so the wave of logins after a restart is spread.
    pub(crate) fn restarting_frame(&self) -> Bytes {
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        let spread = ms(self.limits.restart_spread);
        // No randomness (it never fails on Linux): no spread, the clients' jitter still applies.
        let share = match (spread, getrandom::u32()) {
            (0, _) | (_, Err(_)) => 0,
            (spread, Ok(random)) => random % spread.saturating_add(1),
        };
        encode(Frame::Restarting(Restarting {
            reconnect_in_ms: ms(self.limits.restart_reconnect_in).saturating_add(share),
            try_for_ms: ms(self.limits.restart_try_for),
        }))
    }

    /// Append an entry to the registry log and sync it, off the async threads.
    pub(crate) async fn append_durable(&self, entry: SignedEntry) -> Result<(), String> {
        let log = self.log.clone();
        smol::unblock(move || {
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .append_durable(entry)
        })
        .await
    }

    /// Rewrite the registry log as its accounts when it holds enough entries (off the async
    /// threads). The caller holds [`Self::registry_writes`]; a failure is logged (the log as
    /// appended is still right).
    pub(crate) async fn compact_if_due(&self) {
        let due = self
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .wants_compaction(self.router.registry_keys());
        if !due {
            return;
        }
        match compact(&self.log, &self.router).await {
            Ok(()) => self.metrics.registry_compacted(),
            Err(e) => crate::warn(format_args!("registry: compacting the log failed: {e}")),
        }
    }

    /// Bytes the registry log takes on disk.
    pub(crate) fn registry_log_len(&self) -> u64 {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .disk_len()
    }

    /// Take a connection slot for a peer of source `prefix` (not logged in yet), or say which
    /// cap is hit.
    fn admit(&self, prefix: IpAddr) -> Result<(), CapReason> {
        let mut caps = self.caps.lock().unwrap_or_else(PoisonError::into_inner);
        if caps.total >= self.limits.max_connections {
            return Err(CapReason::Total);
        }
        if caps.unauthenticated >= self.limits.max_unauthenticated_connections {
            return Err(CapReason::Unauthenticated);
        }
        let count = caps.per_prefix.entry(prefix).or_insert(0);
        if *count >= self.limits.max_connections_per_prefix {
            return Err(CapReason::PerPrefix);
        }
        *count += 1;
        caps.total += 1;
        caps.unauthenticated += 1;
        Ok(())
    }

    fn release(&self, prefix: IpAddr, authenticated: bool) {
        let mut caps = self.caps.lock().unwrap_or_else(PoisonError::into_inner);
        caps.total = caps.total.saturating_sub(1);
        if !authenticated {
            caps.unauthenticated = caps.unauthenticated.saturating_sub(1);
        }
        if let Some(count) = caps.per_prefix.get_mut(&prefix) {
            *count -= 1;
            if *count == 0 {
                caps.per_prefix.remove(&prefix);
            }
        }
    }
}

/// Holds a connection's slot in the caps and its place in the shutdown wait; frees both when
/// the connection's task ends.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    /// The peer's source prefix ([`source_prefix`]).
    pub prefix: IpAddr,
    /// Whether the connection has logged in (and left the unauthenticated count).
    authenticated: AtomicBool,
    _alive: smol::channel::Sender<()>,
}

impl Slot {
    /// The connection logged in: it no longer counts against
    /// [`Limits::max_unauthenticated_connections`].
    pub(crate) fn authenticated(&self) {
        if !self.authenticated.swap(true, Ordering::Relaxed) {
            let mut caps = self
                .shared
                .caps
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            caps.unauthenticated = caps.unauthenticated.saturating_sub(1);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared
            .release(self.prefix, self.authenticated.load(Ordering::Relaxed));
    }
}

/// A connection's place in the `relay_connections{role}` gauge.
pub(crate) struct Gauge {
    metrics: Arc<Metrics>,
    kind: ConnKind,
}

impl Gauge {
    fn new(metrics: Arc<Metrics>, kind: ConnKind) -> Self {
        metrics.conn_enter(kind);
        Gauge { metrics, kind }
    }

    pub(crate) fn set(&mut self, kind: ConnKind) {
        self.metrics.conn_leave(self.kind);
        self.metrics.conn_enter(kind);
        self.kind = kind;
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        self.metrics.conn_leave(self.kind);
    }
}

/// A bound relay, ready to [`Relay::run`].
pub struct Relay {
    listener: Async<TcpListener>,
    local_addr: SocketAddr,
    /// The `/metrics` listener of [`MetricsAccess::Listen`], and its address.
    metrics_listener: Option<(Async<TcpListener>, SocketAddr)>,
    shared: Arc<Shared>,
    threads: usize,
}

impl Relay {
    /// Open the registry in `config.data_dir` (re-verifying every stored entry), load TLS, and
    /// bind the listening socket.
    pub async fn bind(config: RelayConfig) -> Result<Relay, RelayError> {
        config.limits.validate().map_err(RelayError::Config)?;
        let metrics = Arc::new(Metrics::new());
        let limits = config.limits.clone();
        let router = Router::new(
            RouterLimits {
                caps: Caps {
                    machines_per_account: limits.max_machines_per_account,
                    devices_per_account: limits.max_devices_per_account,
                    revoked_per_account: limits.max_revoked_per_account,
                    keys: limits.max_registry_keys,
                    pairs: limits.max_registry_pairs,
                },
                connections_per_device: limits.max_connections_per_device,
                pairings_per_connection: limits.pairings_per_connection,
                pairings_per_prefix: limits.pairings_per_prefix,
                queue_bytes_per_account: limits.queue_bytes_per_account,
                max_pairings: limits.max_pairings,
                pairing_ttl_secs: limits.pairing_ttl.as_secs().max(1),
            },
            metrics.clone(),
        );
        let data_dir = config.data_dir.clone();
        let floor = limits.registry_compact_floor;
        let (log, records) = smol::unblock(move || RegistryLog::open(&data_dir, floor)).await?;
        let stored = records.len();
        for record in &records {
            let loaded = match record {
                Record::Entry(entry) => router.load(entry),
                Record::Account(account) => router.restore(account).map_err(String::from),
            };
            if let Err(reason) = loaded {
                metrics.entry_skipped_at_start();
                crate::warn(format_args!("registry: skipped a stored record: {reason}"));
            }
        }
        drop(records);
        let log = Arc::new(Mutex::new(log));
        let (due, migrating) = {
            let log = log.lock().unwrap_or_else(PoisonError::into_inner);
            (
                log.wants_compaction(router.registry_keys()),
                log.is_migrating(),
            )
        };
        if due {
            match compact(&log, &router).await {
                Ok(()) => metrics.registry_compacted(),
                // An old log takes no entry until it is compacted: no use starting.
                Err(reason) if migrating => return Err(RelayError::Store { reason }),
                Err(e) => crate::warn(format_args!("registry: compacting the log failed: {e}")),
            }
        }
        let tls = config.tls.as_ref().map(crate::tls::acceptor).transpose()?;
        let listener =
            Async::<TcpListener>::bind(config.listen).map_err(|source| RelayError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener
            .get_ref()
            .local_addr()
            .map_err(|source| RelayError::Bind {
                addr: config.listen,
                source,
            })?;
        let metrics_listener = match config.metrics {
            MetricsAccess::Listen(addr) => {
                let bind_error = |source| RelayError::Bind { addr, source };
                let listener = Async::<TcpListener>::bind(addr).map_err(bind_error)?;
                let bound = listener.get_ref().local_addr().map_err(bind_error)?;
                crate::info(format_args!("serving /metrics on http://{bound}/metrics"));
                Some((listener, bound))
            }
            MetricsAccess::Hidden | MetricsAccess::Public => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{local_addr}"));
        if tls.is_none() && !local_addr.ip().is_loopback() {
            crate::warn(format_args!(
                "serving plain http/ws on {local_addr}, which is not loopback: keys and traffic \
                 metadata travel unencrypted; give --tls-cert and --tls-key"
            ));
        }
        crate::info(format_args!(
            "listening on {scheme}://{local_addr} (public URL {public_url}, WebSocket at {}), \
             {stored} registry entries",
            crate::limits::RELAY_WS_PATH
        ));
        let push = PushService::open(
            &config.data_dir,
            &config.push,
            &public_url,
            &limits,
            metrics.clone(),
            &router,
        )?;
        let limits_queue_total = limits.queue_bytes_total;
        let admission = Admission::new(
            AdmissionLimits {
                keys_per_hour: limits.new_keys_per_hour,
                burst: limits.new_keys_burst,
                registrations_per_prefix_per_hour: u32::try_from(
                    limits.new_key_registrations_per_prefix_per_hour,
                )
                .unwrap_or(u32::MAX),
                prefixes: RELAY_ADMISSION_PREFIXES,
                ipv6_prefix_len: RELAY_ADMISSION_IPV6_PREFIX_LEN,
            },
            Instant::now(),
        );
        let shared = Arc::new(Shared {
            limits,
            metrics,
            router,
            log,
            registry_writes: smol::lock::Mutex::new(()),
            tls,
            web_csp: http::app_csp(&public_url),
            public_url,
            next_conn: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            caps: Mutex::new(Counts::default()),
            queued: Arc::new(Pool::new(limits_queue_total)),
            registry_rate: Mutex::new(Windows::new(RELAY_REGISTRY_RATE_PREFIXES, Instant::now())),
            account_rate: Mutex::new(Windows::new(RELAY_REGISTRY_RATE_ACCOUNTS, Instant::now())),
            admission: Mutex::new(admission),
            push: Arc::new(push),
            metrics_public: config.metrics == MetricsAccess::Public,
        });
        Ok(Relay {
            listener,
            local_addr,
            metrics_listener,
            shared,
            threads: config.threads.max(1),
        })
    }

    /// The address the relay listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the `/metrics` listener ([`MetricsAccess::Listen`]), with the real port.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|(_, addr)| *addr)
    }

    /// The base URL clients use (`--public-url`, or derived from the listening address).
    pub fn public_url(&self) -> &str {
        &self.shared.public_url
    }

    /// Serve until `shutdown` resolves; then stop accepting, send every client `Restarting`,
    /// give connections [`Limits::shutdown_grace`] to close, and sync the registry log.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RelayError> {
        let executor = Arc::new(Executor::new());
        let (stop_workers, workers_stop) = smol::channel::bounded::<()>(1);
        let workers: Vec<_> = (1..self.threads)
            .map(|index| {
                let executor = executor.clone();
                let stop = workers_stop.clone();
                std::thread::Builder::new()
                    .name(format!("relay-{index}"))
                    .spawn(move || smol::block_on(executor.run(stop.recv())))
            })
            .collect::<Result<_, _>>()
            .map_err(|e| RelayError::Config(format!("cannot start a worker thread: {e}")))?;
        let shared = self.shared.clone();
        // The push workers hold the executor weakly (to schedule retries), so dropping it
        // below ends them and whatever they hold.
        for _ in 0..shared.limits.push_workers {
            executor
                .spawn(crate::push::run_worker(
                    shared.push.clone(),
                    Arc::downgrade(&executor),
                ))
                .detach();
        }
        let result = executor.run(self.serve(executor.clone(), shutdown)).await;
        drop(stop_workers);
        for worker in workers {
            let _ = smol::unblock(move || worker.join()).await;
        }
        drop(executor);
        // Compacted now, the next start verifies few entries.
        let flushed = {
            let mut log = shared.log.lock().unwrap_or_else(PoisonError::into_inner);
            if log.wants_compaction_at_shutdown() {
                match log.compact(shared.router.snapshot()) {
                    Ok(()) => shared.metrics.registry_compacted(),
                    Err(e) => crate::warn(format_args!(
                        "registry: compacting the log at shutdown failed: {e}"
                    )),
                }
            }
            log.flush()
        };
        result?;
        flushed.map_err(|reason| RelayError::Store { reason })
    }

    async fn serve(
        self,
        executor: Arc<Executor<'static>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RelayError> {
        let Relay {
            listener,
            metrics_listener,
            shared,
            ..
        } = self;
        if let Some((metrics_listener, _)) = metrics_listener {
            // Ends with the executor, when the relay stops.
            executor
                .spawn(serve_metrics(
                    shared.clone(),
                    executor.clone(),
                    metrics_listener,
                ))
                .detach();
        }
        let (alive, all_closed) = smol::channel::bounded::<()>(1);
        let mut shutdown = pin!(shutdown);
        loop {
            let accepted = async { Some(listener.accept().await) }
                .or(async {
                    shutdown.as_mut().await;
                    None
                })
                .await;
            let (tcp, peer) = match accepted {
                None => break,
                Some(Ok(accepted)) => accepted,
                Some(Err(e)) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    crate::warn(format_args!("accept failed: {e}"));
                    Timer::after(Duration::from_millis(RELAY_ACCEPT_BACKOFF_MS)).await;
                    continue;
                }
            };
            shared.metrics.accepted();
            let prefix = source_prefix(peer.ip());
            if let Err(reason) = shared.admit(prefix) {
                shared.metrics.capped(reason);
                drop(tcp);
                continue;
            }
            let slot = Slot {
                shared: shared.clone(),
                prefix,
                authenticated: AtomicBool::new(false),
                _alive: alive.clone(),
            };
            executor
                .spawn(connection(shared.clone(), tcp, slot))
                .detach();
        }
        drop(listener);
        shared.shutting_down.store(true, Ordering::Relaxed);
        crate::info(format_args!("shutting down: telling clients to reconnect"));
        shared.router.close_all(|| shared.restarting_frame());
        drop(alive);
        let _ = until(
            Instant::now() + shared.limits.shutdown_grace,
            all_closed.recv(),
        )
        .await;
        Ok(())
    }
}

/// The `/metrics` listener: one plain HTTP request per connection, `/metrics` or 404. Its
/// connections are not the relay's (not capped or counted with clients): whoever may reach this
/// address was chosen by the operator. One at a time, each within the login deadline.
async fn serve_metrics(
    shared: Arc<Shared>,
    executor: Arc<Executor<'static>>,
    listener: Async<TcpListener>,
) {
    let busy = Arc::new(smol::lock::Semaphore::new(1));
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            Timer::after(Duration::from_millis(RELAY_ACCEPT_BACKOFF_MS)).await;
            continue;
        };
        let shared = shared.clone();
        let busy = busy.clone();
        executor
            .spawn(async move {
                let Some(_turn) = busy.try_acquire_arc() else {
                    return;
                };
                let deadline = Instant::now() + shared.limits.login_deadline;
                let max_head = shared.limits.http_head_max_len;
                let response = match until(deadline, http::read_request(&mut tcp, max_head)).await {
                    Some(Ok((
                        Request::Page {
                            page: Page::Metrics,
                            head,
                        },
                        _,
                    ))) if head => metrics_page(&shared).head_only(),
                    Some(Ok((
                        Request::Page {
                            page: Page::Metrics,
                            ..
                        },
                        _,
                    ))) => metrics_page(&shared),
                    Some(Ok(_) | Err(http::HeadError::Invalid(_))) => not_found(),
                    Some(Err(http::HeadError::Io)) | None => return,
                };
                let _ = until(deadline, http::respond(&mut tcp, &response)).await;
            })
            .detach();
    }
}

/// The `/metrics` page.
fn metrics_page(shared: &Shared) -> Response {
    shared.metrics.http(HttpKind::Metrics);
    let sizes = Sizes {
        queued_bytes: shared.queued.queued(),
        push_subscriptions: shared.push.subscriptions(),
        pushes_held: shared.push.held(),
        registry_log_bytes: shared.registry_log_len(),
        ..shared.router.sizes()
    };
    Response::text(
        "200 OK",
        "text/plain; version=0.0.4; charset=utf-8",
        shared.metrics.render(&sizes),
    )
}

/// What a path that is not served answers.
fn not_found() -> Response {
    Response::text(
        "404 Not Found",
        "text/plain; charset=utf-8",
        "not found\n".to_string(),
    )
}

/// One accepted TCP connection, from TLS to the end.
async fn connection(shared: Arc<Shared>, tcp: Async<TcpStream>, slot: Slot) {
    let deadline = Instant::now() + shared.limits.login_deadline;
    let mut gauge = Gauge::new(shared.metrics.clone(), ConnKind::Handshake);
    // Boxed: TLS and HTTP need far more state than an idle connection, and must not size it.
    let Some(mut ws) = Box::pin(handshake(&shared, tcp, deadline)).await else {
        return;
    };
    conn::serve(&shared, &mut ws, deadline, &mut gauge, &slot).await;
    drop(slot);
}

/// TLS, then one HTTP request: a page is answered (`None`), an upgrade becomes a WebSocket.
async fn handshake(shared: &Shared, tcp: Async<TcpStream>, deadline: Instant) -> Option<conn::Ws> {
    let _ = tcp.get_ref().set_nodelay(true);
    // A fixed send buffer (no autotuning up to megabytes): a receiver that stops reading
    // stalls the relay's writes soon, so the write timeout can cut it.
    let _ =
        socket2::SockRef::from(tcp.get_ref()).set_send_buffer_size(shared.limits.send_buffer_len);
    let mut stream = match &shared.tls {
        None => Stream::Plain(tcp),
        Some(acceptor) => match until(deadline, acceptor.accept(tcp)).await {
            Some(Ok(tls)) => Stream::Tls(Box::new(tls)),
            _ => {
                shared.metrics.disconnect(Disconnect::Handshake);
                return None;
            }
        },
    };
    let max_head = shared.limits.http_head_max_len;
    let head = until(deadline, http::read_request(&mut stream, max_head)).await;
    let (request, leftover) = match head {
        Some(Ok(parsed)) => parsed,
        Some(Err(http::HeadError::Invalid(status))) => (Request::Bad(status), Vec::new()),
        Some(Err(http::HeadError::Io)) | None => {
            shared.metrics.disconnect(Disconnect::Handshake);
            return None;
        }
    };
    let response = match request {
        Request::Upgrade { .. } if shared.is_shutting_down() => Response::text(
            "503 Service Unavailable",
            "text/plain; charset=utf-8",
            "restarting\n".to_string(),
        ),
        Request::Upgrade { key } => {
            shared.metrics.http(HttpKind::Upgrade);
            let response = http::upgrade_response(&key);
            let written = until(deadline, async {
                stream.write_all(response.as_bytes()).await?;
                stream.flush().await
            })
            .await;
            if !matches!(written, Some(Ok(()))) {
                shared.metrics.disconnect(Disconnect::Handshake);
                return None;
            }
            let config = conn::ws_config(&shared.limits, stream.is_tls());
            // What came with the request head goes through the meter too.
            let metered = Metered::new(stream, leftover, shared.metrics.clone());
            let ws = WebSocketStream::from_raw_socket(metered, WsRole::Server, Some(config)).await;
            return Some(ws);
        }
        Request::Page { page, head } => page_response(shared, page, head),
        Request::NotAllowed { allow } => {
            shared.metrics.http(HttpKind::BadRequest);
            let status = "405 Method Not Allowed";
            Response::text(status, "text/plain; charset=utf-8", format!("{status}\n"))
                .with_header("Allow", allow)
        }
        Request::Bad(status) => {
            shared.metrics.http(HttpKind::BadRequest);
            Response::text(status, "text/plain; charset=utf-8", format!("{status}\n"))
        }
    };
    shared.metrics.disconnect(Disconnect::Http);
    let _ = until(deadline, http::respond(&mut stream, &response)).await;
    None
}

fn page_response(shared: &Shared, page: Page, head: bool) -> Response {
    let metrics = &shared.metrics;
    let response = match page {
        Page::Healthz => {
            metrics.http(HttpKind::Healthz);
            Response::text("200 OK", "text/plain; charset=utf-8", "ok\n".to_string())
        }
        Page::Metrics if shared.metrics_public => metrics_page(shared),
        Page::Web(web) => {
            metrics.http(HttpKind::Page);
            // Given `head`, it does not inflate a body it would not send.
            let response = Response::web(web, head, &shared.web_csp);
            metrics.web(match response.status() {
                "200 OK" => WebStatus::Ok,
                "304 Not Modified" => WebStatus::NotModified,
                _ => WebStatus::Error,
            });
            response
        }
        // Served elsewhere or nowhere ([`MetricsAccess`]): as if there were no such page.
        Page::Metrics | Page::NotFound => {
            metrics.http(HttpKind::NotFound);
            metrics.web(WebStatus::NotFound);
            not_found()
        }
    };
    if head { response.head_only() } else { response }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle connection costs is mostly its task: keep the future small (the login
    /// phase, frame handling and closing are boxed so they do not size it).
    #[test]
    fn the_connection_future_stays_small() {
        smol::block_on(async {
            let temp = tempfile::tempdir().expect("temp dir");
            let config = RelayConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), temp.path());
            let relay = Relay::bind(config).await.expect("bind");
            let tcp = Async::<TcpStream>::connect(relay.local_addr())
                .await
                .expect("connect");
            let (alive, _all_closed) = smol::channel::bounded::<()>(1);
            let shared = relay.shared.clone();
            let slot = Slot {
                shared: shared.clone(),
                prefix: [127, 0, 0, 0].into(),
                authenticated: AtomicBool::new(false),
                _alive: alive,
            };
            let future = connection(shared.clone(), tcp, slot);
            let size = std::mem::size_of_val(&future);
            assert!(size <= 1280, "the connection future is {size} bytes");
            drop(future);
            let tcp = Async::<TcpStream>::connect(relay.local_addr())
                .await
                .expect("connect");
            let metered = Metered::new(Stream::Plain(tcp), Vec::new(), shared.metrics.clone());
            let mut ws = WebSocketStream::from_raw_socket(metered, WsRole::Server, None).await;
            let mut gauge = Gauge::new(shared.metrics.clone(), ConnKind::Handshake);
            let (alive, _all_closed) = smol::channel::bounded::<()>(1);
            let slot = Slot {
                shared: shared.clone(),
                prefix: [127, 0, 0, 0].into(),
                authenticated: AtomicBool::new(false),
                _alive: alive,
            };
            let serve = conn::serve(&shared, &mut ws, Instant::now(), &mut gauge, &slot);
            let size = std::mem::size_of_val(&serve);
            assert!(size <= 768, "the serve future is {size} bytes");
        });
    }

    #[test]
    fn sources_count_by_prefix() {
        let prefix = |text: &str| source_prefix(text.parse().expect("an address")).to_string();
        assert_eq!(prefix("203.0.113.77"), "203.0.113.0");
        assert_eq!(prefix("203.0.114.1"), "203.0.114.0");
        assert_eq!(prefix("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(prefix("2001:db8:1:3::1"), "2001:db8:1:3::");
        // A dual-stack socket's IPv4 peer counts as that IPv4 address.
        assert_eq!(prefix("::ffff:203.0.113.77"), "203.0.113.0");
        assert_eq!(prefix("::1"), "::");
    }
}
