//! The dependency graph between committed transactions.
//!
//! Nodes are committed ops: every `Ok` op, and every `Info` op whose appends some read saw. Edges,
//! for each key's version order `v0 < v1 < ...`:
//! - ww: the writer of `vi` precedes the writer of `vi+1`;
//! - wr: the writer of the last value a read saw (outside the reader's own appends) precedes it;
//! - rw: a read whose external view ends at `vi` precedes the writer of `vi+1` (anti-dependency);
//! - rt: an op that completed before another was invoked precedes it (real time).
//!
//! A transaction never gets an edge to itself: its own reads and appends are internal.

use std::collections::{BTreeMap, HashMap};

use super::reads::Observation;
use super::Writers;
use crate::check::history::{Op, OpKind};

pub(crate) const WW: u8 = 1;
pub(crate) const WR: u8 = 2;
pub(crate) const RW: u8 = 4;
pub(crate) const RT: u8 = 8;
/// The edges of a serializability check: everything but real time.
pub(crate) const DATA: u8 = WW | WR | RW;
pub(crate) const ALL: u8 = DATA | RT;

/// The kinds of dependency between two ops, with one key that explains each data kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Label {
    pub kinds: u8,
    /// The first key seen for ww, wr and rw, in that order; only meaningful when the kind is set.
    pub keys: [u64; 3],
}

impl Label {
    /// The same label keeping only the kinds in `mask`.
    pub fn masked(self, mask: u8) -> Label {
        Label { kinds: self.kinds & mask, ..self }
    }
}

/// Adjacency lists over nodes `0..ops.len()`, each target once, in ascending order.
#[derive(Debug, Default)]
pub(crate) struct DepGraph {
    /// History index of each node.
    pub ops: Vec<usize>,
    pub adj: Vec<Vec<(usize, Label)>>,
}

/// Collects edges between history indices, dropping those that involve uncommitted ops.
struct Builder {
    node_of: HashMap<usize, usize>,
    ops: Vec<usize>,
    edges: BTreeMap<(usize, usize), Label>,
}

impl Builder {
    fn add(&mut self, from_op: usize, to_op: usize, kind: u8, key: u64) {
        let (Some(&from), Some(&to)) = (self.node_of.get(&from_op), self.node_of.get(&to_op)) else { return };
        self.add_nodes(from, to, kind, key);
    }

    fn add_nodes(&mut self, from: usize, to: usize, kind: u8, key: u64) {
        if from == to {
            return;
        }
        let label = self.edges.entry((from, to)).or_default();
        for (slot, bit) in [WW, WR, RW].into_iter().enumerate() {
            if kind & bit != 0 && label.kinds & bit == 0 {
                if let Some(k) = label.keys.get_mut(slot) {
                    *k = key;
                }
            }
        }
        label.kinds |= kind;
    }
}

/// Builds the graph over the ops marked in `committed` (indexed like `history`).
pub(crate) fn build(
    history: &[Op],
    committed: &[bool],
    writers: &Writers,
    orders: &BTreeMap<u64, Vec<u64>>,
    obs: &[Observation<'_>],
) -> DepGraph {
    let ops: Vec<usize> = committed.iter().enumerate().filter(|(_, c)| **c).map(|(i, _)| i).collect();
    let node_of = ops.iter().enumerate().map(|(node, &op)| (op, node)).collect();
    let mut b = Builder { node_of, ops, edges: BTreeMap::new() };
    let writer = |key: u64, value: u64| writers.get(&(key, value)).map(|w| w.op);
    for (&key, order) in orders {
        for pair in order.windows(2) {
            let &[earlier, later] = pair else { continue };
            if let (Some(a), Some(c)) = (writer(key, earlier), writer(key, later)) {
                b.add(a, c, WW, key);
            }
        }
    }
    for o in obs {
        let external = o.seen.get(..o.external_len).unwrap_or_default();
        if let Some(w) = external.last().and_then(|v| writer(o.key, *v)) {
            b.add(w, o.op, WR, o.key);
        }
        // The anti-dependency needs the version order, so only reads that agree with it count.
        let next = orders.get(&o.key).and_then(|order| order.get(o.external_len));
        if let Some(w) = next.filter(|_| o.consistent).and_then(|v| writer(o.key, *v)) {
            b.add(o.op, w, RW, o.key);
        }
    }
    add_realtime(history, &mut b);
    let mut adj = vec![Vec::new(); b.ops.len()];
    for ((from, to), label) in b.edges {
        if let Some(list) = adj.get_mut(from) {
            list.push((to, label));
        }
    }
    DepGraph { ops: b.ops, adj }
}

/// Adds real-time edges without the quadratic blow-up of one edge per ordered pair.
///
/// Sweep invocations and completions in time order, keeping the frontier: the completed ops that
/// no other completed op follows in real time. An invoked op gets an edge from each frontier op.
/// When an op completes, it evicts every frontier op that completed before it was invoked (those
/// now reach later ops through it) and joins the frontier. Every pair `a` precedes `b` stays
/// reachable: either `a` is in the frontier when `b` is invoked, or some `c` with `a` preceding `c`
/// and `c` preceding `b` evicted it, and induction on completion time finishes the argument.
/// Frontier ops are pairwise concurrent, so the edge count is O(ops x concurrency).
fn add_realtime(history: &[Op], b: &mut Builder) {
    const INVOKE: u8 = 0;
    const COMPLETE: u8 = 1;
    let mut events = Vec::with_capacity(b.ops.len() * 2);
    for (node, op) in b.ops.iter().enumerate().filter_map(|(n, &i)| history.get(i).map(|op| (n, op))) {
        events.push((op.invoke_ns, INVOKE, node));
        // An op that may take effect at any later time (Info) precedes nothing.
        if op.kind != OpKind::Info && op.complete_ns != u64::MAX {
            events.push((op.complete_ns, COMPLETE, node));
        }
    }
    // At equal times invocations go first: a completion at t does not precede an invocation at t.
    events.sort_unstable();
    let time = |node: usize, pick: fn(&Op) -> u64| b.ops.get(node).and_then(|&i| history.get(i)).map_or(0, pick);
    let mut frontier: Vec<usize> = Vec::new();
    let mut edges = Vec::new();
    for (_, phase, node) in events {
        if phase == INVOKE {
            edges.extend(frontier.iter().map(|&f| (f, node)));
        } else {
            let invoked = time(node, |op| op.invoke_ns);
            frontier.retain(|&f| time(f, |op| op.complete_ns) >= invoked);
            frontier.push(node);
        }
    }
    for (from, to) in edges {
        b.add_nodes(from, to, RT, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: usize, invoke_ns: u64, complete_ns: u64) -> Op {
        Op { id, process: id as u64, kind: OpKind::Ok, invoke_ns, complete_ns, mops: vec![] }
    }

    fn realtime(history: &[Op]) -> Vec<(usize, usize)> {
        let committed = vec![true; history.len()];
        let g = build(history, &committed, &Writers::new(), &BTreeMap::new(), &[]);
        let mut out = Vec::new();
        for (from, list) in g.adj.iter().enumerate() {
            out.extend(list.iter().filter(|(_, l)| l.kinds == RT).map(|(to, _)| (from, *to)));
        }
        out
    }

    /// Reachability through rt edges must equal the precedence relation.
    fn reaches(edges: &[(usize, usize)], n: usize) -> Vec<Vec<bool>> {
        let mut r = vec![vec![false; n]; n];
        for &(a, b) in edges {
            r[a][b] = true;
        }
        for k in 0..n {
            for i in 0..n {
                for j in 0..n {
                    if r[i][k] && r[k][j] {
                        r[i][j] = true;
                    }
                }
            }
        }
        r
    }

    #[test]
    fn chain_has_no_transitive_edges() {
        let history = [op(0, 0, 1), op(1, 2, 3), op(2, 4, 5), op(3, 6, 7)];
        assert_eq!(realtime(&history), vec![(0, 1), (1, 2), (2, 3)]);
    }

    #[test]
    fn equal_times_overlap() {
        let history = [op(0, 0, 5), op(1, 5, 9)];
        assert!(realtime(&history).is_empty());
    }

    #[test]
    fn reduction_preserves_precedence() {
        // A tiny LCG gives overlapping intervals; compare closure with the definition.
        let mut seed = 7u64;
        let mut next = |m: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        let history: Vec<Op> = (0..40)
            .map(|i| {
                let start = next(100);
                op(i, start, start + next(20))
            })
            .collect();
        let edges = realtime(&history);
        let r = reaches(&edges, history.len());
        for (i, a) in history.iter().enumerate() {
            for (j, c) in history.iter().enumerate() {
                assert_eq!(r[i][j], a.precedes(c), "ops {i} and {j}");
            }
        }
        assert!(edges.len() < 40 * 39 / 2);
    }
}
