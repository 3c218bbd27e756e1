//! The reconnect storm, and the memory an idle connection costs.
//!
//! N machines are registered through the real pairing (on a plain relay), then each logs in as
//! a machine with the relay's own client (`muxagent-relay-client`, what the daemon uses) from
//! its own loopback source, over ws or wss; the relay's resident memory before and after gives
//! the cost of one idle machine connection. Then the relay is restarted twice while they stay:
//!
//! - gracefully (SIGTERM): it sends `Restarting { reconnect_in_ms }` and each client waits that
//!   long plus the daemon's jitter before it comes back (`src/daemon/link.rs`: the hint plus
//!   [`RECONNECT_MIN_MS`] ±50 %);
//! - with kill -9: no frame, the connections just end, and each client retries with the
//!   daemon's backoff ([`RECONNECT_MIN_MS`] ±50 %, doubling to [`RECONNECT_MAX_MS`]; like the
//!   daemon, a successful login resets it, and so does the relay's hint).
//!
//! Each restart reports how long every client took from losing its connection to its next
//! `LoginOk`, the failed attempts by reason, and the new relay's CPU and peak memory.
//! The relay restarts with its cap on connections not logged in yet as shipped, so the wave
//! meets the real cap. The same-stack forwarder holding N idle connections is the baseline for
//! the memory.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use muxagent_proto::frame::{Frame, Role};
use muxagent_proto::identity::Identity;
use muxagent_relay::limits::{
    RECONNECT_MAX_MS, RECONNECT_MIN_MS, RELAY_MAX_CONNECTIONS, RELAY_SHUTDOWN_GRACE_MS,
};
use muxagent_relay_client::{Client, ClientConfig, ClientError, RelayUrl, Roots};
use rustls_pki_types::ServerName;
use smol::channel::{Receiver, Sender};
use smol::io::{AsyncRead, AsyncWrite};
use smol::lock::Semaphore;
use smol::stream::StreamExt as _;
use smol::{Async, Executor, Task, Timer};

use crate::load;
use crate::stats::{Latencies, Summary};
use crate::target::{self, Kind, RelayOptions, Target};
use crate::tls::{self, SelfSigned};

/// Registrations (pairings) in flight during set-up.
const REGISTER_CONCURRENCY: usize = 32;

/// First logins in flight during set-up (the connections/s figure is taken at this many).
const CONNECT_CONCURRENCY: usize = 64;

/// How often the relay's memory is sampled during a restart.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Time for memory to settle (allocator, deferred frees) before it is read.
const SETTLE: Duration = Duration::from_millis(500);

/// What the storm is run with.
pub struct Storm {
    pub relay_bin: PathBuf,
    pub threads: usize,
    pub clients: usize,
    pub wss: bool,
    /// Longest time one phase (set-up, one restart) may take before its stragglers count as
    /// failures.
    pub deadline: Duration,
    /// Spread each client's wait after `Restarting` over this much more (uniformly): 0 is the
    /// daemon's behaviour; more tries a wider smear than the daemon's.
    pub smear: Duration,
}

/// One idle-memory row.
pub struct Memory {
    pub target: &'static str,
    pub connections: usize,
    pub setup: Duration,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

impl Memory {
    pub fn kib_per_connection(&self) -> f64 {
        self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64
            / self.connections.max(1) as f64
    }
}

/// One restart row.
pub struct Restart {
    pub how: &'static str,
    pub clients: usize,
    pub back: usize,
    /// From the signal to the new relay listening (the old one's shutdown and the new one's
    /// start, registry load included).
    pub relay_up: Duration,
    /// From the signal to the last client's login.
    pub total: Duration,
    /// Per client, from losing the connection to its next login.
    pub reconnect: Summary,
    /// Per client, the wait it chose before its first attempt (the hint plus jitter, or the
    /// backoff): the floor of `reconnect`.
    pub waited: Summary,
    pub failures: BTreeMap<String, u64>,
    /// Connections the new relay closed at accept, by cap (its `/metrics`).
    pub refused: Vec<(String, u64)>,
    pub cpu: f64,
    pub peak_rss_kib: u64,
}

/// Everything one storm run measured.
pub struct Report {
    pub registration: Duration,
    pub memory: Vec<Memory>,
    pub restarts: Vec<Restart>,
}

/// What the machines' tasks tell the storm.
enum Event {
    Up {
        client: usize,
        at: Instant,
    },
    Down {
        client: usize,
        at: Instant,
        wait: Duration,
    },
    Failed {
        reason: String,
    },
}

/// Where the machines connect, and how.
struct Dial {
    addr: SocketAddr,
    url: RelayUrl,
    config: ClientConfig,
    /// See [`Storm::smear`].
    smear: Duration,
}

struct Machine {
    identity: Identity,
    from: Ipv4Addr,
}

/// Run the storm: register, connect, restart gracefully, restart with kill -9; then the
/// forwarder's baseline.
pub fn run(executor: &Arc<Executor<'static>>, storm: &Storm) -> Result<Report, String> {
    let dir =
        std::env::temp_dir().join(format!("muxagent-relay-bench-storm-{}", std::process::id()));
    let result = run_in(executor, storm, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(executor: &Arc<Executor<'static>>, storm: &Storm, dir: &Path) -> Result<Report, String> {
    let data_dir = dir.join("data");
    let certificate = if storm.wss {
        Some(tls::self_signed(dir)?)
    } else {
        None
    };
    let addr = target::free_addr()?;
    // The relay-wide cap stays as shipped unless the machines (and room for the tool's own
    // requests) would not fit under it.
    let needed = storm.clients + 1_024;
    let mut options = RelayOptions {
        threads: storm.threads,
        addr: Some(addr),
        data_dir: Some(data_dir),
        max_connections: (needed > RELAY_MAX_CONNECTIONS).then_some(needed),
        ..RelayOptions::default()
    };

    // Register the machines on a plain relay (the registry outlives it in the data folder).
    let registrar = Target::relay_with(&storm.relay_bin, &options)?;
    let started = Instant::now();
    let machines = smol::block_on(executor.run(register(executor, addr, storm.clients)))?;
    let registration = started.elapsed();
    registrar.terminate(Duration::from_secs(30))?;

    options.tls = certificate.clone();
    options.shipped_unauthenticated_cap = true;
    let dial = Arc::new(Dial {
        addr,
        url: RelayUrl::parse(&format!(
            "{}://localhost:{}",
            if storm.wss { "wss" } else { "ws" },
            addr.port()
        ))
        .map_err(|e| e.to_string())?,
        config: ClientConfig {
            roots: match &certificate {
                Some(c) => Roots::Custom(vec![c.cert.clone()]),
                None => Roots::System,
            },
            ..ClientConfig::default()
        },
        smear: storm.smear,
    });
    let relay = Target::relay_with(&storm.relay_bin, &options)?;
    std::thread::sleep(SETTLE);
    let rss_before = relay.rss_kib();
    let (events, incoming) = smol::channel::unbounded();
    let first = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let started = Instant::now();
    let tasks: Vec<Task<()>> = machines
        .into_iter()
        .enumerate()
        .map(|(client, machine)| {
            executor.spawn(machine_loop(
                dial.clone(),
                machine,
                client,
                events.clone(),
                first.clone(),
            ))
        })
        .collect();
    let up = smol::block_on(executor.run(all_up(&incoming, storm.clients, storm.deadline)));
    if up < storm.clients {
        return Err(format!(
            "only {up} of {} machines logged in within {:?}",
            storm.clients, storm.deadline
        ));
    }
    let setup = started.elapsed();
    std::thread::sleep(SETTLE);
    let mut memory = vec![Memory {
        target: "relay",
        connections: storm.clients,
        setup,
        rss_before_kib: rss_before,
        rss_after_kib: relay.rss_kib(),
    }];

    let mut restarts = Vec::new();
    let mut relay = Some(relay);
    for how in ["graceful (SIGTERM)", "kill -9"] {
        let old = relay.take().ok_or("no relay")?;
        let pid = Arc::new(AtomicU32::new(0));
        let started_at = Arc::new(std::sync::Mutex::new(None));
        let t0 = Instant::now();
        let restart = {
            let (bin, options, pid, started_at) = (
                storm.relay_bin.clone(),
                options.clone(),
                pid.clone(),
                started_at.clone(),
            );
            let graceful = how.starts_with("graceful");
            smol::unblock(move || {
                if graceful {
                    old.terminate(Duration::from_millis(RELAY_SHUTDOWN_GRACE_MS) * 3)?;
                } else {
                    drop(old);
                }
                let new = Target::relay_with(&bin, &options)?;
                if let Ok(mut at) = started_at.lock() {
                    *at = Some(Instant::now());
                }
                pid.store(new.pid(), Ordering::Relaxed);
                Ok::<_, String>(new)
            })
        };
        let (new, mut row) = smol::block_on(executor.run(smol::future::zip(
            restart,
            collect(&incoming, storm.clients, t0, storm.deadline, &pid),
        )));
        let new = new?;
        let up_at = started_at.lock().ok().and_then(|at| *at);
        let alive = up_at.map_or(0.0, |at| at.elapsed().as_secs_f64());
        row.relay_up = up_at.map_or(Duration::ZERO, |at| at - t0);
        row.cpu = new.cpu_secs() / alive.max(f64::EPSILON);
        row.how = how;
        row.refused = new
            .counters()
            .refused
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        restarts.push(row);
        relay = Some(new);
    }
    drop(tasks);
    drop(relay);

    // The baseline: the same-stack forwarder holding as many idle connections.
    let forwarder = Target::forwarder(storm.threads, certificate.as_ref().map(|c| &c.files))?;
    std::thread::sleep(SETTLE);
    let rss_before = forwarder.rss_kib();
    let started = Instant::now();
    let held = smol::block_on(executor.run(hold_forwarder(
        executor,
        forwarder.addr,
        certificate.as_ref(),
        storm.clients,
    )))?;
    let setup = started.elapsed();
    std::thread::sleep(SETTLE);
    memory.insert(
        0,
        Memory {
            target: "forwarder",
            connections: storm.clients,
            setup,
            rss_before_kib: rss_before,
            rss_after_kib: forwarder.rss_kib(),
        },
    );
    drop(held);
    Ok(Report {
        registration,
        memory,
        restarts,
    })
}

/// Pair `count` machines with devices through the real protocol; their keys, each with a
/// source address of its own for its logins from now on.
async fn register(
    executor: &Executor<'static>,
    addr: SocketAddr,
    count: usize,
) -> Result<Vec<Machine>, String> {
    let slots = Arc::new(Semaphore::new(REGISTER_CONCURRENCY));
    let tasks: Vec<Task<Result<Identity, String>>> = (0..count)
        .map(|number| {
            let slots = slots.clone();
            executor.spawn(async move {
                let _slot = slots.acquire_arc().await;
                let pair = load::pair(Kind::Relay, addr, number as u64).await?;
                let (mut device, mut machine) = (pair.device, pair.machine);
                let _ = device.close(None).await;
                let _ = machine.close(None).await;
                pair.machine_key.ok_or_else(|| "no machine key".to_string())
            })
        })
        .collect();
    let mut machines = Vec::with_capacity(count);
    for task in tasks {
        machines.push(Machine {
            identity: task.await?,
            from: load::source(),
        });
    }
    Ok(machines)
}

/// `ms` ±50 %, as the daemon jitters.
fn jitter(ms: u64) -> Duration {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    Duration::from_millis(ms / 2 + u64::from_le_bytes(bytes) % (ms + 1))
}

/// Uniformly between zero and `up_to`.
fn spread(up_to: Duration) -> Duration {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    let ms = u64::try_from(up_to.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(u64::from_le_bytes(bytes) % ms.saturating_add(1))
}

/// Linux's errno for a non-blocking connect under way (`io::ErrorKind::InProgress` is not
/// stable yet); the tool reads /proc, so it is Linux-only anyway.
const EINPROGRESS: i32 = 115;

/// A non-blocking TCP connect from `from` (a full listen backlog must not stall a load thread).
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<Async<TcpStream>> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddrV4::new(from, 0).into())?;
    match socket.connect(&to.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = Async::new(TcpStream::from(socket))?;
    stream.writable().await?;
    match stream.get_ref().take_error()? {
        Some(error) => Err(error),
        None => Ok(stream),
    }
}

/// A short name for why an attempt failed.
fn reason(error: &ClientError) -> String {
    match error {
        ClientError::Url(_) => "url".into(),
        ClientError::Connect(e) => format!("connect: {}", e.kind()),
        ClientError::Tls(_) => "tls".into(),
        ClientError::WebSocket(_) => "websocket (closed at accept?)".into(),
        ClientError::Timeout(what) => format!("timeout {what}"),
        ClientError::Refused { code, .. } => format!("refused {code:?}"),
        ClientError::Protocol(_) => "protocol".into(),
        ClientError::Closed => "closed".into(),
    }
}

/// Connect and log in as the daemon does, from the machine's own source address.
async fn connect(dial: &Dial, machine: &Machine) -> Result<Client, String> {
    let deadline = Instant::now() + dial.config.connect_timeout;
    let tcp = smol::future::or(
        async { Some(connect_from(machine.from, dial.addr).await) },
        async {
            Timer::at(deadline).await;
            None
        },
    )
    .await
    .ok_or("timeout connecting")?
    .map_err(|e| reason(&ClientError::Connect(e)))?;
    let hostname = "bench".try_into().ok();
    Client::connect_over(
        tcp,
        &dial.url,
        &machine.identity,
        Role::Machine,
        hostname,
        &dial.config,
        deadline,
    )
    .await
    .map_err(|e| reason(&e))
}

/// One machine, forever: log in, stay until the connection ends, wait as the daemon would,
/// log in again. Its first login waits for a set-up slot.
async fn machine_loop(
    dial: Arc<Dial>,
    machine: Machine,
    client: usize,
    events: Sender<Event>,
    first: Arc<Semaphore>,
) {
    let mut slot = Some(first.acquire_arc().await);
    let mut backoff = RECONNECT_MIN_MS;
    loop {
        let wait = match connect(&dial, &machine).await {
            Err(reason) => {
                let _ = events.send(Event::Failed { reason }).await;
                let wait = jitter(backoff);
                backoff = (backoff * 2).min(RECONNECT_MAX_MS);
                wait
            }
            Ok(mut session) => {
                drop(slot.take());
                backoff = RECONNECT_MIN_MS;
                let _ = events
                    .send(Event::Up {
                        client,
                        at: Instant::now(),
                    })
                    .await;
                let hint = loop {
                    match session.recv().await {
                        Ok(Frame::Restarting(restarting)) => {
                            break Some(restarting.reconnect_in_ms);
                        }
                        Ok(_) => continue,
                        Err(_) => break None,
                    }
                };
                drop(session);
                let wait = match hint {
                    Some(ms) => {
                        Duration::from_millis(u64::from(ms))
                            + jitter(RECONNECT_MIN_MS)
                            + spread(dial.smear)
                    }
                    None => {
                        let wait = jitter(backoff);
                        backoff = (backoff * 2).min(RECONNECT_MAX_MS);
                        wait
                    }
                };
                let _ = events
                    .send(Event::Down {
                        client,
                        at: Instant::now(),
                        wait,
                    })
                    .await;
                wait
            }
        };
        Timer::after(wait).await;
    }
}

/// Wait until `count` machines are up; how many were.
async fn all_up(incoming: &Receiver<Event>, count: usize, deadline: Duration) -> usize {
    let until = Instant::now() + deadline;
    let mut up = vec![false; count];
    let mut n = 0;
    while n < count {
        let event = smol::future::or(async { incoming.recv().await.ok() }, async {
            Timer::at(until).await;
            None
        })
        .await;
        match event {
            Some(Event::Up { client, .. }) if !up[client] => {
                up[client] = true;
                n += 1;
            }
            Some(_) => continue,
            None => break,
        }
    }
    n
}

/// Follow one restart from `t0` until every client is back (or the deadline), sampling the
/// memory of the relay whose pid lands in `pid`.
async fn collect(
    incoming: &Receiver<Event>,
    count: usize,
    t0: Instant,
    deadline: Duration,
    pid: &AtomicU32,
) -> Restart {
    let until = t0 + deadline;
    let mut down: Vec<Option<(Instant, Duration)>> = vec![None; count];
    let mut back = vec![false; count];
    let (mut n, mut last) = (0, t0);
    let mut reconnect = Latencies::default();
    let mut waited = Latencies::default();
    let mut failures = BTreeMap::new();
    let mut peak_rss_kib = 0;
    let mut next_sample = Instant::now();
    while n < count && Instant::now() < until {
        if Instant::now() >= next_sample {
            let pid = pid.load(Ordering::Relaxed);
            if pid != 0 {
                peak_rss_kib = peak_rss_kib.max(target::rss_kib(pid));
            }
            next_sample += SAMPLE_EVERY;
        }
        let event = smol::future::or(async { incoming.recv().await.ok() }, async {
            Timer::at(next_sample.min(until)).await;
            None
        })
        .await;
        match event {
            Some(Event::Down { client, at, wait }) if down[client].is_none() => {
                down[client] = Some((at, wait));
                waited.push(wait);
            }
            Some(Event::Up { client, at }) if !back[client] => {
                if let Some((lost, _)) = down[client] {
                    back[client] = true;
                    n += 1;
                    last = at;
                    reconnect.push(at - lost);
                }
            }
            Some(Event::Failed { reason }) => *failures.entry(reason).or_insert(0) += 1,
            _ => {}
        }
    }
    let pid = pid.load(Ordering::Relaxed);
    if pid != 0 {
        peak_rss_kib = peak_rss_kib.max(target::rss_kib(pid));
    }
    Restart {
        how: "",
        clients: count,
        back: n,
        relay_up: Duration::ZERO,
        total: last - t0,
        reconnect: reconnect.summary(),
        waited: waited.summary(),
        failures,
        refused: Vec::new(),
        cpu: 0.0,
        peak_rss_kib,
    }
}

/// Open `count` idle connections to the forwarder (over wss with `certificate`); the tasks
/// that hold them.
async fn hold_forwarder(
    executor: &Executor<'static>,
    addr: SocketAddr,
    certificate: Option<&SelfSigned>,
    count: usize,
) -> Result<Vec<Task<()>>, String> {
    let connector = match certificate {
        Some(c) => Some(tls::connector(&c.cert)?),
        None => None,
    };
    let slots = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let (done, opened) = smol::channel::unbounded::<Result<(), String>>();
    let mut tasks = Vec::with_capacity(count);
    for number in 0..count {
        let (slots, done, connector) = (slots.clone(), done.clone(), connector.clone());
        tasks.push(executor.spawn(async move {
            let slot = slots.acquire_arc().await;
            // Spread over loopback sources as for the relay: one source's ephemeral ports
            // (and the TIME_WAITs of earlier runs) would not last for tens of thousands.
            let tcp = match connect_from(load::source(), addr).await {
                Ok(tcp) => tcp,
                Err(e) => {
                    let _ = done
                        .send(Err(format!("connecting to the forwarder: {e}")))
                        .await;
                    return;
                }
            };
            let id = (u64::MAX - number as u64).to_le_bytes().to_vec();
            match connector {
                Some(connector) => {
                    let name = ServerName::try_from("localhost").map(|n| n.to_owned());
                    let Ok(name) = name else { return };
                    match connector.connect(name, tcp).await {
                        Ok(stream) => idle(stream, id, "wss://localhost/", slot, done).await,
                        Err(e) => {
                            let _ = done.send(Err(e.to_string())).await;
                        }
                    }
                }
                None => idle(tcp, id, "ws://localhost/", slot, done).await,
            }
        }));
    }
    for _ in 0..count {
        opened.recv().await.map_err(|e| e.to_string())??;
    }
    Ok(tasks)
}

/// Upgrade, name the connection, say so, then read until it closes.
async fn idle<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    id: Vec<u8>,
    url: &str,
    slot: smol::lock::SemaphoreGuardArc,
    done: Sender<Result<(), String>>,
) {
    let mut ws = match async_tungstenite::client_async(url, stream).await {
        Ok((ws, _)) => ws,
        Err(e) => {
            let _ = done.send(Err(e.to_string())).await;
            return;
        }
    };
    if let Err(e) = ws.send(Message::binary(id)).await {
        let _ = done.send(Err(e.to_string())).await;
        return;
    }
    drop(slot);
    let _ = done.send(Ok(())).await;
    while let Some(Ok(_)) = ws.next().await {}
}
