//! Every capacity, timeout and pause of the daemon and the command line, with the reason for its
//! value. What a machine and its devices or its relay must agree on (frame and message sizes,
//! approval inputs, reconnect pacing) is in [`muxagent_proto::limits`]; what a device keeps, in
//! [`muxagent_client::limits`]; the session logs' own bounds, in the store's. These are the
//! daemon's own choices: changing one needs no other program to change with it.
//!
//! # Memory arithmetic
//!
//! The daemon holds one log per session and one relay connection. Per connection of a device
//! (up to [`MAX_CHANNELS_PER_DEVICE`] per device): its channel (~300 bytes) and, once it said
//! hello, its sync cursors (24 bytes a session). Per running agent session: a line buffer of up
//! to [`AGENT_LINE_MAX_LEN`], the two queues between the agent's runtime and the daemon
//! ([`AGENT_REPORT_QUEUE`], [`AGENT_COMMAND_QUEUE`]), at most [`MAX_PENDING_APPROVALS`] open
//! approvals whose whole inputs take at most [`DAEMON_WHOLE_INPUTS_MAX_LEN`]; per running
//! `command` session: two read buffers of [`OUTPUT_CHUNK_LEN`]. Events waiting for their fsync
//! are bounded by [`DAEMON_COMMIT_MAX_EVENTS`], messages waiting for the relay by
//! [`DAEMON_OUTGOING_QUEUE`].
//!
//! [`MAX_CHANNELS_PER_DEVICE`]: muxagent_proto::limits::MAX_CHANNELS_PER_DEVICE

use muxagent_proto::limits::{APPROVAL_INPUT_MAX_LEN, MAX_APP_MESSAGE_LEN, RELAY_QUEUE_DEPTH};

// ---- Daemon ----

/// Events per replay page. The machine sends one page, then `ReplayMore`, and waits for the
/// device to ask for the next: one page in flight, so a slow phone sets the pace and the relay's
/// queue ([`RELAY_QUEUE_DEPTH`] frames) never overflows. Half the relay queue leaves room for
/// the answers and live traffic sharing the connection.
pub const REPLAY_PAGE_EVENTS: usize = RELAY_QUEUE_DEPTH / 2;

/// Messages queued for the relay connection. Live events that find it full make the device
/// resync instead of blocking the session (a session never waits on a slow phone).
pub const DAEMON_OUTGOING_QUEUE: usize = 512;

/// Events logged but not yet fsynced and sent (group commit): they are made durable and sent
/// together once per executor turn, or as soon as this many wait. At most two text fields of
/// [`EVENT_FIELD_MAX_LEN`] each: 128 × 48 KiB = 6 MiB in the worst case, ~13 KiB for a
/// stream of ~100-byte deltas; 128 events per fsync instead of one.
pub const DAEMON_COMMIT_MAX_EVENTS: usize = 128;

/// Seconds between attempts to write a session's log again after writing it failed (a full
/// disk): each attempt opens the log again, which reads and checks all of it — at most the
/// retention budget plus one segment = 36 MiB, ~0.1–0.3 s of one core — so a session
/// streaming into a full disk costs at most that once a second, and its events are refused
/// (not logged, not sent) in between. Attempts are made only when an event arrives.
pub const DAEMON_LOG_RETRY_SECS: u64 = 1;

/// Largest piece of a command's output in one event. 8 KiB keeps an event well inside one
/// channel message and a chatty command at a few hundred events a second.
pub const OUTPUT_CHUNK_LEN: usize = 8 * 1024;

/// How long a stopped session's processes get after SIGTERM before SIGKILL.
pub const STOP_GRACE_MS: u64 = 2_000;

/// Size at which a detached daemon's `daemon.log` is rotated to `daemon.log.1` (one old file is
/// kept), so the log takes at most twice this on disk. 8 MiB holds weeks of a normal daemon's
/// lines (a few per connection and session) and is read in one go by people.
pub const DAEMON_LOG_MAX_LEN: u64 = 8 * 1024 * 1024;

/// Warning lines one peer (a device, the relay) can cause per [`DAEMON_WARNING_WINDOW_SECS`];
/// past it they are counted, and one line gives the count when the window ends. Any account
/// member can send a machine junk: without this each packet cost a line (39 MB of log in 8 s).
/// 10 lines of ~150 bytes a minute is ≤ 2 MiB a day per peer.
pub const DAEMON_WARNINGS_PER_PEER: u32 = 10;

/// The window of [`DAEMON_WARNINGS_PER_PEER`].
pub const DAEMON_WARNING_WINDOW_SECS: u64 = 60;

/// Peers with their own warning budget at once (an entry is ~60 bytes); beyond that new peers
/// share one budget, so nobody grows the table by sending from many keys.
pub const DAEMON_WARNING_PEERS: usize = 64;

/// How long the daemon waits before it logs in again after the relay said this machine's key
/// was revoked. Nothing changes on its own: the person must pair the machine again (which cuts
/// the wait short). Ten minutes keeps a revoked machine from costing the relay a login a few
/// seconds, and still notices an owner's mistake undone within the hour.
pub const DAEMON_REVOKED_PAUSE_SECS: u64 = 600;

/// How long the daemon waits before it logs in again after another daemon logged in with the
/// same machine key (`Displaced`: the relay keeps the newest). A minute lets two copies of one
/// machine (a restored backup, a copied home directory) take turns slowly instead of pushing
/// each other out in a loop, and the person sees why in `muxagent daemon status`.
pub const DAEMON_DISPLACED_PAUSE_SECS: u64 = 60;

// ---- Daemon: the control socket ----
//
// The local Unix socket `muxagent` commands talk to the daemon through. Only the user's own
// processes reach it; the bounds keep a broken client from holding memory anyway.

/// Longest request line the daemon reads from a control client (a command name and a few
/// arguments; a long relay URL or a session's first prompt fits well inside).
pub const CONTROL_REQUEST_MAX_LEN: usize = 4096;

/// Notices (a pairing link, a result) queued for one control client waiting on `pair` or
/// `unpair`. A pairing produces two or three; a client that stops reading is dropped when the
/// queue is full rather than holding notices.
pub const CONTROL_NOTICES_QUEUE: usize = 8;

/// How often `daemon start` and `daemon stop` look whether the daemon answers (or has let its
/// lock go). The daemon is another process: there is nothing to wait on but the socket and the
/// lock file, and 50 ms is quick for a person and nothing for the machine.
pub const CONTROL_POLL_MS: u64 = 50;

// ---- Command line ----

/// How long `daemon start` waits for the new daemon to answer on its socket, and `daemon stop`
/// for it to exit. Opening every session's log takes well under a second; a Pi with a slow SD
/// card gets ten.
pub const CLI_DAEMON_WAIT_SECS: u64 = 10;

/// Tool calls whose names `ctl watch`'s transcript remembers to label their results (older ones
/// are forgotten: an agent that never finishes its calls must not grow the map). An agent runs a
/// few calls at once; 64 names of ~40 bytes is ~3 KiB.
pub const CTL_TOOL_NAMES: usize = 64;

/// How long `daemon start` waits for the relay to accept a pairing link before it returns
/// (the daemon goes on trying in the background).
pub const CLI_LINK_WAIT_SECS: u64 = 10;

// ---- Daemon: push notifications ----
//
// Per paired device with push keys: its keys (~100 bytes), a token bucket, and the set of
// sessions whose news waits for a token (16 bytes a session). Per session: its status, the last
// line its agent said (≤ [`NOTIFY_TEXT_CHARS`] characters) and, per open approval (at most
// [`MAX_PENDING_APPROVALS`]), what its notice needs: its summary and, when it can fit one push,
// its whole input (< [`MAX_PUSH_BODY_LEN`]), so ≤ 64 × 4 KiB = 256 KiB for a session with every
// approval open, a sixth of what the session's own state holds for them.
//
// [`MAX_PUSH_BODY_LEN`]: muxagent_proto::limits::MAX_PUSH_BODY_LEN

/// Notifications a device can get at once before the rate applies: an agent asking three
/// things in each of three sessions is heard at once.
pub const NOTIFY_BURST: u32 = 10;

/// One more notification per this many seconds once the burst is spent (10 a minute). News
/// over the rate is not dropped: the newest state of each session waiting is sent as tokens
/// come back, approvals first.
pub const NOTIFY_REFILL_SECS: u64 = 6;

/// How long a push service keeps an approval's notification for a phone that is off, when
/// the machine's policy does not expire the approval sooner: a day, so a phone back the next
/// morning still hears that an agent waits (push services keep up to four weeks).
pub const NOTIFY_APPROVAL_TTL_SECS: u64 = 24 * 60 * 60;

/// How long a push service keeps other notifications (a session ended, a plan): news older
/// than this is better read in the app.
pub const NOTIFY_TTL_SECS: u64 = 4 * 60 * 60;

/// Longest one-line summary in a notification's text (the command of a Bash approval, the
/// last thing an agent said), in characters: about what a phone shows in two lines.
pub const NOTIFY_TEXT_CHARS: usize = 120;

/// Longest session title in a notification, in characters.
pub const NOTIFY_TITLE_CHARS: usize = 80;

/// The RFC 8188 record size of a push body: one record holds the whole notice (4096 is what
/// RFC 8291 §4 expects and what its Appendix A uses). The device reads it from the body's
/// header, so it is the daemon's choice alone.
pub const PUSH_RECORD_SIZE: u32 = 4096;

/// A push body is padded to a multiple of this many bytes, so its length tells the relay and
/// the push service less about what it says (how long a command is). 256 costs at most 255
/// bytes a push.
pub const PUSH_PAD_BLOCK: usize = 256;

// ---- Agents ----
//
// Per running agent session: a line buffer of up to [`AGENT_LINE_MAX_LEN`], and the two queues
// below between the agent's runtime and the daemon.

/// Longest line an agent may print. Claude Code's `initialize` answer is ~25 KB and a tool result
/// quoting a file can be far larger; a longer line is skipped with an error event.
pub const AGENT_LINE_MAX_LEN: usize = 8 * 1024 * 1024;

/// Reports from an agent's runtime waiting for the daemon to log them. When it is full the
/// runtime stops reading the agent's output, so a flood slows the agent instead of growing.
pub const AGENT_REPORT_QUEUE: usize = 64;

/// Commands (prompts, answers, interrupts) waiting for an agent's runtime.
pub const AGENT_COMMAND_QUEUE: usize = 16;

/// How long the daemon keeps reading an agent's standard error after its standard output ended
/// (a grandchild may hold the pipe open for ever).
pub const AGENT_STDERR_DRAIN_MS: u64 = 500;

/// How long a diff of a tool's edit may take before it settles for a coarser one: it runs on
/// the daemon's only thread, so every session waits meanwhile.
pub const AGENT_DIFF_TIMEOUT_MS: u64 = 100;

/// Recently streamed message ids the Claude Code adapter remembers (to drop the whole message
/// that repeats what its deltas already said): deltas precede their message by a few lines, but
/// subagents may interleave theirs. 8 ids of ~40 bytes.
pub const AGENT_STREAMED_MESSAGE_IDS: usize = 8;

/// Longest text field of one logged event. Longer agent text, tool output or input is cut to
/// this with a note of how much was left out, so every event fits one channel message
/// ([`MAX_APP_MESSAGE_LEN`]) even with two such fields.
pub const EVENT_FIELD_MAX_LEN: usize = 24 * 1024;
const _: () = assert!(2 * EVENT_FIELD_MAX_LEN + 4 * 1024 <= MAX_APP_MESSAGE_LEN);

/// The bytes of whole approval inputs a machine holds for one session's open approvals (each at
/// most [`APPROVAL_INPUT_MAX_LEN`]): four of the largest at once, so 64 sessions at their worst
/// hold 256 MiB, and a runaway agent asking [`MAX_PENDING_APPROVALS`] huge things cannot make one
/// session hold 64 MiB. An input over the budget is kept cut, and can only be denied.
pub const DAEMON_WHOLE_INPUTS_MAX_LEN: usize = 4 * APPROVAL_INPUT_MAX_LEN;

/// Approvals one session may have waiting. An agent asking for more is answered with a deny
/// for the excess, so a runaway agent cannot grow the daemon's memory. Every adapter's table of
/// open asks is capped by it too.
pub const MAX_PENDING_APPROVALS: usize = 64;
