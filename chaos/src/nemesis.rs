//! Faults and their schedule. The schedule is a pure function of the seed
//! and the run's length, printed before the run, so a failing run replays
//! with the same `--seed`. (Which node a leader-aimed kill hits depends on
//! who leads at that moment, and is printed when it happens.)

use std::collections::BTreeMap;
use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum FaultKind {
    /// SIGKILL a node, restart it after the hold.
    Kill,
    /// SIGKILL the sequencer group's leader (while it seals epochs).
    KillSequencerLeader,
    /// SIGKILL the node leading the most vShards (mid-transaction).
    KillVshardLeader,
    /// SIGSTOP a node, SIGCONT after the hold.
    Pause,
    /// Cut a node off from both others, both ways (a minority of one
    /// against a majority of two).
    Isolate,
    /// Cut one direction of one link only.
    CutOneWay,
    /// Delay every byte to and from a node (all its links, both ways).
    Slow,
}

impl FaultKind {
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Kill,
        FaultKind::KillSequencerLeader,
        FaultKind::KillVshardLeader,
        FaultKind::Pause,
        FaultKind::Isolate,
        FaultKind::CutOneWay,
        FaultKind::Slow,
    ];

    /// Parses a `--nemesis` list item: kill, kill-sequencer, kill-vshard,
    /// pause, partition (isolate and one-way cuts), slow, all.
    pub fn parse(name: &str) -> Result<Vec<FaultKind>, String> {
        Ok(match name {
            "kill" => vec![FaultKind::Kill],
            "kill-sequencer" => vec![FaultKind::KillSequencerLeader],
            "kill-vshard" => vec![FaultKind::KillVshardLeader],
            "pause" => vec![FaultKind::Pause],
            "partition" => vec![FaultKind::Isolate, FaultKind::CutOneWay],
            "slow" => vec![FaultKind::Slow],
            "all" => FaultKind::ALL.to_vec(),
            other => return Err(format!("unknown nemesis {other:?}")),
        })
    }
}

/// One scheduled fault: `kind` at `at_ms` after the workload starts, on
/// `node` (and `peer` for a one-way cut; `delay_ms` for a slow node),
/// healed `hold_ms` later.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub at_ms: u64,
    pub kind: FaultKind,
    pub node: u64,
    pub peer: u64,
    pub delay_ms: u64,
    pub hold_ms: u64,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{:>6} ms {:?} node {}", self.at_ms, self.kind, self.node)?;
        if self.kind == FaultKind::CutOneWay {
            write!(f, " -> {}", self.peer)?;
        }
        if self.kind == FaultKind::Slow {
            write!(f, " by {} ms", self.delay_ms)?;
        }
        write!(f, " for {} ms", self.hold_ms)
    }
}

/// Quiet time at the start (the workload warms up) and at the end (the
/// last fault is healed before the workload stops).
const QUIET_MS: u64 = 3_000;
/// Pause between two faults.
const GAP_MS: std::ops::Range<u64> = 1_000..4_000;
/// How long a fault lasts.
const HOLD_MS: std::ops::Range<u64> = 1_500..6_000;
/// How late a slow node's bytes arrive, each way: from a slow network to
/// more than a heartbeat interval (500 ms).
const DELAY_MS: std::ops::RangeInclusive<u64> = 20..=800;

/// The faults of a run of `duration_ms` on `nodes` nodes, from `seed`.
pub fn schedule(seed: u64, duration_ms: u64, nodes: u64, kinds: &[FaultKind]) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut steps = Vec::new();
    let mut at = QUIET_MS;
    while !kinds.is_empty() && nodes >= 2 {
        let kind = kinds[rng.random_range(0..kinds.len())];
        let hold_ms = rng.random_range(HOLD_MS);
        if at + hold_ms + QUIET_MS > duration_ms {
            break;
        }
        let node = rng.random_range(1..=nodes);
        let peer = 1 + (node + rng.random_range(0..nodes - 1)) % nodes;
        let delay_ms = rng.random_range(DELAY_MS);
        steps.push(Step { at_ms: at, kind, node, peer, delay_ms, hold_ms });
        at += hold_ms + rng.random_range(GAP_MS);
    }
    steps
}

/// How many faults of each kind a schedule holds.
pub fn counts(steps: &[Step]) -> BTreeMap<FaultKind, usize> {
    let mut m = BTreeMap::new();
    for s in steps {
        *m.entry(s.kind).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_a_function_of_the_seed() {
        let a = schedule(7, 120_000, 3, &FaultKind::ALL);
        let b = schedule(7, 120_000, 3, &FaultKind::ALL);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_ne!(format!("{a:?}"), format!("{:?}", schedule(8, 120_000, 3, &FaultKind::ALL)));
        assert!(a.len() >= 10, "{} faults", a.len());
        for s in &a {
            assert!(s.node != s.peer && (1..=3).contains(&s.peer), "{s}");
            assert!(s.at_ms + s.hold_ms + QUIET_MS <= 120_000);
        }
    }
}
