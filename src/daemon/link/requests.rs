//! What a paired device asks, over its channel: say `Hello` (subscribe, then be caught up),
//! list sessions and runtimes, start, prompt, interrupt and stop sessions, set a mode, decide
//! an approval, fetch an input whole, replay from a cursor, forget itself, and its push
//! settings. Every request is answered on the connection that asked ([`Route`]).
//!
//! Push notifications: a device's `SetPush` keys are checked and saved with its record,
//! `TestPush` hands a test notice to the relay before its `Ack`, and `SetForeground` tells the
//! notifier ([`super::super::notify`]) which channels have the app on screen.

use std::collections::BTreeMap;
use std::rc::Rc;

use muxagent_proto::app::{
    Ack, AppError, AppErrorCode, DeviceMessage, MachineMessage, PushKeys, Runtimes, SessionId,
    SessionList,
};
use muxagent_proto::identity::Fingerprint;
use smol::LocalExecutor;

use super::super::state::PushSettings;
use super::super::{Route, Shared, agent, approvals, runtime, webpush};
use super::DeviceSync;
use crate::{log, os};

/// Answer one message from a device's connection.
pub(super) fn on_message(
    core: &Shared,
    executor: &Rc<LocalExecutor<'static>>,
    route: Route,
    message: DeviceMessage,
) {
    let device = route.device;
    match message {
        DeviceMessage::Hello(hello) => {
            let mut c = core.borrow_mut();
            // What the device is told (the list, its new cursors) is what is durable.
            c.commit();
            c.link.generation += 1;
            let mut sync = DeviceSync {
                cursors: BTreeMap::new(),
                live: false,
                replaying: false,
                generation: c.link.generation,
            };
            // Sessions the device has no cursor for: only what happens from now on.
            for info in c.sessions.list() {
                sync.cursors.insert(info.id, info.last_seq);
            }
            for cursor in hello.cursors {
                if c.sessions.info(&cursor.session).is_some() {
                    sync.cursors.insert(cursor.session, cursor.last_seq);
                }
            }
            c.link.subscriptions.insert(route, sync);
            let list = SessionList {
                request: None,
                hostname: c.hostname.clone(),
                sessions: c.sessions.list(),
            };
            c.link.reply(route, MachineMessage::SessionList(list));
            c.link.request_replay(route);
        }
        DeviceMessage::ListSessions(request) => {
            let mut c = core.borrow_mut();
            c.commit();
            let list = SessionList {
                request: Some(request.request),
                hostname: c.hostname.clone(),
                sessions: c.sessions.list(),
            };
            c.link.reply(route, MachineMessage::SessionList(list));
        }
        DeviceMessage::ListRuntimes(request) => {
            let runtimes = runtime::installed::list();
            core.borrow().link.reply(
                route,
                MachineMessage::Runtimes(Runtimes {
                    request: request.request,
                    runtimes,
                }),
            );
        }
        DeviceMessage::StartSession(start) => {
            let request = start.request;
            let result = agent::start(core, executor, device, start);
            answer(core, route, request, result);
        }
        DeviceMessage::SendPrompt(prompt) => {
            let result =
                agent::prompt(core, executor, prompt.session, prompt.text).map(|()| prompt.session);
            answer(core, route, prompt.request, result);
        }
        DeviceMessage::Interrupt(interrupt) => {
            let result = agent::interrupt(core, interrupt.session).map(|()| interrupt.session);
            answer(core, route, interrupt.request, result);
        }
        DeviceMessage::Stop(stop) => {
            let result = agent::stop(core, executor, stop.session).map(|()| stop.session);
            answer(core, route, stop.request, result);
        }
        DeviceMessage::Decide(decide) => {
            let result = approvals::decide(core, device, decide.decision);
            answer(core, route, decide.request, result);
        }
        DeviceMessage::SetMode(set) => {
            let result =
                agent::set_mode(core, set.session, set.mode.as_str()).map(|()| set.session);
            answer(core, route, set.request, result);
        }
        DeviceMessage::Replay(replay) => {
            let mut c = core.borrow_mut();
            if c.sessions.info(&replay.session).is_none() {
                c.link.reply(
                    route,
                    refuse(
                        replay.request,
                        AppErrorCode::UnknownSession,
                        format!("no session {}", replay.session),
                    ),
                );
                return;
            }
            if let Some(sync) = c.link.subscriptions.get_mut(&route) {
                sync.cursors.insert(replay.session, replay.after_seq);
            }
            c.link.request_replay(route);
        }
        DeviceMessage::ForgetDevice(forget) => {
            let mut c = core.borrow_mut();
            c.link.reply(route, ack(forget.request, None));
            match c.device_left(&device) {
                Ok(false) => return,
                Ok(true) => {}
                Err(error) => log::error(&format!("could not forget device {device}: {error}")),
            }
            log::info(&format!("device {device} unpaired itself"));
        }
        DeviceMessage::SetPush(set) => {
            let reply = match set_push(core, device, set.push) {
                Ok(()) => ack(set.request, None),
                Err(refusal) => refuse(set.request, refusal.code(), refusal.to_string()),
            };
            core.borrow().link.reply(route, reply);
        }
        DeviceMessage::TestPush(test) => {
            let reply = match test_push(core, device) {
                Ok(()) => ack(test.request, None),
                Err(refusal) => refuse(test.request, refusal.code(), refusal.to_string()),
            };
            core.borrow().link.reply(route, reply);
        }
        DeviceMessage::SetForeground(foreground) => {
            core.borrow_mut()
                .notifier
                .set_foreground(route, foreground.visible);
        }
        DeviceMessage::FetchInput(fetch) => {
            let reply = match approvals::input_page(core, &fetch) {
                Ok(page) => MachineMessage::InputChunk(page),
                Err(refusal) => refuse(fetch.request, refusal.code(), refusal.to_string()),
            };
            core.borrow().link.reply(route, reply);
        }
        DeviceMessage::PairingComplete(_) => {}
    }
}

/// Keep (or clear) `device`'s push keys, checked, in the saved state.
fn set_push(
    core: &Shared,
    device: Fingerprint,
    push: Option<PushKeys>,
) -> Result<(), agent::Refusal> {
    if let Some(keys) = &push
        && let Err(error) = webpush::parse_key(&keys.p256dh)
    {
        return Err(agent::Refusal::BadPushKeys(error.to_string()));
    }
    let mut c = core.borrow_mut();
    let Some(record) = c.state.device_mut(&device) else {
        return Err(agent::Refusal::DeviceNotPaired(device));
    };
    record.push = push.as_ref().map(PushSettings::new);
    let home = c.home.clone();
    c.state
        .save(&home)
        .map_err(|error| agent::Refusal::PushKeysNotSaved(error.to_string()))?;
    log::info(&format!(
        "device {device} {} push notifications",
        if push.is_some() {
            "turned on"
        } else {
            "turned off"
        }
    ));
    Ok(())
}

/// Send `device` a test notification now (even while its app is on screen).
fn test_push(core: &Shared, device: Fingerprint) -> Result<(), agent::Refusal> {
    let mut c = core.borrow_mut();
    if c.state.push_keys(&device).is_none() {
        return Err(agent::Refusal::NoPushKeys);
    }
    let push = c.notifier.test(device, os::unix_now()).map_err(|limited| {
        agent::Refusal::PushRateLimited {
            retry_in_secs: limited.retry_in_secs,
        }
    })?;
    if !c.send_push(push) {
        return Err(agent::Refusal::PushNotQueued);
    }
    Ok(())
}

/// Answer a request with an ack naming its session, or with the refusal. An ack says what the
/// request logged (a prompt, a decision) is kept: what it logged is committed (fsynced) first,
/// and if the session's log could not be written the device hears that instead.
fn answer(core: &Shared, route: Route, request: u32, result: Result<SessionId, agent::Refusal>) {
    let mut core = core.borrow_mut();
    let reply = match result {
        Ok(session) => {
            core.commit();
            if core.sessions.is_suspended(&session) {
                refuse(
                    request,
                    AppErrorCode::Internal,
                    format!(
                        "session {session}'s history cannot be written on this machine (see its \
                         daemon's log); try again"
                    ),
                )
            } else {
                ack(request, Some(session))
            }
        }
        Err(refusal) => refuse(request, refusal.code(), refusal.to_string()),
    };
    core.link.reply(route, reply);
}

fn ack(request: u32, session: Option<SessionId>) -> MachineMessage {
    MachineMessage::Ack(Ack { request, session })
}

fn refuse(request: u32, code: AppErrorCode, message: String) -> MachineMessage {
    MachineMessage::Error(AppError {
        request: Some(request),
        code,
        message,
    })
}
