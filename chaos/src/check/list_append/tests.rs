//! Hand-made histories, one per anomaly, plus a random serial history that must pass.

use std::collections::BTreeMap;

use super::*;

const X: u64 = 1;
const Y: u64 = 2;

fn ap(key: u64, value: u64) -> Mop {
    Mop::Append { key, value }
}

fn rd(key: u64, list: &[u64]) -> Mop {
    Mop::Read { key, value: Some(list.to_vec()) }
}

/// An op with explicit times.
fn timed(id: usize, kind: OpKind, invoke_ns: u64, complete_ns: u64, mops: Vec<Mop>) -> Op {
    Op { id, process: id as u64, kind, invoke_ns, complete_ns, mops }
}

/// An `Ok` op overlapping every other `ok` op, so no real-time edges interfere.
fn ok(id: usize, mops: Vec<Mop>) -> Op {
    timed(id, OpKind::Ok, 0, 100, mops)
}

fn names(report: &Report) -> Vec<&'static str> {
    report.anomalies.iter().map(Anomaly::name).collect()
}

fn cycle_of(report: &Report) -> &Cycle {
    match report.anomalies.first() {
        Some(
            Anomaly::G0(c) | Anomaly::G1c(c) | Anomaly::GSingle(c) | Anomaly::G2(c) | Anomaly::StrictSerializability(c),
        ) => c,
        other => panic!("expected a cycle, got {other:?}"),
    }
}

#[test]
fn clean_history_is_valid() {
    let history = vec![
        timed(1, OpKind::Ok, 0, 10, vec![ap(X, 1), ap(Y, 1)]),
        timed(2, OpKind::Ok, 20, 30, vec![rd(X, &[1]), ap(X, 2), rd(X, &[1, 2])]),
        timed(3, OpKind::Fail, 40, 50, vec![ap(Y, 9)]),
        timed(4, OpKind::Info, 60, u64::MAX, vec![ap(Y, 2)]),
        timed(5, OpKind::Info, 60, u64::MAX, vec![ap(Y, 3)]),
        timed(6, OpKind::Ok, 70, 80, vec![rd(X, &[1, 2]), rd(Y, &[1, 2])]),
    ];
    let report = check(&history);
    assert!(report.is_valid(), "{report}");
    assert_eq!((report.ops, report.ok, report.fail, report.info), (6, 3, 1, 2));
}

#[test]
fn g0_write_cycle() {
    let history = vec![
        ok(1, vec![ap(X, 1), ap(Y, 2)]),
        ok(2, vec![ap(X, 2), ap(Y, 1)]),
        ok(3, vec![rd(X, &[1, 2]), rd(Y, &[1, 2])]),
    ];
    let report = check(&history);
    assert_eq!(names(&report), ["G0"], "{report}");
    let mut ops = cycle_of(&report).ops();
    ops.sort_unstable();
    assert_eq!(ops, [1, 2]);
}

#[test]
fn g1a_aborted_read() {
    let history = vec![timed(1, OpKind::Fail, 0, 10, vec![ap(X, 1)]), ok(2, vec![rd(X, &[1])])];
    let report = check(&history);
    assert_eq!(report.anomalies, [Anomaly::G1a { key: X, value: 1, reader: 2, writer: 1 }]);
}

#[test]
fn g1b_intermediate_read() {
    let history = vec![ok(1, vec![ap(X, 1), ap(X, 2)]), ok(2, vec![rd(X, &[1])])];
    let report = check(&history);
    assert_eq!(report.anomalies, [Anomaly::G1b { key: X, value: 1, reader: 2, writer: 1 }]);
}

#[test]
fn g1c_circular_information_flow() {
    let history = vec![ok(1, vec![ap(X, 1), rd(Y, &[1])]), ok(2, vec![ap(Y, 1), rd(X, &[1])])];
    let report = check(&history);
    assert_eq!(names(&report), ["G1c"], "{report}");
    assert_eq!(cycle_of(&report).count(EdgeKind::Wr), 2);
}

#[test]
fn g_single_read_skew() {
    let history = vec![ok(1, vec![ap(X, 1), ap(Y, 1)]), ok(2, vec![rd(X, &[]), rd(Y, &[1])]), ok(3, vec![rd(X, &[1])])];
    let report = check(&history);
    assert_eq!(names(&report), ["G-single"], "{report}");
    let cycle = cycle_of(&report);
    assert_eq!((cycle.count(EdgeKind::Rw), cycle.count(EdgeKind::Wr)), (1, 1));
}

#[test]
fn g2_write_skew() {
    let history = vec![
        ok(1, vec![rd(X, &[]), ap(Y, 1)]),
        ok(2, vec![rd(Y, &[]), ap(X, 1)]),
        ok(3, vec![rd(X, &[1]), rd(Y, &[1])]),
    ];
    let report = check(&history);
    assert_eq!(names(&report), ["G2"], "{report}");
    assert_eq!(cycle_of(&report).count(EdgeKind::Rw), 2);
}

#[test]
fn stale_read_needs_realtime() {
    // Op 2 starts after op 1 acknowledged its append, yet reads the list without it.
    let history = vec![
        timed(1, OpKind::Ok, 0, 10, vec![ap(X, 1)]),
        timed(2, OpKind::Ok, 20, 30, vec![rd(X, &[])]),
        timed(3, OpKind::Ok, 40, 50, vec![rd(X, &[1])]),
    ];
    let report = check(&history);
    assert_eq!(names(&report), ["strict-serializability"], "{report}");
    let cycle = cycle_of(&report);
    assert_eq!((cycle.count(EdgeKind::Rt), cycle.count(EdgeKind::Rw)), (1, 1));
    // Without the real-time order the same history is serializable.
    let relaxed: Vec<Op> = history.into_iter().map(|op| Op { invoke_ns: 0, complete_ns: 100, ..op }).collect();
    assert!(check(&relaxed).is_valid());
}

#[test]
fn duplicate_append() {
    let history = vec![ok(1, vec![ap(X, 1)]), ok(2, vec![ap(X, 2)]), ok(3, vec![rd(X, &[1, 2, 1])])];
    let report = check(&history);
    assert_eq!(report.anomalies, [Anomaly::Duplicate { key: X, value: 1, op: 3 }]);
}

#[test]
fn lost_append() {
    let history = vec![
        timed(1, OpKind::Ok, 0, 10, vec![ap(X, 1)]),
        timed(2, OpKind::Ok, 20, 30, vec![ap(X, 2)]),
        timed(3, OpKind::Ok, 40, 50, vec![rd(X, &[2])]),
        timed(4, OpKind::Ok, 60, 70, vec![rd(X, &[2])]),
    ];
    let report = check(&history);
    assert_eq!(report.anomalies, [Anomaly::Lost { key: X, value: 1, op: 1, read: 3 }]);
}

#[test]
fn unobserved_append_without_later_read_is_not_lost() {
    let history = vec![ok(1, vec![ap(X, 1)]), ok(2, vec![rd(X, &[])])];
    assert!(check(&history).is_valid());
}

#[test]
fn garbage_read() {
    let history = vec![ok(1, vec![ap(X, 1)]), ok(2, vec![rd(X, &[1, 9])])];
    let report = check(&history);
    assert_eq!(report.anomalies, [Anomaly::Garbage { key: X, value: 9, op: 2 }]);
}

#[test]
fn incompatible_order() {
    let history =
        vec![ok(1, vec![ap(X, 1)]), ok(2, vec![ap(X, 2)]), ok(3, vec![rd(X, &[1])]), ok(4, vec![rd(X, &[2])])];
    let report = check(&history);
    assert_eq!(report.anomalies, [Anomaly::IncompatibleOrder { key: X, a: 3, b: 4 }]);
}

#[test]
fn internal_inconsistency() {
    let history = vec![ok(1, vec![ap(X, 1), rd(X, &[])])];
    let report = check(&history);
    assert_eq!(report.anomalies, [Anomaly::Internal { key: X, op: 1 }]);
}

#[test]
fn harness_errors() {
    let history = vec![ok(1, vec![ap(X, 1)]), ok(2, vec![ap(X, 1)]), timed(3, OpKind::Ok, 9, 3, vec![])];
    let report = check(&history);
    assert_eq!(
        report.anomalies,
        [Anomaly::NonUniqueAppend { key: X, value: 1, ops: [1, 2] }, Anomaly::BadTimes { op: 3 }]
    );
    assert!(report.anomalies.iter().all(Anomaly::is_harness_error));
}

#[test]
fn own_writes_make_no_self_edges() {
    let history = vec![
        ok(1, vec![rd(X, &[]), ap(X, 1), rd(X, &[1]), ap(X, 2), rd(X, &[1, 2])]),
        ok(2, vec![ap(X, 3), rd(X, &[1, 2, 3])]),
    ];
    let report = check(&history);
    assert!(report.is_valid(), "{report}");
}

#[test]
fn observed_info_append_is_committed() {
    // The info op's append was seen, so it committed and takes part in the cycle.
    let history = vec![
        timed(1, OpKind::Info, 0, u64::MAX, vec![ap(X, 1), ap(Y, 2)]),
        ok(2, vec![ap(X, 2), ap(Y, 1)]),
        ok(3, vec![rd(X, &[1, 2]), rd(Y, &[1, 2])]),
    ];
    assert_eq!(names(&check(&history)), ["G0"]);
}

#[test]
fn every_anomaly_displays_one_line() {
    let history = vec![
        timed(1, OpKind::Fail, 0, 10, vec![ap(X, 1)]),
        ok(2, vec![rd(X, &[1, 1, 7])]),
        ok(3, vec![ap(Y, 1), ap(Y, 2)]),
        ok(4, vec![rd(Y, &[1])]),
    ];
    let report = check(&history);
    assert_eq!(names(&report), ["G1a", "duplicate", "garbage", "G1b"]);
    for anomaly in &report.anomalies {
        let line = anomaly.to_string();
        assert!(line.starts_with(anomaly.name()) && !line.contains('\n'), "{line}");
    }
}

#[test]
fn odd_histories_do_not_panic() {
    let history = vec![
        timed(7, OpKind::Ok, u64::MAX, 0, vec![rd(X, &[]), rd(X, &[5, 5, 5])]),
        timed(7, OpKind::Fail, 0, 0, vec![rd(Y, &[3]), Mop::Read { key: Y, value: None }]),
        timed(8, OpKind::Info, 5, 1, vec![ap(u64::MAX, u64::MAX)]),
        timed(9, OpKind::Ok, 0, u64::MAX, vec![]),
        ok(10, vec![rd(u64::MAX, &[u64::MAX, 0])]),
    ];
    let report = check(&history);
    assert!(!report.is_valid());
    assert!(check(&[]).is_valid());
}

/// A tiny deterministic generator (Knuth's MMIX LCG), so the test needs no extra crates.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// Runs random transactions one at a time against an in-memory model and records the history,
/// including failed ops (not applied) and info ops (applied or not, reads unknown).
fn serial_history(seed: u64, count: usize) -> Vec<Op> {
    let mut rng = Lcg(seed);
    let mut db: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut next_value = 0;
    let mut history = Vec::new();
    for i in 0..count {
        let kind = match rng.below(10) {
            0 => OpKind::Fail,
            1 => OpKind::Info,
            _ => OpKind::Ok,
        };
        let applies = kind == OpKind::Ok || (kind == OpKind::Info && rng.below(2) == 0);
        let mut staged = db.clone();
        let mut mops = Vec::new();
        for _ in 0..=rng.below(4) {
            let key = rng.below(5);
            if rng.below(2) == 0 {
                next_value += 1;
                staged.entry(key).or_default().push(next_value);
                mops.push(ap(key, next_value));
            } else {
                let seen = staged.get(&key).cloned().unwrap_or_default();
                mops.push(Mop::Read { key, value: (kind == OpKind::Ok).then_some(seen) });
            }
        }
        if applies {
            db = staged;
        }
        let start = 10 * i as u64;
        let end = if kind == OpKind::Info { u64::MAX } else { start + 5 };
        history.push(timed(i, kind, start, end, mops));
    }
    let start = 10 * count as u64;
    let final_reads = (0..5).map(|key| rd(key, db.get(&key).map_or(&[][..], Vec::as_slice))).collect();
    history.push(timed(count, OpKind::Ok, start, start + 5, final_reads));
    history
}

#[test]
fn random_serial_histories_are_valid() {
    for seed in 1..=5 {
        let history = serial_history(seed, 200);
        let report = check(&history);
        assert!(report.is_valid(), "seed {seed}: {report}");
        assert!(report.fail > 0 && report.info > 0);
    }
}

/// Like [`serial_history`], but ops overlap in time: each takes effect at a random point inside its
/// interval, and the model runs them in the order of those points.
fn concurrent_history(seed: u64, count: usize) -> Vec<Op> {
    let mut rng = Lcg(seed);
    let mut points: Vec<(u64, u64, u64)> = (0..count as u64)
        .map(|i| {
            let invoke = 10 * i + rng.below(10);
            let point = invoke + 1 + rng.below(40);
            (point, invoke, point + 1 + rng.below(40))
        })
        .collect();
    points.sort_unstable();
    let serial = serial_history(seed, count);
    // Reuse the serial ops in linearization order: only their times change.
    let mut history: Vec<Op> = serial
        .iter()
        .zip(&points)
        .map(|(op, &(_, invoke_ns, complete_ns))| {
            let complete_ns = if op.kind == OpKind::Info { u64::MAX } else { complete_ns };
            Op { invoke_ns, complete_ns, ..op.clone() }
        })
        .collect();
    if let Some(last) = serial.last() {
        let start = points.iter().map(|p| p.2).max().unwrap_or(0) + 1;
        history.push(Op { invoke_ns: start, complete_ns: start + 1, ..last.clone() });
    }
    history
}

#[test]
fn random_concurrent_histories_are_valid() {
    for seed in 1..=5 {
        let history = concurrent_history(seed, 200);
        assert!(history.windows(2).any(|w| w[0].kind == OpKind::Ok && !w[0].precedes(&w[1])), "ops should overlap");
        let report = check(&history);
        assert!(report.is_valid(), "seed {seed}: {report}");
    }
}

#[test]
fn random_history_with_a_dropped_append_is_caught() {
    let mut history = serial_history(3, 200);
    // Forge a final read that lost its first element: something must notice.
    if let Some(Mop::Read { value: Some(list), .. }) = history
        .last_mut()
        .and_then(|op| op.mops.iter_mut().find(|m| matches!(m, Mop::Read { value: Some(l), .. } if l.len() > 1)))
    {
        list.remove(0);
    }
    assert!(!check(&history).is_valid());
}

#[test]
fn random_garbage_histories_do_not_panic() {
    let mut rng = Lcg(99);
    for _ in 0..200 {
        let history: Vec<Op> = (0..30)
            .map(|i| {
                let kind = [OpKind::Ok, OpKind::Fail, OpKind::Info][rng.below(3) as usize];
                let mops = (0..rng.below(5))
                    .map(|_| match rng.below(3) {
                        0 => ap(rng.below(3), rng.below(8)),
                        1 => Mop::Read { key: rng.below(3), value: None },
                        _ => Mop::Read {
                            key: rng.below(3),
                            value: Some((0..rng.below(6)).map(|_| rng.below(8)).collect()),
                        },
                    })
                    .collect();
                // Ids need not be unique, and times need not make sense.
                let id = if i % 2 == 0 { i } else { rng.below(20) as usize };
                timed(id, kind, rng.below(50), rng.below(60), mops)
            })
            .collect();
        let report = check(&history);
        assert!(report.anomalies.iter().all(|a| !a.to_string().is_empty()));
    }
}
