//! `ctl devices`, `ctl revoke-device` and `ctl grant-owner`: the devices of this controller's
//! account as the relay shows them, and managing them. The rows, the prefix rules and the
//! signed entries are [`muxagent_client::devices`]'s (the web app's too); the relays asked are
//! those of the machines this controller paired with.

use std::time::Instant;

use muxagent_client::devices::{self, DeviceRow};
use muxagent_proto::frame::{ErrorCode, Frame};
use muxagent_relay_client::Client;
use serde_json::json;

use super::{Controller, link, state};
use crate::commands::CommandError;
use crate::{os, render};

/// The request numbers of one exchange on a fresh connection.
const QUERY_REQUEST: u32 = 1;
const ENTRY_REQUEST: u32 = 2;

/// One relay's account, as it showed it.
struct Shown {
    relay: String,
    client: Client,
    rows: Vec<DeviceRow>,
}

/// The relays this controller's machines meet on, each once, in the book's order.
fn relays(controller: &Controller) -> Result<Vec<String>, CommandError> {
    let mut relays: Vec<String> = Vec::new();
    for machine in &controller.machines.machines {
        if !relays.contains(&machine.relay) {
            relays.push(machine.relay.clone());
        }
    }
    if relays.is_empty() {
        return Err(CommandError::Usage(
            "this controller has paired with no machine, so it is in no account; pair one with \
             `muxagent ctl pair LINK`"
                .into(),
        ));
    }
    Ok(relays)
}

/// Send `frame` and wait for what answers `request`: the frame, or the refusal's reason.
async fn exchange(client: &mut Client, frame: &Frame, request: u32) -> Result<Frame, String> {
    client
        .send(frame)
        .await
        .map_err(|error| error.to_string())?;
    let deadline = Instant::now() + link::EXCHANGE_TIMEOUT;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        let frame = smol::future::or(
            async { client.recv().await.map_err(|error| error.to_string()) },
            async {
                smol::Timer::after(wait).await;
                Err("the relay did not answer in time".to_string())
            },
        )
        .await?;
        match frame {
            Frame::DeviceList(ref list) if list.request == request => return Ok(frame),
            Frame::RegistryAck(ref ack) if ack.request == request => return Ok(frame),
            Frame::Error(error) if error.request == Some(request) => {
                return Err(format!("the relay refused: {}", error.reason));
            }
            Frame::Error(error) if error.code == ErrorCode::Revoked => {
                return Err(format!(
                    "the relay refuses this controller: {}",
                    error.reason
                ));
            }
            _ => {}
        }
    }
}

/// Ask every relay for the account's devices.
async fn show(controller: &Controller) -> Result<Vec<Shown>, CommandError> {
    let mut shown = Vec::new();
    let you = controller.identity.public().fingerprint();
    for relay in relays(controller)? {
        let mut client = link::connect(&relay, &controller.identity)
            .await
            .map_err(CommandError::Relay)?;
        let answer = exchange(&mut client, &devices::query(QUERY_REQUEST), QUERY_REQUEST)
            .await
            .map_err(|error| CommandError::Relay(format!("{relay}: {error}")))?;
        let Frame::DeviceList(list) = answer else {
            return Err(CommandError::Relay(format!(
                "{relay}: unexpected answer {answer:?}"
            )));
        };
        let rows = devices::rows(&list, &you, &controller.machines);
        shown.push(Shown {
            relay,
            client,
            rows,
        });
    }
    Ok(shown)
}

fn paired_hosts(row: &DeviceRow) -> String {
    if row.paired.is_empty() {
        return "-".into();
    }
    row.paired
        .iter()
        .map(|machine| render::visible_field(&machine.hostname))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ctl devices`.
pub(super) async fn list(controller: &Controller, json_out: bool) -> Result<(), CommandError> {
    let shown = show(controller).await?;
    if json_out {
        let rows: Vec<_> = shown
            .iter()
            .flat_map(|account| account.rows.iter().map(|row| (&account.relay, row)))
            .map(|(relay, row)| {
                let paired: Vec<_> = row
                    .paired
                    .iter()
                    .map(
                        |m| json!({ "hostname": m.hostname, "fingerprint": m.machine.to_string() }),
                    )
                    .collect();
                json!({
                    "relay": relay,
                    "fingerprint": row.device.to_string(),
                    "fingerprint_full": row.device.to_hex(),
                    "you": row.you,
                    "owner": row.owner,
                    "online": row.online,
                    "paired": paired,
                })
            })
            .collect();
        println!("{}", render::json_text(&serde_json::Value::Array(rows)));
    } else {
        let several = shown.len() > 1;
        for account in &shown {
            if several {
                println!("{}:", render::visible_field(&account.relay));
            }
            println!(
                "{:<20} {:<6} {:<8} PAIRED WITH",
                "DEVICE", "OWNER", "ONLINE"
            );
            for row in &account.rows {
                println!(
                    "{:<20} {:<6} {:<8} {}{}",
                    row.device.to_string(),
                    if row.owner { "owner" } else { "-" },
                    if row.online { "online" } else { "offline" },
                    paired_hosts(row),
                    if row.you { "  (this controller)" } else { "" }
                );
            }
            if !devices::is_owner(&account.rows) {
                println!(
                    "this controller is not an owner of its account: it sees only itself; an \
                     owner sees every device"
                );
            }
        }
    }
    for account in shown {
        account.client.close().await;
    }
    Ok(())
}

/// The one device `prefix` names across every relay's account, with its relay's connection.
async fn pick(
    controller: &Controller,
    prefix: &str,
) -> Result<(Client, String, DeviceRow), CommandError> {
    let shown = show(controller).await?;
    let mut found: Vec<(usize, DeviceRow)> = Vec::new();
    let mut unknown = None;
    for (index, account) in shown.iter().enumerate() {
        match devices::resolve(&account.rows, prefix) {
            Ok(row) => found.push((index, row.clone())),
            Err(error @ devices::ResolveError::Unknown(_)) => unknown = Some(error),
            Err(error) => return Err(CommandError::Usage(error.to_string())),
        }
    }
    if found.len() > 1 {
        let matches = found.iter().map(|(_, row)| row.device).collect();
        return Err(CommandError::Usage(
            devices::ResolveError::Ambiguous(prefix.into(), matches).to_string(),
        ));
    }
    let Some((index, row)) = found.pop() else {
        let owner = shown.iter().any(|account| devices::is_owner(&account.rows));
        return Err(CommandError::Usage(match unknown {
            Some(_) if !owner => format!(
                "no device you can see has a fingerprint starting `{prefix}`: this controller is \
                 not an owner, so it sees (and may revoke) only itself"
            ),
            Some(error) => error.to_string(),
            None => "no such device".into(),
        }));
    };
    let mut shown = shown;
    let account = shown.swap_remove(index);
    for other in shown {
        other.client.close().await;
    }
    Ok((account.client, account.relay, row))
}

/// Send a signed registry entry, wait for the relay to acknowledge it, and close.
async fn submit(mut client: Client, frame: &Frame) -> Result<(), CommandError> {
    let acked = exchange(&mut client, frame, ENTRY_REQUEST).await;
    client.close().await;
    acked.map(drop).map_err(CommandError::Relay)
}

/// `ctl revoke-device PREFIX`.
pub(super) async fn revoke(mut controller: Controller, prefix: &str) -> Result<(), CommandError> {
    let (client, relay, row) = pick(&controller, prefix).await?;
    let frame = devices::revoke(
        &controller.identity,
        row.device,
        ENTRY_REQUEST,
        os::unix_now(),
    )?;
    submit(client, &frame).await?;
    let hosts = paired_hosts(&row);
    if row.you {
        // Its key is barred on that relay: the machines there cannot be reached any more.
        controller
            .machines
            .machines
            .retain(|machine| machine.relay != relay);
        state::save(&controller.machines, &controller.home)?;
        println!(
            "revoked this controller ({}) on {relay}: its key is barred there for good and it \
             forgot the machines there ({hosts}); pair again to use them",
            row.device
        );
    } else {
        println!(
            "revoked device {}: the relay closed its connections and refuses its key from now \
             on; the machines it paired with forget it ({hosts})",
            row.device
        );
    }
    Ok(())
}

/// `ctl grant-owner PREFIX`.
pub(super) async fn grant_owner(controller: &Controller, prefix: &str) -> Result<(), CommandError> {
    let (client, _relay, row) = pick(controller, prefix).await?;
    if row.owner {
        client.close().await;
        return Err(CommandError::Usage(format!(
            "device {} is an owner already",
            row.device
        )));
    }
    let frame = devices::grant_owner(
        &controller.identity,
        row.device,
        ENTRY_REQUEST,
        os::unix_now(),
    )?;
    submit(client, &frame).await?;
    println!(
        "device {} is now an owner: it reaches every machine of the account and may revoke its \
         devices and machines",
        row.device
    );
    Ok(())
}
