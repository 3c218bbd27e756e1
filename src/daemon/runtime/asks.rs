//! The asks an agent waits on, one table per running agent, shared by every runtime.
//!
//! Keyed by the agent's own request id ([`super::Ask::agent_request`]) and kept in the order
//! the agent asked, so an ending agent's asks are withdrawn in that order. The table is capped
//! at [`MAX_PENDING_APPROVALS`], the daemon's own cap on a session's open approvals: an agent
//! that asks without end is refused, not remembered. Each runtime declines a refused ask the
//! way its protocol says (Claude: deny; Codex: decline; ACP: cancelled), so the agent never
//! waits on an answer that cannot come.

use std::fmt;

use crate::limits::MAX_PENDING_APPROVALS;

/// What the runtime keeps of each open ask until it is answered or withdrawn.
pub struct OpenAsks<T> {
    /// In the order asked; at most [`MAX_PENDING_APPROVALS`], so a scan is cheap.
    entries: Vec<(String, T)>,
}

/// Why an ask was not taken. The ask comes back, for the runtime to decline.
pub struct Refused<T> {
    /// What went wrong.
    pub reason: RefusedReason,
    /// The ask, untouched.
    pub ask: T,
}

/// Why an ask was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusedReason {
    /// [`MAX_PENDING_APPROVALS`] asks are open already.
    Full,
    /// An open ask has the same id: the agent reused one (a second answer could not be told
    /// from the first).
    Duplicate,
}

impl fmt::Display for RefusedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusedReason::Full => write!(
                f,
                "{MAX_PENDING_APPROVALS} permission requests are already waiting for an answer"
            ),
            RefusedReason::Duplicate => {
                write!(f, "a permission request with this id is already waiting")
            }
        }
    }
}

impl<T> Default for OpenAsks<T> {
    fn default() -> Self {
        OpenAsks {
            entries: Vec::new(),
        }
    }
}

impl<T> fmt::Debug for OpenAsks<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(id, _)| id))
            .finish()
    }
}

impl<T> OpenAsks<T> {
    /// Keep `ask` under `id` until it is answered or withdrawn.
    pub fn insert(&mut self, id: String, ask: T) -> Result<(), Refused<T>> {
        let reason = if self.contains(&id) {
            RefusedReason::Duplicate
        } else if self.entries.len() >= MAX_PENDING_APPROVALS {
            RefusedReason::Full
        } else {
            self.entries.push((id, ask));
            return Ok(());
        };
        Err(Refused { reason, ask })
    }

    /// Whether `id` is open.
    pub fn contains(&self, id: &str) -> bool {
        self.entries.iter().any(|(open, _)| open == id)
    }

    /// Take the ask `id` (answered or withdrawn); `None` when it is not open.
    pub fn remove(&mut self, id: &str) -> Option<T> {
        let index = self.entries.iter().position(|(open, _)| open == id)?;
        Some(self.entries.remove(index).1)
    }

    /// Take every ask for which `take` says so, in the order asked; the others stay.
    pub fn take_where(&mut self, mut take: impl FnMut(&str, &T) -> bool) -> Vec<(String, T)> {
        let (taken, kept) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|(id, ask)| take(id, ask));
        self.entries = kept;
        taken
    }

    /// Take every ask, in the order asked (the agent ended or its turn was cancelled).
    pub fn take_all(&mut self) -> Vec<(String, T)> {
        std::mem::take(&mut self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_in_any_order_withdrawn_in_the_order_asked() {
        let mut asks = OpenAsks::default();
        for id in ["b", "a", "c"] {
            assert!(asks.insert(id.to_string(), id.len()).is_ok());
        }
        assert_eq!(asks.remove("a"), Some(1));
        assert_eq!(asks.remove("a"), None);
        let ids: Vec<String> = asks.take_all().into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["b", "c"]);
        assert!(asks.take_all().is_empty());
    }

    #[test]
    fn a_reused_id_is_refused_and_the_first_ask_kept() {
        let mut asks = OpenAsks::default();
        assert!(asks.insert("1".to_string(), "first").is_ok());
        let refused = asks.insert("1".to_string(), "second").err();
        let refused = refused.map(|refused| (refused.reason, refused.ask));
        assert_eq!(refused, Some((RefusedReason::Duplicate, "second")));
        assert_eq!(asks.remove("1"), Some("first"));
    }

    #[test]
    fn a_flood_of_asks_stops_at_the_cap() {
        let mut asks = OpenAsks::default();
        let mut refused = 0;
        for n in 0..MAX_PENDING_APPROVALS * 4 {
            if let Err(error) = asks.insert(n.to_string(), n) {
                assert_eq!(error.reason, RefusedReason::Full);
                refused += 1;
            }
        }
        assert_eq!(refused, MAX_PENDING_APPROVALS * 3);
        // An answer frees a place.
        assert!(asks.remove("0").is_some());
        assert!(asks.insert("new".to_string(), 0).is_ok());
        assert_eq!(asks.take_all().len(), MAX_PENDING_APPROVALS);
    }

    #[test]
    fn take_where_keeps_the_rest_in_order() {
        let mut asks = OpenAsks::default();
        for n in 0..6 {
            assert!(asks.insert(n.to_string(), n).is_ok());
        }
        let even: Vec<usize> = asks
            .take_where(|_, n| n % 2 == 0)
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        assert_eq!(even, [0, 2, 4]);
        let odd: Vec<usize> = asks.take_all().into_iter().map(|(_, n)| n).collect();
        assert_eq!(odd, [1, 3, 5]);
    }
}
