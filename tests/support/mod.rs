//! Real processes on loopback for the end-to-end tests: a relay (this test binary re-executed as
//! one, so it can be killed with SIGKILL on its own), daemons and controllers (the `muxagent`
//! binary), each with its own temporary `MUXAGENT_HOME`.
//!
//! Waiting is always for something observable (a health check answering, a line appearing, a
//! status field) with a deadline, never a fixed sleep.

#![allow(dead_code)]

pub mod agents;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Upper bound for any one wait in these tests.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The environment variable that turns this test binary into a relay.
const RELAY_ENV: &str = "MUXAGENT_TEST_RELAY";

/// Call first in every test binary's tests: if this process was started as a relay, run it and
/// never return.
pub fn maybe_run_relay() {
    let Ok(spec) = std::env::var(RELAY_ENV) else {
        return;
    };
    let mut parts = spec.split('|');
    let (Some(addr), Some(dir)) = (parts.next(), parts.next()) else {
        panic!("{RELAY_ENV} is addr|dir[|push origin…]");
    };
    let mut config = muxagent_relay::RelayConfig::new(addr.parse().expect("addr"), dir);
    config.push.extra_origins = parts.map(str::to_string).collect();
    // The tests read the counters on the relay's own port.
    config.metrics = muxagent_relay::MetricsAccess::Public;
    let relay = smol::block_on(muxagent_relay::Relay::bind(config)).expect("relay binds");
    smol::block_on(relay.run(std::future::pending())).expect("relay runs");
    std::process::exit(0);
}

/// Poll `check` until it holds or the deadline passes.
pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A relay process.
pub struct Relay {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    /// Origins the relay may POST pushes to besides the browsers' push services.
    pub push_origins: Vec<String>,
    child: Option<Child>,
}

impl Relay {
    pub fn start(dir: &Path) -> Relay {
        Relay::start_with_push(dir, &[])
    }

    /// A relay that may also push to `origins` (a test's mock push service).
    pub fn start_with_push(dir: &Path, origins: &[String]) -> Relay {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut relay = Relay {
            addr,
            dir: dir.to_path_buf(),
            push_origins: origins.to_vec(),
            child: None,
        };
        relay.restart();
        relay
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Start (again) on the same address and data.
    pub fn restart(&mut self) {
        let child = Command::new(std::env::current_exe().expect("test exe"))
            .args([
                "--exact",
                "relay_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(RELAY_ENV, {
                let mut spec = format!("{}|{}", self.addr, self.dir.display());
                for origin in &self.push_origins {
                    spec.push('|');
                    spec.push_str(origin);
                }
                spec
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start relay");
        self.child = Some(child);
        let addr = self.addr;
        wait_for("the relay's /healthz", || healthz(addr));
    }

    /// SIGKILL, and wait until the port is closed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The relay's /metrics text.
    pub fn metrics(&self) -> String {
        http_get(self.addr, "/metrics").unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain `GET` (no gzip), the whole reply as text.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

fn healthz(addr: SocketAddr) -> bool {
    http_get(addr, "/healthz").is_some_and(|reply| reply.starts_with("HTTP/1.1 200"))
}

/// The `muxagent` binary with a home.
pub fn muxagent(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_muxagent"));
    command.env("MUXAGENT_HOME", home).stdin(Stdio::null());
    command
}

/// Run `muxagent ARGS` to completion, killed after [`DEADLINE`] (then the test fails with
/// what it printed).
pub fn run(home: &Path, args: &[&str]) -> Output {
    let mut child = muxagent(home)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run muxagent");
    let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(stdout) = stdout.as_mut() {
            let _ = stdout.read_to_end(&mut text);
        }
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.read_to_end(&mut text);
        }
        text
    });
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out.join().unwrap_or_default();
            let stderr = err.join().unwrap_or_default();
            panic!(
                "muxagent {args:?} did not finish in {DEADLINE:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Run `muxagent ARGS` on a pseudo-terminal (stdin, stdout and stderr), type `answer` and a
/// newline once it printed `prompt`, and return its exit status and everything it printed
/// (line ends as `\n`). Killed after [`DEADLINE`].
pub fn on_terminal(
    home: &Path,
    args: &[&str],
    prompt: &str,
    answer: &str,
) -> (std::process::ExitStatus, String) {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname(&master, Vec::new()).expect("ptsname");
    let terminal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().expect("pts path"))
        .expect("open the terminal");
    let mut child = {
        let mut command = muxagent(home);
        command
            .args(args)
            .stdin(terminal.try_clone().expect("clone"))
            .stdout(terminal.try_clone().expect("clone"))
            .stderr(terminal);
        command.spawn().expect("run muxagent")
    };
    let mut master = std::fs::File::from(master);
    let mut reader = master.try_clone().expect("clone");
    let (sender, printed) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        // Ends with EIO once the child closed the terminal.
        while let Ok(n @ 1..) = reader.read(&mut buffer) {
            if sender.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    let mut answered = false;
    loop {
        while let Ok(chunk) = printed.try_recv() {
            out.extend(chunk);
        }
        if !answered && String::from_utf8_lossy(&out).contains(prompt) {
            writeln!(master, "{answer}").expect("type the answer");
            answered = true;
        }
        if let Some(status) = child.try_wait().expect("wait") {
            while let Ok(chunk) = printed.recv_timeout(Duration::from_millis(200)) {
                out.extend(chunk);
            }
            return (status, String::from_utf8_lossy(&out).replace("\r\n", "\n"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "muxagent {args:?} did not finish in {DEADLINE:?}:\n{}",
                String::from_utf8_lossy(&out)
            );
        }
        if let Ok(chunk) = printed.recv_timeout(Duration::from_millis(20)) {
            out.extend(chunk);
        }
    }
}

/// Run and require success; return stdout.
pub fn ok(home: &Path, args: &[&str]) -> String {
    let output = run(home, args);
    assert!(
        output.status.success(),
        "muxagent {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Run and require failure with a one-line error; return it.
pub fn fails(home: &Path, args: &[&str]) -> String {
    let output = run(home, args);
    assert!(!output.status.success(), "muxagent {args:?} should fail");
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line of error, got: {stderr}"
    );
    assert!(stderr.starts_with("muxagent: "), "{stderr}");
    stderr
}

/// A daemon in the foreground with its log in `home/test-daemon.log`.
pub struct Daemon {
    pub home: PathBuf,
    child: Option<Child>,
    relay: String,
    env: Vec<(String, String)>,
    /// A command the daemon runs under (its arguments come after these).
    wrap: Vec<String>,
}

impl Daemon {
    pub fn start(home: &Path, relay: &str) -> Daemon {
        Daemon::start_with_env(home, relay, Vec::new())
    }

    /// A daemon whose environment (and so its agents') has `env` added.
    pub fn start_with_env(home: &Path, relay: &str, env: Vec<(String, String)>) -> Daemon {
        Daemon::start_wrapped(home, relay, env, Vec::new())
    }

    /// A daemon started as `WRAP… muxagent daemon start …` (the wrapper must end by exec'ing
    /// its arguments, so the child's pid is the daemon's).
    pub fn start_wrapped(
        home: &Path,
        relay: &str,
        env: Vec<(String, String)>,
        wrap: Vec<String>,
    ) -> Daemon {
        let mut daemon = Daemon {
            home: home.to_path_buf(),
            child: None,
            relay: relay.into(),
            env,
            wrap,
        };
        daemon.restart();
        daemon
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn restart(&mut self) {
        std::fs::create_dir_all(&self.home).expect("home");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join("test-daemon.log"))
            .expect("log");
        // The machine's name as devices see it: its home folder's name.
        let name = self
            .home
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("machine")
            .to_string();
        let mut command = match self.wrap.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command
                    .args(args)
                    .arg(env!("CARGO_BIN_EXE_muxagent"))
                    .env("MUXAGENT_HOME", &self.home)
                    .stdin(Stdio::null());
                command
            }
            None => muxagent(&self.home),
        };
        let child = command
            .env("MUXAGENT_HOSTNAME", name)
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .args(["daemon", "start", "--foreground", "--relay", &self.relay])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start daemon");
        self.child = Some(child);
        wait_for("the daemon to connect", || {
            self.status()["connected"] == serde_json::json!(true)
        });
    }

    pub fn status(&self) -> serde_json::Value {
        let out = run(&self.home, &["daemon", "status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// The pairing link on offer.
    pub fn link(&self) -> String {
        let mut link = String::new();
        wait_for(
            "a pairing link",
            || match self.status()["pairing"]["link"].as_str() {
                Some(found) => {
                    link = found.to_string();
                    true
                }
                None => false,
            },
        );
        link
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("test-daemon.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM first so sessions are stopped cleanly, then make sure.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

/// Pair `controller` with `daemon`; returns the machine's hostname as the controller knows it.
pub fn pair(controller: &Path, daemon: &Daemon) {
    let link = daemon.link();
    let out = ok(controller, &["ctl", "pair", &link]);
    assert!(out.starts_with("paired with "), "{out}");
    wait_for("the machine to log in as paired", || {
        daemon.status()["paired_devices"].as_u64() == Some(1)
            && daemon.status()["connected"] == serde_json::json!(true)
    });
}

/// `ctl watch` as a child whose stdout lines arrive on a channel.
pub struct Watch {
    child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Watch {
    pub fn start(controller: &Path, machine: &str, session: &str) -> Watch {
        Watch::with_args(controller, &["ctl", "watch", machine, session])
    }

    /// `muxagent ARGS` (a `ctl watch` with options) as a watch.
    pub fn with_args(controller: &Path, args: &[&str]) -> Watch {
        Watch::logged(controller, args, "watch.err")
    }

    /// Like [`Watch::with_args`], its standard error in `controller/ERR` (for watches that run
    /// side by side).
    pub fn logged(controller: &Path, args: &[&str], err: &str) -> Watch {
        let mut child = muxagent(controller)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(controller.join(err)).expect("watch log"))
            .spawn()
            .expect("watch");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Watch { child, lines }
    }

    /// The `ctl watch` process's id (to freeze it with SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines until one satisfies `until` (included).
    pub fn read_until(&self, mut until: impl FnMut(&str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let line = self.lines.recv_timeout(DEADLINE).expect("watch output");
            let done = until(&line);
            out.push(line);
            if done {
                return out;
            }
        }
    }

    /// Kill the watch and return every line it printed that was not read yet.
    pub fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader thread ends with the pipe: this ends.
        let lines = std::mem::replace(&mut self.lines, mpsc::channel().1);
        lines.iter().collect()
    }

    /// Wait for the watch to exit by itself.
    pub fn finish(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "watch did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start a command session; returns its id.
pub fn start_session(controller: &Path, machine: &str, cwd: &Path, command: &str) -> String {
    let out = ok(
        controller,
        &[
            "ctl",
            "start",
            machine,
            "--runtime",
            "command",
            "--cwd",
            cwd.to_str().expect("utf8"),
            "--json",
            "--",
            command,
        ],
    );
    let value: serde_json::Value = serde_json::from_str(&out).expect("json");
    value["session"].as_str().expect("session").to_string()
}
