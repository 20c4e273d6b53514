//! The history model shared by the transactional checkers.
//!
//! A history is a slice of [`Op`]s, one per client operation, with the invocation and the completion
//! already merged. Times come from one monotonic clock in the harness process, so comparing the
//! times of two operations gives the real-time order that strict serializability must respect.

use serde::{Deserialize, Serialize};

/// How an operation ended, as seen by the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OpKind {
    /// Acknowledged: the transaction committed.
    Ok,
    /// Definitely not applied (the database said so before any effect could have happened).
    Fail,
    /// Outcome unknown (timeout, lost connection): it may or may not have taken effect, at any time
    /// after its invocation. Never a failure by itself.
    Info,
}

/// One micro-operation of a list-append transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mop {
    /// Append `value` to the list stored at `key`.
    Append { key: u64, value: u64 },
    /// Read the whole list at `key`; `None` in an invocation or when the result is unknown.
    Read { key: u64, value: Option<Vec<u64>> },
}

impl Mop {
    /// The key this micro-operation touches.
    pub fn key(&self) -> u64 {
        match self {
            Mop::Append { key, .. } | Mop::Read { key, .. } => *key,
        }
    }
}

/// One completed operation: a transaction of micro-operations executed by one client process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Identifier used in reports; the checkers never rely on it being dense or sorted.
    pub id: usize,
    /// The client process (a logical thread issuing one operation at a time).
    pub process: u64,
    pub kind: OpKind,
    /// When the client sent the request.
    pub invoke_ns: u64,
    /// When the client got the answer; `u64::MAX` for [`OpKind::Info`], which may take effect at any
    /// time after its invocation.
    pub complete_ns: u64,
    pub mops: Vec<Mop>,
}

impl Op {
    /// Whether `self` finished before `other` began, so every correct serial order puts `self` first.
    /// An `Info` op precedes nothing, whatever its completion time says: it may take effect later.
    ///
    /// Strict inequality: operations whose completion and invocation share a timestamp overlap,
    /// because the clock cannot order them.
    pub fn precedes(&self, other: &Op) -> bool {
        self.kind != OpKind::Info && self.complete_ns < other.invoke_ns
    }

    /// Whether the times are impossible (a completion before the invocation); a harness bug.
    /// An `Info` op's completion time carries no meaning, so it is never wrong.
    pub fn has_bad_times(&self) -> bool {
        self.kind != OpKind::Info && self.complete_ns < self.invoke_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(invoke_ns: u64, complete_ns: u64) -> Op {
        Op { id: 0, process: 0, kind: OpKind::Ok, invoke_ns, complete_ns, mops: vec![] }
    }

    #[test]
    fn precedence_is_strict() {
        assert!(op(0, 5).precedes(&op(6, 9)));
        assert!(!op(0, 5).precedes(&op(5, 9)), "a shared timestamp means the ops overlap");
        assert!(!op(6, 9).precedes(&op(0, 5)));
    }

    #[test]
    fn info_precedes_nothing() {
        let info = Op { kind: OpKind::Info, complete_ns: u64::MAX, ..op(0, 0) };
        assert!(!info.precedes(&op(u64::MAX - 1, u64::MAX)));
        assert!(!Op { complete_ns: 0, invoke_ns: 5, ..info }.has_bad_times());
        assert!(op(9, 3).has_bad_times());
    }

    #[test]
    fn mop_key() {
        assert_eq!(Mop::Append { key: 3, value: 1 }.key(), 3);
        assert_eq!(Mop::Read { key: 4, value: None }.key(), 4);
    }
}
