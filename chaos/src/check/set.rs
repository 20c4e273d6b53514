//! Grow-only set and counter checks.
//!
//! Set: clients add unique elements, then, once the faults have healed, one or more final reads
//! return the whole set. Every acknowledged add must be in every final read; an element that was
//! never attempted, or whose add definitely failed, must be in none. Adds of unknown outcome may go
//! either way; how many did is reported, since "all unknown adds were dropped" is worth knowing.
//!
//! Counter: increments (any sign) and a final value, which must lie between what the acknowledged
//! increments alone give and what they give with every unknown increment applied.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::history::OpKind;

/// One attempt to add `element` to the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAdd {
    /// Identifier used in reports.
    pub id: usize,
    pub kind: OpKind,
    pub element: u64,
}

/// A set violation; `read` is the index of the final read in the slice passed to [`check_set`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetAnomaly {
    /// The acknowledged add `op` is missing from the final read.
    Lost { element: u64, op: usize, read: usize },
    /// The final read holds an element never added, or whose only adds failed.
    Unexpected { element: u64, read: usize },
    /// The final read holds the element more than once.
    Duplicate { element: u64, read: usize },
    /// Harness error: the element was the subject of more than one add (`op` is the second).
    NonUniqueAdd { element: u64, op: usize },
    /// Nothing to check against.
    NoFinalRead,
}

impl fmt::Display for SetAnomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetAnomaly::Lost { element, op, read } => {
                write!(f, "lost: element {element} (acknowledged add op {op}) missing from final read {read}")
            }
            SetAnomaly::Unexpected { element, read } => {
                write!(f, "unexpected: final read {read} holds {element}, which was never successfully added")
            }
            SetAnomaly::Duplicate { element, read } => write!(f, "duplicate: final read {read} holds {element} twice"),
            SetAnomaly::NonUniqueAdd { element, op } => write!(f, "non-unique-add: op {op} added {element} again"),
            SetAnomaly::NoFinalRead => write!(f, "no final read"),
        }
    }
}

/// The outcome of [`check_set`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetReport {
    /// `Ok` adds.
    pub acknowledged: usize,
    /// `Info` adds present in some final read.
    pub unknown_present: usize,
    /// `Info` adds absent from every final read.
    pub unknown_absent: usize,
    pub anomalies: Vec<SetAnomaly>,
}

impl SetReport {
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }
}

/// Checks the adds against each final read independently (reads from different nodes after
/// healing must each be complete).
pub fn check_set(adds: &[SetAdd], final_reads: &[Vec<u64>]) -> SetReport {
    let mut report = SetReport::default();
    let mut outcome: BTreeMap<u64, SetAdd> = BTreeMap::new();
    for add in adds {
        if outcome.insert(add.element, *add).is_some() {
            report.anomalies.push(SetAnomaly::NonUniqueAdd { element: add.element, op: add.id });
        }
    }
    if final_reads.is_empty() {
        report.anomalies.push(SetAnomaly::NoFinalRead);
    }
    let contents: Vec<BTreeSet<u64>> = final_reads.iter().map(|read| read.iter().copied().collect()).collect();
    for (read, (list, present)) in final_reads.iter().zip(&contents).enumerate() {
        check_read(&outcome, list, present, read, &mut report.anomalies);
    }
    for add in outcome.values() {
        match add.kind {
            OpKind::Ok => report.acknowledged += 1,
            OpKind::Info if contents.iter().any(|c| c.contains(&add.element)) => report.unknown_present += 1,
            OpKind::Info => report.unknown_absent += 1,
            OpKind::Fail => {}
        }
    }
    report
}

/// Compares one final read with the last recorded outcome of each element.
fn check_read(
    outcome: &BTreeMap<u64, SetAdd>,
    list: &[u64],
    present: &BTreeSet<u64>,
    read: usize,
    out: &mut Vec<SetAnomaly>,
) {
    let mut seen = BTreeSet::new();
    for &element in list {
        if !seen.insert(element) {
            out.push(SetAnomaly::Duplicate { element, read });
        } else if outcome.get(&element).is_none_or(|add| add.kind == OpKind::Fail) {
            out.push(SetAnomaly::Unexpected { element, read });
        }
    }
    for add in outcome.values().filter(|a| a.kind == OpKind::Ok && !present.contains(&a.element)) {
        out.push(SetAnomaly::Lost { element: add.element, op: add.id, read });
    }
}

/// One increment of a counter (negative for a decrement).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterAdd {
    pub kind: OpKind,
    pub delta: i64,
}

/// The outcome of [`check_counter`]; sums are `i128` so no history can overflow them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterReport {
    /// The smallest value the counter may hold: acknowledged increments plus every unknown negative one.
    pub lower: i128,
    /// The largest: acknowledged increments plus every unknown positive one.
    pub upper: i128,
    pub observed: i64,
}

impl CounterReport {
    pub fn is_valid(&self) -> bool {
        (self.lower..=self.upper).contains(&i128::from(self.observed))
    }
}

impl fmt::Display for CounterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_valid() { "valid" } else { "INVALID" };
        write!(f, "{verdict}: counter read {} , expected within [{}, {}]", self.observed, self.lower, self.upper)
    }
}

/// Checks a counter's final value (starting from zero) against its increments. Failed increments
/// never applied; unknown ones may have, so they widen the range in their own direction only.
pub fn check_counter(adds: &[CounterAdd], final_value: i64) -> CounterReport {
    let (mut lower, mut upper) = (0i128, 0i128);
    for add in adds {
        let delta = i128::from(add.delta);
        match add.kind {
            OpKind::Ok => {
                lower += delta;
                upper += delta;
            }
            OpKind::Info if delta < 0 => lower += delta,
            OpKind::Info => upper += delta,
            OpKind::Fail => {}
        }
    }
    CounterReport { lower, upper, observed: final_value }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(id: usize, kind: OpKind, element: u64) -> SetAdd {
        SetAdd { id, kind, element }
    }

    #[test]
    fn complete_final_read_passes_and_counts_unknowns() {
        let adds = [add(1, OpKind::Ok, 1), add(2, OpKind::Info, 2), add(3, OpKind::Info, 3), add(4, OpKind::Fail, 4)];
        let report = check_set(&adds, &[vec![2, 1], vec![1, 2]]);
        assert!(report.is_valid(), "{:?}", report.anomalies);
        assert_eq!((report.acknowledged, report.unknown_present, report.unknown_absent), (1, 1, 1));
    }

    #[test]
    fn lost_unexpected_and_duplicate_elements() {
        let adds = [add(1, OpKind::Ok, 1), add(2, OpKind::Ok, 2), add(3, OpKind::Fail, 3)];
        let report = check_set(&adds, &[vec![2, 2, 3, 9]]);
        assert_eq!(
            report.anomalies,
            [
                SetAnomaly::Duplicate { element: 2, read: 0 },
                SetAnomaly::Unexpected { element: 3, read: 0 },
                SetAnomaly::Unexpected { element: 9, read: 0 },
                SetAnomaly::Lost { element: 1, op: 1, read: 0 },
            ]
        );
        assert!(report.anomalies.iter().all(|a| !a.to_string().is_empty()));
    }

    #[test]
    fn harness_errors() {
        let report = check_set(&[add(1, OpKind::Ok, 1), add(2, OpKind::Ok, 1)], &[]);
        assert_eq!(report.anomalies, [SetAnomaly::NonUniqueAdd { element: 1, op: 2 }, SetAnomaly::NoFinalRead]);
    }

    #[test]
    fn counter_bounds() {
        let adds = [
            CounterAdd { kind: OpKind::Ok, delta: 5 },
            CounterAdd { kind: OpKind::Info, delta: 3 },
            CounterAdd { kind: OpKind::Info, delta: -1 },
            CounterAdd { kind: OpKind::Fail, delta: 100 },
        ];
        assert!(check_counter(&adds, 5).is_valid());
        assert!(check_counter(&adds, 4).is_valid());
        assert!(check_counter(&adds, 8).is_valid());
        let too_high = check_counter(&adds, 105);
        assert!(!too_high.is_valid(), "{too_high}");
        assert!(!check_counter(&adds, 3).is_valid());
        let extreme =
            [CounterAdd { kind: OpKind::Ok, delta: i64::MAX }, CounterAdd { kind: OpKind::Ok, delta: i64::MAX }];
        assert!(!check_counter(&extreme, i64::MAX).is_valid());
    }
}
