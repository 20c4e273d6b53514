//! Finding and classifying cycles in the dependency graph.
//!
//! Each strongly connected component (petgraph's `tarjan_scc`) of the graph without real-time edges
//! yields one anomaly, named after the weakest cycle found in it: the search tries ww edges alone
//! (G0), then ww and wr (G1c), then exactly one rw edge closed by a ww/wr path (G-single), and only
//! then any cycle, preferring few rw edges (G2). A component of the graph *with* real-time edges
//! that is not already one of those components holds a cycle that needs real time to close, which
//! is reported as a strict-serializability violation.
//!
//! Paths come from a Dijkstra search confined to the component, where rw and rt edges cost far
//! more than ww and wr ones, so reported cycles use as few of them as the search can manage.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::rc::Rc;

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};

use super::graph::{DepGraph, Label, ALL, DATA, RT, RW, WR, WW};
use super::Anomaly;
use crate::check::history::Op;

/// Why one transaction must come before another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EdgeKind {
    /// Write-write: `from` appended the element just before `to`'s in some key's version order.
    Ww,
    /// Write-read: `to` read a list whose last element `from` appended.
    Wr,
    /// Read-write anti-dependency: `from` read a list, `to` appended the element that came next.
    Rw,
    /// Real time: `from` completed before `to` was invoked.
    Rt,
}

/// One edge of a cycle; `from` and `to` are [`Op::id`]s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub from: usize,
    pub to: usize,
    pub kind: EdgeKind,
    /// The key that gives rise to the edge; `None` for real-time edges.
    pub key: Option<u64>,
}

/// A dependency cycle: each step's `to` is the next step's `from`, and the last returns to the first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cycle {
    pub steps: Vec<Step>,
}

impl Cycle {
    /// The op ids along the cycle, starting with the first step's source.
    pub fn ops(&self) -> Vec<usize> {
        self.steps.iter().map(|s| s.from).collect()
    }

    /// How many steps are of `kind`.
    pub fn count(&self, kind: EdgeKind) -> usize {
        self.steps.iter().filter(|s| s.kind == kind).count()
    }
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(first) = self.steps.first() else { return write!(f, "(empty cycle)") };
        write!(f, "op {}", first.from)?;
        for step in &self.steps {
            let kind = match step.kind {
                EdgeKind::Ww => "ww",
                EdgeKind::Wr => "wr",
                EdgeKind::Rw => "rw",
                EdgeKind::Rt => "rt",
            };
            match step.key {
                Some(key) => write!(f, " -{kind}[key {key}]-> op {}", step.to)?,
                None => write!(f, " -{kind}-> op {}", step.to)?,
            }
        }
        Ok(())
    }
}

/// How many rw edges the G-single search tries per component before settling for any cycle; the
/// bound keeps pathological components (thousands of anti-dependencies) from taking quadratic time.
const SINGLE_RW_ATTEMPTS: usize = 256;

/// Cost of an edge usable only as rw or rt: far more than any path of ww/wr edges, so Dijkstra
/// minimises their number first and the length second.
const EXPENSIVE: u64 = 1 << 32;

/// Finds one anomaly per cyclic component, in a deterministic order.
pub(crate) fn find(graph: &DepGraph, history: &[Op]) -> Vec<Anomaly> {
    let all_nodes: Vec<usize> = (0..graph.ops.len()).collect();
    let data = Sub::new(graph, &all_nodes, DATA);
    let components = data.components();
    let mut out = Vec::new();
    for component in components.iter().filter(|c| c.len() > 1) {
        if let Some(cycle) = classify_component(graph, component) {
            out.push(name_cycle(graph, history, &cycle));
        }
    }
    let mut component_of = vec![0; graph.ops.len()];
    for (index, component) in components.iter().enumerate() {
        for &node in component {
            if let Some(slot) = component_of.get_mut(node) {
                *slot = index;
            }
        }
    }
    let timed = Sub::new(graph, &all_nodes, ALL);
    for component in timed.components().iter().filter(|c| c.len() > 1) {
        if let Some(cycle) = realtime_cycle(graph, component, &component_of) {
            out.push(name_cycle(graph, history, &cycle));
        }
    }
    out
}

/// The weakest cycle this search finds in one component of the data-edge graph.
fn classify_component(graph: &DepGraph, component: &[usize]) -> Option<Vec<Edge>> {
    for mask in [WW, WW | WR] {
        let sub = Sub::new(graph, component, mask);
        if let Some(inner) = sub.components().into_iter().find(|c| c.len() > 1) {
            return Sub::new(graph, &inner, mask).cycle_through(0);
        }
    }
    single_rw_cycle(graph, component).or_else(|| Sub::new(graph, component, DATA).cycle_through(0))
}

/// A cycle of one rw edge `u -> v` closed by a ww/wr path from `v` back to `u`, if one is found.
///
/// Called once ww/wr edges alone form no cycle, so they form a DAG; a path `v -> u` can only exist
/// when `v` sorts before `u` topologically, which prunes most candidates before any search.
fn single_rw_cycle(graph: &DepGraph, component: &[usize]) -> Option<Vec<Edge>> {
    let dag = Sub::new(graph, component, WW | WR);
    let rank = dag.topological_rank()?;
    let with_rw = Sub::new(graph, component, RW);
    let candidates = with_rw.adj.iter().enumerate().flat_map(|(u, list)| list.iter().map(move |(v, l)| (u, *v, *l)));
    let ordered = candidates.filter(|(u, v, _)| rank.get(*v) < rank.get(*u));
    for (u, v, label) in ordered.take(SINGLE_RW_ATTEMPTS) {
        if let Some(path) = dag.path(v, u) {
            let mut cycle = vec![with_rw.edge(u, v, label)];
            cycle.extend(path);
            return Some(cycle);
        }
    }
    None
}

/// In a component of the full graph that spans several data components, a cycle through a
/// real-time edge between two of them; such a cycle cannot close without real time.
fn realtime_cycle(graph: &DepGraph, component: &[usize], component_of: &[usize]) -> Option<Vec<Edge>> {
    let data_component = |node: usize| component_of.get(node).copied();
    let first = component.first().and_then(|&n| data_component(n));
    if component.iter().all(|&n| data_component(n) == first) {
        return None;
    }
    let sub = Sub::new(graph, component, ALL);
    for (u, list) in sub.adj.iter().enumerate() {
        for &(v, label) in list {
            let crosses = data_component(sub.global(u)) != data_component(sub.global(v));
            if crosses && label.kinds & RT != 0 {
                let rt_only = label.masked(RT);
                let mut cycle = vec![sub.edge(u, v, rt_only)];
                cycle.extend(sub.path(v, u)?);
                return Some(cycle);
            }
        }
    }
    None
}

/// Names a cycle by its content: real time makes it a strict-serializability violation, otherwise
/// the rw count decides.
fn name_cycle(graph: &DepGraph, history: &[Op], edges: &[Edge]) -> Anomaly {
    let id = |global: usize| graph.ops.get(global).and_then(|&i| history.get(i)).map_or(global, |op| op.id);
    let steps = edges
        .iter()
        .map(|e| {
            let (kind, key) = preferred_kind(e.label);
            Step { from: id(e.global_from()), to: id(e.global_to()), kind, key }
        })
        .collect();
    let cycle = Cycle { steps };
    if cycle.count(EdgeKind::Rt) > 0 {
        return Anomaly::StrictSerializability(cycle);
    }
    match cycle.count(EdgeKind::Rw) {
        0 if cycle.count(EdgeKind::Wr) == 0 => Anomaly::G0(cycle),
        0 => Anomaly::G1c(cycle),
        1 => Anomaly::GSingle(cycle),
        _ => Anomaly::G2(cycle),
    }
}

/// The strongest kind on an edge: a ww edge that is also rw is shown as ww, since either orders it.
fn preferred_kind(label: Label) -> (EdgeKind, Option<u64>) {
    let key = |slot: usize| label.keys.get(slot).copied();
    if label.kinds & WW != 0 {
        (EdgeKind::Ww, key(0))
    } else if label.kinds & WR != 0 {
        (EdgeKind::Wr, key(1))
    } else if label.kinds & RW != 0 {
        (EdgeKind::Rw, key(2))
    } else {
        (EdgeKind::Rt, None)
    }
}

/// One edge of a found cycle, in a subgraph's local numbering.
#[derive(Clone, Debug)]
struct Edge {
    from: usize,
    to: usize,
    label: Label,
    /// The subgraph's local-to-global node map (shared by all edges of a path).
    global: Rc<[usize]>,
}

impl Edge {
    fn global_from(&self) -> usize {
        self.global.get(self.from).copied().unwrap_or(self.from)
    }

    fn global_to(&self) -> usize {
        self.global.get(self.to).copied().unwrap_or(self.to)
    }
}

/// The subgraph induced by some nodes, keeping only edge kinds in a mask, numbered locally.
struct Sub {
    nodes: Rc<[usize]>,
    adj: Vec<Vec<(usize, Label)>>,
}

impl Sub {
    fn new(graph: &DepGraph, nodes: &[usize], mask: u8) -> Sub {
        let local: HashMap<usize, usize> = nodes.iter().enumerate().map(|(l, &g)| (g, l)).collect();
        let adj = nodes
            .iter()
            .map(|&g| {
                let out = graph.adj.get(g).map_or(&[][..], Vec::as_slice);
                out.iter()
                    .filter_map(|(to, label)| Some((*local.get(to)?, label.masked(mask))))
                    .filter(|(_, label)| label.kinds != 0)
                    .collect()
            })
            .collect();
        Sub { nodes: nodes.into(), adj }
    }

    fn global(&self, local: usize) -> usize {
        self.nodes.get(local).copied().unwrap_or(local)
    }

    fn petgraph(&self) -> DiGraph<(), ()> {
        let mut g = DiGraph::with_capacity(self.adj.len(), 0);
        let ids: Vec<NodeIndex> = self.adj.iter().map(|_| g.add_node(())).collect();
        for (from, list) in self.adj.iter().enumerate() {
            for (to, _) in list {
                if let (Some(&a), Some(&b)) = (ids.get(from), ids.get(*to)) {
                    g.add_edge(a, b, ());
                }
            }
        }
        g
    }

    /// All strongly connected components, as global node lists, each sorted, in a stable order.
    fn components(&self) -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = tarjan_scc(&self.petgraph())
            .into_iter()
            .map(|c| {
                let mut nodes: Vec<usize> = c.into_iter().map(|n| self.global(n.index())).collect();
                nodes.sort_unstable();
                nodes
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Each node's position in a topological order, or `None` if the subgraph has a cycle.
    fn topological_rank(&self) -> Option<Vec<usize>> {
        let order = toposort(&self.petgraph(), None).ok()?;
        let mut rank = vec![0; self.adj.len()];
        for (position, node) in order.into_iter().enumerate() {
            if let Some(slot) = rank.get_mut(node.index()) {
                *slot = position;
            }
        }
        Some(rank)
    }

    fn edge(&self, from: usize, to: usize, label: Label) -> Edge {
        Edge { from, to, label, global: self.nodes.clone() }
    }

    /// Dijkstra from `start`: cost and incoming edge per reached node.
    fn search(&self, start: usize) -> (Vec<u64>, Vec<Option<(usize, Label)>>) {
        let mut cost = vec![u64::MAX; self.adj.len()];
        let mut via: Vec<Option<(usize, Label)>> = vec![None; self.adj.len()];
        let mut heap = BinaryHeap::new();
        if let Some(slot) = cost.get_mut(start) {
            *slot = 0;
            heap.push(Reverse((0u64, start)));
        }
        while let Some(Reverse((c, node))) = heap.pop() {
            if cost.get(node).is_some_and(|&best| c > best) {
                continue;
            }
            for &(to, label) in self.adj.get(node).map_or(&[][..], Vec::as_slice) {
                let next = c.saturating_add(edge_cost(label));
                if let (Some(best), Some(slot)) = (cost.get_mut(to), via.get_mut(to)) {
                    if next < *best {
                        *best = next;
                        *slot = Some((node, label));
                        heap.push(Reverse((next, to)));
                    }
                }
            }
        }
        (cost, via)
    }

    /// Walks `via` back from `to` to `start`.
    fn unwind(&self, via: &[Option<(usize, Label)>], start: usize, to: usize) -> Option<Vec<Edge>> {
        let mut edges = Vec::new();
        let mut node = to;
        while node != start {
            let (prev, label) = (*via.get(node)?)?;
            edges.push(self.edge(prev, node, label));
            node = prev;
            if edges.len() > self.adj.len() {
                return None;
            }
        }
        edges.reverse();
        Some(edges)
    }

    /// The cheapest path from `from` to `to`, if any.
    fn path(&self, from: usize, to: usize) -> Option<Vec<Edge>> {
        let (cost, via) = self.search(from);
        if cost.get(to).is_none_or(|&c| c == u64::MAX) {
            return None;
        }
        self.unwind(&via, from, to)
    }

    /// The cheapest cycle through `start`: the cheapest path to a predecessor of `start`, closed.
    fn cycle_through(&self, start: usize) -> Option<Vec<Edge>> {
        let (cost, via) = self.search(start);
        let closing = self.adj.iter().enumerate().filter_map(|(from, list)| {
            let (_, label) = list.iter().find(|(to, _)| *to == start)?;
            let reach = *cost.get(from)?;
            (reach != u64::MAX).then(|| (reach.saturating_add(edge_cost(*label)), from, *label))
        });
        let (_, last, label) = closing.min_by_key(|(c, from, _)| (*c, *from))?;
        let mut cycle = self.unwind(&via, start, last)?;
        cycle.push(self.edge(last, start, label));
        Some(cycle)
    }
}

/// Ww and wr edges are cheap; an edge usable only as rw or rt is expensive.
fn edge_cost(label: Label) -> u64 {
    if label.kinds & (WW | WR) != 0 {
        1
    } else {
        EXPENSIVE + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::history::OpKind;

    /// A graph over `n` ops with ids `10 + i`, from `(from, to, kinds, key)` edges.
    fn graph(n: usize, edges: &[(usize, usize, u8, u64)]) -> (DepGraph, Vec<Op>) {
        let history = (0..n)
            .map(|i| Op { id: 10 + i, process: 0, kind: OpKind::Ok, invoke_ns: 0, complete_ns: 1, mops: vec![] })
            .collect();
        let mut adj = vec![Vec::new(); n];
        for &(from, to, kinds, key) in edges {
            adj[from].push((to, Label { kinds, keys: [key; 3] }));
        }
        (DepGraph { ops: (0..n).collect(), adj }, history)
    }

    fn names(edges: &[(usize, usize, u8, u64)], n: usize) -> Vec<&'static str> {
        let (g, history) = graph(n, edges);
        find(&g, &history).iter().map(Anomaly::name).collect()
    }

    #[test]
    fn weakest_cycle_names_the_component() {
        // 0 -> 1 -> 2 -> 0 by ww, plus 1 -rw-> 0: one component, reported as G0.
        assert_eq!(names(&[(0, 1, WW, 1), (1, 2, WW, 1), (2, 0, WW, 1), (1, 0, RW, 2)], 3), ["G0"]);
        // A two-rw cycle and a one-rw cycle through the same ops: G-single wins.
        assert_eq!(names(&[(0, 1, RW, 1), (1, 0, RW, 1), (1, 2, WR, 1), (2, 0, WW, 1)], 3), ["G-single"]);
        assert_eq!(names(&[(0, 1, RW, 1), (1, 0, RW, 1)], 2), ["G2"]);
        assert_eq!(names(&[(0, 1, WR, 1), (1, 0, WW, 1)], 2), ["G1c"]);
        assert!(names(&[(0, 1, WW | RT, 1), (1, 2, RW, 1)], 3).is_empty());
    }

    #[test]
    fn cycles_that_need_real_time() {
        assert_eq!(names(&[(0, 1, RT, 0), (1, 0, RW, 1)], 2), ["strict-serializability"]);
        // Real time inside a data cycle adds nothing; beside it, it adds a second report.
        assert_eq!(names(&[(0, 1, WW | RT, 1), (1, 0, WW, 1)], 2), ["G0"]);
        assert_eq!(
            names(&[(0, 1, WW, 1), (1, 0, WW, 1), (1, 2, RT, 0), (2, 0, WR, 1)], 3),
            ["G0", "strict-serializability"]
        );
    }

    #[test]
    fn cycle_display_and_counts() {
        let (g, history) = graph(2, &[(0, 1, WW, 3), (1, 0, RW, 4)]);
        let found = find(&g, &history);
        let Some(Anomaly::GSingle(cycle)) = found.first() else { panic!("{found:?}") };
        assert_eq!(cycle.to_string(), "op 11 -rw[key 4]-> op 10 -ww[key 3]-> op 11");
        assert_eq!((cycle.ops(), cycle.count(EdgeKind::Rw)), (vec![11, 10], 1));
        assert_eq!(Cycle::default().to_string(), "(empty cycle)");
    }
}
