//! The process under load: the relay, or the same-stack forwarder (the ceiling). Each runs as
//! its own child process on 127.0.0.1, so the load generator's work is not charged to it, and
//! its CPU time and memory are read from `/proc`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    pub held: u64,
    pub throttled: u64,
}

pub struct Target {
    pub kind: Kind,
    pub addr: SocketAddr,
    child: Child,
    data_dir: Option<PathBuf>,
}

fn free_addr() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener.local_addr().map_err(|e| e.to_string())
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
        let addr = free_addr()?;
        let data_dir = std::env::temp_dir().join(format!(
            "muxagent-relay-bench-{}-{}",
            std::process::id(),
            addr.port()
        ));
        let mut command = Command::new(relay_bin);
        if let Some(rate) = inbound_bytes_per_sec {
            command.args(["--inbound-bytes-per-sec", &rate.to_string()]);
        }
        let child = command
            .arg("--public-metrics")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--threads", &threads.to_string()])
            .args(["--max-unauthenticated-connections", "20000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", relay_bin.display()))?;
        Target {
            kind: Kind::Relay,
            addr,
            child,
            data_dir: Some(data_dir),
        }
        .ready()
    }

    /// Start this program as the same-stack forwarder.
    pub fn forwarder(threads: usize) -> Result<Target, String> {
        let addr = free_addr()?;
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let child = Command::new(me)
            .args(["forward", "--listen", &addr.to_string()])
            .args(["--threads", &threads.to_string()])
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
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok());
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        (ticks(11).unwrap_or(0) + ticks(12).unwrap_or(0)) as f64 / TICKS_PER_SEC
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// The relay's `/metrics` page; empty for the forwarder, which counts nothing.
    fn metrics(&self) -> String {
        if self.kind != Kind::Relay {
            return String::new();
        }
        let Ok(mut stream) = TcpStream::connect(self.addr) else {
            return String::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
        if stream.write_all(request.as_bytes()).is_err() {
            return String::new();
        }
        let mut body = String::new();
        let _ = stream.read_to_string(&mut body);
        body
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
        Counters {
            drops: body
                .lines()
                .filter_map(|line| line.strip_prefix("relay_dropped_total{reason=\""))
                .filter_map(|rest| {
                    let (reason, value) = rest.split_once("\"} ")?;
                    Some((reason.to_string(), value.trim().parse().ok()?))
                })
                .collect(),
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
