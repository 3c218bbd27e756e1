//! The relay as its own process (the `muxagent-relay` binary of this build, one thread), so a
//! flood's cost is the relay's alone: resident memory from `/proc/PID/status`, CPU time from
//! the utime + stime ticks of `/proc/PID/stat`. `MUXAGENT_RELAY_BIN` names another binary to
//! measure (an older build, for a before/after figure).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::TestRelay;

pub struct RelayProcess {
    child: Child,
    pub addr: SocketAddr,
    pub url: String,
    /// What the relay wrote to stderr so far (its first [`LOG_LINES_KEPT`] lines).
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

/// Lines of the relay's log a test keeps (the rest is drained and dropped).
const LOG_LINES_KEPT: usize = 10_000;

/// A point in the relay's life: when, its CPU ticks, its resident KiB.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub at: Instant,
    pub ticks: u64,
    pub rss_kib: u64,
}

impl Usage {
    /// Cores used between `self` and `later` (ticks are 1/100 s on Linux).
    pub fn cores_until(&self, later: &Usage) -> f64 {
        let secs = later.at.duration_since(self.at).as_secs_f64().max(1e-3);
        (later.ticks.saturating_sub(self.ticks)) as f64 / 100.0 / secs
    }
}

impl RelayProcess {
    /// Start the relay on 127.0.0.1, port 0, with `args` added (`--max-connections-per-prefix`…).
    pub fn start(args: &[&str]) -> RelayProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let binary = std::env::var_os("MUXAGENT_RELAY_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_muxagent-relay").into());
        let mut child = Command::new(binary)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--threads",
                "1",
                "--public-metrics",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start muxagent-relay");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            // Forward the address, then keep draining so the relay never blocks on stderr.
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1)
                    && let Some(sender) = tx.take()
                {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = sender.send(addr);
                }
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                if kept.len() < LOG_LINES_KEPT {
                    kept.push(line);
                }
            }
        });
        let addr: SocketAddr = rx
            .recv_timeout(super::STEP)
            .expect("the relay says where it listens")
            .parse()
            .expect("an address");
        RelayProcess {
            child,
            addr,
            url: format!("ws://{addr}"),
            log,
            _dir: dir,
        }
    }

    /// The relay's log so far, one line each.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// A [`TestRelay`] handle for clients and `/metrics`.
    pub fn handle(&self) -> TestRelay {
        TestRelay::external(&self.url)
    }

    pub fn usage(&self) -> Usage {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which ends with the last ')'): utime is the 12th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Usage {
            at: Instant::now(),
            ticks: tick(11) + tick(12),
            rss_kib,
        }
    }

    /// The highest resident size seen while `fut` runs (sampled every 50 ms).
    pub async fn peak_rss_during<T>(&self, fut: impl std::future::Future<Output = T>) -> (T, u64) {
        use smol::future::FutureExt as _;
        let peak = std::cell::Cell::new(self.usage().rss_kib);
        let sample = async {
            loop {
                smol::Timer::after(Duration::from_millis(50)).await;
                peak.set(peak.get().max(self.usage().rss_kib));
            }
        };
        let value = fut.or(sample).await;
        (value, peak.get().max(self.usage().rss_kib))
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
