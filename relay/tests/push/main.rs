//! Web Push through the relay: a device subscribes, a machine of its account pushes, and the
//! relay POSTs to a push service on 127.0.0.1 (`mock`) with its VAPID authorization. Checked:
//! the JWT (signature under the key `PushState` gives, `aud`, `exp`), the headers, the body
//! byte for byte, what the relay logs; 410, 429/5xx and a service that never answers; every
//! refusal; floods against the caps; the key and the subscriptions across a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

#[path = "../common/mod.rs"]
mod common;
mod mock;

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::process::RelayProcess;
use common::*;
use mock::{MockPush, Received, Reply};
use muxagent_proto::frame::{
    ErrorCode, Frame, Push, PushQuery, PushState, PushSubscribe, PushUrgency,
};
use muxagent_proto::identity::Identity;
use muxagent_relay::RelayConfig;
use muxagent_relay_client::{Client, Roots};
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

/// A relay config for tests that pushes to `mock` and retries quickly.
fn push_config(dir: &std::path::Path, mock: &MockPush) -> RelayConfig {
    let mut config = common::config(dir);
    config.push.extra_origins = vec![mock.origin()];
    config.push.contact = Some("mailto:ops@example.com".into());
    config.limits.push_retry_base = Duration::from_millis(20);
    config
}

/// A device and a machine of one account, both logged in.
struct Account {
    device_id: Identity,
    device: Client,
    machine_id: Identity,
    machine: Client,
}

async fn account(relay: &TestRelay) -> Account {
    let (device_id, machine_id) = (identity(), identity());
    let mut device = relay.device(&device_id).await;
    pair(relay, &device_id, &mut device, &machine_id).await;
    let machine = relay.machine(&machine_id, "box").await;
    Account {
        device_id,
        device,
        machine_id,
        machine,
    }
}

/// Subscribe (or unsubscribe) and wait for the answer to this request.
async fn subscribe(
    client: &mut Client,
    request: u32,
    endpoint: Option<&str>,
) -> Result<PushState, (ErrorCode, String)> {
    client
        .send(&Frame::PushSubscribe(PushSubscribe {
            request,
            endpoint: endpoint.map(str::to_string),
        }))
        .await
        .expect("send PushSubscribe");
    answer(client, request).await
}

async fn query(client: &mut Client, request: u32) -> Result<PushState, (ErrorCode, String)> {
    client
        .send(&Frame::PushQuery(PushQuery { request }))
        .await
        .expect("send PushQuery");
    answer(client, request).await
}

async fn answer(client: &mut Client, request: u32) -> Result<PushState, (ErrorCode, String)> {
    recv_until(
        client,
        "the answer to a push request",
        |frame| match frame {
            Frame::PushState(state) if state.request == request => Some(Ok(state.clone())),
            Frame::Error(error) if error.request == Some(request) => {
                Some(Err((error.code, error.reason.to_string())))
            }
            _ => None,
        },
    )
    .await
}

fn push_to(device: &Identity, body: &[u8]) -> Frame {
    Frame::Push(Push {
        device: device.public().fingerprint(),
        urgency: PushUrgency::Normal,
        topic: None,
        ttl_secs: 60,
        body: body.to_vec(),
    })
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("randomness");
    bytes
}

/// A path no one could guess, to look for in the relay's log.
fn secret_path() -> String {
    format!("/push/v1/{}", URL_SAFE_NO_PAD.encode(random::<24>()))
}

fn outcome(name: &str) -> String {
    format!("relay_push_total{{outcome=\"{name}\"}}")
}

/// The VAPID claims of `request` after checking its JWT's signature under `key` and that its
/// `k` is `key`.
fn verified_claims(request: &Received, key: &[u8]) -> serde_json::Value {
    let authorization = request.header("authorization").expect("Authorization");
    let rest = authorization
        .strip_prefix("vapid t=")
        .expect("the vapid scheme");
    let (jwt, k) = rest.split_once(", k=").expect("t and k");
    assert_eq!(URL_SAFE_NO_PAD.decode(k).expect("base64url k"), key);
    let (input, signature) = jwt.rsplit_once('.').expect("a JWT");
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .expect("base64url signature");
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
        .verify(input.as_bytes(), &signature)
        .expect("the JWT verifies under the relay's VAPID key");
    let (header, claims) = input.split_once('.').expect("header and claims");
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url")).expect("json");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).expect("base64url")).expect("json")
}

#[test]
fn a_push_reaches_the_push_service_signed_and_whole() {
    let mock = MockPush::start(&[Reply::Status(201, None)], Reply::Status(400, None));
    let process = RelayProcess::start(&[
        "--push-origin",
        &mock.origin(),
        "--push-contact",
        "mailto:ops@example.com",
    ]);
    let relay = process.handle();
    smol::block_on(async {
        let mut a = account(&relay).await;
        let path = secret_path();
        let endpoint = mock.endpoint(&path);
        let state = subscribe(&mut a.device, 1, Some(&endpoint))
            .await
            .expect("subscribed");
        assert_eq!(state.endpoint.as_deref(), Some(endpoint.as_str()));
        assert_eq!(state.vapid_public_key.len(), 65);
        assert_eq!(state.vapid_public_key[0], 4, "an uncompressed point");

        let body = random::<3000>().to_vec();
        let topic = random::<16>();
        a.machine
            .send(&Frame::Push(Push {
                device: a.device_id.public().fingerprint(),
                urgency: PushUrgency::High,
                topic: Some(topic),
                ttl_secs: 3600,
                body: body.clone(),
            }))
            .await
            .expect("push");
        let request = mock.next().await;
        let before = unix_now();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, path);
        assert_eq!(
            request.body, body,
            "the body is the machine's, byte for byte"
        );
        assert_eq!(request.header("content-encoding"), Some("aes128gcm"));
        assert_eq!(
            request.header("content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(request.header("ttl"), Some("3600"));
        assert_eq!(request.header("urgency"), Some("high"));
        let expected_topic = URL_SAFE_NO_PAD.encode(topic);
        assert_eq!(request.header("topic"), Some(expected_topic.as_str()));
        assert_eq!(expected_topic.len(), 22);
        assert_eq!(request.header("content-length"), Some("3000"));
        let host = format!("127.0.0.1:{}", mock.port);
        assert_eq!(request.header("host"), Some(host.as_str()));
        let claims = verified_claims(&request, &state.vapid_public_key);
        assert_eq!(claims["aud"], mock.origin().as_str());
        assert_eq!(claims["sub"], "mailto:ops@example.com");
        let exp = claims["exp"].as_u64().expect("exp");
        assert!(
            exp > before && exp <= unix_now() + 24 * 3600,
            "exp {exp} is not within the next 24 h"
        );
        relay.wait_metric(&outcome("sent"), 1).await;

        // A second push is refused by the service (400): counted, and logged by origin only.
        let second = random::<200>();
        a.machine
            .send(&push_to(&a.device_id, &second))
            .await
            .expect("push");
        let request = mock.next().await;
        assert_eq!(request.header("urgency"), Some("normal"));
        assert_eq!(request.header("topic"), None);
        relay.wait_metric(&outcome("failed"), 1).await;
        let log = within("the relay to log the refusal", async {
            loop {
                let log = process.log();
                if log.contains("refused a push: 400") {
                    return log;
                }
                smol::Timer::after(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(log.contains(&mock.origin()), "{log}");
        let token = path.rsplit('/').next().unwrap_or(&path);
        assert!(
            !log.contains(token),
            "the log names the endpoint's path:\n{log}"
        );
        for body in [&body[..], &second[..]] {
            for text in [
                URL_SAFE_NO_PAD.encode(&body[..32]),
                body[..16]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
                format!("{:?}", &body[..8]),
            ] {
                assert!(!log.contains(&text), "the log holds a body:\n{log}");
            }
        }
    });
}

#[test]
fn gone_drops_the_subscription_for_good() {
    let mock = MockPush::start(&[], Reply::Status(410, None));
    let temp = tempfile::tempdir().expect("temp dir");
    smol::block_on(async {
        let relay = TestRelay::start_with(push_config(temp.path(), &mock)).await;
        let mut a = account(&relay).await;
        let endpoint = mock.endpoint("/gone/1");
        subscribe(&mut a.device, 1, Some(&endpoint))
            .await
            .expect("subscribed");
        assert_eq!(relay.metric("relay_push_subscriptions").await, 1);
        a.machine
            .send(&push_to(&a.device_id, b"ciphertext"))
            .await
            .expect("push");
        mock.next().await;
        relay.wait_metric(&outcome("gone"), 1).await;
        within("the subscription to be dropped", async {
            while relay.metric("relay_push_subscriptions").await != 0 {
                smol::Timer::after(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert_eq!(query(&mut a.device, 2).await.expect("state").endpoint, None);
        // The machine is told at once that there is nothing to push to.
        a.machine
            .send(&push_to(&a.device_id, b"again"))
            .await
            .expect("push");
        assert_eq!(
            expect_error(&mut a.machine, "no subscription").await,
            ErrorCode::NotAllowed
        );
        relay.stop().await;

        let relay = TestRelay::start_with(push_config(temp.path(), &mock)).await;
        assert_eq!(relay.metric("relay_push_subscriptions").await, 0);
        let mut device = relay.device(&a.device_id).await;
        assert_eq!(query(&mut device, 3).await.expect("state").endpoint, None);
        relay.stop().await;
    });
}

#[test]
fn busy_and_failing_services_are_retried_within_bounds() {
    // 429 with a Retry-After, then 503: two retries, then it is taken.
    let mock = MockPush::start(
        &[Reply::Status(429, Some(1)), Reply::Status(503, None)],
        Reply::Status(201, None),
    );
    let temp = tempfile::tempdir().expect("temp dir");
    smol::block_on(async {
        let mut config = push_config(temp.path(), &mock);
        config.limits.push_retry_after_max = Duration::from_secs(5);
        let relay = TestRelay::start_with(config).await;
        let mut a = account(&relay).await;
        subscribe(&mut a.device, 1, Some(&mock.endpoint("/busy")))
            .await
            .expect("subscribed");
        let body = random::<100>();
        a.machine
            .send(&push_to(&a.device_id, &body))
            .await
            .expect("push");
        for _ in 0..3 {
            assert_eq!(
                mock.next().await.body,
                body,
                "each attempt carries the body"
            );
        }
        relay.wait_metric(&outcome("sent"), 1).await;
        assert_eq!(relay.metric(&outcome("retried")).await, 2);
        assert_eq!(relay.metric(&outcome("failed")).await, 0);
        relay.stop().await;
    });

    // A service that asks to wait past the cap, and one that keeps failing: given up.
    let mock = MockPush::start(&[Reply::Status(429, Some(3600))], Reply::Status(500, None));
    let temp = tempfile::tempdir().expect("temp dir");
    smol::block_on(async {
        let mut config = push_config(temp.path(), &mock);
        config.limits.push_attempts = 3;
        let relay = TestRelay::start_with(config).await;
        let mut a = account(&relay).await;
        subscribe(&mut a.device, 1, Some(&mock.endpoint("/busy")))
            .await
            .expect("subscribed");
        a.machine
            .send(&push_to(&a.device_id, b"one"))
            .await
            .expect("push");
        mock.next().await;
        relay.wait_metric(&outcome("failed"), 1).await;
        assert_eq!(relay.metric(&outcome("retried")).await, 0);
        a.machine
            .send(&push_to(&a.device_id, b"two"))
            .await
            .expect("push");
        for _ in 0..3 {
            mock.next().await;
        }
        relay.wait_metric(&outcome("failed"), 2).await;
        assert_eq!(relay.metric(&outcome("retried")).await, 2);
        assert_eq!(mock.pending(), 0, "no attempt past push_attempts");
        assert_eq!(relay.metric("relay_pushes_held").await, 0);
        relay.stop().await;
    });
}

/// `count` round trips device → machine → device; how long they took.
async fn round_trips(a: &mut Account, count: usize) -> Duration {
    let start = Instant::now();
    for round in 0..count {
        let payload = format!("ping {round}");
        a.device
            .send(&send(&a.machine_id, payload.as_bytes()))
            .await
            .expect("device sends");
        let (_, got) = expect_recv(&mut a.machine, "the machine gets it").await;
        a.machine
            .send(&send(&a.device_id, &got))
            .await
            .expect("machine answers");
        let (_, back) = expect_recv(&mut a.device, "the device gets the answer").await;
        assert_eq!(back, payload.as_bytes());
    }
    start.elapsed()
}

#[test]
fn a_push_service_that_never_answers_does_not_slow_routing() {
    const ROUNDS: usize = 100;
    const PUSHES: usize = 20;
    let mock = MockPush::start(&[], Reply::Hang);
    // One thread: pushes and routing share it, as on a small relay.
    let process = RelayProcess::start(&["--push-origin", &mock.origin()]);
    let relay = process.handle();
    smol::block_on(async {
        let mut a = account(&relay).await;
        subscribe(&mut a.device, 1, Some(&mock.endpoint("/hang")))
            .await
            .expect("subscribed");
        round_trips(&mut a, 20).await; // warm up
        let quiet = round_trips(&mut a, ROUNDS).await;
        for n in 0..PUSHES {
            a.machine
                .send(&push_to(&a.device_id, format!("push {n}").as_bytes()))
                .await
                .expect("push");
        }
        // Every worker is stuck on the service now.
        within("the workers to reach the service", async {
            while mock.accepted.load(std::sync::atomic::Ordering::Relaxed) < 8 {
                smol::Timer::after(Duration::from_millis(10)).await;
            }
        })
        .await;
        let stuck = round_trips(&mut a, ROUNDS).await;
        println!(
            "{ROUNDS} round trips: {quiet:?} with the push service idle, {stuck:?} with \
             {PUSHES} pushes hanging on it (ratio {:.2})",
            stuck.as_secs_f64() / quiet.as_secs_f64()
        );
        assert_eq!(relay.metric("relay_pushes_held").await, PUSHES as u64);
        assert_eq!(relay.metric(&outcome("sent")).await, 0);
        assert_eq!(relay.metric(&outcome("timeout")).await, 0);
        let routed = 2 * (20 + 2 * ROUNDS) as u64;
        assert_eq!(
            relay
                .metric("relay_routed_frames_total{kind=\"send\"}")
                .await,
            routed
        );
    });
}

#[test]
fn what_is_refused() {
    let mock = MockPush::start(&[], Reply::Status(201, None));
    let temp = tempfile::tempdir().expect("temp dir");
    smol::block_on(async {
        let relay = TestRelay::start_with(push_config(temp.path(), &mock)).await;
        let mut a = account(&relay).await;
        let mut other = account(&relay).await;
        let not_allowed = |result: Result<PushState, (ErrorCode, String)>| match result {
            Err((ErrorCode::NotAllowed, reason)) => reason,
            other => panic!("expected NotAllowed, got {other:?}"),
        };

        // Only devices subscribe and query.
        not_allowed(subscribe(&mut a.machine, 1, Some(&mock.endpoint("/m"))).await);
        not_allowed(query(&mut a.machine, 2).await);
        // Only devices of an account: a fresh key has none.
        let mut loner = relay.device(&identity()).await;
        let reason = not_allowed(subscribe(&mut loner, 3, Some(&mock.endpoint("/l"))).await);
        assert!(reason.contains("pair"), "{reason}");

        // Endpoints off the allowlist, each with its reason.
        for endpoint in [
            "http://10.0.0.1/",
            "https://evil.example/push",
            "https://fcm.googleapis.com.evil.example/x",
            "http://fcm.googleapis.com/fcm/send/x",
            "https://user@fcm.googleapis.com/x",
            &format!("http://127.0.0.1:{}/x", mock.port + 1),
        ] {
            let reason = not_allowed(subscribe(&mut a.device, 4, Some(endpoint)).await);
            assert!(!reason.is_empty());
        }
        assert_eq!(query(&mut a.device, 5).await.expect("state").endpoint, None);
        // A browser's push service is fine (nothing is sent until a machine pushes).
        let fcm = "https://fcm.googleapis.com/fcm/send/abc:APA91b";
        let state = subscribe(&mut a.device, 6, Some(fcm)).await.expect("fcm");
        assert_eq!(state.endpoint.as_deref(), Some(fcm));
        subscribe(&mut a.device, 7, Some(&mock.endpoint("/a")))
            .await
            .expect("replaced");

        // Pushes: only from a machine, to a device of its account that has a subscription.
        a.device
            .send(&push_to(&a.device_id, b"x"))
            .await
            .expect("send");
        assert_eq!(
            expect_error(&mut a.device, "device push").await,
            ErrorCode::NotAllowed
        );
        a.machine
            .send(&push_to(&other.device_id, b"x"))
            .await
            .expect("send");
        assert_eq!(
            expect_error(&mut a.machine, "push to another account").await,
            ErrorCode::NotAllowed
        );
        other
            .machine
            .send(&push_to(&other.device_id, b"x"))
            .await
            .expect("send");
        assert_eq!(
            expect_error(&mut other.machine, "push without a subscription").await,
            ErrorCode::NotAllowed
        );
        assert_eq!(relay.metric(&outcome("refused")).await, 12);
        assert_eq!(
            mock.pending(),
            0,
            "nothing refused reached the push service"
        );

        // An endpoint over the wire's limit does not even decode: the connection closes.
        let long = format!("https://fcm.googleapis.com/{}", "a".repeat(1024));
        let mut device = relay.device(&a.device_id).await;
        device
            .send(&Frame::PushSubscribe(PushSubscribe {
                request: 8,
                endpoint: Some(long),
            }))
            .await
            .expect("send");
        let frames = until_closed(&mut device, "closed for a malformed frame").await;
        assert!(
            frames
                .iter()
                .any(|f| matches!(f, Frame::Error(e) if e.code == ErrorCode::Malformed)),
            "{frames:?}"
        );
        // Unsubscribing works and is idempotent.
        assert_eq!(
            subscribe(&mut a.device, 9, None)
                .await
                .expect("off")
                .endpoint,
            None
        );
        assert_eq!(
            subscribe(&mut a.device, 10, None)
                .await
                .expect("off")
                .endpoint,
            None
        );
        relay.stop().await;
    });
}

#[test]
fn floods_meet_the_caps() {
    let mock = MockPush::start(&[], Reply::Hang);
    let temp = tempfile::tempdir().expect("temp dir");
    smol::block_on(async {
        let mut config = push_config(temp.path(), &mock);
        config.limits.max_push_subscriptions = 2;
        config.limits.push_workers = 1;
        config.limits.push_queue_len = 4;
        config.limits.push_per_device_burst = 10;
        // No refill while the test runs, however slow the machine.
        config.limits.push_per_device_per_min = 1;
        let relay = TestRelay::start_with(config).await;
        let mut a = account(&relay).await;

        // Three devices of the account: the table holds two.
        let mut devices = Vec::new();
        for _ in 0..2 {
            let id = identity();
            let mut device = relay.device(&id).await;
            let (pending, pairing_id) = rendezvous(&relay, &mut device, &a.machine_id).await;
            registry(
                &mut device,
                1,
                register_entry(&id, &a.machine_id, pairing_id),
            )
            .await
            .expect("joined the account");
            pending.close().await;
            devices.push((id, device));
        }
        subscribe(&mut a.device, 1, Some(&mock.endpoint("/0")))
            .await
            .expect("first");
        subscribe(&mut devices[0].1, 2, Some(&mock.endpoint("/1")))
            .await
            .expect("second");
        let full = subscribe(&mut devices[1].1, 3, Some(&mock.endpoint("/2"))).await;
        assert!(
            matches!(&full, Err((ErrorCode::NotAllowed, reason)) if reason.contains("maximum")),
            "{full:?}"
        );
        assert_eq!(relay.metric("relay_push_subscriptions").await, 2);

        // One device changing its subscription without end meets the write rate (20 a
        // minute per connection, 2 of them spent on the registry above).
        let mut limited = None;
        for round in 0..40u32 {
            let endpoint = mock.endpoint(&format!("/flip/{round}"));
            match subscribe(&mut devices[0].1, 100 + round, Some(&endpoint)).await {
                Ok(_) => {}
                Err((ErrorCode::RateLimited, _)) => {
                    limited = Some(round);
                    break;
                }
                Err(other) => panic!("{other:?}"),
            }
        }
        let limited = limited.expect("the subscription flood was limited");
        assert!(limited <= 20, "limited only after {limited} changes");
        // Replacing one's own subscription is allowed at the cap (devices[0] holds one).

        // Pushes: one in flight (hanging), three queued, then the queue is full; past the
        // device's burst of 10 the rate refuses.
        for n in 0..15u8 {
            a.machine
                .send(&push_to(&a.device_id, &[n; 64]))
                .await
                .expect("push");
        }
        let mut codes = Vec::new();
        while codes.len() < 11 {
            codes.push(expect_error(&mut a.machine, "a refused push").await);
        }
        let dropped = codes.iter().filter(|c| **c == ErrorCode::Dropped).count();
        let limited = codes
            .iter()
            .filter(|c| **c == ErrorCode::RateLimited)
            .count();
        assert_eq!((dropped, limited), (6, 5), "{codes:?}");
        assert_eq!(relay.metric(&outcome("queue_full")).await, 6);
        assert_eq!(relay.metric(&outcome("rate_limited")).await, 5 + 1);
        assert_eq!(relay.metric("relay_pushes_held").await, 4);
        relay.stop().await;
    });
}

#[test]
fn the_key_and_the_subscriptions_survive_a_restart() {
    let mock = MockPush::start(&[], Reply::Status(201, None));
    let temp = tempfile::tempdir().expect("temp dir");
    smol::block_on(async {
        let relay = TestRelay::start_with(push_config(temp.path(), &mock)).await;
        let mut a = account(&relay).await;
        let endpoint = mock.endpoint("/kept");
        let before = subscribe(&mut a.device, 1, Some(&endpoint))
            .await
            .expect("subscribed");
        relay.stop().await;

        let relay = TestRelay::start_with(push_config(temp.path(), &mock)).await;
        assert_eq!(relay.metric("relay_push_subscriptions").await, 1);
        let mut device = relay.device(&a.device_id).await;
        let after = query(&mut device, 2).await.expect("state");
        assert_eq!(after.vapid_public_key, before.vapid_public_key);
        assert_eq!(after.endpoint.as_deref(), Some(endpoint.as_str()));
        let mut machine = relay.machine(&a.machine_id, "box").await;
        machine
            .send(&push_to(&a.device_id, b"after the restart"))
            .await
            .expect("push");
        let request = mock.next().await;
        assert_eq!(request.body, b"after the restart");
        verified_claims(&request, &before.vapid_public_key);
        relay.stop().await;

        // Started without the origin, the relay forgets the subscriptions on it.
        let relay = TestRelay::start_with(common::config(temp.path())).await;
        assert_eq!(relay.metric("relay_push_subscriptions").await, 0);
        let mut device = relay.device(&a.device_id).await;
        let state = query(&mut device, 3).await.expect("state");
        assert_eq!(state.endpoint, None);
        assert_eq!(state.vapid_public_key, before.vapid_public_key);
        relay.stop().await;
    });
}

#[test]
fn pushes_go_over_tls_to_a_service_the_relay_trusts() {
    let (mock, root) = MockPush::start_tls(&[], Reply::Status(201, None));
    let temp = tempfile::tempdir().expect("temp dir");
    smol::block_on(async {
        let mut config = push_config(temp.path(), &mock);
        config.push.roots = Roots::Custom(vec![root]);
        let relay = TestRelay::start_with(config).await;
        let mut a = account(&relay).await;
        let state = subscribe(&mut a.device, 1, Some(&mock.endpoint("/tls")))
            .await
            .expect("subscribed");
        a.machine
            .send(&push_to(&a.device_id, b"over tls"))
            .await
            .expect("push");
        let request = mock.next().await;
        assert_eq!(request.body, b"over tls");
        let claims = verified_claims(&request, &state.vapid_public_key);
        assert_eq!(claims["aud"], mock.origin().as_str());
        relay.wait_metric(&outcome("sent"), 1).await;
        relay.stop().await;
    });
}

#[test]
fn pushes_follow_reach_and_a_revoked_device_loses_its_subscription() {
    let mock = MockPush::start(&[], Reply::Status(201, None));
    let temp = tempfile::tempdir().expect("temp dir");
    smol::block_on(async {
        let relay = TestRelay::start_with(push_config(temp.path(), &mock)).await;
        // An owner with machines A and B; a device that paired with A only.
        let mut owner = account(&relay).await;
        let b_id = identity();
        pair(&relay, &owner.device_id, &mut owner.device, &b_id).await;
        let mut machine_b = relay.machine(&b_id, "b").await;
        let d_id = identity();
        let mut d = relay.device(&d_id).await;
        pair(&relay, &d_id, &mut d, &owner.machine_id).await;
        subscribe(&mut d, 1, Some(&mock.endpoint("/d")))
            .await
            .expect("subscribed");
        assert_eq!(relay.metric("relay_push_subscriptions").await, 1);

        // B may not push to a device that does not reach it; A may.
        machine_b.send(&push_to(&d_id, b"x")).await.expect("send");
        assert_eq!(
            expect_error(&mut machine_b, "push to a device that does not reach B").await,
            ErrorCode::NotAllowed
        );
        owner
            .machine
            .send(&push_to(&d_id, b"from A"))
            .await
            .expect("push");
        assert_eq!(mock.next().await.body, b"from A");

        // Revoked: its subscription goes with it, and stays gone after a restart.
        assert_eq!(
            registry(
                &mut owner.device,
                9,
                revoke_device_entry(&owner.device_id, &d_id)
            )
            .await,
            Ok(())
        );
        assert_eq!(relay.metric("relay_push_subscriptions").await, 0);
        relay.stop().await;
        let relay = TestRelay::start_with(push_config(temp.path(), &mock)).await;
        assert_eq!(relay.metric("relay_push_subscriptions").await, 0);
        relay.stop().await;
    });
}
