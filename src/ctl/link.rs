//! A controller's connection: log in to the relay as a device, open a secure channel to a
//! machine, and exchange requests and answers. Built on the protocol core in
//! [`muxagent_proto::device`], which the web app shares.

use std::time::{Duration, Instant};

use muxagent_client::limits::REQUEST_TIMEOUT_MS;
use muxagent_proto::app::{DeviceMessage, MachineMessage};
use muxagent_proto::device::{MachineLink, Received};
use muxagent_proto::frame::{ErrorCode, Frame, Role};
use muxagent_proto::identity::{Identity, PublicIdentity};
use muxagent_relay_client::{Client, ClientConfig, ClientError, RelayUrl};

use crate::os;

/// How long one exchange with a machine may take: what any device allows a request.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_millis(REQUEST_TIMEOUT_MS);

/// Log in to `relay` as a device, warning once per run when its URL is not encrypted.
pub async fn connect(relay: &str, identity: &Identity) -> Result<Client, String> {
    static WARNED: std::sync::Once = std::sync::Once::new();
    if let Some(risk) = RelayUrl::parse(relay)
        .ok()
        .and_then(|url| url.cleartext_risk())
    {
        WARNED.call_once(|| eprintln!("muxagent: warning: {risk}"));
    }
    Client::connect(
        relay,
        identity,
        Role::Device,
        None,
        &ClientConfig::default(),
    )
    .await
    .map_err(|error| match error {
        ClientError::Connect(_) | ClientError::Timeout(_) => {
            format!("the relay at {relay} does not answer ({error})")
        }
        other => other.to_string(),
    })
}

/// What arrived from the relay while waiting.
pub enum Arrival {
    /// A message from the machine the link is for.
    Message(MachineMessage),
    /// A frame for someone else's business (presence, other machines).
    Other,
}

/// A channel to one machine over a relay connection.
pub struct Conversation<'a> {
    client: &'a mut Client,
    link: MachineLink,
    hostname: String,
    next_request: u32,
}

impl<'a> Conversation<'a> {
    /// Run the handshake with `machine`.
    pub async fn open(
        client: &'a mut Client,
        identity: &Identity,
        machine: PublicIdentity,
        hostname: &str,
    ) -> Result<Conversation<'a>, String> {
        let mut link = MachineLink::new(machine);
        let init = link
            .connect(identity, &mut os::rng())
            .map_err(|error| error.to_string())?;
        client
            .send(&init)
            .await
            .map_err(|error| error.to_string())?;
        let mut conversation = Conversation {
            client,
            link,
            hostname: hostname.into(),
            next_request: 1,
        };
        let deadline = Instant::now() + EXCHANGE_TIMEOUT;
        loop {
            let frame = conversation.recv_frame(deadline).await?;
            if conversation.take(&frame)? == Some(Received::Opened) {
                return Ok(conversation);
            }
        }
    }

    /// A fresh request number.
    pub fn request_id(&mut self) -> u32 {
        let id = self.next_request;
        self.next_request += 1;
        id
    }

    /// Send a message to the machine.
    pub async fn send(&mut self, message: &DeviceMessage) -> Result<(), String> {
        let frame = self.link.send(message).map_err(|error| error.to_string())?;
        self.client
            .send(&frame)
            .await
            .map_err(|error| error.to_string())
    }

    /// Send a request and wait for the message that answers `request`.
    pub async fn ask(
        &mut self,
        message: &DeviceMessage,
        request: u32,
    ) -> Result<MachineMessage, String> {
        self.send(message).await?;
        let deadline = Instant::now() + EXCHANGE_TIMEOUT;
        loop {
            if let Arrival::Message(message) = self.next(Some(deadline)).await? {
                let answers = match &message {
                    MachineMessage::Ack(ack) => ack.request == request,
                    MachineMessage::Error(error) => error.request == Some(request),
                    MachineMessage::SessionList(list) => list.request == Some(request),
                    MachineMessage::Runtimes(runtimes) => runtimes.request == request,
                    MachineMessage::ReplayComplete(complete) => complete.request == Some(request),
                    MachineMessage::InputChunk(chunk) => chunk.request == request,
                    _ => false,
                };
                if answers {
                    if let MachineMessage::Error(error) = message {
                        return Err(format!("{}: {}", self.hostname, error.message));
                    }
                    return Ok(message);
                }
            }
        }
    }

    /// The next message from the machine (or other frame), waiting until `deadline` if given.
    pub async fn next(&mut self, deadline: Option<Instant>) -> Result<Arrival, String> {
        loop {
            let frame = match deadline {
                Some(deadline) => self.recv_frame(deadline).await?,
                None => self
                    .client
                    .recv()
                    .await
                    .map_err(|error| error.to_string())?,
            };
            match self.take(&frame)? {
                Some(Received::Message(message)) => return Ok(Arrival::Message(message)),
                Some(_) => {}
                None => return Ok(Arrival::Other),
            }
        }
    }

    async fn recv_frame(&mut self, deadline: Instant) -> Result<Frame, String> {
        let wait = deadline.saturating_duration_since(Instant::now());
        let hostname = self.hostname.clone();
        smol::future::or(
            async { self.client.recv().await.map_err(|error| error.to_string()) },
            async {
                smol::Timer::after(wait).await;
                Err(format!(
                    "{hostname} did not answer within {} s",
                    EXCHANGE_TIMEOUT.as_secs()
                ))
            },
        )
        .await
    }

    /// Feed a frame to the link; `None` when it is not from this machine.
    fn take(&mut self, frame: &Frame) -> Result<Option<Received>, String> {
        match frame {
            Frame::Recv(recv) if recv.from == self.link.fingerprint() => self
                .link
                .receive(&recv.payload)
                .map(Some)
                .map_err(|error| format!("{}: {error}", self.hostname)),
            // The machine's daemon left the relay (it stopped, or was killed and will come back):
            // this channel is gone with it, and waiting on it would wait for ever.
            Frame::Presence(presence)
                if presence.machine == self.link.fingerprint() && !presence.online =>
            {
                Err(format!(
                    "{} went offline (its daemon left the relay)",
                    self.hostname
                ))
            }
            Frame::Error(error) => match error.code {
                ErrorCode::PeerOffline => Err(format!(
                    "{} is offline (its daemon is not connected to the relay)",
                    self.hostname
                )),
                ErrorCode::NotAllowed => Err(format!(
                    "the relay refuses to reach {}: {} (was it revoked?)",
                    self.hostname, error.reason
                )),
                _ => Err(format!("the relay refused: {}", error.reason)),
            },
            _ => Ok(None),
        }
    }
}
