//! Turning the reads of `Ok` transactions into observations.
//!
//! Reads of one key are mostly prefixes of one another, and together they can hold a number of
//! values quadratic in the history's length. So each key keeps the longest list inspected so far
//! with what was found at each position; a read costs a comparison with it plus a lookup for each
//! value past their common prefix, which for most reads is nothing or just the new values.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::{Anomaly, Writers};
use crate::check::history::{Mop, Op, OpKind};

/// One read of a key by an `Ok` op, consistent with the op's own earlier steps.
#[derive(Clone, Debug)]
pub(crate) struct Observation<'a> {
    /// History index of the reader.
    pub op: usize,
    pub key: u64,
    /// The list read, without repeated values (the first occurrence stays), so a duplicate already
    /// reported does not also break the version order. Borrowed from the history when clean.
    pub seen: Cow<'a, [u64]>,
    /// How much of `seen` came from other transactions: a read after the op's own appends ends
    /// with them, and only the part before is an observation of the database.
    pub external_len: usize,
    /// Whether `seen` is a prefix of the key's inferred version order (set once it is known).
    pub consistent: bool,
}

/// Everything gathered from the reads of `Ok` ops.
#[derive(Default)]
pub(crate) struct Reads<'a> {
    pub obs: Vec<Observation<'a>>,
    /// Per key, `(invoke_ns, history index)` of every read of it, sorted.
    pub starts: HashMap<u64, Vec<(u64, usize)>>,
    caches: HashMap<u64, KeyCache>,
    /// Values of reads past the point where they diverged from their key's cache.
    divergent: HashSet<(u64, u64)>,
}

impl Reads<'_> {
    /// Whether some read, internally consistent or not, holds `value` in `key`.
    pub fn observed(&self, key: u64, value: u64) -> bool {
        self.caches.get(&key).is_some_and(|c| c.first.contains_key(&value)) || self.divergent.contains(&(key, value))
    }
}

/// Walks every `Ok` op, tracking per key what the transaction itself should see, and turns each
/// consistent read into an [`Observation`] after checking the values it holds.
pub(crate) fn collect<'a>(history: &'a [Op], writers: &Writers, out: &mut Vec<Anomaly>) -> Reads<'a> {
    let mut reads = Reads::default();
    for (idx, op) in history.iter().enumerate().filter(|(_, op)| op.kind == OpKind::Ok) {
        let mut txn = TxnView::default();
        for mop in &op.mops {
            match mop {
                Mop::Append { key, value } => txn.append(*key, *value),
                Mop::Read { key, value: Some(list) } => {
                    reads.starts.entry(*key).or_default().push((op.invoke_ns, idx));
                    let duplicates = reads.inspect(history, writers, idx, *key, list, out);
                    match txn.read(*key, list) {
                        Some(external) => {
                            let view = ReadView { reader: idx, key: *key, list, external, duplicates };
                            reads.obs.push(observe(history, writers, view, out));
                        }
                        None => out.push(Anomaly::Internal { key: *key, op: op.id }),
                    }
                }
                Mop::Read { value: None, .. } => {}
            }
        }
    }
    reads.starts.values_mut().for_each(|starts| starts.sort_unstable());
    reads
}

impl Reads<'_> {
    /// Reports duplicates, garbage and aborted reads in one read list; returns whether it holds
    /// duplicates.
    fn inspect(
        &mut self,
        history: &[Op],
        writers: &Writers,
        reader: usize,
        key: u64,
        list: &[u64],
        out: &mut Vec<Anomaly>,
    ) -> bool {
        let reader = history.get(reader).map_or(reader, |op| op.id);
        let cache = self.caches.entry(key).or_default();
        let common = cache.list.iter().zip(list).take_while(|(a, b)| a == b).count();
        let tail = cache.classify_tail(history, writers, key, list, common);
        // Collected before the cache changes below; usually empty, so nothing is allocated.
        let prefix: Vec<Finding> =
            cache.findings.iter().take_while(|(pos, _)| *pos < common).map(|(_, f)| *f).collect();
        let forgotten = if common == cache.list.len() {
            // The read extends the cache (or equals it): remember the new positions.
            cache.extend(list, &tail);
            Vec::new()
        } else if list.len() > cache.list.len() {
            // A longer read that diverges: follow it, since later reads tend to extend the longest
            // (the one the version order comes from), and forget the cache's old tail.
            cache.rebase(list, common, &tail)
        } else {
            list.get(common..).unwrap_or_default().to_vec()
        };
        self.divergent.extend(forgotten.into_iter().map(|value| (key, value)));
        report(prefix.into_iter().chain(tail.iter().map(|(_, f)| *f)), key, reader, out)
    }
}
/// Something wrong with the value at one position of a read list.
#[derive(Clone, Copy, Debug)]
enum Finding {
    /// The value appeared earlier in the list.
    Duplicate(u64),
    /// Nobody appended the value.
    Garbage(u64),
    /// Only a failed op (with this id) appended the value.
    Aborted { value: u64, writer: usize },
}

/// The longest list inspected for one key, where each value first occurs in it, and the findings
/// at its positions, in order.
#[derive(Default)]
struct KeyCache {
    list: Vec<u64>,
    first: HashMap<u64, usize>,
    findings: Vec<(usize, Finding)>,
}

impl KeyCache {
    /// The findings at positions `common..` of a list whose first `common` values are the cache's.
    fn classify_tail(
        &self,
        history: &[Op],
        writers: &Writers,
        key: u64,
        list: &[u64],
        common: usize,
    ) -> Vec<(usize, Finding)> {
        let mut tail_values = HashSet::new();
        let mut findings = Vec::new();
        for (pos, &value) in list.iter().enumerate().skip(common) {
            let repeated = self.first.get(&value).is_some_and(|&first| first < common) || !tail_values.insert(value);
            let finding = if repeated {
                Some(Finding::Duplicate(value))
            } else {
                match writers.get(&(key, value)).and_then(|w| history.get(w.op)) {
                    None => Some(Finding::Garbage(value)),
                    Some(writer) if writer.kind == OpKind::Fail => Some(Finding::Aborted { value, writer: writer.id }),
                    Some(_) => None,
                }
            };
            findings.extend(finding.map(|f| (pos, f)));
        }
        findings
    }

    /// Grows the cache to `list`, which extends it, with the findings of the new positions.
    fn extend(&mut self, list: &[u64], tail: &[(usize, Finding)]) {
        for (pos, &value) in list.iter().enumerate().skip(self.list.len()) {
            self.first.entry(value).or_insert(pos);
        }
        self.list.extend_from_slice(list.get(self.list.len()..).unwrap_or_default());
        self.findings.extend_from_slice(tail);
    }

    /// Replaces the cache's positions `common..` with those of `list`; returns the values dropped.
    fn rebase(&mut self, list: &[u64], common: usize, tail: &[(usize, Finding)]) -> Vec<u64> {
        let dropped = self.list.split_off(common.min(self.list.len()));
        for value in &dropped {
            if self.first.get(value).is_some_and(|&first| first >= common) {
                self.first.remove(value);
            }
        }
        self.findings.retain(|(pos, _)| *pos < common);
        self.extend(list, tail);
        dropped
    }
}

/// Reports one read's findings against `reader`; returns whether there was a duplicate. A value
/// repeated several times is reported once.
fn report(findings: impl Iterator<Item = Finding>, key: u64, reader: usize, out: &mut Vec<Anomaly>) -> bool {
    let mut duplicated = Vec::new();
    for finding in findings {
        match finding {
            Finding::Duplicate(value) if !duplicated.contains(&value) => {
                duplicated.push(value);
                out.push(Anomaly::Duplicate { key, value, op: reader });
            }
            Finding::Duplicate(_) => {}
            Finding::Garbage(value) => out.push(Anomaly::Garbage { key, value, op: reader }),
            Finding::Aborted { value, writer } => out.push(Anomaly::G1a { key, value, reader, writer }),
        }
    }
    !duplicated.is_empty()
}

/// What one transaction has done to each key so far, to check its reads against.
#[derive(Default)]
struct TxnView<'a> {
    /// The values it appended, in order.
    own: HashMap<u64, Vec<u64>>,
    /// Its latest read and the values it appended since.
    last: HashMap<u64, (&'a [u64], Vec<u64>)>,
}

impl<'a> TxnView<'a> {
    fn append(&mut self, key: u64, value: u64) {
        self.own.entry(key).or_default().push(value);
        if let Some((_, since)) = self.last.get_mut(&key) {
            since.push(value);
        }
    }

    /// Checks a read: it must end with the op's own appends, and equal its previous read plus
    /// the appends since. Returns how many leading elements came from other transactions.
    fn read(&mut self, key: u64, list: &'a [u64]) -> Option<usize> {
        let own = self.own.get(&key).map_or(&[][..], Vec::as_slice);
        let matches_last = self.last.get(&key).is_none_or(|(prev, since)| {
            list.len() == prev.len() + since.len() && list.starts_with(prev) && list.ends_with(since)
        });
        let consistent = matches_last && list.ends_with(own);
        let external = list.len() - own.len().min(list.len());
        self.last.insert(key, (list, Vec::new()));
        consistent.then_some(external)
    }
}

/// A consistent read about to become an [`Observation`].
struct ReadView<'a> {
    reader: usize,
    key: u64,
    list: &'a [u64],
    /// Raw leading elements from other transactions.
    external: usize,
    duplicates: bool,
}

/// Builds the observation and reports an intermediate read (G1b) of its external tail.
fn observe<'a>(history: &[Op], writers: &Writers, view: ReadView<'a>, out: &mut Vec<Anomaly>) -> Observation<'a> {
    let ReadView { reader, key, list, external, duplicates } = view;
    let tail = external.checked_sub(1).and_then(|pos| list.get(pos));
    if let Some((&value, writer)) = tail.and_then(|v| writers.get(&(key, *v)).map(|w| (v, w))) {
        if writer.op != reader && writer.intermediate {
            let id = |idx: usize| history.get(idx).map_or(idx, |o| o.id);
            out.push(Anomaly::G1b { key, value, reader: id(reader), writer: id(writer.op) });
        }
    }
    if !duplicates {
        return Observation { op: reader, key, seen: Cow::Borrowed(list), external_len: external, consistent: false };
    }
    let mut distinct = HashSet::new();
    let mut seen = Vec::with_capacity(list.len());
    let mut external_len = 0;
    for (pos, &value) in list.iter().enumerate() {
        if distinct.insert(value) {
            seen.push(value);
            if pos < external {
                external_len = seen.len();
            }
        }
    }
    Observation { op: reader, key, seen: Cow::Owned(seen), external_len, consistent: false }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::list_append::index_appends;

    const K: u64 = 1;

    fn op(id: usize, mops: Vec<Mop>) -> Op {
        Op { id, process: 0, kind: OpKind::Ok, invoke_ns: 0, complete_ns: 1, mops }
    }

    fn rd(list: &[u64]) -> Mop {
        Mop::Read { key: K, value: Some(list.to_vec()) }
    }

    /// Six writers of one value each, then one op per read list.
    fn history(reads: &[&[u64]]) -> Vec<Op> {
        let writers = (1..=6).map(|v| op(v as usize, vec![Mop::Append { key: K, value: v }]));
        writers.chain(reads.iter().enumerate().map(|(i, list)| op(100 + i, vec![rd(list)]))).collect()
    }

    fn run(history: &[Op]) -> (Reads<'_>, Vec<Anomaly>) {
        let mut out = Vec::new();
        let writers = index_appends(history, &mut out);
        let reads = collect(history, &writers, &mut out);
        (reads, out)
    }

    #[test]
    fn diverging_reads_are_inspected_and_remembered() {
        let history = history(&[&[1, 2, 3], &[1, 4, 5, 6], &[1, 2], &[1, 4, 9], &[1, 2, 3]]);
        let (reads, out) = run(&history);
        assert_eq!(out, [Anomaly::Garbage { key: K, value: 9, op: 103 }]);
        assert!((1..=6).chain([9]).all(|v| reads.observed(K, v)));
        assert!(!reads.observed(K, 7) && !reads.observed(2, 1));
        assert_eq!(reads.obs.len(), 5);
    }

    #[test]
    fn findings_in_a_cached_prefix_are_reported_for_every_reader() {
        let history = history(&[&[1, 1, 1, 8, 2], &[1, 1, 1], &[1, 1, 1, 8]]);
        let (reads, out) = run(&history);
        let dup = |op| Anomaly::Duplicate { key: K, value: 1, op };
        let garbage = Anomaly::Garbage { key: K, value: 8, op: 102 };
        assert_eq!(out, [dup(100), Anomaly::Garbage { key: K, value: 8, op: 100 }, dup(101), dup(102), garbage]);
        assert_eq!(reads.obs.first().map(|o| o.seen.to_vec()), Some(vec![1, 8, 2]));
    }

    #[test]
    fn own_appends_are_not_external() {
        let history = vec![op(
            1,
            vec![rd(&[]), Mop::Append { key: K, value: 1 }, rd(&[1]), Mop::Append { key: K, value: 2 }, rd(&[1, 2])],
        )];
        let (reads, out) = run(&history);
        assert!(out.is_empty(), "{out:?}");
        assert!(reads.obs.iter().all(|o| o.external_len == 0));
    }

    #[test]
    fn reads_must_agree_within_a_transaction() {
        let history = vec![
            op(1, vec![Mop::Append { key: K, value: 1 }]),
            op(2, vec![Mop::Append { key: K, value: 2 }]),
            op(3, vec![rd(&[1]), rd(&[1, 2])]),
        ];
        let (reads, out) = run(&history);
        assert_eq!(out, [Anomaly::Internal { key: K, op: 3 }]);
        assert_eq!(reads.obs.len(), 1);
    }
}
