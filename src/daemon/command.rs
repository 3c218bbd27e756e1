//! The `command` runtime: any shell command as a session. It runs in its own process group (so
//! `stop` reaches everything it started), its stdout and stderr become `Output` events in the
//! order each stream produced them, and its exit becomes `Exited` and a final status.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Stdio;

use muxagent_proto::app::Stream;
use muxagent_proto::limits::OUTPUT_CHUNK_LEN;
use rustix::process::{Pid, Signal};
use smol::io::AsyncReadExt;
use smol::process::{Child, ChildStdin};

/// A running command.
pub struct Process {
    /// Its process group (= its pid).
    pub group: Pid,
    /// Its standard input, for `send`.
    pub stdin: Option<ChildStdin>,
}

impl Process {
    /// Send `signal` to the whole process group. A group that is gone already is not an error.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        match rustix::process::kill_process_group(self.group, signal) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(errno) => Err(errno.into()),
        }
    }
}

/// The program a `command` session runs: `args` as given, or `sh -c PROMPT` when only a prompt
/// was given.
pub fn command_line(args: &[String], prompt: &str) -> Vec<String> {
    if args.is_empty() {
        vec!["sh".into(), "-c".into(), prompt.into()]
    } else {
        args.to_vec()
    }
}

/// Start `argv` in `cwd` in a new process group with piped standard streams.
pub fn spawn(argv: &[String], cwd: &Path) -> io::Result<(Process, Child)> {
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
    let stdin = child.stdin.take();
    Ok((Process { group, stdin }, child))
}

/// Read `stream` to its end in chunks of at most [`OUTPUT_CHUNK_LEN`], calling `emit` with each
/// as text. A UTF-8 character split between two reads is kept whole; invalid bytes become U+FFFD.
pub async fn pump(
    mut reader: impl smol::io::AsyncRead + Unpin,
    stream: Stream,
    mut emit: impl FnMut(Stream, String),
) {
    let mut buffer = vec![0u8; OUTPUT_CHUNK_LEN];
    let mut kept = 0;
    loop {
        let read = match reader.read(&mut buffer[kept..]).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let filled = kept + read;
        // At most 3 bytes are held back, so the 8 KiB buffer never fills with them.
        let cut = complete_utf8_prefix(&buffer[..filled]);
        if cut > 0 {
            emit(stream, String::from_utf8_lossy(&buffer[..cut]).into_owned());
        }
        buffer.copy_within(cut..filled, 0);
        kept = filled - cut;
    }
    if kept > 0 {
        emit(
            stream,
            String::from_utf8_lossy(&buffer[..kept]).into_owned(),
        );
    }
}

/// Length of `bytes` without a trailing, incomplete UTF-8 sequence.
fn complete_utf8_prefix(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if byte & 0xc0 == 0x80 {
            continue; // a continuation byte: look further back for the lead byte
        }
        let needed = match byte {
            0xf0.. => 4,
            0xe0.. => 3,
            0xc0.. => 2,
            _ => 1,
        };
        return if needed > back {
            bytes.len() - back
        } else {
            bytes.len()
        };
    }
    bytes.len()
}

/// Exit code and signal of a finished child.
pub fn exit_parts(status: std::process::ExitStatus) -> (Option<i32>, Option<i32>) {
    (status.code(), status.signal())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_characters_are_kept_whole() {
        let text = "héllo ✓";
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let prefix = complete_utf8_prefix(&bytes[..cut]);
            assert!(std::str::from_utf8(&bytes[..prefix]).is_ok());
            assert!(cut - prefix < 4);
        }
    }

    #[test]
    fn output_arrives_whole_and_in_order() {
        smol::block_on(async {
            let input: Vec<u8> = (0..40_000u32)
                .flat_map(|n| format!("line {n} ✓\n").into_bytes())
                .collect();
            let mut out = String::new();
            pump(&input[..], Stream::Stdout, |_, text| out.push_str(&text)).await;
            assert_eq!(out.as_bytes(), &input[..]);
        });
    }
}
