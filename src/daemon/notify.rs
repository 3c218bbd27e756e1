//! What the machine notifies devices of by push, and when: sans-IO. Events come in as they are
//! logged, with the time and what the caller knows of the session; pushes to send come out
//! (their notice in plaintext: the caller encrypts each for its device, [`super::webpush`]).
//!
//! # What notifies
//!
//! - An approval is requested ([`PushKinds::APPROVALS`], urgency high). The notice carries the
//!   whole request (so the notification can offer Allow/Deny, signed over the hash the service
//!   worker recomputes) only when the encoded notice fits one push ([`MAX_NOTICE_LEN`]);
//!   otherwise its text says the input is too long to show and the notification opens the app.
//! - A plan waits for review ([`PushKinds::PLANS`]: an approval of kind plan).
//! - A session stops working ([`PushKinds::ENDED`]): it was running or waiting and becomes idle
//!   (the agent's turn is over: it waits for a prompt) or done (finished), or fails (error). A
//!   session a device stopped, and an idle session marked failed when the daemon restarts, are
//!   no news.
//!
//! # One notification per session
//!
//! Each session has at most one piece of news: its newest open approval (with how many more
//! wait), else how it ended, else nothing. The web app tags the notification with the session,
//! so a newer one replaces it in place; the push's RFC 8030 topic (a keyed hash of the session)
//! replaces an undelivered older push at the push service. When the approval a notification
//! shows is decided and another of the session still waits, that one is sent, so the phone
//! walks through them; a new prompt (the session runs again) ends the news of its last turn.
//!
//! When the approval a device was last shown for a session is decided by another device,
//! withdrawn or expired, and nothing else of the session waits, that device gets a `resolved`
//! notice for the session: its notification is replaced by how it ended instead of asking on,
//! stale. (The device that decided shows the outcome itself.)
//!
//! # Not while the app is on screen
//!
//! A device with a channel whose app said `SetForeground { visible: true }` gets nothing (the
//! app shows it all), and what waited for it is dropped. A channel that closes (the relay says
//! so, a newer channel pushes it out, the relay link drops) stops counting.
//!
//! # Rate
//!
//! Each device has a token bucket: [`NOTIFY_BURST`] at once, then one per
//! [`NOTIFY_REFILL_SECS`]. News over the rate waits, one entry per session, and whatever the
//! session's news is *when a token comes* is sent: approvals first, then the oldest waiting.
//! News that is gone by then (the approval was decided in a terminal, the session runs again)
//! is not sent at all. So nothing a person must act on is lost, and a burst of sessions never
//! buries the approval. While the relay link is down everything waits the same way and goes out
//! when it is back. A test push takes a token too, and is refused with the wait when none is
//! left.

use std::collections::{BTreeMap, BTreeSet};

use muxagent_client::words::{one_line, visible_line};
use muxagent_proto::app::{
    ApprovalId, ApprovalKind, ApprovalRequest, ApprovalState, Decision, Event, EventKind,
    PushKinds, SessionId, SessionStatus, request_hash,
};
use muxagent_proto::frame::PushUrgency;
use muxagent_proto::identity::Fingerprint;
use muxagent_proto::limits::PUSH_TOPIC_LEN;
use muxagent_proto::push::{MAX_NOTICE_LEN, NOTICE_VERSION, Notice, NoticeApproval, NoticeKind};

use super::Route;
use super::webpush::topic;
use crate::limits::{
    NOTIFY_APPROVAL_TTL_SECS, NOTIFY_BURST, NOTIFY_REFILL_SECS, NOTIFY_TEXT_CHARS,
    NOTIFY_TITLE_CHARS, NOTIFY_TTL_SECS,
};
use crate::render::{hex, input_summary};

/// What the notification of an approval too long for one push says after its summary.
pub const TOO_LONG_NOTE: &str = " — too long to show here: open the app to decide";

/// A device that wants pushes, and of what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscriber {
    pub device: Fingerprint,
    pub kinds: PushKinds,
}

/// A push to send: encrypt `notice` for `device` and hand it to the relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    pub device: Fingerprint,
    pub notice: Notice,
    pub urgency: PushUrgency,
    pub topic: Option<[u8; PUSH_TOPIC_LEN]>,
    pub ttl_secs: u32,
}

/// What the caller knows of an event's session.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The session's title.
    pub title: &'a str,
    /// Its status before the event.
    pub before: SessionStatus,
    /// The machine's policy: approvals nobody decides are denied after this many seconds.
    pub approval_expiry_secs: Option<u64>,
}

/// A test push was refused: the device's notifications are used up for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimited {
    /// Seconds until the next one may go.
    pub retry_in_secs: u64,
}

/// One open approval, ready to be told.
#[derive(Clone, Debug)]
struct Ask {
    kind: ApprovalKind,
    /// `Tool: summary`, one line, made visible.
    line: String,
    /// The whole request, when it could fit one push and its hash checks.
    whole: Option<NoticeApproval>,
    /// Unix seconds when the machine's policy expires it.
    expires_at: Option<u64>,
}

/// How a session stopped working.
#[derive(Clone, Debug)]
struct Ended {
    failed: bool,
    text: String,
}

/// What the notifier keeps of a session.
#[derive(Clone, Debug, Default)]
struct Watch {
    title: String,
    /// The last thing the agent said (or the last error), one line, made visible.
    said: String,
    asks: BTreeMap<ApprovalId, Ask>,
    ended: Option<Ended>,
    /// How the approval last shown ended, for the devices in `told` (news once).
    resolved: Option<String>,
    /// Devices whose last push of this session asked for a decision.
    told: BTreeSet<Fingerprint>,
}

impl Watch {
    fn is_empty(&self) -> bool {
        self.said.is_empty()
            && self.asks.is_empty()
            && self.ended.is_none()
            && self.resolved.is_none()
            && self.told.is_empty()
    }
}

/// A device's token bucket and the sessions whose news waits for a token.
#[derive(Clone, Debug)]
struct Budget {
    tokens: u32,
    /// When `tokens` was last brought up to date (whole refills only).
    refilled_at: u64,
    /// Waiting sessions, with when each began to wait.
    waiting: BTreeMap<SessionId, u64>,
}

impl Budget {
    fn full(now: u64) -> Self {
        Budget {
            tokens: NOTIFY_BURST,
            refilled_at: now,
            waiting: BTreeMap::new(),
        }
    }

    fn refill(&mut self, now: u64) {
        if now < self.refilled_at {
            self.refilled_at = now; // the clock went back: count from here
        }
        let earned = (now - self.refilled_at) / NOTIFY_REFILL_SECS;
        if earned > 0 {
            self.tokens = (u64::from(self.tokens) + earned).min(u64::from(NOTIFY_BURST)) as u32;
            self.refilled_at += earned * NOTIFY_REFILL_SECS;
        }
        if self.tokens == NOTIFY_BURST {
            self.refilled_at = now;
        }
    }

    fn take(&mut self, now: u64) -> bool {
        self.refill(now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// When the next token comes.
    fn next_token(&self) -> u64 {
        self.refilled_at + NOTIFY_REFILL_SECS
    }
}

/// The news of a session, resolved.
enum News<'a> {
    /// The newest open approval, and how many more wait.
    Ask(&'a Ask, usize),
    /// How the session ended.
    Ended(&'a Ended),
    /// How the approval last shown ended (only for the devices it was shown to).
    Resolved(&'a str),
}

impl News<'_> {
    /// Whether `subscriber` wants this news of `watch`.
    fn wanted_by(&self, subscriber: &Subscriber, watch: &Watch) -> bool {
        let bit = match self {
            News::Ask(ask, _) if ask.kind == ApprovalKind::Plan => PushKinds::PLANS,
            News::Ask(..) => PushKinds::APPROVALS,
            News::Ended(_) => PushKinds::ENDED,
            News::Resolved(_) => return watch.told.contains(&subscriber.device),
        };
        subscriber.kinds.has(bit)
    }
}

/// The machine's push decisions.
#[derive(Debug)]
pub struct Notifier {
    /// The machine's fingerprint, 64 hex digits.
    machine: String,
    host: String,
    topic_key: [u8; 32],
    sessions: BTreeMap<SessionId, Watch>,
    budgets: BTreeMap<Fingerprint, Budget>,
    foreground: BTreeSet<Route>,
    link_up: bool,
}

impl Notifier {
    /// A notifier for the machine `machine` called `host`, its topics keyed by `topic_key`
    /// ([`super::webpush::topic_key`]). The relay link counts as down until [`Self::link`].
    pub fn new(machine: Fingerprint, host: &str, topic_key: [u8; 32]) -> Self {
        Notifier {
            machine: machine.to_hex(),
            host: visible_line(host, NOTIFY_TITLE_CHARS),
            topic_key,
            sessions: BTreeMap::new(),
            budgets: BTreeMap::new(),
            foreground: BTreeSet::new(),
            link_up: false,
        }
    }

    /// New keys (a local reset): new fingerprint and topics; every device is forgotten.
    pub fn rekey(&mut self, machine: Fingerprint, topic_key: [u8; 32]) {
        self.machine = machine.to_hex();
        self.topic_key = topic_key;
        self.budgets.clear();
        self.foreground.clear();
    }

    /// Whether events of this kind can matter (the others need not be shown to
    /// [`Self::event`], nor the subscribers looked up for them).
    pub fn wants(kind: &EventKind) -> bool {
        matches!(
            kind,
            EventKind::Text { .. }
                | EventKind::Error { .. }
                | EventKind::Exited { .. }
                | EventKind::ApprovalRequested(_)
                | EventKind::ApprovalResolved { .. }
                | EventKind::ApprovalState { .. }
                | EventKind::Status(_)
        )
    }

    /// An event was logged: the pushes to send now.
    pub fn event(
        &mut self,
        event: &Event,
        context: Context<'_>,
        subscribers: &[Subscriber],
        now: u64,
    ) -> Vec<Push> {
        if !Self::wants(&event.kind) {
            return Vec::new();
        }
        let id = event.session;
        let watch = self.sessions.entry(id).or_default();
        let news = match &event.kind {
            EventKind::Text { text } | EventKind::Error { message: text } => {
                watch.said = visible_line(text, NOTIFY_TEXT_CHARS);
                false
            }
            EventKind::Exited { code, signal } => {
                let how = match (code, signal) {
                    (_, Some(signal)) => format!("killed by signal {signal}"),
                    (Some(code), None) if *code != 0 => format!("exited with code {code}"),
                    _ => String::new(),
                };
                if !how.is_empty() {
                    watch.said = how;
                }
                false
            }
            EventKind::ApprovalRequested(request) => {
                let ask = Ask::new(id, request, now, context.approval_expiry_secs);
                watch.asks.insert(request.approval, ask);
                watch.ended = None;
                watch.resolved = None;
                true
            }
            EventKind::ApprovalResolved { approval, .. }
            | EventKind::ApprovalState {
                approval,
                state:
                    ApprovalState::Decided
                    | ApprovalState::Applied
                    | ApprovalState::Withdrawn
                    | ApprovalState::Expired,
            } => {
                let shown = watch.asks.keys().next_back() == Some(approval);
                if let EventKind::ApprovalResolved { device, .. } = &event.kind {
                    // The device that decided knows: it shows the outcome itself.
                    watch.told.remove(device);
                }
                if let Some(ask) = watch.asks.remove(approval)
                    && shown
                    && watch.asks.is_empty()
                    && !watch.told.is_empty()
                {
                    // Nothing else waits: replace what asked with how it ended.
                    watch.resolved = Some(resolution(&ask, &event.kind));
                }
                // Another approval of the session, or how the last one ended, is news.
                shown && (!watch.asks.is_empty() || watch.resolved.is_some())
            }
            EventKind::Status(status) => {
                let working = matches!(
                    context.before,
                    SessionStatus::Running | SessionStatus::WaitingApproval
                );
                let ended = match status {
                    SessionStatus::Idle | SessionStatus::Done if working => Some(false),
                    SessionStatus::Error if working => Some(true),
                    _ => None,
                };
                if let Some(failed) = ended {
                    let text = match (watch.said.is_empty(), failed, status) {
                        (false, ..) => watch.said.clone(),
                        (true, true, _) => "failed".to_string(),
                        (true, false, SessionStatus::Idle) => {
                            "finished its turn; waits for a prompt".to_string()
                        }
                        (true, false, _) => "finished".to_string(),
                    };
                    watch.ended = Some(Ended { failed, text });
                } else {
                    watch.ended = None;
                }
                // A new turn, or the end: what the agent said before is not news of it.
                if matches!(
                    status,
                    SessionStatus::Running
                        | SessionStatus::Done
                        | SessionStatus::Error
                        | SessionStatus::Stopped
                ) {
                    watch.said.clear();
                }
                ended.is_some()
            }
            _ => false,
        };
        if news {
            watch.title = visible_line(context.title, NOTIFY_TITLE_CHARS);
            let only_told = watch.asks.is_empty() && watch.resolved.is_some();
            for subscriber in subscribers {
                if only_told && !watch.told.contains(&subscriber.device) {
                    continue;
                }
                self.budgets
                    .entry(subscriber.device)
                    .or_insert_with(|| Budget::full(now))
                    .waiting
                    .entry(id)
                    .or_insert(now);
            }
        }
        let pushes = self.flush(subscribers, now);
        self.tidy(&id);
        pushes
    }

    /// Send what waits and may go now (call at [`Self::next_due`], and after a change of the
    /// link, the foreground or the subscribers).
    pub fn flush(&mut self, subscribers: &[Subscriber], now: u64) -> Vec<Push> {
        let mut touched = Vec::new();
        // A device that no longer subscribes hears nothing; its budget stays until it is full
        // again, so turning pushes off and on does not reset the rate.
        for (device, budget) in &mut self.budgets {
            if !subscribers.iter().any(|s| s.device == *device) {
                touched.extend(std::mem::take(&mut budget.waiting).into_keys());
            }
        }
        self.budgets.retain(|device, budget| {
            budget.refill(now);
            budget.tokens < NOTIFY_BURST || subscribers.iter().any(|s| s.device == *device)
        });
        let mut chosen = Vec::new();
        if self.link_up {
            for subscriber in subscribers {
                let device = subscriber.device;
                let on_screen = self.on_screen(&device);
                let Some(budget) = self.budgets.get_mut(&device) else {
                    continue;
                };
                if on_screen {
                    touched.extend(std::mem::take(&mut budget.waiting).into_keys());
                    continue;
                }
                // Approvals first, then the oldest waiting.
                let mut order: Vec<(bool, u64, SessionId)> = budget
                    .waiting
                    .iter()
                    .map(|(id, since)| {
                        let ask = matches!(news_of(&self.sessions, id), Some(News::Ask(..)));
                        (!ask, *since, *id)
                    })
                    .collect();
                order.sort();
                for (_, _, id) in order {
                    let wanted = self.sessions.get(&id).is_some_and(|watch| {
                        news_of(&self.sessions, &id)
                            .is_some_and(|news| news.wanted_by(subscriber, watch))
                    });
                    if wanted && !budget.take(now) {
                        break;
                    }
                    budget.waiting.remove(&id);
                    touched.push(id);
                    if wanted {
                        chosen.push((device, id));
                    }
                }
            }
        }
        let pushes: Vec<(SessionId, Push)> = chosen
            .into_iter()
            .filter_map(|(device, id)| Some((id, self.push_of(device, id, now)?)))
            .collect();
        // Remember who was last asked for a decision, to tell them how it ended.
        for (id, push) in &pushes {
            if let Some(watch) = self.sessions.get_mut(id) {
                if matches!(push.notice.kind, NoticeKind::Approval | NoticeKind::Plan) {
                    watch.told.insert(push.device);
                } else {
                    watch.told.remove(&push.device);
                }
            }
        }
        let pushes = pushes.into_iter().map(|(_, push)| push).collect();
        for id in touched {
            self.tidy(&id);
        }
        pushes
    }

    /// When [`Self::flush`] may send something that waits: the next token of a device with
    /// news waiting (none while the link is down).
    pub fn next_due(&self) -> Option<u64> {
        if !self.link_up {
            return None;
        }
        self.budgets
            .values()
            .filter(|budget| !budget.waiting.is_empty())
            .map(Budget::next_token)
            .min()
    }

    /// The test notification `device` asked for: sent even while its app is on screen, but
    /// within its rate.
    pub fn test(&mut self, device: Fingerprint, now: u64) -> Result<Push, RateLimited> {
        let budget = self
            .budgets
            .entry(device)
            .or_insert_with(|| Budget::full(now));
        if !budget.take(now) {
            return Err(RateLimited {
                retry_in_secs: budget.next_token().saturating_sub(now).max(1),
            });
        }
        let notice = Notice {
            v: NOTICE_VERSION,
            kind: NoticeKind::Test,
            machine: self.machine.clone(),
            host: self.host.clone(),
            session: None,
            title: format!("Test from {}", self.host),
            text: format!("notifications from {} reach this device", self.host),
            approval: None,
            at: now,
        };
        Ok(Push {
            device,
            notice,
            urgency: PushUrgency::High,
            topic: None,
            ttl_secs: NOTIFY_TTL_SECS as u32,
        })
    }

    /// The relay link came up (`true`) or went down: while it is down nothing is sent, and
    /// no channel is on screen.
    pub fn link(&mut self, up: bool) {
        self.link_up = up;
        if !up {
            self.foreground.clear();
        }
    }

    /// A channel's app said whether it is on screen.
    pub fn set_foreground(&mut self, route: Route, visible: bool) {
        if visible {
            self.foreground.insert(route);
            if let Some(budget) = self.budgets.get_mut(&route.device) {
                budget.waiting.clear();
            }
        } else {
            self.foreground.remove(&route);
        }
    }

    /// Keep only the channels `open` says are still there.
    pub fn retain_channels(&mut self, open: impl Fn(&Route) -> bool) {
        self.foreground.retain(|route| open(route));
    }

    /// The device is gone from this machine (unpaired).
    pub fn forget_device(&mut self, device: &Fingerprint) {
        self.budgets.remove(device);
        self.foreground.retain(|route| route.device != *device);
    }

    /// Whether any channel of `device` has its app on screen.
    pub fn on_screen(&self, device: &Fingerprint) -> bool {
        self.foreground.iter().any(|route| route.device == *device)
    }

    /// The push of session `id`'s news for `device`.
    fn push_of(&self, device: Fingerprint, id: SessionId, now: u64) -> Option<Push> {
        let watch = self.sessions.get(&id)?;
        let news = news_of(&self.sessions, &id)?;
        let mut notice = Notice {
            v: NOTICE_VERSION,
            kind: NoticeKind::Approval,
            machine: self.machine.clone(),
            host: self.host.clone(),
            session: Some(format!("{id:#}")),
            title: watch.title.clone(),
            text: String::new(),
            approval: None,
            at: now,
        };
        let (urgency, ttl) = match news {
            News::Ask(ask, more) => {
                let more = match more {
                    0 => String::new(),
                    n => format!(" (+{n} more waiting)"),
                };
                notice.text = format!("{}{more}", ask.line);
                if ask.kind == ApprovalKind::Plan {
                    notice.kind = NoticeKind::Plan;
                } else {
                    notice.approval = ask.whole.clone();
                    if notice.approval.is_none() || encoded_len(&notice) > MAX_NOTICE_LEN {
                        notice.approval = None;
                        notice.text = format!("{}{TOO_LONG_NOTE}{more}", ask.line);
                    }
                }
                let ttl = match ask.expires_at {
                    Some(at) => at.saturating_sub(now).min(NOTIFY_APPROVAL_TTL_SECS),
                    None => NOTIFY_APPROVAL_TTL_SECS,
                };
                let urgency = match ask.kind {
                    ApprovalKind::Tool => PushUrgency::High,
                    ApprovalKind::Plan => PushUrgency::Normal,
                };
                (urgency, ttl)
            }
            News::Ended(ended) => {
                notice.kind = if ended.failed {
                    NoticeKind::Failed
                } else {
                    NoticeKind::Finished
                };
                notice.text = ended.text.clone();
                (PushUrgency::Normal, NOTIFY_TTL_SECS)
            }
            News::Resolved(text) => {
                notice.kind = NoticeKind::Resolved;
                notice.text = text.to_string();
                (PushUrgency::Normal, NOTIFY_TTL_SECS)
            }
        };
        Some(Push {
            device,
            notice,
            urgency,
            topic: Some(topic(&self.topic_key, &id)),
            ttl_secs: ttl as u32,
        })
    }

    /// Forget what no device waits for of session `id`: how a session ended is news once.
    fn tidy(&mut self, id: &SessionId) {
        let waited = self.budgets.values().any(|b| b.waiting.contains_key(id));
        if let Some(watch) = self.sessions.get_mut(id) {
            if !waited {
                watch.ended = None;
                watch.resolved = None;
            }
            if watch.is_empty() {
                self.sessions.remove(id);
            }
        }
    }
}

/// The news of session `id`: its newest open approval, else how it ended.
fn news_of<'a>(sessions: &'a BTreeMap<SessionId, Watch>, id: &SessionId) -> Option<News<'a>> {
    let watch = sessions.get(id)?;
    match watch.asks.iter().next_back() {
        Some((_, ask)) => Some(News::Ask(ask, watch.asks.len() - 1)),
        None => match (&watch.ended, &watch.resolved) {
            (Some(ended), _) => Some(News::Ended(ended)),
            (None, Some(resolved)) => Some(News::Resolved(resolved)),
            (None, None) => None,
        },
    }
}

/// How the approval `ask` ended, by the event that ended it, for its notification.
fn resolution(ask: &Ask, ended_by: &EventKind) -> String {
    let how = match ended_by {
        EventKind::ApprovalResolved { decision, .. } => match decision {
            Decision::AllowOnce => "Allowed",
            Decision::AllowAlways => "Allowed always",
            Decision::Deny { .. } => "Denied",
        },
        EventKind::ApprovalState {
            state: ApprovalState::Withdrawn,
            ..
        } => "Withdrawn by the agent",
        EventKind::ApprovalState {
            state: ApprovalState::Expired,
            ..
        } => "Expired",
        _ => "Decided",
    };
    // The line is visible already: cut, not escaped again.
    one_line(&format!("{how}: {}", ask.line), NOTIFY_TEXT_CHARS)
}

impl Ask {
    fn new(
        session: SessionId,
        request: &ApprovalRequest,
        now: u64,
        expiry_secs: Option<u64>,
    ) -> Self {
        let summary = input_summary(&request.input);
        let said = !summary.is_empty() && summary != "{}";
        let line = match request.kind {
            // The plan itself (its tool's name says nothing to people).
            ApprovalKind::Plan if said => summary,
            ApprovalKind::Plan => "a plan is ready for review".to_string(),
            ApprovalKind::Tool if said => format!("{}: {summary}", request.tool),
            ApprovalKind::Tool => request.tool.clone(),
        };
        // The input as logged is cut when it is very long; then the hash (over the whole)
        // does not check, and no service worker could sign for it.
        let whole = (request.input.len() < MAX_NOTICE_LEN
            && request_hash(
                &session,
                &request.agent_request,
                &request.tool,
                &request.input,
            ) == request.request_hash)
            .then(|| NoticeApproval {
                id: request.approval,
                agent_request: request.agent_request.clone(),
                tool: request.tool.clone(),
                input: request.input.clone(),
                hash: hex(&request.request_hash),
            });
        Ask {
            kind: request.kind,
            line: visible_line(&line, NOTIFY_TEXT_CHARS),
            whole,
            expires_at: expiry_secs.map(|secs| now + secs),
        }
    }
}

fn encoded_len(notice: &Notice) -> usize {
    serde_json::to_vec(notice).map_or(usize::MAX, |json| json.len())
}

#[cfg(test)]
mod tests {
    use muxagent_proto::noise::ConnectionId;

    use super::*;

    const A: SessionId = SessionId([1; 16]);
    const B: SessionId = SessionId([2; 16]);
    const T0: u64 = 1_000_000;

    fn device(n: u8) -> Fingerprint {
        Fingerprint([n; 32])
    }

    fn wants(n: u8, kinds: u8) -> Subscriber {
        Subscriber {
            device: device(n),
            kinds: PushKinds(kinds),
        }
    }

    fn route(n: u8, connection: u8) -> Route {
        Route {
            device: device(n),
            connection: ConnectionId([connection; 8]),
        }
    }

    fn notifier() -> Notifier {
        let mut notifier = Notifier::new(device(99), "laptop", [9; 32]);
        notifier.link(true);
        notifier
    }

    fn request(
        session: SessionId,
        approval: u64,
        kind: ApprovalKind,
        tool: &str,
        input: &str,
    ) -> EventKind {
        let agent_request = format!("req-{approval}");
        EventKind::ApprovalRequested(ApprovalRequest {
            approval,
            kind,
            request_hash: request_hash(&session, &agent_request, tool, input),
            agent_request,
            tool: tool.into(),
            input: input.into(),
        })
    }

    fn bash(session: SessionId, approval: u64, command: &str) -> EventKind {
        let input = serde_json::json!({ "command": command }).to_string();
        request(session, approval, ApprovalKind::Tool, "Bash", &input)
    }

    fn closed(approval: u64) -> EventKind {
        EventKind::ApprovalState {
            approval,
            state: ApprovalState::Applied,
        }
    }

    /// Feed `kind` of `session` (its status before: `before`) at `now`.
    fn feed(
        notifier: &mut Notifier,
        subscribers: &[Subscriber],
        session: SessionId,
        before: SessionStatus,
        kind: EventKind,
        now: u64,
    ) -> Vec<Push> {
        let event = Event {
            session,
            seq: 1,
            at: now,
            kind,
        };
        let context = Context {
            title: "fix the build",
            before,
            approval_expiry_secs: None,
        };
        notifier.event(&event, context, subscribers, now)
    }

    fn kinds_of(pushes: &[Push]) -> Vec<(Fingerprint, NoticeKind)> {
        pushes.iter().map(|p| (p.device, p.notice.kind)).collect()
    }

    #[test]
    fn each_kind_goes_to_the_devices_that_want_it() {
        use SessionStatus::*;
        for bits in 0..8u8 {
            let all = [wants(1, bits)];
            let has = |bit: u8| bits & bit != 0;
            let mut n = notifier();
            let pushes = feed(&mut n, &all, A, Running, bash(A, 1, "ls"), T0);
            assert_eq!(
                pushes.len(),
                usize::from(has(PushKinds::APPROVALS)),
                "{bits}"
            );
            if let Some(push) = pushes.first() {
                assert_eq!(push.notice.kind, NoticeKind::Approval);
                assert_eq!(push.urgency, PushUrgency::High);
                assert_eq!(push.ttl_secs as u64, NOTIFY_APPROVAL_TTL_SECS);
            }
            feed(&mut n, &all, A, WaitingApproval, closed(1), T0);
            let plan = request(
                A,
                2,
                ApprovalKind::Plan,
                "ExitPlanMode",
                r#"{"plan":"1. Read\n2. Fix"}"#,
            );
            let pushes = feed(&mut n, &all, A, Running, plan, T0);
            assert_eq!(pushes.len(), usize::from(has(PushKinds::PLANS)), "{bits}");
            if let Some(push) = pushes.first() {
                assert_eq!(push.notice.kind, NoticeKind::Plan);
                assert_eq!(push.notice.text, "1. Read 2. Fix");
                assert_eq!(push.notice.approval, None);
                assert_eq!(push.urgency, PushUrgency::Normal);
            }
            feed(&mut n, &all, A, WaitingApproval, closed(2), T0);
            feed(
                &mut n,
                &all,
                A,
                Running,
                EventKind::Text {
                    text: "All tests pass.".into(),
                },
                T0,
            );
            let pushes = feed(&mut n, &all, A, Running, EventKind::Status(Idle), T0);
            assert_eq!(pushes.len(), usize::from(has(PushKinds::ENDED)), "{bits}");
            if let Some(push) = pushes.first() {
                assert_eq!(push.notice.kind, NoticeKind::Finished);
                assert_eq!(push.notice.text, "All tests pass.");
                assert_eq!(push.urgency, PushUrgency::Normal);
                assert_eq!(push.ttl_secs as u64, NOTIFY_TTL_SECS);
            }
            feed(&mut n, &all, B, Idle, EventKind::Status(Running), T0);
            feed(
                &mut n,
                &all,
                B,
                Running,
                EventKind::Exited {
                    code: Some(2),
                    signal: None,
                },
                T0,
            );
            let pushes = feed(&mut n, &all, B, Running, EventKind::Status(Error), T0);
            assert_eq!(pushes.len(), usize::from(has(PushKinds::ENDED)), "{bits}");
            if let Some(push) = pushes.first() {
                assert_eq!(push.notice.kind, NoticeKind::Failed);
                assert_eq!(push.notice.text, "exited with code 2");
            }
        }
    }

    #[test]
    fn what_is_not_news() {
        use SessionStatus::*;
        let all = [wants(1, PushKinds::ALL.0)];
        let mut n = notifier();
        // A device stopped it; an idle session marked failed at a restart; idle again.
        for (before, after) in [
            (Running, Stopped),
            (Idle, Error),
            (Idle, Idle),
            (Idle, Done),
            (Idle, Running),
        ] {
            assert_eq!(
                feed(&mut n, &all, A, before, EventKind::Status(after), T0),
                vec![],
                "{before:?} → {after:?}"
            );
        }
        assert_eq!(
            feed(
                &mut n,
                &all,
                A,
                Running,
                EventKind::Text { text: "hi".into() },
                T0
            ),
            vec![]
        );
        // Done after work is news, with a default text when the agent said nothing.
        let pushes = feed(&mut n, &all, B, Running, EventKind::Status(Done), T0);
        assert_eq!(pushes[0].notice.text, "finished");
        let pushes = feed(
            &mut n,
            &all,
            B,
            WaitingApproval,
            EventKind::Status(Idle),
            T0,
        );
        assert_eq!(
            pushes[0].notice.text,
            "finished its turn; waits for a prompt"
        );
    }

    #[test]
    fn the_notice_carries_the_whole_request_and_its_hash() {
        let all = [wants(1, PushKinds::ALL.0)];
        let mut n = notifier();
        let input = r#"{"command":"cargo test","description":"run the tests"}"#;
        let pushes = feed(
            &mut n,
            &all,
            A,
            SessionStatus::Running,
            request(A, 3, ApprovalKind::Tool, "Bash", input),
            T0,
        );
        let notice = &pushes[0].notice;
        let approval = notice.approval.as_ref().expect("fits");
        assert_eq!(approval.id, 3);
        assert_eq!(approval.agent_request, "req-3");
        assert_eq!(approval.tool, "Bash");
        assert_eq!(approval.input, input);
        assert_eq!(
            approval.hash,
            hex(&request_hash(&A, "req-3", "Bash", input))
        );
        assert_eq!(notice.text, "Bash: cargo test");
        assert_eq!(notice.title, "fix the build");
        assert_eq!(notice.host, "laptop");
        assert_eq!(notice.machine, device(99).to_hex());
        assert_eq!(notice.session, Some(format!("{A:#}")));
        assert_eq!(notice.at, T0);
        assert!(encoded_len(notice) <= MAX_NOTICE_LEN);
    }

    /// The longest plain command whose whole request still fits one push, with a typical
    /// title and agent request id.
    fn longest_fitting_command() -> usize {
        let all = [wants(1, PushKinds::APPROVALS)];
        let mut n = notifier();
        let (mut fits, mut too_long) = (0, MAX_NOTICE_LEN);
        while too_long - fits > 1 {
            let len = (fits + too_long) / 2;
            let command = "x".repeat(len);
            let pushes = feed(
                &mut n,
                &all,
                A,
                SessionStatus::Running,
                bash(A, len as u64, &command),
                T0 + len as u64 * 10,
            );
            feed(
                &mut n,
                &all,
                A,
                SessionStatus::WaitingApproval,
                closed(len as u64),
                T0,
            );
            if pushes[0].notice.approval.is_some() {
                fits = len;
            } else {
                too_long = len;
            }
        }
        fits
    }

    #[test]
    fn an_input_too_long_for_one_push_opens_the_app() {
        let longest = longest_fitting_command();
        eprintln!("longest command that fits a push whole: {longest} bytes");
        assert!(longest > 3000, "{longest}");
        let all = [wants(1, PushKinds::ALL.0)];
        let mut n = notifier();
        let command = format!("echo {}", "y".repeat(5000));
        let pushes = feed(
            &mut n,
            &all,
            A,
            SessionStatus::Running,
            bash(A, 1, &command),
            T0,
        );
        let notice = &pushes[0].notice;
        assert_eq!(notice.approval, None);
        assert!(notice.text.starts_with("Bash: echo yyy"), "{}", notice.text);
        assert!(notice.text.ends_with(TOO_LONG_NOTE), "{}", notice.text);
        assert!(
            notice.text.chars().count() <= NOTIFY_TEXT_CHARS + 1 + TOO_LONG_NOTE.chars().count()
        );
        // An input the log had to cut (its hash is over the whole) is never offered for signing.
        let mut cut = match bash(A, 2, "ls") {
            EventKind::ApprovalRequested(request) => request,
            _ => unreachable!(),
        };
        cut.input.push_str("\n… (5 more bytes not shown)");
        let pushes = feed(
            &mut n,
            &all,
            A,
            SessionStatus::WaitingApproval,
            EventKind::ApprovalRequested(cut),
            T0,
        );
        assert_eq!(pushes[0].notice.approval, None);
        // Whatever the request, the notice fits.
        let wide = "界\u{202e}\"\\".repeat(2000);
        let title = "題\u{2066}".repeat(500);
        let event = Event {
            session: B,
            seq: 1,
            at: T0,
            kind: request(B, 1, ApprovalKind::Tool, &wide, &wide),
        };
        let context = Context {
            title: &title,
            before: SessionStatus::Running,
            approval_expiry_secs: None,
        };
        let pushes = n.event(&event, context, &all, T0);
        assert!(encoded_len(&pushes[0].notice) <= MAX_NOTICE_LEN);
    }

    #[test]
    fn controls_and_bidi_are_shown_not_obeyed() {
        let all = [wants(1, PushKinds::ALL.0)];
        let mut n = notifier();
        let input =
            serde_json::json!({ "command": "cat \u{202e}txt.exe\u{1b}[2J\nrm -rf /" }).to_string();
        let event = Event {
            session: A,
            seq: 1,
            at: T0,
            kind: request(A, 1, ApprovalKind::Tool, "Bash", &input),
        };
        let context = Context {
            title: "deploy \u{2067}prod",
            before: SessionStatus::Running,
            approval_expiry_secs: None,
        };
        let pushes = n.event(&event, context, &all, T0);
        let notice = &pushes[0].notice;
        assert_eq!(notice.text, "Bash: cat ⟪U+202E⟫txt.exe⟪U+001B⟫[2J rm -rf /");
        assert_eq!(notice.title, "deploy ⟪U+2067⟫prod");
        // The input to sign stays exact.
        assert_eq!(notice.approval.as_ref().expect("fits").input, input);
        let long = "\u{202e}".repeat(NOTIFY_TEXT_CHARS);
        let pushes = feed(
            &mut n,
            &all,
            B,
            SessionStatus::Running,
            bash(B, 1, &long),
            T0,
        );
        assert!(pushes[0].notice.text.chars().count() <= NOTIFY_TEXT_CHARS + 1);
        assert!(
            pushes[0].notice.text.ends_with("⟫…"),
            "{}",
            pushes[0].notice.text
        );
    }

    #[test]
    fn nothing_while_the_app_is_on_screen_until_its_channel_goes() {
        use SessionStatus::*;
        let all = [wants(1, PushKinds::ALL.0), wants(2, PushKinds::ALL.0)];
        let mut n = notifier();
        n.set_foreground(route(1, 1), true);
        n.set_foreground(route(1, 2), false);
        let pushes = feed(&mut n, &all, A, Running, bash(A, 1, "ls"), T0);
        assert_eq!(kinds_of(&pushes), vec![(device(2), NoticeKind::Approval)]);
        // Another tab going to the background does not matter; the visible one going does.
        n.set_foreground(route(1, 2), false);
        assert_eq!(
            feed(&mut n, &all, A, WaitingApproval, bash(A, 2, "ls"), T0).len(),
            1
        );
        n.set_foreground(route(1, 1), false);
        assert_eq!(
            feed(&mut n, &all, A, WaitingApproval, bash(A, 3, "ls"), T0).len(),
            2
        );
        // A channel that closes stops counting.
        n.set_foreground(route(1, 3), true);
        assert_eq!(
            feed(&mut n, &all, A, WaitingApproval, bash(A, 4, "ls"), T0).len(),
            1
        );
        n.retain_channels(|route| route.connection != ConnectionId([3; 8]));
        assert!(!n.on_screen(&device(1)));
        assert_eq!(
            feed(&mut n, &all, A, WaitingApproval, bash(A, 5, "ls"), T0).len(),
            2
        );
        // And so does every channel when the relay link drops.
        n.set_foreground(route(2, 1), true);
        n.link(false);
        n.link(true);
        assert!(!n.on_screen(&device(2)));
        // The test push ignores the screen.
        n.set_foreground(route(1, 1), true);
        let test = n.test(device(1), T0).expect("a token");
        assert_eq!(test.notice.kind, NoticeKind::Test);
        assert_eq!(test.topic, None);
        assert_eq!(test.urgency, PushUrgency::High);
    }

    #[test]
    fn one_notification_per_session_with_a_topic_of_its_own() {
        use SessionStatus::*;
        let all = [wants(1, PushKinds::ALL.0)];
        let mut n = notifier();
        let a1 = feed(&mut n, &all, A, Running, bash(A, 1, "make"), T0);
        let a2 = feed(
            &mut n,
            &all,
            A,
            WaitingApproval,
            bash(A, 2, "make install"),
            T0,
        );
        let b1 = feed(&mut n, &all, B, Running, bash(B, 1, "ls"), T0);
        assert_eq!(a1[0].topic, a2[0].topic);
        assert_ne!(a1[0].topic, b1[0].topic);
        assert_eq!(a1[0].topic, Some(topic(&[9; 32], &A)));
        assert_eq!(a2[0].notice.text, "Bash: make install (+1 more waiting)");
        // The one on show is decided: the other one that waits takes its place.
        let walked = feed(&mut n, &all, A, WaitingApproval, closed(2), T0);
        assert_eq!(walked[0].notice.text, "Bash: make");
        assert_eq!(walked[0].notice.approval.as_ref().map(|a| a.id), Some(1));
        // An older one decided: nothing to say.
        feed(&mut n, &all, B, Running, bash(B, 2, "pwd"), T0);
        assert_eq!(
            feed(&mut n, &all, B, WaitingApproval, closed(1), T0),
            vec![]
        );
        // The last one: the notification that asked says how it ended, in place.
        let resolved = feed(&mut n, &all, A, WaitingApproval, closed(1), T0);
        assert_eq!(kinds_of(&resolved), [(device(1), NoticeKind::Resolved)]);
        assert_eq!(resolved[0].notice.text, "Decided: Bash: make");
        assert_eq!(resolved[0].topic, a1[0].topic);
        assert_eq!(resolved[0].notice.approval, None);
    }

    #[test]
    fn the_devices_asked_hear_how_it_ended_and_only_they() {
        use SessionStatus::*;
        let mut n = notifier();
        let first = [wants(1, PushKinds::ALL.0)];
        feed(&mut n, &first, A, Running, bash(A, 1, "make"), T0);
        // Device 2 turns notifications on after the ask went out.
        let both = [wants(1, PushKinds::ALL.0), wants(2, PushKinds::ALL.0)];
        let decided = |approval, by| EventKind::ApprovalResolved {
            approval,
            decision: Decision::AllowOnce,
            device: device(by),
        };
        let decided = decided(1, 3);
        let told = feed(&mut n, &both, A, WaitingApproval, decided, T0);
        assert_eq!(kinds_of(&told), [(device(1), NoticeKind::Resolved)]);
        assert_eq!(told[0].notice.text, "Allowed: Bash: make");
        // Its state following the decision is no news again.
        assert_eq!(feed(&mut n, &both, A, Running, closed(1), T0), vec![]);
        // Withdrawn by the agent, told to both now asked.
        feed(&mut n, &both, A, Running, bash(A, 2, "make test"), T0);
        let withdrawn = EventKind::ApprovalState {
            approval: 2,
            state: ApprovalState::Withdrawn,
        };
        let told = feed(&mut n, &both, A, WaitingApproval, withdrawn, T0);
        assert_eq!(
            kinds_of(&told),
            [
                (device(1), NoticeKind::Resolved),
                (device(2), NoticeKind::Resolved)
            ]
        );
        assert_eq!(
            told[0].notice.text,
            "Withdrawn by the agent: Bash: make test"
        );
        // Once told, nothing is kept.
        assert!(n.sessions.is_empty());
    }

    #[test]
    fn over_the_rate_the_newest_state_of_each_session_follows_approvals_first() {
        use SessionStatus::*;
        let all = [wants(1, PushKinds::ALL.0), wants(2, PushKinds::ALL.0)];
        let mut n = notifier();
        // Device 2 spends its burst on a test push storm.
        for _ in 0..NOTIFY_BURST {
            n.test(device(2), T0).expect("within the burst");
        }
        assert_eq!(
            n.test(device(2), T0),
            Err(RateLimited {
                retry_in_secs: NOTIFY_REFILL_SECS
            })
        );
        // Sessions end: device 1 hears each at once; device 2's news waits.
        let sessions: Vec<SessionId> = (10..15).map(|n| SessionId([n; 16])).collect();
        for id in &sessions {
            let pushes = feed(&mut n, &all, *id, Running, EventKind::Status(Done), T0);
            assert_eq!(kinds_of(&pushes), vec![(device(1), NoticeKind::Finished)]);
        }
        // Session A asks twice, then the second is decided: it waits as its newest state.
        feed(&mut n, &all, A, Running, bash(A, 1, "first"), T0 + 1);
        feed(
            &mut n,
            &all,
            A,
            WaitingApproval,
            bash(A, 2, "second"),
            T0 + 1,
        );
        feed(&mut n, &all, A, WaitingApproval, closed(2), T0 + 2);
        // Session B asks and is decided before a token comes: nothing is sent for it.
        feed(&mut n, &all, B, Running, bash(B, 1, "gone"), T0 + 2);
        feed(&mut n, &all, B, WaitingApproval, closed(1), T0 + 3);

        assert_eq!(n.next_due(), Some(T0 + NOTIFY_REFILL_SECS));
        assert_eq!(n.flush(&all, T0 + NOTIFY_REFILL_SECS - 1), vec![]);
        let first = n.flush(&all, T0 + NOTIFY_REFILL_SECS);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].device, device(2));
        assert_eq!(first[0].notice.text, "Bash: first");
        // Then the ended sessions, oldest first, one token each.
        let mut heard = Vec::new();
        let mut now = T0 + NOTIFY_REFILL_SECS;
        while let Some(due) = n.next_due() {
            assert!(due > now, "the timer moves on");
            now = due;
            for push in n.flush(&all, now) {
                heard.push(push.notice.session.clone());
            }
        }
        let expected: Vec<Option<String>> =
            sessions.iter().map(|id| Some(format!("{id:#}"))).collect();
        assert_eq!(heard, expected);
        assert_eq!(now, T0 + 6 * NOTIFY_REFILL_SECS);
        // A quiet minute brings the whole burst back, no more.
        let later = now + 60 * NOTIFY_REFILL_SECS;
        for _ in 0..NOTIFY_BURST {
            n.test(device(2), later).expect("refilled");
        }
        assert!(n.test(device(2), later).is_err());
    }

    #[test]
    fn turning_pushes_off_and_on_does_not_reset_the_rate() {
        let all = [wants(1, PushKinds::ALL.0)];
        let mut n = notifier();
        for _ in 0..NOTIFY_BURST {
            n.test(device(1), T0).expect("within the burst");
        }
        n.flush(&[], T0 + 1);
        n.flush(&all, T0 + 2);
        assert!(n.test(device(1), T0 + 3).is_err());
        // Once full again, an unsubscribed device's bucket is gone.
        n.flush(&[], T0 + NOTIFY_BURST as u64 * NOTIFY_REFILL_SECS);
        assert!(n.budgets.is_empty());
    }

    #[test]
    fn news_waits_for_the_link_and_for_nobody_on_screen() {
        use SessionStatus::*;
        let all = [wants(1, PushKinds::ALL.0)];
        let mut n = notifier();
        n.link(false);
        assert_eq!(feed(&mut n, &all, A, Running, bash(A, 1, "ls"), T0), vec![]);
        assert_eq!(
            feed(&mut n, &all, B, Running, EventKind::Status(Idle), T0),
            vec![]
        );
        assert_eq!(n.next_due(), None);
        n.link(true);
        let pushes = n.flush(&all, T0 + 100);
        assert_eq!(
            kinds_of(&pushes),
            vec![
                (device(1), NoticeKind::Approval),
                (device(1), NoticeKind::Finished)
            ]
        );
        // What waits is dropped when the app comes on screen (it shows it).
        n.link(false);
        feed(
            &mut n,
            &all,
            A,
            WaitingApproval,
            bash(A, 2, "pwd"),
            T0 + 101,
        );
        n.link(true);
        n.set_foreground(route(1, 1), true);
        assert_eq!(n.flush(&all, T0 + 102), vec![]);
        n.set_foreground(route(1, 1), false);
        assert_eq!(n.flush(&all, T0 + 103), vec![]);
        // A device that turned pushes off is forgotten with what waited for it.
        n.link(false);
        feed(
            &mut n,
            &all,
            A,
            WaitingApproval,
            bash(A, 3, "pwd"),
            T0 + 104,
        );
        n.link(true);
        assert_eq!(n.flush(&[], T0 + 105), vec![]);
        assert_eq!(n.flush(&all, T0 + 106), vec![]);
    }

    #[test]
    fn an_approval_lives_at_the_push_service_until_the_policy_expires_it() {
        let all = [wants(1, PushKinds::ALL.0)];
        let mut n = notifier();
        n.link(false);
        let event = Event {
            session: A,
            seq: 1,
            at: T0,
            kind: bash(A, 1, "ls"),
        };
        let context = Context {
            title: "t",
            before: SessionStatus::Running,
            approval_expiry_secs: Some(600),
        };
        n.event(&event, context, &all, T0);
        n.link(true);
        let pushes = n.flush(&all, T0 + 100);
        assert_eq!(pushes[0].ttl_secs, 500);
    }

    #[test]
    fn state_is_forgotten_once_told() {
        use SessionStatus::*;
        let all = [wants(1, PushKinds::ALL.0)];
        let mut n = notifier();
        for n_session in 0..100u8 {
            let id = SessionId([n_session; 16]);
            feed(
                &mut n,
                &all,
                id,
                Running,
                EventKind::Text {
                    text: "done".into(),
                },
                T0,
            );
            feed(&mut n, &all, id, Running, bash(id, 1, "ls"), T0);
            feed(&mut n, &all, id, WaitingApproval, closed(1), T0);
            feed(
                &mut n,
                &all,
                id,
                WaitingApproval,
                EventKind::Status(Done),
                T0,
            );
        }
        // Past the burst the news waits; the timer sends it all, then nothing is kept.
        let mut sent = 0;
        while let Some(due) = n.next_due() {
            sent += n.flush(&all, due).len();
        }
        assert_eq!(
            sent, 97,
            "3 sessions told at once (the ask, how it was decided, how the session ended) and a \
             4th asked; the others' asks were decided before a token came: how each ended follows"
        );
        assert!(n.sessions.is_empty(), "{} sessions kept", n.sessions.len());
    }
}
