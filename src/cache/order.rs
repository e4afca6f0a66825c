//! Which of two answers for one item is the later state of upstream (SECURITY.md, "Never an
//! older value"). Every fetch is stamped on one logical clock twice: when it is sent and when
//! its answer is received. An answer from a fetch sent after the other answer was received
//! read upstream later: it wins, even when it carries an older version (an operator's real
//! rollback). Overlapping fetches cannot be ordered by time, so their revisions decide: the
//! same version is the same value, otherwise the higher rank (Parameter Store's `Version`, a
//! secret version's `CreatedDate`). When nothing decides, the value already there stays.

use crate::upstream::Revision;

/// What the cache knows of an answer it holds (or held, before an eviction).
pub(super) struct Held<'a> {
    pub(super) revision: &'a Revision,
    /// When its answer was received, on the fetch clock.
    pub(super) received: u64,
    /// Its body, while it is still held (not after an eviction).
    pub(super) body: Option<&'a [u8]>,
}

/// An answer arriving now.
pub(super) struct Incoming<'a> {
    pub(super) revision: &'a Revision,
    /// When its fetch was sent, on the fetch clock.
    pub(super) sent: u64,
    pub(super) body: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Later {
    /// The incoming answer is the later state of upstream (or the same value).
    Incoming,
    /// What is held is later: the incoming answer is dropped.
    Held,
    /// Nothing orders them: keep what is held, and read the item once more to be sure.
    Unknown,
}

pub(super) fn later(held: &Held<'_>, incoming: &Incoming<'_>) -> Later {
    if incoming.sent > held.received {
        return Later::Incoming;
    }
    let same_version = held.revision.version.is_some() && held.revision.version == incoming.revision.version;
    if same_version || held.body == Some(incoming.body) {
        return Later::Incoming;
    }
    match (held.revision.rank, incoming.revision.rank) {
        (Some(h), Some(i)) if i > h => Later::Incoming,
        (Some(h), Some(i)) if i < h => Later::Held,
        _ => Later::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(version: &str, rank: Option<i64>) -> Revision {
        Revision {
            version: Some(version.into()),
            rank,
        }
    }

    fn decide(held: (&Revision, u64, &[u8]), incoming: (&Revision, u64, &[u8])) -> Later {
        later(
            &Held {
                revision: held.0,
                received: held.1,
                body: Some(held.2),
            },
            &Incoming {
                revision: incoming.0,
                sent: incoming.1,
                body: incoming.2,
            },
        )
    }

    #[test]
    fn a_fetch_sent_after_the_held_answer_arrived_wins_even_with_an_older_version() {
        let (new, old) = (revision("v2", Some(2)), revision("v1", Some(1)));
        assert_eq!(decide((&new, 10, b"new"), (&old, 11, b"old")), Later::Incoming, "a rollback");
        assert_eq!(decide((&new, 10, b"new"), (&old, 9, b"old")), Later::Held);
    }

    #[test]
    fn overlapping_answers_are_ordered_by_rank() {
        let (new, old) = (revision("v2", Some(2)), revision("v1", Some(1)));
        assert_eq!(decide((&old, 10, b"old"), (&new, 3, b"new")), Later::Incoming);
        assert_eq!(decide((&new, 10, b"new"), (&old, 3, b"old")), Later::Held);
    }

    #[test]
    fn the_same_value_is_never_a_conflict() {
        let v = revision("v1", None);
        assert_eq!(decide((&v, 10, b"a"), (&v, 3, b"b")), Later::Incoming, "same version");
        let none = Revision::default();
        assert_eq!(decide((&none, 10, b"same"), (&none, 3, b"same")), Later::Incoming, "same body");
    }

    #[test]
    fn nothing_to_order_by_keeps_what_is_held() {
        let (a, b) = (revision("a", Some(5)), revision("b", Some(5)));
        assert_eq!(decide((&a, 10, b"a"), (&b, 3, b"b")), Later::Unknown, "equal ranks");
        let (a, b) = (revision("a", None), revision("b", Some(9)));
        assert_eq!(decide((&a, 10, b"a"), (&b, 3, b"b")), Later::Unknown, "one rank missing");
        let none = Revision::default();
        let evicted = Held {
            revision: &none,
            received: 10,
            body: None,
        };
        let incoming = Incoming {
            revision: &none,
            sent: 3,
            body: b"x",
        };
        assert_eq!(
            later(&evicted, &incoming),
            Later::Unknown,
            "an evicted value has no body to compare"
        );
    }
}
