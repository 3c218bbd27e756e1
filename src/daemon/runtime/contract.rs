//! The contract every runtime's asks keep, checked by one function each runtime's tests call
//! with asks made from its own protocol's messages ([`super::Ask::input`] defines the exact
//! input).

use muxagent_proto::app::{SessionId, request_hash};

use super::Ask;

/// `base` and `again` come from the same agent message; each of `changed` from that message
/// with one thing the agent would run changed. The same message must hash the same, and every
/// change must hash differently from the base and from every other change.
pub fn check(base: &Ask, again: &Ask, changed: &[Ask]) {
    let session = SessionId([7; 16]);
    let hash = |ask: &Ask| request_hash(&session, &ask.agent_request, &ask.tool, &ask.input);
    assert_eq!(
        hash(base),
        hash(again),
        "the same request hashed twice: {base:?}"
    );
    let mut seen = vec![hash(base)];
    for ask in changed {
        let digest = hash(ask);
        assert!(
            !seen.contains(&digest),
            "a changed request hashes like another: {ask:?}"
        );
        seen.push(digest);
    }
}
