//! The command line: every `muxagent` command and its flags (argh). Handlers live with the part
//! of the program they drive; this file only describes the interface.

use argh::FromArgs;

/// Delegate, monitor and approve coding agents on many machines from one phone.
/// `muxagent --version` prints the version, target and commit.
#[derive(FromArgs, Debug)]
pub struct Cli {
    #[argh(subcommand)]
    pub command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Up(Up),
    Daemon(Daemon),
    Pair(Pair),
    Auth(Auth),
    Unpair(Unpair),
    Sessions(Sessions),
    Version(Version),
    Ctl(Ctl),
}

/// Quick start: run a relay and a daemon in one process and print the pairing QR code and link.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "up")]
pub struct Up {
    /// address for the relay to listen on (default 127.0.0.1:8080)
    #[argh(option, default = "String::from(\"127.0.0.1:8080\")")]
    pub listen: String,
}

/// Run and manage this machine's daemon.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "daemon")]
pub struct Daemon {
    #[argh(subcommand)]
    pub command: DaemonCommand,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum DaemonCommand {
    Start(DaemonStart),
    Stop(DaemonStop),
    Status(DaemonStatus),
    Install(DaemonInstall),
}

/// Start the daemon (detached unless --foreground); pairs first if this machine is not paired.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "start")]
pub struct DaemonStart {
    /// relay URL (saved for later starts), e.g. https://relay.example.net
    #[argh(option)]
    pub relay: Option<String>,
    /// stay in the foreground and log to the terminal
    #[argh(switch)]
    pub foreground: bool,
    /// approval policy: deny what nobody decided within MINUTES (0: wait for ever, the
    /// default; saved for later starts)
    #[argh(option)]
    pub auto_deny_after: Option<u32>,
}

/// Stop the running daemon; its sessions' processes are stopped too.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "stop")]
pub struct DaemonStop {}

/// Show whether the daemon runs, its relay link and, when unpaired, the pairing link.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
pub struct DaemonStatus {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Write a systemd user unit (Linux) or a launchd agent (macOS) that starts the daemon at login.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "install")]
pub struct DaemonInstall {}

/// Print a new pairing QR code and link and wait until a device pairs or it expires.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "pair")]
pub struct Pair {
    /// relay URL (saved for later starts)
    #[argh(option)]
    pub relay: Option<String>,
}

/// This machine's identity and pairing.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "auth")]
pub struct Auth {
    #[argh(subcommand)]
    pub command: AuthCommand,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum AuthCommand {
    Status(AuthStatus),
}

/// Show the machine fingerprint, the relay and the paired devices.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
pub struct AuthStatus {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Remove this machine from its account on the relay and forget every paired device.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "unpair")]
pub struct Unpair {}

/// List this machine's sessions.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "sessions")]
pub struct Sessions {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Print the version, target and commit.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "version")]
pub struct Version {}

/// The terminal controller: pair with machines and drive their sessions.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "ctl")]
pub struct Ctl {
    #[argh(subcommand)]
    pub command: CtlCommand,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum CtlCommand {
    Pair(CtlPair),
    Machines(CtlMachines),
    Sessions(CtlSessions),
    Start(CtlStart),
    Send(CtlSend),
    Watch(CtlWatch),
    Approvals(CtlApprovals),
    Approve(CtlApprove),
    Deny(CtlDeny),
    Stop(CtlStop),
    Revoke(CtlRevoke),
}

/// Pair with a machine from its pairing link.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "pair")]
pub struct CtlPair {
    /// the link the machine printed: https://RELAY/pair#TICKET
    #[argh(positional)]
    pub link: String,
}

/// List paired machines and whether they are online.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "machines")]
pub struct CtlMachines {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// List sessions on one machine or on all.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "sessions")]
pub struct CtlSessions {
    /// hostname, id prefix or fingerprint (default: every machine)
    #[argh(positional)]
    pub machine: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Start a session on a machine.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "start")]
pub struct CtlStart {
    /// hostname, id prefix or fingerprint
    #[argh(positional)]
    pub machine: String,
    /// command, claude, codex, acp or gemini
    #[argh(option)]
    pub runtime: String,
    /// working directory on the machine
    #[argh(option)]
    pub cwd: String,
    /// a title for the session
    #[argh(option)]
    pub title: Option<String>,
    /// permission mode to start in
    #[argh(option)]
    pub mode: Option<String>,
    /// the prompt (for `command`: the command line)
    #[argh(positional, greedy)]
    pub prompt: Vec<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Send a prompt to a session.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "send")]
pub struct CtlSend {
    /// hostname, id prefix or fingerprint
    #[argh(positional)]
    pub machine: String,
    /// session id (or a prefix)
    #[argh(positional)]
    pub session: String,
    /// the text
    #[argh(positional, greedy)]
    pub text: Vec<String>,
}

/// Stream a session's events until it ends (or Ctrl-C).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "watch")]
pub struct CtlWatch {
    /// hostname, id prefix or fingerprint
    #[argh(positional)]
    pub machine: String,
    /// session id (or a prefix)
    #[argh(positional)]
    pub session: String,
    /// print one JSON object per event
    #[argh(switch)]
    pub json: bool,
}

/// List approvals waiting on every machine.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "approvals")]
pub struct CtlApprovals {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Allow what an agent asked for.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "approve")]
pub struct CtlApprove {
    /// hostname, id prefix or fingerprint
    #[argh(positional)]
    pub machine: String,
    /// the request, as `approvals` shows it (SESSION/N)
    #[argh(positional)]
    pub request: String,
    /// also allow the same from now on
    #[argh(switch)]
    pub always: bool,
}

/// Refuse what an agent asked for.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "deny")]
pub struct CtlDeny {
    /// hostname, id prefix or fingerprint
    #[argh(positional)]
    pub machine: String,
    /// the request, as `approvals` shows it (SESSION/N)
    #[argh(positional)]
    pub request: String,
    /// tell the agent why
    #[argh(option)]
    pub message: Option<String>,
}

/// Stop a session (kills its processes).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "stop")]
pub struct CtlStop {
    /// hostname, id prefix or fingerprint
    #[argh(positional)]
    pub machine: String,
    /// session id (or a prefix)
    #[argh(positional)]
    pub session: String,
}

/// Remove a machine from your account: the relay refuses it from now on.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "revoke")]
pub struct CtlRevoke {
    /// hostname, id prefix or fingerprint
    #[argh(positional)]
    pub machine: String,
}
