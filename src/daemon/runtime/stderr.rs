//! An agent's standard error, beside its conversation: every line becomes an output event, so
//! an agent's own error messages (a bad key, a crash) reach the phone. One pump for every
//! runtime.

use std::future::Future;
use std::time::Duration;

use muxagent_proto::app::{EventKind, Stream};
use smol::channel::Sender;
use smol::io::AsyncRead;

use super::Report;
use super::lines::{Line, LineReader};
use crate::limits::{AGENT_LINE_MAX_LEN, AGENT_STDERR_DRAIN_MS};

/// Run `conversation` while `stderr`'s lines become output events on `reports`. When the
/// conversation ends, the last of standard error gets [`AGENT_STDERR_DRAIN_MS`] to arrive: a
/// grandchild may hold the pipe open, so its end is not waited for.
pub async fn beside_stderr<T>(
    conversation: impl Future<Output = T>,
    stderr: impl AsyncRead + Unpin,
    reports: Sender<Report>,
) -> T {
    let mut lines = LineReader::new(stderr, AGENT_LINE_MAX_LEN);
    let pump = async move {
        while let Ok(Some(line)) = lines.next().await {
            let text = match line {
                Line::Text(text) => text,
                Line::TooLong(length) => format!("({length} bytes of standard error skipped)"),
            };
            let kind = EventKind::Output {
                stream: Stream::Stderr,
                text: text + "\n",
            };
            if reports.send(Report::Event(kind)).await.is_err() {
                break;
            }
        }
    };
    let mut pump = std::pin::pin!(pump);
    let mut conversation = std::pin::pin!(conversation);
    let mut pump_done = false;
    let result = std::future::poll_fn(|cx| {
        if !pump_done && pump.as_mut().poll(cx).is_ready() {
            pump_done = true;
        }
        conversation.as_mut().poll(cx)
    })
    .await;
    if !pump_done {
        smol::future::or(pump, async {
            smol::Timer::after(Duration::from_millis(AGENT_STDERR_DRAIN_MS)).await;
        })
        .await;
    }
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use smol::Async;
    use smol::io::AsyncWriteExt;

    use super::*;

    #[test]
    fn standard_error_becomes_output_events() {
        let (reader, writer) = UnixStream::pair().expect("pair");
        let (sender, reports) = smol::channel::unbounded();
        smol::block_on(async {
            let mut writer = Async::new(writer).expect("async");
            let conversation = async {
                writer
                    .write_all(b"Ripgrep is not available.\nno newline")
                    .await
                    .expect("write");
                drop(writer);
            };
            let stderr = Async::new(reader).expect("async");
            beside_stderr(conversation, stderr, sender).await;
        });
        let texts: Vec<Report> = std::iter::from_fn(|| reports.try_recv().ok()).collect();
        let output = |text: &str| {
            Report::Event(EventKind::Output {
                stream: Stream::Stderr,
                text: text.into(),
            })
        };
        assert_eq!(
            texts,
            [
                output("Ripgrep is not available.\n"),
                output("no newline\n")
            ]
        );
    }
}
