//! Load client for the relay: opens N logged-in, idle connections and holds them, answering
//! the relay's pings, until it is interrupted (or `--hold-secs` pass). Prints `holding N` once
//! every connection is logged in. Used by `bench/idle-rss.sh`.
//!
//! ```sh
//! cargo run --release -p muxagent-relay --example load -- --url ws://127.0.0.1:8080 --count 10000
//! cargo run --release -p muxagent-relay --example load -- gen-cert /tmp/certs   # for wss runs
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use muxagent_proto::frame::Role;
use muxagent_proto::identity::Identity;
use muxagent_relay_client::{Client, ClientConfig, Roots};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

fn usage() -> ! {
    eprintln!(
        "usage: load --url URL [--count N] [--parallel P] [--hold-secs S] [--root CERT.pem]\n       \
         load gen-cert DIR"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("gen-cert") {
        let dir = PathBuf::from(args.get(1).unwrap_or_else(|| usage()));
        let certified = match rcgen::generate_simple_self_signed(vec!["localhost".to_string()]) {
            Ok(certified) => certified,
            Err(e) => fail(&format!("cannot make a certificate: {e}")),
        };
        let written = std::fs::write(dir.join("cert.pem"), certified.cert.pem()).and_then(|()| {
            std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem())
        });
        if let Err(e) = written {
            fail(&format!("cannot write the certificate: {e}"));
        }
        return;
    }
    let mut url = None;
    let mut count = 10_000usize;
    let mut parallel = 64usize;
    let mut hold = None;
    let mut root = None;
    let mut iter = args.into_iter();
    while let Some(flag) = iter.next() {
        let value = iter.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--url" => url = Some(value),
            "--count" => count = value.parse().unwrap_or_else(|_| usage()),
            "--parallel" => parallel = value.parse().unwrap_or_else(|_| usage()),
            "--hold-secs" => {
                hold = Some(Duration::from_secs(
                    value.parse().unwrap_or_else(|_| usage()),
                ))
            }
            "--root" => root = Some(PathBuf::from(value)),
            _ => usage(),
        }
    }
    let url = url.unwrap_or_else(|| usage());
    let wanted = (count as u64) + 256;
    match rlimit::increase_nofile_limit(wanted) {
        Ok(got) if got < wanted => eprintln!("load: warning: only {got} file descriptors allowed"),
        Ok(_) => {}
        Err(e) => eprintln!("load: warning: cannot raise the descriptor limit: {e}"),
    }
    let mut config = ClientConfig {
        connect_timeout: Duration::from_secs(60),
        ..ClientConfig::default()
    };
    if let Some(path) = root {
        match CertificateDer::from_pem_file(&path) {
            Ok(cert) => config.roots = Roots::Custom(vec![cert]),
            Err(e) => fail(&format!("cannot read {}: {e}", path.display())),
        }
    }
    smol::block_on(run(url, count, parallel.max(1), hold, config));
}

fn fail(message: &str) -> ! {
    eprintln!("load: {message}");
    std::process::exit(1)
}

async fn run(
    url: String,
    count: usize,
    parallel: usize,
    hold: Option<Duration>,
    config: ClientConfig,
) {
    let started = Instant::now();
    let connected = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let url = Arc::new(url);
    let config = Arc::new(config);
    // Log in `parallel` at a time so the relay's accept backlog never overflows.
    let (permits, permit) = smol::channel::bounded::<()>(parallel);
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        if permits.send(()).await.is_err() {
            break;
        }
        let (url, config, permit) = (url.clone(), config.clone(), permit.clone());
        let (connected, closed) = (connected.clone(), closed.clone());
        tasks.push(smol::spawn(async move {
            let mut secret = [0u8; 64];
            if getrandom::fill(&mut secret).is_err() {
                fail("no randomness");
            }
            let identity = Identity::from_secret_bytes(&secret);
            let client = Client::connect(&url, &identity, Role::Device, None, &config).await;
            let _ = permit.recv().await;
            let mut client = match client {
                Ok(client) => client,
                Err(e) => fail(&format!("a connection failed: {e}")),
            };
            connected.fetch_add(1, Ordering::Relaxed);
            // Stay idle; keep a recv pending so pings are answered.
            while client.recv().await.is_ok() {}
            closed.fetch_add(1, Ordering::Relaxed);
        }));
    }
    while connected.load(Ordering::Relaxed) < count {
        smol::Timer::after(Duration::from_millis(50)).await;
    }
    println!(
        "holding {count} connections (logged in after {:.1?})",
        started.elapsed()
    );
    let until = hold.map(|hold| Instant::now() + hold);
    loop {
        smol::Timer::after(Duration::from_millis(200)).await;
        let gone = closed.load(Ordering::Relaxed);
        if gone > 0 {
            println!("{gone} connections were closed by the relay");
            if gone == count {
                break;
            }
        }
        if until.is_some_and(|until| Instant::now() >= until) {
            break;
        }
    }
    drop(tasks);
}
