//! Growth an attacker controls and budgets that cover every byte and every CPU cycle (issue 10,
//! items 5–10). Every flood comes from real sockets on 127.0.0.1, is bounded in count and time
//! and stops by itself. The tests that measure run the relay as its own process (one thread) and
//! print its CPU and resident memory over the flood as `figure:` lines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod common;

use std::cell::Cell;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::process::RelayProcess;
use common::raw::{self, OP_BINARY, OP_CONTINUE, OP_PING, OP_PONG, Raw};
use common::*;
use muxagent_proto::frame::{
    ErrorCode, Frame, OpenPairing, Registry, RegistryEntry, Role, SignedEntry,
};
use muxagent_proto::identity::Identity;
use muxagent_relay::limits::{
    MAX_FRAME_LEN, RELAY_MAX_CONTROL_FRAMES_PER_SEC, RELAY_MAX_FRAGMENTS_PER_MESSAGE,
    RELAY_PAIRINGS_PER_PREFIX, RELAY_QUEUE_RESERVE_BYTES, RELAY_REGISTRY_REQUESTS_PER_MIN,
    RELAY_REGISTRY_REQUESTS_PER_PREFIX_PER_MIN, RELAY_SLOW_READER_CUT_MS, relay_memory_bound,
};
use muxagent_relay_client::{Client, ClientConfig, RelayUrl};
use smol::future::FutureExt as _;
use smol::io::AsyncReadExt as _;

/// Open one pairing id on `client`: `Ok` or the relay's refusal.
async fn open_pairing(client: &mut Client) -> Result<(), ErrorCode> {
    let pairing_id = new_pairing_id();
    client
        .send(&Frame::OpenPairing(OpenPairing {
            pairing_id,
            expires_at: unix_now() + 60,
        }))
        .await
        .expect("send");
    recv_until(client, "the pairing answer", |frame| match frame {
        Frame::PairingOpened(opened) if opened.pairing_id == pairing_id => Some(Ok(())),
        Frame::Error(error) => Some(Err(error.code)),
        _ => None,
    })
    .await
}

/// Whether the peer closed `tcp` within `limit` (EOF or an error on read).
async fn closed_within(tcp: &smol::Async<std::net::TcpStream>, limit: Duration) -> bool {
    let mut tcp = tcp;
    quiet_for(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_some()
}

/// Whether the relay closes the WebSocket (a Close frame, or the end of the stream) within
/// `limit`.
async fn closing_within(raw: &mut Raw, limit: Duration) -> bool {
    quiet_for(limit, async {
        loop {
            match raw.read_frame().await {
                Ok(Some((raw::OP_CLOSE, _))) | Ok(None) | Err(_) => return,
                Ok(Some(_)) => {}
            }
        }
    })
    .await
    .is_some()
}

#[test]
fn pairing_ids_are_capped_per_source_prefix() {
    smol::block_on(async {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut config = common::config(temp.path());
        config.limits.max_pairings = 256;
        let relay = TestRelay::start_with(config).await;
        let url = RelayUrl::parse(&relay.url).expect("url");
        // 40 addresses of one /24, two pending machines each, four ids per connection: 320
        // asked of a table of 256.
        let started = Instant::now();
        let (mut opened, mut refused, mut held) = (0usize, 0usize, Vec::new());
        for host in 1..=40u8 {
            for _ in 0..2 {
                let tcp = raw::tcp(relay.addr, Some(IpAddr::from([127, 1, 1, host])), None)
                    .expect("connect");
                let mut client = within(
                    "attacker login",
                    Client::connect_over(
                        tcp,
                        &url,
                        &identity(),
                        Role::PendingMachine,
                        Some(hostname("x")),
                        &ClientConfig::default(),
                        Instant::now() + STEP,
                    ),
                )
                .await
                .expect("attacker logs in");
                for _ in 0..4 {
                    match open_pairing(&mut client).await {
                        Ok(()) => opened += 1,
                        Err(_) => refused += 1,
                    }
                }
                held.push(client);
            }
        }
        let elapsed = started.elapsed();
        // A daemon on another network still gets its pairing id.
        let mut daemon = relay
            .connect(&identity(), Role::PendingMachine, Some("home"))
            .await;
        let result = open_pairing(&mut daemon).await;
        eprintln!(
            "figure: item 5: 40 addresses of one /24 opened {opened} pairing ids ({refused} \
             refused) in {elapsed:.2?}; a daemon elsewhere then got {result:?}"
        );
        assert_eq!(result, Ok(()), "the daemon was refused");
        assert!(
            opened <= RELAY_PAIRINGS_PER_PREFIX,
            "{opened} ids from one /24"
        );
        drop(held);
        relay.stop().await;
    });
}

#[test]
fn connection_caps_count_source_prefixes() {
    smol::block_on(async {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut config = common::config(temp.path());
        config.limits.max_connections_per_prefix = 4;
        let relay = TestRelay::start_with(config).await;
        let from = |ip: [u8; 4]| raw::tcp(relay.addr, Some(IpAddr::from(ip)), None).expect("tcp");
        // Four addresses of one /24 fill its share; a fifth address of it is closed at accept.
        let _held: Vec<_> = (1..=4).map(|host| from([127, 2, 2, host])).collect();
        let fifth = from([127, 2, 2, 5]);
        let capped = closed_within(&fifth, Duration::from_millis(500)).await;
        // The next /24 is not affected.
        let next = Raw::new(from([127, 2, 3, 1]));
        let mut next_raw = next;
        let upgraded = within("upgrade from the next /24", next_raw.upgrade()).await;
        eprintln!(
            "figure: item 6: a fifth address of a /24 holding 4 connections (cap 4) was {}",
            if capped {
                "closed at accept"
            } else {
                "admitted"
            }
        );
        assert!(capped, "127.2.2.5 was admitted past the /24's cap");
        assert!(upgraded.is_ok(), "{upgraded:?}");
        assert_eq!(
            relay
                .metric("relay_connections_refused_total{reason=\"per_prefix_cap\"}")
                .await,
            1
        );
        relay.stop().await;
    });
}

#[test]
fn frame_headers_are_charged_against_the_inbound_budget() {
    smol::block_on(async {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut config = common::config(temp.path());
        config.limits.inbound_bytes_per_sec = 128 * 1024;
        config.limits.inbound_burst_bytes = MAX_FRAME_LEN as u32;
        let relay = TestRelay::start_with(config).await;
        let (d, m) = (identity(), identity());
        let mut device = relay.device(&d).await;
        pair(&relay, &d, &mut device, &m).await;
        let mut machine = relay.machine(&m, "box").await;
        // A second connection of the device: 384 KiB on the wire of 1-byte messages of an
        // unknown kind (7 bytes each with the header), then a real frame.
        let attacker = within("raw login", Raw::login(relay.addr, &d, Role::Device))
            .await
            .expect("raw login");
        let tiny = raw::frame(OP_BINARY, true, &[200]);
        let flood = tiny.repeat(384 * 1024 / tiny.len());
        let after = raw::message(&send(&m, b"after"));
        let started = Instant::now();
        let writing = async {
            attacker.write(&flood).await.expect("flood");
            attacker.write(&after).await.expect("after");
        };
        let ((), (_, payload)) = smol::future::zip(
            writing,
            expect_recv(&mut machine, "the frame after the flood"),
        )
        .await;
        let elapsed = started.elapsed();
        assert_eq!(payload, b"after");
        eprintln!(
            "figure: item 7: 384 KiB of 7-byte frames at a 128 KiB/s budget (65 KiB burst) \
             took {elapsed:.2?} to get through"
        );
        // (384 − 65) KiB at 128 KiB/s: 2.5 s when every byte counts, at once when only payloads
        // do (55 KiB).
        assert!(
            elapsed >= Duration::from_millis(1500),
            "the flood went through in {elapsed:?}"
        );
        relay.stop().await;
    });
}

#[test]
fn fragmented_messages_within_the_cap_are_accepted() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (d, m) = (identity(), identity());
        let mut device = relay.device(&d).await;
        pair(&relay, &d, &mut device, &m).await;
        let mut machine = relay.machine(&m, "box").await;
        let attacker = within("raw login", Raw::login(relay.addr, &d, Role::Device))
            .await
            .expect("raw login");
        let bytes = send(&m, b"in pieces").encode();
        let pieces = RELAY_MAX_FRAGMENTS_PER_MESSAGE.min(bytes.len());
        let size = bytes.len().div_ceil(pieces);
        let mut wire = Vec::new();
        for (i, chunk) in bytes.chunks(size).enumerate() {
            let opcode = if i == 0 { OP_BINARY } else { OP_CONTINUE };
            wire.extend(raw::frame(opcode, (i + 1) * size >= bytes.len(), chunk));
        }
        attacker.write(&wire).await.expect("write");
        let (_, payload) = expect_recv(&mut machine, "a fragmented send").await;
        assert_eq!(payload, b"in pieces");
        relay.stop().await;
    });
}

/// How one flood went.
struct Flood {
    sent: usize,
    cut_after: Option<Duration>,
    cores: f64,
    replies: usize,
    worst_rtt: Option<Duration>,
}

/// A paired device and machine, both logged in, that keep a round trip going.
struct Calm {
    d: Identity,
    device: Client,
    m: Identity,
    machine: Client,
}

/// Flood the relay from a fresh logged-in device with `first` then `repeated` for at most
/// `limit`, reading whatever comes back, while `calm` keeps a round trip going.
async fn flood(
    relay: &RelayProcess,
    first: &[u8],
    repeated: &[u8],
    limit: Duration,
    calm: &mut Calm,
) -> Flood {
    let Calm {
        d,
        device,
        m,
        machine,
    } = calm;
    let attacker = within(
        "attacker login",
        Raw::login(relay.addr, &identity(), Role::Device),
    )
    .await
    .expect("attacker logs in");
    let chunk = repeated.repeat((64 * 1024 / repeated.len()).max(1));
    let before = relay.usage();
    let started = Instant::now();
    let done = Cell::new(false);
    let sent = Cell::new(0usize);
    let tcp = attacker.tcp.clone();
    let writing = async {
        if attacker.write(first).await.is_err() {
            return Some(started.elapsed());
        }
        while started.elapsed() < limit {
            if attacker.write(&chunk).await.is_err() {
                return Some(started.elapsed());
            }
            sent.set(sent.get() + chunk.len());
        }
        // Not cut: give the reader a moment to see a close that is on its way.
        smol::Timer::after(Duration::from_millis(200)).await;
        None
    };
    let replies = Cell::new(0usize);
    let reading = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match (&*tcp).read(&mut buf).await {
                Ok(0) | Err(_) => return Some(started.elapsed()),
                Ok(n) => replies.set(replies.get() + n),
            }
        }
    };
    let outcome = reading.or(writing);
    let probe = async {
        let mut worst = Some(Duration::ZERO);
        let mut round = 0u32;
        // At least one round trip, however soon the flood is cut.
        while round == 0 || !done.get() {
            round += 1;
            let t = Instant::now();
            let trip = async {
                device.send(&send(&*m, &round.to_be_bytes())).await.ok()?;
                expect_recv(machine, "probe at the machine").await;
                machine.send(&send(&*d, &round.to_be_bytes())).await.ok()?;
                expect_recv(device, "probe at the device").await;
                Some(())
            };
            if quiet_for(Duration::from_secs(5), trip).await.is_none() {
                worst = None;
                break;
            }
            worst = worst.map(|w| w.max(t.elapsed()));
            smol::Timer::after(Duration::from_millis(50)).await;
        }
        worst
    };
    let (cut_after, worst_rtt) = smol::future::zip(
        async {
            let result = outcome.await;
            done.set(true);
            result
        },
        probe,
    )
    .await;
    let after = relay.usage();
    Flood {
        sent: sent.get(),
        cut_after,
        cores: before.cores_until(&after),
        replies: replies.get(),
        worst_rtt,
    }
}

#[test]
fn control_frames_and_empty_continuations_cannot_flood() {
    smol::block_on(async {
        let relay = RelayProcess::start(&[]);
        let handle = relay.handle();
        let (d, m) = (identity(), identity());
        let mut device = handle.device(&d).await;
        pair(&handle, &d, &mut device, &m).await;
        let machine = handle.machine(&m, "calm").await;
        let mut calm = Calm {
            d,
            device,
            m,
            machine,
        };
        let limit = Duration::from_secs(2);
        let floods: [(&str, Vec<u8>, Vec<u8>); 3] = [
            ("pings", Vec::new(), raw::frame(OP_PING, true, &[0x55; 125])),
            (
                "unsolicited pongs",
                Vec::new(),
                raw::frame(OP_PONG, true, &[0x55; 125]),
            ),
            (
                "empty continuations",
                raw::frame(OP_BINARY, false, &[]),
                raw::frame(OP_CONTINUE, false, &[]),
            ),
        ];
        let mut cuts = Vec::new();
        for (what, first, repeated) in floods {
            let result = flood(&relay, &first, &repeated, limit, &mut calm).await;
            eprintln!(
                "figure: item 7: {what}: {:.1} MiB sent, relay {:.2} cores, {:.1} MiB back, \
                 cut after {:?}, worst legit round trip {:?}",
                result.sent as f64 / (1 << 20) as f64,
                result.cores,
                result.replies as f64 / (1 << 20) as f64,
                result.cut_after,
                result.worst_rtt,
            );
            cuts.push((what, result.cut_after, result.worst_rtt));
        }
        for (what, cut_after, worst_rtt) in cuts {
            // Past the control frame rate (or the fragment cap) the connection is closed at once.
            assert!(
                cut_after.is_some_and(|t| t < Duration::from_secs(1)),
                "{what}: cut after {cut_after:?} (cap {RELAY_MAX_CONTROL_FRAMES_PER_SEC}/s)"
            );
            assert!(
                worst_rtt.is_some_and(|t| t < Duration::from_millis(500)),
                "{what}: a legit round trip took {worst_rtt:?}"
            );
        }
    });
}

/// A `RegisterMachine` whose device signature is good and whose machine consent is not: the
/// relay verifies two signatures before it can refuse it.
fn bad_consent_entry(device: &Identity) -> SignedEntry {
    let (machine, impostor) = (identity(), identity());
    let pairing_id = new_pairing_id();
    let entry = RegistryEntry::RegisterMachine {
        device: device.public(),
        machine: machine.public(),
        hostname: hostname("box"),
        pairing_id,
        machine_consent: consent(&impostor, device, &pairing_id),
        at: unix_now(),
    };
    SignedEntry::sign(device, &entry).expect("device signs")
}

#[test]
fn registry_floods_are_rate_limited_and_verifications_charged() {
    smol::block_on(async {
        let relay = RelayProcess::start(&[]);
        let d = identity();
        let mut attacker = within("attacker login", Raw::login(relay.addr, &d, Role::Device))
            .await
            .expect("login");
        let entry = bad_consent_entry(&d);
        let batch: Vec<u8> = (0..256u32)
            .flat_map(|request| {
                raw::message(&Frame::Registry(Registry {
                    request,
                    entry: entry.clone(),
                }))
            })
            .collect();
        let limit = Duration::from_secs(2);
        let before = relay.usage();
        let started = Instant::now();
        let tcp = attacker.tcp.clone();
        let writing = async {
            let mut tcp = &*tcp;
            while started.elapsed() < limit {
                if smol::io::AsyncWriteExt::write_all(&mut tcp, &batch)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        };
        let (refused, limited) = (Cell::new(0usize), Cell::new(0usize));
        let reading = async {
            while let Ok(Some(frame)) = attacker.recv().await {
                match frame {
                    Frame::Error(e) if e.code == ErrorCode::EntryRefused => {
                        refused.set(refused.get() + 1)
                    }
                    Frame::Error(e) if e.code == ErrorCode::RateLimited => {
                        limited.set(limited.get() + 1)
                    }
                    _ => {}
                }
            }
        };
        writing.or(reading).await;
        let after = relay.usage();
        let elapsed = started.elapsed().as_secs_f64();
        // Entries the relay verified and refused, by its own count (replies can be dropped
        // when the attacker's queue is full).
        let verified = relay.handle().metric("relay_registry_refused_total").await as usize;
        let (refused, limited) = (refused.get(), limited.get());
        eprintln!(
            "figure: item 8: {:.0} registry requests/s verified (2 signatures each: {:.0} \
             verifications/s; {refused} refusals and {limited} rate limits read back), relay \
             {:.2} cores",
            verified as f64 / elapsed,
            2.0 * verified as f64 / elapsed,
            before.cores_until(&after),
        );
        assert!(
            verified <= RELAY_REGISTRY_REQUESTS_PER_MIN,
            "{verified} requests were verified in {elapsed:.1} s"
        );
        assert!(limited > 0, "nothing was rate-limited");
    });
}

#[test]
fn registry_requests_over_fresh_connections_are_rate_limited_per_source_prefix() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let d = identity();
        let entry = bad_consent_entry(&d);
        let batch: Vec<u8> = (0..RELAY_REGISTRY_REQUESTS_PER_MIN as u32)
            .flat_map(|request| {
                raw::message(&Frame::Registry(Registry {
                    request,
                    entry: entry.clone(),
                }))
            })
            .collect();
        // Connections from one /24 one after the other, each making its own connection's
        // worth of requests: 8 × 20 asked of a prefix's 60 a minute.
        let mut limited = 0;
        for host in 1..=8u8 {
            let tcp =
                raw::tcp(relay.addr, Some(IpAddr::from([127, 4, 4, host])), None).expect("tcp");
            let mut attacker = Raw::new(tcp);
            let hello = within("upgrade", attacker.upgrade())
                .await
                .expect("upgrade");
            within("login", attacker.log_in(&d, &hello, Role::Device))
                .await
                .expect("login");
            attacker.write(&batch).await.expect("write");
            let mut answered = 0;
            while answered < RELAY_REGISTRY_REQUESTS_PER_MIN {
                match within("an answer", attacker.recv()).await {
                    Ok(Some(Frame::Error(e))) => {
                        answered += 1;
                        limited += usize::from(e.code == ErrorCode::RateLimited);
                    }
                    Ok(Some(_)) => {}
                    other => panic!("connection {host}: {other:?}"),
                }
            }
        }
        let verified = relay.metric("relay_registry_refused_total").await as usize;
        // Another network is not affected.
        let tcp = raw::tcp(relay.addr, Some(IpAddr::from([127, 4, 5, 1])), None).expect("tcp");
        let mut other = Raw::new(tcp);
        let hello = within("upgrade", other.upgrade()).await.expect("upgrade");
        within("login", other.log_in(&d, &hello, Role::Device))
            .await
            .expect("login");
        other
            .write(&raw::message(&Frame::Registry(Registry {
                request: 1,
                entry: entry.clone(),
            })))
            .await
            .expect("write");
        let answer = within("the other network's answer", other.recv()).await;
        eprintln!(
            "figure: item 8: 8 connections of one /24 in turn, 20 registry requests each: \
             {verified} verified, {limited} rate-limited"
        );
        assert!(
            verified <= RELAY_REGISTRY_REQUESTS_PER_PREFIX_PER_MIN,
            "{verified} requests from one /24 were verified"
        );
        assert!(
            matches!(&answer, Ok(Some(Frame::Error(e))) if e.code == ErrorCode::EntryRefused),
            "{answer:?}"
        );
        relay.stop().await;
    });
}

#[test]
fn before_login_only_a_login_fits() {
    smol::block_on(async {
        let relay = RelayProcess::start(&["--max-connections-per-prefix", "100000"]);
        const CONNS: usize = 400;
        let base = relay.usage();
        // Each announces a 65 000-byte message and sends most of it, then waits.
        let mut announce = raw::header(OP_BINARY, true, 65_000);
        announce.extend(vec![0x42; 60_000]);
        let mut held = Vec::new();
        for _ in 0..CONNS {
            let (raw, _hello) = within("open", Raw::open(relay.addr, None))
                .await
                .expect("open");
            let _ = raw.write(&announce).await;
            held.push(raw);
        }
        let loaded = relay.usage();
        let mut closed = 0;
        for raw in &held {
            if closed_within(&raw.tcp, Duration::from_millis(20)).await {
                closed += 1;
            }
        }
        let per_conn = (loaded.rss_kib.saturating_sub(base.rss_kib)) as f64 / CONNS as f64;
        eprintln!(
            "figure: item 9: {CONNS} connections sending 60 KB before login: relay RSS +{} KiB \
             ({per_conn:.1} KiB each), {closed} closed at once",
            loaded.rss_kib.saturating_sub(base.rss_kib)
        );
        assert_eq!(closed, CONNS, "oversized messages before login were read");
        assert!(per_conn < 16.0, "{per_conn:.1} KiB per connection");
    });
}

#[test]
fn anything_but_a_login_before_login_closes_at_once() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let cases: [(&str, Vec<u8>); 4] = [
            ("an unknown kind", raw::frame(OP_BINARY, true, &[200, 1, 2])),
            ("a send", raw::message(&send(&identity(), b"hi"))),
            ("a ping", raw::frame(OP_PING, true, b"hi")),
            ("a pong", raw::frame(OP_PONG, true, b"hi")),
        ];
        for (what, bytes) in cases {
            let (mut raw, _hello) = within("open", Raw::open(relay.addr, None))
                .await
                .expect("open");
            raw.write(&bytes).await.expect("write");
            assert!(
                closing_within(&mut raw, Duration::from_secs(1)).await,
                "{what} before login left the connection open"
            );
        }
        relay.stop().await;
    });
}

#[test]
fn unauthenticated_connections_have_their_own_cap() {
    smol::block_on(async {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut config = common::config(temp.path());
        config.limits.max_unauthenticated_connections = 8;
        let relay = TestRelay::start_with(config).await;
        let mut waiting = Vec::new();
        for _ in 0..8 {
            let (raw, hello) = within("open", Raw::open(relay.addr, None))
                .await
                .expect("open");
            waiting.push((raw, hello));
        }
        let ninth = raw::tcp(relay.addr, None, None).expect("tcp");
        assert!(
            closed_within(&ninth, Duration::from_secs(2)).await,
            "a ninth connection that has not logged in was admitted"
        );
        // One logs in: its place is free again.
        let (mut raw, hello) = waiting.pop().expect("one");
        within("login", raw.log_in(&identity(), &hello, Role::Device))
            .await
            .expect("login");
        let (another, _) = within("open after a login", Raw::open(relay.addr, None))
            .await
            .expect("open");
        // (A request for /metrics is a connection that does not log in, too.)
        drop((another, waiting));
        relay
            .wait_metric(
                "relay_connections_refused_total{reason=\"unauthenticated_cap\"}",
                1,
            )
            .await;
        relay.stop().await;
    });
}

#[test]
fn slow_readers_are_cut_and_memory_stays_within_the_stated_bound() {
    smol::block_on(async {
        // Each device reads ~96 KiB/s through a 4 KiB receive buffer (fast enough for each write
        // to beat the 2 s write timeout) and leaves a full-size inbound message unfinished; its
        // machine sends it 30 full-size frames at once (the kernel's buffers take ~0.5 MiB, the
        // queue the rest), then 4 a second (240 KiB/s).
        const PAIRS: usize = 4;
        let max_connections = 2 * PAIRS + 4;
        let cap = max_connections.to_string();
        let relay = RelayProcess::start(&["--max-connections", &cap]);
        let handle = relay.handle();
        let (mut readers, mut senders) = (Vec::new(), Vec::new());
        for _ in 0..PAIRS {
            let (d, m) = (identity(), identity());
            let mut device = handle.device(&d).await;
            pair(&handle, &d, &mut device, &m).await;
            device.close().await;
            let mut reader = Raw::new(raw::tcp(relay.addr, None, Some(4096)).expect("tcp"));
            let hello = within("upgrade", reader.upgrade()).await.expect("upgrade");
            within("login", reader.log_in(&d, &hello, Role::Device))
                .await
                .expect("login");
            let mut partial = raw::header(OP_BINARY, true, MAX_FRAME_LEN);
            partial.extend(vec![0x42; 1000]);
            reader.write(&partial).await.expect("partial");
            readers.push(reader);
            let sender = within("machine login", Raw::login(relay.addr, &m, Role::Machine))
                .await
                .expect("login");
            let frame = raw::message(&send(&d, &vec![0xAB; 60 * 1024]));
            senders.push((sender, frame));
        }
        let base = relay.usage();
        for (sender, frame) in &senders {
            within("the burst", sender.write(&frame.repeat(30)))
                .await
                .expect("burst");
        }
        let started = Instant::now();
        let limit = Duration::from_millis(RELAY_SLOW_READER_CUT_MS + 8_000);
        let sending = async {
            while started.elapsed() < limit {
                for (sender, frame) in &senders {
                    let _ = sender.write(frame).await;
                }
                smol::Timer::after(Duration::from_millis(250)).await;
            }
        };
        // The relay's count of the cut, polled: a cut reader still has the kernel's buffers to
        // read before it sees the end.
        let series = "relay_disconnects_total{reason=\"slow_reader\"}";
        let cut_at: Vec<Cell<Option<Duration>>> = readers.iter().map(|_| Cell::new(None)).collect();
        let reading = async {
            let mut buf = vec![0u8; 9600];
            let mut polled = Instant::now();
            while started.elapsed() < limit && cut_at.iter().any(|c| c.get().is_none()) {
                for reader in &readers {
                    let mut tcp = &*reader.tcp;
                    let _ = quiet_for(Duration::from_millis(1), tcp.read(&mut buf)).await;
                }
                if polled.elapsed() >= Duration::from_millis(250) {
                    polled = Instant::now();
                    let cut = handle.metric(series).await as usize;
                    let known = cut_at.iter().filter(|c| c.get().is_some()).count();
                    let new = cut.saturating_sub(known);
                    for slot in cut_at.iter().filter(|c| c.get().is_none()).take(new) {
                        slot.set(Some(started.elapsed()));
                    }
                }
                smol::Timer::after(Duration::from_millis(100)).await;
            }
        };
        let ((), peak) = relay.peak_rss_during(reading.or(sending)).await;
        let grown = peak.saturating_sub(base.rss_kib);
        let bound = relay_memory_bound(max_connections) / 1024;
        let cuts: Vec<_> = cut_at.iter().filter_map(Cell::get).collect();
        eprintln!(
            "figure: item 10: {PAIRS} slow readers (96 KiB/s) sent 240 KiB/s: relay RSS \
             peak +{grown} KiB ({} KiB a reader), stated bound at {max_connections} connections \
             {bound} KiB; {} cut, the last after {:?}",
            grown / PAIRS as u64,
            cuts.len(),
            cuts.iter().max()
        );
        assert_eq!(
            cuts.len(),
            PAIRS,
            "slow readers with full queues were not cut"
        );
        let slack = Duration::from_millis(RELAY_SLOW_READER_CUT_MS + 5_000);
        assert!(cuts.iter().all(|t| *t < slack), "{cuts:?}");
        assert!(
            grown <= bound,
            "the relay grew by {grown} KiB, over its stated bound of {bound} KiB"
        );
    });
}

/// A new account: its device (key and connection) and its machine's connection.
async fn account(relay: &TestRelay) -> (Identity, Client, Client) {
    let (d, m) = (identity(), identity());
    let mut device = relay.device(&d).await;
    pair(relay, &d, &mut device, &m).await;
    let machine = relay.machine(&m, "box").await;
    (d, device, machine)
}

/// A device connection of `d` that reads nothing after its login (a 4 KiB receive buffer).
async fn stalled_device(relay: &TestRelay, d: &Identity) -> Raw {
    let mut raw = Raw::new(raw::tcp(relay.addr, None, Some(4096)).expect("tcp"));
    let hello = within("upgrade", raw.upgrade()).await.expect("upgrade");
    within("login", raw.log_in(d, &hello, Role::Device))
        .await
        .expect("login");
    raw
}

/// Send `frames` frames of 60 KiB from `machine` to `to`, then a frame to a stranger, refused
/// after everything before it was routed; how many of the frames were dropped.
async fn push_frames(machine: &mut Client, to: &Identity, frames: usize) -> usize {
    let payload = vec![0xAB; 60 * 1024];
    for _ in 0..frames {
        machine.send(&send(to, &payload)).await.expect("send");
    }
    machine
        .send(&send(&identity(), b"barrier"))
        .await
        .expect("send");
    let mut dropped = 0;
    recv_until(machine, "the barrier's refusal", |frame| match frame {
        Frame::Error(e) if e.code == ErrorCode::Dropped => {
            dropped += 1;
            None
        }
        Frame::Error(e) if e.code == ErrorCode::NotAllowed => Some(()),
        _ => None,
    })
    .await;
    dropped
}

#[test]
fn queue_pools_bound_stalled_readers_and_spare_a_reader_that_keeps_up() {
    smol::block_on(async {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut config = common::config(temp.path());
        // A queue holds 4 full frames, an account's queues 6, the relay's 8.
        config.limits.queue_bytes_per_connection = 4 * MAX_FRAME_LEN;
        config.limits.queue_bytes_per_account = 6 * MAX_FRAME_LEN;
        config.limits.queue_bytes_total = 8 * MAX_FRAME_LEN;
        // The stalled readers stay for the test (no write timeout, no cut), and the kernel
        // takes as little of what they do not read as it can.
        config.limits.send_buffer_len = MAX_FRAME_LEN;
        config.limits.write_timeout = Duration::from_secs(60);
        config.limits.slow_reader_cut = Duration::from_secs(60);
        let relay = TestRelay::start_with(config).await;
        let (da, device_a, mut machine_a) = account(&relay).await;
        let (db, device_b, mut machine_b) = account(&relay).await;
        let (dc, mut device_c, mut machine_c) = account(&relay).await;
        device_a.close().await;
        device_b.close().await;
        // Account A: one device with two connections that read nothing; B: one.
        let _stalled = [
            stalled_device(&relay, &da).await,
            stalled_device(&relay, &da).await,
            stalled_device(&relay, &db).await,
        ];
        // How much of a stalled reader's stream the kernel takes varies, and grows while it
        // sits there (receive buffers grow on their own, slowly under emulation), so A's queues
        // are topped up each round and both are pushed until their pool is what refuses,
        // within a bound (40 rounds, 48 MiB).
        let (mut sent_a, mut dropped_a, mut by_account) = (0, 0, 0);
        let (mut sent_b, mut dropped_b, mut by_total) = (0, 0, 0);
        while (by_account == 0 || by_total == 0) && sent_a < 400 {
            dropped_a += push_frames(&mut machine_a, &da, 10).await;
            sent_a += 10;
            dropped_b += push_frames(&mut machine_b, &db, 10).await;
            sent_b += 10;
            by_account = relay
                .metric("relay_dropped_total{reason=\"account_queue_full\"}")
                .await;
            by_total = relay
                .metric("relay_dropped_total{reason=\"total_queue_full\"}")
                .await;
        }
        let queued = relay.metric("relay_queued_bytes").await as usize;
        // C's device keeps up: its frames get through though the relay's pool is spent.
        let mut received = 0;
        for round in 0..5u8 {
            let payload = vec![round; 60 * 1024];
            machine_c.send(&send(&dc, &payload)).await.expect("send");
            let dropped = push_frames(&mut machine_c, &dc, 0).await;
            assert_eq!(
                dropped, 0,
                "frame {round} for a reader that keeps up was dropped"
            );
            let (_, got) = expect_recv(&mut device_c, "a frame for the reader").await;
            assert!(got == payload, "frame {round} differs");
            received += 1;
        }
        eprintln!(
            "figure: item 10: queue pools of 4/6/8 frames: {sent_a} sends to account A's 2 \
             stalled readers, {dropped_a} dropped ({by_account} queue drops at its pool); \
             {sent_b} to B's, {dropped_b} dropped ({by_total} at the relay's pool); {queued} bytes queued; a \
             reader that keeps up then got {received} of 5"
        );
        assert!(by_account >= 1, "nothing was dropped at the account's pool");
        assert!(by_total >= 1, "nothing was dropped at the relay's pool");
        // The pools hold, up to a reserve of one frame per queue.
        assert!(
            queued <= 8 * MAX_FRAME_LEN + 3 * RELAY_QUEUE_RESERVE_BYTES,
            "{queued} bytes queued"
        );
        relay.stop().await;
    });
}
