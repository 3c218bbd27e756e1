//! The `command` runtime: any shell command as a session. Its stdout and stderr become `Output`
//! events in the order each stream produced them; a prompt is written to its standard input as
//! a line; an interrupt is SIGINT to its process group. It never asks for approval.

use muxagent_proto::app::{EventKind, Stream};
use smol::channel::{Receiver, Sender};
use smol::io::{AsyncReadExt, AsyncWriteExt};

use super::{AgentIo, Command, LocalFuture, Report, Runtime, RuntimeError, Spec};
use crate::daemon::process::signal_group;
use crate::limits::OUTPUT_CHUNK_LEN;

/// Any shell command.
pub struct CommandRuntime;

impl Runtime for CommandRuntime {
    fn name(&self) -> &'static str {
        "command"
    }

    /// `args` as given, or `sh -c PROMPT` when only a prompt was given.
    fn command_line(&self, spec: &Spec, prompt: &str) -> Result<Vec<String>, String> {
        if !spec.args.is_empty() {
            Ok(spec.args.clone())
        } else if prompt.trim().is_empty() {
            Err("a command session needs a command line or a prompt to run with `sh -c`".into())
        } else {
            Ok(vec!["sh".into(), "-c".into(), prompt.into()])
        }
    }

    fn modes(&self) -> &'static [&'static str] {
        &[]
    }

    fn run(
        self: Box<Self>,
        _spec: Spec,
        io: AgentIo,
        commands: Receiver<Command>,
        reports: Sender<Report>,
    ) -> LocalFuture<Result<(), RuntimeError>> {
        Box::pin(run(io, commands, reports))
    }
}

async fn run(
    io: AgentIo,
    commands: Receiver<Command>,
    reports: Sender<Report>,
) -> Result<(), RuntimeError> {
    let AgentIo {
        mut stdin,
        stdout,
        stderr,
        group,
    } = io;
    let output = smol::future::zip(
        pump(stdout, Stream::Stdout, &reports),
        pump(stderr, Stream::Stderr, &reports),
    );
    let input = async {
        while let Ok(command) = commands.recv().await {
            match command {
                Command::Prompt(text) => {
                    let mut line = text.into_bytes();
                    line.push(b'\n');
                    let written = stdin.write_all(&line).await.and(stdin.flush().await);
                    if let Err(error) = written {
                        let message = format!("cannot write to the command's input: {error}");
                        let _ = reports
                            .send(Report::Event(EventKind::Error { message }))
                            .await;
                    }
                }
                Command::Interrupt => {
                    let _ = signal_group(group, rustix::process::Signal::INT);
                }
                // The daemon refuses these for a runtime without approvals or modes.
                Command::Answer { .. } | Command::SetMode(_) => {}
            }
        }
        // No more commands: close the command's input so it sees the end of it.
        drop(stdin);
        std::future::pending::<()>().await;
    };
    smol::future::or(
        async {
            output.await;
        },
        input,
    )
    .await;
    Ok(())
}

/// Read `stream` to its end in chunks of at most [`OUTPUT_CHUNK_LEN`], reporting each as an
/// output event. A UTF-8 character split between two reads is kept whole; invalid bytes become
/// U+FFFD.
pub async fn pump(
    mut reader: impl smol::io::AsyncRead + Unpin,
    stream: Stream,
    reports: &Sender<Report>,
) {
    let mut buffer = vec![0u8; OUTPUT_CHUNK_LEN];
    let mut kept = 0;
    let emit = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes).into_owned();
        reports.send(Report::Event(EventKind::Output { stream, text }))
    };
    loop {
        let read = match reader.read(&mut buffer[kept..]).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let filled = kept + read;
        // At most 3 bytes are held back, so the 8 KiB buffer never fills with them.
        let cut = complete_utf8_prefix(&buffer[..filled]);
        if cut > 0 && emit(&buffer[..cut]).await.is_err() {
            return;
        }
        buffer.copy_within(cut..filled, 0);
        kept = filled - cut;
    }
    if kept > 0 {
        let _ = emit(&buffer[..kept]).await;
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
            let (sender, receiver) = smol::channel::unbounded();
            pump(&input[..], Stream::Stdout, &sender).await;
            drop(sender);
            let mut out = String::new();
            while let Ok(Report::Event(EventKind::Output { text, .. })) = receiver.recv().await {
                out.push_str(&text);
            }
            assert_eq!(out.as_bytes(), &input[..]);
        });
    }
}
