//! `muxagent-relay`: the relay as a program. See `muxagent-relay --help`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;
use muxagent_relay::{Limits, MetricsAccess, PushConfig, Relay, RelayConfig, TlsFiles};

/// The muxagent relay: authenticates devices and machines by their keys and routes their
/// end-to-end-encrypted frames. Serves WebSocket at /relay, and /healthz, /metrics, / and /pair
/// over HTTP on the same port. Stops gracefully on SIGTERM or SIGINT (clients are told to
/// reconnect).
#[derive(FromArgs)]
struct Args {
    /// address to listen on (default 127.0.0.1:8080)
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 8080))")]
    listen: SocketAddr,

    /// folder for the registry log (accounts, machines, revocations) and Web Push (the VAPID
    /// key, subscriptions); default ./muxagent-relay-data
    #[argh(option, default = "PathBuf::from(\"muxagent-relay-data\")")]
    data_dir: PathBuf,

    /// PEM certificate chain: serve https/wss (needs --tls-key)
    #[argh(option)]
    tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert
    #[argh(option)]
    tls_key: Option<PathBuf>,

    /// the base URL clients and pairing links use, e.g. https://relay.example.com (default:
    /// derived from --listen)
    #[argh(option)]
    public_url: Option<String>,

    /// most connections at once, logins in progress included (default 50000)
    #[argh(option)]
    max_connections: Option<usize>,

    /// most connections from one source prefix, an IPv4 /24 or an IPv6 /64 (default 64)
    #[argh(option)]
    max_connections_per_prefix: Option<usize>,

    /// most connections that have not logged in yet (default 4096)
    #[argh(option)]
    max_unauthenticated_connections: Option<usize>,

    /// bytes a second one key may send, sustained (its connections share them; default
    /// 2097152); the burst is four seconds' worth
    #[argh(option)]
    inbound_bytes_per_sec: Option<u32>,

    /// new keys (devices and machines) the relay admits an hour, and at once (default 600; a
    /// fleet pairing many machines in one go needs more)
    #[argh(option)]
    new_keys_per_hour: Option<u32>,

    /// registrations adding keys that one source network (an IPv4 /24, an IPv6 /48) may make
    /// an hour (default 20)
    #[argh(option)]
    new_keys_per_network_per_hour: Option<usize>,

    /// threads serving connections (default: the number of CPUs)
    #[argh(option)]
    threads: Option<usize>,

    /// an origin (scheme://host:port) to send Web Push to besides the browsers' push services
    /// (FCM, Mozilla, Apple, Windows; https only); repeatable; the only way to allow http
    #[argh(option)]
    push_origin: Vec<String>,

    /// the contact push services see in the VAPID token, a mailto: or https: URI (default: the
    /// public URL if https, else mailto:relay@muxagent.invalid, which services may refuse)
    #[argh(option)]
    push_contact: Option<String>,

    /// serve /metrics (Prometheus) on a listener of its own at this address, plain http, e.g.
    /// 127.0.0.1:9100; without it (or --public-metrics) /metrics is not served at all
    #[argh(option)]
    metrics_bind: Option<SocketAddr>,

    /// serve /metrics on the public listener too, to anyone who reaches it (tests, private
    /// networks); it says how busy the relay is and how many keys it holds
    #[argh(switch)]
    public_metrics: bool,
}

fn main() -> ExitCode {
    if muxagent_relay_client::version::print_if_requested(muxagent_relay_client::version_line!()) {
        return ExitCode::SUCCESS;
    }
    let args: Args = argh::from_env();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("muxagent-relay: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    let mut limits = Limits::default();
    if let Some(max) = args.max_connections {
        limits.max_connections = max;
    }
    if let Some(max) = args.max_connections_per_prefix {
        limits.max_connections_per_prefix = max;
    }
    if let Some(max) = args.max_unauthenticated_connections {
        limits.max_unauthenticated_connections = max;
    }
    if let Some(rate) = args.new_keys_per_hour {
        limits.new_keys_per_hour = rate;
        limits.new_keys_burst = rate;
    }
    if let Some(rate) = args.new_keys_per_network_per_hour {
        limits.new_key_registrations_per_prefix_per_hour = rate;
    }
    if let Some(rate) = args.inbound_bytes_per_sec {
        limits.inbound_bytes_per_sec = rate;
        limits.inbound_burst_bytes = rate.saturating_mul(4);
    }
    let metrics = match (args.metrics_bind, args.public_metrics) {
        (Some(_), true) => {
            return Err("--metrics-bind and --public-metrics exclude each other".into());
        }
        (Some(addr), false) => MetricsAccess::Listen(addr),
        (None, true) => MetricsAccess::Public,
        (None, false) => MetricsAccess::Hidden,
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let config = RelayConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        tls,
        public_url: args.public_url,
        threads,
        limits,
        push: PushConfig {
            extra_origins: args.push_origin,
            contact: args.push_contact,
            ..PushConfig::default()
        },
        metrics,
    };
    smol::block_on(async {
        let shutdown = muxagent_relay::shutdown::signals().map_err(|e| e.to_string())?;
        let relay = Relay::bind(config).await.map_err(|e| e.to_string())?;
        relay.run(shutdown).await.map_err(|e| e.to_string())
    })
}
