//! An agent's process: started in its own process group, so `stop` (SIGTERM, then SIGKILL) reaches
//! everything it started, with piped standard streams for its runtime.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Stdio;

use rustix::process::{Pid, Signal};
use smol::process::{Child, ChildStderr, ChildStdin, ChildStdout};

/// The agent process as a runtime sees it.
pub struct AgentIo {
    /// Its standard input.
    pub stdin: ChildStdin,
    /// Its standard output.
    pub stdout: ChildStdout,
    /// Its standard error.
    pub stderr: ChildStderr,
    /// Its process group (for runtimes that interrupt with a signal).
    pub group: Pid,
}

/// Send `signal` to a whole process group. A group that is gone already is not an error.
pub fn signal_group(group: Pid, signal: Signal) -> io::Result<()> {
    match rustix::process::kill_process_group(group, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

/// Start `argv` in `cwd` in a new process group with piped standard streams; the streams go to
/// the runtime, the child to whoever waits for its exit.
pub fn spawn(argv: &[String], cwd: &Path) -> io::Result<(AgentIo, Child)> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command line"))?;
    let mut command = std::process::Command::new(program);
    command.args(args).current_dir(cwd).process_group(0);
    // The standard streams are set on the async command: converting resets them.
    let mut child = smol::process::Command::from(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let group =
        Pid::from_raw(child.id() as i32).ok_or_else(|| io::Error::other("the child has no pid"))?;
    let missing = || io::Error::other("the child's standard streams are missing");
    let io = AgentIo {
        stdin: child.stdin.take().ok_or_else(missing)?,
        stdout: child.stdout.take().ok_or_else(missing)?,
        stderr: child.stderr.take().ok_or_else(missing)?,
        group,
    };
    Ok((io, child))
}

/// Exit code and signal of a finished child.
pub fn exit_parts(status: std::process::ExitStatus) -> (Option<i32>, Option<i32>) {
    (status.code(), status.signal())
}
