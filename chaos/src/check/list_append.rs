//! An Elle-style checker for list-append transactions.
//!
//! Every key holds a list; transactions append values and read whole lists. Because each append of
//! a key uses a value no other append of that key uses, a read names exactly which appends it saw,
//! and in which order, so the checker can recover the dependencies between transactions from the
//! values alone (Kingsbury & Alvaro, "Elle: Inferring Isolation Anomalies from Experimental
//! Observations", VLDB 2020).
//!
//! The check runs in stages:
//! 1. index every append by `(key, value)`; a value appended twice is a harness error;
//! 2. inspect every read of an `Ok` transaction: duplicates, garbage, aborted (G1a) and
//!    intermediate (G1b) reads, and internal consistency with the transaction's own earlier steps;
//! 3. infer each key's version order from its longest read; every other read must be a prefix;
//! 4. find lost appends (see [`Anomaly::Lost`] for the exact definition);
//! 5. build the dependency graph (ww, wr, rw and real-time edges) over committed transactions and
//!    classify its cycles (see the `cycles` module).
//!
//! Only reads of `Ok` transactions are observations: an `Info` transaction's reads are unknown
//! and a `Fail` transaction's reads come from a transaction that did not happen.

mod cycles;
mod graph;
mod reads;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::history::{Mop, Op, OpKind};
pub use cycles::{Cycle, EdgeKind, Step};
use reads::{Observation, Reads};

/// One violation found in a history. Op fields hold [`Op::id`]s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Anomaly {
    /// Harness error: two appends used the same value for one key, so reads become ambiguous.
    NonUniqueAppend { key: u64, value: u64, ops: [usize; 2] },
    /// Harness error: the op's completion time is before its invocation time.
    BadTimes { op: usize },
    /// A read disagreed with the transaction's own earlier read or its own appends to the key.
    Internal { key: u64, op: usize },
    /// A read list holds `value` twice: an append was applied more than once.
    Duplicate { key: u64, value: u64, op: usize },
    /// A read holds a value that no operation ever appended to the key.
    Garbage { key: u64, value: u64, op: usize },
    /// Aborted read: `reader` saw a value appended only by the failed op `writer`.
    G1a { key: u64, value: u64, reader: usize, writer: usize },
    /// Intermediate read: the last value `reader` saw was appended by `writer`, which appended
    /// the key again later in the same transaction.
    G1b { key: u64, value: u64, reader: usize, writer: usize },
    /// The reads of `a` and `b` of the key are not prefixes of one another: no single version order.
    IncompatibleOrder { key: u64, a: usize, b: usize },
    /// The acknowledged append `op` of `value` appears in no read of the key, although the read
    /// `read` began after `op` had completed (the earliest such read is named). A value some read
    /// did see but a later read missed is a stale read instead, reported as a cycle.
    Lost { key: u64, value: u64, op: usize, read: usize },
    /// Write cycle (ww edges only).
    G0(Cycle),
    /// Circular information flow (ww and wr edges, no anti-dependency).
    G1c(Cycle),
    /// Read skew: a cycle with exactly one anti-dependency (rw) edge.
    GSingle(Cycle),
    /// A cycle that needs two or more anti-dependency edges.
    G2(Cycle),
    /// A cycle that closes only with real-time edges: serializable maybe, but not strictly.
    StrictSerializability(Cycle),
}

impl Anomaly {
    /// A short stable name, for grouping anomalies in summaries.
    pub fn name(&self) -> &'static str {
        match self {
            Anomaly::NonUniqueAppend { .. } => "non-unique-append",
            Anomaly::BadTimes { .. } => "bad-times",
            Anomaly::Internal { .. } => "internal",
            Anomaly::Duplicate { .. } => "duplicate",
            Anomaly::Garbage { .. } => "garbage",
            Anomaly::G1a { .. } => "G1a",
            Anomaly::G1b { .. } => "G1b",
            Anomaly::IncompatibleOrder { .. } => "incompatible-order",
            Anomaly::Lost { .. } => "lost",
            Anomaly::G0(_) => "G0",
            Anomaly::G1c(_) => "G1c",
            Anomaly::GSingle(_) => "G-single",
            Anomaly::G2(_) => "G2",
            Anomaly::StrictSerializability(_) => "strict-serializability",
        }
    }

    /// Whether this is a bug in the harness (the history itself is malformed), not in the database.
    pub fn is_harness_error(&self) -> bool {
        matches!(self, Anomaly::NonUniqueAppend { .. } | Anomaly::BadTimes { .. })
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        match self {
            Anomaly::NonUniqueAppend { key, value, ops: [first, second] } => {
                write!(f, "{name}: ops {first} and {second} both appended {value} to key {key}")
            }
            Anomaly::BadTimes { op } => write!(f, "{name}: op {op} completed before it was invoked"),
            Anomaly::Internal { key, op } => {
                write!(f, "{name}: op {op} read key {key} inconsistently with its own earlier read/appends")
            }
            Anomaly::Duplicate { key, value, op } => write!(f, "{name}: op {op} read {value} twice in key {key}"),
            Anomaly::Garbage { key, value, op } => {
                write!(f, "{name}: op {op} read {value} in key {key}, which nobody appended")
            }
            Anomaly::G1a { key, value, reader, writer } => {
                write!(f, "{name}: op {reader} read {value} in key {key}, appended by failed op {writer}")
            }
            Anomaly::G1b { key, value, reader, writer } => {
                write!(f, "{name}: op {reader} read key {key} ending at {value}, an intermediate append of op {writer}")
            }
            Anomaly::IncompatibleOrder { key, a, b } => {
                write!(f, "{name}: reads of key {key} by ops {a} and {b} are not prefixes of one another")
            }
            Anomaly::Lost { key, value, op, read } => write!(
                f,
                "{name}: acknowledged append of {value} to key {key} by op {op} is missing from every read, \
                 including op {read} which began after it completed"
            ),
            Anomaly::G0(c)
            | Anomaly::G1c(c)
            | Anomaly::GSingle(c)
            | Anomaly::G2(c)
            | Anomaly::StrictSerializability(c) => write!(f, "{name}: {c}"),
        }
    }
}

/// The outcome of [`check`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub ops: usize,
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
    pub anomalies: Vec<Anomaly>,
}

impl Report {
    /// True when nothing was found. Harness errors count too: a malformed history proves nothing.
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_valid() { "valid" } else { "INVALID" };
        writeln!(f, "{verdict}: {} ops ({} ok, {} fail, {} info)", self.ops, self.ok, self.fail, self.info)?;
        self.anomalies.iter().try_for_each(|a| writeln!(f, "  {a}"))
    }
}

/// Checks a list-append history for the anomalies listed in [`Anomaly`].
pub fn check(history: &[Op]) -> Report {
    let mut anomalies = Vec::new();
    let writers = index_appends(history, &mut anomalies);
    let mut reads = reads::collect(history, &writers, &mut anomalies);
    let orders = version_orders(history, &mut reads.obs, &mut anomalies);
    find_lost(history, &reads, &mut anomalies);
    let committed = committed_ops(history, &reads);
    let graph = graph::build(history, &committed, &writers, &orders, &reads.obs);
    anomalies.extend(cycles::find(&graph, history));
    let count = |kind| history.iter().filter(|op| op.kind == kind).count();
    Report {
        ops: history.len(),
        ok: count(OpKind::Ok),
        fail: count(OpKind::Fail),
        info: count(OpKind::Info),
        anomalies,
    }
}

/// The op (history index) that appended a `(key, value)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Writer {
    pub op: usize,
    /// The same op appended to the key again afterwards, so this value was never a committed tail.
    pub intermediate: bool,
}

pub(crate) type Writers = HashMap<(u64, u64), Writer>;

/// Indexes appends by `(key, value)` and reports the harness errors that would mislead the rest.
fn index_appends(history: &[Op], anomalies: &mut Vec<Anomaly>) -> Writers {
    let mut writers = Writers::new();
    for (idx, op) in history.iter().enumerate() {
        if op.has_bad_times() {
            anomalies.push(Anomaly::BadTimes { op: op.id });
        }
        // The last append per key is the one a committed transaction leaves as the list's tail.
        let mut last_pos: HashMap<u64, usize> = HashMap::new();
        for (pos, mop) in op.mops.iter().enumerate() {
            if let Mop::Append { key, .. } = mop {
                last_pos.insert(*key, pos);
            }
        }
        for (pos, mop) in op.mops.iter().enumerate() {
            let Mop::Append { key, value } = *mop else { continue };
            let intermediate = last_pos.get(&key).is_some_and(|&last| pos < last);
            match writers.get(&(key, value)) {
                Some(first) => {
                    let first_id = history.get(first.op).map_or(op.id, |o| o.id);
                    anomalies.push(Anomaly::NonUniqueAppend { key, value, ops: [first_id, op.id] });
                }
                None => {
                    writers.insert((key, value), Writer { op: idx, intermediate });
                }
            }
        }
    }
    writers
}

/// Takes each key's longest read as its version order and marks which reads are prefixes of it.
fn version_orders(history: &[Op], obs: &mut [Observation<'_>], out: &mut Vec<Anomaly>) -> BTreeMap<u64, Vec<u64>> {
    let mut longest: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, o) in obs.iter().enumerate() {
        let entry = longest.entry(o.key).or_insert(i);
        // Strictly longer only, so ties keep the earliest read and the result is deterministic.
        if obs.get(*entry).is_some_and(|best| o.seen.len() > best.seen.len()) {
            *entry = i;
        }
    }
    let orders: BTreeMap<u64, Vec<u64>> =
        longest.iter().filter_map(|(key, &i)| obs.get(i).map(|o| (*key, o.seen.to_vec()))).collect();
    for o in obs.iter_mut() {
        o.consistent = orders.get(&o.key).is_some_and(|order| order.starts_with(&o.seen));
    }
    let id = |idx: usize| history.get(idx).map_or(idx, |o| o.id);
    for o in obs.iter().filter(|o| !o.consistent) {
        let a = longest.get(&o.key).map_or(o.op, |&i| obs.get(i).map_or(o.op, |best| best.op));
        out.push(Anomaly::IncompatibleOrder { key: o.key, a: id(a), b: id(o.op) });
    }
    orders
}

/// Reports acknowledged appends that no read saw although some read of the key started after the
/// append had completed (see [`Anomaly::Lost`]).
fn find_lost(history: &[Op], reads: &Reads<'_>, out: &mut Vec<Anomaly>) {
    for (idx, op) in history.iter().enumerate().filter(|(_, op)| op.kind == OpKind::Ok) {
        for mop in &op.mops {
            let Mop::Append { key, value } = *mop else { continue };
            if reads.observed(key, value) {
                continue;
            }
            let Some(starts) = reads.starts.get(&key) else { continue };
            let first_after = starts.partition_point(|&(start, _)| start <= op.complete_ns);
            let later = starts.get(first_after..).unwrap_or_default();
            if let Some(read) = later.iter().find(|(_, reader)| *reader != idx).and_then(|(_, r)| history.get(*r)) {
                out.push(Anomaly::Lost { key, value, op: op.id, read: read.id });
            }
        }
    }
}

/// Which ops committed: every `Ok` op, and every `Info` op some read proves took effect.
fn committed_ops(history: &[Op], reads: &Reads<'_>) -> Vec<bool> {
    let seen =
        |op: &Op| op.mops.iter().any(|mop| matches!(mop, Mop::Append { key, value } if reads.observed(*key, *value)));
    history
        .iter()
        .map(|op| match op.kind {
            OpKind::Ok => true,
            OpKind::Info => seen(op),
            OpKind::Fail => false,
        })
        .collect()
}
