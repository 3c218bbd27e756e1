//! The driver of JSON-lines agents (Claude Code, Codex): the protocol is a sans-IO
//! [`LineProtocol`] that turns lines and commands into [`Effects`]; [`drive`] does the IO.
//!
//! Tests drive a protocol with recorded lines and compare what it writes with what the real
//! CLI was sent (`agents/fixtures/`).

use muxagent_proto::app::EventKind;
use smol::channel::{Receiver, Sender};
use smol::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::stderr::beside_stderr;
use super::{AgentIo, Command, Report, RuntimeError, Spec};
use crate::limits::AGENT_LINE_MAX_LEN;

/// What a protocol step wants done: lines to write to the agent (in order, each without its
/// newline), then reports for the daemon.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    /// Lines for the agent's standard input.
    pub to_agent: Vec<String>,
    /// Reports for the daemon, sent after `to_agent` was written.
    pub reports: Vec<Report>,
}

impl Effects {
    /// Queue a line for the agent.
    pub fn send(&mut self, line: String) {
        self.to_agent.push(line);
    }

    /// Queue a report.
    pub fn report(&mut self, report: Report) {
        self.reports.push(report);
    }

    /// Queue an event.
    pub fn event(&mut self, kind: EventKind) {
        self.reports.push(Report::Event(kind));
    }
}

/// A JSON-lines agent protocol, without IO.
pub trait LineProtocol {
    /// What to write as soon as the agent started (a handshake).
    fn start(&mut self, spec: &Spec, out: &mut Effects);
    /// One line the agent printed (without its newline; not necessarily valid JSON).
    fn on_line(&mut self, line: &str, out: &mut Effects);
    /// A command from the daemon.
    fn on_command(&mut self, command: Command, out: &mut Effects);
    /// The agent's output ended: withdraw what is still pending.
    fn on_end(&mut self, _out: &mut Effects) {}
}

/// One line from the agent.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its newline.
    Text(String),
    /// A line longer than the limit, skipped; its length in bytes.
    TooLong(usize),
}

/// Reads lines of at most `max` bytes. Cancel-safe: a partly read line stays in the reader.
pub struct LineReader<R> {
    reader: BufReader<R>,
    partial: Vec<u8>,
    skipped: usize,
    max: usize,
}

impl<R: smol::io::AsyncRead + Unpin> LineReader<R> {
    /// A reader of `reader`'s lines.
    pub fn new(reader: R, max: usize) -> Self {
        LineReader {
            reader: BufReader::new(reader),
            partial: Vec::new(),
            skipped: 0,
            max,
        }
    }

    /// The next line, or `None` at the end of the stream.
    pub async fn next(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                if self.skipped > 0 {
                    let length = self.skipped + self.partial.len();
                    self.skipped = 0;
                    self.partial.clear();
                    return Ok(Some(Line::TooLong(length)));
                }
                if self.partial.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(self.take_line()));
            }
            let (chunk, found) = match available.iter().position(|&byte| byte == b'\n') {
                Some(end) => (&available[..end], Some(end + 1)),
                None => (available, None),
            };
            if self.skipped > 0 || self.partial.len() + chunk.len() > self.max {
                self.skipped += self.partial.len() + chunk.len();
                self.partial.clear();
            } else {
                self.partial.extend_from_slice(chunk);
            }
            let used = found.unwrap_or(available.len());
            self.reader.consume(used);
            if found.is_some() {
                if self.skipped > 0 {
                    let length = self.skipped;
                    self.skipped = 0;
                    return Ok(Some(Line::TooLong(length)));
                }
                return Ok(Some(self.take_line()));
            }
        }
    }

    fn take_line(&mut self) -> Line {
        let mut bytes = std::mem::take(&mut self.partial);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        Line::Text(String::from_utf8_lossy(&bytes).into_owned())
    }
}

enum Next {
    Line(std::io::Result<Option<Line>>),
    Command(Option<Command>),
}

/// Run `protocol` over the agent's streams until its standard output ends. Standard error
/// becomes output events, so an agent's own error messages (a bad key …) reach the phone.
pub async fn drive<P: LineProtocol>(
    mut protocol: P,
    spec: Spec,
    io: AgentIo,
    commands: Receiver<Command>,
    reports: Sender<Report>,
) -> Result<(), RuntimeError> {
    let AgentIo {
        mut stdin,
        stdout,
        stderr,
        ..
    } = io;
    let main = async {
        let mut lines = LineReader::new(stdout, AGENT_LINE_MAX_LEN);
        let mut effects = Effects::default();
        protocol.start(&spec, &mut effects);
        let mut commands_open = true;
        loop {
            apply(&mut stdin, &reports, std::mem::take(&mut effects)).await?;
            let line = async { Next::Line(lines.next().await) };
            let next = if commands_open {
                smol::future::or(line, async { Next::Command(commands.recv().await.ok()) }).await
            } else {
                line.await
            };
            match next {
                Next::Line(Ok(Some(Line::Text(text)))) => protocol.on_line(&text, &mut effects),
                Next::Line(Ok(Some(Line::TooLong(length)))) => effects.event(EventKind::Error {
                    message: format!(
                        "the agent printed a {length}-byte line, over the {AGENT_LINE_MAX_LEN}-byte limit; it was skipped"
                    ),
                }),
                Next::Line(Ok(None)) => break,
                Next::Line(Err(error)) => return Err(RuntimeError::Io(error)),
                Next::Command(Some(command)) => protocol.on_command(command, &mut effects),
                Next::Command(None) => commands_open = false,
            }
        }
        protocol.on_end(&mut effects);
        // The agent is gone: its input may be closed, but the reports still matter.
        effects.to_agent.clear();
        apply(&mut stdin, &reports, effects).await
    };
    beside_stderr(main, stderr, reports.clone()).await
}

async fn apply(
    stdin: &mut smol::process::ChildStdin,
    reports: &Sender<Report>,
    effects: Effects,
) -> Result<(), RuntimeError> {
    if !effects.to_agent.is_empty() {
        let mut bytes = Vec::new();
        for line in &effects.to_agent {
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
        }
        stdin.write_all(&bytes).await?;
        stdin.flush().await?;
    }
    for report in effects.reports {
        if reports.send(report).await.is_err() {
            break; // the daemon dropped the session; the agent is being stopped
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], max: usize) -> Vec<Line> {
        smol::block_on(async {
            let mut reader = LineReader::new(input, max);
            let mut lines = Vec::new();
            while let Some(line) = reader.next().await.expect("read") {
                lines.push(line);
            }
            lines
        })
    }

    #[test]
    fn lines_are_split_and_long_ones_skipped() {
        let text = |s: &str| Line::Text(s.into());
        assert_eq!(
            read_all(b"a\r\nbb\n\nccc", 8),
            vec![text("a"), text("bb"), text(""), text("ccc")]
        );
        assert_eq!(
            read_all(b"short\n0123456789\nnext\n0123456789", 8),
            vec![
                text("short"),
                Line::TooLong(10),
                text("next"),
                Line::TooLong(10)
            ]
        );
    }
}
