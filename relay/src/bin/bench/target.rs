//! The process under load: the relay, or the same-stack forwarder (the ceiling). Each runs as
//! its own child process on 127.0.0.1, so the load generator's work is not charged to it, and
//! its CPU time and memory are read from `/proc`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustls_pki_types::{CertificateDer, ServerName};

use crate::tls::SelfSigned;

/// How long a target may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Linux reports CPU time in clock ticks of `USER_HZ`, fixed at 100 by the kernel's ABI.
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Relay,
    Forwarder,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Relay => "relay",
            Kind::Forwarder => "forwarder",
        }
    }
}

/// Counters read from the relay (all zero for the forwarder).
#[derive(Default)]
pub struct Counters {
    pub drops: Vec<(String, u64)>,
    /// Connections closed at accept, by cap.
    pub refused: Vec<(String, u64)>,
    pub held: u64,
    pub throttled: u64,
}

pub struct Target {
    pub kind: Kind,
    pub addr: SocketAddr,
    child: Child,
    data_dir: Option<PathBuf>,
    /// The certificate the relay serves wss with, to read its metrics.
    tls_root: Option<CertificateDer<'static>>,
}

pub fn free_addr() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener.local_addr().map_err(|e| e.to_string())
}

/// How to start the relay.
#[derive(Clone, Default)]
pub struct RelayOptions {
    /// Threads serving connections.
    pub threads: usize,
    /// The relay's byte budget per key, if not its own.
    pub inbound_bytes_per_sec: Option<u32>,
    /// Listen here (a restart keeps the address); default a free port.
    pub addr: Option<SocketAddr>,
    /// Keep the registry here and leave it when the relay goes (a restart keeps it); default a
    /// fresh folder removed with the target.
    pub data_dir: Option<PathBuf>,
    /// Serve wss with this certificate.
    pub tls: Option<SelfSigned>,
    /// Keep the relay's cap on connections that have not logged in (a reconnect wave meets it
    /// as shipped); otherwise it is raised for the load's set-up.
    pub shipped_unauthenticated_cap: bool,
    /// Raise the relay-wide connection cap to this.
    pub max_connections: Option<usize>,
}

impl Target {
    /// Start the relay binary `relay_bin` with caps raised for a load test (the per-prefix caps
    /// stay: the load spreads its sources over 127.0.0.0/8).
    /// `inbound_bytes_per_sec` sets the relay's byte budget per key, if given.
    pub fn relay(
        relay_bin: &Path,
        threads: usize,
        inbound_bytes_per_sec: Option<u32>,
    ) -> Result<Target, String> {
        Target::relay_with(
            relay_bin,
            &RelayOptions {
                threads,
                inbound_bytes_per_sec,
                ..RelayOptions::default()
            },
        )
    }

    /// Start the relay binary `relay_bin` as `options` say.
    pub fn relay_with(relay_bin: &Path, options: &RelayOptions) -> Result<Target, String> {
        let addr = match options.addr {
            Some(addr) => addr,
            None => free_addr()?,
        };
        let (data_dir, owned) = match &options.data_dir {
            Some(dir) => (dir.clone(), false),
            None => (
                std::env::temp_dir().join(format!(
                    "muxagent-relay-bench-{}-{}",
                    std::process::id(),
                    addr.port()
                )),
                true,
            ),
        };
        let mut command = Command::new(relay_bin);
        if let Some(rate) = options.inbound_bytes_per_sec {
            command.args(["--inbound-bytes-per-sec", &rate.to_string()]);
        }
        if !options.shipped_unauthenticated_cap {
            command.args(["--max-unauthenticated-connections", "20000"]);
        }
        // The tool pairs thousands of machines within seconds, from few source networks: far
        // past the admission meant for strangers' keys (it holds the storm's reconnects, which
        // add no keys, to nothing).
        command.args([
            "--new-keys-per-hour",
            "1000000",
            "--new-keys-per-network-per-hour",
            "1000000",
        ]);
        if let Some(max) = options.max_connections {
            command.args(["--max-connections", &max.to_string()]);
        }
        if let Some(tls) = &options.tls {
            let (cert, key) = &tls.files;
            command
                .arg("--tls-cert")
                .arg(cert)
                .arg("--tls-key")
                .arg(key);
        }
        let child = command
            .arg("--public-metrics")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--threads", &options.threads.max(1).to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", relay_bin.display()))?;
        Target {
            kind: Kind::Relay,
            addr,
            child,
            data_dir: owned.then_some(data_dir),
            tls_root: options.tls.as_ref().map(|tls| tls.cert.clone()),
        }
        .ready()
    }

    /// Stop the target as an operator does (SIGTERM: the relay tells its clients to come back
    /// and closes), waiting up to `within` for it to exit before killing it.
    pub fn terminate(mut self, within: Duration) -> Result<(), String> {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-s", "TERM", &pid])
            .status()
            .map_err(|e| format!("cannot run kill: {e}"))?;
        if !status.success() {
            return Err(format!("kill -TERM {pid} failed"));
        }
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!(
            "the {} did not exit within {within:?} of SIGTERM",
            self.kind.name()
        ))
    }

    /// The target's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Start this program as the same-stack forwarder (over wss with `tls`'s certificate and
    /// key).
    pub fn forwarder(threads: usize, tls: Option<&(PathBuf, PathBuf)>) -> Result<Target, String> {
        let addr = free_addr()?;
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut command = Command::new(me);
        command
            .args(["forward", "--listen", &addr.to_string()])
            .args(["--threads", &threads.to_string()]);
        if let Some((cert, key)) = tls {
            command
                .arg("--tls-cert")
                .arg(cert)
                .arg("--tls-key")
                .arg(key);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run the forwarder: {e}"))?;
        Target {
            kind: Kind::Forwarder,
            addr,
            child,
            data_dir: None,
            tls_root: None,
        }
        .ready()
    }

    fn ready(mut self) -> Result<Target, String> {
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(self.addr).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the {} exited at start: {status}",
                    self.kind.name()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("the {} did not start listening", self.kind.name()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(self)
    }

    /// CPU seconds the target has used so far.
    pub fn cpu_secs(&self) -> f64 {
        cpu_secs(self.child.id())
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// The relay's `/metrics` page; empty for the forwarder, which counts nothing.
    fn metrics(&self) -> String {
        if self.kind != Kind::Relay {
            return String::new();
        }
        let Ok(stream) = TcpStream::connect(self.addr) else {
            return String::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let Some(root) = &self.tls_root else {
            return get_metrics(stream);
        };
        let Ok(config) = crate::tls::client_config(root) else {
            return String::new();
        };
        let Ok(name) = ServerName::try_from("localhost") else {
            return String::new();
        };
        match rustls::ClientConnection::new(config, name.to_owned()) {
            Ok(connection) => get_metrics(rustls::StreamOwned::new(connection, stream)),
            Err(_) => String::new(),
        }
    }

    /// What the relay has counted so far: frames dropped by reason (`reason=count`), and the
    /// plain counters `relay_pushback_total` (frames a sender held for a full queue) and
    /// `relay_throttled_total` (times a connection's inbound byte budget paused its reading).
    pub fn counters(&self) -> Counters {
        let body = self.metrics();
        let plain = |name: &str| {
            body.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0)
        };
        let labelled = |name: &str| {
            let prefix = format!("{name}{{reason=\"");
            body.lines()
                .filter_map(|line| line.strip_prefix(&prefix))
                .filter_map(|rest| {
                    let (reason, value) = rest.split_once("\"} ")?;
                    Some((reason.to_string(), value.trim().parse().ok()?))
                })
                .collect()
        };
        Counters {
            drops: labelled("relay_dropped_total"),
            refused: labelled("relay_connections_refused_total"),
            held: plain("relay_pushback_total"),
            throttled: plain("relay_throttled_total"),
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// CPU seconds process `pid` has used so far.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok());
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11).unwrap_or(0) + ticks(12).unwrap_or(0)) as f64 / TICKS_PER_SEC
}

/// Resident memory of process `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `GET /metrics` over `stream`; what came back (empty on failure).
fn get_metrics(mut stream: impl Read + Write) -> String {
    let request = "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut body = String::new();
    // The relay closes after the answer; a TLS close without close_notify ends it as well.
    let _ = stream.read_to_string(&mut body);
    body
}
