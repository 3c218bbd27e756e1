//! Catching a connection up: after its `Hello` (or a `Replay`, or when its queue overflowed),
//! one task per connection sends the events after its cursors a page at a time, each page
//! followed by `ReplayMore` (the device asks again) until nothing is left, then
//! `ReplayComplete`, and switches the connection to live events. A newer `Hello` (a new sync
//! generation) stops an older task.

use std::rc::Rc;

use muxagent_proto::app::{Cursor, Event, EventKind, MachineMessage, ReplayComplete, ReplayMore};
use smol::LocalExecutor;
use smol::channel::Receiver;

use super::super::{Core, Out, Route, Shared};
use super::DeviceSync;
use crate::limits::REPLAY_PAGE_EVENTS;
use crate::log;

/// Take replay requests and run one catch-up task per connection.
pub async fn replayer(
    core: Shared,
    executor: Rc<LocalExecutor<'static>>,
    requests: Receiver<(Route, u64)>,
) {
    while let Ok((route, generation)) = requests.recv().await {
        executor
            .spawn(replay(core.clone(), route, generation))
            .detach();
    }
}

/// The cursors of a device as a message field.
fn cursor_list(sync: &DeviceSync) -> Vec<Cursor> {
    sync.cursors
        .iter()
        .map(|(session, last_seq)| Cursor {
            session: *session,
            last_seq: *last_seq,
        })
        .collect()
}

/// One page of events after the device's cursors (across sessions, oldest session first),
/// advancing the cursors past it.
fn next_page(core: &mut Core, route: &Route) -> Vec<Event> {
    let ids = core.sessions.ids();
    let mut page = Vec::new();
    for id in ids {
        let Some(sync) = core.link.subscriptions.get(route) else {
            return page;
        };
        let after = sync.cursors.get(&id).copied().unwrap_or(0);
        match core.sessions.page_after(id, after) {
            Ok(events) => {
                let room = REPLAY_PAGE_EVENTS - page.len();
                page.extend(events.into_iter().take(room));
            }
            Err(error) => log::error(&format!("replay for {}: {error}", route.device)),
        }
        if let (Some(sync), Some(last)) = (core.link.subscriptions.get_mut(route), page.last())
            && last.session == id
        {
            sync.cursors.insert(id, last.seq);
        }
        if page.len() >= REPLAY_PAGE_EVENTS {
            break;
        }
    }
    page
}

/// Whether any session holds durable events after the device's cursors (those not durable yet
/// are sent by the commit that makes them so, once the device is live).
fn behind(core: &mut Core, route: &Route) -> bool {
    let Some(sync) = core.link.subscriptions.get(route) else {
        return false;
    };
    let cursors = sync.cursors.clone();
    core.sessions
        .ids()
        .iter()
        .any(|id| core.sessions.durable_seq(id) > cursors.get(id).copied().unwrap_or(0))
}

/// Catch `device` up by one page: send the events after its cursors, then `ReplayMore` (it asks
/// again) or, when nothing is left, `ReplayComplete` and switch it to live events — with no
/// await between the last look at the logs and the switch, so no event falls in between.
async fn replay(core: Shared, route: Route, generation: u64) {
    let current = |core: &Core| {
        core.link
            .subscriptions
            .get(&route)
            .is_some_and(|sync| sync.generation == generation)
    };
    let (page, outgoing) = {
        let mut c = core.borrow_mut();
        let Some(outgoing) = c.link.outgoing.clone() else {
            return;
        };
        if !current(&c) {
            return;
        }
        (next_page(&mut c, &route), outgoing)
    };
    for event in page {
        let asked = match &event.kind {
            EventKind::ApprovalRequested(request) => Some((event.session, request.approval)),
            _ => None,
        };
        if outgoing
            .send(Out::ToDevice(route, MachineMessage::Event(event)))
            .await
            .is_err()
        {
            return;
        }
        // A connection of a device the relay says is online now has the request: if it
        // still waits, it is delivered.
        if let Some((session, approval)) = asked {
            let mut c = core.borrow_mut();
            if c.link.online.contains(&route.device) {
                c.mark_delivered(session, approval);
                // Durable now, so this replay sends it too (in its next page) before it ends.
                c.commit();
            }
        }
    }
    loop {
        let waiting = {
            let mut c = core.borrow_mut();
            if !current(&c) {
                return;
            }
            let more = behind(&mut c, &route);
            let Some(sync) = c.link.subscriptions.get_mut(&route) else {
                return;
            };
            let cursors = cursor_list(sync);
            let message = if more {
                MachineMessage::ReplayMore(ReplayMore { cursors })
            } else {
                MachineMessage::ReplayComplete(ReplayComplete {
                    request: None,
                    cursors,
                })
            };
            match outgoing.try_send(Out::ToDevice(route, message)) {
                Ok(()) => {
                    sync.replaying = false;
                    sync.live = !more;
                    return;
                }
                Err(error) => error.into_inner(),
            }
        };
        // The queue is full: wait for room, then look again (events may have come meanwhile).
        if let Out::ToDevice(_, MachineMessage::ReplayComplete(_)) = &waiting {
            if outgoing.send(Out::Wake).await.is_err() {
                return;
            }
            continue;
        }
        if outgoing.send(waiting).await.is_err() {
            return;
        }
        if let Some(sync) = core
            .borrow_mut()
            .link
            .subscriptions
            .get_mut(&route)
            .filter(|sync| sync.generation == generation)
        {
            sync.replaying = false;
        }
        return;
    }
}
