//! `muxagent ctl`: the terminal controller. It keeps its own identity in
//! `$MUXAGENT_HOME/controller/` and speaks the device side of the protocol
//! ([`muxagent_proto::device`]) — the same core as the web app.

pub mod link;
pub mod state;

use std::time::{Duration, Instant};

use muxagent_proto::app::{
    ApprovalRequest, ApprovalState, Cursor, Decide, Decision, DecisionBody, DeviceMessage,
    EventKind, Hello, ListSessions, MachineMessage, SendPrompt, SessionId, SessionInfo,
    SessionStatus, SignedDecision, StartSession, Stop,
};
use muxagent_proto::device::{Pairing, PairingStep};
use muxagent_proto::frame::{self, ErrorCode, Frame, RegistryEntry, SignedEntry};
use muxagent_proto::identity::Identity;
use muxagent_proto::limits::{RECONNECT_MAX_MS, RECONNECT_MIN_MS};
use muxagent_proto::ticket::Ticket;
use serde_json::json;

use crate::cli::{self, CtlCommand};
use crate::commands::CommandError;
use crate::home::Home;
use crate::{os, render};
use link::{Arrival, Conversation};
use state::{Machine, Machines};

/// How long pairing may take from link to registration.
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

struct Controller {
    home: Home,
    identity: Identity,
    machines: Machines,
}

impl Controller {
    /// Log in to `machine`'s relay as this device.
    async fn connect(
        &self,
        machine: &Machine,
    ) -> Result<muxagent_relay::client::Client, CommandError> {
        link::connect(&machine.relay, &self.identity)
            .await
            .map_err(CommandError)
    }

    /// Open a secure channel to `machine` over `client`.
    async fn open<'a>(
        &self,
        client: &'a mut muxagent_relay::client::Client,
        machine: &Machine,
        identity: muxagent_proto::identity::PublicIdentity,
    ) -> Result<Conversation<'a>, CommandError> {
        Conversation::open(client, &self.identity, identity, &machine.hostname)
            .await
            .map_err(CommandError)
    }

    fn load(home: &Home) -> Result<Self, CommandError> {
        let home = home.child("controller")?;
        let identity = home.load_or_create_identity(state::KEY_FILE, &mut os::rng())?;
        let machines = Machines::load(&home)?;
        Ok(Self {
            home,
            identity,
            machines,
        })
    }

    fn machine(
        &self,
        name: &str,
    ) -> Result<(Machine, muxagent_proto::identity::PublicIdentity), CommandError> {
        let machine = self.machines.resolve(name).map_err(CommandError)?.clone();
        let identity = machine.identity().ok_or_else(|| {
            CommandError(format!(
                "the record of {} in machines.json is damaged; pair again",
                machine.hostname
            ))
        })?;
        Ok((machine, identity))
    }
}

/// Run a `muxagent ctl` command.
pub fn run(home: &Home, command: CtlCommand) -> Result<(), CommandError> {
    let controller = Controller::load(home)?;
    smol::block_on(async move {
        match command {
            CtlCommand::Pair(pair) => pair_with(controller, &pair.link).await,
            CtlCommand::Machines(list) => machines(&controller, list.json).await,
            CtlCommand::Sessions(list) => {
                sessions(&controller, list.machine.as_deref(), list.json).await
            }
            CtlCommand::Start(start) => start_session(&controller, start).await,
            CtlCommand::Send(send) => send_prompt(&controller, send).await,
            CtlCommand::Watch(watch) => watch_session(&controller, watch).await,
            CtlCommand::Stop(stop) => stop_session(&controller, stop).await,
            CtlCommand::Revoke(revoke) => revoke_machine(controller, &revoke.machine).await,
            CtlCommand::Approvals(list) => approvals(&controller, list.json).await,
            CtlCommand::Approve(approve) => {
                let decision = if approve.always {
                    Decision::AllowAlways
                } else {
                    Decision::AllowOnce
                };
                decide(&controller, &approve.machine, &approve.request, decision).await
            }
            CtlCommand::Deny(deny) => {
                let message = deny
                    .message
                    .unwrap_or_else(|| "denied from muxagent ctl".into());
                decide(
                    &controller,
                    &deny.machine,
                    &deny.request,
                    Decision::Deny { message },
                )
                .await
            }
        }
    })
}

async fn pair_with(mut controller: Controller, link: &str) -> Result<(), CommandError> {
    let ticket = Ticket::from_link(link, os::unix_now())?;
    let relay = ticket.relay_url.to_string();
    let hostname = ticket.hostname.to_string();
    let mut client = link::connect(&relay, &controller.identity)
        .await
        .map_err(CommandError)?;
    let (mut pairing, init) = Pairing::start(&controller.identity, ticket, 1, &mut os::rng())?;
    client.send(&init).await?;
    let deadline = Instant::now() + PAIR_TIMEOUT;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let frame = smol::future::or(
            async { client.recv().await.map_err(|e| e.to_string()) },
            async {
                smol::Timer::after(wait).await;
                Err(format!(
                    "{hostname} did not answer within {} s; is its daemon running?",
                    PAIR_TIMEOUT.as_secs()
                ))
            },
        )
        .await
        .map_err(CommandError)?;
        let step = match frame {
            Frame::PairRecv(recv) => pairing.on_pair_recv(&controller.identity, &recv.payload, os::unix_now())?,
            Frame::RegistryAck(ack) => pairing.on_registry_ack(ack.request)?,
            Frame::Error(error) => return Err(CommandError(match error.code {
                ErrorCode::PairingUnknown => "the pairing link is unknown, expired or already used; run `muxagent pair` on the machine for a new one".into(),
                ErrorCode::PairingTaken => "another device is already using this pairing link".into(),
                _ => format!("the relay refused the pairing: {}", error.reason),
            })),
            _ => continue,
        };
        match step {
            PairingStep::Send(frame) => client.send(&frame).await?,
            PairingStep::Ignored => {}
            PairingStep::Paired(frame, machine) => {
                client.send(&frame).await?;
                let record =
                    Machine::new(&machine.identity, &machine.hostname, &relay, os::unix_now());
                controller.machines.add(record);
                controller.machines.save(&controller.home)?;
                println!(
                    "paired with {} ({})",
                    machine.hostname,
                    machine.identity.fingerprint()
                );
                client.close().await;
                return Ok(());
            }
        }
    }
}

async fn machines(controller: &Controller, json_out: bool) -> Result<(), CommandError> {
    let mut rows = Vec::new();
    for machine in &controller.machines.machines {
        let (online, sessions) = match list_sessions(controller, machine).await {
            Ok(list) => (true, Some(list.len())),
            Err(_) => (false, None),
        };
        rows.push((machine, online, sessions));
    }
    if json_out {
        let rows: Vec<_> = rows
            .iter()
            .map(|(m, online, sessions)| json!({ "hostname": m.hostname, "fingerprint": m.short(), "fingerprint_full": m.fingerprint, "relay": m.relay, "online": online, "sessions": sessions }))
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no machines; pair one with `muxagent ctl pair LINK`");
    }
    for (machine, online, sessions) in rows {
        let sessions = sessions.map_or(String::from("-"), |n| n.to_string());
        println!(
            "{:<20} {}  {:<8} sessions {sessions}",
            machine.hostname,
            machine.short(),
            if online { "online" } else { "offline" }
        );
    }
    Ok(())
}

async fn list_sessions(
    controller: &Controller,
    machine: &Machine,
) -> Result<Vec<SessionInfo>, CommandError> {
    let identity = machine
        .identity()
        .ok_or_else(|| CommandError("damaged machine record".into()))?;
    let mut client = controller.connect(machine).await?;
    let mut conversation = controller.open(&mut client, machine, identity).await?;
    session_list(&mut conversation).await
}

/// Ask the machine for its sessions.
async fn session_list(
    conversation: &mut Conversation<'_>,
) -> Result<Vec<SessionInfo>, CommandError> {
    let request = conversation.request_id();
    match conversation
        .ask(&ListSessions { request }.into(), request)
        .await
        .map_err(CommandError)?
    {
        MachineMessage::SessionList(list) => Ok(list.sessions),
        other => Err(CommandError(format!(
            "unexpected answer to the session list: {other:?}"
        ))),
    }
}

async fn sessions(
    controller: &Controller,
    name: Option<&str>,
    json_out: bool,
) -> Result<(), CommandError> {
    let targets: Vec<Machine> = match name {
        Some(name) => vec![controller.machine(name)?.0],
        None => controller.machines.machines.clone(),
    };
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for machine in &targets {
        match list_sessions(controller, machine).await {
            Ok(list) => rows.extend(
                list.into_iter()
                    .map(|info| (machine.hostname.clone(), info)),
            ),
            Err(error) if name.is_some() => return Err(error),
            Err(error) => failures.push(format!("{}: {error}", machine.hostname)),
        }
    }
    if json_out {
        let rows: Vec<_> = rows
            .iter()
            .map(|(host, info)| {
                let mut row = render::session_json(info);
                row["machine"] = json!(host);
                row
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        if rows.is_empty() {
            println!("no sessions");
        }
        for (host, info) in &rows {
            println!(
                "{:<16} {:<10} {:<8} {:<16} {}",
                host,
                info.id.to_string(),
                info.runtime.as_str(),
                render::status_word(info.status),
                info.title
            );
        }
    }
    for failure in failures {
        eprintln!("{failure}");
    }
    Ok(())
}

/// Find a session of `machine` by id prefix.
fn resolve_session(
    sessions: &[SessionInfo],
    prefix: &str,
    host: &str,
) -> Result<SessionId, CommandError> {
    let prefix = prefix.to_ascii_lowercase();
    let matches: Vec<&SessionInfo> = sessions
        .iter()
        .filter(|s| format!("{:#}", s.id).starts_with(&prefix))
        .collect();
    match matches.as_slice() {
        [one] if !prefix.is_empty() => Ok(one.id),
        [] | [_] => Err(CommandError(format!(
            "{host} has no session `{prefix}`; `muxagent ctl sessions {host}` lists them"
        ))),
        _ => Err(CommandError(format!(
            "`{prefix}` names more than one session on {host}; give more of its id"
        ))),
    }
}

async fn start_session(controller: &Controller, start: cli::CtlStart) -> Result<(), CommandError> {
    let (machine, identity) = controller.machine(&start.machine)?;
    let mut client = controller.connect(&machine).await?;
    let mut conversation = controller.open(&mut client, &machine, identity).await?;
    let request = conversation.request_id();
    let message =
        StartSession {
            request,
            runtime: start.runtime.as_str().try_into().map_err(|_| {
                CommandError(format!("runtime name `{}` is too long", start.runtime))
            })?,
            args: Vec::new(),
            cwd: start.cwd.clone(),
            prompt: start.prompt.join(" "),
            title: start.title.clone(),
            mode: match &start.mode {
                Some(mode) => Some(
                    mode.as_str()
                        .try_into()
                        .map_err(|_| CommandError(format!("mode `{mode}` is too long")))?,
                ),
                None => None,
            },
        };
    let answer = conversation
        .ask(&message.into(), request)
        .await
        .map_err(CommandError)?;
    let MachineMessage::Ack(ack) = answer else {
        return Err(CommandError(format!("unexpected answer {answer:?}")));
    };
    let session = ack
        .session
        .ok_or_else(|| CommandError("the machine did not name the new session".into()))?;
    if start.json {
        println!(
            "{}",
            json!({ "machine": machine.hostname, "session": format!("{session:#}") })
        );
    } else {
        println!("started session {session} on {}", machine.hostname);
        println!(
            "watch it: muxagent ctl watch {} {session}",
            machine.hostname
        );
    }
    Ok(())
}

/// Open a conversation and resolve a session id prefix.
async fn with_session<'a>(
    controller: &Controller,
    client: &'a mut muxagent_relay::client::Client,
    machine: &Machine,
    identity: muxagent_proto::identity::PublicIdentity,
    prefix: &str,
) -> Result<(Conversation<'a>, SessionId), CommandError> {
    let mut conversation = controller.open(client, machine, identity).await?;
    let sessions = session_list(&mut conversation).await?;
    let session = resolve_session(&sessions, prefix, &machine.hostname)?;
    Ok((conversation, session))
}

async fn send_prompt(controller: &Controller, send: cli::CtlSend) -> Result<(), CommandError> {
    let (machine, identity) = controller.machine(&send.machine)?;
    let mut client = controller.connect(&machine).await?;
    let (mut conversation, session) =
        with_session(controller, &mut client, &machine, identity, &send.session).await?;
    let request = conversation.request_id();
    let message = SendPrompt {
        request,
        session,
        text: send.text.join(" "),
    };
    conversation
        .ask(&message.into(), request)
        .await
        .map_err(CommandError)?;
    println!("sent to session {session} on {}", machine.hostname);
    Ok(())
}

async fn stop_session(controller: &Controller, stop: cli::CtlStop) -> Result<(), CommandError> {
    let (machine, identity) = controller.machine(&stop.machine)?;
    let mut client = controller.connect(&machine).await?;
    let (mut conversation, session) =
        with_session(controller, &mut client, &machine, identity, &stop.session).await?;
    let request = conversation.request_id();
    conversation
        .ask(&Stop { request, session }.into(), request)
        .await
        .map_err(CommandError)?;
    println!("stopping session {session} on {}", machine.hostname);
    Ok(())
}

fn finished(status: SessionStatus) -> bool {
    matches!(
        status,
        SessionStatus::Done | SessionStatus::Error | SessionStatus::Stopped
    )
}

/// Print a session's history and follow it live until it ends, reconnecting (and resuming from
/// the last event printed) when the relay or the machine goes away.
async fn watch_session(controller: &Controller, watch: cli::CtlWatch) -> Result<(), CommandError> {
    use std::io::Write;
    let (machine, identity) = controller.machine(&watch.machine)?;
    let mut last_seq = 0u64;
    let mut session: Option<SessionId> = None;
    let mut backoff = RECONNECT_MIN_MS;
    loop {
        let attempt: Result<bool, String> = async {
            let mut client = link::connect(&machine.relay, &controller.identity).await?;
            let mut conversation;
            let id = match session {
                Some(id) => {
                    conversation = Conversation::open(
                        &mut client,
                        &controller.identity,
                        identity,
                        &machine.hostname,
                    )
                    .await?;
                    id
                }
                None => {
                    let (opened, id) =
                        with_session(controller, &mut client, &machine, identity, &watch.session)
                            .await
                            .map_err(|e| e.0)?;
                    conversation = opened;
                    session = Some(id);
                    id
                }
            };
            backoff = RECONNECT_MIN_MS;
            conversation
                .send(
                    &Hello {
                        cursors: vec![Cursor {
                            session: id,
                            last_seq,
                        }],
                    }
                    .into(),
                )
                .await?;
            let mut stdout = std::io::stdout();
            loop {
                let event = match conversation.next(None).await? {
                    Arrival::Message(MachineMessage::Event(event)) => event,
                    Arrival::Message(MachineMessage::ReplayMore(more)) => {
                        conversation
                            .send(
                                &Hello {
                                    cursors: more.cursors,
                                }
                                .into(),
                            )
                            .await?;
                        continue;
                    }
                    _ => continue,
                };
                if event.session != id || event.seq <= last_seq {
                    continue;
                }
                if event.seq > last_seq + 1 && last_seq > 0 {
                    eprintln!(
                        "(events {}–{} are no longer kept on the machine)",
                        last_seq + 1,
                        event.seq - 1
                    );
                }
                last_seq = event.seq;
                if watch.json {
                    let _ = writeln!(stdout, "{}", render::event_json(&event));
                } else {
                    let _ = write!(stdout, "{}", render::event_text(&event));
                }
                let _ = stdout.flush();
                if let EventKind::Status(status) = event.kind
                    && finished(status)
                {
                    return Ok(true);
                }
            }
        }
        .await;
        match attempt {
            Ok(_) => return Ok(()),
            Err(error) if session.is_none() => return Err(CommandError(error)),
            Err(error) => {
                eprintln!("({error}; reconnecting)");
                let jitter = os::unix_now() % 2;
                smol::Timer::after(Duration::from_millis(backoff / 2 + backoff * jitter / 2)).await;
                backoff = (backoff * 2).min(RECONNECT_MAX_MS);
            }
        }
    }
}

async fn revoke_machine(mut controller: Controller, name: &str) -> Result<(), CommandError> {
    let (machine, identity) = controller.machine(name)?;
    let mut client = controller.connect(&machine).await?;
    // Best effort: tell the machine to forget this device first (it may be offline).
    if let Ok(mut conversation) = Conversation::open(
        &mut client,
        &controller.identity,
        identity,
        &machine.hostname,
    )
    .await
    {
        let request = conversation.request_id();
        let _ = conversation
            .ask(
                &DeviceMessage::ForgetDevice(muxagent_proto::app::ForgetDevice { request }),
                request,
            )
            .await;
    }
    let entry = RegistryEntry::RevokeMachine {
        device: controller.identity.public(),
        machine: identity.fingerprint(),
        at: os::unix_now(),
    };
    let signed = SignedEntry::sign(&controller.identity, &entry)?;
    client
        .send(
            &frame::Registry {
                request: 1,
                entry: signed,
            }
            .into(),
        )
        .await?;
    let deadline = Instant::now() + link::EXCHANGE_TIMEOUT;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let frame = smol::future::or(
            async { client.recv().await.map_err(|e| e.to_string()) },
            async {
                smol::Timer::after(wait).await;
                Err("the relay did not confirm the revocation".to_string())
            },
        )
        .await
        .map_err(CommandError)?;
        match frame {
            Frame::RegistryAck(ack) if ack.request == 1 => break,
            Frame::Error(error) if error.request == Some(1) => {
                return Err(CommandError(format!(
                    "the relay refused the revocation: {}",
                    error.reason
                )));
            }
            _ => {}
        }
    }
    controller
        .machines
        .machines
        .retain(|known| known.signing != machine.signing);
    controller.machines.save(&controller.home)?;
    println!(
        "revoked {} ({}): the relay refuses it from now on",
        machine.hostname,
        machine.short()
    );
    Ok(())
}

/// The approvals still pending in `sessions`, read from their history (a replay from seq 0).
async fn pending_approvals(
    conversation: &mut Conversation<'_>,
    sessions: &[SessionId],
) -> Result<Vec<(SessionId, ApprovalRequest)>, CommandError> {
    let cursors = sessions
        .iter()
        .map(|session| Cursor {
            session: *session,
            last_seq: 0,
        })
        .collect();
    conversation
        .send(&Hello { cursors }.into())
        .await
        .map_err(CommandError)?;
    let mut pending: Vec<(SessionId, ApprovalRequest)> = Vec::new();
    let deadline = Instant::now() + link::EXCHANGE_TIMEOUT;
    loop {
        match conversation
            .next(Some(deadline))
            .await
            .map_err(CommandError)?
        {
            Arrival::Message(MachineMessage::Event(event)) => match event.kind {
                EventKind::ApprovalRequested(request) => pending.push((event.session, request)),
                EventKind::ApprovalResolved { approval, .. }
                | EventKind::ApprovalState {
                    approval,
                    state:
                        ApprovalState::Withdrawn | ApprovalState::Expired | ApprovalState::Applied,
                } => pending.retain(|(session, request)| {
                    !(*session == event.session && request.approval == approval)
                }),
                _ => {}
            },
            Arrival::Message(MachineMessage::ReplayComplete(_)) => return Ok(pending),
            Arrival::Message(MachineMessage::ReplayMore(more)) => {
                let hello = Hello {
                    cursors: more.cursors,
                };
                conversation
                    .send(&hello.into())
                    .await
                    .map_err(CommandError)?;
            }
            _ => {}
        }
    }
}

async fn approvals(controller: &Controller, json_out: bool) -> Result<(), CommandError> {
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for machine in &controller.machines.machines {
        let Some(identity) = machine.identity() else {
            continue;
        };
        let result: Result<(), CommandError> = async {
            let mut client = controller.connect(machine).await?;
            let mut conversation = controller.open(&mut client, machine, identity).await?;
            let waiting: Vec<SessionId> = session_list(&mut conversation)
                .await?
                .iter()
                .filter(|s| s.pending_approvals > 0)
                .map(|s| s.id)
                .collect();
            if !waiting.is_empty() {
                for (session, request) in pending_approvals(&mut conversation, &waiting).await? {
                    rows.push((machine.hostname.clone(), session, request));
                }
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            failures.push(format!("{}: {error}", machine.hostname));
        }
    }
    if json_out {
        let rows: Vec<_> = rows
            .iter()
            .map(|(host, session, request)| json!({ "machine": host, "request": format!("{session}/{}", request.approval), "session": format!("{session:#}"), "tool": request.tool, "input": request.input }))
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        if rows.is_empty() {
            println!("no approvals waiting");
        }
        for (host, session, request) in &rows {
            println!(
                "{host:<16} {session}/{:<4} {} {}",
                request.approval, request.tool, request.input
            );
        }
    }
    for failure in failures {
        eprintln!("{failure}");
    }
    Ok(())
}

async fn decide(
    controller: &Controller,
    name: &str,
    reference: &str,
    decision: Decision,
) -> Result<(), CommandError> {
    let (machine, identity) = controller.machine(name)?;
    let (session_prefix, number) = reference
        .split_once('/')
        .and_then(|(session, number)| Some((session, number.parse::<u64>().ok()?)))
        .ok_or_else(|| {
            CommandError(format!(
                "`{reference}` is not a request; use SESSION/N as `muxagent ctl approvals` shows it"
            ))
        })?;
    let mut client = controller.connect(&machine).await?;
    let (mut conversation, session) =
        with_session(controller, &mut client, &machine, identity, session_prefix).await?;
    let pending = pending_approvals(&mut conversation, &[session]).await?;
    let request = pending
        .into_iter()
        .map(|(_, request)| request)
        .find(|request| request.approval == number)
        .ok_or_else(|| {
            CommandError(format!(
                "no approval {session}/{number} is waiting on {}",
                machine.hostname
            ))
        })?;
    let body = DecisionBody {
        session,
        approval: number,
        request_hash: request.request_hash,
        decision,
        decided_at: os::unix_now(),
    };
    let id = conversation.request_id();
    let message = Decide {
        request: id,
        decision: SignedDecision::sign(&controller.identity, body),
    };
    conversation
        .ask(&message.into(), id)
        .await
        .map_err(CommandError)?;
    println!("answered {session}/{number} on {}", machine.hostname);
    Ok(())
}
