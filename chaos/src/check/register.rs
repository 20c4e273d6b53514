//! Linearizability of single-key registers (read, write, compare-and-set).
//!
//! Each key is checked on its own (linearizability is compositional) with a Wing–Gong style search:
//! repeatedly pick an operation that may take effect next, apply it to the register, and backtrack
//! when a read or compare-and-set disagrees. An operation may go next only if no other pending
//! operation completed before it was invoked. Like Lowe's improvement (used by Porcupine), the
//! search remembers every (set of linearized ops, register value) it has explored, since two orders
//! of the same ops that end in the same value have the same future. The number of remembered
//! states is bounded, and exceeding it yields [`Linearizability::Unknown`] rather than a hang.
//!
//! `Fail` ops never happened and are dropped. `Info` ops may have taken effect at any point after
//! their invocation, or not at all: the search may linearize them anywhere after they were
//! invoked, or leave them out; an `Info` read constrains nothing and is dropped.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::history::OpKind;

/// What a register operation did; values are `None` while the register has never been written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegF {
    Write(i64),
    /// The value returned (meaningless for `Info` reads).
    Read(Option<i64>),
    /// Set the register to `to` if it holds `from`; an `Ok` CAS succeeded, a `Fail` one did nothing.
    Cas {
        from: i64,
        to: i64,
    },
}

/// One completed register operation; times as in [`super::history::Op`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegOp {
    /// Identifier used in reports.
    pub id: usize,
    pub process: u64,
    pub key: u64,
    pub kind: OpKind,
    pub invoke_ns: u64,
    /// Ignored for `Info` ops, which may take effect at any time after invocation.
    pub complete_ns: u64,
    pub f: RegF,
}

/// The verdict for a whole history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Linearizability {
    Linearizable,
    /// No order exists for `key`; `ops_in_window` are the ids of the ops that could have come next
    /// at the furthest point the search reached, none of which led to a full linearization.
    NotLinearizable {
        key: u64,
        ops_in_window: Vec<usize>,
    },
    /// The search for `key` hit the state bound before reaching a verdict.
    Unknown {
        key: u64,
    },
    /// Harness error: a completed op whose completion time is before its invocation time.
    Malformed {
        op: usize,
    },
}

impl fmt::Display for Linearizability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Linearizability::Linearizable => write!(f, "linearizable"),
            Linearizability::NotLinearizable { key, ops_in_window } => {
                write!(f, "not linearizable: key {key}, no valid order among ops {ops_in_window:?}")
            }
            Linearizability::Unknown { key } => write!(f, "unknown: the search for key {key} exceeded its bound"),
            Linearizability::Malformed { op } => write!(f, "malformed history: op {op} completed before it began"),
        }
    }
}

/// Search states remembered per key by [`check`].
pub const DEFAULT_MAX_STATES: usize = 1 << 20;

/// Memory the remembered states of one key may use, whatever the state bound, because each state
/// holds a bit per operation of the key.
const MAX_MEMORY_BYTES: usize = 256 << 20;

/// Checks every key with the default bound of [`DEFAULT_MAX_STATES`].
pub fn check(ops: &[RegOp]) -> Linearizability {
    check_with_budget(ops, DEFAULT_MAX_STATES)
}

/// Checks every key, remembering at most `max_states` search states per key. The first key found
/// not linearizable decides; otherwise any key that ran out of states makes the result unknown.
pub fn check_with_budget(ops: &[RegOp], max_states: usize) -> Linearizability {
    if let Some(bad) = ops.iter().find(|op| op.kind != OpKind::Info && op.complete_ns < op.invoke_ns) {
        return Linearizability::Malformed { op: bad.id };
    }
    let mut by_key: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
    for op in ops {
        if let Some(entry) = Entry::new(op) {
            by_key.entry(op.key).or_default().push(entry);
        }
    }
    let mut unknown = None;
    for (key, mut entries) in by_key {
        entries.sort_unstable_by_key(|e| (e.invoke_ns, e.complete_ns, e.id));
        match Search::new(key, &entries, max_states).run() {
            Linearizability::Unknown { .. } => unknown = unknown.or(Some(key)),
            Linearizability::Linearizable => {}
            verdict => return verdict,
        }
    }
    unknown.map_or(Linearizability::Linearizable, |key| Linearizability::Unknown { key })
}

/// An op as the search sees it.
#[derive(Clone, Copy, Debug)]
struct Entry {
    id: usize,
    invoke_ns: u64,
    /// `u64::MAX` for `Info` ops, so they never force anything to wait for them.
    complete_ns: u64,
    /// `Ok` ops must be linearized; `Info` ops may be left out.
    required: bool,
    f: RegF,
}

impl Entry {
    /// `None` for ops that cannot affect the verdict: failed ops and reads of unknown outcome.
    fn new(op: &RegOp) -> Option<Entry> {
        let required = match (op.kind, op.f) {
            (OpKind::Fail, _) | (OpKind::Info, RegF::Read(_)) => return None,
            (OpKind::Ok, _) => true,
            (OpKind::Info, _) => false,
        };
        let complete_ns = if required { op.complete_ns } else { u64::MAX };
        Some(Entry { id: op.id, invoke_ns: op.invoke_ns, complete_ns, required, f: op.f })
    }

    /// The register value after this op takes effect on `value`, or `None` if it cannot take
    /// effect there (a read of another value, or a compare-and-set that would not match).
    fn apply(&self, value: Option<i64>) -> Option<Option<i64>> {
        match self.f {
            RegF::Write(v) => Some(Some(v)),
            RegF::Read(seen) => (seen == value).then_some(value),
            RegF::Cas { from, to } => (value == Some(from)).then_some(Some(to)),
        }
    }
}

/// A set of linearized ops (one bit per entry) and the register value they leave.
type State = (Box<[u64]>, Option<i64>);

/// The search over one key's entries, sorted by invocation time.
struct Search<'a> {
    key: u64,
    entries: &'a [Entry],
    required: usize,
    max_states: usize,
}

impl<'a> Search<'a> {
    fn new(key: u64, entries: &'a [Entry], max_states: usize) -> Self {
        let words = entries.len().div_ceil(64).max(1);
        // Each state is held twice (visited set and stack), plus allocation and hashing overhead.
        let by_memory = MAX_MEMORY_BYTES / (words * 16 + 96);
        let required = entries.iter().filter(|e| e.required).count();
        Search { key, entries, required, max_states: max_states.min(by_memory) }
    }

    /// Depth-first search with an explicit stack (no recursion depth limit) and a visited set.
    fn run(&self) -> Linearizability {
        let words = self.entries.len().div_ceil(64);
        let start: State = (vec![0; words].into_boxed_slice(), None);
        let mut visited: HashSet<State> = HashSet::new();
        visited.insert(start.clone());
        let mut stack = vec![(start, 0usize)];
        let mut deepest: Option<(usize, Vec<usize>)> = None;
        while let Some(((bits, value), done)) = stack.pop() {
            if done == self.required {
                return Linearizability::Linearizable;
            }
            let window = self.window(&bits);
            if deepest.as_ref().is_none_or(|(best, _)| done > *best) {
                deepest = Some((done, window.iter().filter_map(|&i| self.entries.get(i).map(|e| e.id)).collect()));
            }
            // Push in reverse so the earliest-invoked candidate is explored first.
            for &i in window.iter().rev() {
                let Some(entry) = self.entries.get(i) else { continue };
                let Some(next) = entry.apply(value) else { continue };
                let mut next_bits = bits.clone();
                set_bit(&mut next_bits, i);
                let state = (next_bits, next);
                if visited.contains(&state) {
                    continue;
                }
                if visited.len() >= self.max_states {
                    return Linearizability::Unknown { key: self.key };
                }
                visited.insert(state.clone());
                stack.push((state, done + usize::from(entry.required)));
            }
        }
        let ops_in_window = deepest.map(|(_, window)| window).unwrap_or_default();
        Linearizability::NotLinearizable { key: self.key, ops_in_window }
    }

    /// The pending ops that may take effect next: those invoked no later than the earliest
    /// completion among pending required ops (an op invoked after some pending op completed would
    /// overtake it). Entries are sorted by invocation, so the scan stops at the first required
    /// pending op's completion: nothing invoked later can complete earlier than it.
    fn window(&self, bits: &[u64]) -> Vec<usize> {
        let first = first_clear(bits, self.entries.len());
        let mut horizon = u64::MAX;
        let mut pending = Vec::new();
        for (i, entry) in self.entries.iter().enumerate().skip(first) {
            if entry.invoke_ns > horizon {
                break;
            }
            if is_set(bits, i) {
                continue;
            }
            if entry.required {
                horizon = horizon.min(entry.complete_ns);
            }
            pending.push(i);
        }
        pending.retain(|&i| self.entries.get(i).is_some_and(|e| e.invoke_ns <= horizon));
        pending
    }
}

fn is_set(bits: &[u64], i: usize) -> bool {
    bits.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

fn set_bit(bits: &mut [u64], i: usize) {
    if let Some(w) = bits.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

/// The index of the first clear bit below `len` (or `len`), skipping whole words at a time.
fn first_clear(bits: &[u64], len: usize) -> usize {
    let word = bits.iter().position(|&w| w != u64::MAX).unwrap_or(bits.len());
    let bit = bits.get(word).map_or(0, |w| w.trailing_ones() as usize);
    (word * 64 + bit).min(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: usize, kind: OpKind, invoke_ns: u64, complete_ns: u64, f: RegF) -> RegOp {
        RegOp { id, process: id as u64, key: 0, kind, invoke_ns, complete_ns, f }
    }

    fn ok(id: usize, invoke_ns: u64, complete_ns: u64, f: RegF) -> RegOp {
        op(id, OpKind::Ok, invoke_ns, complete_ns, f)
    }

    fn info(id: usize, invoke_ns: u64, f: RegF) -> RegOp {
        op(id, OpKind::Info, invoke_ns, u64::MAX, f)
    }

    #[test]
    fn concurrent_ops_may_take_effect_in_any_order() {
        let history = [
            ok(1, 0, 10, RegF::Write(1)),
            ok(2, 5, 20, RegF::Write(2)),
            ok(3, 12, 30, RegF::Read(Some(1))),
            ok(4, 31, 40, RegF::Cas { from: 1, to: 3 }),
            ok(5, 41, 50, RegF::Read(Some(3))),
        ];
        assert_eq!(check(&history), Linearizability::Linearizable);
    }

    #[test]
    fn read_of_overwritten_value_is_not_linearizable() {
        let history = [ok(1, 0, 10, RegF::Write(1)), ok(2, 20, 30, RegF::Write(2)), ok(3, 40, 50, RegF::Read(Some(1)))];
        let verdict = check(&history);
        assert_eq!(verdict, Linearizability::NotLinearizable { key: 0, ops_in_window: vec![3] }, "{verdict}");
    }

    #[test]
    fn initial_read_sees_nothing() {
        assert!(check(&[ok(1, 0, 1, RegF::Read(None))]) == Linearizability::Linearizable);
        assert_ne!(check(&[ok(1, 0, 1, RegF::Read(Some(0)))]), Linearizability::Linearizable);
    }

    #[test]
    fn info_write_may_take_effect_late() {
        // The info write is invoked before both reads, and shows up only in the second.
        let history = [info(1, 0, RegF::Write(7)), ok(2, 10, 20, RegF::Read(None)), ok(3, 30, 40, RegF::Read(Some(7)))];
        assert_eq!(check(&history), Linearizability::Linearizable);
    }

    #[test]
    fn info_write_may_never_take_effect() {
        let history = [info(1, 0, RegF::Write(7)), ok(2, 10, 20, RegF::Read(None))];
        assert_eq!(check(&history), Linearizability::Linearizable);
    }

    #[test]
    fn info_write_cannot_take_effect_before_its_invocation() {
        let history = [ok(1, 0, 10, RegF::Read(Some(7))), info(2, 20, RegF::Write(7))];
        assert!(matches!(check(&history), Linearizability::NotLinearizable { .. }));
    }

    #[test]
    fn failed_ops_are_dropped_but_ok_cas_must_match() {
        let failed = [op(1, OpKind::Fail, 0, 10, RegF::Write(5)), ok(2, 20, 30, RegF::Read(None))];
        assert_eq!(check(&failed), Linearizability::Linearizable);
        let bad_cas = [ok(1, 0, 10, RegF::Write(1)), ok(2, 20, 30, RegF::Cas { from: 2, to: 3 })];
        assert!(matches!(check(&bad_cas), Linearizability::NotLinearizable { .. }));
    }

    #[test]
    fn keys_are_independent() {
        let history = [
            RegOp { key: 1, ..ok(1, 0, 10, RegF::Write(1)) },
            RegOp { key: 2, ..ok(2, 20, 30, RegF::Read(None)) },
            RegOp { key: 2, ..ok(3, 40, 50, RegF::Read(Some(1))) },
        ];
        assert!(matches!(check(&history), Linearizability::NotLinearizable { key: 2, .. }));
    }

    #[test]
    fn search_bound_gives_unknown() {
        // Many concurrent info writes and one read of a value none of them wrote: the search must
        // explore many subsets before giving up, which a tiny bound cuts short.
        let mut history: Vec<RegOp> = (0..20).map(|i| info(i, 0, RegF::Write(i as i64))).collect();
        history.push(ok(99, 1, 2, RegF::Read(Some(-1))));
        assert_eq!(check_with_budget(&history, 100), Linearizability::Unknown { key: 0 });
    }

    #[test]
    fn malformed_times_are_reported() {
        assert_eq!(check(&[ok(4, 10, 5, RegF::Write(1))]), Linearizability::Malformed { op: 4 });
        assert_eq!(check(&[]), Linearizability::Linearizable);
    }

    #[test]
    fn random_garbage_histories_do_not_panic() {
        let mut seed = 5u64;
        let mut below = |bound: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % bound
        };
        for _ in 0..200 {
            let history: Vec<RegOp> = (0..12)
                .map(|i| {
                    let kind = [OpKind::Ok, OpKind::Fail, OpKind::Info][below(3) as usize];
                    let f = match below(3) {
                        0 => RegF::Write(below(3) as i64),
                        1 => RegF::Read(below(4).checked_sub(1).map(|v| v as i64)),
                        _ => RegF::Cas { from: below(3) as i64, to: below(3) as i64 },
                    };
                    let invoke_ns = below(40);
                    RegOp { key: below(2), ..op(i, kind, invoke_ns, invoke_ns + below(30), f) }
                })
                .collect();
            assert!(!check_with_budget(&history, 10_000).to_string().is_empty());
        }
    }

    #[test]
    fn random_serial_register_history_is_linearizable() {
        let mut seed = 11u64;
        let mut below = |bound: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % bound
        };
        let mut value = None;
        let mut history = Vec::new();
        for i in 0..200usize {
            let f = match below(3) {
                0 => RegF::Write(below(5) as i64),
                1 => RegF::Read(value),
                _ => RegF::Cas { from: below(5) as i64, to: below(5) as i64 },
            };
            let applied = match f {
                RegF::Cas { from, .. } => value == Some(from),
                _ => true,
            };
            let kind = if applied { OpKind::Ok } else { OpKind::Fail };
            if let (true, RegF::Write(v) | RegF::Cas { to: v, .. }) = (applied, f) {
                value = Some(v);
            }
            // Each op overlaps its neighbours, so the search has real choices to make.
            let start = 10 * i as u64;
            history.push(op(i, kind, start, start + 15, f));
        }
        assert_eq!(check(&history), Linearizability::Linearizable);
    }
}
