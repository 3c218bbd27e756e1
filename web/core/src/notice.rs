//! Deciding from a notification: the service worker hands the core the push [`Notice`] it
//! showed (as `web/src/notice.ts` parsed it) and the person's action. The decision is signed
//! over the hash recomputed from the notice's own session, request id, tool and exact input
//! ([`decide::sign`] refuses when that differs from the hash the machine sent), so a notice
//! whose input and hash disagree can never produce a decision.
//!
//! [`Notice`]: muxagent_proto::push::Notice

use muxagent_client::controller::ClientError;
use muxagent_client::decide::{self, DecideError};
use muxagent_proto::app::{
    AppErrorCode, ApprovalKind, ApprovalRequest, ApprovalState, Decision, SessionId, SignedDecision,
};
use muxagent_proto::identity::{Fingerprint, Identity};
use serde::Serialize;

use crate::read::{Object, whole};
use crate::record;

/// An approval to decide, from a notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    /// The machine that asked.
    pub machine: Fingerprint,
    /// Its hostname, as the notice said.
    pub host: String,
    /// The session.
    pub session: SessionId,
    /// The request as the notice carried it.
    pub request: ApprovalRequest,
}

fn text(object: &impl Object, key: &str) -> Result<String, String> {
    object
        .get(key)
        .and_then(|value| value.text())
        .ok_or_else(|| format!("the notice has no `{key}`"))
}

/// The approval of a notice (`{ machine, host, session, approval: { id, agent_request, tool,
/// input, hash } }`, the wire's JSON names).
pub fn read(notice: &impl Object) -> Result<Action, String> {
    let machine = record::parse_fingerprint(&text(notice, "machine")?)
        .ok_or("the notice's machine is not a fingerprint")?;
    let session = record::parse_session(&text(notice, "session")?)
        .ok_or("the notice's session is not a session id")?;
    let approval = notice
        .get("approval")
        .ok_or("the notice carries no approval to decide")?;
    let id = approval
        .get("id")
        .and_then(|id| id.number())
        .and_then(whole)
        .ok_or("the notice's approval has no number")?;
    let hash = Fingerprint::parse_hex(&text(&approval, "hash")?)
        .map_err(|_| "the notice's approval hash is not 64 hex digits")?;
    Ok(Action {
        machine,
        host: text(notice, "host")?,
        session,
        request: ApprovalRequest {
            approval: id,
            // Not part of the hash or the decision; a plan's approval is decided the same way.
            kind: ApprovalKind::Tool,
            agent_request: text(&approval, "agent_request")?,
            tool: text(&approval, "tool")?,
            input: text(&approval, "input")?,
            request_hash: hash.0,
        },
    })
}

/// Sign allow (once) or deny for `action` as `device`, over the hash recomputed from the
/// notice's exact input. `now` is Unix seconds.
pub fn sign(
    device: &Identity,
    action: &Action,
    allow: bool,
    now: u64,
) -> Result<SignedDecision, DecideError> {
    let decision = if allow {
        Decision::AllowOnce
    } else {
        Decision::Deny {
            message: String::new(),
        }
    };
    let shown = action.request.input.as_str();
    decide::sign(
        device,
        action.session,
        &action.request,
        shown,
        decision,
        now,
    )
}

/// What came of a notification's action, for the notification that replaces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// `applied` (the agent has the answer), `sent` (the machine accepted it; not applied yet
    /// when the wait ended), `withdrawn`, `expired`, `taken` (decided elsewhere, or no longer
    /// pending), or `failed`.
    pub state: &'static str,
    /// The machine's hostname.
    pub host: String,
    /// Why it failed, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Outcome {
    /// A failure with its reason.
    pub fn failed(host: &str, message: impl ToString) -> Outcome {
        Outcome {
            state: "failed",
            host: host.into(),
            message: Some(message.to_string()),
        }
    }

    /// The machine's answer to the decision; `state` is the approval's state seen after it.
    pub fn of(host: &str, answer: &Result<(), ClientError>, state: Option<ApprovalState>) -> Self {
        let word = match answer {
            Err(ClientError::Refused {
                code: AppErrorCode::UnknownApproval,
                message,
                ..
            }) => {
                return Outcome {
                    state: "taken",
                    host: host.into(),
                    message: Some(message.clone()),
                };
            }
            Err(error) => return Outcome::failed(host, error),
            Ok(()) => match state {
                Some(ApprovalState::Applied) => "applied",
                Some(ApprovalState::Withdrawn) => "withdrawn",
                Some(ApprovalState::Expired) => "expired",
                _ => "sent",
            },
        };
        Outcome {
            state: word,
            host: host.into(),
            message: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use muxagent_proto::app::request_hash;
    use muxagent_proto::identity::SECRET_BYTES_LEN;
    use serde_json::{Value, json};

    use super::*;

    fn notice(input: &str, hash_of: &str) -> Value {
        let session = SessionId([0xab; 16]);
        let hash = request_hash(&session, "toolu_1", "Bash", hash_of);
        json!({
            "v": 1, "kind": "approval", "machine": "0c".repeat(32), "host": "alpha",
            "session": "ab".repeat(16), "title": "t", "text": "x", "at": 5,
            "approval": { "id": 3, "agent_request": "toolu_1", "tool": "Bash",
                          "input": input, "hash": Fingerprint(hash).to_hex() },
        })
    }

    #[test]
    fn signs_over_the_hash_of_the_notices_exact_input() {
        let device = Identity::from_secret_bytes(&[5; SECRET_BYTES_LEN]);
        let input = r#"{"command":"touch approved.txt"}"#;
        let action = read(&notice(input, input)).unwrap();
        assert_eq!(action.machine, Fingerprint([0x0c; 32]));
        assert_eq!(action.host, "alpha");
        assert_eq!(action.request.approval, 3);
        let signed = sign(&device, &action, true, 9).unwrap();
        assert_eq!(signed.verify(), Ok(()));
        assert_eq!(signed.body.decision, Decision::AllowOnce);
        assert_eq!(signed.body.session, action.session);
        assert_eq!(signed.body.approval, 3);
        assert_eq!(signed.body.request_hash, action.request.request_hash);
        let denied = sign(&device, &action, false, 9).unwrap();
        assert!(matches!(denied.body.decision, Decision::Deny { .. }));

        // An input that is not what the hash covers is never signed.
        let forged = read(&notice(r#"{"command":"ls"}"#, input)).unwrap();
        assert_eq!(
            sign(&device, &forged, true, 9),
            Err(DecideError::InconsistentRequest)
        );
    }

    #[test]
    fn a_notice_without_a_whole_approval_is_refused() {
        let input = "{}";
        let mut bare = notice(input, input);
        bare["approval"] = Value::Null;
        assert!(read(&bare).is_err());
        for (key, value) in [
            ("id", json!(-1)),
            ("id", json!(1.5)),
            ("hash", json!("abc")),
            ("input", json!(7)),
        ] {
            let mut bad = notice(input, input);
            bad["approval"][key] = value;
            assert!(read(&bad).is_err(), "{key}");
        }
        let mut bad = notice(input, input);
        bad["session"] = json!("zz");
        assert!(read(&bad).is_err());
    }

    #[test]
    fn outcomes_name_what_happened() {
        let taken = ClientError::Refused {
            hostname: "alpha".into(),
            code: AppErrorCode::UnknownApproval,
            message: "approval 3 was already decided".into(),
        };
        assert_eq!(Outcome::of("alpha", &Err(taken), None).state, "taken");
        assert_eq!(
            Outcome::of("alpha", &Ok(()), Some(ApprovalState::Applied)).state,
            "applied"
        );
        assert_eq!(
            Outcome::of("alpha", &Ok(()), Some(ApprovalState::Decided)).state,
            "sent"
        );
        let lost = Outcome::of(
            "alpha",
            &Err(ClientError::Timeout {
                hostname: "alpha".into(),
            }),
            None,
        );
        assert_eq!(lost.state, "failed");
        assert!(lost.message.unwrap().contains("did not answer"));
    }
}
