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
    // Built without the `up` feature (a board build), there is no such command.
    #[cfg(feature = "up")]
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
#[cfg(feature = "up")]
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "up")]
pub struct Up {
    /// address for the relay to listen on (default 127.0.0.1:8080)
    #[argh(option, default = "String::from(\"127.0.0.1:8080\")")]
    pub listen: String,
    /// the URL a phone on your network reaches the relay at, e.g. http://192.168.1.20:8080
    /// (needed when --listen is 0.0.0.0 or [::]); it goes into the pairing link
    #[argh(option)]
    pub public_url: Option<String>,
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
    /// with --foreground: log to $MUXAGENT_HOME/daemon.log, rotated at 8 MiB (what a detached
    /// daemon does)
    #[argh(switch)]
    pub log_file: bool,
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
pub struct Unpair {
    /// without the relay: forget the account and every device and make new keys (for a machine
    /// the relay refuses, e.g. one that was revoked); pair it again afterwards
    #[argh(switch)]
    pub local: bool,
}

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
    Interrupt(CtlInterrupt),
    Mode(CtlMode),
    Runtimes(CtlRuntimes),
    BenchApprovals(CtlBenchApprovals),
    Stop(CtlStop),
    Revoke(CtlRevoke),
    Devices(CtlDevices),
    RevokeDevice(CtlRevokeDevice),
    GrantOwner(CtlGrantOwner),
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
#[argh(
    subcommand,
    name = "start",
    example = "muxagent ctl start alpha --runtime claude --cwd ~/src/app --prompt \"fix the tests\"",
    example = "muxagent ctl start alpha --runtime codex --cwd ~/src/app add a README",
    example = "muxagent ctl start alpha --runtime acp --cwd ~/src/app --prompt hello -- gemini --acp",
    example = "muxagent ctl start alpha --runtime command --cwd /tmp -- ls -la",
    example = "muxagent ctl start beta --runtime claude --cwd ~/src/app --plan-from alpha:1a2b3c4d",
    note = "WORDS after the options (after `--` when one starts with a dash) are:\n\
            - for `acp`: the agent's command line (required), e.g. `-- gemini --acp`;\n\
            - for `command`: the shell command, run with `sh -c`;\n\
            - otherwise: the prompt, instead of --prompt.\n\
            claude, codex and gemini need a prompt (or --plan-from).\n\
            --plan-from MACHINE:SESSION takes the newest plan a person approved in that session\n\
            and starts this one with it as the prompt; --prompt or WORDS are added after a blank\n\
            line. The default title is then `plan from MACHINE:SESSION`.\n\
            Prints `started session ID on HOST` and the watch command; with --json\n\
            one object: machine, session (the full id)."
)]
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
    /// the first prompt
    #[argh(option)]
    pub prompt: Option<String>,
    /// start from the plan approved in MACHINE:SESSION (session id or prefix)
    #[argh(option, arg_name = "MACHINE:SESSION")]
    pub plan_from: Option<String>,
    /// a title for the session
    #[argh(option)]
    pub title: Option<String>,
    /// permission mode to start in
    #[argh(option)]
    pub mode: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// the agent command line (acp), the shell command (command) or the prompt
    #[argh(positional, greedy)]
    pub words: Vec<String>,
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
#[argh(
    subcommand,
    name = "watch",
    example = "muxagent ctl watch alpha 1a2b --until approval && muxagent ctl approvals",
    note = "--until STATE decides when watch exits (after printing the history first):\n\
            - end (default): the session finished (done, error or stopped);\n\
            - approval: the session has an approval waiting (exits 1 if it finishes first);\n\
            - idle: the agent waits for a prompt or finished, with no approval waiting.\n\
            The condition is checked on the live state once the history is replayed.\n\
            Lines: streamed text and command output as they come; `› prompt`; `… thinking`;\n\
            `⚙ TOOL: summary` for a tool call and `✓ TOOL  output` / `✗ TOOL  output` for its\n\
            result (first lines), then its diff; `plan (approval SESSION/N):` and the plan;\n\
            `? approval SESSION/N  TOOL: summary` followed by the `muxagent ctl approve` and\n\
            `deny` commands to answer it;\n\
            `  approval SESSION/N delivered` (or applied, withdrawn, expired);\n\
            `  approval SESSION/N allowed once|allowed always|denied (why) by DEVICE`;\n\
            `  tokens N in / N out · $D` (dollars only when the agent reports them);\n\
            `  turn finished (why)`; `● STATUS`; `! error`; `■ exited with code N`.\n\
            --json prints one object per event: session, seq, at, kind and its fields."
)]
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
    /// when to exit: end (default), approval or idle
    #[argh(option, default = "CtlUntil::End", arg_name = "STATE")]
    pub until: CtlUntil,
}

/// When `ctl watch` exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtlUntil {
    /// The session finished.
    End,
    /// An approval is waiting.
    Approval,
    /// The agent waits for a prompt (or finished) with no approval waiting.
    Idle,
}

impl argh::FromArgValue for CtlUntil {
    fn from_arg_value(value: &str) -> Result<Self, String> {
        match value {
            "end" => Ok(Self::End),
            "approval" => Ok(Self::Approval),
            "idle" => Ok(Self::Idle),
            other => Err(format!(
                "`{other}` is not a state to wait for; use end, approval or idle"
            )),
        }
    }
}

/// List approvals waiting on every machine, each with its whole input.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "approvals",
    note = "One block per approval: `MACHINE SESSION/N KIND STATE`, the session's title, the tool,\n\
            then every line of the input after `│`, nothing cut. A character that would not show\n\
            or would act on the terminal (controls, escapes, bidi, zero-width, `⟪` itself) is\n\
            printed as a mark, `⟪U+202E⟫`, so what you read is exactly what the agent sent. Then\n\
            the DIGEST of exactly that (16 hex digits of the request hash, recomputed here), and\n\
            the commands that answer it. If the machine sent the input cut, the block says CUT\n\
            and has no digest: it can be denied, not allowed. KIND is tool or plan; STATE is\n\
            requested or delivered. With --json an array of objects: machine, request\n\
            (SESSION/N), session, approval, kind, state, tool, input, complete (the input is\n\
            whole), digest (null when cut), summary, title; characters a terminal would act on\n\
            are \\u escapes."
)]
pub struct CtlApprovals {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Allow what an agent asked for.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "approve",
    note = "Only what you saw is signed. On a terminal, without --digest, it prints the request\n\
            whole (as `approvals` does) and signs only after you type `yes`. Otherwise pass\n\
            --digest with the DIGEST `approvals` printed for this request: it is recomputed\n\
            from the input received now, and nothing is signed unless it matches, so a script\n\
            cannot allow something other than what was printed. An input the machine sent cut\n\
            is never allowed. The decision is signed with this controller's key, bound to the\n\
            exact request. Prints `answered SESSION/N on HOST: allowed once` (or `allowed\n\
            always`)."
)]
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
    /// the DIGEST `approvals` printed for this request (required without a terminal)
    #[argh(option)]
    pub digest: Option<String>,
}

/// Refuse what an agent asked for.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "deny",
    note = "The message goes to the agent (default: `denied from muxagent ctl`). A refusal runs\n\
            nothing, so it needs no digest, and works on an input the machine sent cut.\n\
            Prints `answered SESSION/N on HOST: denied (MESSAGE)`."
)]
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

/// Interrupt the agent's current turn (the session stays; send it a new prompt).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "interrupt",
    note = "Prints `interrupted session ID on HOST`. Approvals the agent was waiting on are\n\
            withdrawn."
)]
pub struct CtlInterrupt {
    /// hostname, id prefix or fingerprint
    #[argh(positional)]
    pub machine: String,
    /// session id (or a prefix)
    #[argh(positional)]
    pub session: String,
}

/// Change a session's permission mode.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "mode",
    note = "Modes depend on the runtime (claude: default, acceptEdits, plan,\n\
            bypassPermissions …); the machine refuses the ones its runtime does not know.\n\
            Prints `session ID on HOST: mode MODE`."
)]
pub struct CtlMode {
    /// hostname, id prefix or fingerprint
    #[argh(positional)]
    pub machine: String,
    /// session id (or a prefix)
    #[argh(positional)]
    pub session: String,
    /// the mode
    #[argh(positional)]
    pub mode: String,
}

/// List the runtimes a machine offers and whether their programs are there.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "runtimes",
    note = "One line per runtime: NAME available|missing DETAIL (a version, or why it is\n\
            missing). With --json an array of objects: name, available, detail."
)]
pub struct CtlRuntimes {
    /// hostname, id prefix or fingerprint
    #[argh(positional)]
    pub machine: String,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// For benchmarks: stay connected to a session and allow each approval as soon as it arrives.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "bench-approvals",
    note = "Exits once COUNT approvals were allowed and acknowledged (or when the session\n\
            ends first, with an error). Prints `allowed N approvals in session ID on HOST`.\n\
            bench/approval.sh uses it to time approval round trips."
)]
pub struct CtlBenchApprovals {
    /// hostname, id prefix or fingerprint
    #[argh(positional)]
    pub machine: String,
    /// session id (or a prefix)
    #[argh(positional)]
    pub session: String,
    /// how many approvals to allow (default 100)
    #[argh(option, default = "100")]
    pub count: u32,
}

/// Remove a machine from your account: the relay refuses it from now on.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "revoke")]
pub struct CtlRevoke {
    /// hostname, id prefix or fingerprint
    #[argh(positional)]
    pub machine: String,
}

/// List the devices of your account: owners, what each paired with, who is online.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "devices",
    note = "One line per device: FINGERPRINT owner|- online|offline PAIRED-WITH, this controller\n\
            marked `(this controller)`. An owner reaches every machine of the account, may\n\
            revoke any device or machine of it and make other devices owners; any other device\n\
            reaches the machines it paired with. Only an owner sees every device; another sees\n\
            itself. With --json an array of objects: relay, fingerprint, fingerprint_full, you,\n\
            owner, online, paired (hostname, fingerprint)."
)]
pub struct CtlDevices {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Revoke a device of your account (a lost phone): the relay cuts it off at once and for good.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "revoke-device",
    example = "muxagent ctl revoke-device 9f8e-7d6c",
    note = "An owner may revoke any device of the account; any device may revoke itself. The\n\
            relay closes the device's connections, refuses its key from now on, and tells the\n\
            machines it paired with, which forget it. Give at least 4 hex digits of the\n\
            fingerprint `muxagent ctl devices` shows; a prefix that names several devices is\n\
            refused."
)]
pub struct CtlRevokeDevice {
    /// the device's fingerprint, or a prefix of it
    #[argh(positional)]
    pub device: String,
}

/// Make another device of your account an owner (you must be one).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "grant-owner",
    example = "muxagent ctl grant-owner 9f8e-7d6c",
    note = "An owner reaches every machine of the account and may revoke its devices and\n\
            machines. Give an owner a second device of yours, so losing one does not leave the\n\
            account without an owner."
)]
pub struct CtlGrantOwner {
    /// the device's fingerprint, or a prefix of it
    #[argh(positional)]
    pub device: String,
}
