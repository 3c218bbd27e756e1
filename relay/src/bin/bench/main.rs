//! `muxagent-relay-bench`: load the relay with the real protocol and print what it carries,
//! beside the same load on a minimal forwarder built on the same stack (the ceiling), in one
//! run. Every scenario is bounded in count and time and stops by itself.
//!
//! ```text
//! cargo build --release -p muxagent-relay
//! target/release/muxagent-relay-bench                 # the standard suite (~3 minutes)
//! target/release/muxagent-relay-bench closed --pairs 4 --window 16
//! target/release/muxagent-relay-bench open --pairs 4 --rate 5000 --idle 3000
//! target/release/muxagent-relay-bench storm --clients 10000          # restarts, idle memory
//! target/release/muxagent-relay-bench storm --clients 10000 --wss
//! ```
//!
//! Besides throughput and latency each row shows what the relay counted: frames it dropped
//! (`drops`), frames a sender's connection held for a full queue (`held`, push-back), and
//! times a connection's inbound byte budget paused its reading (`throttled`). A row with
//! throttling is bounded by the per-key budget (`RELAY_INBOUND_BYTES_PER_SEC` after an
//! `RELAY_INBOUND_BURST_BYTES` burst: one pair of 256-byte echoes tops out near 7 000 round
//! trips a second sustained), not by routing.
#![forbid(unsafe_code)]

mod forwarder;
mod load;
mod stats;
mod storm;
mod target;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use smol::Executor;

use crate::load::{Address, Outcome};
use crate::stats::{Latencies, Ms};
use crate::target::{Kind, Target};

/// Load the relay with real logins, pairings and routed frames, beside a same-stack forwarder.
#[derive(FromArgs)]
struct Args {
    /// the relay binary (default: muxagent-relay next to this program)
    #[argh(option)]
    relay_bin: Option<PathBuf>,
    /// threads of the target under load (default 2)
    #[argh(option, default = "2")]
    threads: usize,
    /// threads of the load generator (default 2)
    #[argh(option, default = "2")]
    load_threads: usize,
    /// seconds each scenario sends for (default 5)
    #[argh(option, default = "5")]
    seconds: u64,
    /// the relay's inbound byte budget per key and second (default: the relay's own, which
    /// bounds what a few pairs can send: raise it to measure routing alone)
    #[argh(option)]
    inbound_bytes_per_sec: Option<u32>,
    /// only the relay, no forwarder ceiling
    #[argh(switch)]
    no_ceiling: bool,
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Closed(Closed),
    Open(Open),
    Storm(StormArgs),
    Forward(Forward),
}

/// reconnect storm: N machines logged in, the relay restarted gracefully and then killed;
/// also the relay's memory per idle connection, beside the forwarder's
#[derive(FromArgs)]
#[argh(subcommand, name = "storm")]
struct StormArgs {
    /// machines (default 10000; each needs a descriptor in the tool and one in the relay)
    #[argh(option, default = "10_000")]
    clients: usize,
    /// connect over wss (a self-signed certificate) instead of ws
    #[argh(switch)]
    wss: bool,
    /// seconds one phase (set-up, a restart) may take before stragglers count as failed
    /// (default 120)
    #[argh(option, default = "120")]
    deadline: u64,
    /// spread each client's wait after the relay's `Restarting` over this many more
    /// milliseconds, uniformly (default 0: the daemon's own jitter only), to try wider smears
    #[argh(option, default = "0")]
    smear_ms: u64,
}

/// closed loop: each pair keeps a window of echoes in flight
#[derive(FromArgs)]
#[argh(subcommand, name = "closed")]
struct Closed {
    /// device-machine pairs (default 4)
    #[argh(option, default = "4")]
    pairs: usize,
    /// messages in flight per pair (default 16)
    #[argh(option, default = "16")]
    window: usize,
    /// idle registered machines attached meanwhile (default 0)
    #[argh(option, default = "0")]
    idle: usize,
}

/// open loop: round trips at a fixed total rate, timed from their scheduled send
#[derive(FromArgs)]
#[argh(subcommand, name = "open")]
struct Open {
    /// device-machine pairs (default 4)
    #[argh(option, default = "4")]
    pairs: usize,
    /// round trips a second over all pairs (default 5000)
    #[argh(option, default = "5000.0")]
    rate: f64,
    /// idle registered machines attached meanwhile (default 0)
    #[argh(option, default = "0")]
    idle: usize,
}

/// serve as the same-stack forwarder (used by the bench itself)
#[derive(FromArgs)]
#[argh(subcommand, name = "forward")]
struct Forward {
    /// address to listen on
    #[argh(option)]
    listen: SocketAddr,
    /// threads
    #[argh(option, default = "2")]
    threads: usize,
    /// PEM certificate: serve wss (needs --tls-key)
    #[argh(option)]
    tls_cert: Option<PathBuf>,
    /// PEM key for --tls-cert
    #[argh(option)]
    tls_key: Option<PathBuf>,
}

#[derive(Clone, Copy)]
enum Drive {
    Closed { window: usize },
    Open { rate: f64 },
}

#[derive(Clone, Copy)]
struct Scenario {
    pairs: usize,
    drive: Drive,
    idle: usize,
}

impl Scenario {
    fn name(&self) -> String {
        let drive = match self.drive {
            Drive::Closed { window } => format!("closed, {window} in flight"),
            Drive::Open { rate } => format!("open {rate:.0} rt/s"),
        };
        let idle = match self.idle {
            0 => String::new(),
            n => format!(" + {n} idle"),
        };
        format!(
            "{} pair{}, {drive}{idle}",
            self.pairs,
            if self.pairs == 1 { "" } else { "s" }
        )
    }
}

/// The standard suite: the issue's routing table, row for row.
fn suite() -> Vec<Scenario> {
    let closed = |pairs, window| Scenario {
        pairs,
        drive: Drive::Closed { window },
        idle: 0,
    };
    let open = |pairs, rate, idle| Scenario {
        pairs,
        drive: Drive::Open { rate },
        idle,
    };
    vec![
        closed(1, 64),
        closed(4, 16),
        closed(4, 32),
        closed(4, 64),
        // Four times the relay's queue depth in flight: past the queue, senders are pushed back.
        closed(4, 128),
        closed(64, 4),
        open(4, 5_000.0, 0),
        open(4, 10_000.0, 0),
        open(4, 20_000.0, 0),
        open(4, 5_000.0, 3_000),
    ]
}

struct Row {
    round_trips_per_sec: f64,
    outcome_lost: u64,
    summary: stats::Summary,
    cpu: f64,
    drops: Vec<(String, u64)>,
    held: u64,
    throttled: u64,
    setup: Duration,
    rss_kib: u64,
}

fn run_scenario(
    executor: &Arc<Executor<'static>>,
    kind: Kind,
    target: &Target,
    scenario: Scenario,
    seconds: u64,
) -> Result<Row, String> {
    let addr = target.addr;
    let setup_start = Instant::now();
    // Idle machines first, each kept alive (answering pings) as soon as it is up, then the
    // pairs: a connection left unread through a long set-up would miss the relay's pings and
    // be closed before the scenario starts.
    let (pairs, idle_tasks) = smol::block_on(executor.run(async {
        let mut idle_tasks = Vec::new();
        for number in 0..scenario.idle {
            let ws = load::idle(kind, addr, 1_000_000 + number as u64).await?;
            idle_tasks.push(executor.spawn(load::keep_alive(ws)));
        }
        let mut pairs = Vec::new();
        for number in 0..scenario.pairs {
            pairs.push(load::pair(kind, addr, number as u64).await?);
        }
        Ok::<_, String>((pairs, idle_tasks))
    }))?;
    let setup = setup_start.elapsed();
    let rss_kib = target.rss_kib();
    let before = target.counters();
    let cpu_before = target.cpu_secs();
    let epoch = Instant::now();
    let until = epoch + Duration::from_secs(seconds);
    let mut machines = Vec::new();
    let mut drivers = Vec::new();
    for pair in pairs {
        machines.push(executor.spawn(load::echo(kind, pair.machine)));
        let to: Address = pair.machine_address;
        drivers.push(match scenario.drive {
            Drive::Closed { window } => executor.spawn(load::closed_loop(
                kind,
                pair.device,
                to,
                window,
                epoch,
                until,
            )),
            Drive::Open { rate } => executor.spawn(load::open_loop(
                kind,
                pair.device,
                to,
                rate / scenario.pairs as f64,
                epoch,
                until,
            )),
        });
    }
    let outcomes: Vec<Outcome> = smol::block_on(executor.run(async {
        let mut outcomes = Vec::new();
        for driver in drivers {
            outcomes.push(driver.await);
        }
        outcomes
    }));
    let elapsed = epoch
        .elapsed()
        .min(Duration::from_secs(seconds))
        .as_secs_f64();
    let cpu = (target.cpu_secs() - cpu_before) / epoch.elapsed().as_secs_f64();
    drop(machines);
    drop(idle_tasks);
    let mut latencies = Latencies::default();
    let (mut sent, mut received) = (0, 0);
    for outcome in outcomes {
        sent += outcome.sent;
        received += outcome.received;
        latencies.extend(outcome.latencies);
    }
    let after = target.counters();
    let drops = after
        .drops
        .into_iter()
        .filter_map(|(reason, after)| {
            let before = before
                .drops
                .iter()
                .find(|(r, _)| *r == reason)
                .map_or(0, |(_, v)| *v);
            (after > before).then(|| (reason, after - before))
        })
        .collect();
    Ok(Row {
        round_trips_per_sec: received as f64 / elapsed,
        outcome_lost: sent.saturating_sub(received),
        summary: latencies.summary(),
        cpu,
        drops,
        held: after.held.saturating_sub(before.held),
        throttled: after.throttled.saturating_sub(before.throttled),
        setup,
        rss_kib,
    })
}

fn run(args: Args) -> Result<(), String> {
    let scenarios = match &args.command {
        Some(Command::Forward(forward)) => {
            let tls = forward.tls_cert.clone().zip(forward.tls_key.clone());
            return forwarder::serve(forward.listen, forward.threads, tls);
        }
        Some(Command::Storm(_)) => Vec::new(),
        Some(Command::Closed(c)) => vec![Scenario {
            pairs: c.pairs,
            drive: Drive::Closed { window: c.window },
            idle: c.idle,
        }],
        Some(Command::Open(o)) => vec![Scenario {
            pairs: o.pairs,
            drive: Drive::Open { rate: o.rate },
            idle: o.idle,
        }],
        None => suite(),
    };
    let relay_bin = match args.relay_bin {
        Some(path) => path,
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("muxagent-relay"),
    };
    let executor = Arc::new(Executor::new());
    for _ in 1..args.load_threads.max(1) {
        let executor = executor.clone();
        std::thread::spawn(move || smol::block_on(executor.run(smol::future::pending::<()>())));
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    if let Some(Command::Storm(storm)) = &args.command {
        return run_storm(
            &executor,
            &relay_bin,
            args.threads,
            args.load_threads,
            storm,
        );
    }
    let budget = match args.inbound_bytes_per_sec {
        Some(rate) => format!("relay inbound budget {rate} B/s per key"),
        None => "relay inbound budget as shipped".to_string(),
    };
    println!(
        "# muxagent-relay-bench: {} s per scenario, {PAYLOAD} B payloads, target {} threads, load {} threads, {cpus} CPUs, {budget}\n",
        args.seconds,
        args.threads,
        args.load_threads,
        PAYLOAD = load::PAYLOAD_LEN,
    );
    println!(
        "| scenario | target | round trips/s | relayed msgs/s | vs ceiling | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | lost | target CPU | drops | set-up | RSS MiB | held | throttled |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let kinds: &[Kind] = if args.no_ceiling {
        &[Kind::Relay]
    } else {
        &[Kind::Forwarder, Kind::Relay]
    };
    for scenario in scenarios {
        let mut ceiling = None;
        for &kind in kinds {
            // A fresh target per scenario: nothing left over from the last one.
            let target = match kind {
                Kind::Relay => Target::relay(&relay_bin, args.threads, args.inbound_bytes_per_sec)?,
                Kind::Forwarder => Target::forwarder(args.threads, None)?,
            };
            let row = run_scenario(&executor, kind, &target, scenario, args.seconds)?;
            let ratio = match (kind, ceiling) {
                (Kind::Forwarder, _) => {
                    ceiling = Some(row.round_trips_per_sec);
                    "1".to_string()
                }
                (Kind::Relay, Some(ceiling)) if ceiling > 0.0 => {
                    format!("{:.2}", row.round_trips_per_sec / ceiling)
                }
                (Kind::Relay, _) => "–".to_string(),
            };
            let drops = if row.drops.is_empty() {
                "0".to_string()
            } else {
                row.drops
                    .iter()
                    .map(|(reason, n)| format!("{reason} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let s = row.summary;
            println!(
                "| {} | {} | {:.0} | {:.0} | {ratio} | {} | {} | {} | {} | {} | {} | {:.0} % | {drops} | {:.1} s | {:.1} | {} | {} |",
                scenario.name(),
                kind.name(),
                row.round_trips_per_sec,
                2.0 * row.round_trips_per_sec,
                Ms(s.p50),
                Ms(s.p90),
                Ms(s.p99),
                Ms(s.p999),
                Ms(s.max),
                row.outcome_lost,
                row.cpu * 100.0,
                row.setup.as_secs_f64(),
                row.rss_kib as f64 / 1024.0,
                row.held,
                row.throttled,
            );
        }
    }
    Ok(())
}

/// Raise this process's descriptor limit to its hard limit (the relay it starts inherits it);
/// an error if that is below what `connections` need.
fn raise_nofile(connections: usize) -> Result<u64, String> {
    let (_, hard) = rlimit::Resource::NOFILE
        .get()
        .map_err(|e| format!("reading RLIMIT_NOFILE: {e}"))?;
    rlimit::Resource::NOFILE
        .set(hard, hard)
        .map_err(|e| format!("raising RLIMIT_NOFILE to {hard}: {e}"))?;
    // Listeners, the registry, /proc reads and connections mid-close on top.
    let needed = connections as u64 + 512;
    if hard < needed {
        return Err(format!(
            "RLIMIT_NOFILE's hard limit is {hard}, below the {needed} descriptors {connections} \
             connections need (in this tool and in the relay): raise it (ulimit -Hn, as root) \
             or use fewer clients"
        ));
    }
    Ok(hard)
}

fn run_storm(
    executor: &Arc<Executor<'static>>,
    relay_bin: &std::path::Path,
    threads: usize,
    load_threads: usize,
    args: &StormArgs,
) -> Result<(), String> {
    let nofile = raise_nofile(args.clients)?;
    let transport = if args.wss { "wss" } else { "ws" };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "# muxagent-relay-bench storm: {} machines over {transport}, target {threads} threads, load {load_threads} threads, {cpus} CPUs, RLIMIT_NOFILE {nofile}, extra smear {} ms\n",
        args.clients, args.smear_ms
    );
    let report = storm::run(
        executor,
        &storm::Storm {
            relay_bin: relay_bin.to_path_buf(),
            threads,
            clients: args.clients,
            wss: args.wss,
            deadline: Duration::from_secs(args.deadline),
            smear: Duration::from_millis(args.smear_ms),
        },
    )?;
    println!(
        "registration (pairing, plain ws, {} at a time): {:.1} s, {:.0} machines/s\n",
        32,
        report.registration.as_secs_f64(),
        args.clients as f64 / report.registration.as_secs_f64().max(f64::EPSILON)
    );
    println!(
        "| idle {transport} | target | connections | set-up s | connections/s | RSS before MiB | RSS after MiB | KiB per connection | vs baseline |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let baseline = report
        .memory
        .iter()
        .find(|m| m.target == "forwarder")
        .map(storm::Memory::kib_per_connection);
    for memory in &report.memory {
        let ratio = match (memory.target, baseline) {
            ("forwarder", _) => "1".to_string(),
            (_, Some(base)) if base > 0.0 => format!("{:.2}", memory.kib_per_connection() / base),
            _ => "–".to_string(),
        };
        println!(
            "| idle {transport} | {} | {} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} | {ratio} |",
            memory.target,
            memory.connections,
            memory.setup.as_secs_f64(),
            memory.connections as f64 / memory.setup.as_secs_f64().max(f64::EPSILON),
            memory.rss_before_kib as f64 / 1024.0,
            memory.rss_after_kib as f64 / 1024.0,
            memory.kib_per_connection(),
        );
    }
    println!();
    println!(
        "| restart over {transport} | clients | back | not back | relay up after s | all back after s | reconnect p50 s | p99 s | max s | waited p50 s | waited max s | failed attempts | closed at accept | relay CPU | relay peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for restart in &report.restarts {
        let failures = if restart.failures.is_empty() {
            "0".to_string()
        } else {
            restart
                .failures
                .iter()
                .map(|(reason, n)| format!("{reason} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let refused = if restart.refused.is_empty() {
            "0".to_string()
        } else {
            restart
                .refused
                .iter()
                .map(|(reason, n)| format!("{reason} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let s = |d: Duration| format!("{:.2}", d.as_secs_f64());
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {failures} | {refused} | {:.0} % | {:.1} |",
            restart.how,
            restart.clients,
            restart.back,
            restart.clients - restart.back,
            s(restart.relay_up),
            s(restart.total),
            s(restart.reconnect.p50),
            s(restart.reconnect.p99),
            s(restart.reconnect.max),
            s(restart.waited.p50),
            s(restart.waited.max),
            restart.cpu * 100.0,
            restart.peak_rss_kib as f64 / 1024.0,
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(argh::from_env()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("muxagent-relay-bench: {message}");
            ExitCode::FAILURE
        }
    }
}
