//! A signed decision for an approval, made from the input *as the person saw it*: the request
//! hash is recomputed from the session, the agent's request id, the tool and the shown input,
//! and nothing is signed unless it equals the hash the machine sent. A screen that shows one
//! input while the machine asked about another (a rendering bug, a stale card, a tampered
//! cache) can then never produce a valid decision for what was not shown.

use std::fmt;

use muxagent_proto::app::{
    ApprovalRequest, Decision, DecisionBody, SessionId, SignedDecision, request_hash,
};
use muxagent_proto::identity::Identity;

/// Why no decision was signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecideError {
    /// The shown input hashes to something else than the request's hash.
    HashMismatch,
    /// The request's own fields do not give its hash: the machine sent an inconsistent request.
    InconsistentRequest,
}

impl fmt::Display for DecideError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecideError::HashMismatch => {
                "the input shown is not exactly what the agent asked to run, so nothing was signed; reload the approval and look again"
            }
            DecideError::InconsistentRequest => {
                "the machine's approval request does not match its own hash, so nothing was signed"
            }
        })
    }
}

impl std::error::Error for DecideError {}

/// How many hex digits of the request hash [`digest`] gives: 64 bits, so no agent can craft a
/// second input with the same digest, and short enough to type or paste.
pub const DIGEST_HEX: usize = 16;

/// The short digest of `request` of `session` that a person (or a script) quotes to allow it:
/// the first [`DIGEST_HEX`] hex digits of its hash, recomputed from the request's own session,
/// agent request id, tool and input. `None` when the input does not give the machine's hash
/// (the machine sent it cut, or inconsistent): such a request cannot be allowed from here.
pub fn digest(session: SessionId, request: &ApprovalRequest) -> Option<String> {
    let hash = request_hash(
        &session,
        &request.agent_request,
        &request.tool,
        &request.input,
    );
    (hash == request.request_hash).then(|| hex_prefix(&hash))
}

/// `request` with `input` in place of its (cut) input, if `input` is exactly what the request's
/// hash covers: the whole input fetched from the machine
/// ([`whole`](crate::whole)). From then on [`digest`] and [`sign`] work on it as on any input.
pub fn whole(
    session: SessionId,
    request: &ApprovalRequest,
    input: String,
) -> Result<ApprovalRequest, DecideError> {
    let hash = request_hash(&session, &request.agent_request, &request.tool, &input);
    if hash != request.request_hash {
        return Err(DecideError::HashMismatch);
    }
    Ok(ApprovalRequest {
        input,
        ..request.clone()
    })
}

/// The first [`DIGEST_HEX`] hex digits of `hash`, lower case.
fn hex_prefix(hash: &[u8; 32]) -> String {
    hash.iter()
        .take(DIGEST_HEX / 2)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether the signed decision `signed` is over the request whose [`digest`] is `digest`.
pub fn signs_digest(signed: &SignedDecision, digest: &str) -> bool {
    hex_prefix(&signed.body.request_hash).eq_ignore_ascii_case(digest)
}

/// Sign a deny of `request` of `session` as `device`, over the hash the machine sent, whether or
/// not the input came whole: a refusal runs nothing, so it needs no look at what it refuses (and
/// an input too long to show must still be refusable). `now` is Unix seconds on the device.
pub fn deny(
    device: &Identity,
    session: SessionId,
    request: &ApprovalRequest,
    message: String,
    now: u64,
) -> SignedDecision {
    let body = DecisionBody {
        session,
        approval: request.approval,
        request_hash: request.request_hash,
        decision: Decision::Deny { message },
        decided_at: now,
    };
    SignedDecision::sign(device, body)
}

/// Sign `decision` on `request` of `session` as `device`, if `shown_input` is exactly the
/// input the request's hash covers. `now` is Unix seconds on the device.
pub fn sign(
    device: &Identity,
    session: SessionId,
    request: &ApprovalRequest,
    shown_input: &str,
    decision: Decision,
    now: u64,
) -> Result<SignedDecision, DecideError> {
    let hash = |input: &str| request_hash(&session, &request.agent_request, &request.tool, input);
    if hash(shown_input) != request.request_hash {
        return Err(if hash(&request.input) == request.request_hash {
            DecideError::HashMismatch
        } else {
            DecideError::InconsistentRequest
        });
    }
    let body = DecisionBody {
        session,
        approval: request.approval,
        request_hash: request.request_hash,
        decision,
        decided_at: now,
    };
    Ok(SignedDecision::sign(device, body))
}

#[cfg(test)]
mod tests {
    use muxagent_proto::app::ApprovalKind;
    use muxagent_proto::identity::SECRET_BYTES_LEN;

    use super::*;

    const SESSION: SessionId = SessionId([3; 16]);

    fn request(input: &str) -> ApprovalRequest {
        ApprovalRequest {
            approval: 4,
            kind: ApprovalKind::Tool,
            agent_request: "toolu_1".into(),
            tool: "Bash".into(),
            input: input.into(),
            request_hash: request_hash(&SESSION, "toolu_1", "Bash", input),
        }
    }

    #[test]
    fn signs_what_was_shown() {
        let device = Identity::from_secret_bytes(&[5; SECRET_BYTES_LEN]);
        let asked = request(r#"{"command":"ls"}"#);
        let signed = sign(
            &device,
            SESSION,
            &asked,
            r#"{"command":"ls"}"#,
            Decision::AllowOnce,
            9,
        )
        .unwrap();
        assert_eq!(signed.verify(), Ok(()));
        assert_eq!(signed.body.request_hash, asked.request_hash);
        assert_eq!(signed.body.approval, 4);
        assert_eq!(signed.body.decided_at, 9);
        assert_eq!(signed.device, device.public());
    }

    #[test]
    fn the_digest_is_the_recomputed_hash_and_a_cut_input_has_none() {
        let asked = request(r#"{"command":"ls"}"#);
        let digest = digest(SESSION, &asked).unwrap();
        assert_eq!(digest.len(), DIGEST_HEX);
        let device = Identity::from_secret_bytes(&[5; SECRET_BYTES_LEN]);
        let signed = sign(
            &device,
            SESSION,
            &asked,
            &asked.input,
            Decision::AllowOnce,
            0,
        )
        .unwrap();
        assert!(signs_digest(&signed, &digest));
        assert!(signs_digest(&signed, &digest.to_uppercase()));
        assert!(!signs_digest(&signed, "0000000000000000"));
        let mut cut = asked.clone();
        cut.input = r#"{"command":"l"#.into();
        assert_eq!(super::digest(SESSION, &cut), None);
        // The whole input, fetched, makes it allowable again; another input does not.
        let whole = super::whole(SESSION, &cut, asked.input.clone()).unwrap();
        assert_eq!(super::digest(SESSION, &whole), Some(digest.clone()));
        assert_eq!(
            super::whole(SESSION, &cut, r#"{"command":"lt"}"#.into()),
            Err(DecideError::HashMismatch)
        );
        // A cut input is still refusable.
        let denied = deny(&device, SESSION, &cut, "no".into(), 0);
        assert_eq!(denied.verify(), Ok(()));
        assert_eq!(denied.body.request_hash, asked.request_hash);
    }

    #[test]
    fn refuses_an_input_that_differs_by_one_byte() {
        let device = Identity::from_secret_bytes(&[5; SECRET_BYTES_LEN]);
        let asked = request(r#"{"command":"rm -rf /tmp/x"}"#);
        for shown in [
            r#"{"command":"rm -rf /tmp/y"}"#,
            r#"{"command":"rm -rf /tmp/x"} "#,
            "",
        ] {
            assert_eq!(
                sign(&device, SESSION, &asked, shown, Decision::AllowOnce, 0),
                Err(DecideError::HashMismatch),
                "{shown}"
            );
        }
        // The same input in another session is another request.
        assert_eq!(
            sign(
                &device,
                SessionId([4; 16]),
                &asked,
                &asked.input,
                Decision::AllowOnce,
                0
            ),
            Err(DecideError::InconsistentRequest)
        );
        let mut forged = request("a");
        forged.input = "b".into();
        assert_eq!(
            sign(&device, SESSION, &forged, "b", Decision::AllowOnce, 0),
            Err(DecideError::InconsistentRequest)
        );
    }
}
