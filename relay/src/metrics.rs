//! Counters and gauges, rendered at `/metrics` in the Prometheus text format.
//!
//! Every counter is a relaxed atomic bumped where the event happens; nothing here takes a lock
//! except [`Metrics::render`] asking the router for the registry's sizes.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Define an enum of label values with `ALL` and `label()`.
macro_rules! labels {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        $vis enum $name { $($(#[$vmeta])* $variant,)* }
        impl $name {
            const ALL: &'static [$name] = &[$($name::$variant,)*];
            /// The Prometheus label value.
            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label,)* }
            }
        }
    };
}

labels! {
    /// What a connection is, for the connection gauge.
    pub(crate) enum ConnKind {
        Handshake => "handshake",
        Device => "device",
        Machine => "machine",
        PendingMachine => "pending_machine",
    }
}

labels! {
    /// Why a login was refused.
    pub(crate) enum LoginFailure {
        BadSignature => "bad_signature",
        Version => "version",
        Deadline => "deadline",
        Revoked => "revoked",
        NotPaired => "not_paired",
        KeyConflict => "key_conflict",
        NotALogin => "not_a_login",
        Closed => "closed",
    }
}

labels! {
    /// Why a routed frame or pairing request was refused (the sender is told).
    pub(crate) enum Refusal {
        NotAllowed => "not_allowed",
        PeerOffline => "peer_offline",
        PairingUnknown => "pairing_unknown",
        PairingTaken => "pairing_taken",
        PairingLimit => "pairing_limit",
        /// Registry requests past the rate of their connection or source prefix.
        RegistryRate => "registry_rate",
    }
}

labels! {
    /// Why a frame the relay had accepted was not delivered.
    pub(crate) enum DropReason {
        /// The receiver's queue was full: the newest frame (this one) is dropped.
        QueueFull => "queue_full",
        /// An error reply to a sender whose own queue was full.
        ReplyQueueFull => "reply_queue_full",
        /// The receiver was closing.
        ReceiverClosing => "receiver_closing",
        /// The receiver's account had its queue bytes in use.
        AccountQueueFull => "account_queue_full",
        /// The relay had its queue bytes in use.
        TotalQueueFull => "total_queue_full",
    }
}

labels! {
    /// Why a connection ended.
    pub(crate) enum Disconnect {
        Closed => "closed",
        Io => "io_error",
        WriteTimeout => "write_timeout",
        PongTimeout => "pong_timeout",
        Malformed => "malformed",
        Oversized => "oversized",
        Displaced => "displaced",
        Revoked => "revoked",
        Shutdown => "shutdown",
        LoginFailed => "login_failed",
        LoginTimeout => "login_timeout",
        Handshake => "handshake_failed",
        Http => "http_only",
        /// Control frames past their rate, or a message in too many fragments.
        Flood => "flood",
        /// The receiver's queue stayed full.
        SlowReader => "slow_reader",
        /// The TCP connection ended without a WebSocket close: a client killed, a network
        /// gone, a phone put to sleep. Not the peer's fault, and not malformed.
        Reset => "reset",
    }
}

labels! {
    /// Accepted registry entries by kind.
    pub(crate) enum EntryKind {
        Register => "register",
        Revoke => "revoke",
        Unpair => "unpair",
        GrantOwner => "grant_owner",
        RevokeDevice => "revoke_device",
    }
}

labels! {
    /// HTTP requests by outcome.
    pub(crate) enum HttpKind {
        Upgrade => "upgrade",
        Healthz => "healthz",
        Metrics => "metrics",
        Page => "page",
        NotFound => "not_found",
        BadRequest => "bad_request",
    }
}

labels! {
    /// Answers to requests for the web app's files, by status.
    pub(crate) enum WebStatus {
        Ok => "200",
        NotModified => "304",
        NotFound => "404",
        /// A file that did not inflate for a client without gzip (the build rules it out).
        Error => "500",
    }
}

labels! {
    /// Why a TCP connection was closed at accept.
    pub(crate) enum CapReason {
        Total => "total_cap",
        PerPrefix => "per_prefix_cap",
        Unauthenticated => "unauthenticated_cap",
    }
}

labels! {
    /// Routed frame kinds.
    pub(crate) enum RouteKind {
        Send => "send",
        Pair => "pair",
    }
}

labels! {
    /// What became of a push or a push request.
    pub(crate) enum PushOutcome {
        /// The push service took it (2xx).
        Sent => "sent",
        /// The push service said the subscription is gone (404, 410): it was dropped.
        Gone => "gone",
        /// An attempt failed (429, 5xx, no connection) and the push was queued again.
        Retried => "retried",
        /// Given up: another 4xx, a `Retry-After` past the cap, or out of attempts.
        Failed => "failed",
        /// The push service did not answer in time.
        Timeout => "timeout",
        /// The push queue was full: the push was dropped.
        QueueFull => "queue_full",
        /// Over the device's push rate, or subscription changes over their rate.
        RateLimited => "rate_limited",
        /// A push or subscription refused (role, account, endpoint, no subscription, cap).
        Refused => "refused",
    }
}

fn counters<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

/// The relay's counters.
pub(crate) struct Metrics {
    connections: [AtomicI64; 4],
    devices_online: AtomicI64,
    accepted: AtomicU64,
    capped: [AtomicU64; 3],
    logins_ok: AtomicU64,
    logins_failed: [AtomicU64; 8],
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    routed_frames: [AtomicU64; 2],
    routed_bytes: [AtomicU64; 2],
    refused: [AtomicU64; 6],
    dropped: [AtomicU64; 5],
    disconnects: [AtomicU64; 16],
    pairings_opened: AtomicU64,
    pairings_claimed: AtomicU64,
    entries: [AtomicU64; 5],
    entries_refused: AtomicU64,
    entries_skipped_at_start: AtomicU64,
    unknown_frames: AtomicU64,
    malformed_frames: AtomicU64,
    throttled: AtomicU64,
    held: AtomicU64,
    http: [AtomicU64; 6],
    web: [AtomicU64; 4],
    push: [AtomicU64; 8],
}

/// Sizes of the registry and router at the time of a scrape.
pub(crate) struct Sizes {
    pub accounts: usize,
    pub machines: usize,
    pub revoked: usize,
    pub pairings: usize,
    /// Filled in by the server from its queue pool.
    pub queued_bytes: usize,
    /// Push subscriptions held (filled in by the server).
    pub push_subscriptions: usize,
    /// Pushes held: queued, in flight or waiting to be retried (filled in by the server).
    pub pushes_held: usize,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Metrics {
            connections: std::array::from_fn(|_| AtomicI64::new(0)),
            devices_online: AtomicI64::new(0),
            accepted: AtomicU64::new(0),
            capped: counters(),
            logins_ok: AtomicU64::new(0),
            logins_failed: counters(),
            frames_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            routed_frames: counters(),
            routed_bytes: counters(),
            refused: counters(),
            dropped: counters(),
            disconnects: counters(),
            pairings_opened: AtomicU64::new(0),
            pairings_claimed: AtomicU64::new(0),
            entries: counters(),
            entries_refused: AtomicU64::new(0),
            entries_skipped_at_start: AtomicU64::new(0),
            unknown_frames: AtomicU64::new(0),
            malformed_frames: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            held: AtomicU64::new(0),
            http: counters(),
            web: counters(),
            push: counters(),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn conn_enter(&self, kind: ConnKind) {
        self.connections[kind as usize].fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn conn_leave(&self, kind: ConnKind) {
        self.connections[kind as usize].fetch_sub(1, Ordering::Relaxed);
    }
    /// A device key's first connection came up (`true`) or its last went (`false`).
    pub(crate) fn device_online(&self, online: bool) {
        let delta = if online { 1 } else { -1 };
        self.devices_online.fetch_add(delta, Ordering::Relaxed);
    }
    pub(crate) fn accepted(&self) {
        Self::bump(&self.accepted);
    }
    pub(crate) fn capped(&self, reason: CapReason) {
        Self::bump(&self.capped[reason as usize]);
    }
    pub(crate) fn login_ok(&self) {
        Self::bump(&self.logins_ok);
    }
    pub(crate) fn login_failed(&self, reason: LoginFailure) {
        Self::bump(&self.logins_failed[reason as usize]);
    }
    pub(crate) fn frame_in(&self, bytes: usize) {
        Self::bump(&self.frames_in);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    pub(crate) fn routed(&self, kind: RouteKind, payload_bytes: usize) {
        Self::bump(&self.routed_frames[kind as usize]);
        self.routed_bytes[kind as usize].fetch_add(payload_bytes as u64, Ordering::Relaxed);
    }
    pub(crate) fn refused(&self, reason: Refusal) {
        Self::bump(&self.refused[reason as usize]);
    }
    pub(crate) fn dropped(&self, reason: DropReason) {
        Self::bump(&self.dropped[reason as usize]);
    }
    pub(crate) fn disconnect(&self, reason: Disconnect) {
        Self::bump(&self.disconnects[reason as usize]);
    }
    pub(crate) fn pairing_opened(&self) {
        Self::bump(&self.pairings_opened);
    }
    pub(crate) fn pairing_claimed(&self) {
        Self::bump(&self.pairings_claimed);
    }
    pub(crate) fn entry_accepted(&self, kind: EntryKind) {
        Self::bump(&self.entries[kind as usize]);
    }
    pub(crate) fn entry_refused(&self) {
        Self::bump(&self.entries_refused);
    }
    pub(crate) fn entry_skipped_at_start(&self) {
        Self::bump(&self.entries_skipped_at_start);
    }
    pub(crate) fn unknown_frame(&self) {
        Self::bump(&self.unknown_frames);
    }
    pub(crate) fn malformed_frame(&self) {
        Self::bump(&self.malformed_frames);
    }
    pub(crate) fn throttled(&self) {
        Self::bump(&self.throttled);
    }
    /// A sender's connection held a frame for a full receiver queue (and stopped reading).
    pub(crate) fn held(&self) {
        Self::bump(&self.held);
    }
    pub(crate) fn http(&self, kind: HttpKind) {
        Self::bump(&self.http[kind as usize]);
    }
    pub(crate) fn web(&self, status: WebStatus) {
        Self::bump(&self.web[status as usize]);
    }
    pub(crate) fn push(&self, outcome: PushOutcome) {
        Self::bump(&self.push[outcome as usize]);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub(crate) fn render(&self, sizes: &Sizes) -> String {
        let mut out = String::with_capacity(4096);
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);

        header(
            &mut out,
            "relay_connections",
            "gauge",
            "Open connections by role.",
        );
        for kind in ConnKind::ALL {
            let value = self.connections[*kind as usize]
                .load(Ordering::Relaxed)
                .max(0);
            line(
                &mut out,
                "relay_connections",
                "role",
                kind.label(),
                value as u64,
            );
        }
        header(
            &mut out,
            "relay_devices_online",
            "gauge",
            "Device keys with at least one live connection (relay_connections{role=\"device\"} counts their connections).",
        );
        plain(
            &mut out,
            "relay_devices_online",
            self.devices_online.load(Ordering::Relaxed).max(0) as u64,
        );
        header(
            &mut out,
            "relay_accepted_total",
            "counter",
            "TCP connections accepted.",
        );
        plain(&mut out, "relay_accepted_total", get(&self.accepted));
        header(
            &mut out,
            "relay_connections_refused_total",
            "counter",
            "TCP connections closed at accept by a cap.",
        );
        for reason in CapReason::ALL {
            let value = get(&self.capped[*reason as usize]);
            line(
                &mut out,
                "relay_connections_refused_total",
                "reason",
                reason.label(),
                value,
            );
        }
        header(
            &mut out,
            "relay_logins_total",
            "counter",
            "Successful logins.",
        );
        plain(&mut out, "relay_logins_total", get(&self.logins_ok));
        header(
            &mut out,
            "relay_login_failures_total",
            "counter",
            "Refused logins by reason.",
        );
        for reason in LoginFailure::ALL {
            let value = get(&self.logins_failed[*reason as usize]);
            line(
                &mut out,
                "relay_login_failures_total",
                "reason",
                reason.label(),
                value,
            );
        }
        header(
            &mut out,
            "relay_frames_in_total",
            "counter",
            "Frames read from clients.",
        );
        plain(&mut out, "relay_frames_in_total", get(&self.frames_in));
        header(
            &mut out,
            "relay_bytes_in_total",
            "counter",
            "Frame bytes read from clients.",
        );
        plain(&mut out, "relay_bytes_in_total", get(&self.bytes_in));
        header(
            &mut out,
            "relay_routed_frames_total",
            "counter",
            "Frames queued to a receiver.",
        );
        for kind in RouteKind::ALL {
            let value = get(&self.routed_frames[*kind as usize]);
            line(
                &mut out,
                "relay_routed_frames_total",
                "kind",
                kind.label(),
                value,
            );
        }
        header(
            &mut out,
            "relay_routed_bytes_total",
            "counter",
            "Payload bytes queued to a receiver.",
        );
        for kind in RouteKind::ALL {
            let value = get(&self.routed_bytes[*kind as usize]);
            line(
                &mut out,
                "relay_routed_bytes_total",
                "kind",
                kind.label(),
                value,
            );
        }
        header(
            &mut out,
            "relay_refused_total",
            "counter",
            "Frames refused, by reason.",
        );
        for reason in Refusal::ALL {
            let value = get(&self.refused[*reason as usize]);
            line(
                &mut out,
                "relay_refused_total",
                "reason",
                reason.label(),
                value,
            );
        }
        header(
            &mut out,
            "relay_dropped_total",
            "counter",
            "Frames dropped, by reason.",
        );
        for reason in DropReason::ALL {
            let value = get(&self.dropped[*reason as usize]);
            line(
                &mut out,
                "relay_dropped_total",
                "reason",
                reason.label(),
                value,
            );
        }
        header(
            &mut out,
            "relay_disconnects_total",
            "counter",
            "Connections ended, by reason.",
        );
        for reason in Disconnect::ALL {
            let value = get(&self.disconnects[*reason as usize]);
            line(
                &mut out,
                "relay_disconnects_total",
                "reason",
                reason.label(),
                value,
            );
        }
        header(
            &mut out,
            "relay_pairings_opened_total",
            "counter",
            "Pairing ids opened.",
        );
        plain(
            &mut out,
            "relay_pairings_opened_total",
            get(&self.pairings_opened),
        );
        header(
            &mut out,
            "relay_pairings_claimed_total",
            "counter",
            "Pairing ids claimed by a device.",
        );
        plain(
            &mut out,
            "relay_pairings_claimed_total",
            get(&self.pairings_claimed),
        );
        header(
            &mut out,
            "relay_registry_entries_total",
            "counter",
            "Registry entries accepted, by kind (revoke = revocations).",
        );
        for kind in EntryKind::ALL {
            let value = get(&self.entries[*kind as usize]);
            line(
                &mut out,
                "relay_registry_entries_total",
                "kind",
                kind.label(),
                value,
            );
        }
        header(
            &mut out,
            "relay_registry_refused_total",
            "counter",
            "Registry entries refused (signature, account, pairing).",
        );
        plain(
            &mut out,
            "relay_registry_refused_total",
            get(&self.entries_refused),
        );
        header(
            &mut out,
            "relay_registry_skipped_at_start_total",
            "counter",
            "Stored registry entries that failed verification when the relay started.",
        );
        plain(
            &mut out,
            "relay_registry_skipped_at_start_total",
            get(&self.entries_skipped_at_start),
        );
        header(
            &mut out,
            "relay_unknown_frames_total",
            "counter",
            "Frames of unknown kind, skipped.",
        );
        plain(
            &mut out,
            "relay_unknown_frames_total",
            get(&self.unknown_frames),
        );
        header(
            &mut out,
            "relay_malformed_frames_total",
            "counter",
            "Frames that did not decode (the connection was closed).",
        );
        plain(
            &mut out,
            "relay_malformed_frames_total",
            get(&self.malformed_frames),
        );
        header(
            &mut out,
            "relay_throttled_total",
            "counter",
            "Times a connection's inbound byte budget ran out and reading paused.",
        );
        plain(&mut out, "relay_throttled_total", get(&self.throttled));
        header(
            &mut out,
            "relay_pushback_total",
            "counter",
            "Frames a sender's connection held, reading nothing more, until a full receiver \
             queue had room (or its pushback time passed and the frame was dropped).",
        );
        plain(&mut out, "relay_pushback_total", get(&self.held));
        header(
            &mut out,
            "relay_http_requests_total",
            "counter",
            "HTTP requests by outcome.",
        );
        for kind in HttpKind::ALL {
            let value = get(&self.http[*kind as usize]);
            line(
                &mut out,
                "relay_http_requests_total",
                "kind",
                kind.label(),
                value,
            );
        }
        header(
            &mut out,
            "relay_web_responses_total",
            "counter",
            "Answers to requests for the web app's files (every path but /relay, /healthz and \
             /metrics), by status.",
        );
        for status in WebStatus::ALL {
            let value = get(&self.web[*status as usize]);
            line(
                &mut out,
                "relay_web_responses_total",
                "status",
                status.label(),
                value,
            );
        }
        header(
            &mut out,
            "relay_accounts",
            "gauge",
            "Accounts in the registry.",
        );
        plain(&mut out, "relay_accounts", sizes.accounts as u64);
        header(&mut out, "relay_machines", "gauge", "Registered machines.");
        plain(&mut out, "relay_machines", sizes.machines as u64);
        header(
            &mut out,
            "relay_revoked_keys",
            "gauge",
            "Revoked machine keys.",
        );
        plain(&mut out, "relay_revoked_keys", sizes.revoked as u64);
        header(
            &mut out,
            "relay_open_pairings",
            "gauge",
            "Pairing ids open now.",
        );
        plain(&mut out, "relay_open_pairings", sizes.pairings as u64);
        header(
            &mut out,
            "relay_queued_bytes",
            "gauge",
            "Bytes queued for receivers now, all connections together.",
        );
        plain(&mut out, "relay_queued_bytes", sizes.queued_bytes as u64);
        header(
            &mut out,
            "relay_push_total",
            "counter",
            "Pushes and push requests by outcome (retried counts attempts; the rest count \
             pushes and refused requests).",
        );
        for outcome in PushOutcome::ALL {
            let value = get(&self.push[*outcome as usize]);
            line(
                &mut out,
                "relay_push_total",
                "outcome",
                outcome.label(),
                value,
            );
        }
        header(
            &mut out,
            "relay_push_subscriptions",
            "gauge",
            "Web Push subscriptions held (one per device).",
        );
        plain(
            &mut out,
            "relay_push_subscriptions",
            sizes.push_subscriptions as u64,
        );
        header(
            &mut out,
            "relay_pushes_held",
            "gauge",
            "Pushes queued, in flight or waiting to be retried.",
        );
        plain(&mut out, "relay_pushes_held", sizes.pushes_held as u64);
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn line(out: &mut String, name: &str, label: &str, value_label: &str, value: u64) {
    let _ = writeln!(out, "{name}{{{label}=\"{value_label}\"}} {value}");
}

fn plain(out: &mut String, name: &str, value: u64) {
    let _ = writeln!(out, "{name} {value}");
}
