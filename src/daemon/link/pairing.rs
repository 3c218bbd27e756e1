//! Pairing a device with this machine, and leaving the account: the one-time pairing link (a
//! ticket with a fresh pairing id and secret, registered with the relay until it expires), the
//! pairing handshake ([`Pairing`], sans-IO), the signed unpair request, and the news control
//! clients wait for while either runs ([`Notice`]).
//!
//! An unpaired machine keeps a link open; a paired one opens one only when `muxagent pair`
//! asks (over the control socket, [`watch`]).

use muxagent_proto::frame::{self, Frame, OpenPairing, PairingId, RegistryEntry, SignedEntry};
use muxagent_proto::limits::PAIRING_TTL_SECS;
use muxagent_proto::machine::{Pairing, PairingStep};
use muxagent_proto::ticket::{PairingSecret, Ticket};
use rand_core::Rng;
use serde::{Deserialize, Serialize};
use smol::channel::Sender;

use super::super::{Core, Out, Shared};
use super::{Ended, PairingOffer};
use crate::{log, os};

/// The registry request number of an unpair.
pub(super) const UNPAIR_REQUEST: u32 = 1;

/// What a control client is told while it waits (`pair`, `unpair`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Notice {
    /// A pairing link is up.
    PairingLink {
        /// The link.
        link: String,
        /// Unix seconds.
        expires_at: u64,
    },
    /// A device paired.
    Paired {
        /// Its short fingerprint.
        device: String,
    },
    /// The link expired unused.
    PairingExpired,
    /// The relay removed this machine's record.
    Unpaired,
    /// The request failed.
    Failed {
        /// Why.
        reason: String,
    },
}

/// Send `notices` the pairing news from now on: the link on show at once, or a new one as soon
/// as the relay link is up.
pub fn watch(core: &Shared, notices: Sender<Notice>) {
    let mut c = core.borrow_mut();
    c.link.watchers.push(notices.clone());
    if let Some(offer) = &c.link.status.pairing {
        let _ = notices.try_send(Notice::PairingLink {
            link: offer.link.clone(),
            expires_at: offer.expires_at,
        });
        return;
    }
    c.link.want_pairing = true;
    if let Some(outgoing) = &c.link.outgoing {
        let _ = outgoing.try_send(Out::Wake);
    }
}

/// Ask the relay to remove this machine from its account; `notices` hears how it went.
pub fn leave(core: &Shared, notices: Sender<Notice>) -> Result<(), String> {
    let mut c = core.borrow_mut();
    if c.link.status.revoked {
        return Err(
            "the relay refuses this machine (it was revoked), so it cannot be asked; \
                    `muxagent unpair --local` forgets the account and makes new keys without it"
                .into(),
        );
    }
    if c.state.devices.is_empty() {
        return Err("this machine is not paired".into());
    }
    let Some(frame) = unpair_entry(&c) else {
        return Err("could not sign the unpair request".into());
    };
    if !c.link.status.connected {
        return Err("the daemon is not connected to the relay; try again once `muxagent daemon status` shows it connected".into());
    }
    c.link.watchers.push(notices);
    c.link.send_frame(frame);
    Ok(())
}

/// Tell every waiting control client.
fn tell(core: &mut Core, notice: Notice) {
    core.link
        .watchers
        .retain(|watcher| watcher.try_send(notice.clone()).is_ok());
}

/// Make a new ticket, register its pairing id with the relay, and show the link.
pub(super) fn open(core: &Shared, url: &str) {
    let mut rng = os::rng();
    let mut id = [0u8; 16];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let pairing_id = PairingId(id);
    let expires_at = os::unix_now() + PAIRING_TTL_SECS;
    let mut core = core.borrow_mut();
    let core = &mut *core;
    let public = core.identity.public();
    let Ok(relay_url) = url.try_into() else {
        log::error("the relay URL is too long for a pairing ticket");
        core.link.want_pairing = false;
        return;
    };
    let ticket = Ticket {
        relay_url,
        pairing_id,
        machine: public.fingerprint(),
        machine_noise: public.noise,
        secret: PairingSecret(secret),
        hostname: core.hostname.clone(),
        expires_at,
    };
    let link = ticket.link();
    let pairing = Pairing::new(
        &core.identity,
        pairing_id,
        PairingSecret(secret),
        core.hostname.clone(),
    );
    core.link.pairing = Some(pairing);
    core.link.send_frame(
        OpenPairing {
            pairing_id,
            expires_at,
        }
        .into(),
    );
    core.link.status.pairing = Some(PairingOffer {
        link: link.clone(),
        expires_at,
    });
    tell(
        core,
        Notice::PairingLink {
            link: link.clone(),
            expires_at,
        },
    );
    // The link holds the pairing secret: it is shown to a person at a terminal, or handed to
    // `muxagent pair` / `daemon status` over the control socket, and never logged.
    log::info(&format!(
        "pairing {} open until {}; `muxagent pair` or `muxagent daemon status` shows the link",
        short_pairing_id(&pairing_id),
        log::timestamp(expires_at)
    ));
    log::show(&format!(
        "pair a device with this link (valid {} min):\n{}\n{link}",
        PAIRING_TTL_SECS / 60,
        crate::qr::render(&link).unwrap_or_default()
    ));
}

/// The first bytes of a pairing id, enough to find it in the relay's log.
fn short_pairing_id(id: &PairingId) -> String {
    let hex: String = id.0[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}…")
}

/// A pairing handshake message from a device.
pub(super) fn on_pair_recv(core: &mut Core, recv: frame::PairRecv) -> Option<Ended> {
    let identity = core.identity.clone();
    let pairing = core
        .link
        .pairing
        .as_mut()
        .filter(|p| p.pairing_id() == recv.pairing_id)?;
    match pairing.on_pair_recv(&identity, recv.from, &recv.payload, &mut os::rng()) {
        Ok(PairingStep::Send(frame)) => {
            core.link.send_frame(frame);
        }
        Ok(PairingStep::Ignored) => {}
        Ok(PairingStep::Paired(device)) => {
            let saved = core.pair_device(&device);
            core.link.pairing = None;
            core.link.status.pairing = None;
            core.link.want_pairing = false;
            match saved {
                Ok(()) => log::info(&format!("paired with device {}", device.fingerprint())),
                Err(error) => log::error(&format!("paired, but could not save it: {error}")),
            }
            tell(
                core,
                Notice::Paired {
                    device: device.fingerprint().to_string(),
                },
            );
            // Log in again: a pending machine becomes a machine.
            return Some(Ended::Again);
        }
        Err(error) => {
            let peer = format!("device {}", recv.from);
            core.warnings
                .warn(&peer, &format!("pairing with {}: {error}", recv.from));
        }
    }
    None
}

/// A device-signed or machine-signed registry entry for this machine leaving its account.
fn unpair_entry(core: &Core) -> Option<Frame> {
    let identity = &core.identity;
    let entry = RegistryEntry::UnpairMachine {
        machine: identity.public(),
        at: os::unix_now(),
    };
    let signed = SignedEntry::sign(identity, &entry).ok()?;
    Some(
        frame::Registry {
            request: UNPAIR_REQUEST,
            entry: signed,
        }
        .into(),
    )
}

/// The pairing link expired unused.
pub(super) fn expired(core: &mut Core) {
    core.link.pairing = None;
    core.link.status.pairing = None;
    tell(core, Notice::PairingExpired);
    // An unpaired machine keeps offering a fresh link; a paired one offered one only because
    // `muxagent pair` asked.
    core.link.want_pairing = core.state.devices.is_empty();
    log::info("the pairing link expired");
}

/// The relay removed this machine from its account: forget the devices and log in again (as a
/// pending machine).
pub(super) fn unpaired(core: &mut Core) -> Ended {
    if let Err(error) = core.forget_devices() {
        log::error(&format!(
            "unpaired on the relay, but could not save it: {error}"
        ));
    }
    tell(core, Notice::Unpaired);
    log::info("unpaired: this machine left its account");
    Ended::Again
}

/// The relay refused the unpair request.
pub(super) fn unpair_refused(core: &mut Core, reason: &str) {
    tell(
        core,
        Notice::Failed {
            reason: format!("the relay refused: {reason}"),
        },
    );
}
