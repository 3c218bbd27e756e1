//! Web Push, the relay's half (RFC 8030, with VAPID: RFC 8292). A machine encrypts a
//! notification for a device's subscription keys (RFC 8291, end to end: the relay never holds
//! them) and hands the relay the ciphertext in a `Push` frame; the relay holds only the
//! device's subscription *endpoint*, adds its VAPID authorization and POSTs the body as it is.
//!
//! - **Subscriptions** (`store`): a device of an account sets or removes its one endpoint
//!   with `PushSubscribe` and reads it back with `PushQuery`; both are answered with
//!   `PushState`, which also carries the relay's VAPID public key. Endpoints must pass the
//!   origin allowlist (`endpoint`). Changes are durable before they are answered, count
//!   against the connection's and its network's minute of durable writes (as registry
//!   requests do), and the table is capped.
//! - **Pushes**: a machine's `Push` for a device that may reach it is checked (reach,
//!   subscription, the device's push rate, the queue's room), charged to the machine's inbound
//!   budget and queued — never sent inline: routing does not wait on any push service.
//! - **Sending** (`worker`, `http`): a few workers POST queued pushes with a JWT signed per
//!   push (`vapid`); 404/410 drop the subscription, 429/5xx and failed connections are retried
//!   with backoff, a service that does not answer in time is given up on.
//!
//! Nothing of an endpoint beyond its origin is logged, nor anything of a body.

mod endpoint;
mod http;
mod store;
mod vapid;
mod worker;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::limits::{PUSH_TOPIC_LEN, RELAY_PUSH_COST_BYTES, RELAY_PUSH_WARNINGS_PER_MIN};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_rustls::TlsConnector;
use muxagent_proto::frame::{
    ErrorCode, Frame, Push, PushEndpoint, PushQuery, PushState, PushSubscribe, PushUrgency, Role,
};
use muxagent_proto::identity::Fingerprint;

use crate::bucket::Window;
use crate::config::{Limits, PushConfig};
use crate::conn::{reply, write_rate};
use crate::error::RelayError;
use crate::metrics::{Metrics, PushOutcome};
use crate::router::{Router, Session, encode, error_frame};
use crate::server::Shared;
use crate::time::unix_now;
use muxagent_relay_client::Roots;

pub(crate) use worker::run as run_worker;

use endpoint::Policy;
use store::{RateLimit, SubscriptionLog, Subscriptions, Take};
use vapid::Vapid;

/// Subfolder of the data folder for push: the VAPID key and the subscriptions.
const PUSH_DIR: &str = "push";

/// The `sub` of the JWT when the operator named none and the public URL is not `https`.
const PLACEHOLDER_CONTACT: &str = "mailto:relay@muxagent.invalid";

/// The relay's push state, shared by connections and the workers.
pub(crate) struct PushService {
    vapid: Vapid,
    policy: Policy,
    contact: String,
    roots: Roots,
    /// Built on the first `https` push (reading the system's roots takes milliseconds).
    tls: OnceLock<Result<TlsConnector, String>>,
    subs: Mutex<Subscriptions>,
    log: Arc<Mutex<SubscriptionLog>>,
    /// One subscription change at a time: check, append + sync, apply (so the log's order is
    /// the table's).
    writes: smol::lock::Mutex<()>,
    queue: smol::channel::Sender<Job>,
    jobs: smol::channel::Receiver<Job>,
    /// Pushes held: queued, in flight, or waiting for a retry (each [`Job`] holds one).
    held: Arc<AtomicUsize>,
    limits: Limits,
    metrics: Arc<Metrics>,
    warnings: Mutex<Window>,
}

/// One push on its way.
pub(crate) struct Job {
    device: Fingerprint,
    endpoint: Box<str>,
    urgency: PushUrgency,
    topic: Option<[u8; PUSH_TOPIC_LEN]>,
    ttl_secs: u32,
    body: Vec<u8>,
    /// Attempts made so far.
    attempt: u32,
    _held: Held,
}

/// A push's place in [`PushService::held`], given back when the job ends however it ends.
struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PushService {
    /// Open the push folder in `data_dir` (the VAPID key, made on first start, and the
    /// subscriptions) and keep the subscriptions of devices `router` knows as devices of an
    /// account whose endpoints the policy still allows; the others are forgotten for good (the
    /// device's next `PushQuery` shows it has none). Blocking: called once at startup.
    pub(crate) fn open(
        data_dir: &Path,
        config: &PushConfig,
        public_url: &str,
        limits: &Limits,
        metrics: Arc<Metrics>,
        router: &Router,
    ) -> Result<PushService, RelayError> {
        let store_error = |reason: String| RelayError::Store { reason };
        let dir = data_dir.join(PUSH_DIR);
        let policy = Policy::new(&config.extra_origins).map_err(RelayError::Config)?;
        let contact = match &config.contact {
            Some(contact) => contact.clone(),
            None if public_url.starts_with("https://") => public_url.to_string(),
            None => PLACEHOLDER_CONTACT.to_string(),
        };
        vapid::check_contact(&contact).map_err(RelayError::Config)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| store_error(format!("cannot create {}: {e}", dir.display())))?;
        let vapid = Vapid::open(&dir).map_err(store_error)?;
        let (mut log, stored) = SubscriptionLog::open(&dir).map_err(store_error)?;
        let now = Instant::now();
        let mut subs = Subscriptions::new(
            limits.max_push_subscriptions,
            RateLimit {
                burst: limits.push_per_device_burst,
                per_min: limits.push_per_device_per_min,
            },
        );
        let mut forgotten = 0;
        for (device, endpoint) in stored {
            if router.device_has_account(&device) && policy.check(&endpoint).is_ok() {
                subs.apply(device, Some(&endpoint), now);
            } else {
                log.append_durable(device, None).map_err(store_error)?;
                forgotten += 1;
            }
        }
        crate::info(format_args!(
            "web push: {} subscriptions{}, contact {contact}{}",
            subs.len(),
            if forgotten > 0 {
                format!(
                    " ({forgotten} forgotten: their devices left the registry or their \
                     origins the allowlist)"
                )
            } else {
                String::new()
            },
            match policy.extra_origins() {
                extra if extra.is_empty() => String::new(),
                extra => format!(", also pushing to {}", extra.join(" ")),
            }
        ));
        let (queue, jobs) = smol::channel::unbounded();
        Ok(PushService {
            vapid,
            policy,
            contact,
            roots: config.roots.clone(),
            tls: OnceLock::new(),
            subs: Mutex::new(subs),
            log: Arc::new(Mutex::new(log)),
            writes: smol::lock::Mutex::new(()),
            queue,
            jobs,
            held: Arc::new(AtomicUsize::new(0)),
            limits: limits.clone(),
            metrics,
            warnings: Mutex::new(Window::new(Instant::now())),
        })
    }

    /// Subscriptions held now.
    pub(crate) fn subscriptions(&self) -> usize {
        lock(&self.subs).len()
    }

    /// Pushes held now (queued, in flight, waiting to be retried).
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The TLS connector for `https` push services.
    fn tls(&self) -> Result<&TlsConnector, String> {
        self.tls
            .get_or_init(|| {
                muxagent_relay_client::tls_connector(&self.roots).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Log a warning, at most [`RELAY_PUSH_WARNINGS_PER_MIN`] a minute.
    fn warn(&self, message: std::fmt::Arguments<'_>) {
        let allowed = lock(&self.warnings).allow(
            Instant::now(),
            RELAY_PUSH_WARNINGS_PER_MIN,
            Duration::from_secs(60),
        );
        if allowed {
            crate::warn(format_args!("web push: {message}"));
        }
    }

    fn state(&self, request: u32, endpoint: Option<PushEndpoint>) -> Frame {
        Frame::PushState(PushState {
            request,
            vapid_public_key: self.vapid.public_key(),
            endpoint,
        })
    }

    /// Append a change to the log and sync it (compacting the log when it is due), off the
    /// async threads. The caller holds [`Self::writes`].
    async fn append_durable(
        &self,
        device: Fingerprint,
        endpoint: Option<PushEndpoint>,
    ) -> Result<(), String> {
        let log = self.log.clone();
        smol::unblock(move || lock(&log).append_durable(device, endpoint)).await
    }

    /// Rewrite the log to the live table when it holds enough dead records. The caller holds
    /// [`Self::writes`]; a failure is logged (the appended log is still right).
    async fn compact_if_due(&self) {
        let live = {
            let subs = lock(&self.subs);
            if !lock(&self.log).wants_compaction(subs.len()) {
                return;
            }
            subs.records()
        };
        let log = self.log.clone();
        if let Err(e) = smol::unblock(move || lock(&log).compact(&live)).await {
            crate::warn(format_args!(
                "web push: compacting the subscriptions failed: {e}"
            ));
        }
    }

    /// `device` was revoked: drop its subscription, if it has one. A failure to store it is
    /// logged; the next start forgets it anyway (its device has left the registry).
    pub(crate) async fn forget_device(&self, device: Fingerprint) {
        let _writer = self.writes.lock().await;
        if lock(&self.subs).get(&device).is_none() {
            return;
        }
        if let Err(e) = self.append_durable(device, None).await {
            self.warn(format_args!(
                "cannot drop a revoked device's subscription: {e}"
            ));
        }
        lock(&self.subs).apply(device, None, Instant::now());
        self.compact_if_due().await;
    }

    /// The push service said `device`'s subscription at `endpoint` is gone: drop it, unless
    /// the device has subscribed anew meanwhile.
    async fn forget(&self, device: Fingerprint, endpoint: &str) {
        let _writer = self.writes.lock().await;
        if lock(&self.subs).get(&device) != Some(endpoint) {
            return;
        }
        if let Err(e) = self.append_durable(device, None).await {
            self.warn(format_args!("cannot drop a gone subscription: {e}"));
            return;
        }
        lock(&self.subs).apply(device, None, Instant::now());
        self.compact_if_due().await;
    }
}

/// Refuse a push request: count it and tell the client.
fn refuse(
    shared: &Shared,
    session: &Session,
    request: Option<u32>,
    code: ErrorCode,
    outcome: PushOutcome,
    reason: &str,
) {
    shared.metrics.push(outcome);
    reply(shared, session, error_frame(code, request, reason));
}

/// A device's `PushSubscribe`: check, make durable, apply, answer with `PushState`.
pub(crate) async fn subscribe(shared: &Shared, session: &Session, request: PushSubscribe) {
    let push = &shared.push;
    let id = Some(request.request);
    let not_allowed = |reason: &str| {
        refuse(
            shared,
            session,
            id,
            ErrorCode::NotAllowed,
            PushOutcome::Refused,
            reason,
        )
    };
    if session.role != Role::Device {
        return not_allowed("only a device subscribes to push notifications");
    }
    let device = session.fingerprint;
    if !shared.router.device_has_account(&device) {
        return not_allowed("pair a machine first: only a device of an account can subscribe");
    }
    if let Some(endpoint) = &request.endpoint
        && let Err(reason) = push.policy.check(endpoint)
    {
        return not_allowed(reason);
    }
    let _writer = push.writes.lock().await;
    {
        let subs = lock(&push.subs);
        if subs.get(&device) == request.endpoint.as_deref() {
            // Nothing changes: answer without writing.
            drop(subs);
            return reply(
                shared,
                session,
                encode(push.state(request.request, request.endpoint)),
            );
        }
        if request.endpoint.is_some() && !subs.has_room_for(&device) {
            drop(subs);
            return not_allowed("the relay holds its maximum of push subscriptions");
        }
    }
    if let Err(reason) = write_rate(shared, session, Instant::now()) {
        return refuse(
            shared,
            session,
            id,
            ErrorCode::RateLimited,
            PushOutcome::RateLimited,
            reason,
        );
    }
    if let Err(e) = push.append_durable(device, request.endpoint.clone()).await {
        push.warn(format_args!("cannot store a subscription change: {e}"));
        return reply(
            shared,
            session,
            error_frame(
                ErrorCode::Internal,
                id,
                "the relay could not store the subscription; try again later",
            ),
        );
    }
    lock(&push.subs).apply(device, request.endpoint.as_deref(), Instant::now());
    push.compact_if_due().await;
    reply(
        shared,
        session,
        encode(push.state(request.request, request.endpoint)),
    );
}

/// A device's `PushQuery`: the relay's key and the device's subscription.
pub(crate) fn query(shared: &Shared, session: &Session, query: PushQuery) {
    if session.role != Role::Device {
        return refuse(
            shared,
            session,
            Some(query.request),
            ErrorCode::NotAllowed,
            PushOutcome::Refused,
            "only a device has a push subscription",
        );
    }
    let push = &shared.push;
    let endpoint = lock(&push.subs)
        .get(&session.fingerprint)
        .map(str::to_string);
    reply(shared, session, encode(push.state(query.request, endpoint)));
}

/// A machine's `Push`: check, charge, queue. Never waits: the workers send it.
pub(crate) fn push(shared: &Shared, session: &Session, frame: Push) {
    let push = &shared.push;
    let refused = |code: ErrorCode, outcome: PushOutcome, reason: &str| {
        refuse(shared, session, None, code, outcome, reason)
    };
    if session.role != Role::Machine {
        return refused(
            ErrorCode::NotAllowed,
            PushOutcome::Refused,
            "only a machine sends pushes",
        );
    }
    let now = Instant::now();
    // What sending it will cost the relay (a signature, a TLS session), charged before
    // anything is looked up: the next read waits until the budget has paid for it.
    session.budget.spend(RELAY_PUSH_COST_BYTES as usize, now);
    if !shared.router.may_reach(&frame.device, &session.fingerprint) {
        return refused(
            ErrorCode::NotAllowed,
            PushOutcome::Refused,
            "that device may not reach this machine",
        );
    }
    let endpoint = match lock(&push.subs).take(&frame.device, now) {
        Ok(endpoint) => endpoint,
        Err(Take::None) => {
            return refused(
                ErrorCode::NotAllowed,
                PushOutcome::Refused,
                "that device has no push subscription on this relay",
            );
        }
        Err(Take::RateLimited) => {
            return refused(
                ErrorCode::RateLimited,
                PushOutcome::RateLimited,
                "too many pushes to that device; the push was dropped",
            );
        }
    };
    if push.held.fetch_add(1, Ordering::Relaxed) >= push.limits.push_queue_len {
        push.held.fetch_sub(1, Ordering::Relaxed);
        return refused(
            ErrorCode::Dropped,
            PushOutcome::QueueFull,
            "the relay's push queue is full; the push was dropped",
        );
    }
    let job = Job {
        device: frame.device,
        endpoint,
        urgency: frame.urgency,
        topic: frame.topic,
        ttl_secs: frame.ttl_secs,
        body: frame.body,
        attempt: 0,
        _held: Held(push.held.clone()),
    };
    // Unbounded: `held` is the bound, so this never waits and never fails while the
    // receiver (held by the service itself) lives.
    let _ = push.queue.try_send(job);
}

/// Base64url without padding, as RFC 8030 `Topic` wants it.
fn topic_text(topic: &[u8; PUSH_TOPIC_LEN]) -> String {
    URL_SAFE_NO_PAD.encode(topic)
}

/// The VAPID JWT's expiry for a push made now.
fn jwt_expiry() -> u64 {
    unix_now() + crate::limits::RELAY_PUSH_JWT_LIFETIME_SECS
}
