//! What a relay is started with: where it listens, where it keeps its registry, TLS, the URL
//! people reach it at, Web Push, and every limit (defaults from [`crate::limits`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::limits;

use muxagent_relay_client::Roots;

/// A relay's configuration. [`RelayConfig::new`] fills in every default.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Address to listen on (port 0 picks a free port; see [`crate::Relay::local_addr`]).
    pub listen: SocketAddr,
    /// Folder of the registry log. Created if missing.
    pub data_dir: PathBuf,
    /// PEM certificate chain and private key; without them the relay serves plain `http`/`ws`.
    pub tls: Option<TlsFiles>,
    /// The base URL clients and pairing links use (`https://relay.example.com`). Defaults to
    /// `http(s)://<listen>`.
    pub public_url: Option<String>,
    /// Threads that run connections. The thread that awaits [`crate::Relay::run`] is one of
    /// them; the others are started by `run` and stopped when it returns.
    pub threads: usize,
    /// Every bound the relay enforces.
    pub limits: Limits,
    /// Web Push: which push services the relay POSTs to, and the contact it names to them.
    pub push: PushConfig,
    /// Where `/metrics` is served: nowhere by default (its counts say how busy the relay is and
    /// how many keys it holds, nothing a stranger needs).
    pub metrics: MetricsAccess,
}

/// Where the relay serves `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetricsAccess {
    /// Nowhere: `/metrics` on the public listener answers 404.
    #[default]
    Hidden,
    /// On a listener of its own at this address (plain `http`, `/metrics` only), e.g.
    /// `127.0.0.1:9100` for a local Prometheus. Port 0 picks a free one
    /// ([`crate::Relay::metrics_addr`]).
    Listen(SocketAddr),
    /// On the public listener too, to anyone who can reach it: for tests and private networks.
    Public,
}

/// Web Push settings (the limits are in [`Limits`]).
#[derive(Clone, Debug, Default)]
pub struct PushConfig {
    /// Origins (`scheme://host:port`) the relay may POST pushes to besides the browsers' push
    /// services (`https://fcm.googleapis.com`, `https://updates.push.services.mozilla.com`,
    /// `https://*.push.apple.com`, `https://*.notify.windows.com`). The only way to allow plain
    /// `http` (a test's mock push service, a push service on the operator's own network).
    pub extra_origins: Vec<String>,
    /// The `sub` claim of the VAPID JWT (RFC 8292 §2.1): how a push service's operator reaches
    /// the relay's, a `mailto:` or `https:` URI. Defaults to the public URL when it is `https`,
    /// else `mailto:relay@muxagent.invalid` (push services may refuse that: set one).
    pub contact: Option<String>,
    /// Certificates trusted for `https` push services: the system's (tests name their own).
    pub roots: Roots,
}

impl RelayConfig {
    /// A plain-`ws` relay on `listen` keeping its registry in `data_dir`, with default limits.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        RelayConfig {
            listen,
            data_dir: data_dir.into(),
            tls: None,
            public_url: None,
            threads: 1,
            limits: Limits::default(),
            push: PushConfig::default(),
            metrics: MetricsAccess::Hidden,
        }
    }
}

/// A certificate chain and its private key, both PEM files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The relay's bounds. Defaults and the reasons for them are in [`crate::limits`];
/// tests shorten the timeouts, the load bench raises the per-prefix cap.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections at most, all roles and handshakes included.
    pub max_connections: usize,
    /// Connections from one source prefix (an IPv4 /24, an IPv6 /64) at most.
    pub max_connections_per_prefix: usize,
    /// Connections that have not logged in yet, at most.
    pub max_unauthenticated_connections: usize,
    /// Live connections of one device key at most; a login past it displaces the oldest.
    pub max_connections_per_device: usize,
    /// Frames queued for one receiver; past it the sender holds the frame (`pushback`), then
    /// drops it.
    pub queue_depth: usize,
    /// Bytes queued for one receiver; past it the sender holds the frame (`pushback`), then
    /// drops it.
    pub queue_bytes_per_connection: usize,
    /// How long a sender's connection holds a frame for a full receiver queue (reading on only
    /// while it holds few) before it drops it.
    pub pushback: Duration,
    /// Bytes queued for all connections of one account.
    pub queue_bytes_per_account: usize,
    /// Bytes queued for all receivers of the relay.
    pub queue_bytes_total: usize,
    /// A receiver whose queue stays full this long is disconnected.
    pub slow_reader_cut: Duration,
    /// Time one frame may take to be written before the receiver is disconnected.
    pub write_timeout: Duration,
    /// Kernel send buffer per connection (`SO_SNDBUF`): what a stalled reader absorbs before
    /// the relay's writes to it stall and the write timeout runs.
    pub send_buffer_len: usize,
    /// Time from TCP accept to a verified login (TLS and HTTP included).
    pub login_deadline: Duration,
    /// Time between server pings on an idle connection (before jitter).
    pub ping_interval: Duration,
    /// Largest random delay added to each ping interval.
    pub ping_jitter: Duration,
    /// A connection silent this long after a ping is closed.
    pub pong_timeout: Duration,
    /// Sustained inbound bytes per second per connection.
    pub inbound_bytes_per_sec: u32,
    /// Inbound burst per connection.
    pub inbound_burst_bytes: u32,
    /// WebSocket read buffer per connection.
    pub read_buffer_len: usize,
    /// WebSocket read buffer per connection over TLS (reading decrypted bytes from rustls).
    pub tls_read_buffer_len: usize,
    /// Largest HTTP request head.
    pub http_head_max_len: usize,
    /// Longest life of a pairing id.
    pub pairing_ttl: Duration,
    /// Pairing ids open per connection.
    pub pairings_per_connection: usize,
    /// Pairing ids open from one source prefix.
    pub pairings_per_prefix: usize,
    /// Pairing ids open in total.
    pub max_pairings: usize,
    /// Machines per account.
    pub max_machines_per_account: usize,
    /// Devices per account.
    pub max_devices_per_account: usize,
    /// Keys the registry holds at most.
    pub max_registry_keys: usize,
    /// Pairs (a device paired with a machine) the registry holds at most.
    pub max_registry_pairs: usize,
    /// Keys one account keeps barred (revoked) at most.
    pub max_revoked_per_account: usize,
    /// Keys the relay adds per hour, net.
    pub new_keys_per_hour: u32,
    /// Keys the bucket of `new_keys_per_hour` holds at most.
    pub new_keys_burst: u32,
    /// Registrations adding keys per source network per hour.
    pub new_key_registrations_per_prefix_per_hour: usize,
    /// Registry requests per account per hour.
    pub registry_requests_per_account_per_hour: usize,
    /// Entries appended to the registry log since its last compaction, at the least, before it
    /// is compacted again.
    pub registry_compact_floor: usize,
    /// Reconnect hint sent in `Restarting`.
    pub restart_reconnect_in: Duration,
    /// Each connection's hint adds a uniform share of this.
    pub restart_spread: Duration,
    /// Retry window sent in `Restarting`.
    pub restart_try_for: Duration,
    /// How long shutdown waits for connections to close.
    pub shutdown_grace: Duration,
    /// Web Push subscriptions held at most (one per device).
    pub max_push_subscriptions: usize,
    /// Pushes held at once (queued, in flight, waiting to be retried).
    pub push_queue_len: usize,
    /// Pushes sent at once.
    pub push_workers: usize,
    /// Time to open the TCP connection to a push service.
    pub push_connect_timeout: Duration,
    /// Time one push may take in all.
    pub push_request_timeout: Duration,
    /// Times a push is tried at most.
    pub push_attempts: u32,
    /// Wait before the first retry (doubling after).
    pub push_retry_base: Duration,
    /// Longest `Retry-After` honoured; a longer one drops the push.
    pub push_retry_after_max: Duration,
    /// Pushes to one device in a burst.
    pub push_per_device_burst: u32,
    /// Pushes to one device per minute, sustained.
    pub push_per_device_per_min: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: limits::RELAY_MAX_CONNECTIONS,
            max_connections_per_prefix: limits::RELAY_MAX_CONNECTIONS_PER_PREFIX,
            max_unauthenticated_connections: limits::RELAY_MAX_UNAUTHENTICATED_CONNECTIONS,
            max_connections_per_device: limits::RELAY_MAX_CONNECTIONS_PER_DEVICE,
            queue_depth: limits::RELAY_QUEUE_DEPTH,
            queue_bytes_per_connection: limits::RELAY_QUEUE_BYTES_PER_CONNECTION,
            pushback: Duration::from_millis(limits::RELAY_PUSHBACK_MS),
            queue_bytes_per_account: limits::RELAY_QUEUE_BYTES_PER_ACCOUNT,
            queue_bytes_total: limits::RELAY_QUEUE_BYTES_TOTAL,
            slow_reader_cut: Duration::from_millis(limits::RELAY_SLOW_READER_CUT_MS),
            write_timeout: Duration::from_millis(limits::RELAY_WRITE_TIMEOUT_MS),
            send_buffer_len: limits::RELAY_SEND_BUFFER_LEN,
            login_deadline: Duration::from_secs(limits::LOGIN_DEADLINE_SECS),
            ping_interval: Duration::from_secs(limits::RELAY_PING_INTERVAL_SECS),
            ping_jitter: Duration::from_secs(limits::RELAY_PING_JITTER_SECS),
            pong_timeout: Duration::from_secs(limits::RELAY_PONG_TIMEOUT_SECS),
            inbound_bytes_per_sec: limits::RELAY_INBOUND_BYTES_PER_SEC,
            inbound_burst_bytes: limits::RELAY_INBOUND_BURST_BYTES,
            read_buffer_len: limits::RELAY_READ_BUFFER_LEN,
            tls_read_buffer_len: limits::RELAY_TLS_READ_BUFFER_LEN,
            http_head_max_len: limits::RELAY_HTTP_HEAD_MAX_LEN,
            pairing_ttl: Duration::from_secs(limits::PAIRING_TTL_SECS),
            pairings_per_connection: limits::RELAY_PAIRINGS_PER_CONNECTION,
            pairings_per_prefix: limits::RELAY_PAIRINGS_PER_PREFIX,
            max_pairings: limits::RELAY_MAX_PAIRINGS,
            max_machines_per_account: limits::RELAY_MAX_MACHINES_PER_ACCOUNT,
            max_devices_per_account: limits::RELAY_MAX_DEVICES_PER_ACCOUNT,
            max_registry_keys: limits::RELAY_MAX_REGISTRY_KEYS,
            max_registry_pairs: limits::RELAY_MAX_REGISTRY_PAIRS,
            max_revoked_per_account: limits::RELAY_MAX_REVOKED_PER_ACCOUNT,
            new_keys_per_hour: limits::RELAY_NEW_KEYS_PER_HOUR,
            new_keys_burst: limits::RELAY_NEW_KEYS_BURST,
            new_key_registrations_per_prefix_per_hour:
                limits::RELAY_NEW_KEY_REGISTRATIONS_PER_PREFIX_PER_HOUR,
            registry_requests_per_account_per_hour:
                limits::RELAY_REGISTRY_REQUESTS_PER_ACCOUNT_PER_HOUR,
            registry_compact_floor: limits::RELAY_REGISTRY_COMPACT_FLOOR,
            restart_reconnect_in: Duration::from_millis(u64::from(
                limits::RELAY_RESTART_RECONNECT_IN_MS,
            )),
            restart_spread: Duration::from_millis(u64::from(limits::RELAY_RESTART_SPREAD_MS)),
            restart_try_for: Duration::from_millis(u64::from(limits::RELAY_RESTART_TRY_FOR_MS)),
            shutdown_grace: Duration::from_millis(limits::RELAY_SHUTDOWN_GRACE_MS),
            max_push_subscriptions: limits::RELAY_MAX_PUSH_SUBSCRIPTIONS,
            push_queue_len: limits::RELAY_PUSH_QUEUE_LEN,
            push_workers: limits::RELAY_PUSH_WORKERS,
            push_connect_timeout: Duration::from_millis(limits::RELAY_PUSH_CONNECT_TIMEOUT_MS),
            push_request_timeout: Duration::from_millis(limits::RELAY_PUSH_REQUEST_TIMEOUT_MS),
            push_attempts: limits::RELAY_PUSH_ATTEMPTS,
            push_retry_base: Duration::from_millis(limits::RELAY_PUSH_RETRY_BASE_MS),
            push_retry_after_max: Duration::from_secs(limits::RELAY_PUSH_RETRY_AFTER_MAX_SECS),
            push_per_device_burst: limits::RELAY_PUSH_PER_DEVICE_BURST,
            push_per_device_per_min: limits::RELAY_PUSH_PER_DEVICE_PER_MIN,
        }
    }
}

impl Limits {
    /// Check the bounds fit together.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.queue_depth == 0 {
            return Err("the queue depth must be at least 1".into());
        }
        if (self.inbound_burst_bytes as usize) < limits::MAX_FRAME_LEN {
            return Err(format!(
                "the inbound burst ({} bytes) must hold one frame ({} bytes)",
                self.inbound_burst_bytes,
                limits::MAX_FRAME_LEN
            ));
        }
        if self.inbound_bytes_per_sec == 0 {
            return Err("the inbound rate must be above zero".into());
        }
        if self.send_buffer_len < limits::MAX_FRAME_LEN {
            return Err(format!(
                "the send buffer ({} bytes) must hold one frame ({} bytes)",
                self.send_buffer_len,
                limits::MAX_FRAME_LEN
            ));
        }
        if self.read_buffer_len < 256 || self.tls_read_buffer_len < 256 {
            return Err("the read buffers must be at least 256 bytes".into());
        }
        if self.queue_bytes_per_connection < limits::MAX_FRAME_LEN
            || self.queue_bytes_per_account < self.queue_bytes_per_connection
            || self.queue_bytes_total < self.queue_bytes_per_account
        {
            return Err(format!(
                "the queue byte budgets must hold one frame ({} bytes) and grow from a \
                 connection to an account to the relay",
                limits::MAX_FRAME_LEN
            ));
        }
        if self.max_connections == 0
            || self.max_connections_per_prefix == 0
            || self.max_unauthenticated_connections == 0
            || self.max_connections_per_device == 0
        {
            return Err("the connection caps must be at least 1".into());
        }
        if self.max_connections_per_device > limits::RELAY_MAX_CONNECTIONS_PER_DEVICE {
            // Machines keep one channel per connection up to this (and one spare): more
            // connections would push out working channels.
            return Err(format!(
                "at most {} connections per device (machines keep a channel for each)",
                limits::RELAY_MAX_CONNECTIONS_PER_DEVICE
            ));
        }
        if self.max_machines_per_account > limits::RELAY_MAX_MACHINES_PER_ACCOUNT
            || self.max_devices_per_account > limits::RELAY_MAX_DEVICES_PER_ACCOUNT
        {
            // A device list names every machine and device of an account in one frame.
            return Err(format!(
                "at most {} machines and {} devices per account (one frame lists them)",
                limits::RELAY_MAX_MACHINES_PER_ACCOUNT,
                limits::RELAY_MAX_DEVICES_PER_ACCOUNT
            ));
        }
        if self.new_keys_burst < 2
            || self.new_keys_per_hour == 0
            || self.new_key_registrations_per_prefix_per_hour == 0
            || self.registry_requests_per_account_per_hour == 0
        {
            // A new account adds two keys at once: a smaller burst would admit nobody.
            return Err(
                "the registry's admission needs a burst of at least 2 keys and rates of at least 1"
                    .into(),
            );
        }
        if self.push_workers == 0 || self.push_queue_len == 0 || self.push_attempts == 0 {
            return Err("push needs at least one worker, one queue slot and one attempt".into());
        }
        if self.push_per_device_burst == 0 || self.push_per_device_per_min == 0 {
            return Err("the push rate per device must be above zero".into());
        }
        Ok(())
    }
}
