//! The ceiling: a minimal forwarder on the relay's own stack (smol, async-tungstenite, the same
//! WebSocket buffer settings, one reader and one writer task per connection, a bounded queue
//! per receiver that drops the newest frame when full). It does nothing else: no login, no
//! registry, no budgets. A client's first message is its 8-byte id; every later message is
//! `destination id ‖ payload`, delivered as `source id ‖ payload`.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use muxagent_relay::limits::{MAX_FRAME_LEN, RELAY_QUEUE_DEPTH};
use smol::io::{AsyncRead, AsyncWrite};
use smol::stream::StreamExt as _;
use smol::{Async, Executor};

type Queues = Arc<Mutex<HashMap<u64, smol::channel::Sender<Vec<u8>>>>>;

/// The relay's server-side WebSocket settings.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(2 * MAX_FRAME_LEN + 64)
        .max_message_size(Some(MAX_FRAME_LEN))
        .max_frame_size(Some(MAX_FRAME_LEN))
}

/// Serve until killed (over wss with `tls`'s certificate and key).
pub fn serve(
    listen: SocketAddr,
    threads: usize,
    tls: Option<(PathBuf, PathBuf)>,
) -> Result<(), String> {
    let acceptor = match &tls {
        Some((cert, key)) => Some(crate::tls::acceptor(cert, key)?),
        None => None,
    };
    let listener = Async::<TcpListener>::bind(listen).map_err(|e| format!("{listen}: {e}"))?;
    let executor = Arc::new(Executor::new());
    for _ in 1..threads {
        let executor = executor.clone();
        std::thread::spawn(move || smol::block_on(executor.run(smol::future::pending::<()>())));
    }
    let queues: Queues = Arc::default();
    smol::block_on(executor.run(async {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.get_ref().set_nodelay(true);
            let tasks = executor.clone();
            let queues = queues.clone();
            match &acceptor {
                Some(acceptor) => {
                    let accept = acceptor.accept(stream);
                    executor
                        .spawn(async move {
                            if let Ok(tls) = accept.await {
                                connection(tls, queues, tasks).await;
                            }
                        })
                        .detach();
                }
                None => executor.spawn(connection(stream, queues, tasks)).detach(),
            }
        }
    }))
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    queues: Queues,
    executor: Arc<Executor<'static>>,
) {
    let Ok(ws) = async_tungstenite::accept_async_with_config(stream, Some(config())).await else {
        return;
    };
    serve_ws(ws, queues, &executor).await;
}

async fn serve_ws<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    ws: WebSocketStream<S>,
    queues: Queues,
    executor: &Executor<'static>,
) {
    let (mut sink, mut stream) = ws.split();
    let id = match stream.next().await {
        Some(Ok(Message::Binary(bytes))) if bytes.len() == 8 => {
            u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default())
        }
        _ => return,
    };
    let (sender, receiver) = smol::channel::bounded::<Vec<u8>>(RELAY_QUEUE_DEPTH);
    if let Ok(mut queues) = queues.lock() {
        queues.insert(id, sender);
    }
    let writer = executor.spawn(async move {
        while let Ok(bytes) = receiver.recv().await {
            if sink.send(Message::binary(bytes)).await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(message)) = stream.next().await {
        let Message::Binary(bytes) = message else {
            continue;
        };
        if bytes.len() < 8 {
            continue;
        }
        let to = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
        let queue = queues.lock().ok().and_then(|q| q.get(&to).cloned());
        if let Some(queue) = queue {
            let mut out = Vec::with_capacity(bytes.len());
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&bytes[8..]);
            let _ = queue.try_send(out);
        }
    }
    if let Ok(mut queues) = queues.lock() {
        queues.remove(&id);
    }
    drop(writer);
}
