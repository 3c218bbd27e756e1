//! `muxagent ctl`: the terminal controller. It keeps its own identity in
//! `$MUXAGENT_HOME/controller/` and speaks the device side of the protocol
//! ([`muxagent_proto::device`]) — the same core as the web app.

mod devices;
pub mod link;
pub mod state;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use muxagent_proto::app::{
    ApprovalRequest, ApprovalState, Cursor, Decide, Decision, DeviceMessage, Hello, Interrupt,
    ListRuntimes, ListSessions, MachineMessage, Mode, RuntimeName, SendPrompt, SessionId,
    SessionInfo, SetMode, StartSession, Stop,
};
use muxagent_proto::device::{Pairing, PairingStep};
use muxagent_proto::frame::{self, ErrorCode, Frame, RegistryEntry, SignedEntry};
use muxagent_proto::identity::Identity;
use muxagent_proto::limits::APPROVAL_INPUT_MAX_LEN;
use muxagent_proto::ticket::Ticket;
use serde_json::json;

use crate::cli::{self, CtlCommand, CtlUntil};
use crate::commands::CommandError;
use crate::home::Home;
use crate::{os, render};
use link::{Arrival, Conversation};
use muxagent_client::backoff::Backoff;
use muxagent_client::book::Book;
use muxagent_client::decide;
use muxagent_client::history::{History, PlanError};
use muxagent_client::whole::{Assembly, Step};
use state::Machine;

/// How long pairing may take from link to registration: what any device allows it.
const PAIR_TIMEOUT: Duration = Duration::from_millis(muxagent_client::limits::PAIR_TIMEOUT_MS);

struct Controller {
    home: Home,
    identity: Identity,
    machines: Book,
}

impl Controller {
    /// Log in to `machine`'s relay as this device.
    async fn connect(
        &self,
        machine: &Machine,
    ) -> Result<muxagent_relay_client::Client, CommandError> {
        link::connect(&machine.relay, &self.identity)
            .await
            .map_err(CommandError::Relay)
    }

    /// Open a secure channel to `machine` over `client`.
    async fn open<'a>(
        &self,
        client: &'a mut muxagent_relay_client::Client,
        machine: &Machine,
        identity: muxagent_proto::identity::PublicIdentity,
    ) -> Result<Conversation<'a>, CommandError> {
        Conversation::open(client, &self.identity, identity, &machine.hostname)
            .await
            .map_err(CommandError::Relay)
    }

    fn load(home: &Home) -> Result<Self, CommandError> {
        let home = home.child("controller")?;
        let identity = home.load_or_create_identity(state::KEY_FILE, &mut os::rng())?;
        let machines = state::load(&home)?;
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
        let machine = self
            .machines
            .resolve(name)
            .map_err(|error| CommandError::Usage(error.to_string()))?
            .clone();
        let identity = machine.identity().ok_or_else(|| {
            CommandError::Damaged(format!(
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
            CtlCommand::Interrupt(interrupt) => interrupt_session(&controller, interrupt).await,
            CtlCommand::Mode(mode) => set_mode(&controller, mode).await,
            CtlCommand::Runtimes(list) => runtimes(&controller, &list.machine, list.json).await,
            CtlCommand::BenchApprovals(bench) => bench_approvals(&controller, bench).await,
            CtlCommand::Stop(stop) => stop_session(&controller, stop).await,
            CtlCommand::Revoke(revoke) => revoke_machine(controller, &revoke.machine).await,
            CtlCommand::Devices(list) => devices::list(&controller, list.json).await,
            CtlCommand::RevokeDevice(revoke) => devices::revoke(controller, &revoke.device).await,
            CtlCommand::GrantOwner(grant) => devices::grant_owner(&controller, &grant.device).await,
            CtlCommand::Approvals(list) => approvals(&controller, list.json).await,
            CtlCommand::Approve(allow) => approve(&controller, allow).await,
            CtlCommand::Deny(deny) => {
                let message = deny
                    .message
                    .unwrap_or_else(|| "denied from muxagent ctl".into());
                decide(
                    &controller,
                    &deny.machine,
                    &deny.request,
                    Answer::Deny(message),
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
        .map_err(CommandError::Relay)?;
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
        .map_err(CommandError::Relay)?;
        let step = match frame {
            Frame::PairRecv(recv) => pairing.on_pair_recv(&controller.identity, &recv.payload, os::unix_now())?,
            Frame::RegistryAck(ack) => pairing.on_registry_ack(ack.request)?,
            Frame::Error(error) => return Err(CommandError::Relay(match error.code {
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
                controller
                    .machines
                    .add(record)
                    .map_err(|error| CommandError::Usage(error.to_string()))?;
                state::save(&controller.machines, &controller.home)?;
                println!(
                    "paired with {} ({})",
                    render::visible_field(&machine.hostname),
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
        println!("{}", render::json_text(&serde_json::Value::Array(rows)));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no machines; pair one with `muxagent ctl pair LINK`");
    }
    for (machine, online, sessions) in rows {
        let sessions = sessions.map_or(String::from("-"), |n| n.to_string());
        println!(
            "{:<20} {}  {:<8} sessions {sessions}",
            render::visible_field(&machine.hostname),
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
        .ok_or_else(|| CommandError::Damaged("damaged machine record".into()))?;
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
        .map_err(CommandError::Relay)?
    {
        MachineMessage::SessionList(list) => Ok(list.sessions),
        other => Err(CommandError::Machine(format!(
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
        println!("{}", render::json_text(&serde_json::Value::Array(rows)));
    } else {
        if rows.is_empty() {
            println!("no sessions");
        }
        for (host, info) in &rows {
            println!(
                "{:<16} {:<10} {:<8} {:<16} {}",
                render::visible_field(host),
                info.id.to_string(),
                render::visible_field(info.runtime.as_str()),
                render::status_word(info.status),
                render::visible_field(&info.title)
            );
        }
    }
    for failure in failures {
        eprintln!("{}", render::visible_text(&failure));
    }
    Ok(())
}

/// Find a session of `machine` by id prefix.
fn resolve_session(
    sessions: &[SessionInfo],
    prefix: &str,
    host: &str,
) -> Result<SessionInfo, CommandError> {
    let prefix = prefix.to_ascii_lowercase();
    let matches: Vec<&SessionInfo> = sessions
        .iter()
        .filter(|s| format!("{:#}", s.id).starts_with(&prefix))
        .collect();
    match matches.as_slice() {
        [one] if !prefix.is_empty() => Ok((*one).clone()),
        [] | [_] => Err(CommandError::Usage(format!(
            "{host} has no session `{prefix}`; `muxagent ctl sessions {host}` lists them"
        ))),
        _ => Err(CommandError::Usage(format!(
            "`{prefix}` names more than one session on {host}; give more of its id"
        ))),
    }
}

/// What `ctl start` sends before any plan is added: the runtime's arguments and the text of
/// the first prompt (for `command`: the shell command line).
#[derive(Debug, PartialEq, Eq)]
struct Launch {
    args: Vec<String>,
    text: Option<String>,
}

/// Sort `ctl start`'s words and `--prompt` by runtime (see the command's help), refusing what
/// the machine would refuse later with a less helpful message.
fn launch_parts(
    runtime: &str,
    words: &[String],
    prompt: Option<String>,
    with_plan: bool,
) -> Result<Launch, String> {
    let prompt = prompt.filter(|prompt| !prompt.trim().is_empty());
    let spoken = (!words.is_empty()).then(|| words.join(" "));
    match runtime {
        "acp" if words.is_empty() => Err(
            "an acp session needs the agent's command line after the options, e.g. `-- gemini --acp`"
                .into(),
        ),
        "acp" => Ok(Launch {
            args: words.to_vec(),
            text: prompt,
        }),
        "command" if with_plan => Err(
            "--plan-from needs an agent runtime (claude, codex, gemini or acp), not `command`".into(),
        ),
        "command" => match (spoken, prompt) {
            (Some(_), Some(_)) => Err(
                "give a command session its command line once: as words or with --prompt".into(),
            ),
            (None, None) => {
                Err("a command session needs a command line, e.g. `-- ls -la`".into())
            }
            (spoken, prompt) => Ok(Launch {
                args: Vec::new(),
                text: spoken.or(prompt),
            }),
        },
        _ => {
            let text = match (spoken, prompt) {
                (Some(_), Some(_)) => {
                    return Err(
                        "give the prompt once: with --prompt or as words after the options".into(),
                    );
                }
                (spoken, prompt) => spoken.or(prompt),
            };
            if text.is_none() && !with_plan && matches!(runtime, "claude" | "codex" | "gemini") {
                return Err(format!(
                    "a {runtime} session needs a prompt: --prompt TEXT or words after the options"
                ));
            }
            Ok(Launch {
                args: Vec::new(),
                text,
            })
        }
    }
}

/// The first prompt: the plan handed off, then what the person added after a blank line.
fn first_prompt(plan: Option<&str>, text: Option<String>) -> String {
    match (plan, text) {
        (Some(plan), Some(text)) => format!("{}\n\n{text}", plan.trim_end()),
        (Some(plan), None) => plan.trim_end().to_string(),
        (None, text) => text.unwrap_or_default(),
    }
}

/// `MACHINE:SESSION` split in two.
fn plan_reference(reference: &str) -> Result<(&str, &str), CommandError> {
    reference
        .rsplit_once(':')
        .filter(|(machine, session)| !machine.is_empty() && !session.is_empty())
        .ok_or_else(|| {
            CommandError::Usage(format!(
                "`{reference}` is not MACHINE:SESSION (e.g. alpha:1a2b3c4d)"
            ))
        })
}

/// The newest approved plan of the session `reference` names, with the hostname and session.
async fn approved_plan(
    controller: &Controller,
    reference: &str,
) -> Result<(String, SessionId, String), CommandError> {
    let (name, prefix) = plan_reference(reference)?;
    let (machine, identity) = controller.machine(name)?;
    let host = machine.hostname.clone();
    let mut client = controller.connect(&machine).await?;
    let (mut conversation, info) =
        with_session(controller, &mut client, &machine, identity, prefix).await?;
    let id = info.id;
    let histories = histories(&mut conversation, &[info]).await?;
    let history = histories.get(&id).cloned().unwrap_or_default();
    match history.approved_plan() {
        Ok((_, plan)) => Ok((host, id, plan.to_string())),
        Err(PlanError::NoPlan) => Err(CommandError::Usage(format!(
            "session {id} on {host} has not proposed a plan"
        ))),
        Err(PlanError::NotApproved { approval, state }) => Err(CommandError::Usage(format!(
            "the plan of session {id} on {host} is not approved (approval {id}/{approval}: {state})"
        ))),
    }
}

async fn start_session(controller: &Controller, start: cli::CtlStart) -> Result<(), CommandError> {
    // Everything that can be checked here is, before any machine is contacted.
    let launch = launch_parts(
        &start.runtime,
        &start.words,
        start.prompt.clone(),
        start.plan_from.is_some(),
    )
    .map_err(CommandError::Usage)?;
    let runtime: RuntimeName = start.runtime.as_str().try_into().map_err(|_| {
        CommandError::Usage(format!("runtime name `{}` is too long", start.runtime))
    })?;
    let mode: Option<Mode> = match &start.mode {
        Some(mode) => Some(
            mode.as_str()
                .try_into()
                .map_err(|_| CommandError::Usage(format!("mode `{mode}` is too long")))?,
        ),
        None => None,
    };
    let (machine, identity) = controller.machine(&start.machine)?;
    let mut title = start.title.clone();
    let plan = match &start.plan_from {
        Some(reference) => {
            let (host, session, plan) = approved_plan(controller, reference).await?;
            title.get_or_insert_with(|| format!("plan from {host}:{session}"));
            Some(plan)
        }
        None => None,
    };
    let mut client = controller.connect(&machine).await?;
    let mut conversation = controller.open(&mut client, &machine, identity).await?;
    let request = conversation.request_id();
    let message = StartSession {
        request,
        runtime,
        args: launch.args,
        cwd: start.cwd.clone(),
        prompt: first_prompt(plan.as_deref(), launch.text),
        title,
        mode,
    };
    let answer = conversation
        .ask(&message.into(), request)
        .await
        .map_err(CommandError::Relay)?;
    let MachineMessage::Ack(ack) = answer else {
        return Err(CommandError::Machine(format!(
            "unexpected answer {answer:?}"
        )));
    };
    let session = ack
        .session
        .ok_or_else(|| CommandError::Machine("the machine did not name the new session".into()))?;
    if start.json {
        println!(
            "{}",
            render::json_text(
                &json!({ "machine": machine.hostname, "session": format!("{session:#}") })
            )
        );
    } else {
        let host = render::visible_field(&machine.hostname);
        println!("started session {session} on {host}");
        println!("watch it: muxagent ctl watch {host} {session}");
    }
    Ok(())
}

/// Open a conversation and resolve a session id prefix.
async fn with_session<'a>(
    controller: &Controller,
    client: &'a mut muxagent_relay_client::Client,
    machine: &Machine,
    identity: muxagent_proto::identity::PublicIdentity,
    prefix: &str,
) -> Result<(Conversation<'a>, SessionInfo), CommandError> {
    let mut conversation = controller.open(client, machine, identity).await?;
    let sessions = session_list(&mut conversation).await?;
    let session = resolve_session(&sessions, prefix, &machine.hostname)?;
    Ok((conversation, session))
}

/// Send `message` (built for the resolved session with a fresh request number) to the session
/// `prefix` names on `name`; returns the machine's hostname and the session once it is accepted.
async fn session_request(
    controller: &Controller,
    name: &str,
    prefix: &str,
    message: impl FnOnce(u32, SessionId) -> DeviceMessage,
) -> Result<(String, SessionId), CommandError> {
    let (machine, identity) = controller.machine(name)?;
    let mut client = controller.connect(&machine).await?;
    let (mut conversation, info) =
        with_session(controller, &mut client, &machine, identity, prefix).await?;
    let request = conversation.request_id();
    conversation
        .ask(&message(request, info.id), request)
        .await
        .map_err(CommandError::Relay)?;
    Ok((render::visible_field(&machine.hostname), info.id))
}

async fn send_prompt(controller: &Controller, send: cli::CtlSend) -> Result<(), CommandError> {
    let text = send.text.join(" ");
    let (host, session) = session_request(
        controller,
        &send.machine,
        &send.session,
        |request, session| {
            SendPrompt {
                request,
                session,
                text,
            }
            .into()
        },
    )
    .await?;
    println!("sent to session {session} on {host}");
    Ok(())
}

async fn stop_session(controller: &Controller, stop: cli::CtlStop) -> Result<(), CommandError> {
    let (host, session) = session_request(
        controller,
        &stop.machine,
        &stop.session,
        |request, session| Stop { request, session }.into(),
    )
    .await?;
    println!("stopping session {session} on {host}");
    Ok(())
}

async fn interrupt_session(
    controller: &Controller,
    interrupt: cli::CtlInterrupt,
) -> Result<(), CommandError> {
    let (host, session) = session_request(
        controller,
        &interrupt.machine,
        &interrupt.session,
        |request, session| Interrupt { request, session }.into(),
    )
    .await?;
    println!("interrupted session {session} on {host}");
    Ok(())
}

async fn set_mode(controller: &Controller, set: cli::CtlMode) -> Result<(), CommandError> {
    let mode: Mode = set
        .mode
        .as_str()
        .try_into()
        .map_err(|_| CommandError::Usage(format!("mode `{}` is too long", set.mode)))?;
    let (host, session) = session_request(
        controller,
        &set.machine,
        &set.session,
        |request, session| {
            SetMode {
                request,
                session,
                mode,
            }
            .into()
        },
    )
    .await?;
    println!(
        "session {session} on {host}: mode {}",
        render::visible_field(&set.mode)
    );
    Ok(())
}

async fn runtimes(controller: &Controller, name: &str, json_out: bool) -> Result<(), CommandError> {
    let (machine, identity) = controller.machine(name)?;
    let mut client = controller.connect(&machine).await?;
    let mut conversation = controller.open(&mut client, &machine, identity).await?;
    let request = conversation.request_id();
    let answer = conversation
        .ask(&ListRuntimes { request }.into(), request)
        .await
        .map_err(CommandError::Relay)?;
    let MachineMessage::Runtimes(list) = answer else {
        return Err(CommandError::Machine(format!(
            "unexpected answer to the runtime list: {answer:?}"
        )));
    };
    if json_out {
        let rows: Vec<_> = list
            .runtimes
            .iter()
            .map(|r| json!({ "name": r.name.as_str(), "available": r.available, "detail": r.detail }))
            .collect();
        println!("{}", render::json_text(&serde_json::Value::Array(rows)));
        return Ok(());
    }
    for runtime in &list.runtimes {
        println!(
            "{:<10} {:<9} {}",
            render::visible_field(runtime.name.as_str()),
            if runtime.available {
                "available"
            } else {
                "missing"
            },
            render::visible_text(&runtime.detail)
        );
    }
    Ok(())
}

/// Whether `ctl watch --until` is satisfied by the live state: `Some(Ok)` to exit 0,
/// `Some(Err)` to exit 1 (the session ended without what was awaited), `None` to keep going.
fn verdict(until: CtlUntil, history: &History) -> Option<Result<(), String>> {
    match until {
        CtlUntil::End => history.finished().then_some(Ok(())),
        CtlUntil::Idle => history.idle().then_some(Ok(())),
        CtlUntil::Approval if history.pending().next().is_some() => Some(Ok(())),
        CtlUntil::Approval => history.finished().then(|| {
            let status = history.status.map_or("finished", render::status_word);
            Err(format!("ended ({status}) with no approval waiting"))
        }),
    }
}

/// Print a session's history and follow it live until `--until` is satisfied, reconnecting
/// (and resuming from the last event printed) when the relay or the machine goes away.
async fn watch_session(controller: &Controller, watch: cli::CtlWatch) -> Result<(), CommandError> {
    use std::io::Write;
    let (machine, identity) = controller.machine(&watch.machine)?;
    let mut transcript =
        render::Transcript::new(&machine.hostname, std::io::stdout().is_terminal());
    let mut history = History::default();
    let mut last_seq = 0u64;
    let mut session: Option<SessionId> = None;
    let mut backoff = Backoff::new();
    loop {
        let attempt: Result<Result<(), String>, String> = async {
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
                    let (opened, info) =
                        with_session(controller, &mut client, &machine, identity, &watch.session)
                            .await
                            .map_err(|e| e.to_string())?;
                    conversation = opened;
                    session = Some(info.id);
                    history = History::new(Some(info.status));
                    info.id
                }
            };
            backoff.reset();
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
            // The condition is the live state's: checked once the history is in, then after
            // every live event.
            let mut live = false;
            loop {
                match conversation.next(None).await? {
                    Arrival::Message(MachineMessage::Event(event)) => {
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
                        history.apply(&event);
                        if watch.json {
                            let _ = writeln!(
                                stdout,
                                "{}",
                                render::json_text(&render::event_json(&event))
                            );
                        } else {
                            let _ = write!(stdout, "{}", transcript.event_text(&event));
                        }
                        let _ = stdout.flush();
                    }
                    Arrival::Message(MachineMessage::ReplayMore(more)) => {
                        let hello = Hello {
                            cursors: more.cursors,
                        };
                        conversation.send(&hello.into()).await?;
                        continue;
                    }
                    Arrival::Message(MachineMessage::ReplayComplete(_)) => live = true,
                    _ => continue,
                }
                if live && let Some(outcome) = verdict(watch.until, &history) {
                    return Ok(outcome);
                }
            }
        }
        .await;
        match attempt {
            Ok(outcome) => {
                if !watch.json {
                    print!("{}", transcript.finish());
                }
                return outcome.map_err(|error| {
                    let id = session.map(|id| id.to_string()).unwrap_or_default();
                    let host = render::visible_field(&machine.hostname);
                    CommandError::Machine(format!("session {id} on {host} {error}"))
                });
            }
            Err(error) if session.is_none() => return Err(CommandError::Relay(error)),
            Err(error) => {
                eprintln!("({}; reconnecting)", render::visible_text(&error));
                let random = rand_core::Rng::next_u32(&mut os::rng());
                let delay = backoff.failed(random);
                smol::Timer::after(Duration::from_millis(delay)).await;
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
        .map_err(CommandError::Relay)?;
        match frame {
            Frame::RegistryAck(ack) if ack.request == 1 => break,
            Frame::Error(error) if error.request == Some(1) => {
                return Err(CommandError::Relay(format!(
                    "the relay refused the revocation: {}",
                    error.reason
                )));
            }
            _ => {}
        }
    }
    controller.machines.remove(&identity.fingerprint());
    state::save(&controller.machines, &controller.home)?;
    println!(
        "revoked {} ({}): the relay refuses it from now on",
        render::visible_field(&machine.hostname),
        machine.short()
    );
    Ok(())
}

/// The histories of `sessions`, replayed from their first event. The deadline is per message:
/// a long history may take longer than one exchange, a silent machine may not.
async fn histories(
    conversation: &mut Conversation<'_>,
    sessions: &[SessionInfo],
) -> Result<BTreeMap<SessionId, History>, CommandError> {
    let mut histories: BTreeMap<SessionId, History> = sessions
        .iter()
        .map(|info| (info.id, History::new(Some(info.status))))
        .collect();
    let cursors = sessions
        .iter()
        .map(|info| Cursor {
            session: info.id,
            last_seq: 0,
        })
        .collect();
    conversation
        .send(&Hello { cursors }.into())
        .await
        .map_err(CommandError::Relay)?;
    loop {
        let deadline = Instant::now() + link::EXCHANGE_TIMEOUT;
        match conversation
            .next(Some(deadline))
            .await
            .map_err(CommandError::Relay)?
        {
            Arrival::Message(MachineMessage::Event(event)) => {
                if let Some(history) = histories.get_mut(&event.session) {
                    history.apply(&event);
                }
            }
            Arrival::Message(MachineMessage::ReplayComplete(_)) => return Ok(histories),
            Arrival::Message(MachineMessage::ReplayMore(more)) => {
                let hello = Hello {
                    cursors: more.cursors,
                };
                conversation
                    .send(&hello.into())
                    .await
                    .map_err(CommandError::Relay)?;
            }
            _ => {}
        }
    }
}

/// `request` of `session`, with its whole input fetched from the machine when its event carried
/// it cut (checked against its hash), so it can be shown and allowed. As it came (cut) when the
/// machine does not give it whole (longer than a device fetches): it can then only be denied.
async fn with_whole_input(
    conversation: &mut Conversation<'_>,
    session: SessionId,
    request: ApprovalRequest,
) -> ApprovalRequest {
    if decide::digest(session, &request).is_some() {
        return request;
    }
    match whole_input(conversation, session, &request).await {
        Ok(whole) => whole,
        Err(why) => {
            eprintln!(
                "the input of {session}/{} stays cut: {}",
                request.approval,
                render::visible_text(&why)
            );
            request
        }
    }
}

/// Fetch the whole input of `request` a page at a time.
async fn whole_input(
    conversation: &mut Conversation<'_>,
    session: SessionId,
    request: &ApprovalRequest,
) -> Result<ApprovalRequest, String> {
    let mut assembly = Assembly::new(session, request.approval);
    loop {
        let id = conversation.request_id();
        let ask = assembly.ask(id);
        let MachineMessage::InputChunk(chunk) = conversation.ask(&ask.into(), id).await? else {
            return Err("the machine answered something else".into());
        };
        match assembly.take(chunk).map_err(|error| error.to_string())? {
            Step::More { .. } => {}
            Step::Whole(input) => {
                return decide::whole(session, request, input).map_err(|error| error.to_string());
            }
        }
    }
}

/// One waiting approval, as `ctl approvals` lists it.
struct Waiting {
    host: String,
    info: SessionInfo,
    request: muxagent_proto::app::ApprovalRequest,
    state: &'static str,
}

/// The approvals waiting on `machine`, from the histories of its sessions that have any.
async fn waiting_on(
    controller: &Controller,
    machine: &Machine,
) -> Result<Vec<Waiting>, CommandError> {
    let identity = machine
        .identity()
        .ok_or_else(|| CommandError::Damaged("damaged machine record".into()))?;
    let mut client = controller.connect(machine).await?;
    let mut conversation = controller.open(&mut client, machine, identity).await?;
    let sessions: Vec<SessionInfo> = session_list(&mut conversation)
        .await?
        .into_iter()
        .filter(|info| info.pending_approvals > 0)
        .collect();
    if sessions.is_empty() {
        return Ok(Vec::new());
    }
    let histories = histories(&mut conversation, &sessions).await?;
    let mut rows = Vec::new();
    for info in sessions {
        let Some(history) = histories.get(&info.id) else {
            continue;
        };
        for approval in history.approvals.values().filter(|a| a.pending()) {
            if let (Some(request), Some(state)) = (&approval.request, approval.state) {
                let request = with_whole_input(&mut conversation, info.id, request.clone()).await;
                rows.push(Waiting {
                    host: machine.hostname.clone(),
                    info: info.clone(),
                    request,
                    state: render::approval_state_word(state),
                });
            }
        }
    }
    Ok(rows)
}

async fn approvals(controller: &Controller, json_out: bool) -> Result<(), CommandError> {
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for machine in &controller.machines.machines {
        match waiting_on(controller, machine).await {
            Ok(found) => rows.extend(found),
            Err(error) => failures.push(format!("{}: {error}", machine.hostname)),
        }
    }
    if json_out {
        let rows: Vec<_> = rows
            .iter()
            .map(|row| {
                let request = &row.request;
                let digest = decide::digest(row.info.id, request);
                json!({
                    "machine": row.host,
                    "request": format!("{}/{}", row.info.id, request.approval),
                    "session": format!("{:#}", row.info.id),
                    "approval": request.approval,
                    "kind": render::approval_kind_word(request.kind),
                    "state": row.state,
                    "tool": request.tool,
                    "input": request.input,
                    "complete": digest.is_some(),
                    "digest": digest,
                    "summary": render::input_summary(&request.input),
                    "title": row.info.title,
                })
            })
            .collect();
        println!("{}", render::json_text(&serde_json::Value::Array(rows)));
    } else {
        if rows.is_empty() {
            println!("no approvals waiting");
        }
        for (index, row) in rows.iter().enumerate() {
            if index > 0 {
                println!();
            }
            print!(
                "{}",
                render::approval_block(
                    &row.host,
                    &row.info.title,
                    row.info.id,
                    &row.request,
                    row.state,
                    true
                )
            );
        }
    }
    for failure in failures {
        eprintln!("{}", render::visible_text(&failure));
    }
    Ok(())
}

/// Whether `digest` (as the person typed it) is `expected`'s: 16 hex digits, any case.
fn digest_matches(digest: &str, expected: &str) -> bool {
    let digest = digest.trim();
    digest.len() == decide::DIGEST_HEX && digest.eq_ignore_ascii_case(expected)
}

/// Whether the person's answer to "sign?" is yes.
fn confirmed(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// A pending approval as the machine has it now.
struct Pending {
    /// The machine's hostname, made visible.
    host: String,
    session: SessionId,
    title: String,
    request: ApprovalRequest,
    state: ApprovalState,
}

impl Pending {
    fn reference(&self) -> String {
        format!("{}/{}", self.session, self.request.approval)
    }
}

/// Open a conversation with the machine `name` and find the pending approval `reference`
/// (`SESSION/N`) in its session's history.
async fn open_request<'a>(
    controller: &Controller,
    client: &'a mut muxagent_relay_client::Client,
    machine: &Machine,
    identity: muxagent_proto::identity::PublicIdentity,
    reference: &str,
) -> Result<(Conversation<'a>, Pending), CommandError> {
    let host = render::visible_field(&machine.hostname);
    let (session_prefix, number) = reference
        .split_once('/')
        .and_then(|(session, number)| Some((session, number.parse::<u64>().ok()?)))
        .ok_or_else(|| {
            CommandError::Usage(format!(
                "`{}` is not a request; use SESSION/N as `muxagent ctl approvals` shows it",
                render::visible_field(reference)
            ))
        })?;
    let (mut conversation, info) =
        with_session(controller, client, machine, identity, session_prefix).await?;
    let session = info.id;
    let title = info.title.clone();
    let histories = histories(&mut conversation, &[info]).await?;
    let approval = histories
        .get(&session)
        .and_then(|history| history.approvals.get(&number))
        .filter(|approval| approval.request.is_some())
        .ok_or_else(|| {
            CommandError::Usage(format!(
                "session {session} on {host} has no approval {number}; `muxagent ctl approvals` lists the waiting ones"
            ))
        })?;
    match (&approval.request, approval.state) {
        (Some(request), Some(state)) if approval.pending() => {
            let request = with_whole_input(&mut conversation, session, request.clone()).await;
            let pending = Pending {
                host,
                session,
                title,
                request,
                state,
            };
            Ok((conversation, pending))
        }
        _ => Err(CommandError::Usage(format!(
            "approval {session}/{number} on {host} is no longer pending ({})",
            approval.describe()
        ))),
    }
}

/// Nothing is signed for an input the machine sent cut.
fn cut(pending: &Pending) -> CommandError {
    CommandError::NotSigned(format!(
        "nothing was signed: {host} did not give the whole input of {reference} (a device fetches at most {max} KiB), so no one here has seen all of what the agent asked to run; deny it (`muxagent ctl deny {host} {reference}`)",
        reference = pending.reference(),
        host = pending.host,
        max = APPROVAL_INPUT_MAX_LEN / 1024,
    ))
}

/// Show the pending approval `reference` whole on the terminal and ask whether to sign
/// `decision` for it; its digest when the person says yes. The connection is closed while
/// the person reads.
async fn ask_person(
    controller: &Controller,
    name: &str,
    reference: &str,
    decision: &Decision,
) -> Result<String, CommandError> {
    use std::io::{BufRead, Write};
    let (machine, identity) = controller.machine(name)?;
    let pending = {
        let mut client = controller.connect(&machine).await?;
        open_request(controller, &mut client, &machine, identity, reference)
            .await?
            .1
    };
    let digest = decide::digest(pending.session, &pending.request);
    let block = render::approval_block(
        &machine.hostname,
        &pending.title,
        pending.session,
        &pending.request,
        render::approval_state_word(pending.state),
        false,
    );
    let mut stdout = std::io::stdout();
    let _ = write!(stdout, "{block}");
    let Some(digest) = digest else {
        return Err(cut(&pending));
    };
    let _ = write!(
        stdout,
        "Sign \"{}\" for exactly this? Type yes to sign: ",
        render::decision_text(decision)
    );
    let _ = stdout.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(CommandError::io("could not read the answer"))?;
    if confirmed(&answer) {
        Ok(digest)
    } else {
        Err(CommandError::NotSigned("nothing was signed".into()))
    }
}

async fn approve(controller: &Controller, approve: cli::CtlApprove) -> Result<(), CommandError> {
    let decision = if approve.always {
        Decision::AllowAlways
    } else {
        Decision::AllowOnce
    };
    let digest = match approve.digest {
        Some(digest) => digest,
        None if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() => {
            ask_person(controller, &approve.machine, &approve.request, &decision).await?
        }
        None => {
            return Err(CommandError::NotSigned(
                "nothing was signed: without a terminal to confirm on, pass --digest DIGEST as `muxagent ctl approvals` printed it for this request".into(),
            ));
        }
    };
    decide(
        controller,
        &approve.machine,
        &approve.request,
        Answer::Allow(decision, digest),
    )
    .await
}

/// What `ctl approve` or `ctl deny` answers: allow what has this digest, or deny.
enum Answer {
    Allow(Decision, String),
    Deny(String),
}

async fn decide(
    controller: &Controller,
    name: &str,
    reference: &str,
    answer: Answer,
) -> Result<(), CommandError> {
    let (machine, identity) = controller.machine(name)?;
    let mut client = controller.connect(&machine).await?;
    let (mut conversation, pending) =
        open_request(controller, &mut client, &machine, identity, reference).await?;
    let (session, request) = (pending.session, &pending.request);
    let now = os::unix_now();
    let signed = match answer {
        Answer::Deny(message) => decide::deny(&controller.identity, session, request, message, now),
        Answer::Allow(decision, given) => {
            let digest = decide::digest(session, request).ok_or_else(|| cut(&pending))?;
            if !digest_matches(&given, &digest) {
                return Err(CommandError::NotSigned(format!(
                    "nothing was signed: `{}` is not the digest of {} on {} as it stands; look at it again with `muxagent ctl approvals`",
                    render::visible_field(&given),
                    pending.reference(),
                    pending.host,
                )));
            }
            // What is signed is the hash recomputed from the input whose digest was quoted.
            decide::sign(
                &controller.identity,
                session,
                request,
                &request.input,
                decision,
                now,
            )
            .map_err(|error| {
                CommandError::NotSigned(format!(
                    "{} on {}: {error}",
                    pending.reference(),
                    pending.host
                ))
            })?
        }
    };
    let answer = render::decision_text(&signed.body.decision);
    let id = conversation.request_id();
    let message = Decide {
        request: id,
        decision: signed,
    };
    conversation
        .ask(&message.into(), id)
        .await
        .map_err(CommandError::Relay)?;
    println!(
        "answered {} on {}: {}",
        pending.reference(),
        pending.host,
        render::visible_text(&answer)
    );
    Ok(())
}

/// Allow each approval of a session as it arrives, over one connection (like a phone that
/// stays open), until `count` were acknowledged.
async fn bench_approvals(
    controller: &Controller,
    bench: cli::CtlBenchApprovals,
) -> Result<(), CommandError> {
    let (machine, identity) = controller.machine(&bench.machine)?;
    let host = machine.hostname.clone();
    let mut client = controller.connect(&machine).await?;
    let (mut conversation, info) =
        with_session(controller, &mut client, &machine, identity, &bench.session).await?;
    let session = info.id;
    let mut history = History::new(Some(info.status));
    let hello = Hello {
        cursors: vec![Cursor {
            session,
            last_seq: 0,
        }],
    };
    conversation
        .send(&hello.into())
        .await
        .map_err(CommandError::Relay)?;
    let count = bench.count as usize;
    let mut decided: BTreeMap<u64, u32> = BTreeMap::new();
    let mut acknowledged = 0usize;
    let mut live = false;
    while acknowledged < count {
        match conversation.next(None).await.map_err(CommandError::Relay)? {
            Arrival::Message(MachineMessage::Event(event)) if event.session == session => {
                history.apply(&event);
            }
            Arrival::Message(MachineMessage::ReplayMore(more)) => {
                let hello = Hello {
                    cursors: more.cursors,
                };
                conversation
                    .send(&hello.into())
                    .await
                    .map_err(CommandError::Relay)?;
                continue;
            }
            Arrival::Message(MachineMessage::ReplayComplete(_)) => live = true,
            Arrival::Message(MachineMessage::Ack(ack))
                if decided.values().any(|request| *request == ack.request) =>
            {
                acknowledged += 1;
                continue;
            }
            Arrival::Message(MachineMessage::Error(error)) => {
                return Err(CommandError::Machine(format!("{host}: {}", error.message)));
            }
            _ => continue,
        }
        if !live {
            continue;
        }
        let asks: Vec<_> = history
            .pending()
            .filter(|request| !decided.contains_key(&request.approval))
            .cloned()
            .collect();
        for request in asks.into_iter().take(count - decided.len().min(count)) {
            let signed = decide::sign(
                &controller.identity,
                session,
                &request,
                &request.input,
                Decision::AllowOnce,
                os::unix_now(),
            )
            .map_err(|error| CommandError::NotSigned(format!("{host}: {error}")))?;
            let id = conversation.request_id();
            let message = Decide {
                request: id,
                decision: signed,
            };
            conversation
                .send(&message.into())
                .await
                .map_err(CommandError::Relay)?;
            decided.insert(request.approval, id);
        }
        if history.finished() && decided.len() == acknowledged {
            return Err(CommandError::Machine(format!(
                "session {session} on {host} ended after {acknowledged} of {count} approvals"
            )));
        }
    }
    println!(
        "allowed {acknowledged} approvals in session {session} on {}",
        render::visible_field(&host)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use muxagent_proto::app::{
        ApprovalKind, ApprovalRequest, ApprovalState, Event, EventKind, SessionStatus, Usage,
    };

    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn acp_takes_the_words_as_its_command_line() {
        assert_eq!(
            launch_parts("acp", &words("gemini --acp"), Some("hi".into()), false),
            Ok(Launch {
                args: words("gemini --acp"),
                text: Some("hi".into())
            })
        );
        let error = launch_parts("acp", &[], Some("hi".into()), false).unwrap_err();
        assert!(error.contains("command line"), "{error}");
    }

    #[test]
    fn command_runs_the_words_with_sh() {
        assert_eq!(
            launch_parts("command", &words("ls -la"), None, false),
            Ok(Launch {
                args: vec![],
                text: Some("ls -la".into())
            })
        );
        assert_eq!(
            launch_parts("command", &[], Some("echo hi".into()), false),
            Ok(Launch {
                args: vec![],
                text: Some("echo hi".into())
            })
        );
        assert!(launch_parts("command", &[], None, false).is_err());
        assert!(launch_parts("command", &words("ls"), Some("ls".into()), false).is_err());
        assert!(
            launch_parts("command", &words("ls"), None, true)
                .unwrap_err()
                .contains("--plan-from")
        );
    }

    #[test]
    fn agents_need_a_prompt_unless_a_plan_is_handed_off() {
        for runtime in ["claude", "codex", "gemini"] {
            let error = launch_parts(runtime, &[], None, false).unwrap_err();
            assert!(
                error.contains(&format!("a {runtime} session needs a prompt")),
                "{error}"
            );
            // A blank --prompt is no prompt.
            assert!(launch_parts(runtime, &[], Some("  ".into()), false).is_err());
            assert_eq!(
                launch_parts(runtime, &[], None, true),
                Ok(Launch {
                    args: vec![],
                    text: None
                })
            );
        }
        assert_eq!(
            launch_parts("claude", &words("fix the tests"), None, false),
            Ok(Launch {
                args: vec![],
                text: Some("fix the tests".into())
            })
        );
        assert!(launch_parts("claude", &words("a"), Some("b".into()), false).is_err());
    }

    #[test]
    fn the_plan_comes_first_then_a_blank_line_then_the_rest() {
        assert_eq!(first_prompt(Some("1. do\n"), None), "1. do");
        assert_eq!(
            first_prompt(Some("1. do\n"), Some("then test".into())),
            "1. do\n\nthen test"
        );
        assert_eq!(first_prompt(None, Some("x".into())), "x");
        assert_eq!(first_prompt(None, None), "");
    }

    #[test]
    fn plan_references() {
        assert_eq!(plan_reference("alpha:1a2b").ok(), Some(("alpha", "1a2b")));
        assert!(plan_reference("alpha").is_err());
        assert!(plan_reference("alpha:").is_err());
        assert!(plan_reference(":1a2b").is_err());
    }

    #[test]
    fn argh_takes_words_after_a_double_dash() {
        use argh::FromArgs;
        let start = cli::CtlStart::from_args(
            &["start"],
            &[
                "alpha",
                "--runtime",
                "acp",
                "--cwd",
                "/w",
                "--prompt",
                "hi",
                "--",
                "gemini",
                "--acp",
            ],
        )
        .expect("parses");
        assert_eq!(start.words, words("gemini --acp"));
        assert_eq!(start.prompt.as_deref(), Some("hi"));
        let start = cli::CtlStart::from_args(
            &["start"],
            &["alpha", "--runtime", "claude", "--cwd", "/w", "fix", "--it"],
        )
        .expect("parses");
        assert_eq!(
            start.words,
            words("fix --it"),
            "greedy after the first word"
        );
        let watch = cli::CtlWatch::from_args(&["watch"], &["alpha", "1a2b", "--until", "approval"])
            .expect("parses");
        assert_eq!(watch.until, CtlUntil::Approval);
        assert!(cli::CtlWatch::from_args(&["watch"], &["alpha", "1a2b", "--until", "x"]).is_err());
    }

    fn history(kinds: Vec<EventKind>) -> History {
        let events: Vec<Event> = kinds
            .into_iter()
            .enumerate()
            .map(|(index, kind)| Event {
                session: SessionId([2; 16]),
                seq: index as u64 + 1,
                at: 0,
                kind,
            })
            .collect();
        History::of(&events)
    }

    fn asked() -> EventKind {
        EventKind::ApprovalRequested(ApprovalRequest {
            approval: 1,
            kind: ApprovalKind::Tool,
            agent_request: "r".into(),
            tool: "Bash".into(),
            input: "{}".into(),
            request_hash: [0; 32],
        })
    }

    #[test]
    fn watch_until() {
        let running = history(vec![EventKind::Status(SessionStatus::Running)]);
        let waiting = history(vec![
            asked(),
            EventKind::Status(SessionStatus::WaitingApproval),
        ]);
        let withdrawn_then_idle = history(vec![
            asked(),
            EventKind::ApprovalState {
                approval: 1,
                state: ApprovalState::Withdrawn,
            },
            EventKind::Usage(Usage::default()),
            EventKind::Status(SessionStatus::Idle),
        ]);
        let done = history(vec![EventKind::Status(SessionStatus::Done)]);
        for until in [CtlUntil::End, CtlUntil::Idle, CtlUntil::Approval] {
            assert_eq!(verdict(until, &running), None, "{until:?}");
        }
        assert_eq!(verdict(CtlUntil::Approval, &waiting), Some(Ok(())));
        assert_eq!(verdict(CtlUntil::Idle, &waiting), None);
        assert_eq!(verdict(CtlUntil::End, &waiting), None);
        assert_eq!(verdict(CtlUntil::Idle, &withdrawn_then_idle), Some(Ok(())));
        assert_eq!(verdict(CtlUntil::Approval, &withdrawn_then_idle), None);
        assert_eq!(verdict(CtlUntil::End, &done), Some(Ok(())));
        assert_eq!(verdict(CtlUntil::Idle, &done), Some(Ok(())));
        assert_eq!(
            verdict(CtlUntil::Approval, &done),
            Some(Err("ended (done) with no approval waiting".into()))
        );
    }
}
